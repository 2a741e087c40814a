"""vLLM 0.32 (0.32.x), V1 engine: the rules of each component the twin mirrors.

================== ===========================================================================
module             vLLM source
================== ===========================================================================
scheduler          ``vllm/v1/core/sched/scheduler.py``, ``async_scheduler.py``
kv_cache_manager   ``vllm/v1/core/kv_cache_manager.py``, ``block_pool.py``
lora_manager       ``vllm/lora/worker_manager.py``, ``vllm/lora/model_manager.py``
engine_args        ``vllm/engine/arg_utils.py``, ``vllm/config/*.py`` (defaults)
model_runner       ``vllm/v1/worker/gpu_model_runner.py``, ``vllm/v1/cudagraph_dispatcher.py``
================== ===========================================================================
"""

from loratwin.twin.release import ReleaseRules
from loratwin.twin.vllm_0_32 import (
    engine_args,
    kv_cache_manager,
    lora_manager,
    model_runner,
    scheduler,
)

RULES = ReleaseRules(
    version="0.32",
    scheduler=scheduler.RULES,
    kv_cache=kv_cache_manager.RULES,
    lora_manager=lora_manager.RULES,
    defaults=engine_args.RULES,
    model_runner=model_runner.RULES,
)
