"""Validation of the twin against real serving runs (schema of ``real_runs/<model>.csv``).

Each row describes a 3600 s benchmark of vLLM's ``benchmark_serving`` with per-adapter
Poisson arrivals and ShareGPT prompts (Agullo et al., arXiv 2508.08343): ``served_adapters``
adapters, ranks cycled from ``rank_set``, rates dealt cyclically from ``rates`` and then
shuffled. :func:`run_inputs` rebuilds that workload (the per-request lengths of the real runs
are not published: they are drawn from the profile's ShareGPT model with the run's prompt-pool
means), :func:`validate_runs` simulates every row and :func:`summarise` scores the twin with
the papers' SMAPE, ``100/n * sum |F - A| / (|A| + |F|)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from loratwin.errors import DataError
from loratwin.profile.model import Profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.simulate import simulate
from loratwin.workload._csvio import check_fields
from loratwin.workload.lengths import BoundedHeavyTailed
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter, Requests

REQUIRED_COLUMNS = (
    "rank_set", "max_lora_rank", "max_loras", "max_cpu_loras", "served_adapters",
    "max_num_seqs", "rates", "status",
)
#: Optional columns of ``loratwin bench`` rows naming the exact requests of the run.
RECORDED_COLUMNS = ("trace_file", "adapters_file")
#: Measured columns compared with the twin's metrics.
COMPARED = {
    "total_throughput": "total_throughput_tok_s",
    "mean_itl_ms": "mean_itl_ms",
    "mean_ttft_ms": "mean_ttft_ms",
}


def smape(forecast: np.ndarray, actual: np.ndarray) -> float:
    """Symmetric MAPE in %, the papers' form: ``100/n * sum |F - A| / (|A| + |F|)``."""
    f = np.asarray(forecast, float)
    a = np.asarray(actual, float)
    ok = np.isfinite(f) & np.isfinite(a) & ((np.abs(a) + np.abs(f)) > 0)
    if not ok.any():
        return float("nan")
    return float(100.0 * np.mean(np.abs(f[ok] - a[ok]) / (np.abs(a[ok]) + np.abs(f[ok]))))


def check_columns(df: pd.DataFrame, source: str) -> None:
    """Raise :class:`DataError` naming the first missing column."""
    for col in REQUIRED_COLUMNS:
        if col not in df.columns:
            raise DataError(f"{source}: missing column {col!r}")


_INT_COLUMNS = ("max_lora_rank", "max_loras", "max_cpu_loras", "served_adapters",
                "max_num_seqs")


def read_real_runs(path: str | Path) -> pd.DataFrame:
    """Read a real-runs CSV (schema of ``real_runs/<model>.csv``) and check every row.

    Rows are numbered like file lines (header = row 1). Checked before any simulation: the
    required columns; integer columns >= 1; ``rank_set`` / ``rates`` comma-separated lists
    of positive integers / finite numbers >= 0; the vLLM flags consistent with each other
    (``max_cpu_loras >= max_loras``, ranks <= ``max_lora_rank``, as vLLM's
    ``LoRAConfig`` requires); ``total_time_s``, when given, finite and > 0.

    Raises
    ------
    DataError
        ``runs.csv row 5: max_loras: must be an integer >= 1 (got 'x')`` and the like.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    check_fields(path)
    try:
        df = pd.read_csv(path, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[-1]})"
                        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    check_real_runs(df, str(path))
    return resolve_run_files(df, path.parent)


def check_real_runs(df: pd.DataFrame, source: str) -> None:
    """The checks of :func:`read_real_runs` on a table already read (row 2 = first row).

    Raises
    ------
    DataError
        The first violation, naming the source, row and column.
    """
    check_columns(df, source)
    if df.empty:
        raise DataError(f"{source}: no runs")
    rows = np.arange(len(df)) + 2
    for col in _INT_COLUMNS:
        v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(v) | (v < 1) | (v != np.round(v)) | (v > 2**31 - 1)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source} row {rows[k]}: {col}: must be an integer >= 1 "
                            f"(got {df[col].iloc[k]!r})")
    if "total_time_s" in df.columns:
        v = pd.to_numeric(df["total_time_s"], errors="coerce").to_numpy(dtype=float)
        bad = df["total_time_s"].notna().to_numpy() & ~(np.isfinite(v) & (v > 0))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise DataError(f"{source} row {rows[k]}: total_time_s: must be a finite number "
                            f"> 0 (got {df['total_time_s'].iloc[k]!r})")
    loras = df["max_loras"].to_numpy(dtype=float)
    cpu = df["max_cpu_loras"].to_numpy(dtype=float)
    bad = cpu < loras
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"{source} row {rows[k]}: max_cpu_loras: must be >= max_loras "
                        f"({int(cpu[k])} < {int(loras[k])})")
    max_rank = df["max_lora_rank"].to_numpy(dtype=float)
    for k, (rank_text, rate_text) in enumerate(zip(df["rank_set"], df["rates"], strict=True)):
        ranks = _ints(rank_text, "rank_set", int(rows[k]))
        rates = _floats(rate_text, "rates", int(rows[k]))
        if not ranks or min(ranks) < 1 or max(ranks) > max_rank[k]:
            raise DataError(f"{source} row {rows[k]}: rank_set: expected ranks in [1, "
                            f"max_lora_rank={int(max_rank[k])}] (got {rank_text!r})")
        if not rates or not all(math.isfinite(r) and r >= 0 for r in rates):
            raise DataError(f"{source} row {rows[k]}: rates: expected finite numbers >= 0 "
                            f"(got {rate_text!r})")


def _ints(text: Any, what: str, row: int) -> list[int]:
    try:
        vals = [float(x) for x in str(text).split(",") if x.strip()]
        if not all(math.isfinite(v) and v == int(v) for v in vals):
            raise ValueError
        return [int(v) for v in vals]
    except ValueError:
        raise DataError(f"row {row}: {what}: not a comma-separated list ({text!r})") from None


def _floats(text: Any, what: str, row: int) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise DataError(f"row {row}: {what}: not a comma-separated list ({text!r})") from None


@dataclass(frozen=True)
class RunInputs:
    """What the twin needs to replay one real run."""

    server: ServerConfig
    adapters: list[Adapter]
    requests: Requests
    client: ClientConfig
    mean_input_tokens: float
    mean_output_tokens: float


def _optional_int(row: pd.Series, col: str) -> int | None:
    v = _pick(row, col, float("nan"))
    return int(v) if math.isfinite(v) else None


def _server(row: pd.Series, profile: Profile, vllm_version: str | None) -> ServerConfig:
    """The row's flags under the rules of ``vllm_version`` (``None``: the profile's
    release); the optional columns of ``loratwin bench`` rows (``max_num_batched_tokens``,
    ``block_size``, ``gpu_memory_utilization``) when present, else the measured runs' values
    (a token budget of 2048, the profile's block size, ``gpu_memory_utilization`` 0.9)."""
    seqs = int(row["max_num_seqs"])
    gmu = _pick(row, "gpu_memory_utilization", float("nan"))
    return ServerConfig(
        vllm_version=vllm_version,
        gpu_memory_utilization=gmu if math.isfinite(gmu) and 0 < gmu <= 1 else 0.9,
        max_loras=int(row["max_loras"]), max_cpu_loras=int(row["max_cpu_loras"]),
        max_lora_rank=int(row["max_lora_rank"]), max_num_seqs=seqs,
        max_num_batched_tokens=_optional_int(row, "max_num_batched_tokens")
        or max(2048, seqs),
        block_size=_optional_int(row, "block_size") or profile.block_size,
    )


def _recorded_inputs(row: pd.Series, row_no: int, profile: Profile,
                     vllm_version: str | None) -> RunInputs:
    """The exact requests of a ``loratwin bench`` row (``trace_file`` + ``adapters_file``,
    paths as :func:`resolve_run_files` made them)."""
    from loratwin.workload.adapters import load_adapters
    from loratwin.workload.spec import requests_from_trace
    from loratwin.workload.trace import load_trace_csv

    adapters = load_adapters(str(row["adapters_file"]))
    requests = requests_from_trace(load_trace_csv(str(row["trace_file"])), adapters)
    duration = float(row.get("total_time_s", 3600.0) or 3600.0)
    mean_in = float(requests.input_tokens.mean()) if len(requests) else float("nan")
    mean_out = float(requests.output_tokens.mean()) if len(requests) else float("nan")
    return RunInputs(_server(row, profile, vllm_version), adapters, requests,
                     ClientConfig(duration_s=duration), mean_in, mean_out)


def has_recorded_requests(row: pd.Series) -> bool:
    """Whether the row names the exact requests it sent (``trace_file``, ``adapters_file``)."""
    return all(isinstance(row.get(c), str) and row.get(c) for c in RECORDED_COLUMNS)


def resolve_run_files(df: pd.DataFrame, base_dir: Path) -> pd.DataFrame:
    """``df`` with relative ``trace_file`` / ``adapters_file`` paths made absolute against
    ``base_dir`` (the folder of the CSV), so that worker processes find them."""
    out = df.copy()
    for col in RECORDED_COLUMNS:
        if col in out.columns:
            out[col] = [
                str((base_dir / v).resolve()) if isinstance(v, str) and v else v
                for v in out[col]
            ]
    return out


def run_inputs(row: pd.Series, row_no: int, profile: Profile, seed: int,
               vllm_version: str | None = None) -> RunInputs:
    """Rebuild the workload of one real run (same rules as the authors' client).

    The seed of the row is ``seed + row_no``, so results do not depend on which rows are run.
    The server runs under the rules of ``vllm_version`` (default: the profile's release).
    A row of ``loratwin bench`` that names its requests (``trace_file``, ``adapters_file``)
    is replayed with exactly those requests.

    Raises
    ------
    DataError
        A malformed rank set or rate list, or a missing trace / adapters file.
    """
    if has_recorded_requests(row):
        return _recorded_inputs(row, row_no, profile, vllm_version)
    n = int(row["served_adapters"])
    ranks = _ints(row["rank_set"], "rank_set", row_no)
    rates = _floats(row["rates"], "rates", row_no)
    if not ranks or not rates or n < 1:
        raise DataError(f"row {row_no}: empty rank_set, rates or served_adapters")
    rng = np.random.default_rng([seed, row_no])
    dealt = np.array([rates[i % len(rates)] for i in range(n)])
    rng.shuffle(dealt)
    adapters = [Adapter(f"adapter-{i}", ranks[i % len(ranks)], float(dealt[i])) for i in range(n)]
    duration = float(row.get("total_time_s", 3600.0) or 3600.0)
    mean_in = _pick(row, "pool_mean_input_tokens", profile.sharegpt_mean_input_tokens)
    mean_out = _pick(row, "pool_mean_output_tokens", profile.sharegpt_mean_output_tokens)
    lengths = BoundedHeavyTailed(
        mean_input=mean_in, mean_output=mean_out,
        std_input=profile.sharegpt_std_input_tokens, std_output=profile.sharegpt_std_output_tokens,
    )
    requests = generate_requests(
        adapters, duration, ArrivalSpec(), lengths, int(rng.integers(0, 2**31 - 1))
    )
    return RunInputs(_server(row, profile, vllm_version), adapters, requests,
                     ClientConfig(duration_s=duration), mean_in, mean_out)


def _pick(row: pd.Series, col: str, default: float) -> float:
    v = row.get(col)
    try:
        v = float(v)
    except (TypeError, ValueError):
        return default
    return v if math.isfinite(v) and v > 0 else default


def _one(row: pd.Series, row_no: int, profile: Profile, seed: int,
         vllm_version: str | None = None) -> dict[str, Any]:
    inp = run_inputs(row, row_no, profile, seed, vllm_version)
    res = simulate(profile, inp.server, inp.adapters, inp.requests, inp.client)
    m = res.metrics
    sum_rate = sum(a.rate for a in inp.adapters)
    out: dict[str, Any] = {
        "row": row_no,
        "status": str(row["status"]),
        "max_loras": int(row["max_loras"]),
        "max_lora_rank": int(row["max_lora_rank"]),
        "served_adapters": int(row["served_adapters"]),
        "sum_rate_req_s": sum_rate,
        "memory_error": m.memory_error,
        "memory_error_reason": m.memory_error_reason,
        "twin_total_throughput_tok_s": m.total_throughput_tok_s,
        "twin_mean_itl_ms": m.mean_itl_ms,
        "twin_mean_ttft_ms": m.mean_ttft_ms,
        "twin_mean_num_running": m.mean_num_running,
        "twin_preemptions": m.preemptions,
        "twin_starvation": m.starvation,
        "twin_wall_s": m.wall_s,
    }
    for col in ("total_throughput", "mean_itl_ms", "mean_ttft_ms", "mean_num_running"):
        out[f"real_{col}"] = _pick(row, col, float("nan")) if col in row else float("nan")
    out["real_starvation"] = real_starvation(row)
    return out


def real_starvation(row: pd.Series) -> bool | None:
    """The run's measured starvation label (``starvation_est``), None when absent."""
    st = row.get("starvation_est")
    if st is None or (isinstance(st, float) and math.isnan(st)):
        return None
    return str(st).lower() == "true"


def validate_runs(
    df: pd.DataFrame,
    profile: Profile,
    *,
    seed: int = 0,
    n_jobs: int = 1,
    on_done: Callable[[int], None] | None = None,
    vllm_version: str | None = None,
) -> pd.DataFrame:
    """Simulate every non-``failed`` row; one result row per run, in input order.

    ``on_done(k)`` is called as runs finish (for a progress bar). Runs are spread over
    ``n_jobs`` worker processes with joblib. ``vllm_version`` replays them under another
    release's rules (default: the profile's; the measured runs are vLLM 0.8.5).
    """
    check_columns(df, "real runs")
    rows = [(i, r) for i, r in df.reset_index(drop=True).iterrows() if str(r["status"]) != "failed"]
    out: list[dict[str, Any]] = []
    tasks = (delayed(_one)(r, i, profile, seed, vllm_version) for i, r in rows)
    for res in Parallel(n_jobs=n_jobs, return_as="generator")(tasks):
        out.append(res)
        if on_done is not None:
            on_done(len(out))
    return pd.DataFrame(out)


def summarise(results: pd.DataFrame) -> dict[str, float | int]:
    """Scores of the twin: SMAPE per metric on ``ok`` runs, starvation and memory agreement."""
    ok = results[(results["status"] == "ok") & ~results["memory_error"]]
    mem = results[results["status"] == "memory_error"]
    st = ok[ok["real_starvation"].notna()]
    return {
        "n_runs": len(results),
        "n_ok_runs": int((results["status"] == "ok").sum()),
        "throughput_smape_pct": smape(
            ok["twin_total_throughput_tok_s"], ok["real_total_throughput"]
        ),
        "itl_smape_pct": smape(ok["twin_mean_itl_ms"], ok["real_mean_itl_ms"]),
        "ttft_smape_pct": smape(ok["twin_mean_ttft_ms"], ok["real_mean_ttft_ms"]),
        "starvation_agreement": float(
            (st["twin_starvation"].astype(bool) == st["real_starvation"].astype(bool)).mean()
        ) if len(st) else float("nan"),
        "memory_error_runs": len(mem),
        "memory_errors_predicted": int(mem["memory_error"].sum()) if len(mem) else 0,
        "false_memory_errors": int(
            ((results["status"] == "ok") & results["memory_error"]).sum()
        ),
        "twin_wall_s_total": float(results["twin_wall_s"].sum()),
    }
