"""vLLM 0.6.3 (October 2024), V0 engine: the rules the twin applies to it.

The bundled "Mind the Memory Gap" batch sweeps (``../shared/data/bca``) ran a fork of vLLM main
of 2024-10-18 (upstream ``d2b1bf55``, between v0.6.3.post1 and v0.6.4; version string
``0.5.2.dev1210+g6f078ea3c``), V0 engine, block manager v2. What the twin models of it:

================== ===========================================================================
module             what differs from 0.8.5 (vLLM source)
================== ===========================================================================
model_runner       the engine loop's host CPU time per step and per sequence (``vllm/engine/
                   llm_engine.py``, ``vllm/worker/model_runner.py``, ``vllm/core/scheduler.py``,
                   ``vllm/engine/output_processor``), CUDA graphs for batches of 1-256
kv_cache_manager   no reserved block (``vllm/core/block_manager.py``, v2)
engine_args        ``max_num_seqs`` 256 and ``max_num_batched_tokens`` 2048 by default
scheduler          chunked prefill optional, off by default (prompts in steps of their own);
                   otherwise the 0.8.5 (V1) rules (``vllm/core/scheduler.py``)
lora_manager       the 0.8.5 rules (same ``vllm/lora/worker_manager.py`` lineage)
================== ===========================================================================

V0's scheduler without chunked prefill runs prompts in steps of their own (decodes wait); the
twin prices such a step as two but keeps V1's admission order, so the V0 figures are estimates
of throughput and inter-token latency, not of the step sequence.
"""

from loratwin.twin.release import ReleaseRules
from loratwin.twin.vllm_0_6_3 import engine_args, kv_cache_manager, model_runner, scheduler
from loratwin.twin.vllm_0_8_5 import lora_manager

RULES = ReleaseRules(
    version="0.6.3",
    scheduler=scheduler.RULES,
    kv_cache=kv_cache_manager.RULES,
    lora_manager=lora_manager.RULES,
    defaults=engine_args.RULES,
    model_runner=model_runner.RULES,
)
