"""Batching configuration advisor (BCA) after "Mind the Memory Gap" (arXiv:2503.08311).

From a batch sweep (throughput, latency, KV use and preemptions per ``max_num_seqs``) the advisor
picks B_opt, the largest batch that is still worth it, and recommends ``max_num_seqs`` and
``gpu_memory_utilization``, reports the KV memory it frees, and estimates what replicating the
model into that memory would deliver.

Modules
-------
- :mod:`~loratwin.advisor.sweep`: load, validate and split sweeps (documents the columns).
- :mod:`~loratwin.advisor.rules`: the three B_opt rules (a) efficiency, (b) latency growth,
  (c) absolute SLO.
- :mod:`~loratwin.advisor.memory`: KV used/freed and the recommended utilisation.
- :mod:`~loratwin.advisor.replication`: replicas per GPU, calibrated on measured runs.
- :mod:`~loratwin.advisor.advice`: the advisor (``advise_sweep``, ``advise_max_num_seqs``).
- :mod:`~loratwin.advisor.plot`: the figure (imported on demand; needs matplotlib).
- :mod:`~loratwin.advisor.twin_sweep`: sweeps from the digital twin (not available yet).
"""

from loratwin.advisor.advice import (
    DEFAULT_RULE,
    Advice,
    AdvisorOptions,
    advice_report,
    advise_max_num_seqs,
    advise_sweep,
)
from loratwin.advisor.memory import (
    PAPER_GPU_MEMORY_GIB,
    MemoryAdvice,
    freed_kv_tokens,
    recommend_gpu_memory_utilization,
)
from loratwin.advisor.replication import (
    ReplicationEstimate,
    ReplicationModel,
    bundled_replication_model,
    fit_replication_model,
    measured_replication_gains,
)
from loratwin.advisor.rules import (
    EfficiencyRule,
    LatencyGrowthRule,
    Rule,
    SloRule,
    batching_efficiency,
    make_rule,
)
from loratwin.advisor.sweep import BUNDLED_SWEEPS, SweepKey, read_sweep, validate_sweep

__all__ = [
    "BUNDLED_SWEEPS",
    "DEFAULT_RULE",
    "PAPER_GPU_MEMORY_GIB",
    "Advice",
    "AdvisorOptions",
    "EfficiencyRule",
    "LatencyGrowthRule",
    "MemoryAdvice",
    "ReplicationEstimate",
    "ReplicationModel",
    "Rule",
    "SloRule",
    "SweepKey",
    "advice_report",
    "advise_max_num_seqs",
    "advise_sweep",
    "batching_efficiency",
    "bundled_replication_model",
    "fit_replication_model",
    "freed_kv_tokens",
    "make_rule",
    "measured_replication_gains",
    "read_sweep",
    "recommend_gpu_memory_utilization",
    "validate_sweep",
]
