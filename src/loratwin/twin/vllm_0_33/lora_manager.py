"""vLLM 0.33's LoRA adapter caches: unchanged from 0.32 and 0.8.5
(:mod:`loratwin.twin.vllm_0_8_5.lora_manager`; ``vllm/lora/worker_manager.py``)."""

from __future__ import annotations

from loratwin.twin.vllm_0_8_5.lora_manager import (
    RULES,
    AdapterLoads,
    apply_adapters,
    lora_hash_order,
    preloaded,
)

__all__ = ["RULES", "AdapterLoads", "apply_adapters", "lora_hash_order", "preloaded"]
