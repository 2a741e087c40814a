"""vLLM 0.32's KV cache accounting (``vllm/v1/core/kv_cache_manager.py``,
``kv_cache_coordinator.py``, ``single_type_kv_cache_manager.py``, ``block_pool.py``).

Unchanged from 0.8.5 for a model with one full-attention KV group: blocks of ``block_size``
tokens allocated as a request's computed tokens grow, one ``null_block`` kept out of the pool,
all blocks of a finished or preempted request freed at once. New in ``allocate_slots``: the
admission check of the whole sequence (``full_sequence_must_fit``, see ``scheduler``) and a
``watermark`` of free blocks for admissions (default 0). Prefix caching (default on) keys
blocks by tokens and adapter ``(lora_name, lora_path)``; the twin serves as with
``--no-enable-prefix-caching``, as for 0.8.5.
"""

from __future__ import annotations

from loratwin.twin.vllm_0_8_5.kv_cache_manager import RULES, usable_blocks

__all__ = ["RULES", "usable_blocks"]
