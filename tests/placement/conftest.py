"""Fixtures of the placement tests: a small analytic stand-in for the surrogate.

:class:`AnalyticPredictor` is *not* the surrogate: a GPU's capacity (tok/s) falls with the
slots (``max_loras`` x slot rank: kernel cost) and with adapters beyond the slots (swaps),
and it starves when 0.9 x the offered load exceeds that capacity. Its ceiling (16,000 tok/s)
lies below the twin's backbone capacity (about 21,000 tok/s for Llama-3.1-8B at ShareGPT
lengths), so the twin-based lower bound holds for it, as it must for the real surrogate.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import Predictions
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

C0_TOK_S = 16000.0
_I = {f: i for i, f in enumerate(FEATURES)}


class AnalyticPredictor:
    """Stand-in ``GpuPredictor`` (tests only; see the module docstring)."""

    def __init__(self, c0: float = C0_TOK_S) -> None:
        self.c0 = c0
        self.calls = 0

    def capacity(self, x: np.ndarray) -> np.ndarray:
        loras = x[:, _I["max_loras"]]
        n = x[:, _I["served_adapters"]]
        rank = x[:, _I["max_rank"]]
        kernel = 1.0 + 0.0015 * loras * rank / 16.0
        swaps = 1.0 + 0.25 * np.maximum(n - loras, 0.0) / n
        return self.c0 / (kernel * swaps)

    def predict(self, features: np.ndarray, fields: object = None) -> Predictions:
        self.calls += 1
        x = np.asarray(features, float)
        assert x.ndim == 2 and x.shape[1] == len(FEATURES)
        assert (x[:, _I["max_loras"]] >= 1).all() and (x[:, _I["served_adapters"]] >= 1).all()
        offered = x[:, _I["sum_rate_req_s"]] * (
            x[:, _I["mean_input_tokens"]] + x[:, _I["mean_output_tokens"]])
        cap = self.capacity(x)
        ratio = 0.9 * offered / cap
        p = 1.0 / (1.0 + np.exp(-np.clip((ratio - 1.0) / 0.03, -50, 50)))
        return Predictions(
            total_throughput_tok_s=np.minimum(offered, cap),
            mean_itl_ms=15.0 * (1.0 + 0.5 * np.minimum(ratio, 2.0)),
            mean_ttft_ms=100.0 * (1.0 + np.minimum(ratio, 3.0) ** 4),
            p99_ttft_ms=400.0 * (1.0 + np.minimum(ratio, 3.0) ** 4),
            starvation_probability=p,
            out_of_envelope=np.zeros(len(x), bool),
        )


def make_adapters(n: int, total_rate: float, ranks: tuple[int, ...] = (8, 16), seed: int = 0,
                  sigma: float = 1.0) -> list[Adapter]:
    """n adapters with log-normal rates summing to ``total_rate`` req/s, ranks dealt cyclically."""
    rng = np.random.default_rng(seed)
    w = rng.lognormal(0.0, sigma, n)
    rates = w / w.sum() * total_rate
    return [Adapter(f"a{i:03d}", ranks[i % len(ranks)], float(r)) for i, r in enumerate(rates)]


@pytest.fixture(scope="session")
def profile() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


@pytest.fixture()
def predictor() -> AnalyticPredictor:
    return AnalyticPredictor()


@pytest.fixture()
def small_problem(profile: Profile, predictor: AnalyticPredictor) -> PlacementProblem:
    """24 adapters offering about 2.5 stand-in GPUs of load."""
    return PlacementProblem(make_adapters(24, 95.0), profile, predictor)


@pytest.fixture(autouse=True, scope="session")
def _short_capacity_window() -> Iterator[None]:
    """Backbone capacity runs of 300 s instead of 1,200 s: about 3% lower capacity, so the
    lower bound can only rise; the stand-in's ceiling stays far below it."""
    import loratwin.placement.bounds as bounds

    old = bounds.CAPACITY_WINDOW_S
    bounds.CAPACITY_WINDOW_S = 300.0
    yield
    bounds.CAPACITY_WINDOW_S = old
