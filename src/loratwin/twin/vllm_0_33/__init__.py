"""vLLM 0.33 (0.33.x), V1 engine: 0.32's rules but for the ``max_loras`` count (see ``scheduler``).

================== ===========================================================================
module             vLLM source
================== ===========================================================================
scheduler          ``vllm/v1/core/sched/scheduler.py``
kv_cache_manager   ``vllm/v1/core/kv_cache_manager.py`` (as 0.32)
lora_manager       ``vllm/lora/worker_manager.py`` (as 0.32)
engine_args        ``vllm/engine/arg_utils.py`` (as 0.32)
model_runner       ``vllm/v1/worker/gpu_model_runner.py`` (as 0.32)
================== ===========================================================================
"""

from loratwin.twin.release import ReleaseRules
from loratwin.twin.vllm_0_33 import (
    engine_args,
    kv_cache_manager,
    lora_manager,
    model_runner,
    scheduler,
)

RULES = ReleaseRules(
    version="0.33",
    scheduler=scheduler.RULES,
    kv_cache=kv_cache_manager.RULES,
    lora_manager=lora_manager.RULES,
    defaults=engine_args.RULES,
    model_runner=model_runner.RULES,
)
