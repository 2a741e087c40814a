"""vLLM 0.6.3's KV block accounting (``vllm/core/block_manager.py``, block manager v2).

V0's ``CpuGpuBlockAllocator`` hands every GPU block of the profiled pool to sequences; unlike
V1's ``BlockPool`` it keeps no ``null_block``.
"""

from __future__ import annotations

from loratwin.twin.release import KVCacheRules

RULES = KVCacheRules(reserved_blocks=0)
