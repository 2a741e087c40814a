"""What vLLM 0.8.5's GPU model runner does that sets a step's cost
(``vllm/v1/worker/gpu_model_runner.py``, ``vllm/config.py``, ``vllm/lora/ops/triton_ops``).

* CUDA graphs are captured for 1, 2, 4 and every multiple of 8 up to 512 tokens, at most
  ``max_num_batched_tokens`` (``VllmConfig._set_cudagraph_sizes``, V1 branch); a step of M
  tokens runs padded to the next size, above 512 eagerly.
* The graphs are captured with LoRA active, so every step runs the LoRA kernels
  (``lora_shrink`` / ``lora_expand``), whose grids launch thread blocks for all
  ``max_loras + 1`` slot ids whatever the batch holds (see :mod:`loratwin.twin.cost`).
* The engine core is synchronous: the scheduler's CPU time adds to the step.
"""

from __future__ import annotations

from loratwin.twin.release import ModelRunnerRules


def cudagraph_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> tuple[int, ...]:
    """Token counts with a captured CUDA graph, ascending."""
    sizes = [1, 2, 4, *range(8, 513, 8)]
    return tuple(s for s in sizes if s <= max_num_batched_tokens)


RULES = ModelRunnerRules(
    cudagraph_sizes=cudagraph_sizes,
    lora_kernels_without_lora=True,
    specialize_active_lora_supported=False,
)
