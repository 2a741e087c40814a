"""vLLM 0.6.3's defaults of the flags the twin honours (``vllm/engine/arg_utils.py``,
``vllm/config.py``).

* ``--gpu-memory-utilization`` 0.9, ``--block-size`` 16.
* ``max_num_seqs`` 256 on every GPU (``EngineArgs.max_num_seqs``); ``max_num_batched_tokens``
  2048 (``SchedulerConfig``: ``max(max_model_len, 2048)`` without chunked prefill, which
  the twin takes as 2048; give ``max_num_batched_tokens`` for a longer ``max_model_len``).
* ``--max-lora-rank`` one of 8, 16, 32, 64, 128, 256
  (``vllm/config.py`` ``LoRAConfig.__post_init__``).
"""

from __future__ import annotations

from loratwin.twin.release import EngineDefaults


def batch_defaults(gpu_memory_gib: float, gpu_name: str) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` defaults of the V0 server (any GPU)."""
    return 2048, 256


RULES = EngineDefaults(
    gpu_memory_utilization=0.9,
    batch_defaults=batch_defaults,
    max_num_seqs_capped_by_batched_tokens=False,
    max_lora_ranks=(8, 16, 32, 64, 128, 256),
)
