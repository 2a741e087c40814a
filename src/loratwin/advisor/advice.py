"""The advisor itself: a batch sweep in, one :class:`Advice` per (model, setting) out.

Pure functions on a pandas DataFrame in the sweep schema (:mod:`loratwin.advisor.sweep`), so a
measured sweep and one produced by the digital twin go through the same code.

For each curve the advisor

1. selects B_opt with a rule (:mod:`loratwin.advisor.rules`; default rule (b), L = 3);
2. recommends ``max_num_seqs`` = B_opt (on the rule's batch axis: with the realised axis this
   caps the batch at the largest batch that was actually reached within the latency bound);
3. computes the KV memory used and freed at B_opt and the ``gpu_memory_utilization`` that keeps
   just that KV (:mod:`loratwin.advisor.memory`);
4. reports the throughput kept: ``total_token_throughput_tok_s`` at B_opt over the best
   throughput of the curve (all runs, preempted ones included), %;
5. optionally, with a fitted :class:`~loratwin.advisor.replication.ReplicationModel`, estimates
   how many replicas at B_opt fit on the GPU and their aggregate throughput.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from loratwin.advisor.memory import (
    PAPER_GPU_MEMORY_GIB,
    MemoryAdvice,
    kv_pool_gib,
    memory_at_batch,
)
from loratwin.advisor.replication import (
    ReplicationEstimate,
    ReplicationModel,
    ThroughputCurve,
    estimate_replication,
)
from loratwin.advisor.rules import (
    AXIS_COLUMNS,
    LatencyGrowthRule,
    Rule,
    candidate_runs,
    make_rule,
    required_columns,
    select_batch,
)
from loratwin.advisor.sweep import (
    CONFIGURED_BATCH_COLUMN,
    PREEMPTION_COLUMN,
    THROUGHPUT_COLUMN,
    SweepKey,
    split_sweep,
    validate_sweep,
)
from loratwin.errors import ConfigError, DataError


@dataclass(frozen=True)
class AdvisorOptions:
    """Settings of the advisor beyond the rule.

    Parameters
    ----------
    gpu_memory_gib:
        Denominator of ``freed_pct_of_gpu_memory``, GiB. Default 64, the nominal capacity the
        paper divides by (see :data:`~loratwin.advisor.memory.PAPER_GPU_MEMORY_GIB`).
    kv_headroom:
        Extra KV memory reserved above the measured peak at B_opt when recommending
        ``gpu_memory_utilization`` and sizing replicas, fraction (0.1 = 10 %). Default 0.

    Raises
    ------
    ConfigError
        For a non-positive ``gpu_memory_gib`` or a negative ``kv_headroom``.
    """

    gpu_memory_gib: float = PAPER_GPU_MEMORY_GIB
    kv_headroom: float = 0.0

    def __post_init__(self) -> None:
        if not self.gpu_memory_gib > 0:
            raise ConfigError(f"must be > 0 GiB, got {self.gpu_memory_gib}",
                              field="gpu_memory_gib")
        if not self.kv_headroom >= 0:
            raise ConfigError(f"must be >= 0, got {self.kv_headroom}", field="kv_headroom")


@dataclass(frozen=True)
class Advice:
    """The advisor's answer for one curve (one model under one setting).

    Attributes
    ----------
    key:
        Model and setting (``output_len``, tokens, or ``None``).
    rule:
        The rule that produced it.
    b_opt:
        B_opt on the rule's batch axis, sequences (``None`` when no run qualifies).
    max_num_seqs:
        Recommended ``max_num_seqs`` (= B_opt), sequences.
    source_max_num_seqs:
        Configured ``max_num_seqs`` of the run selected as B_opt.
    latency_ms, latency_limit_ms:
        Mean TPOT/ITL at B_opt and the bound applied, ms.
    reference_batch:
        Batch of the reference run (rules a, b), sequences.
    eta:
        Batching efficiency at B_opt (rule a).
    throughput_tok_s, max_throughput_tok_s:
        Throughput at B_opt and best throughput of the curve, tokens/s.
    memory:
        KV memory and recommended utilisation at B_opt.
    replication:
        Replication estimate, when a replication model was given.
    note:
        Why no B_opt was found, when ``b_opt`` is ``None``.
    """

    key: SweepKey
    rule: Rule
    b_opt: float | None
    max_num_seqs: int | None
    source_max_num_seqs: int | None
    latency_ms: float | None
    latency_limit_ms: float | None
    reference_batch: float | None
    eta: float | None
    throughput_tok_s: float | None
    max_throughput_tok_s: float
    memory: MemoryAdvice | None
    replication: ReplicationEstimate | None
    note: str | None = None

    @property
    def feasible(self) -> bool:
        """True when a run qualified as B_opt."""
        return self.b_opt is not None

    @property
    def throughput_kept_pct(self) -> float | None:
        """Throughput at B_opt over the curve's best throughput, %."""
        if self.throughput_tok_s is None:
            return None
        return self.throughput_tok_s / self.max_throughput_tok_s * 100.0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form; the first nine keys are the documented result schema."""
        mem = self.memory
        out: dict[str, object] = {
            "model": self.key.model,
            "output_len": self.key.output_len,
            "b_opt": _number(self.b_opt),
            "max_num_seqs": self.max_num_seqs,
            "gpu_memory_utilization": None if mem is None else mem.gpu_memory_utilization,
            "kv_used_gib": None if mem is None else mem.kv_used_gib,
            "freed_gib": None if mem is None else mem.freed_gib,
            "freed_pct_of_gpu_memory": None if mem is None else mem.freed_pct_of_gpu_memory,
            "throughput_kept_pct": self.throughput_kept_pct,
            "feasible": self.feasible,
            "rule": self.rule.name,
            "batch_axis": self.rule.batch_axis,
            "latency_metric": self.rule.latency,
            "source_max_num_seqs": self.source_max_num_seqs,
            "latency_ms": self.latency_ms,
            "latency_limit_ms": self.latency_limit_ms,
            "reference_batch": _number(self.reference_batch),
            "eta": self.eta,
            "throughput_tok_s": self.throughput_tok_s,
            "max_throughput_tok_s": self.max_throughput_tok_s,
            "kv_pool_gib": None if mem is None else mem.kv_pool_gib,
            "kv_usage_peak_frac": None if mem is None else mem.kv_usage_peak_frac,
            "gpu_memory_gib": None if mem is None else mem.gpu_memory_gib,
            "replication": None if self.replication is None else self.replication.to_dict(),
            "note": self.note,
        }
        return out


def _number(value: float | None) -> float | int | None:
    """An integral float as int (batches read from integer columns), else unchanged."""
    if value is not None and float(value).is_integer():
        return int(value)
    return value


def _resolve_rule(rule: Rule | str) -> Rule:
    return make_rule(rule) if isinstance(rule, str) else rule


def _advise_curve(
    key: SweepKey,
    frame: pd.DataFrame,
    rule: Rule,
    options: AdvisorOptions,
    replication_model: ReplicationModel | None,
) -> Advice:
    best_tput = float(frame[THROUGHPUT_COLUMN].max())
    sel = select_batch(frame, rule)
    if sel is None:
        n_pre = int((frame[PREEMPTION_COLUMN] > 0).sum())
        why = (f"no run meets the rule ({len(frame)} runs, {n_pre} with preemptions"
               f"{' excluded' if not rule.include_preempted else ''})")
        return Advice(key=key, rule=rule, b_opt=None, max_num_seqs=None,
                      source_max_num_seqs=None, latency_ms=None, latency_limit_ms=None,
                      reference_batch=None, eta=None, throughput_tok_s=None,
                      max_throughput_tok_s=best_tput, memory=None, replication=None, note=why)
    row: pd.Series = frame.loc[sel.row]  # type: ignore[assignment]  # one label -> one row
    memory = memory_at_batch(row, kv_pool_gib(frame), gpu_memory_gib=options.gpu_memory_gib,
                             kv_headroom=options.kv_headroom)
    replication = None
    if replication_model is not None:
        curve = ThroughputCurve.from_frame(candidate_runs(frame, rule),
                                           AXIS_COLUMNS[rule.batch_axis])
        replication = estimate_replication(
            replication_model,
            curve,
            per_replica_batch=sel.b_opt,
            footprint_gib=memory.footprint_gib,
            budget_gib=float(row["gpu_memory_utilization"]) * memory.total_gpu_memory_gib,
            total_gpu_memory_gib=memory.total_gpu_memory_gib,
            baseline_tok_s=best_tput,
        )
    return Advice(
        key=key,
        rule=rule,
        b_opt=sel.b_opt,
        max_num_seqs=round(sel.b_opt),
        source_max_num_seqs=int(row[CONFIGURED_BATCH_COLUMN]),
        latency_ms=sel.latency_ms,
        latency_limit_ms=sel.latency_limit_ms,
        reference_batch=sel.reference_batch,
        eta=sel.eta,
        throughput_tok_s=float(row[THROUGHPUT_COLUMN]),
        max_throughput_tok_s=best_tput,
        memory=memory,
        replication=replication,
    )


def advise_sweep(
    sweep: pd.DataFrame,
    rule: Rule | str = "b",
    *,
    options: AdvisorOptions | None = None,
    replication_model: ReplicationModel | None = None,
) -> tuple[Advice, ...]:
    """Advise every curve (model x setting) of a batch sweep.

    Parameters
    ----------
    sweep:
        One row per (model, max_num_seqs[, output_len]); the columns are documented in
        :mod:`loratwin.advisor.sweep` and :func:`loratwin.advisor.rules.required_columns`.
    rule:
        A rule object, or a rule letter ``"a"``, ``"b"`` or ``"c"`` with default parameters
        (rule (c) has no default SLO, so pass a :class:`~loratwin.advisor.rules.SloRule`).
        Default: rule (b) with L = 3.
    options:
        Memory settings (default :class:`AdvisorOptions`).
    replication_model:
        When given, each advice includes a replication estimate.

    Returns
    -------
    tuple of Advice
        In order of first appearance of each (model, setting) in ``sweep``.

    Raises
    ------
    DataError
        Missing, non-numeric or empty columns; duplicate runs.
    ConfigError
        Unknown rule or invalid rule parameters.
    """
    rule = _resolve_rule(rule)
    opts = options or AdvisorOptions()
    clean = validate_sweep(sweep, required_columns(rule))
    return tuple(_advise_curve(key, frame, rule, opts, replication_model)
                 for key, frame in split_sweep(clean))


def advise_max_num_seqs(
    sweep: pd.DataFrame,
    rule: Rule | str = "b",
    *,
    options: AdvisorOptions | None = None,
    replication_model: ReplicationModel | None = None,
) -> Advice:
    """Advise one curve: a sweep of a single model under a single setting.

    This is the entry point for callers that sweep one server at a time (e.g. the placement,
    per GPU, on a sweep generated by the digital twin). ``Advice.max_num_seqs`` is the
    recommendation; ``Advice.memory.freed_gib`` with
    :func:`~loratwin.advisor.memory.freed_kv_tokens` gives the freed KV in tokens.

    Parameters
    ----------
    sweep, rule, options, replication_model:
        As in :func:`advise_sweep`.

    Raises
    ------
    DataError
        As :func:`advise_sweep`, or when the sweep holds more than one (model, setting).
    ConfigError
        Unknown rule or invalid rule parameters.
    """
    advices = advise_sweep(sweep, rule, options=options, replication_model=replication_model)
    if len(advices) != 1:
        labels = "; ".join(a.key.label() for a in advices)
        raise DataError(f"expected one model and setting, got {len(advices)}: {labels}",
                        field="model")
    return advices[0]


def advice_report(
    advices: tuple[Advice, ...],
    rule: Rule,
    options: AdvisorOptions,
    replication_model: ReplicationModel | None = None,
) -> dict[str, object]:
    """The JSON document written by ``loratwin advise --json``.

    Returns
    -------
    dict
        ``{"results": [...], "rule": {...}, "options": {...}, "replication_model": {...}}``;
        each result has the keys of :meth:`Advice.to_dict`.
    """
    rule_info: dict[str, object] = {"name": rule.name, "description": rule.describe()}
    rule_info.update(asdict(rule))
    return {
        "results": [a.to_dict() for a in advices],
        "rule": rule_info,
        "options": {"gpu_memory_gib": options.gpu_memory_gib,
                    "kv_headroom": options.kv_headroom},
        "replication_model": None if replication_model is None else replication_model.to_dict(),
    }


DEFAULT_RULE = LatencyGrowthRule()
"""Rule (b) with L = 3 on the realised batch: the rule of the paper's memory figure."""
