"""vLLM 0.8.5 (April 2025), V1 engine: the rules of each component the twin mirrors.

================== ===========================================================================
module             vLLM source
================== ===========================================================================
scheduler          ``vllm/v1/core/sched/scheduler.py``: ``schedule()``, ``update_from_output()``
kv_cache_manager   ``vllm/v1/core/kv_cache_manager.py``, ``block_pool.py``
lora_manager       ``vllm/lora/worker_manager.py``, ``vllm/lora/models.py``
engine_args        ``vllm/engine/arg_utils.py``, ``vllm/config.py`` (defaults)
model_runner       ``vllm/v1/worker/gpu_model_runner.py``, ``vllm/lora/ops/triton_ops``
================== ===========================================================================
"""

from loratwin.twin.release import ReleaseRules
from loratwin.twin.vllm_0_8_5 import (
    engine_args,
    kv_cache_manager,
    lora_manager,
    model_runner,
    scheduler,
)

RULES = ReleaseRules(
    version="0.8.5",
    scheduler=scheduler.RULES,
    kv_cache=kv_cache_manager.RULES,
    lora_manager=lora_manager.RULES,
    defaults=engine_args.RULES,
    model_runner=model_runner.RULES,
)
