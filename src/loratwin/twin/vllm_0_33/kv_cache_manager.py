"""vLLM 0.33's KV cache accounting: unchanged from 0.32 for the twin's requests
(:mod:`loratwin.twin.vllm_0_32.kv_cache_manager`; ``vllm/v1/core/kv_cache_manager.py``,
``block_pool.py``)."""

from __future__ import annotations

from loratwin.twin.vllm_0_32.kv_cache_manager import RULES, usable_blocks

__all__ = ["RULES", "usable_blocks"]
