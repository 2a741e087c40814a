"""One benchmark as per-request records, a time series and one row of the real-runs schema.

The row has the columns of ``../shared/data/real_runs/<model>.csv`` (data README) that a
live benchmark can fill, with the same definitions where one exists:

* ``completed`` counts the requests that finished inside the window; token totals and
  throughputs are over them, divided by the window ``duration_s``;
* TTFT (send -> first streamed chunk), TPOT ((latency - TTFT) / (output tokens - 1), per
  request) and ITL in ms over the completed requests. ``mean_itl_ms`` is the decode time
  per generated token, sum(latency - TTFT) / sum(output tokens - 1), which equals the
  pooled chunk gaps of ``benchmark_serving`` when every chunk carries one token and stays
  right when a loaded API server merges tokens into one chunk; ``median``/``p99`` are over
  the chunk gaps;
* the gauges are means and maxima of the ``/metrics`` samples inside the window;
  ``num_preemptions_total`` is the counter's increase over the benchmark (the measured runs
  give its final value: their server served nothing else);
* ``ideal_total_throughput_est`` is the offered load: tokens of the requests that arrived in
  the window / window (the measured runs estimated it as ``sum_rate`` x mean tokens), and
  ``starvation_est`` = total throughput < 0.9 x that, the papers' rule.

Extra columns say what the measured runs did not need: ``max_num_batched_tokens``,
``block_size``, ``gpu_memory_utilization``, ``vllm_version``, ``flags_source``, the request
counts per status, the engine steps (``n_sched_steps``, from
``vllm:iteration_tokens_total``), and ``trace_file`` / ``adapters_file``: the exact
requests, which ``loratwin validate`` replays instead of redrawing a workload. Two columns
locate where a TTFT is spent: ``server_mean_ttft_ms`` is vLLM's own histogram over the
benchmark (API-server arrival to the first token's output processing: no HTTP streaming, no
client), and ``mean_send_lag_ms`` / ``max_send_lag_ms`` how late the client sent requests
after their arrival times (its event loop busy or the process not running).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from loratwin.live.client import CANCELLED, ERROR, NOT_SENT, OK, RequestRecord
from loratwin.live.metrics import MetricsSnapshot
from loratwin.workload.types import Adapter

STARVATION_FRACTION = 0.9


def records_frame(records: Sequence[RequestRecord], ranks: dict[str, int]) -> pd.DataFrame:
    """Per-request table (one row per request sent or scheduled; times in s, ms in names).

    Columns: ``index, arrival_s, adapter_id, adapter_rank, input_tokens, output_tokens,
    send_s, first_token_s, finish_s, ttft_ms, latency_s, tpot_ms, chunks, prompt_tokens,
    completion_tokens, finish_reason, status, http_status, error, itl_ms`` (a list).
    """
    rows = []
    for r in records:
        out = r.completion_tokens if r.completion_tokens is not None else r.output_tokens
        lat = r.latency_s
        ttft = r.ttft_s
        rows.append({
            "index": r.index, "arrival_s": r.arrival_s, "adapter_id": r.model,
            "adapter_rank": ranks.get(r.model, 0), "input_tokens": r.input_tokens,
            "output_tokens": r.output_tokens, "send_s": r.send_s,
            "first_token_s": r.first_token_s, "finish_s": r.finish_s,
            "ttft_ms": ttft * 1e3, "latency_s": lat,
            "tpot_ms": (lat - ttft) / (out - 1) * 1e3 if out > 1 else math.nan,
            "chunks": r.chunks, "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens, "finish_reason": r.finish_reason,
            "status": r.status, "http_status": r.http_status, "error": r.error,
            "itl_ms": [g * 1e3 for g in r.itl_s],
        })
    df = pd.DataFrame(rows)
    if df.empty:
        df = pd.DataFrame(columns=["index", "arrival_s", "adapter_id", "status"])
    return df


def timeseries_frame(snaps: Sequence[MetricsSnapshot]) -> pd.DataFrame:
    """One row per ``/metrics`` scrape (``t_s`` and the fields of :class:`MetricsSnapshot`)."""
    return pd.DataFrame([s.__dict__ for s in snaps])


def _stats(values: np.ndarray, prefix: str) -> dict[str, float]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return {f"mean_{prefix}_ms": math.nan, f"median_{prefix}_ms": math.nan,
                f"p99_{prefix}_ms": math.nan}
    return {f"mean_{prefix}_ms": float(v.mean()), f"median_{prefix}_ms": float(np.median(v)),
            f"p99_{prefix}_ms": float(np.percentile(v, 99))}


def _gauges(snaps: Sequence[MetricsSnapshot], duration_s: float) -> dict[str, Any]:
    inside = [s for s in snaps if 0.0 <= s.t_s <= duration_s]
    t = np.array([s.t_s for s in inside])

    def col(name: str) -> np.ndarray:
        return np.array([getattr(s, name) for s in inside], float)

    def mean(name: str) -> float:
        v = col(name)
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else math.nan

    def peak(name: str) -> float:
        v = col(name)
        v = v[np.isfinite(v)]
        return float(v.max()) if v.size else math.nan

    return {
        "mean_num_running": mean("num_requests_running"),
        "max_num_running": peak("num_requests_running"),
        "mean_num_waiting": mean("num_requests_waiting"),
        "max_num_waiting": peak("num_requests_waiting"),
        "mean_gpu_cache_usage": mean("kv_cache_usage"),
        "n_series_samples": len(inside),
        "series_max_gap_s": float(np.diff(t).max()) if t.size > 1 else math.nan,
    }


def _delta(snaps: Sequence[MetricsSnapshot], name: str) -> float:
    v = [getattr(s, name) for s in snaps if math.isfinite(getattr(s, name))]
    return float(v[-1] - v[0]) if len(v) >= 2 else math.nan


def _server_ttft_ms(snaps: Sequence[MetricsSnapshot]) -> float:
    """Mean of vLLM's server-side TTFT histogram over the snapshots (ms; NaN without it)."""
    n = _delta(snaps, "ttft_count")
    return 1e3 * _delta(snaps, "ttft_sum_s") / n if math.isfinite(n) and n > 0 else math.nan


def _send_lag_ms(records: Sequence[RequestRecord], how: Any) -> float:
    lag = np.array([r.send_s - r.arrival_s for r in records if math.isfinite(r.send_s)])
    return float(how(lag) * 1e3) if lag.size else math.nan


def summarise_run(
    records: Sequence[RequestRecord],
    snaps: Sequence[MetricsSnapshot],
    *,
    duration_s: float,
    adapters: Sequence[Adapter],
    sum_rate_req_s: float,
    planned_tokens: tuple[float, float, int],
) -> dict[str, Any]:
    """The measured columns of the row (see the module docstring).

    Parameters
    ----------
    records:
        Every request scheduled in the window.
    snaps:
        ``/metrics`` samples, the first taken before the window, the last after it.
    duration_s:
        The window, s.
    adapters:
        The served adapters (ranks and rates).
    sum_rate_req_s:
        Offered request rate, req/s.
    planned_tokens:
        (sum of prompt tokens, sum of output tokens, count) of the requests that arrive
        inside the window.
    """
    done = [r for r in records if r.status == OK and r.finish_s <= duration_s]
    counts = Counter(r.status for r in records)
    pin = np.array([r.prompt_tokens if r.prompt_tokens is not None else r.input_tokens
                    for r in done], float)
    pout = np.array([r.completion_tokens if r.completion_tokens is not None
                     else r.output_tokens for r in done], float)
    ttft = np.array([r.ttft_s * 1e3 for r in done])
    dec = np.array([r.latency_s - r.ttft_s for r in done])
    multi = pout > 1
    tpot = dec[multi] / (pout[multi] - 1) * 1e3
    gaps = np.array([g * 1e3 for r in done for g in r.itl_s])
    itl = _stats(gaps, "itl")
    itl["mean_itl_ms"] = (float(dec[multi].sum() / (pout[multi] - 1).sum() * 1e3)
                          if multi.any() else math.nan)
    tin, tout = float(pin.sum()), float(pout.sum())
    total = (tin + tout) / duration_s
    in_sum, out_sum, n_planned = planned_tokens
    offered = (in_sum + out_sum) / duration_s
    rates = [a.rate for a in adapters]
    uniq = sorted(set(rates), reverse=True)
    ranks = list(dict.fromkeys(a.rank for a in adapters))
    steps = _delta(snaps, "num_steps_total")
    pre = _delta(snaps, "num_preemptions_total")
    row: dict[str, Any] = {
        "rank_set": ",".join(str(r) for r in ranks),
        "served_adapters": len(adapters),
        "rates": ",".join(f"{r:g}" for r in uniq),
        "adapters_per_rate": ",".join(str(rates.count(r)) for r in uniq),
        "sum_rate_req_s": sum_rate_req_s,
        "total_time_s": duration_s,
        "duration_s": duration_s,
        "completed": len(done),
        "total_input_tokens": tin,
        "total_output_tokens": tout,
        "request_throughput": len(done) / duration_s,
        "input_throughput": tin / duration_s,
        "output_throughput": tout / duration_s,
        "total_throughput": total,
        **_stats(ttft, "ttft"),
        **_stats(tpot, "tpot"),
        **itl,
        **_gauges(snaps, duration_s),
        "any_preemption": bool(pre > 0) if math.isfinite(pre) else None,
        "num_preemptions_total": pre,
        "pool_mean_input_tokens": in_sum / n_planned if n_planned else math.nan,
        "pool_mean_output_tokens": out_sum / n_planned if n_planned else math.nan,
        "mean_input_tokens_per_req": float(pin.mean()) if done else math.nan,
        "mean_output_tokens_per_req": float(pout.mean()) if done else math.nan,
        "ideal_total_throughput_est": offered,
        "starvation_est": bool(total < STARVATION_FRACTION * offered),
        "n_planned": n_planned,
        "n_sent": sum(1 for r in records if math.isfinite(r.send_s)),
        "n_cancelled": counts.get(CANCELLED, 0)
        + sum(1 for r in records if r.status == OK and r.finish_s > duration_s),
        "n_errors": counts.get(ERROR, 0),
        "n_not_sent": counts.get(NOT_SENT, 0) + max(n_planned - len(records), 0),
        "server_mean_ttft_ms": _server_ttft_ms(snaps),
        "mean_send_lag_ms": _send_lag_ms(records, np.mean),
        "max_send_lag_ms": _send_lag_ms(records, np.max),
        "n_sched_steps": steps,
        "mean_step_interval_ms": duration_s / steps * 1e3 if steps and steps > 0 else math.nan,
    }
    return row
