"""vLLM 0.33's model-runner cost rules: those of 0.32 (:mod:`loratwin.twin.vllm_0_32.model_runner`;
CUDA graph sizes, ``cudagraph_specialize_lora``, ``LoRAKernelMeta`` unchanged)."""

from __future__ import annotations

from loratwin.twin.vllm_0_32.model_runner import RULES, captured_lora_counts, cudagraph_sizes

__all__ = ["RULES", "captured_lora_counts", "cudagraph_sizes"]
