"""Benchmark metrics of a simulated run, computed the way vLLM's benchmark_serving does.

Throughput counts the requests completed inside the window (requests still open when it
closes are cancelled and not counted); TTFT, ITL and TPOT are over completed requests:
TTFT = first token - send time; TPOT = (latency - TTFT) / (output tokens - 1) per request,
averaged; ITL pools every inter-token gap. Starvation follows the papers' rule (Agullo et
al., arXiv 2508.08343, Sec. 4): total throughput below 0.9 x the offered load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from loratwin.twin.engine import RawRun
from loratwin.workload.types import Requests

if TYPE_CHECKING:
    import pandas as pd

Columns = Mapping[str, np.ndarray | list[Any]]
"""A table as named columns of equal length (numpy arrays or lists)."""

STARVATION_FRACTION = 0.9


@dataclass(frozen=True)
class SimMetrics:
    """Headline metrics of one simulated run (units in the names; ms for latencies)."""

    total_throughput_tok_s: float
    input_throughput_tok_s: float
    output_throughput_tok_s: float
    request_throughput_req_s: float
    offered_throughput_tok_s: float
    mean_ttft_ms: float
    p99_ttft_ms: float
    mean_itl_ms: float
    p99_itl_ms: float
    mean_tpot_ms: float
    completed: int
    arrivals: int
    dropped: int
    preemptions: int
    adapter_loads: int
    disk_loads: int
    steps: int
    mean_num_running: float
    mean_num_waiting: float
    mean_kv_usage: float
    kv_cache_tokens: int
    starvation: bool
    memory_error: bool
    memory_error_reason: str | None
    duration_s: float
    wall_s: float


@dataclass(frozen=True)
class SimResult:
    """Everything a simulation returns.

    The tables are kept as numpy columns; the pandas DataFrames (:attr:`per_adapter`,
    :attr:`requests`, :attr:`timeseries`) are built on first access, so that a caller that
    only wants the metrics or the JSON (``loratwin simulate --json``) never imports pandas.

    Attributes
    ----------
    metrics:
        Headline metrics (see :class:`SimMetrics`).
    per_adapter_columns:
        One entry per adapter (columns of length n_adapters): ``adapter_id, rank,
        arrivals, completed, total_throughput_tok_s, offered_throughput_tok_s,
        mean_ttft_ms, mean_itl_ms, starvation``.
    request_columns:
        Per-request records if asked for (columns of length n_requests: ``arrival_s,
        adapter_id, input_tokens, output_tokens, first_token_s, finish_s, ttft_ms,
        tpot_ms, preemptions, completed, dropped``), else ``None``.
    timeseries_columns:
        One entry per simulated step (or run of identical decode steps) if asked for
        (``t_s, dt_s, running, waiting, kv_used_blocks``, see
        :mod:`loratwin.twin.timeseries`), else ``None``.
    """

    metrics: SimMetrics
    per_adapter_columns: Columns
    request_columns: Columns | None = None
    timeseries_columns: Columns | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def per_adapter(self) -> pd.DataFrame:
        """:attr:`per_adapter_columns` as a DataFrame (one row per adapter)."""
        import pandas as pd

        return pd.DataFrame(dict(self.per_adapter_columns))

    @cached_property
    def requests(self) -> pd.DataFrame | None:
        """:attr:`request_columns` as a DataFrame (one row per request), or ``None``."""
        import pandas as pd

        cols = self.request_columns
        return None if cols is None else pd.DataFrame(dict(cols))

    @cached_property
    def timeseries(self) -> pd.DataFrame | None:
        """:attr:`timeseries_columns` as a DataFrame (one row per step), or ``None``."""
        import pandas as pd

        cols = self.timeseries_columns
        return None if cols is None else pd.DataFrame(dict(cols))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the metrics plus ``per_adapter`` as a list of records (native
        Python values, as ``DataFrame.to_dict(orient="records")`` gives)."""
        out: dict[str, Any] = asdict(self.metrics)
        out["per_adapter"] = _records(self.per_adapter_columns)
        return out


def _records(cols: Columns) -> list[dict[str, Any]]:
    """Row dicts of a column table, values as Python scalars (``tolist`` of each column)."""
    names = list(cols)
    values = [np.asarray(cols[n]).tolist() for n in names]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if values.size == 0 or weights.sum() <= 0:
        return float("nan")
    idx = np.argsort(values)
    v = values[idx]
    w = np.cumsum(weights[idx])
    return float(v[np.searchsorted(w, q * w[-1], side="left").clip(0, v.size - 1)])


def memory_error_result(
    reason: str, adapter_ids: list[str], ranks: list[int], requests: Requests, duration_s: float
) -> SimResult:
    """The result of a server that does not start (vLLM's start-up memory errors)."""
    in_window = requests.arrival_s < duration_s
    offered = float(
        (requests.input_tokens[in_window].sum() + requests.output_tokens[in_window].sum())
        / duration_s
    )
    nan = float("nan")
    m = SimMetrics(
        0.0, 0.0, 0.0, 0.0, offered, nan, nan, nan, nan, nan, 0, int(in_window.sum()),
        int(in_window.sum()), 0, 0, 0, 0, 0.0, 0.0, 0.0, 0, True, True, reason, duration_s, 0.0,
    )
    return SimResult(m, {"adapter_id": list(adapter_ids), "rank": list(ranks)})


@dataclass(frozen=True)
class _Outcomes:
    """Per-request arrays shared by the metrics (length n unless noted; times in s)."""

    pin: np.ndarray            # input tokens, int64
    pout: np.ndarray           # output tokens, int64
    done: np.ndarray           # completed inside the window (client view)
    in_window: np.ndarray      # sent inside the window
    multi: np.ndarray          # done and more than one output token
    ttft_s: np.ndarray         # first token (client) - send time, every request
    dec_time: np.ndarray       # finish - first token, the ``multi`` requests only
    gaps: np.ndarray           # output tokens - 1 (float64), the ``multi`` requests only


def _outcomes(raw: RawRun, requests: Requests, duration_s: float, fe: float) -> _Outcomes:
    pout = requests.output_tokens.astype(np.int64)
    finish_c = raw.finish_s + fe
    done = np.isfinite(finish_c) & (finish_c <= duration_s)
    multi = done & (pout > 1)
    return _Outcomes(
        pin=requests.input_tokens.astype(np.int64), pout=pout, done=done,
        in_window=requests.arrival_s < duration_s, multi=multi,
        ttft_s=raw.first_token_s + fe - requests.arrival_s,
        dec_time=(raw.finish_s - raw.first_token_s)[multi],
        gaps=(pout[multi] - 1).astype(np.float64),
    )


def build_result(
    raw: RawRun,
    requests: Requests,
    adapter_ids: list[str],
    ranks: list[int],
    duration_s: float,
    frontend_latency_s: float,
    *,
    record_requests: bool = False,
) -> SimResult:
    """Turn raw engine outcomes into benchmark metrics (client view, window ``duration_s``).

    Returns numpy columns only (no pandas): the headline metrics, one row per adapter and,
    with ``record_requests``, one row per request (see :class:`SimResult`).
    """
    o = _outcomes(raw, requests, duration_s, frontend_latency_s)
    m = _headline(raw, o, duration_s)
    per = _per_adapter(requests.adapter, o, adapter_ids, ranks, duration_s)
    req_cols = (_request_columns(raw, requests, o, adapter_ids, frontend_latency_s)
                if record_requests else None)
    return SimResult(m, per, req_cols, raw.timeseries)


def _headline(raw: RawRun, o: _Outcomes, dur: float) -> SimMetrics:
    """The run's :class:`SimMetrics` (``kv_cache_tokens`` left 0 for the caller)."""
    done, pin, pout = o.done, o.pin, o.pout
    tok_in = float(pin[done].sum())
    tok_out = float(pout[done].sum())
    total = (tok_in + tok_out) / dur
    offered = float((pin[o.in_window].sum() + pout[o.in_window].sum()) / dur)
    ttft = o.ttft_s[done] * 1e3
    dec_time, gaps = o.dec_time, o.gaps
    mean_itl = float(dec_time.sum() / gaps.sum() * 1e3) if gaps.sum() > 0 else float("nan")
    mean_tpot = float(np.mean(dec_time / gaps) * 1e3) if gaps.size else float("nan")
    vals = np.concatenate([raw.itl_step_s, raw.resume_gaps_s])
    wts = np.concatenate([raw.itl_step_weight, np.ones_like(raw.resume_gaps_s)])
    p99_itl = _weighted_quantile(vals, wts, 0.99) * 1e3
    span = max(min(raw.end_s, dur), 1e-12)
    nan = float("nan")
    n_done = int(done.sum())
    return SimMetrics(
        total_throughput_tok_s=total,
        input_throughput_tok_s=tok_in / dur,
        output_throughput_tok_s=tok_out / dur,
        request_throughput_req_s=float(n_done) / dur,
        offered_throughput_tok_s=offered,
        mean_ttft_ms=float(ttft.mean()) if ttft.size else nan,
        p99_ttft_ms=float(np.percentile(ttft, 99)) if ttft.size else nan,
        mean_itl_ms=mean_itl,
        p99_itl_ms=p99_itl,
        mean_tpot_ms=mean_tpot,
        completed=n_done,
        arrivals=int(o.in_window.sum()),
        dropped=int((raw.dropped & o.in_window).sum()),
        preemptions=raw.preemptions,
        adapter_loads=raw.adapter_loads,
        disk_loads=raw.disk_loads,
        steps=raw.steps,
        mean_num_running=raw.running_time_integral / span,
        mean_num_waiting=raw.waiting_time_integral / span,
        mean_kv_usage=raw.kv_used_time_integral / span / max(raw.kv_blocks, 1),
        kv_cache_tokens=0,
        starvation=bool(total < STARVATION_FRACTION * offered),
        memory_error=False,
        memory_error_reason=None,
        duration_s=dur,
        wall_s=raw.wall_s,
    )


def _per_adapter(ad: np.ndarray, o: _Outcomes, adapter_ids: list[str], ranks: list[int],
                 dur: float) -> dict[str, Any]:
    """The per-adapter columns of :class:`SimResult` (``ad``: adapter index per request)."""
    n_ad = len(adapter_ids)
    tokens = (o.pin + o.pout).astype(np.float64)
    ad_done, ad_win = ad[o.done], ad[o.in_window]
    done_tok = np.bincount(ad_done, weights=tokens[o.done], minlength=n_ad)
    off_tok = np.bincount(ad_win, weights=tokens[o.in_window], minlength=n_ad)
    n_done = np.bincount(ad_done, minlength=n_ad)
    ttft_sum = np.bincount(ad_done, weights=o.ttft_s[o.done], minlength=n_ad)
    ad_multi = ad[o.multi]
    dec_sum = np.bincount(ad_multi, weights=o.dec_time, minlength=n_ad)
    gap_sum = np.bincount(ad_multi, weights=o.gaps, minlength=n_ad)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "adapter_id": list(adapter_ids),
            "rank": ranks,
            "arrivals": np.bincount(ad_win, minlength=n_ad),
            "completed": n_done,
            "total_throughput_tok_s": done_tok / dur,
            "offered_throughput_tok_s": off_tok / dur,
            "mean_ttft_ms": ttft_sum / n_done * 1e3,
            "mean_itl_ms": dec_sum / gap_sum * 1e3,
            "starvation": done_tok < STARVATION_FRACTION * off_tok,
        }


def _request_columns(raw: RawRun, requests: Requests, o: _Outcomes, adapter_ids: list[str],
                     fe: float) -> dict[str, Any]:
    """The per-request columns of :class:`SimResult` (client view: front-end latency ``fe``
    s added to the engine's times)."""
    n_ad = len(adapter_ids)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "arrival_s": requests.arrival_s,
            "adapter_id": (np.asarray(adapter_ids, dtype=object)[requests.adapter] if n_ad
                           else []),
            "input_tokens": requests.input_tokens,
            "output_tokens": requests.output_tokens,
            "first_token_s": raw.first_token_s + fe,
            "finish_s": raw.finish_s + fe,
            "ttft_ms": o.ttft_s * 1e3,
            "tpot_ms": np.where(
                o.pout > 1,
                (raw.finish_s - raw.first_token_s) / np.maximum(o.pout - 1, 1) * 1e3, np.nan,
            ),
            "preemptions": raw.preemptions_per_request,
            "completed": o.done,
            "dropped": raw.dropped,
        }
