"""vLLM 0.33's flag defaults: those of 0.32 (:mod:`loratwin.twin.vllm_0_32.engine_args`;
``vllm/engine/arg_utils.py``); new only: a GB10 (DGX Spark) stays on the small-GPU tier."""

from __future__ import annotations

from loratwin.twin.vllm_0_32.engine_args import RULES, batch_defaults

__all__ = ["RULES", "batch_defaults"]
