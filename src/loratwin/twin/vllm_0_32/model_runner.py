"""What vLLM 0.32's GPU model runner does that sets a step's cost
(``vllm/v1/worker/gpu_model_runner.py``, ``vllm/v1/cudagraph_dispatcher.py``,
``vllm/config/vllm.py`` ``_set_cudagraph_sizes``, ``vllm/lora/ops/triton_ops``,
``vllm/lora/punica_wrapper/punica_gpu.py``).

* CUDA graph sizes: 1, 2, 4, multiples of 8 below 256, multiples of 16 from 256, up to
  ``min(2 x max_num_seqs, 512, max_num_batched_tokens)`` (1024 instead of 512 on Blackwell),
  plus ``max_num_seqs`` and ``max_num_batched_tokens`` when they fit under that ceiling.
* ``cudagraph_specialize_lora`` (default on) captures separate graphs for steps without any
  LoRA request, which skip the LoRA kernels (``no_lora_flag_cpu``). Steps with LoRA still
  launch grids over ``max_loras + 1`` slot ids (``LoRAKernelMeta.meta_args`` passes
  ``default_num_active_loras_cpu``); only ``--specialize-active-lora`` (default off) sizes the
  grid by the active adapters, rounded up to a captured count (powers of 2 up to
  ``max_loras``, and ``max_loras + 1``; ``vllm/lora/utils.py`` ``get_captured_lora_counts``).
* With asynchronous scheduling the scheduler's CPU work for step n+1 overlaps the GPU work of
  step n (``EngineCore.step_with_batch_queue``): a step takes the longer of the two instead
  of their sum. The coefficients come from 0.8.5 measurements, so these timings are
  estimates until a profile measured on 0.32 exists.
"""

from __future__ import annotations

from loratwin.twin.release import ModelRunnerRules

DEFAULT_MAX_GRAPH_SIZE = 512


def cudagraph_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> tuple[int, ...]:
    """Token counts with a captured CUDA graph, ascending (no speculative decoding)."""
    ceiling = min(max_num_seqs * 2, DEFAULT_MAX_GRAPH_SIZE)
    uniform_decode = [max_num_seqs] if max_num_seqs <= ceiling else []
    ceiling = min(max_num_batched_tokens, ceiling)
    sizes = [s for s in (1, 2, 4) if s <= ceiling]
    if ceiling >= 8:
        sizes += list(range(8, min(ceiling + 1, 256), 8))
    if ceiling >= 256:
        sizes += list(range(256, ceiling + 1, 16))
    if max_num_batched_tokens <= ceiling:
        sizes.append(max_num_batched_tokens)
    sizes += [s for s in uniform_decode if s <= max_num_batched_tokens]
    return tuple(sorted(set(sizes)))


def captured_lora_counts(max_loras: int) -> tuple[int, ...]:
    """Active-adapter counts with a captured graph under ``--specialize-active-lora``."""
    return tuple(n for n in range(1, max_loras + 2)
                 if (n & (n - 1)) == 0 or n == max_loras + 1)


RULES = ModelRunnerRules(
    cudagraph_sizes=cudagraph_sizes,
    lora_kernels_without_lora=False,
    specialize_active_lora_supported=True,
)
