"""The surrogate's targets: what a data-set row records and what a surrogate may predict.

One list, used by the data set, training, the surrogate file and the CLI, so that a new
target is one entry here (plus its twin metric in :class:`loratwin.twin.metrics.SimMetrics`):

- regression targets, in output order: total throughput (tok/s), mean ITL (ms), mean TTFT
  (ms), p99 TTFT (ms, the 99th percentile of the completed requests' TTFT, as vLLM's
  ``benchmark_serving`` reports it);
- the classification target ``starvation`` (the papers' rule: total throughput below 0.9 x
  the offered load, Agullo et al., arXiv 2508.08343 Sec. 4).

A surrogate file must hold the :data:`REQUIRED_TARGETS`; the others are optional (files
trained on data sets made before a target existed predict NaN for it and say so in
:meth:`loratwin.surrogate.model.Surrogate.has_target`).
"""

from __future__ import annotations

#: Regression targets, in output order (names of the twin's :class:`SimMetrics` fields).
REGRESSION_TARGETS: tuple[str, ...] = (
    "total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms", "p99_ttft_ms",
)
#: The classification target.
CLASS_TARGET = "starvation"
#: Every target of a data-set row.
TARGETS: tuple[str, ...] = (*REGRESSION_TARGETS, CLASS_TARGET)
#: Targets every surrogate file has (those of format version 3, before ``p99_ttft_ms``).
REQUIRED_TARGETS: tuple[str, ...] = (
    "total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms", CLASS_TARGET,
)
#: Regression targets that are latencies (ms), trained with the latency transforms.
LATENCY_TARGETS: tuple[str, ...] = ("mean_itl_ms", "mean_ttft_ms", "p99_ttft_ms")
#: Short labels for tables.
SHORT_NAMES: dict[str, str] = {
    "total_throughput_tok_s": "throughput", "mean_itl_ms": "ITL", "mean_ttft_ms": "TTFT",
    "p99_ttft_ms": "p99 TTFT", "starvation": "starvation", "served_fraction": "served fraction",
}
