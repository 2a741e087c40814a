"""Replicas of one model on one GPU: how many fit at B_opt, and the throughput to expect.

Once B_opt frees most of the KV pool, the freed memory can hold more replicas of the same model
(paper: Recasens, Agullo et al., arXiv:2503.08311, section on replication). Whether that pays
off depends on how the replicas share the GPU: with NVIDIA MPS their kernels overlap, without it
the GPU time-slices between processes. The measured runs are in ``bca/replication.csv``.

Calibration model
-----------------
One factor per sharing mode, phi_MPS and phi_noMPS, relates R replicas at per-replica batch b
to a *single* instance at the same total batch R x b::

    T_R(b) = phi_mode x T_1(R x b)          (tokens/s, for R >= 2)

T_1 is the single-instance throughput curve (``total_token_throughput_tok_s`` against the
batch), interpolated linearly between measured batches and held flat beyond them. phi is fitted
per mode as the geometric mean of measured / T_1(R x b) over the measured replication runs with
R >= 2, no chunked prefill and no preemption (the authors' table also drops preempted runs);
T_1 comes from the ShareGPT batch sweep, which has the same workload and server configuration.
phi > 1 means replication beats one instance holding the same sequences; the fit gives
phi_noMPS < 1 < phi_MPS, which is the paper's sign reversal.

A per-replica basis (T_R = phi x R x T_1(b), i.e. a per-mode efficiency of R independent
servers) was also tried: it cannot follow R = 2 and R = 4 with one factor (fit error about
30-40 % RMS against about 6 % for the total-batch basis), so it is not used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from loratwin.advisor.sweep import (
    BUNDLED_REPLICATION,
    BUNDLED_SWEEPS,
    CONFIGURED_BATCH_COLUMN,
    MODEL_COLUMN,
    PREEMPTION_COLUMN,
    THROUGHPUT_COLUMN,
    bundled_data_file,
    read_csv,
    require_columns,
)
from loratwin.errors import DataError

REPLICATION_COLUMNS: tuple[str, ...] = (
    MODEL_COLUMN,
    "replicas",
    "max_num_seqs_per_replica",
    "mps",
    "chunked_prefill",
    PREEMPTION_COLUMN,
    THROUGHPUT_COLUMN,
)
"""Columns of ``replication.csv`` the calibration reads."""


@dataclass(frozen=True)
class ThroughputCurve:
    """Single-instance throughput against batch, for interpolation.

    Attributes
    ----------
    batch:
        Strictly increasing batches, sequences.
    throughput_tok_s:
        Throughput at each batch, tokens/s (the mean when several runs share a batch).
    """

    batch: tuple[float, ...]
    throughput_tok_s: tuple[float, ...]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, batch_column: str) -> ThroughputCurve:
        """Build the curve from sweep runs (``total_token_throughput_tok_s`` vs ``batch_column``).

        Raises
        ------
        DataError
            If ``frame`` has no rows.
        """
        if frame.empty:
            raise DataError("no runs to build a throughput curve from", field=batch_column)
        means = frame.groupby(batch_column)[THROUGHPUT_COLUMN].mean().sort_index()
        return cls(
            batch=tuple(float(b) for b in means.index),
            throughput_tok_s=tuple(float(t) for t in means.to_numpy()),
        )

    def at(self, batch: float) -> float:
        """Throughput at ``batch`` (tokens/s): linear between runs, flat beyond the ends."""
        return float(np.interp(batch, self.batch, self.throughput_tok_s))


@dataclass(frozen=True)
class CalibrationPoint:
    """One measured replication run used to fit the model.

    Attributes
    ----------
    measured_tok_s, single_tok_s, predicted_tok_s:
        Measured aggregate throughput; T_1(R x b); phi_mode x T_1(R x b), all tokens/s.
    rel_error:
        predicted / measured - 1 (in-sample).
    loo_rel_error:
        The same with phi fitted without this run (NaN when it is the only run of its mode).
    """

    model: str
    replicas: int
    max_num_seqs_per_replica: int
    mps: bool
    measured_tok_s: float
    single_tok_s: float
    predicted_tok_s: float
    rel_error: float
    loo_rel_error: float


def _rms_pct(errors: list[float]) -> float:
    vals = [e for e in errors if not math.isnan(e)]
    return float(np.sqrt(np.mean(np.square(vals))) * 100.0) if vals else float("nan")


@dataclass(frozen=True)
class ReplicationModel:
    """Fitted replication factors (see the module docstring).

    Attributes
    ----------
    phi_mps, phi_no_mps:
        Aggregate throughput of R replicas over a single instance at the same total batch,
        with and without MPS (dimensionless).
    max_replicas:
        The largest R among the calibration runs; predictions stop there.
    points:
        The calibration runs with their fit errors.
    """

    phi_mps: float
    phi_no_mps: float
    max_replicas: int
    points: tuple[CalibrationPoint, ...]

    def phi(self, mps: bool) -> float:
        """The factor of a sharing mode."""
        return self.phi_mps if mps else self.phi_no_mps

    def predict(self, single: ThroughputCurve, per_replica_batch: float, replicas: int,
                mps: bool) -> float:
        """Aggregate throughput of ``replicas`` replicas at ``per_replica_batch``, tokens/s.

        For one replica this is the single-instance curve itself.
        """
        total = single.at(per_replica_batch * replicas)
        return total if replicas == 1 else self.phi(mps) * total

    def rms_error_pct(self, mps: bool | None = None) -> float:
        """In-sample RMS relative error, %, over one mode (or all runs when ``None``)."""
        return _rms_pct([p.rel_error for p in self.points if mps is None or p.mps == mps])

    def max_abs_error_pct(self) -> float:
        """Largest in-sample absolute relative error, %."""
        return float(max(abs(p.rel_error) for p in self.points) * 100.0)

    def loo_rms_error_pct(self) -> float:
        """Leave-one-out RMS relative error, % (runs alone in their mode are skipped)."""
        return _rms_pct([p.loo_rel_error for p in self.points])

    def summary(self) -> str:
        """One line: the factors and the fit error."""
        return (f"T_R = phi x T_1(R x b); phi_MPS = {self.phi_mps:.3f}, "
                f"phi_noMPS = {self.phi_no_mps:.3f}; fit error {self.rms_error_pct():.1f} % RMS "
                f"(max {self.max_abs_error_pct():.1f} %, leave-one-out "
                f"{self.loo_rms_error_pct():.1f} %) over {len(self.points)} measured runs")

    def to_dict(self) -> dict[str, object]:
        """JSON-ready description of the model and its fit error."""
        return {
            "formula": "T_R = phi_mode * T_1(R * b)",
            "phi_mps": self.phi_mps,
            "phi_no_mps": self.phi_no_mps,
            "max_replicas": self.max_replicas,
            "fit_rms_error_pct": self.rms_error_pct(),
            "fit_rms_error_pct_mps": self.rms_error_pct(True),
            "fit_rms_error_pct_no_mps": self.rms_error_pct(False),
            "fit_max_abs_error_pct": self.max_abs_error_pct(),
            "loo_rms_error_pct": self.loo_rms_error_pct(),
            "calibration_runs": [
                {
                    "model": p.model,
                    "replicas": p.replicas,
                    "max_num_seqs_per_replica": p.max_num_seqs_per_replica,
                    "mps": p.mps,
                    "measured_tok_s": p.measured_tok_s,
                    "predicted_tok_s": p.predicted_tok_s,
                    "rel_error_pct": p.rel_error * 100.0,
                }
                for p in self.points
            ],
        }


def _as_bool(series: pd.Series, column: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series
    text = series.astype(str).str.strip().str.lower()
    if not text.isin(["true", "false", "1", "0"]).all():
        raise DataError("must hold true/false values", field=column)
    return text.isin(["true", "1"])


def calibration_runs(replication: pd.DataFrame) -> pd.DataFrame:
    """The replication runs the model is fitted on: R >= 2, no chunked prefill, no preemption.

    Raises
    ------
    DataError
        For a missing column (see :data:`REPLICATION_COLUMNS`) or non-boolean flags.
    """
    require_columns(replication, REPLICATION_COLUMNS, what="replication table")
    runs = replication.copy()
    runs["mps"] = _as_bool(runs["mps"], "mps")
    runs["chunked_prefill"] = _as_bool(runs["chunked_prefill"], "chunked_prefill")
    keep = (runs["replicas"] >= 2) & ~runs["chunked_prefill"] & (runs[PREEMPTION_COLUMN] <= 0)
    return runs[keep]


def _single_curves(single_sweep: pd.DataFrame) -> dict[str, ThroughputCurve]:
    require_columns(
        single_sweep,
        (MODEL_COLUMN, CONFIGURED_BATCH_COLUMN, THROUGHPUT_COLUMN, PREEMPTION_COLUMN),
        what="single-instance sweep",
    )
    clean = single_sweep[single_sweep[PREEMPTION_COLUMN] <= 0]
    return {
        str(model): ThroughputCurve.from_frame(frame, CONFIGURED_BATCH_COLUMN)
        for model, frame in clean.groupby(MODEL_COLUMN)
    }


def _geo_mean(values: list[float]) -> float:
    return float(np.exp(np.mean(np.log(values))))


def fit_replication_model(
    replication: pd.DataFrame, single_sweep: pd.DataFrame
) -> ReplicationModel:
    """Fit phi_MPS and phi_noMPS on measured replication runs.

    Parameters
    ----------
    replication:
        Runs in the schema of ``bca/replication.csv`` (see :data:`REPLICATION_COLUMNS`).
    single_sweep:
        Single-instance batch sweep of the same workload and server configuration
        (``bca/batch_sweep_sharegpt.csv`` for the bundled runs), giving T_1.

    Raises
    ------
    DataError
        Missing columns, a replicated model absent from ``single_sweep``, or no usable run for
        one of the two modes.
    """
    runs = calibration_runs(replication)
    curves = _single_curves(single_sweep)
    ratios: list[tuple[pd.Series, float, float]] = []
    for _, run in runs.iterrows():
        model = str(run[MODEL_COLUMN])
        if model not in curves:
            raise DataError(f"model {model!r} has no single-instance runs", field=MODEL_COLUMN)
        replicas = int(run["replicas"])
        single = curves[model].at(float(run["max_num_seqs_per_replica"]) * replicas)
        measured = float(run[THROUGHPUT_COLUMN])
        ratios.append((run, single, measured))
    phis: dict[bool, float] = {}
    for mode in (True, False):
        values = [m / s for r, s, m in ratios if bool(r["mps"]) == mode]
        if not values:
            label = "with" if mode else "without"
            raise DataError(f"no usable replication run {label} MPS (R >= 2, no preemption)",
                            field="mps")
        phis[mode] = _geo_mean(values)
    points = []
    for i, (run, single, measured) in enumerate(ratios):
        mode = bool(run["mps"])
        others = [m / s for j, (r, s, m) in enumerate(ratios) if j != i and bool(r["mps"]) == mode]
        loo = _geo_mean(others) * single / measured - 1.0 if others else float("nan")
        predicted = phis[mode] * single
        points.append(CalibrationPoint(
            model=str(run[MODEL_COLUMN]),
            replicas=int(run["replicas"]),
            max_num_seqs_per_replica=int(run["max_num_seqs_per_replica"]),
            mps=mode,
            measured_tok_s=measured,
            single_tok_s=single,
            predicted_tok_s=predicted,
            rel_error=predicted / measured - 1.0,
            loo_rel_error=loo,
        ))
    return ReplicationModel(
        phi_mps=phis[True],
        phi_no_mps=phis[False],
        max_replicas=int(runs["replicas"].max()),
        points=tuple(points),
    )


def read_bundled_replication() -> pd.DataFrame:
    """The bundled ``replication.csv`` (Mind the Memory Gap runs), as a DataFrame."""
    return read_csv(bundled_data_file(BUNDLED_REPLICATION), field=BUNDLED_REPLICATION)


def bundled_replication_model() -> ReplicationModel:
    """Fit the model on the bundled runs (``replication.csv`` + ``batch_sweep_sharegpt.csv``).

    Recomputed on every call (a few milliseconds); nothing is cached.
    """
    single = read_csv(bundled_data_file(BUNDLED_SWEEPS["sharegpt"]), field="sharegpt")
    return fit_replication_model(read_bundled_replication(), single)


@dataclass(frozen=True)
class MeasuredGain:
    """Measured gain of one replication run against the single-instance baseline.

    Attributes
    ----------
    baseline_max_num_seqs:
        ``max_num_seqs`` of the baseline: the largest single-instance run without chunked
        prefill of the same model.
    gain_pct:
        throughput / baseline throughput - 1, %.
    gain_vs_chunked_pct:
        The same against the largest single-instance run with chunked prefill, or ``None``.
    """

    model: str
    replicas: int
    max_num_seqs_per_replica: int
    mps: bool
    chunked_prefill: bool
    num_preemptions: int
    throughput_tok_s: float
    baseline_max_num_seqs: int
    baseline_tok_s: float
    gain_pct: float
    gain_vs_chunked_pct: float | None


def measured_replication_gains(replication: pd.DataFrame) -> tuple[MeasuredGain, ...]:
    """Gains of every measured run over its model's single-instance baseline.

    This is the authors' comparison (``bca/expected_results.md``, section 3): the baseline is
    the single-instance, non-chunked run with the largest ``max_num_seqs``.

    Raises
    ------
    DataError
        Missing columns, or a model without a single-instance non-chunked run.
    """
    require_columns(replication, REPLICATION_COLUMNS, what="replication table")
    runs = replication.copy()
    runs["mps"] = _as_bool(runs["mps"], "mps")
    runs["chunked_prefill"] = _as_bool(runs["chunked_prefill"], "chunked_prefill")
    gains: list[MeasuredGain] = []
    for model, frame in runs.groupby(MODEL_COLUMN, sort=False):
        single = frame[frame["replicas"] == 1]
        plain = single[~single["chunked_prefill"]]
        if plain.empty:
            raise DataError(f"model {model!r} has no single-instance run", field="replicas")
        base = plain.loc[plain["max_num_seqs_per_replica"].idxmax()]
        chunked = single[single["chunked_prefill"]]
        base_c = (None if chunked.empty
                  else chunked.loc[chunked["max_num_seqs_per_replica"].idxmax()])
        for _, run in frame.iterrows():
            tput = float(run[THROUGHPUT_COLUMN])
            gains.append(MeasuredGain(
                model=str(model),
                replicas=int(run["replicas"]),
                max_num_seqs_per_replica=int(run["max_num_seqs_per_replica"]),
                mps=bool(run["mps"]),
                chunked_prefill=bool(run["chunked_prefill"]),
                num_preemptions=int(run[PREEMPTION_COLUMN]),
                throughput_tok_s=tput,
                baseline_max_num_seqs=int(base["max_num_seqs_per_replica"]),
                baseline_tok_s=float(base[THROUGHPUT_COLUMN]),
                gain_pct=(tput / float(base[THROUGHPUT_COLUMN]) - 1.0) * 100.0,
                gain_vs_chunked_pct=None if base_c is None
                else (tput / float(base_c[THROUGHPUT_COLUMN]) - 1.0) * 100.0,
            ))
    return tuple(gains)


@dataclass(frozen=True)
class ReplicationOption:
    """Predicted aggregate throughput of R replicas at B_opt each.

    Attributes
    ----------
    throughput_tok_s:
        Predicted aggregate throughput, tokens/s.
    gain_pct:
        Against the best single-instance throughput of the sweep, %.
    """

    replicas: int
    mps: bool
    throughput_tok_s: float
    gain_pct: float

    @property
    def loses(self) -> bool:
        """True when replication is expected to lose throughput against one instance."""
        return self.gain_pct < 0.0


@dataclass(frozen=True)
class ReplicationEstimate:
    """How many replicas at B_opt fit on the GPU and what they are expected to deliver.

    Attributes
    ----------
    footprint_gib:
        Memory of one replica: weights + activations + non-torch + KV at B_opt, GiB.
    budget_gib:
        Memory the replicas may share: the sweep's ``gpu_memory_utilization`` x total GPU
        memory, GiB. The rest is left to the CUDA context of each process (about 0.6 GiB each in
        the measured runs) and fragmentation.
    replicas_fit:
        floor(budget / footprint), replicas.
    per_replica_gpu_memory_utilization:
        ``gpu_memory_utilization`` to give each replica (footprint / total, rounded up to 0.01).
    per_replica_batch:
        B_opt, the ``max_num_seqs`` of each replica, sequences.
    baseline_tok_s:
        Best single-instance throughput in the sweep, tokens/s.
    options:
        Predictions for R = 2 .. min(replicas_fit, calibrated maximum), with and without MPS.
    """

    footprint_gib: float
    budget_gib: float
    replicas_fit: int
    per_replica_gpu_memory_utilization: float
    per_replica_batch: float
    baseline_tok_s: float
    options: tuple[ReplicationOption, ...]

    def best(self, mps: bool) -> ReplicationOption | None:
        """The option with the highest predicted throughput in one mode, if any."""
        opts = [o for o in self.options if o.mps == mps]
        return max(opts, key=lambda o: o.throughput_tok_s) if opts else None

    @property
    def loses_without_mps(self) -> bool:
        """True when every replicated option without MPS is expected to lose throughput."""
        opts = [o for o in self.options if not o.mps]
        return bool(opts) and all(o.loses for o in opts)

    def verdict(self) -> str:
        """One line for the user: the best option, and a warning when replication loses."""
        if self.replicas_fit < 2:
            return (f"no replication: one replica needs {self.footprint_gib:.1f} GiB of the "
                    f"{self.budget_gib:.1f} GiB budget")
        parts = [f"vs the best single instance ({self.baseline_tok_s:,.0f} tok/s)"]
        mps = self.best(True)
        if mps is not None:
            word = "gain" if not mps.loses else "LOSE"
            parts.append(f"with MPS, {mps.replicas} replicas x {self.per_replica_batch:g} "
                         f"{word} {mps.gain_pct:+.1f} %")
        nomps = self.best(False)
        if nomps is not None:
            if self.loses_without_mps:
                advice = "enable MPS" if mps is not None and not mps.loses else "do not replicate"
                parts.append(f"WITHOUT MPS replication is expected to LOSE throughput "
                             f"({nomps.gain_pct:+.1f} % at best); {advice}")
            else:
                parts.append(f"without MPS, {nomps.replicas} replicas {nomps.gain_pct:+.1f} %")
        return parts[0] + ": " + "; ".join(parts[1:])

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "footprint_gib": self.footprint_gib,
            "budget_gib": self.budget_gib,
            "replicas_fit": self.replicas_fit,
            "per_replica_gpu_memory_utilization": self.per_replica_gpu_memory_utilization,
            "per_replica_max_num_seqs": round(self.per_replica_batch),
            "baseline_tok_s": self.baseline_tok_s,
            "loses_without_mps": self.loses_without_mps,
            "verdict": self.verdict(),
            "options": [
                {
                    "replicas": o.replicas,
                    "mps": o.mps,
                    "throughput_tok_s": o.throughput_tok_s,
                    "gain_pct": o.gain_pct,
                    "loses": o.loses,
                }
                for o in self.options
            ],
        }


def estimate_replication(
    model: ReplicationModel,
    single: ThroughputCurve,
    per_replica_batch: float,
    footprint_gib: float,
    budget_gib: float,
    total_gpu_memory_gib: float,
    baseline_tok_s: float,
) -> ReplicationEstimate:
    """Replicas that fit at B_opt and their predicted aggregate throughput.

    Parameters
    ----------
    model:
        The fitted replication model.
    single:
        Single-instance throughput curve of the sweep (tokens/s against batch).
    per_replica_batch:
        B_opt, sequences.
    footprint_gib:
        Memory of one replica at B_opt, GiB.
    budget_gib:
        Memory the replicas may share, GiB.
    total_gpu_memory_gib:
        GPU memory as vLLM reports it, GiB.
    baseline_tok_s:
        Best single-instance throughput, tokens/s.

    Raises
    ------
    DataError
        For a non-positive footprint or GPU memory.
    """
    if footprint_gib <= 0 or total_gpu_memory_gib <= 0:
        raise DataError("memory columns give a non-positive replica footprint",
                        field="peak_torch_memory_gib")
    fit = math.floor(budget_gib / footprint_gib + 1e-9)
    util = math.ceil(round(footprint_gib / total_gpu_memory_gib * 100.0, 9)) / 100.0
    options = [
        ReplicationOption(
            replicas=r,
            mps=mps,
            throughput_tok_s=(t := model.predict(single, per_replica_batch, r, mps)),
            gain_pct=(t / baseline_tok_s - 1.0) * 100.0,
        )
        for r in range(2, min(fit, model.max_replicas) + 1)
        for mps in (True, False)
    ]
    return ReplicationEstimate(
        footprint_gib=footprint_gib,
        budget_gib=budget_gib,
        replicas_fit=fit,
        per_replica_gpu_memory_utilization=util,
        per_replica_batch=per_replica_batch,
        baseline_tok_s=baseline_tok_s,
        options=tuple(options),
    )
