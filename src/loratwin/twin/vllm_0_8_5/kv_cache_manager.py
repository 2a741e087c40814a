"""vLLM 0.8.5's KV cache accounting (``vllm/v1/core/kv_cache_manager.py``, ``block_pool.py``).

* Blocks of ``block_size`` tokens (16 on CUDA). ``allocate_slots(request, n)`` gives a request
  ``cdiv(num_computed_tokens + n, block_size) - len(blocks held)`` new blocks or fails (returns
  ``None``) when fewer are free; nothing is reserved ahead.
* ``BlockPool.__init__`` takes block 0 out of the free queue as the ``null_block``: a pool of
  N blocks (the "GPU KV cache size" logged at start-up is N x block_size tokens) serves at
  most N - 1 to requests.
* ``free(request)`` returns all blocks of a finished or preempted request at once.
* Prefix caching (on by default in V1) keys full blocks by their tokens and the adapter
  (``lora_int_id``, ``kv_cache_utils.generate_block_hash_extra_keys``). The twin serves as with
  ``--no-enable-prefix-caching`` (the setting of the measured runs): its requests share no
  prompt prefix, so the only effect would be a preempted request resuming from its blocks
  still cached, which the twin does not model.
"""

from __future__ import annotations

from loratwin.twin.release import KVCacheRules

RULES = KVCacheRules(reserved_blocks=1)  # BlockPool.null_block


def usable_blocks(num_gpu_blocks: int) -> int:
    """Blocks requests can hold in a pool of ``num_gpu_blocks`` (the null block is kept)."""
    return max(num_gpu_blocks - RULES.reserved_blocks, 0)
