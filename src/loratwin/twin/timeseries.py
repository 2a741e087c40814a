"""The twin's per-step time series resampled onto a regular grid (for plots and JSON).

:func:`loratwin.twin.simulate.simulate` with ``record_timeseries=True`` returns one row per
simulated step or run of identical decode steps: ``t_s`` (start, s), ``dt_s`` (duration, s),
``running``, ``waiting`` (requests) and ``kv_used_blocks``, each constant over
``[t_s, t_s + dt_s)``; between rows the engine is idle (nothing running or waiting).
:func:`resample` averages each quantity over equal time bins, weighting by time, so a bin's
value is the time-mean of what vLLM's gauges ``vllm:num_requests_running``,
``vllm:num_requests_waiting`` and ``vllm:gpu_cache_usage_perc`` would have shown over it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

SERIES: tuple[str, ...] = ("running", "waiting", "kv_used_fraction")


def resample(ts: Mapping[str, np.ndarray], duration_s: float, bins: int, kv_blocks: int
             ) -> dict[str, list[float]]:
    """Time-weighted means over ``bins`` equal bins of ``[0, duration_s)``.

    Parameters
    ----------
    ts:
        Columns ``t_s``, ``dt_s``, ``running``, ``waiting``, ``kv_used_blocks`` (arrays of
        equal length, rows in time order and not overlapping).
    duration_s:
        Window length, s (> 0).
    bins:
        Number of bins (>= 1).
    kv_blocks:
        KV cache blocks of the server (> 0), for ``kv_used_fraction``.

    Returns
    -------
    ``{"t_s": bin midpoints, "running", "waiting", "kv_used_fraction"}``, lists of ``bins``
    floats (requests, requests, fraction in [0, 1]).

    Raises
    ------
    ValueError
        Non-positive ``duration_s``, ``bins`` or ``kv_blocks``.
    """
    if not duration_s > 0 or bins < 1 or kv_blocks < 1:
        raise ValueError("duration_s, bins and kv_blocks must be > 0")
    edges = np.linspace(0.0, duration_s, bins + 1)
    t0 = np.asarray(ts["t_s"], float)
    t1 = t0 + np.asarray(ts["dt_s"], float)
    out: dict[str, list[float]] = {"t_s": ((edges[:-1] + edges[1:]) / 2).tolist()}
    values = {"running": np.asarray(ts["running"], float),
              "waiting": np.asarray(ts["waiting"], float),
              "kv_used_fraction": np.asarray(ts["kv_used_blocks"], float) / kv_blocks}
    # knots of the piecewise-linear integral: each row adds value x dt between t0 and t1
    knots = np.empty(2 * t0.size)
    knots[0::2], knots[1::2] = t0, t1
    for name in SERIES:
        v = values[name]
        cum = np.concatenate([[0.0], np.cumsum(v * (t1 - t0))])
        integral = np.empty(2 * t0.size)
        integral[0::2], integral[1::2] = cum[:-1], cum[1:]
        at = (np.interp(edges, knots, integral, left=0.0, right=cum[-1]) if t0.size
              else np.zeros_like(edges))
        out[name] = (np.diff(at) / np.diff(edges)).tolist()
    return out
