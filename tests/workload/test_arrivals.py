"""Arrival processes: determinism, realised rates, gamma CV, stationarity, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from loratwin.errors import ConfigError
from loratwin.workload.arrivals import arrival_times, stable_time_order


def gen(rates: object, duration_s: float = 100.0, process: str = "poisson", cv: float = 1.0,
        seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    return arrival_times(np.asarray(rates, float), duration_s, process, cv,  # type: ignore[arg-type]
                         np.random.default_rng(seed))


@pytest.mark.parametrize(("process", "cv"), [("poisson", 1.0), ("gamma", 2.5)])
def test_same_seed_same_arrays_different_seed_different(process: str, cv: float) -> None:
    rates = [0.5, 2.0, 0.0, 7.0]
    t1, a1 = gen(rates, process=process, cv=cv, seed=3)
    t2, a2 = gen(rates, process=process, cv=cv, seed=3)
    t3, _ = gen(rates, process=process, cv=cv, seed=4)
    assert np.array_equal(t1, t2) and np.array_equal(a1, a2)
    assert t1.size != t3.size or not np.array_equal(t1, t3)


@pytest.mark.parametrize(("process", "cv"), [("poisson", 1.0), ("gamma", 0.5), ("gamma", 3.0)])
def test_output_shape_order_and_range(process: str, cv: float) -> None:
    t, a = gen([1.0, 3.0, 0.0], duration_s=50.0, process=process, cv=cv)
    assert t.dtype == np.float64 and a.dtype == np.int32 and t.shape == a.shape
    assert np.all(np.diff(t) >= 0)
    assert t.min() >= 0 and t.max() < 50.0
    assert set(np.unique(a)) == {0, 1}  # the rate-0 adapter gets nothing


@pytest.mark.parametrize(("process", "cv"), [("poisson", 1.0), ("gamma", 0.5), ("gamma", 2.0)])
def test_realised_rates_per_adapter(process: str, cv: float) -> None:
    rates = np.array([0.1, 0.5, 1.0, 2.0, 5.0])
    duration = 4000.0
    _, a = gen(rates, duration, process, cv, seed=11)
    counts = np.bincount(a, minlength=rates.size)
    expected = rates * duration
    # Renewal counts have variance ~ cv^2 x mean for long windows; allow 4.5 sd.
    assert np.all(np.abs(counts - expected) <= 4.5 * cv * np.sqrt(expected))


@pytest.mark.parametrize("cv", [0.5, 2.0, 4.0])
def test_gamma_gap_cv_realised(cv: float) -> None:
    t, _ = gen([10.0], duration_s=30_000.0, process="gamma", cv=cv, seed=5)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(cv, rel=0.05)


def test_poisson_gaps_are_exponential() -> None:
    t, _ = gen([20.0], duration_s=10_000.0, seed=2)
    gaps = np.diff(t)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.02)
    # P(gap > mean) = exp(-1) for the exponential distribution.
    assert np.mean(gaps > gaps.mean()) == pytest.approx(np.exp(-1), abs=0.01)


@pytest.mark.parametrize("cv", [0.3, 3.0])
def test_gamma_streams_start_stationary(cv: float) -> None:
    # 20,000 independent unit-rate streams over a short window: a stream started fresh at 0
    # (first gap a whole gap) would give 10,000 x (1 - something) for cv < 1 and more for
    # cv > 1; the forward-recurrence start gives exactly rate x window in expectation.
    t, _ = gen(np.ones(20_000), duration_s=0.5, process="gamma", cv=cv, seed=9)
    assert t.size == pytest.approx(10_000, rel=0.04)


def test_stable_time_order_matches_numpy_stable_sort() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        x = rng.integers(0, 20, size=int(rng.integers(0, 200))).astype(float)
        assert np.array_equal(stable_time_order(x), np.argsort(x, kind="stable"))


def test_million_arrivals_fast() -> None:
    rates = np.random.default_rng(0).dirichlet(np.full(1000, 0.5)) * 280.0
    for process, cv in (("poisson", 1.0), ("gamma", 2.0)):
        start = time.perf_counter()
        t, _ = gen(rates, duration_s=3600.0, process=process, cv=cv)
        elapsed = time.perf_counter() - start
        assert t.size > 950_000
        assert elapsed < 1.5, f"{process}: {elapsed:.2f} s for {t.size} arrivals"


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"rates": [1.0, -1.0]}, r"rate: must be >= 0 \(got -1.0 for adapter 1\)"),
    ({"rates": [np.inf]}, "rate: must be finite"),
    ({"duration_s": 0.0}, "duration_s: must be a finite number > 0"),
    ({"process": "weibull"}, "process: must be one of poisson, gamma"),
    ({"process": "gamma", "cv": 0.0}, "cv: must be a finite number > 0"),
    ({"process": "poisson", "cv": 2.0}, "cv: only applies to process 'gamma'"),
])
def test_bad_inputs(kwargs: dict, match: str) -> None:
    args = {"rates": [1.0], "duration_s": 10.0, "process": "poisson", "cv": 1.0} | kwargs
    with pytest.raises(ConfigError, match=match):
        gen(**args)


def test_rng_required() -> None:
    with pytest.raises(ConfigError, match="rng"):
        arrival_times(np.ones(2), 1.0)
