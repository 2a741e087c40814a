"""vLLM 0.32's defaults of the flags the twin honours (``vllm/engine/arg_utils.py``
``EngineArgs.get_batch_defaults`` / ``_set_default_max_num_seqs_and_batched_tokens_args``,
``vllm/config/cache.py``, ``vllm/config/scheduler.py``).

* ``--gpu-memory-utilization`` 0.92 (was 0.9).
* OpenAI server defaults by GPU memory: at least 160 GiB (B200/B300) 16384 batched tokens and
  1024 sequences; at least 70 GiB and not an A100 (H100 80 GB, H200) 8192 and 1024; otherwise
  2048 and 256 (the H100 64 GB of the bundled profiles). CPU servers: 2048 and 128 per worker.
* A defaulted ``max_num_seqs`` is lowered to ``max_num_batched_tokens`` when that is smaller.
* Asynchronous scheduling defaults to on (``VllmConfig.__post_init__``).
* ``--max-lora-rank`` one of 1, 8, 16, 32, 64, 128, 256, 320, 512
  (``vllm/config/lora.py`` ``MaxLoRARanks``).
"""

from __future__ import annotations

from loratwin.twin.release import EngineDefaults


def batch_defaults(gpu_memory_gib: float, gpu_name: str) -> tuple[int, int]:
    """``(max_num_batched_tokens, max_num_seqs)`` defaults of ``vllm serve`` on this GPU."""
    if gpu_memory_gib >= 160.0:
        return 16384, 1024
    if gpu_memory_gib >= 70.0 and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


RULES = EngineDefaults(
    gpu_memory_utilization=0.92,
    batch_defaults=batch_defaults,
    max_num_seqs_capped_by_batched_tokens=True,
    max_lora_ranks=(1, 8, 16, 32, 64, 128, 256, 320, 512),
)
