"""Fit a :class:`~loratwin.profile.model.Profile` from the calibration measurements.

``fit_profile(model_dir)`` builds every component from the files of one model folder
(``../shared/data/profiles/<model>/``) and the shared ``scheduler_overhead.csv``:

* **KV capacity** (``kv_capacity.csv`` + ``meta.json``): per ``max_lora_rank`` a straight line
  ``kv_tokens = a - b*max_loras`` through the successful start-ups (each slot costs a fixed
  amount of memory); the same for the reported model load (weights + slots).
* **Adapter loads** (``adapter_loading.csv``): the measured CPU->GPU and disk->CPU times per
  (``max_lora_rank``, rank), with linear fits for unmeasured pairs.
* **Scheduler CPU time**: ``sched_base + sched_per_running*running`` fitted on the logged
  ``mean_sched_time_ms`` of the calibration runs (against the running requests the twin
  replays); the per-waiting-request cost of the ``max_loras`` skip loop, which no calibration
  run exercises, from the authors' published scheduler table (``scheduler_overhead.csv``,
  runs where the waiting queue is long and ``max_loras`` binds), scaled by the ratio of the
  per-running costs of the two machines.
* **Step execution and LoRA kernels**: every calibration run is replayed through the twin
  with a recording cost model. The runs are closed benchmarks (all requests at t = 0), so the
  simulated schedule does not depend on step durations and the run's duration is linear in
  the coefficients: ``duration - scheduler time = coefficients . summed features``. The
  coefficients are the non-negative least-squares solution with every run weighted by
  1/duration (relative error).
* **Serving constants** (:mod:`loratwin.profile.serving`): the eager launch cost of the LoRA
  kernels, the cost fraction of the extra split-K blocks and the front-end latency, which no
  calibration run identifies, come from ``serving_constants.json`` and are held fixed here.

Every component's error on its own data goes to ``Profile.fit_report``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.optimize import nnls

from loratwin.calibrate.calibration import (
    CalibrationRun,
    load_calibration_runs,
    read_csv,
    read_meta,
)
from loratwin.calibrate.frontend import fit_frontend_latency, read_frontend_rate, read_idle_ttft
from loratwin.errors import DataError
from loratwin.profile.model import (
    Architecture,
    KVModel,
    KVPoint,
    LoadModel,
    LoadPoint,
    Profile,
    StepCoefficients,
)
from loratwin.profile.serving import ServingConstants, load_serving_constants
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import FEATURE_NAMES, RecordingStepCost
from loratwin.twin.engine import run_engine
from loratwin.twin.frontend import through_frontend
from loratwin.workload.bundled import sharegpt_lengths_path
from loratwin.workload.lengths import VLLM_SHAREGPT_FILTER, BoundedHeavyTailed, EmpiricalLengths
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter, Requests

#: Architectures from each model's Hugging Face ``config.json`` (meta.json lacks the MLP and
#: hidden sizes the LoRA kernel model needs).
ARCHITECTURES: dict[str, dict[str, int]] = {
    "meta-llama/Llama-3.1-8B-Instruct": dict(
        num_layers=32, hidden_size=4096, q_size=4096, kv_size=1024, intermediate_size=14336,
        vocab_size=128256,
    ),
    "Qwen/Qwen2.5-7B-Instruct": dict(
        num_layers=28, hidden_size=3584, q_size=3584, kv_size=512, intermediate_size=18944,
        vocab_size=152064,
    ),
}

#: Calibration runs shorter than this are front-end bound, not engine bound (s).
MIN_ENGINE_BOUND_DURATION_S = 5.0

EXEC_FEATURES = FEATURE_NAMES[:7]
EXEC_FIELDS = (
    "base_s", "per_token_s", "per_decode_seq_s", "per_context_token_s", "per_prefill_req_s",
    "lora_empty_cta_s", "lora_work_cta_s",
)
#: vLLM's CPU backend: the PyTorch LoRA ops replace the Triton thread-block terms.
TORCH_EXEC_FEATURES = (*FEATURE_NAMES[:5], "lora_steps", "lora_token_rank")
TORCH_EXEC_FIELDS = (*EXEC_FIELDS[:5], "lora_step_s", "lora_token_rank_s")

#: Placeholder costs for replays whose schedule does not depend on time.
_PLACEHOLDER = StepCoefficients(
    base_s=1e-3, per_token_s=1e-5, per_decode_seq_s=1e-5, per_context_token_s=0.0,
    per_prefill_req_s=0.0, lora_empty_cta_s=0.0, lora_work_cta_s=0.0,
    sched_base_s=0.0, sched_per_running_s=0.0, sched_per_walked_s=0.0,
)


# ----------------------------------------------------------------------------- memory


def fit_kv_model(kv_df: pd.DataFrame, meta: dict) -> tuple[KVModel, dict[str, float | int | str]]:
    """Per-rank straight lines through the measured KV sizes and model loads.

    Returns the model and its fit report (max and mean relative error on the successful
    rows, and the share of measured start-up failures it reproduces).
    """
    points = []
    for _, r in kv_df.iterrows():
        tokens = r["kv_cache_tokens"]
        points.append(KVPoint(
            max_loras=int(r["max_loras"]),
            max_lora_rank=int(r["max_lora_rank"]),
            kv_cache_tokens=None if pd.isna(tokens) else int(tokens),
            failure=None if pd.isna(r.get("failure")) else str(r["failure"]),
            model_load_gib=None if pd.isna(r.get("model_load_gib")) else float(r["model_load_gib"]),
        ))
    rank_lines: dict[int, tuple[float, float]] = {}
    load_lines: dict[int, tuple[float, float]] = {}
    flat: list[int] = []
    for rank in sorted({p.max_lora_rank for p in points}):
        ok = [p for p in points if p.max_lora_rank == rank and p.kv_cache_tokens is not None]
        if not ok:
            raise DataError(f"kv_capacity.csv: no successful row for rank {rank}")
        rank_lines[rank] = _line(ok, lambda p: float(p.kv_cache_tokens), negate=True)
        if len({p.max_loras for p in ok}) < 2:
            flat.append(rank)  # one max_loras measured: the slot memory is not identified
        ld = [p for p in points if p.max_lora_rank == rank and p.model_load_gib is not None]
        load_lines[rank] = _line(ld, lambda p: float(p.model_load_gib)) if ld else (0.0, 0.0)
    mem = meta["memory"]
    by_seqs = mem["kv_cache_tokens_lora_disabled_by_max_num_seqs"]
    no_lora = {int(k): int(v) for k, v in by_seqs.items()}
    graph = (float(kv_df["cuda_graph_gib"].dropna().max())
             if "cuda_graph_gib" in kv_df and kv_df["cuda_graph_gib"].notna().any() else 0.0)
    model = KVModel(
        points=tuple(points),
        rank_lines=rank_lines,
        load_lines=load_lines,
        no_lora_by_max_num_seqs=no_lora,
        reference_max_num_seqs=int(meta["serving_engine"]["max_num_seqs_serving_runs"]),
        cuda_graph_gib=graph,
    )
    rel = []
    for p in points:
        if p.kv_cache_tokens is not None:
            a, b = rank_lines[p.max_lora_rank]
            rel.append(abs(a - b * p.max_loras - p.kv_cache_tokens) / p.kv_cache_tokens)
    report: dict[str, float | int | str] = {
        "rows": len(points),
        "kv_line_mean_rel_err_pct": 100 * float(np.mean(rel)),
        "kv_line_max_rel_err_pct": 100 * float(np.max(rel)),
    }
    if flat:
        report["flat_ranks"] = ",".join(map(str, flat))
    return model, report


def _line(points: list[KVPoint], value: Callable[[KVPoint], float], negate: bool = False
          ) -> tuple[float, float]:
    """(intercept, slope) of ``value`` against ``max_loras`` (slope negated for KV tokens);
    a flat line through the mean when only one ``max_loras`` was measured."""
    x = np.array([p.max_loras for p in points], float)
    y = np.array([value(p) for p in points], float)
    if len(set(x.tolist())) < 2:
        return float(y.mean()), 0.0
    slope, icpt = np.polyfit(x, y, 1)
    return float(icpt), float(-slope if negate else slope)


def fit_load_model(df: pd.DataFrame) -> tuple[LoadModel, dict[str, float | int | str]]:
    """Measured load times and the linear fits for unmeasured (max_lora_rank, rank) pairs."""
    pts = tuple(
        LoadPoint(
            max_lora_rank=int(r["max_lora_rank"]), adapter_rank=int(r["adapter_rank"]),
            cpu_ms=float(r["mean_load_ms"]), disk_ms=float(r["mean_disk_load_ms"]),
        )
        for _, r in df.iterrows()
    )
    x = np.array([[1.0, p.max_lora_rank, p.adapter_rank] for p in pts])
    y = np.array([p.cpu_ms for p in pts])
    got = np.isfinite(y)  # a running server with too few adapters to cycle: no slot load
    cpu_coef = (np.linalg.lstsq(x[got], y[got], rcond=None)[0] if got.any() else np.zeros(3))
    if not got.all():
        pts = tuple(p if math.isfinite(p.cpu_ms) else p.model_copy(update={"cpu_ms": float(
            cpu_coef @ [1.0, p.max_lora_rank, p.adapter_rank])}) for p in pts)
        y = np.array([p.cpu_ms for p in pts])
    xd = np.array([[1.0, p.adapter_rank] for p in pts])
    yd = np.array([p.disk_ms for p in pts])
    seen = np.isfinite(yd)  # a collected campaign may not have had adapters to miss with
    disk_coef = (np.linalg.lstsq(xd[seen], yd[seen], rcond=None)[0] if seen.any()
                 else np.zeros(2))
    if not seen.all():
        pts = tuple(p if math.isfinite(p.disk_ms) else p.model_copy(
            update={"disk_ms": float(disk_coef[0] + disk_coef[1] * p.adapter_rank)})
            for p in pts)
    report: dict[str, float | int | str] = {
        "rows": len(pts),
        "cpu_fit_mean_abs_err_ms": float(np.mean(np.abs(x @ cpu_coef - y))),
    }
    if seen.any():
        report["disk_fit_mean_abs_err_ms"] = float(np.mean(np.abs(xd @ disk_coef - yd)[seen]))
    report["cpu_mean_ms"] = float(y.mean())
    if seen.any():
        report["disk_mean_ms"] = float(yd[seen].mean())
    else:
        report["disk"] = "no disk load measured: 0 ms"
    return LoadModel(
        points=pts,
        cpu_coef=(float(cpu_coef[0]), float(cpu_coef[1]), float(cpu_coef[2])),
        disk_coef=(float(disk_coef[0]), float(disk_coef[1])),
    ), report


def sharegpt_length_cv() -> tuple[float, float]:
    """Coefficients of variation of ShareGPT prompt and output lengths under vLLM's filter.

    The per-request lengths of the measured runs are not published, only their means; their
    spread is taken from the bundled ShareGPT length file (sarathi-serve, Llama-2 tokenizer)
    restricted to vLLM's benchmark sampler window (prompt 4..1024, output >= 4, sum <= 2048):
    CV 0.86 (prompt) and 0.64 (output). The profile's standard deviations are these CVs times
    the model's realised means.
    """
    pool = EmpiricalLengths.from_csv(sharegpt_lengths_path(), VLLM_SHAREGPT_FILTER)
    i = np.asarray(pool.input_tokens, float)
    o = np.asarray(pool.output_tokens, float)
    return float(i.std(ddof=1) / i.mean()), float(o.std(ddof=1) / o.mean())


# ----------------------------------------------------------------------------- replay


def replay(profile: Profile, run: CalibrationRun, *, requests: Requests | None = None
           ) -> tuple[dict[str, float], object]:
    """Replay one calibration run; returns (summed step features, raw engine outcome)."""
    cost = RecordingStepCost(profile, run.server)
    sent = requests or run.requests
    raw = run_engine(
        profile, run.server, list(run.adapter_ranks),
        through_frontend(sent, profile.frontend_per_request_s),
        ClientConfig(duration_s=1e9, max_ports=None), cost=cost, preload=True,
    )
    return cost.sums, raw


def _mean_itl_ms(raw: object, req: Requests) -> float:
    first = raw.first_token_s  # type: ignore[attr-defined]
    fin = raw.finish_s  # type: ignore[attr-defined]
    multi = np.isfinite(fin) & (req.output_tokens > 1)
    gaps = (req.output_tokens[multi] - 1).sum()
    return float((fin - first)[multi].sum() / gaps * 1e3) if gaps else float("nan")


# ----------------------------------------------------------------------------- scheduler


def fit_sched_running(
    runs: list[CalibrationRun], sums: list[dict[str, float]]
) -> tuple[float, float, dict[str, float | int | str]]:
    """``sched_ms = base + per_running * mean running`` on runs with a logged scheduler time."""
    xs, ys = [], []
    for run, s in zip(runs, sums, strict=True):
        if math.isfinite(run.mean_sched_ms) and s["sched_steps"] > 0:
            xs.append([1.0, s["sched_running"] / s["sched_steps"]])
            ys.append(run.mean_sched_ms / 1e3)
    if len(xs) < 2:
        raise DataError("calibration: fewer than two runs with a logged scheduler time")
    a = np.array(xs)
    y = np.array(ys)
    coef, _ = nnls(a / y[:, None], np.ones_like(y))
    pred = a @ coef
    return float(coef[0]), float(coef[1]), {
        "runs": len(ys),
        "mean_rel_err_pct": 100 * float(np.mean(np.abs(pred - y) / y)),
    }


def _replay_sched_row(profile: Profile, row: pd.Series) -> tuple[float, float]:
    """Twin replay of one row of the authors' scheduler table: (running, walked) per step."""
    n = int(row["cpu_loras"])
    adapters = [Adapter(f"a{i}", int(row["rank"]), float(row["adapter_rates"])) for i in range(n)]
    duration = float(row["duration"])
    done = max(float(row["completed_requests"]), 1.0)
    out_mean = max(float(row["output_throughput"]) * duration / done, 16.0)
    out_cv = profile.sharegpt_std_output_tokens / profile.sharegpt_mean_output_tokens
    lengths = BoundedHeavyTailed(
        mean_input=profile.sharegpt_mean_input_tokens, mean_output=out_mean,
        std_input=profile.sharegpt_std_input_tokens,
        std_output=out_mean * out_cv,
    )
    req = generate_requests(adapters, duration, ArrivalSpec(), lengths, 0)
    server = ServerConfig(
        max_loras=int(row["gpu_loras"]), max_cpu_loras=n, max_lora_rank=int(row["rank"]),
        max_num_seqs=1024, max_num_batched_tokens=2048,
    )
    cost = RecordingStepCost(profile, server)
    run_engine(profile, server, [a.rank for a in adapters], req,
               ClientConfig(duration_s=duration), cost=cost)
    steps = max(cost.sums["sched_steps"], 1.0)
    return cost.sums["sched_running"] / steps, cost.sums["sched_walked"] / steps


def fit_sched_walk(table: pd.DataFrame, profile: Profile, n_jobs: int = 1) -> tuple[float, dict]:
    """Per-request cost of the ``max_loras`` skip loop of ``schedule()`` (s per walked request).

    The authors' table (``scheduler_overhead.csv``, 788 runs of 600 s) logs the scheduler
    time per step but not how many waiting requests each step walked. Every run is replayed
    in the twin (ranks, per-adapter rates, ``max_loras``, ``max_cpu_loras`` and output length
    of the row) to count them, then ``sched = a + b*running + c*walked`` is fitted by
    non-negative least squares with relative weights; ``c`` is used as it is (the skip loop
    is the same few Python operations on both machines), ``a`` and ``b`` are not (this
    machine's come from the calibration runs).
    """
    t = table.copy()
    t["sched_s"] = t["total_scheduling_time"] / t["steps"]
    t = t[np.isfinite(t["sched_s"]) & (t["steps"] > 0)]
    if len(t) < 20:
        raise DataError("scheduler_overhead.csv: too few usable rows")
    replays = Parallel(n_jobs=n_jobs)(
        delayed(_replay_sched_row)(profile, r) for _, r in t.iterrows()
    )
    walked = np.array([w for _, w in replays])
    a = np.c_[np.ones(len(t)), t["avg_batch_size"], walked]
    y = t["sched_s"].to_numpy()
    coef, _ = nnls(a / y[:, None], np.ones_like(y))
    pred = a @ coef
    return float(coef[2]), {
        "rows": len(t),
        "mean_rel_err_pct": 100 * float(np.mean(np.abs(pred - y) / y)),
        "their_base_us": 1e6 * float(coef[0]),
        "their_per_running_us": 1e6 * float(coef[1]),
        "per_walked_us": 1e6 * float(coef[2]),
    }


# ----------------------------------------------------------------------------- execution


def fit_exec(
    runs: list[CalibrationRun],
    sums: list[dict[str, float]],
    sched: Callable[[dict], float],
    fixed: dict[str, float] | None = None,
    serving: ServingConstants | None = None,
    *,
    device: str = "cuda",
) -> tuple[dict[str, float], dict[str, float | int | str]]:
    """Non-negative least squares of (duration - scheduler time) on the summed features.

    ``fixed`` maps coefficient names (``EXEC_FIELDS``) to values that are not fitted; their
    contribution is subtracted from the targets first. ``serving`` supplies the constants
    no calibration run identifies: the eager launch cost is subtracted from the targets and
    the extra split-K blocks are weighted into the working-block feature. ``device="cpu"``
    fits the PyTorch LoRA terms (``TORCH_EXEC_FIELDS``) instead of the Triton ones.
    """
    fixed = fixed or {}
    phi = serving.split_k_fixed_fraction if serving else 1.0
    eager = serving.lora_eager_layer_s if serving else 0.0
    fields = list(TORCH_EXEC_FIELDS if device == "cpu" else EXEC_FIELDS)
    features = list(TORCH_EXEC_FEATURES if device == "cpu" else EXEC_FEATURES)
    free_idx = [i for i, f in enumerate(fields) if f not in fixed]
    rows, ys = [], []
    for run, s in zip(runs, sums, strict=True):
        if run.duration_s < MIN_ENGINE_BOUND_DURATION_S:
            continue
        feats = [s[f] for f in features]
        if device != "cpu":
            feats[6] += phi * s["lora_split_extra"]
        rows.append(feats)
        ys.append(run.duration_s - sched(s) - eager * s["lora_eager_layers"])
    a = np.array(rows, float)
    y = np.array(ys, float)
    if not rows:
        raise DataError(f"calibration: no run of at least {MIN_ENGINE_BOUND_DURATION_S:g} s "
                        "to fit the step costs on")
    fixed_vec = np.array([fixed.get(f, 0.0) for f in fields])
    target = y - a @ fixed_vec
    af = a[:, free_idx]
    scale = np.where(af.max(axis=0) > 0, af.max(axis=0), 1.0)
    sol, _ = nnls((af / scale) / y[:, None], target / y)
    coef = fixed_vec.copy()
    coef[free_idx] = sol / scale
    pred = a @ coef
    err = np.abs(pred - y) / y
    report: dict[str, float | int | str] = {
        "runs": len(y),
        "duration_mean_rel_err_pct": 100 * float(err.mean()),
        "duration_max_rel_err_pct": 100 * float(err.max()),
    }
    if fixed:
        report["fixed"] = ", ".join(sorted(fixed))
    return dict(zip(fields, map(float, coef), strict=True)), report


def linear_flops_per_token(arch: Architecture) -> float:
    """Multiply-adds x 2 of the transformer's linear layers for one token (no LM head)."""
    per_layer = (
        arch.hidden_size * (arch.q_size + 2 * arch.kv_size)
        + arch.q_size * arch.hidden_size
        + 3 * arch.hidden_size * arch.intermediate_size
    )
    return 2.0 * arch.num_layers * per_layer


#: A model folder needs this many engine-bound prefill runs to fit the prefill costs itself.
MIN_PREFILL_RUNS = 4


# ----------------------------------------------------------------------------- top level


@dataclass(frozen=True)
class FitContext:
    """Everything of a profile fit that does not depend on the serving constants.

    The calibration replays (``sums``) and the scheduler fits are computed once by
    :func:`prepare_fit`; :func:`finish_fit` then solves the execution coefficients for given
    serving constants, which makes the serving calibration cheap.
    """

    model_dir: Path
    skeleton: Profile
    runs: list[CalibrationRun]
    sums: list[dict[str, float]]
    sched: tuple[float, float, float]
    fixed: dict[str, float]
    reports: dict[str, dict[str, float | int | str]]
    idle_ttft: pd.DataFrame | None = None


def _prefill_like(run: CalibrationRun) -> bool:
    """A prefill run: without LoRA, or with LoRA and one output token (a ``--url`` campaign
    measures prefill on its LoRA server)."""
    return run.kind == "prefill" or (
        run.kind == "lora_mixed" and len(run.requests) > 0
        and int(run.requests.output_tokens.max()) == 1)


def collected_fields(meta: dict) -> dict[str, str]:
    """Profile fields a collected campaign's ``meta.json`` states (``device``,
    ``vllm_version``, ``profile_kind``); the measured folders state none of them."""
    engine = meta.get("serving_engine", {})
    out = {k: str(engine[k]) for k in ("device", "vllm_version") if engine.get(k)}
    if meta.get("profile_kind"):
        out["profile_kind"] = str(meta["profile_kind"])
    return out


def prepare_fit(
    model_dir: Path,
    scheduler_table: Path | None = None,
    reference: Profile | None = None,
    n_jobs: int = 1,
) -> FitContext:
    """Read the calibration folder, replay its runs and fit memory, loads and scheduler.

    See :func:`fit_profile` for the parameters and errors.
    """
    model_dir = Path(model_dir)
    meta = read_meta(model_dir)
    hf = meta.get("hf_model_name", "")
    shapes = ARCHITECTURES.get(hf) or meta.get("architecture_shapes")
    if not shapes:
        raise DataError(f"{model_dir}/meta.json: unknown architecture {hf!r} (and no "
                        "'architecture_shapes')")
    arch = Architecture(
        **shapes,
        kv_bytes_per_token=int(meta["memory"]["kv_bytes_per_token_from_architecture"]),
    )
    kv_model, kv_report = fit_kv_model(read_csv(model_dir / "kv_capacity.csv"), meta)
    load_model, load_report = fit_load_model(read_csv(model_dir / "adapter_loading.csv"))
    wl = meta["workload_real_runs"]
    engine = meta["serving_engine"]
    cv_in, cv_out = sharegpt_length_cv()
    mean_in = float(wl["realized_mean_input_tokens_per_completed_request"])
    mean_out = float(wl["realized_mean_output_tokens_per_completed_request"])
    skeleton = Profile(
        name=meta["model"],
        hf_model_name=hf,
        gpu=meta["gpu"]["model"],
        gpu_total_memory_gib=float(meta["gpu"]["reported_total_capacity_gib"]),
        gpu_memory_utilization_measured=float(engine["gpu_memory_utilization"]),
        max_model_len=int(engine["max_model_len"]),
        block_size=int(engine["block_size_tokens"]),
        arch=arch,
        step=_PLACEHOLDER,
        loads=load_model,
        kv=kv_model,
        frontend_latency_s=0.0,
        sharegpt_mean_input_tokens=mean_in,
        sharegpt_mean_output_tokens=mean_out,
        sharegpt_std_input_tokens=cv_in * mean_in,
        sharegpt_std_output_tokens=cv_out * mean_out,
        source=meta.get("profile_source") or (
            "vLLM 0.8.5 (V1) measurements on an NVIDIA H100 64 GB by Agullo et al. "
            "(arXiv 2508.08343, 2602.24044), public repository "
            "FerranAgulloLopez/GPULLMAdapterOptimization; fitted by `loratwin profile fit`"
        ),
        **collected_fields(meta),
        frontend_per_request_s=read_frontend_rate(model_dir),
    )
    runs = load_calibration_runs(model_dir)
    sums = [replay(skeleton, run)[0] for run in runs]
    if sum(math.isfinite(r.mean_sched_ms) for r in runs) >= 2:
        s0, s_run, sched_report = fit_sched_running(runs, sums)
    else:  # no scheduler times logged: the execution terms absorb the scheduler's cost
        s0, s_run, sched_report = 0.0, 0.0, {"runs": 0, "note": "no scheduler time logged; "
                                             "absorbed by the execution coefficients"}
    fixed: dict[str, float] = {}
    n_prefill = sum(
        1 for r in runs if _prefill_like(r) and r.duration_s >= MIN_ENGINE_BOUND_DURATION_S
    )
    if n_prefill < MIN_PREFILL_RUNS:
        if reference is None:
            raise DataError(
                f"{model_dir}: only {n_prefill} engine-bound prefill runs; "
                "pass a reference profile to transfer the prefill costs from"
            )
        ratio = linear_flops_per_token(arch) / linear_flops_per_token(reference.arch)
        fixed = {"per_token_s": reference.step.per_token_s * ratio}
    ctx = FitContext(model_dir, skeleton, runs, sums, (s0, s_run, 0.0), fixed, {
        "kv_capacity": kv_report,
        "adapter_loading": load_report,
        "scheduler_running": sched_report,
    }, idle_ttft=read_idle_ttft(model_dir))
    table_path = Path(scheduler_table or model_dir.parent / "scheduler_overhead.csv")
    if scheduler_table is None and not table_path.is_file():
        # a collected campaign: no scheduler table, and its few runs that walk the waiting
        # queue cannot separate the skip loop from the LoRA costs (an NNLS fit of it gave
        # 1.9 ms per walked request on the CPU server, ~10^4 x the measured hosts' cost)
        s_walk, walk_report = measured_host_walk_cost()
        ctx = replace(ctx, sched=(s0, s_run, s_walk),
                      reports=dict(ctx.reports, scheduler_walk=walk_report))
        return _refit_staggered(ctx)
    # the walk counts of the scheduler table depend a little on step times: replay it with
    # a profile fitted so far
    first = finish_fit(ctx, load_serving_constants(), validate=False)
    s_walk, walk_report = fit_sched_walk(read_csv(table_path), first, n_jobs=n_jobs)
    reports = dict(ctx.reports, scheduler_walk=walk_report)
    if fixed:
        reports["prefill_transfer"] = {"reference": reference.name if reference else ""}
    return replace(ctx, sched=(s0, s_run, s_walk), reports=reports)


#: Replays of a profile fit whose bursts enter the engine one by one (front-end time > 0).
STAGGERED_REFITS = 3


def _refit_staggered(ctx: FitContext) -> FitContext:
    """With an API-server time per request, a burst's requests reach the engine one after
    the other, so its schedule depends on the step times: replay with the profile fitted so
    far and refit, a few times (a fixed-point iteration; without it, one replay is exact)."""
    if ctx.skeleton.frontend_per_request_s <= 0:
        return ctx
    for _ in range(STAGGERED_REFITS):
        fitted = finish_fit(ctx, default_serving(ctx.skeleton), validate=False)
        ctx = replace(ctx, sums=[replay(fitted, run)[0] for run in ctx.runs])
    return ctx


def measured_host_walk_cost() -> tuple[float, dict[str, float | int | str]]:
    """The scheduler's cost per skipped waiting request (s) when a campaign cannot measure it.

    vLLM's ``Scheduler.schedule`` (``vllm/v1/core/sched/scheduler.py``, 0.8.5 and 0.32) pops
    a waiting request whose adapter cannot get a slot, checks it and puts it back: a few
    Python operations, a host-CPU cost and not a model or GPU one. The bundled measured
    profiles fitted it on their scheduler tables (Agullo et al., arXiv 2508.08343; about
    0.2 us); a collected campaign takes their mean, as ``profile prior`` does for its host
    constants, and its fit report says so.

    Returns
    -------
    (seconds per walked request, the fit report's ``scheduler_walk`` entry)
    """
    from loratwin.calibrate.prior import default_calibration_profiles

    measured = default_calibration_profiles()
    value = float(np.mean([p.step.sched_per_walked_s for p in measured]))
    names = ", ".join(p.name for p in measured)
    return value, {"value_s": value, "source": f"mean of the measured profiles ({names})",
                   "note": "not measured by this campaign: taken from the measured hosts"}


def finish_fit(ctx: FitContext, serving: ServingConstants, validate: bool = True) -> Profile:
    """Solve the execution coefficients for given serving constants; return the profile."""
    s0, s_run, s_walk = ctx.sched

    def sched_total(s: dict) -> float:
        # the H100 calibration runs walk no skipped request; a collected campaign's may
        return s0 * s["sched_steps"] + s_run * s["sched_running"] + s_walk * s["sched_walked"]

    device = ctx.skeleton.device
    exec_coef, exec_report = fit_exec(ctx.runs, ctx.sums, sched_total, ctx.fixed, serving,
                                      device=device)
    if device == "cpu":
        exec_coef.update(lora_empty_cta_s=0.0, lora_work_cta_s=0.0)
    step = StepCoefficients(
        **exec_coef, sched_base_s=s0, sched_per_running_s=s_run, sched_per_walked_s=s_walk,
        lora_eager_layer_s=serving.lora_eager_layer_s,
        split_k_fixed_fraction=serving.split_k_fixed_fraction,
    )
    profile = ctx.skeleton.model_copy(
        update={"step": step, "frontend_latency_s": serving.frontend_latency_s}
    )
    report = dict(ctx.reports, step_execution=exec_report,
                  serving_constants={"source": serving.source})
    if ctx.idle_ttft is not None:  # a collected campaign measured the front end itself
        fe, report["frontend_latency"] = fit_frontend_latency(profile, ctx.idle_ttft)
        profile = profile.model_copy(update={"frontend_latency_s": fe})
    if validate:
        report.update(validation_report(profile, ctx.runs))
    return profile.model_copy(update={"fit_report": report})


def fit_profile(
    model_dir: Path,
    scheduler_table: Path | None = None,
    reference: Profile | None = None,
    n_jobs: int = 1,
    serving: ServingConstants | None = None,
) -> Profile:
    """Fit every component of a profile from one model's calibration folder.

    Parameters
    ----------
    model_dir:
        ``.../profiles/<model>/`` with ``meta.json``, ``decode_sweep.csv``,
        ``prefill_sweep.csv``, ``lora_overhead_sweep.csv``, ``adapter_loading.csv`` and
        ``kv_capacity.csv``.
    scheduler_table:
        ``scheduler_overhead.csv``; default ``model_dir/../scheduler_overhead.csv``.
    reference:
        A profile fitted on a model with a full prefill sweep. When ``model_dir`` has fewer
        than ``MIN_PREFILL_RUNS`` engine-bound prefill runs (Qwen's folder has three 64-prompt
        bursts only), ``per_token_s`` is transferred from it, scaled by the ratio of the
        models' linear-layer FLOPs per token.
    n_jobs:
        Worker processes for the replays of the scheduler table.
    serving:
        Constants fitted on serving runs (:mod:`loratwin.profile.serving`); default: the
        bundled ``serving_constants.json``.

    Raises
    ------
    DataError
        A file is missing or malformed, or the model's architecture is unknown.
    """
    ctx = prepare_fit(model_dir, scheduler_table, reference, n_jobs)
    return finish_fit(ctx, serving or default_serving(ctx.skeleton))


def default_serving(skeleton: Profile) -> ServingConstants:
    """The serving constants a folder is fitted with: the bundled ones (fitted on the H100
    serving runs); on vLLM's CPU backend none applies (no CUDA graphs to leave, no Triton
    split-K), so the eager cost is 0 and the split-K fraction 1."""
    if skeleton.device == "cpu":
        return ServingConstants(
            lora_eager_layer_s=0.0, split_k_fixed_fraction=1.0, frontend_latency_s=0.0,
            source="vLLM CPU backend: no CUDA-graph or Triton constants apply",
        )
    return load_serving_constants()


def validation_report(
    profile: Profile, runs: list[CalibrationRun]
) -> dict[str, dict[str, float | int | str]]:
    """Replay every calibration run with the fitted profile: errors per run kind."""
    out: dict[str, dict[str, float | int | str]] = {}
    by_kind: dict[str, list[tuple[float, float]]] = {}
    for run in runs:
        if run.duration_s < MIN_ENGINE_BOUND_DURATION_S:
            continue
        _, raw = replay(profile, run)
        dur = float(np.nanmax(raw.finish_s))
        itl = _mean_itl_ms(raw, run.requests)
        d_err = abs(dur - run.duration_s) / run.duration_s
        i_err = (abs(itl - run.mean_itl_ms) / run.mean_itl_ms
                 if math.isfinite(itl) and run.mean_itl_ms > 0 else float("nan"))
        by_kind.setdefault(run.kind, []).append((d_err, i_err))
    for kind, errs in by_kind.items():
        e = np.array(errs)
        entry: dict[str, float | int | str] = {
            "runs": len(e),
            "duration_mean_rel_err_pct": 100 * float(np.mean(e[:, 0])),
            "duration_max_rel_err_pct": 100 * float(np.max(e[:, 0])),
        }
        if np.isfinite(e[:, 1]).any():
            entry["itl_mean_rel_err_pct"] = 100 * float(np.nanmean(e[:, 1]))
        out[f"replay_{kind}"] = entry
    return out
