"""vLLM 0.8.5's defaults of the flags the twin honours (``vllm/engine/arg_utils.py``,
``vllm/config.py``).

* ``--gpu-memory-utilization`` 0.9 (``CacheConfig``), ``--block-size`` 16 on CUDA.
* ``EngineArgs._set_default_args_v1``: for the OpenAI server (``UsageContext.OPENAI_API_SERVER``)
  on a GPU of at least 70 GiB (H100 80 GB, MI300x) ``max_num_batched_tokens`` 8192 and
  ``max_num_seqs`` 1024, else 2048 and 256 (the H100 64 GB of the bundled profiles reports
  63.4 GiB). A given ``max_num_batched_tokens`` below the default ``max_num_seqs`` is refused
  (``SchedulerConfig._verify_args``).
* V1 always runs chunked prefill; prefix caching defaults to on (see ``kv_cache_manager``).
* ``--max-lora-rank`` one of 8, 16, 32, 64, 128, 256, 320, 512
  (``vllm/config.py`` ``LoRAConfig.__post_init__``).
"""

from __future__ import annotations

from loratwin.twin.release import EngineDefaults

GIB_LARGE_GPU = 70.0


def batch_defaults(gpu_memory_gib: float, gpu_name: str) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` defaults of ``vllm serve`` on this GPU."""
    if gpu_memory_gib >= GIB_LARGE_GPU:
        return 8192, 1024
    return 2048, 256


RULES = EngineDefaults(
    gpu_memory_utilization=0.9,
    batch_defaults=batch_defaults,
    max_num_seqs_capped_by_batched_tokens=False,
    max_lora_ranks=(8, 16, 32, 64, 128, 256, 320, 512),
)
