"""The three B_opt rules of the batching configuration advisor.

Every rule picks, within one curve of a batch sweep (one model under one setting), the largest
batch that is still "worth it", and returns it as a :class:`Selection`. The rules follow
Recasens, Agullo et al., "Mind the Memory Gap" (arXiv:2503.08311), and the way their figures were
recomputed from the published runs (``bca/expected_results.md`` of the project's data):

(a) :class:`EfficiencyRule` -- batching efficiency (paper, section on the batching configuration
    advisor; the authors' B_opt illustration for OPT-1.3B). eta(B) = T(B) / (B x T(1)) with T
    the request throughput; keep B with eta(B) > eps and mean ITL <= L x ITL at the batch
    nearest 32. Defaults: configured batch axis (``max_num_seqs``), eps = 0.1, L = 2.
(b) :class:`LatencyGrowthRule` -- latency growth (the rule behind the paper's memory-breakdown
    figure). The largest realised batch (``running_max``) whose mean TPOT is <= L x TPOT at the
    realised batch nearest 32. Default L = 3.
(c) :class:`SloRule` -- absolute service-level objective. The largest batch whose mean TPOT (or
    ITL) is <= a given number of milliseconds.

Common conventions
------------------
- Batch axis: ``"realised"`` = ``running_max``, ``"configured"`` = ``max_num_seqs``.
- Reference run ("B about 32"): the candidate run whose batch is nearest ``ref_batch``; on a tie
  the smaller batch (the first in ascending order).
- B_opt is the largest qualifying batch; among runs with the same batch, the one with the
  smallest ``max_num_seqs``. Qualifying runs need not be contiguous.
- Runs with preemptions (``num_preemptions_total > 0``) are excluded before anything else,
  unless ``include_preempted`` is set. The authors' figure scripts kept them; with
  ``include_preempted=True`` the rules reproduce their numbers exactly, including Llama-2-13B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from loratwin.advisor.sweep import (
    CONFIGURED_BATCH_COLUMN,
    PREEMPTION_COLUMN,
    REALISED_BATCH_COLUMN,
)
from loratwin.errors import ConfigError

BatchAxis = Literal["realised", "configured"]
LatencyMetric = Literal["tpot", "itl"]

AXIS_COLUMNS: dict[str, str] = {
    "realised": REALISED_BATCH_COLUMN,
    "configured": CONFIGURED_BATCH_COLUMN,
}
"""Sweep column of each batch axis."""

LATENCY_COLUMNS: dict[str, str] = {"tpot": "mean_tpot_ms", "itl": "mean_itl_ms"}
"""Sweep column (ms) of each latency metric."""

RULE_NAMES: tuple[str, ...] = ("a", "b", "c")


def _check_common(latency: str, batch_axis: str) -> None:
    if latency not in LATENCY_COLUMNS:
        raise ConfigError(f"must be one of {', '.join(LATENCY_COLUMNS)}, got {latency!r}",
                          field="latency")
    if batch_axis not in AXIS_COLUMNS:
        raise ConfigError(f"must be one of {', '.join(AXIS_COLUMNS)}, got {batch_axis!r}",
                          field="batch_axis")


def _check_factor(latency_factor: float, ref_batch: float) -> None:
    if not np.isfinite(latency_factor) or latency_factor < 1.0:
        raise ConfigError(f"must be >= 1, got {latency_factor}", field="latency_factor")
    if not np.isfinite(ref_batch) or ref_batch <= 0:
        raise ConfigError(f"must be > 0, got {ref_batch}", field="ref_batch")


@dataclass(frozen=True)
class EfficiencyRule:
    """Rule (a): batching efficiency above ``eps`` and latency within ``L`` x latency at B ~ 32.

    Parameters
    ----------
    eps:
        Minimum batching efficiency eta(B) = T(B) / (B x T(1)), exclusive, in (0, 1).
        T(1) is the per-sequence throughput of the smallest batch of the curve, T(B0) / B0,
        which is the paper's T(1) when the sweep has a B = 1 run.
    latency_factor:
        L: maximum ratio of the latency to the reference latency (>= 1).
    latency:
        ``"itl"`` (mean inter-token latency, ms; default) or ``"tpot"``.
    batch_axis:
        ``"configured"`` (``max_num_seqs``; default, as the authors) or ``"realised"``.
    ref_batch:
        Batch of the reference run (nearest available), sequences.
    throughput_column:
        T, by default ``request_throughput_rps`` (requests/s) as the authors.
    include_preempted:
        Keep runs with preemptions as candidates.
    """

    eps: float = 0.1
    latency_factor: float = 2.0
    latency: LatencyMetric = "itl"
    batch_axis: BatchAxis = "configured"
    ref_batch: float = 32.0
    throughput_column: str = "request_throughput_rps"
    include_preempted: bool = False
    name: ClassVar[str] = "a"

    def __post_init__(self) -> None:
        if not 0.0 < self.eps < 1.0:
            raise ConfigError(f"must be in (0, 1), got {self.eps}", field="eps")
        _check_factor(self.latency_factor, self.ref_batch)
        _check_common(self.latency, self.batch_axis)

    def describe(self) -> str:
        """One-line description of the rule and its parameters."""
        return (f"(a) largest {_axis_text(self.batch_axis)} with eta(B) = T(B)/(B*T(1)) > "
                f"{self.eps:g} (T = {self.throughput_column}) and mean {self.latency.upper()} <= "
                f"{self.latency_factor:g} x {self.latency.upper()} at the batch nearest "
                f"{self.ref_batch:g}; {_preempt_text(self.include_preempted)}")


@dataclass(frozen=True)
class LatencyGrowthRule:
    """Rule (b): the largest batch whose latency stays within ``L`` x latency at B ~ 32.

    With the defaults this is the rule of the paper's memory-breakdown figure, and it reproduces
    its freed-memory numbers (63.23 %, 45.05 %, 10.51 % of 64 GB for OPT-1.3B, OPT-2.7B and
    Llama-2-7B at output length 390).

    Parameters
    ----------
    latency_factor:
        L (>= 1), default 3.
    latency:
        ``"tpot"`` (mean time per output token, ms; default) or ``"itl"``.
    batch_axis:
        ``"realised"`` (``running_max``; default, as the authors) or ``"configured"``.
    ref_batch:
        Batch of the reference run (nearest available), sequences.
    include_preempted:
        Keep runs with preemptions as candidates.
    """

    latency_factor: float = 3.0
    latency: LatencyMetric = "tpot"
    batch_axis: BatchAxis = "realised"
    ref_batch: float = 32.0
    include_preempted: bool = False
    name: ClassVar[str] = "b"

    def __post_init__(self) -> None:
        _check_factor(self.latency_factor, self.ref_batch)
        _check_common(self.latency, self.batch_axis)

    def describe(self) -> str:
        """One-line description of the rule and its parameters."""
        return (f"(b) largest {_axis_text(self.batch_axis)} with mean {self.latency.upper()} <= "
                f"{self.latency_factor:g} x {self.latency.upper()} at the batch nearest "
                f"{self.ref_batch:g}; {_preempt_text(self.include_preempted)}")


@dataclass(frozen=True)
class SloRule:
    """Rule (c): the largest batch whose mean latency meets an absolute SLO.

    Parameters
    ----------
    slo_ms:
        Latency objective, ms (> 0).
    latency:
        ``"tpot"`` (default) or ``"itl"``.
    batch_axis:
        ``"realised"`` (default) or ``"configured"``.
    include_preempted:
        Keep runs with preemptions as candidates.
    """

    slo_ms: float
    latency: LatencyMetric = "tpot"
    batch_axis: BatchAxis = "realised"
    include_preempted: bool = False
    name: ClassVar[str] = "c"

    def __post_init__(self) -> None:
        if not np.isfinite(self.slo_ms) or self.slo_ms <= 0:
            raise ConfigError(f"must be > 0 ms, got {self.slo_ms}", field="slo_ms")
        _check_common(self.latency, self.batch_axis)

    def describe(self) -> str:
        """One-line description of the rule and its parameters."""
        return (f"(c) largest {_axis_text(self.batch_axis)} with mean {self.latency.upper()} <= "
                f"{self.slo_ms:g} ms; {_preempt_text(self.include_preempted)}")


Rule = EfficiencyRule | LatencyGrowthRule | SloRule


def _axis_text(axis: str) -> str:
    return f"{axis} batch ({AXIS_COLUMNS[axis]})"


def _preempt_text(include: bool) -> str:
    return "runs with preemptions kept" if include else "runs with preemptions excluded"


def make_rule(
    name: str = "b",
    *,
    eps: float | None = None,
    latency_factor: float | None = None,
    slo_ms: float | None = None,
    latency: str | None = None,
    batch_axis: str | None = None,
    ref_batch: float | None = None,
    include_preempted: bool = False,
) -> Rule:
    """Build a rule from its letter and the parameters that were given.

    Parameters left as ``None`` take the rule's defaults. A parameter that the rule does not use
    is an error rather than silently ignored.

    Raises
    ------
    ConfigError
        Unknown rule name, a parameter the rule does not take, a missing ``slo_ms`` for rule
        (c), or an out-of-range value.
    """
    key = name.strip().lower()
    common: dict[str, object] = {"include_preempted": include_preempted}
    if latency is not None:
        common["latency"] = latency
    if batch_axis is not None:
        common["batch_axis"] = batch_axis
    if key not in RULE_NAMES:
        raise ConfigError(f"unknown rule {name!r}; use a, b or c", field="rule")
    if eps is not None and key != "a":
        raise ConfigError("only rule (a) takes eps", field="eps")
    if slo_ms is not None and key != "c":
        raise ConfigError("only rule (c) takes an SLO", field="slo_ms")
    if key == "c":
        if latency_factor is not None:
            raise ConfigError("rule (c) takes an absolute SLO, not a factor",
                              field="latency_factor")
        if ref_batch is not None:
            raise ConfigError("rule (c) has no reference batch", field="ref_batch")
        if slo_ms is None:
            raise ConfigError("rule (c) needs an SLO in ms", field="slo_ms")
        return SloRule(slo_ms=float(slo_ms), **common)  # type: ignore[arg-type]
    if latency_factor is not None:
        common["latency_factor"] = float(latency_factor)
    if ref_batch is not None:
        common["ref_batch"] = float(ref_batch)
    if key == "a":
        if eps is not None:
            common["eps"] = float(eps)
        return EfficiencyRule(**common)  # type: ignore[arg-type]
    return LatencyGrowthRule(**common)  # type: ignore[arg-type]


def required_columns(rule: Rule) -> tuple[str, ...]:
    """Sweep columns a rule reads, beyond the base columns of a sweep."""
    cols = [AXIS_COLUMNS[rule.batch_axis], LATENCY_COLUMNS[rule.latency]]
    if isinstance(rule, EfficiencyRule):
        cols.append(rule.throughput_column)
    return tuple(dict.fromkeys(cols))


@dataclass(frozen=True)
class Selection:
    """The run a rule selected in one curve.

    Attributes
    ----------
    row:
        Index label of the selected run in the curve's frame.
    b_opt:
        Its batch on the rule's axis, sequences.
    latency_ms:
        Its mean latency (TPOT or ITL), ms.
    latency_limit_ms:
        The latency bound the rule applied, ms.
    reference_batch:
        Batch of the reference run (rules a and b), else ``None``.
    reference_latency_ms:
        Latency of the reference run, ms (rules a and b), else ``None``.
    eta:
        Batching efficiency at B_opt (rule a), else ``None``.
    """

    row: int
    b_opt: float
    latency_ms: float
    latency_limit_ms: float
    reference_batch: float | None = None
    reference_latency_ms: float | None = None
    eta: float | None = None


def candidate_runs(frame: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """The runs of one curve a rule may select, sorted by (batch, max_num_seqs).

    Runs with preemptions are dropped unless ``rule.include_preempted``.
    """
    runs = frame
    if not rule.include_preempted:
        runs = runs[runs[PREEMPTION_COLUMN] <= 0]
    axis = AXIS_COLUMNS[rule.batch_axis]
    by = [axis] if axis == CONFIGURED_BATCH_COLUMN else [axis, CONFIGURED_BATCH_COLUMN]
    return runs.sort_values(by, kind="stable")


def batching_efficiency(batch: np.ndarray, throughput: np.ndarray) -> np.ndarray:
    """Batching efficiency eta(B) = T(B) / (B x T(1)) of a curve (dimensionless).

    Parameters
    ----------
    batch:
        Batches B, sequences, shape (n,), not necessarily sorted.
    throughput:
        T(B) in any throughput unit (requests/s for the paper), shape (n,).

    Returns
    -------
    numpy.ndarray
        eta, shape (n,). T(1) is taken as T(B0) / B0 at the smallest batch B0, which is the
        paper's definition when the sweep has a B = 1 run (source: arXiv:2503.08311, BCA).
    """
    b = np.asarray(batch, dtype=float)
    t = np.asarray(throughput, dtype=float)
    i0 = int(np.argmin(b))
    per_sequence = t[i0] / b[i0]
    return t / (b * per_sequence)


def _reference(runs: pd.DataFrame, axis: str, ref_batch: float) -> int:
    distance = np.abs(runs[axis].to_numpy(dtype=float) - ref_batch)
    return int(runs.index[int(np.argmin(distance))])  # argmin: first on ties = smaller batch


def select_batch(frame: pd.DataFrame, rule: Rule) -> Selection | None:
    """Apply a rule to one curve (one model, one setting) of a validated sweep.

    Parameters
    ----------
    frame:
        The runs of the curve, with the columns of :func:`required_columns` and
        ``num_preemptions_total``.
    rule:
        The rule.

    Returns
    -------
    Selection or None
        ``None`` when no run qualifies (all runs preempted, or an SLO below every measured
        latency).
    """
    runs = candidate_runs(frame, rule)
    if runs.empty:
        return None
    axis = AXIS_COLUMNS[rule.batch_axis]
    lat_col = LATENCY_COLUMNS[rule.latency]
    latency = runs[lat_col].to_numpy(dtype=float)
    ref_b: float | None = None
    ref_lat: float | None = None
    eta: np.ndarray | None = None
    if isinstance(rule, SloRule):
        limit = rule.slo_ms
        ok = latency <= limit
    else:
        ref = _reference(runs, axis, rule.ref_batch)
        ref_b = float(runs.at[ref, axis])
        ref_lat = float(runs.at[ref, lat_col])
        limit = rule.latency_factor * ref_lat
        ok = latency <= limit
        if isinstance(rule, EfficiencyRule):
            eta = batching_efficiency(runs[axis].to_numpy(),
                                      runs[rule.throughput_column].to_numpy())
            ok &= eta > rule.eps
    if not ok.any():
        return None
    batches = runs[axis].to_numpy(dtype=float)
    best = float(batches[ok].max())
    pos = int(np.flatnonzero(ok & (batches == best))[0])  # smallest max_num_seqs on ties
    return Selection(
        row=int(runs.index[pos]),
        b_opt=best,
        latency_ms=float(latency[pos]),
        latency_limit_ms=float(limit),
        reference_batch=ref_b,
        reference_latency_ms=ref_lat,
        eta=None if eta is None else float(eta[pos]),
    )
