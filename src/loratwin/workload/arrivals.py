"""Per-adapter request arrival processes over a window [0, duration_s).

Every adapter gets its own independent, stationary renewal process with mean rate
``rates[i]`` req/s; the streams are merged and sorted by time.

``process="poisson"``
    Exponential inter-arrival gaps, as vLLM's ``benchmark_serving.py`` draws them
    (``np.random.exponential(1 / request_rate)``) and as the measured multi-LoRA runs used
    per adapter (data README, ``real_runs``). Sampled exactly and without a loop: the count
    in the window is Poisson(rate x duration) and, given the count, the times are i.i.d.
    uniform on [0, duration) (the order-statistics property of the Poisson process).
``process="gamma"``
    Gamma-distributed gaps with mean 1/rate and coefficient of variation ``cv``
    (shape k = 1/cv^2, scale = 1/(rate k)); cv = 1 is the Poisson process, cv > 1 is burstier
    (the Azure code trace has a gap CV of 13.2), cv < 1 more regular. Each stream starts at
    stationarity: the first arrival is the *forward recurrence time* of the renewal process,
    drawn as U x G with U ~ Uniform(0, 1) and G ~ Gamma(k + 1, scale), the length-biased gap
    (standard renewal theory: the gap covering a random time point is length-biased, and the
    point is uniform inside it). Hence the expected count in any window of length t is
    exactly rate x t, also right after time 0. Gaps are drawn in vectorised batches per
    round (enough for all streams to pass the window end with high probability) and summed
    with one segmented cumulative sum; the few streams that fall short get another round.

Both processes take all draws from the given ``numpy.random.Generator`` in a fixed order,
so the same generator state gives identical arrays. Adapters with rate 0 get no request.
Cost is O(n log n) for n arrivals (the final sort); 1M arrivals take about 0.1 s.
The segmented cumulative sum runs over all streams at once, so a time carries a rounding
error of about 1e-16 x (sum of the window ends drawn so far), i.e. below 1e-9 s for 1000
adapters over an hour.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from loratwin.errors import ConfigError

ArrivalProcess = Literal["poisson", "gamma"]
PROCESSES: tuple[str, ...] = ("poisson", "gamma")


def _check(rates: np.ndarray, duration_s: float, process: str, cv: float) -> np.ndarray:
    r = np.asarray(rates, dtype=np.float64)
    if r.ndim != 1:
        raise ConfigError(f"must be a 1-D array (got shape {r.shape})", field="rates")
    if r.size and not np.all(np.isfinite(r)):
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise ConfigError(f"must be finite (got {r[i]} for adapter {i})", field="rate")
    if r.size and np.any(r < 0):
        i = int(np.flatnonzero(r < 0)[0])
        raise ConfigError(f"must be >= 0 (got {r[i]} for adapter {i})", field="rate")
    if not (np.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"must be a finite number > 0 (got {duration_s})", field="duration_s")
    if process not in PROCESSES:
        raise ConfigError(f"must be one of {', '.join(PROCESSES)} (got {process!r})",
                          field="process")
    if not (np.isfinite(cv) and cv > 0):
        raise ConfigError(f"must be a finite number > 0 (got {cv})", field="cv")
    if process == "poisson" and cv != 1.0:
        raise ConfigError(f"only applies to process 'gamma' (got cv={cv} with 'poisson'; "
                          "the Poisson process has cv 1)", field="cv")
    return r


def stable_time_order(times: np.ndarray) -> np.ndarray:
    """Permutation sorting ``times`` stably (equal times keep their input order).

    Same result as ``np.argsort(times, kind="stable")`` but about 3x faster on 1M values:
    an unstable sort, then only the runs of equal times are reordered by input position
    (ties are rare: they need identical float64 draws or zero gamma gaps).
    """
    order = np.argsort(times)
    st = times[order]
    tie = st[1:] == st[:-1]
    if tie.any():
        in_run = np.zeros(st.size, bool)
        in_run[1:] |= tie
        in_run[:-1] |= tie
        pos = np.flatnonzero(in_run)
        run_start = ~np.concatenate(([False], tie))[pos]
        sub = order[pos]
        order[pos] = sub[np.lexsort((sub, np.cumsum(run_start)))]
    return order


def _merge(times: np.ndarray, adapter: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort by time, stably (ties keep the generation order: by adapter for Poisson)."""
    order = stable_time_order(times)
    return times[order], adapter[order].astype(np.int32, copy=False)


def _poisson(r: np.ndarray, duration_s: float, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray]:
    counts = rng.poisson(r * duration_s)
    adapter = np.repeat(np.arange(r.size, dtype=np.int32), counts)
    times = rng.uniform(0.0, duration_s, size=adapter.size)
    return _merge(times, adapter)


def _gamma(r: np.ndarray, duration_s: float, cv: float, rng: np.random.Generator
           ) -> tuple[np.ndarray, np.ndarray]:
    k = 1.0 / (cv * cv)
    ids = np.flatnonzero(r > 0)
    scale = 1.0 / (r[ids] * k)
    # Stationary start: forward recurrence time U * Gamma(k + 1, scale).
    first = rng.uniform(size=ids.size) * rng.gamma(k + 1.0, scale)
    times_parts: list[np.ndarray] = [first[first < duration_s]]
    adapter_parts: list[np.ndarray] = [ids[first < duration_s]]
    live = first < duration_s
    ids, scale, last = ids[live], scale[live], first[live]
    while ids.size:
        # Gaps needed to cover the rest of the window: mean + 4 sd of the count, plus slack.
        expect = (duration_s - last) / (scale * k)
        need = np.ceil(expect + 4.0 * cv * np.sqrt(expect) + 8.0).astype(np.int64)
        gaps = rng.gamma(k, 1.0, size=int(need.sum())) * np.repeat(scale, need)
        ends = np.cumsum(need)
        csum = np.cumsum(gaps)
        before = np.concatenate(([0.0], csum[ends[:-1] - 1]))
        t = csum - np.repeat(before - last, need)
        keep = t < duration_s
        times_parts.append(t[keep])
        adapter_parts.append(np.repeat(ids, need)[keep])
        last = t[ends - 1]
        live = last < duration_s
        ids, scale, last = ids[live], scale[live], last[live]
    times = np.concatenate(times_parts)
    adapter = np.concatenate(adapter_parts).astype(np.int32)
    return _merge(times, adapter)


def arrival_times(
    rates: np.ndarray,
    duration_s: float,
    process: ArrivalProcess = "poisson",
    cv: float = 1.0,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times of all adapters' requests in [0, duration_s), merged in time order.

    Parameters
    ----------
    rates:
        float (n_adapters,), mean arrival rate of each adapter in req/s (finite, >= 0).
    duration_s:
        Window length in s (> 0).
    process:
        ``"poisson"`` or ``"gamma"`` (see the module docstring).
    cv:
        Coefficient of variation of the inter-arrival gaps of each adapter's stream; only
        ``"gamma"`` uses it (``"poisson"`` requires the default 1.0).
    rng:
        Source of all random draws; required (pass ``numpy.random.default_rng(seed)``).

    Returns
    -------
    times : numpy.ndarray
        float64 (n,), arrival times in s, non-decreasing, all in [0, duration_s).
    adapter : numpy.ndarray
        int32 (n,), index into ``rates`` of each request's adapter. Equal times keep
        adapter order (stable sort).

    Raises
    ------
    ConfigError
        Negative or non-finite rate, non-positive duration, unknown process, bad ``cv``,
        or a missing ``rng``.
    """
    if rng is None:
        raise ConfigError("a numpy Generator is required (numpy.random.default_rng(seed))",
                          field="rng")
    r = _check(rates, duration_s, process, cv)
    if process == "poisson":
        return _poisson(r, float(duration_s), rng)
    return _gamma(r, float(duration_s), float(cv), rng)
