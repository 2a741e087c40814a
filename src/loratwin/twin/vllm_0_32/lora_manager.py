"""vLLM 0.32's LoRA adapter caches (``vllm/lora/worker_manager.py``,
``vllm/lora/model_manager.py``).

Unchanged from 0.8.5 (:mod:`loratwin.twin.vllm_0_8_5.lora_manager`): ``LRUCacheWorkerLoRAManager``
with a CPU LRU cache of ``max_cpu_loras`` and ``max_loras`` GPU slots, walked in the hash order
of the step's ``LoRARequest`` set, ``add_adapter`` activating into a slot (static
``--lora-modules`` too). New only: ``load_inplace`` requests reload an adapter in place.
"""

from __future__ import annotations

from loratwin.twin.vllm_0_8_5.lora_manager import (
    RULES,
    AdapterLoads,
    apply_adapters,
    lora_hash_order,
    preloaded,
)

__all__ = ["RULES", "AdapterLoads", "apply_adapters", "lora_hash_order", "preloaded"]
