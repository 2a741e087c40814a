"""The front-end latency of a collected profile, from single requests sent to an idle server.

``loratwin profile collect`` sends, one at a time, short requests to an adapter already in a
LoRA slot (``ttft_idle.csv``: ``input_tokens, output_tokens, max_loras, max_lora_rank,
adapter_rank, ttft_ms``, the median of several sends). The engine's part of such a TTFT is
one prefill step, which the fitted step costs predict, after the API server's serial time
per request (``frontend_rate.csv``: bursts of 1-token requests, whose duration per request is
that time, :mod:`loratwin.twin.frontend`); the rest is what the API server and the client add
(HTTP, streaming of the first token): the profile's ``frontend_latency_s`` is the median of
(measured TTFT - serial time - the twin's first-token time of the same request alone), and
never negative.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from loratwin.profile.model import Profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.engine import run_engine
from loratwin.workload.types import Requests

IDLE_TTFT_FILE = "ttft_idle.csv"
#: Bursts of 1-token requests whose duration is the API server's serial intake
#: (``point_id, num_prompts, duration_s, per_request_ms``).
FRONTEND_RATE_FILE = "frontend_rate.csv"
IDLE_TTFT_COLUMNS = ("input_tokens", "output_tokens", "max_loras", "max_lora_rank",
                     "adapter_rank", "ttft_ms")


def read_idle_ttft(model_dir: Path) -> pd.DataFrame | None:
    """The folder's ``ttft_idle.csv``, or ``None`` when it has none (the measured folders)."""
    path = Path(model_dir) / IDLE_TTFT_FILE
    if not path.is_file():
        return None
    from loratwin.calibrate.calibration import read_csv

    df = read_csv(path)
    missing = [c for c in IDLE_TTFT_COLUMNS if c not in df.columns]
    if missing:
        from loratwin.errors import DataError

        raise DataError(f"{path}: missing column {missing[0]!r}")
    return df


def read_frontend_rate(model_dir: Path) -> float:
    """The API server's serial time per request (s): the median ``per_request_ms`` of the
    folder's ``frontend_rate.csv``, 0 when it has none (the measured folders)."""
    path = Path(model_dir) / FRONTEND_RATE_FILE
    if not path.is_file():
        return 0.0
    from loratwin.calibrate.calibration import read_csv

    v = pd.to_numeric(read_csv(path).get("per_request_ms"), errors="coerce")
    v = v[np.isfinite(v)] if v is not None else []
    return max(float(np.median(v)) / 1e3, 0.0) if len(v) else 0.0


def engine_first_token_s(profile: Profile, row: pd.Series) -> float:
    """The twin's first-token time (s) of one request alone on an idle server."""
    server = ServerConfig(
        max_loras=int(row["max_loras"]), max_cpu_loras=int(row["max_loras"]),
        max_lora_rank=int(row["max_lora_rank"]), block_size=profile.block_size,
        max_num_seqs=1, max_num_batched_tokens=max(int(row["input_tokens"]), 1),
    )
    req = Requests(np.zeros(1), np.zeros(1, np.int32),
                   np.array([int(row["input_tokens"])], np.int32),
                   np.array([int(row["output_tokens"])], np.int32))
    raw = run_engine(profile, server, [int(row["adapter_rank"])], req,
                     ClientConfig(duration_s=1e9, max_ports=None))
    return float(raw.first_token_s[0])


def fit_frontend_latency(profile: Profile, table: pd.DataFrame
                         ) -> tuple[float, dict[str, float | int | str]]:
    """``frontend_latency_s`` (see the module docstring) and its fit report."""
    gaps = np.array([r["ttft_ms"] / 1e3 - profile.frontend_per_request_s
                     - engine_first_token_s(profile, r)
                     for _, r in table.iterrows() if math.isfinite(float(r["ttft_ms"]))])
    if gaps.size == 0:
        return 0.0, {"rows": 0}
    value = max(float(np.median(gaps)), 0.0)
    return value, {"rows": int(gaps.size), "frontend_latency_ms": 1e3 * value,
                   "gap_spread_ms": 1e3 * float(gaps.max() - gaps.min())}
