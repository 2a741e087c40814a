"""Lower bound, backbone capacity, report helpers and the surrogate adapter."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from loratwin.errors import ConfigError, DataError
from loratwin.placement.bounds import backbone_capacity, lower_bound
from loratwin.placement.predictor import SurrogatePredictor, load_predictor, make_problem
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.report import (
    adapter_shares,
    placement_dict,
    placement_table,
    summarize,
)
from loratwin.placement.types import GpuAssignment, Placement
from loratwin.profile.model import Profile
from loratwin.workload.types import Adapter

from .conftest import C0_TOK_S, AnalyticPredictor, make_adapters


def test_backbone_capacity_is_a_saturated_throughput(profile: Profile) -> None:
    problem = PlacementProblem(make_adapters(5, 1.0), profile, AnalyticPredictor())
    cap = backbone_capacity(problem)
    assert cap.offered_tok_s > 1.5 * cap.throughput_tok_s  # overloaded
    assert C0_TOK_S < cap.throughput_tok_s < 40000  # the stand-in stays below it
    assert cap.mean_input_tokens == pytest.approx(profile.sharegpt_mean_input_tokens)


def test_lower_bound_scales_with_the_load(profile: Profile) -> None:
    small = PlacementProblem(make_adapters(8, 10.0), profile, AnalyticPredictor())
    big = PlacementProblem(make_adapters(8, 500.0), profile, AnalyticPredictor())
    lb_small = lower_bound(small)
    lb_big = lower_bound(big, capacity=lb_small.capacity)
    assert lb_small.gpus == 1 and lb_small.memory_gpus == 1
    expected = math.ceil(0.9 * big.offered_tok_s(big.adapters)
                         / (lb_small.capacity.throughput_tok_s * 1.05))
    assert lb_big.gpus == lb_big.throughput_gpus == expected > 5
    assert "lower bound" in lb_big.describe()


def test_lower_bound_without_traffic_is_one_gpu(profile: Profile) -> None:
    problem = PlacementProblem([Adapter("a", 8, 0.0), Adapter("b", 16, 0.0)], profile,
                               AnalyticPredictor())
    assert lower_bound(problem).gpus == 1


def _gpu(adapters: tuple[Adapter, ...], verified: dict | None) -> GpuAssignment:
    return GpuAssignment(adapters, 2, 3, 16, predicted={
        "total_throughput_tok_s": 1.0, "mean_itl_ms": 9.0, "mean_ttft_ms": 90.0,
        "starvation_probability": 0.6, "headroom": 0.0}, verified=verified)


def test_summarize_weights_latencies_by_throughput() -> None:
    v1 = {"starvation": False, "memory_error": False, "total_throughput_tok_s": 3000.0,
          "mean_itl_ms": 10.0, "mean_ttft_ms": 100.0}
    v2 = {"starvation": True, "memory_error": False, "total_throughput_tok_s": 1000.0,
          "mean_itl_ms": 30.0, "mean_ttft_ms": 500.0}
    v3 = {"starvation": False, "memory_error": True, "total_throughput_tok_s": 0.0,
          "mean_itl_ms": float("nan"), "mean_ttft_ms": float("nan")}
    a = (Adapter("x", 8, 1.0),)
    row = summarize(Placement("t", (_gpu(a, v1), _gpu(a, v2), _gpu(a, v3)), 0.5))
    assert (row.gpus, row.starved_gpus, row.memory_errors) == (3, 1, 1)
    assert row.total_throughput_tok_s == 4000.0
    assert row.mean_itl_ms == pytest.approx(15.0)
    assert row.mean_ttft_ms == pytest.approx(200.0)
    assert row.verified and row.predicted_starving_gpus == 3
    unverified = summarize(Placement("t", (_gpu(a, None),), 0.1))
    assert not unverified.verified and unverified.mean_itl_ms == 9.0


def test_split_adapters_are_shown_with_their_share() -> None:
    g = _gpu((Adapter("x", 8, 1.0), Adapter("y", 8, 0.5)), None)
    rates = {"x": 1.0, "y": 2.0}
    assert adapter_shares(rates, g) == [("x", 1.0), ("y", 0.25)]
    console = Console(width=80, record=True)
    console.print(placement_table(Placement("t", (g,), 0.0), rates))
    text = console.export_text()
    assert " 2* " in text and "1 split adapter(s)" in text
    doc = placement_dict(Placement("t", (g,), 0.0), rates, lower_bound=1)
    assert doc["servers"][0]["traffic_share"] == [1.0, 0.25]
    assert doc["lower_bound"] == 1


class _FakeSurrogate:
    profile = "llama-3.1-8b-instruct"

    def predict(self, x: np.ndarray, fields: object = None):
        inner = AnalyticPredictor().predict(x)
        return type("P", (), {**inner.__dict__, "starvation": inner.starvation_probability > .5})


def test_surrogate_predictor_returns_placement_predictions(profile: Profile) -> None:
    pred = SurrogatePredictor(_FakeSurrogate())  # type: ignore[arg-type]
    problem = make_problem(make_adapters(4, 10.0), profile, predictor=pred)
    out = problem.evaluate(np.array([[10.0, 1.0, 8, 8, 0, 4, 4, 200, 200, 1.0]]))
    assert out.starvation_probability.shape == (1,)
    assert out.out_of_envelope.dtype == bool


def test_surrogate_for_another_profile_is_rejected(
    profile: Profile, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _FakeSurrogate()
    other.profile = "qwen-2.5-7b-instruct"
    monkeypatch.setattr(SurrogatePredictor, "load",
                        classmethod(lambda cls, name: cls(other)))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="trained for"):
        load_predictor(profile)


def test_make_problem_validates(profile: Profile, tmp_path: Path) -> None:
    with pytest.raises(DataError):
        make_problem(tmp_path / "missing.csv", profile, predictor=AnalyticPredictor())
    with pytest.raises(ConfigError):
        make_problem(make_adapters(2, 1.0), profile, predictor=AnalyticPredictor(),
                     arrival_cv=0.0)
