"""The calibration experiments of ``../shared/data/profiles/<model>/``, as twin inputs.

Every calibration run is a *closed* benchmark: ``num_prompts`` requests sent at once
(``request_rate = inf``) with fixed lengths. :func:`load_calibration_runs` turns each CSV row
into a :class:`CalibrationRun` (server flags + requests + what was measured) that the fitter
replays through the twin.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from loratwin.errors import DataError
from loratwin.twin.config import ServerConfig
from loratwin.workload.types import Requests

#: Seed of the adapter draws of the LoRA-overhead replays (the benchmark chose an adapter
#: uniformly at random per request; the exact draws are not published).
REPLAY_SEED = 20250508


@dataclass(frozen=True)
class CalibrationRun:
    """One measured calibration run and how to replay it.

    Attributes
    ----------
    name:
        ``<csv>:<run>`` identifier.
    kind:
        ``decode`` / ``prefill`` (no LoRA), ``lora`` (decode-only, k adapters),
        ``lora_mixed`` (prefill + decode with LoRA).
    server:
        The flags of the run.
    requests:
        All requests at t = 0 with the measured per-request token counts.
    adapter_ranks:
        Ranks of the adapters the requests use.
    duration_s, mean_itl_ms, mean_ttft_ms:
        The client's measurements.
    n_steps, mean_step_ms, mean_sched_ms:
        From the server log (NaN when the log is missing).
    mean_unique_adapters:
        Mean distinct adapters per scheduled batch (server log; NaN if missing).
    """

    name: str
    kind: str
    server: ServerConfig
    requests: Requests
    adapter_ranks: tuple[int, ...]
    duration_s: float
    mean_itl_ms: float
    mean_ttft_ms: float
    n_steps: float
    mean_step_ms: float
    mean_sched_ms: float
    mean_unique_adapters: float


def _closed_requests(
    n: int, input_tokens: int, output_tokens: int, n_adapters: int, rng: np.random.Generator,
    round_robin: bool = False,
) -> Requests:
    if round_robin:  # loratwin profile collect: request i went to adapter i mod k
        adapter = (np.arange(n) % max(n_adapters, 1)).astype(np.int32)
    else:
        adapter = (
            rng.integers(0, n_adapters, size=n).astype(np.int32)
            if n_adapters > 1 else np.zeros(n, np.int32)
        )
    return Requests(
        np.zeros(n, np.float64),
        adapter,
        np.full(n, input_tokens, np.int32),
        np.full(n, output_tokens, np.int32),
    )


def _f(row: pd.Series, col: str) -> float:
    v = row.get(col, float("nan"))
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _runs_from_frame(df: pd.DataFrame, csv: str, budget: int, block_size: int = 16
                     ) -> list[CalibrationRun]:
    rng = np.random.default_rng(REPLAY_SEED)
    runs: list[CalibrationRun] = []
    for _, row in df.iterrows():
        if str(row.get("status", "ok")) != "ok" or not math.isfinite(_f(row, "duration_s")):
            continue
        n = int(row["completed"])
        pin = round(_f(row, "input_tokens_per_req"))
        # The engine generates exactly ``output_len`` tokens (max_tokens with ignore_eos);
        # the client's per-request count re-tokenises the text and can differ (Qwen: 103).
        out_len = _f(row, "output_len")
        pout = int(out_len) if math.isfinite(out_len) else round(_f(row, "output_tokens_per_req"))
        lora = bool(row.get("lora_enabled", False)) and math.isfinite(_f(row, "max_loras"))
        seqs = int(row["max_num_seqs"])
        if lora:
            max_loras = int(row["max_loras"])
            rank = int(_f(row, "max_lora_rank"))
            k = _f(row, "restricted_adapters")
            n_adapters = int(k) if math.isfinite(k) else max_loras
            server = ServerConfig(
                max_loras=max_loras, max_cpu_loras=max(max_loras, n_adapters),
                max_lora_rank=rank, max_num_seqs=seqs, max_num_batched_tokens=budget,
                block_size=block_size,
            )
            ranks = (int(_f(row, "adapter_rank")),) * n_adapters
            kind = "lora" if pin < 16 else "lora_mixed"
        else:
            server = ServerConfig(
                max_num_seqs=seqs, max_num_batched_tokens=max(budget, seqs), enable_lora=False,
                block_size=block_size,
            )
            ranks = (8,)
            n_adapters = 1
            kind = "decode" if pout > 1 else "prefill"
        runs.append(CalibrationRun(
            name=f"{csv}:{row['run'] if 'run' in row else len(runs)}",
            kind=kind,
            server=server,
            requests=_closed_requests(n, pin, pout, n_adapters, rng,
                                      str(row.get("adapter_assignment", "")) == "round_robin"),
            adapter_ranks=ranks,
            duration_s=_f(row, "duration_s"),
            mean_itl_ms=_f(row, "mean_itl_ms"),
            mean_ttft_ms=_f(row, "mean_ttft_ms"),
            n_steps=_f(row, "n_sched_steps"),
            mean_step_ms=_f(row, "mean_step_interval_ms"),
            mean_sched_ms=_f(row, "mean_sched_time_ms"),
            mean_unique_adapters=_f(row, "mean_unique_adapters_per_batch"),
        ))
    return runs


def read_csv(path: Path) -> pd.DataFrame:
    """Read a calibration CSV, raising :class:`DataError` if it is missing or unreadable."""
    if not path.is_file():
        raise DataError(f"calibration file not found: {path}")
    try:
        return pd.read_csv(path)
    except Exception as exc:  # pandas raises several types for malformed files
        raise DataError(f"{path}: cannot read CSV ({exc})") from None


def read_meta(model_dir: Path) -> dict:
    """The ``meta.json`` facts of one model's calibration folder."""
    path = model_dir / "meta.json"
    if not path.is_file():
        raise DataError(f"calibration file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc})") from None


def load_calibration_runs(model_dir: Path) -> list[CalibrationRun]:
    """All replayable runs of ``decode_sweep``, ``prefill_sweep`` and ``lora_overhead_sweep``.

    Runs that did not finish (``status != ok``) are skipped. ``max_num_batched_tokens`` and
    the KV block size are taken from ``meta.json`` (2048 and 16 in the measurements).
    """
    meta = read_meta(model_dir)
    budget = int(meta["serving_engine"]["max_num_batched_tokens"])
    block = int(meta["serving_engine"].get("block_size_tokens", 16))
    runs: list[CalibrationRun] = []
    for csv in ("decode_sweep.csv", "prefill_sweep.csv", "lora_overhead_sweep.csv"):
        df = read_csv(model_dir / csv)
        if "lora_enabled" not in df.columns:
            df["lora_enabled"] = False
        runs.extend(_runs_from_frame(df, csv.removesuffix(".csv"), budget, block))
    return runs
