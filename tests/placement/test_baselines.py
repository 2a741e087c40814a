"""Every algorithm returns a valid placement; the baselines' building blocks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from loratwin.placement import api
from loratwin.placement.baselines import (
    P_STARVING,
    best_loras,
    group_rows,
    headrooms,
    least_loaded_groups,
    random_groups,
    smallest_feasible,
)
from loratwin.placement.bounds import backbone_capacity, lower_bound
from loratwin.placement.dlora import proactive_groups
from loratwin.placement.loraserve import fractional_pack, hamilton, operating_point
from loratwin.placement.prefix_search import SearchOptions, split_hot
from loratwin.placement.problem import PlacementProblem, PrefixStats
from loratwin.placement.types import Placement, Predictions
from loratwin.profile.model import Profile
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

from .conftest import AnalyticPredictor, make_adapters
from .helpers import SPLITTING, check_valid

SURROGATE_CHECKED = ("least-loaded", "random", "loraserve", "dlora-proactive")


@pytest.fixture(scope="module")
def workloads(profile: Profile) -> dict[str, PlacementProblem]:
    mixed = make_adapters(60, 190.0, ranks=(8, 16, 32), seed=1, sigma=1.2)
    # per-adapter lengths on some adapters
    mixed = [Adapter(a.id, a.rank, a.rate, 400.0, 120.0) if i % 5 == 0 else a
             for i, a in enumerate(mixed)]
    hot = make_adapters(12, 60.0, ranks=(16,), seed=2)
    hot[0] = Adapter("hot", 16, 38.0)  # one adapter near a whole GPU by itself
    return {
        "mixed": PlacementProblem(mixed, profile, AnalyticPredictor()),
        "hot": PlacementProblem(hot, profile, AnalyticPredictor()),
    }


@pytest.fixture(scope="module")
def placed(workloads: dict[str, PlacementProblem]
           ) -> dict[tuple[str, str], Placement]:
    return {(w, a): api.place(p, a, seed=3, confirm_borderline=False)
            for w, p in workloads.items() for a in api.ALGORITHMS}


@pytest.mark.parametrize("workload", ["mixed", "hot"])
@pytest.mark.parametrize("algorithm", api.ALGORITHMS)
def test_every_algorithm_returns_a_valid_placement(
    workloads: dict[str, PlacementProblem], placed: dict[tuple[str, str], Placement],
    workload: str, algorithm: str,
) -> None:
    problem = workloads[workload]
    p = placed[(workload, algorithm)]
    assert p.algorithm == algorithm
    check_valid(problem, p, may_split=algorithm in SPLITTING)
    assert p.placement_s >= 0


@pytest.mark.parametrize("workload", ["mixed", "hot"])
def test_lower_bound_is_below_every_algorithm(
    workloads: dict[str, PlacementProblem], placed: dict[tuple[str, str], Placement],
    workload: str,
) -> None:
    lb = lower_bound(workloads[workload])
    assert lb.gpus >= 1
    for a in api.ALGORITHMS:
        assert lb.gpus <= placed[(workload, a)].gpus, a


@pytest.mark.parametrize("algorithm", SURROGATE_CHECKED)
def test_surrogate_checked_baselines_predict_no_starvation(
    placed: dict[tuple[str, str], Placement], algorithm: str
) -> None:
    for w in ("mixed", "hot"):
        for g in placed[(w, algorithm)].servers:
            assert g.predicted["starvation_probability"] < P_STARVING


def test_splitting_baselines_serve_an_adapter_too_hot_for_one_gpu(profile: Profile) -> None:
    ads = make_adapters(11, 20.0, ranks=(16,), seed=2)
    ads.append(Adapter("hot", 16, 45.0))  # alone, the stand-in predicts starvation
    problem = PlacementProblem(ads, profile, AnalyticPredictor())
    whole = api.place(problem, "least-loaded")
    assert any(g.predicted["starvation_probability"] >= P_STARVING for g in whole.servers)
    assert any("starve" in n for n in whole.notes)
    for name in (*SPLITTING, "loratwin"):
        p = api.place(problem, name, confirm_borderline=False)
        check_valid(problem, p, may_split=True)
        holders = [g for g in p.servers if any(a.id == "hot" for a in g.adapters)]
        assert len(holders) >= 2, name
        assert all(g.predicted["starvation_probability"] < P_STARVING for g in p.servers)
    ours = api.place(problem, "loratwin", confirm_borderline=False)
    pieces = [a.rate for g in ours.servers for a in g.adapters if a.id == "hot"]
    assert len(set(pieces)) == 1  # equal replicas, the fewest that are safe alone
    assert any("hot" in n and f"{len(pieces)} replicas" in n for n in ours.notes)
    k = len(pieces)
    def alone(rate: float) -> float:
        return problem.assignment([Adapter("hot", 16, rate)], 1).predicted[
            "starvation_probability"]
    assert alone(45.0 / k) < 0.2 <= alone(45.0 / (k - 1))


def test_max_backbone_fills_to_the_backbone_capacity(
    workloads: dict[str, PlacementProblem], placed: dict[tuple[str, str], Placement]
) -> None:
    problem = workloads["mixed"]
    cap = backbone_capacity(problem, seed=3).throughput_tok_s  # the seed of `placed`
    p = placed[("mixed", "max-backbone")]
    for g in p.servers:
        assert problem.offered_tok_s(g.adapters) <= cap or len(g.adapters) == 1
        assert g.max_loras == min(len(g.adapters), problem.max_loras_limit(g.max_lora_rank))
    # LoRA-unaware: fewer GPUs than the surrogate-checked baselines, and predicted starving
    assert p.gpus <= placed[("mixed", "least-loaded")].gpus
    assert any(g.predicted["starvation_probability"] >= P_STARVING for g in p.servers)


def test_random_is_seeded(workloads: dict[str, PlacementProblem]) -> None:
    problem = workloads["hot"]
    a = api.place(problem, "random", seed=5)
    b = api.place(problem, "random", seed=5)
    assert [[x.id for x in g.adapters] for g in a.servers] == \
        [[x.id for x in g.adapters] for g in b.servers]
    assert random_groups(problem.adapters, 4, 1) != random_groups(problem.adapters, 4, 2)


def test_group_rows_match_prefix_stats(workloads: dict[str, PlacementProblem]) -> None:
    problem = workloads["mixed"]
    groups = [list(problem.adapters[:7]), list(problem.adapters[7:8]),
              [Adapter("z", 8, 0.0), Adapter("y", 16, 0.0, 100.0, 50.0)]]
    rows = group_rows(problem, groups)
    for g, row in zip(groups, rows, strict=True):
        expected = PrefixStats(problem, g).row(len(g), 1)
        np.testing.assert_allclose(row, expected, rtol=1e-12, atol=1e-12)


def test_best_loras_and_headroom_match_the_lead_api(
    workloads: dict[str, PlacementProblem]
) -> None:
    problem = workloads["mixed"]
    groups = [list(problem.adapters[i:i + 9]) for i in range(0, 27, 9)]
    ev = best_loras(problem, group_rows(problem, groups))
    h = headrooms(problem, ev)
    for k, g in enumerate(groups):
        ref, _ = api.resize_loras(problem, problem.assignment(g, 1), SearchOptions())
        assert ref.max_loras == ev.loras[k]
        assert ref.predicted["headroom"] == pytest.approx(h[k])
        assert ref.predicted["starvation_probability"] == pytest.approx(ev.p[k])


def test_least_loaded_balances_rates() -> None:
    ads = [Adapter(f"a{i}", 8, r) for i, r in enumerate([5, 4, 3, 3, 2, 2, 1])]
    groups = least_loaded_groups(ads, 3)
    loads = sorted(sum(a.rate for a in g) for g in groups)
    assert loads == [6.0, 7.0, 7.0]
    assert len(least_loaded_groups(ads, 10)) == 7  # empty GPUs dropped


def test_smallest_feasible_finds_the_threshold() -> None:
    calls: list[int] = []

    def trial(n: int) -> tuple[bool, int]:
        calls.append(n)
        return n >= 37, n * 10

    n, res, ok = smallest_feasible(trial, 3, 100)
    assert (n, res, ok) == (37, 370, True)
    assert len(calls) < 20
    assert smallest_feasible(lambda n: (False, n), 3, 9)[1:] == (9, False)
    assert smallest_feasible(lambda n: (True, n), 5, 9)[0] == 5


def test_hamilton_apportionment() -> None:
    assert hamilton([1.0, 1.0, 1.0], 4) == [2, 1, 1]
    assert hamilton([10.0, 0.01], 5) == [4, 1]  # every party keeps one seat
    assert sum(hamilton([0.3, 2.2, 5.7], 11)) == 11
    assert hamilton([0.0, 0.0], 2) == [1, 1]
    with pytest.raises(ValueError):
        hamilton([1.0, 1.0], 1)


def test_fractional_pack_splits_at_equal_shares() -> None:
    ads = [Adapter("a", 8, 6.0), Adapter("b", 8, 3.0), Adapter("c", 8, 0.0),
           Adapter("d", 8, 3.0)]
    groups = fractional_pack(ads, 3)
    assert [sum(a.rate for a in g) for g in groups] == pytest.approx([4.0, 4.0, 4.0])
    total = {}
    for g in groups:
        for a in g:
            total[a.id] = total.get(a.id, 0.0) + a.rate
    assert total == pytest.approx({"a": 6.0, "b": 3.0, "c": 0.0, "d": 3.0})
    assert fractional_pack(ads, 1) == [ads]


def test_operating_point_falls_with_more_adapters_per_gpu(
    workloads: dict[str, PlacementProblem]
) -> None:
    problem = workloads["mixed"]
    group = [a for a in problem.adapters if a.rank == 32]
    few, many = operating_point(problem, group, 2), operating_point(problem, group, len(group))
    assert 0 < many <= few
    # the stand-in sustains about 16,000 tok/s / 0.9 at ~420 tokens per request
    assert few < 16000 / 0.9 / 300


def test_dlora_replicas_split_traffic_evenly(profile: Profile) -> None:
    ads = [Adapter("hot", 16, 36.0), *(Adapter(f"c{i}", 16, 1.0) for i in range(4))]
    problem = PlacementProblem(ads, profile, AnalyticPredictor())
    groups, added = proactive_groups(problem, 2)
    assert added >= 1
    hot = [a.rate for g in groups for a in g if a.id == "hot"]
    assert len(hot) == 2 and sum(hot) == pytest.approx(36.0)
    assert max(hot) == pytest.approx(min(hot))


class _ShortPromptArtifact(AnalyticPredictor):
    """The stand-in, except that one adapter alone with prompts below 20 tokens is predicted
    to starve at any rate (what a surrogate trained on a small design did outside its
    envelope)."""

    def predict(self, features: np.ndarray, fields: object = None) -> Predictions:
        pred = super().predict(features)
        x = np.asarray(features, float)
        alone = ((x[:, FEATURES.index("served_adapters")] == 1)
                 & (x[:, FEATURES.index("mean_input_tokens")] < 20))
        return dataclasses.replace(
            pred, starvation_probability=np.where(alone, 0.99, pred.starvation_probability))


def test_an_adapter_no_split_makes_safe_is_kept_whole(profile: Profile) -> None:
    ads = make_adapters(11, 20.0, ranks=(16,), seed=2)
    ads.append(Adapter("tiny", 8, 0.002, mean_input_tokens=12.0, mean_output_tokens=184.0))
    problem = PlacementProblem(ads, profile, _ShortPromptArtifact())
    kept, notes = split_hot(problem, SearchOptions())
    assert [a.id for a in kept] == [a.id for a in ads]  # nothing split
    assert [a.rate for a in kept] == [a.rate for a in ads]
    assert len(notes) == 1 and "tiny" in notes[0] and "not split" in notes[0]
    # a load problem is still split (the stand-in's hot adapter of the test above)
    hot = [*ads, Adapter("hot", 16, 45.0)]
    split, notes = split_hot(PlacementProblem(hot, profile, _ShortPromptArtifact()),
                             SearchOptions())
    assert sum(a.id == "hot" for a in split) >= 2 and sum(a.id == "tiny" for a in split) == 1
    assert any("hot" in n and "replicas" in n for n in notes)
