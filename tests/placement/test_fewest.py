"""The fewest GPUs then balanced latency (fewest.py, balance.py, items.py) and the LP bound."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pytest

from loratwin.placement import api
from loratwin.placement.balance import (
    LatencyTarget,
    balance,
    evaluate_cost,
    gpu_cost,
    lpt_owner,
    size_loras,
)
from loratwin.placement.exact import solve_exact
from loratwin.placement.fewest import _Confirmer, place_fewest
from loratwin.placement.items import Items
from loratwin.placement.lp_bound import lp_lower_bound
from loratwin.placement.parallel import run_tasks
from loratwin.placement.prefix_search import SearchOptions, place_loratwin
from loratwin.placement.problem import PlacementProblem, group_rows
from loratwin.placement.types import GpuAssignment, Predictions
from loratwin.profile.model import Profile
from loratwin.workload.types import Adapter

from .conftest import AnalyticPredictor, make_adapters
from .helpers import check_valid


@pytest.fixture(scope="module")
def mixed(profile: Profile) -> PlacementProblem:
    ads = make_adapters(80, 200.0, ranks=(8, 16, 32), seed=4, sigma=1.3)
    ads = [Adapter(a.id, a.rank, a.rate, 600.0, 90.0) if i % 4 == 0 else a
           for i, a in enumerate(ads)]
    return PlacementProblem(ads, profile, AnalyticPredictor())


def test_item_rows_equal_group_rows(mixed: PlacementProblem) -> None:
    items = Items.build(mixed, mixed.adapters)
    owner = np.random.default_rng(0).integers(0, 5, len(items))
    sums, hist = items.gpu_sums(owner, 5)
    rows = items.rows(sums, hist, np.ones(5))
    groups = [[a for a, o in zip(mixed.adapters, owner, strict=True) if o == g]
              for g in range(5)]
    assert np.allclose(rows, group_rows(mixed, groups), rtol=1e-12, atol=1e-9)


def test_balance_lowers_the_worst_gpu_and_never_raises_it(mixed: PlacementProblem) -> None:
    items = Items.build(mixed, mixed.adapters)
    opts, tgt = SearchOptions(), LatencyTarget()
    g = 10  # about 6 GPUs of load
    owner = np.zeros(len(items), np.int64)
    owner[:g - 1] = np.arange(1, g)  # nearly everything on GPU 0: it starves
    sums, hist = items.gpu_sums(owner, g)
    _, start_cost, _ = size_loras(mixed, items, sums, hist, opts, tgt)
    lay = balance(mixed, items, owner, g, opts, tgt)
    assert lay.worst <= start_cost.max()
    assert lay.safe
    # the layout's costs are those of its GPUs re-evaluated from scratch
    sums, hist = items.gpu_sums(lay.owner, g)
    rows = items.rows(sums, hist, lay.loras)
    assert np.allclose(gpu_cost(mixed.evaluate(rows), rows, opts, tgt), lay.cost)
    # from a balanced start it cannot get worse either
    lpt = lpt_owner(items, 4, by_rank=False)
    assert lpt is not None
    again = balance(mixed, items, lpt, 4, opts, tgt)
    sums, hist = items.gpu_sums(lpt, 4)
    assert again.worst <= size_loras(mixed, items, sums, hist, opts, tgt)[1].max() + 1e-12


class _OnlyWhatIsAsked(AnalyticPredictor):
    """The stand-in, with every field not asked for NaN: reading one is caught."""

    def predict(self, features: np.ndarray, fields: object = None) -> Predictions:
        full = super().predict(features)
        if fields is None:
            return full
        keep = set(fields)  # type: ignore[call-overload]
        return Predictions(**{
            f.name: (getattr(full, f.name) if f.name in keep or f.name == "out_of_envelope"
                     else np.full(len(features), np.nan))
            for f in dataclasses.fields(full)})


@pytest.mark.parametrize("opts", [SearchOptions(), SearchOptions(itl_slo_ms=21.0),
                                  SearchOptions(p99_ttft_slo_ms=900.0)])
def test_staged_cost_equals_the_cost_of_a_full_prediction(
        mixed: PlacementProblem, opts: SearchOptions) -> None:
    """evaluate_cost asks the surrogate for the safety fields, then the latency fields of
    the safe rows and the throughput of the unsafe ones: same costs as gpu_cost, on rows
    safe and unsafe, alone or in batches."""
    strict = dataclasses.replace(mixed, predictor=_OnlyWhatIsAsked())
    items = Items.build(mixed, mixed.adapters)
    owner = np.random.default_rng(1).integers(0, 7, len(items))
    owner[:30] = 0  # a hot GPU
    sums, hist = items.gpu_sums(owner, 7)
    rows = items.rows(sums, hist, np.array([4, 8, 16, 2, 32, 8, 1]))
    tgt = LatencyTarget()
    want = gpu_cost(mixed.evaluate(rows), rows, opts, tgt)
    assert (want >= 1e6).any() and (want < 1e6).any()
    for sub in (rows, rows[:1], rows[[0, 3]], rows[1:]):
        cost, p = evaluate_cost(strict, sub, opts, tgt)
        ref = gpu_cost(mixed.evaluate(sub), sub, opts, tgt)
        np.testing.assert_array_equal(cost, ref)
        np.testing.assert_array_equal(p, mixed.evaluate(sub).starvation_probability)
    # the whole search on the strict predictor: the same placement and figures
    a = place_fewest(mixed.with_memo(), opts)
    b = place_fewest(strict.with_memo(), opts)
    assert [(g.adapters, g.max_loras, g.predicted) for g in a.servers] == [
        (g.adapters, g.max_loras, g.predicted) for g in b.servers]
    assert a.tradeoff == b.tradeoff


def test_stop_at_ends_the_search_once_the_worst_gpu_is_final(mixed: PlacementProblem) -> None:
    """With an unreachable stop_at, balance stops when the worst GPU freezes: the same worst
    cost as the full search, in fewer surrogate calls."""
    items = Items.build(mixed, mixed.adapters)
    opts, tgt = SearchOptions(), LatencyTarget(mean_ttft_ms=50.0, p99_ttft_ms=None)
    start = lpt_owner(items, 6, by_rank=False)
    assert start is not None
    counted = AnalyticPredictor()
    problem = dataclasses.replace(mixed, predictor=counted)
    full = balance(problem, items, start, 6, opts, tgt)
    calls_full = counted.calls
    early = balance(problem, items, start, 6, opts, tgt, stop_at=0.5)
    assert full.worst > 0.5
    assert early.worst == full.worst
    assert counted.calls - calls_full < calls_full


def test_fewest_gpus_beats_filling_one_gpu_at_a_time(mixed: PlacementProblem) -> None:
    opts = SearchOptions()
    ours = place_fewest(mixed, opts)
    check_valid(mixed, ours, may_split=True)
    greedy = place_loratwin(mixed, opts)
    least = api.place(mixed, "least-loaded", confirm_borderline=False)
    assert ours.gpus <= greedy.gpus and ours.gpus <= least.gpus
    assert all(g.predicted["starvation_probability"] < opts.p_max for g in ours.servers)
    if least.gpus == ours.gpus:
        worst = max(g.predicted["mean_ttft_ms"] for g in ours.servers)
        assert worst <= max(g.predicted["mean_ttft_ms"] for g in least.servers) + 1e-9
    # same inputs, same placement
    again = place_fewest(mixed, opts)
    assert [sorted(a.id for a in g.adapters) for g in again.servers] == [
        sorted(a.id for a in g.adapters) for g in ours.servers]


def test_tradeoff_reports_the_gpus_the_latency_target_needs(mixed: PlacementProblem) -> None:
    loose = place_fewest(mixed, target=LatencyTarget(1e9, None))
    assert loose.tradeoff is not None and loose.tradeoff.met
    worst = max(g.predicted["mean_ttft_ms"] for g in loose.servers)
    tight = LatencyTarget(100.0 + 0.3 * (worst - 100.0), None)  # stand-in floor: 100 ms
    p = place_fewest(mixed, target=tight)
    t = p.tradeoff
    assert t is not None and not t.met and p.gpus == loose.gpus
    assert t.gpus_for_target is not None and t.gpus_for_target > p.gpus
    assert t.target_worst_mean_ttft_ms is not None
    assert t.target_worst_mean_ttft_ms <= tight.mean_ttft_ms
    assert f"{t.gpus_for_target} GPU(s) for mean TTFT" in t.describe()
    assert "papers' rule" in t.describe() and t.to_dict()["met"] is False
    thr = place_fewest(mixed, target=tight, objective="throughput")
    assert thr.tradeoff is None and thr.gpus == p.gpus


def test_twin_rejections_tighten_then_add_a_gpu(mixed: PlacementProblem) -> None:
    """A confirm that rejects every GPU above half the stand-in's capacity: the result has
    more GPUs, each accepted, and no GPU is simulated twice."""
    seen: list[tuple[str, ...]] = []
    pred = AnalyticPredictor()

    def confirm(gpus: list[GpuAssignment]) -> list[bool]:
        out = []
        for g in gpus:
            seen.append((*sorted(a.id for a in g.adapters), str(g.max_loras)))
            row = group_rows(mixed, [list(g.adapters)])
            row[:, 5] = g.max_loras
            offered = mixed.offered_tok_s(g.adapters)
            out.append(offered < 0.8 * float(pred.capacity(row)[0]) / 0.9)
        return out

    opts = SearchOptions(p_confirm=0.0)
    free = place_fewest(mixed, opts)
    checked = place_fewest(mixed, opts, confirm=confirm)
    assert checked.gpus > free.gpus
    assert len(seen) == len(set(seen))
    assert all(confirm([g])[0] for g in checked.servers)
    assert any("twin rejected" in n for n in checked.notes)


def test_confirmations_riskiest_first_stop_at_the_first_rejection(
        mixed: PlacementProblem) -> None:
    """With one GPU per confirm call the riskiest GPU goes first; a rejection ends the
    layout's runs, and the placement is the one every-GPU confirmation gives."""
    calls: list[list[float]] = []
    pred = AnalyticPredictor()

    def confirm(gpus: list[GpuAssignment]) -> list[bool]:
        calls.append([g.predicted["starvation_probability"] for g in gpus])
        out = []
        for g in gpus:
            row = group_rows(mixed, [list(g.adapters)])
            row[:, 5] = g.max_loras
            out.append(mixed.offered_tok_s(g.adapters)
                       < 0.8 * float(pred.capacity(row)[0]) / 0.9)
        return out

    opts = SearchOptions(p_confirm=0.0)
    every = place_fewest(mixed, opts, confirm=confirm)
    runs_every = sum(len(c) for c in calls)
    calls.clear()
    one = place_fewest(mixed, opts, confirm=confirm, confirm_chunk=1)
    assert [g.adapters for g in one.servers] == [g.adapters for g in every.servers]
    assert all(len(c) == 1 for c in calls)
    assert len(calls) < runs_every  # the rejected layouts stopped early
    # one layout by hand: riskiest first, stop after the first rejected batch
    groups = [list(mixed.adapters[i::4]) for i in range(4)]
    servers = [dataclasses.replace(g, predicted={**g.predicted, "starvation_probability": p})
               for g, p in zip(mixed.assignments(groups, [8] * 4), (0.05, 0.3, 0.01, 0.1),
                               strict=True)]
    asked: list[float] = []

    def reject_01(gpus: list[GpuAssignment]) -> list[bool]:
        asked.extend(g.predicted["starvation_probability"] for g in gpus)
        return [g.predicted["starvation_probability"] != 0.1 for g in gpus]

    assert _Confirmer(reject_01, 0.02, chunk=1).failed(servers) == [3]
    assert asked == [0.3, 0.1]
    asked.clear()
    assert _Confirmer(reject_01, 0.02).failed(servers) == [3]
    assert asked == [0.3, 0.1, 0.05]  # chunk 0: every borderline GPU in one call


def test_lp_bound_is_below_the_exact_optimum(profile: Profile) -> None:
    ads = make_adapters(10, 70.0, ranks=(8, 16), seed=5, sigma=1.0)
    problem = PlacementProblem(ads, profile, AnalyticPredictor())
    lb = lp_lower_bound(problem)
    placements = [api.place(problem, a, confirm_borderline=False) for a in api.ALGORITHMS]
    opt = solve_exact(problem, placements)
    assert 1 <= lb.gpus <= opt.gpus
    assert lb.value > 1.0  # more load than one GPU carries
    assert sum(lb.gpus_by_type.values()) == pytest.approx(lb.value)


def _square(x: int) -> int:
    return x * x


def test_run_tasks_local_processes() -> None:
    assert run_tasks(_square, [(i,) for i in range(4)], jobs=2) == [0, 1, 4, 9]
    assert run_tasks(_square, [], jobs=2) == []


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_run_tasks_on_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert run_tasks(_square, [(i,) for i in range(3)], jobs=1, ray_address="local") == [0, 1, 4]
