"""What vLLM 0.6.3's V0 engine does that sets a step's cost.

* **Host CPU time.** The V0 engine loop is Python work per step and per sequence, run between
  the GPU forward passes: ``Scheduler.schedule()`` walks every running ``SequenceGroup``
  (block-table appends, ``SequenceGroupMetadata`` built per sequence; ``vllm/core/
  scheduler.py``), ``ModelInputForGPUBuilder`` builds the input lists sequence by sequence
  (``vllm/worker/model_runner.py``), the sampler's output is pythonised per sequence and
  ``process_model_outputs`` appends each token, detokenises it incrementally and checks the
  stop conditions (``vllm/engine/llm_engine.py``, ``output_processor/single_step.py``,
  ``detokenizer.py``). V1 moved this into a separate process and vectorised it. The twin adds
  ``HOST_STEP_S + HOST_PER_SEQ_S x sequences`` to each step, on top of the V1 host costs the
  profile's coefficients hold. The two constants are fitted on the measured ShareGPT batch
  sweep of one model only (``benchmarks/v0_host_fit.py``; see ``docs/prior.md``), shared by
  all models.
* CUDA graphs are captured for decode batches of 1, 2, 4 and every multiple of 8 up to
  ``min(max_num_seqs, 256)`` rounded up to 8 (``_BATCH_SIZES_TO_CAPTURE``,
  ``_get_max_graph_batch_size`` in ``vllm/worker/model_runner.py``).
* LoRA: the Punica kernels of that release are not modelled; the 0.8.5 kernel costs are used.
"""

from __future__ import annotations

from loratwin.twin.release import ModelRunnerRules

#: Host CPU time per engine step beyond V1's, s: the grid point (``benchmarks/v0_host_fit.py``)
#: with the lowest throughput SMAPE on Llama-2-13B's ShareGPT sweep alone, so that the sweeps
#: of OPT-1.3B, OPT-2.7B and Llama-2-7B are held out. Fitted on the prior with one fixed cost
#: per step; kept with the split (per step + per layer) fixed cost, where the same fit walks
#: off the grid (``docs/prior.md``, "The V0 constants under the split fixed cost").
HOST_STEP_S = 0.5e-3
#: Host CPU time per scheduled sequence and step beyond V1's, s (fitted with ``HOST_STEP_S``).
HOST_PER_SEQ_S = 45e-6
#: Largest decode batch V0 captures a CUDA graph for (``_BATCH_SIZES_TO_CAPTURE[-1]``).
MAX_GRAPH_BATCH = 256


def cudagraph_sizes(max_num_seqs: int, max_num_batched_tokens: int) -> tuple[int, ...]:
    """Batch sizes with a captured CUDA graph, ascending."""
    top = min(-(-max_num_seqs // 8) * 8, MAX_GRAPH_BATCH)
    sizes = [1, 2, 4, *range(8, MAX_GRAPH_BATCH + 1, 8)]
    return tuple(s for s in sizes if s <= top and s <= max_num_batched_tokens)


RULES = ModelRunnerRules(
    cudagraph_sizes=cudagraph_sizes,
    lora_kernels_without_lora=True,
    specialize_active_lora_supported=False,
    host_step_s=HOST_STEP_S,
    host_per_seq_s=HOST_PER_SEQ_S,
)
