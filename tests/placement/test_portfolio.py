"""The twin-judged portfolio and the twin latency repair (placement/portfolio.py).

The twin is replaced by :class:`PrefillTwin`, a stand-in whose GPUs pay twice for prompt
tokens: the length heterogeneity the surrogate's rate-weighted means do not see. It is not
the twin; it makes the tests fast and lets them know the answer.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from loratwin.placement import api
from loratwin.placement.balance import LatencyTarget
from loratwin.placement.baselines import least_loaded_groups
from loratwin.placement.portfolio import (
    Judged,
    TwinJudge,
    candidates,
    choose,
    fewer_gpus,
    improve,
    repair,
    retarget,
    worst_ttft,
)
from loratwin.placement.prefix_search import SearchOptions
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import GpuAssignment
from loratwin.profile.model import Profile
from loratwin.workload.types import Adapter

from .conftest import AnalyticPredictor, make_adapters
from .helpers import check_valid

#: Stand-in capacity on the prefill-weighted work, tok/s: the skewed problem's 4 GPUs of
#: ``loratwin`` carry about 30,000 each, its 3-GPU spreads 39,000-43,000.
CAP_TOK_S = 36000.0


class PrefillTwin(TwinJudge):
    """A stand-in judge: work = rate x (2 x prompt + output) tok/s against ``cap`` (tok/s); a GPU
    starves above its capacity; mean TTFT 100 ms x (1 + 10 x utilisation^4)."""

    def __init__(self, problem: PlacementProblem, cap: float = CAP_TOK_S) -> None:
        super().__init__(problem, 3600.0, 0)
        self.cap = cap
        self.asked: list[int] = []

    def run(self, gpus: Sequence[tuple[GpuAssignment, int]]) -> list[dict[str, Any]]:
        out = []
        for g, k in gpus:
            self.asked.append(k)
            self.runs += 1
            lens = [self.problem.mean_lengths(a) for a in g.adapters]
            work = sum(a.rate * (2 * i + o) for a, (i, o) in zip(g.adapters, lens, strict=True))
            offered = sum(a.rate * (i + o) for a, (i, o) in zip(g.adapters, lens, strict=True))
            u = work / self.cap
            out.append({"starvation": u > 1.0, "memory_error": False,
                        "offered_throughput_tok_s": offered,
                        "total_throughput_tok_s": offered * min(1.0, 1.0 / max(u, 1e-9)),
                        "mean_ttft_ms": 100.0 * (1.0 + 10.0 * u ** 4)})
        return out


@pytest.fixture(scope="module")
def skewed(profile: Profile) -> PlacementProblem:
    """60 adapters; every fifth one has 3,000-token prompts (the others 300)."""
    ads = make_adapters(60, 150.0, ranks=(8, 16), seed=7, sigma=0.8)
    ads = [Adapter(a.id, a.rank, a.rate / (5.0 if i % 5 == 0 else 1.0),
                   3000.0 if i % 5 == 0 else 300.0, 100.0)
           for i, a in enumerate(ads)]
    return PlacementProblem(ads, profile, AnalyticPredictor())


def _judged(problem: PlacementProblem, judge: TwinJudge,
            servers: Sequence[GpuAssignment]) -> Judged:
    v = judge.verdicts(servers, 0)
    assert v is not None
    return Judged("x", tuple(servers), tuple(v))


def test_choose_prefers_fewer_gpus_then_the_lower_twin_ttft(skewed: PlacementProblem) -> None:
    """Among candidates the stand-in twin passes, the fewest GPUs win, then the lowest worst
    TTFT; a candidate with a starving GPU is never chosen."""
    ours = api.place(skewed, "loratwin", confirm_borderline=False)
    pool = candidates(skewed, ours)
    assert pool[0][1] == ours.servers
    assert {len(s) for _, s in pool} == {ours.gpus - 1, ours.gpus}
    judge = PrefillTwin(skewed)
    chosen = choose(pool, judge, SearchOptions(), 0)
    assert chosen is not None
    passing = [(len(s), worst_ttft(v)) for _, s in pool
               if (v := PrefillTwin(skewed).verdicts(s, 0)) is not None]
    assert (len(chosen.servers), chosen.worst) == min(passing)
    assert len(chosen.servers) == ours.gpus  # no 3-GPU spread fits 36,000 tok/s
    # a surrogate twice as strong passes the 3-GPU spreads; the stand-in at 41,000 tok/s
    # passes the dLoRA-style one (39,900 at most) but not the rate-LPT one (42,500)
    strong = dataclasses.replace(skewed, predictor=AnalyticPredictor(c0=32000.0))
    pool3 = candidates(strong, ours)
    roomy = choose(pool3, PrefillTwin(strong, cap=41000.0), SearchOptions(), 0)
    assert roomy is not None and len(roomy.servers) == ours.gpus - 1
    assert roomy.name.startswith("dlora")
    tight = PrefillTwin(skewed, cap=1.0)  # every GPU starves
    assert choose(pool, tight, SearchOptions(), 0) is None


def test_repair_lowers_the_worst_twin_gpu_and_never_raises_it(
        skewed: PlacementProblem) -> None:
    """The long-prompt adapters stacked on one GPU (the others spread by rate-LPT): the
    repair moves load off it and the worst stand-in TTFT falls (it would not without the
    repair); the result is deterministic and keeps every adapter once."""
    strong = dataclasses.replace(skewed, predictor=AnalyticPredictor(c0=32000.0))
    judge = PrefillTwin(strong, cap=45000.0)
    longs = [a for a in strong.adapters if a.mean_input_tokens == 3000.0]
    shorts = [a for a in strong.adapters if a.mean_input_tokens != 3000.0]
    groups = [longs, *least_loaded_groups(shorts, 3)]
    start = _judged(strong, judge, strong.assignments(groups, [8] * 4))
    assert int(np.argmax([v["mean_ttft_ms"] for v in start.verdicts])) == 0
    fixed, moves = repair(strong, start, judge, SearchOptions())
    assert moves >= 1
    assert fixed.worst < 0.9 * start.worst
    again, _ = repair(strong, start, PrefillTwin(strong, cap=45000.0), SearchOptions())
    assert [g.adapters for g in again.servers] == [g.adapters for g in fixed.servers]
    ids = sorted(a.id for g in fixed.servers for a in g.adapters)
    assert ids == sorted(a.id for a in strong.adapters)
    assert repair(strong, start, judge, SearchOptions(), rounds=0)[0].worst == start.worst


def test_improve_beats_the_baselines_in_the_twin(skewed: PlacementProblem) -> None:
    """``loratwin`` with the stand-in twin uses no more GPUs than ``least-loaded`` and
    ``dlora-proactive`` whose GPUs the stand-in passes, and has no higher worst TTFT on as
    many GPUs; the GPUs it returns are valid."""
    opts, tgt = SearchOptions(), LatencyTarget()
    ours = api.place(skewed, "loratwin", confirm_borderline=False)
    out = improve(skewed, ours, PrefillTwin(skewed), opts, tgt, 0)
    check_valid(skewed, out, may_split=True)
    mine = PrefillTwin(skewed).verdicts(out.servers, 0)
    assert mine is not None
    for name in ("least-loaded", "dlora-proactive"):
        base = api.place(skewed, name)
        v = PrefillTwin(skewed).verdicts(base.servers, 0)
        if v is None:
            continue
        assert out.gpus <= base.gpus
        if out.gpus == base.gpus:
            assert worst_ttft(mine) <= worst_ttft(v)
    assert out.tradeoff is not None and out.tradeoff.gpus == out.gpus
    assert any(n.startswith("portfolio:") for n in out.notes)


def test_judge_seeds_gpus_as_the_verification_does(skewed: PlacementProblem) -> None:
    """GPU k is run with seed + k (as ``verify_placement``), and identical runs are cached."""
    judge = TwinJudge(skewed, 60.0, 5)
    g = skewed.assignments([list(skewed.adapters[:3])], [3])[0]
    assert judge.key(g, 2)[-1] == 7
    a, b = judge.run([(g, 0), (g, 0)])
    assert judge.runs == 1 and a is b


def test_retarget_restates_the_tradeoff_for_the_new_gpus(skewed: PlacementProblem) -> None:
    """The trade-off follows the GPUs returned: their count and worst predicted TTFT; met
    when they meet the target, else the count found before."""
    ours = api.place(skewed, "loratwin", confirm_borderline=False)
    assert ours.tradeoff is not None
    fewer = candidates(skewed, ours)[1][1]
    assert retarget(None, fewer, LatencyTarget()) is None
    loose = retarget(ours.tradeoff, fewer, LatencyTarget(1e9, None))
    assert loose is not None and loose.met and loose.gpus == len(fewer)
    tight = retarget(ours.tradeoff, fewer, LatencyTarget(1e-3, None))
    assert tight is not None and tight.gpus == len(fewer)
    assert tight.gpus_for_target == ours.tradeoff.gpus_for_target
    assert tight.worst_mean_ttft_ms == max(g.predicted["mean_ttft_ms"] for g in fewer)


def test_place_with_twin_runs_ends_with_the_portfolio(skewed: PlacementProblem,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """``place`` with ``twin_search`` and confirmations on hands its placement to the
    portfolio (stand-in twin for both); without either it does not (the default)."""
    monkeypatch.setattr(api, "TwinJudge", lambda problem, *a, **k: PrefillTwin(problem))
    monkeypatch.setattr(api, "twin_confirm",
                        lambda *a, **k: (lambda gpus: [True] * len(gpus)))
    judged = api.place(skewed, "loratwin", twin_search=True)
    assert any(n.startswith("portfolio:") for n in judged.notes)
    default = api.place(skewed, "loratwin")
    assert not any(n.startswith("portfolio:") for n in default.notes)
    free = api.place(skewed, "loratwin", confirm_borderline=False, twin_search=True)
    assert not any(n.startswith("portfolio:") for n in free.notes)


def test_choose_bounds_the_runs_of_candidates_that_cannot_win(
        skewed: PlacementProblem) -> None:
    """With the branch and bound the choice is the one of judging every GPU of every
    candidate, in fewer runs."""
    ours = api.place(skewed, "loratwin", confirm_borderline=False)
    pool = candidates(skewed, ours)
    bounded = PrefillTwin(skewed)
    chosen = choose(pool, bounded, SearchOptions(), 1)
    full = PrefillTwin(skewed)
    judged = [(len(s), worst_ttft(v), k) for k, (_, s) in enumerate(pool)
              if (v := full.verdicts(s, 1)) is not None]
    _, worst, k = min(judged)
    assert chosen is not None and chosen.servers == pool[k][1] and chosen.worst == worst
    assert bounded.runs < full.runs


def test_repair_keeps_a_predicted_latency_target_it_is_given(skewed: PlacementProblem) -> None:
    """With ``keep``, a transfer is tried only if both GPUs' predictions meet that target: a
    target no transfer meets leaves the start as it is, a loose one changes nothing, and one
    that the unconstrained result just meets lets transfers through, every GPU they changed
    predicted within it."""
    strong = dataclasses.replace(skewed, predictor=AnalyticPredictor(c0=32000.0))
    longs = [a for a in strong.adapters if a.mean_input_tokens == 3000.0]
    shorts = [a for a in strong.adapters if a.mean_input_tokens != 3000.0]
    start = _judged(strong, PrefillTwin(strong, cap=45000.0), strong.assignments(
        [longs, *least_loaded_groups(shorts, 3)], [8] * 4))

    def run(keep: LatencyTarget | None) -> tuple[Judged, int]:
        return repair(strong, start, PrefillTwin(strong, cap=45000.0), SearchOptions(),
                      keep=keep)

    free, moves = run(None)
    assert moves >= 1
    assert run(LatencyTarget(mean_ttft_ms=1.0, p99_ttft_ms=None)) == (start, 0)
    loose, _ = run(LatencyTarget(mean_ttft_ms=1e9, p99_ttft_ms=None))
    assert [g.adapters for g in loose.servers] == [g.adapters for g in free.servers]
    limit = max(g.predicted["mean_ttft_ms"] for g in free.servers)  # below the start's
    assert limit < min(g.predicted["mean_ttft_ms"] for g in start.servers)
    kept, kept_moves = run(LatencyTarget(mean_ttft_ms=limit, p99_ttft_ms=None))
    assert kept_moves >= 1
    for before, after in zip(start.servers, kept.servers, strict=True):
        assert after.adapters == before.adapters or after.predicted["mean_ttft_ms"] <= limit
    assert kept.worst <= start.worst


def test_a_tradeoff_is_met_only_within_its_figures() -> None:
    """``SloTradeoff.met``: the GPU count is the target's and the worst predicted TTFTs are
    within the target (the p99 part only where p99 is predicted)."""
    from loratwin.placement.types import SloTradeoff

    def t(mean: float, p99: float) -> SloTradeoff:
        return SloTradeoff(2000.0, 10000.0, 5, mean, p99, 5, mean, p99)

    assert t(1900.0, 9000.0).met
    assert not t(5600.0, 7600.0).met
    assert not t(1900.0, 12000.0).met
    assert t(1900.0, float("nan")).met
    assert not dataclasses.replace(t(1900.0, 9000.0), gpus_for_target=6).met


def test_the_papers_greedy_placement_joins_the_portfolio_when_it_uses_fewer_gpus(
        skewed: PlacementProblem) -> None:
    """A ``loratwin`` placement on more GPUs than the papers' greedy one (seen in
    ``placement_eval.py``: 11 against 10, the greedy GPUs passing the twin): the greedy
    placement, as it builds it, is a candidate, and a twin that passes it makes it the
    choice (fewest GPUs first)."""
    from loratwin.placement.paper_greedy import place_paper_greedy
    from loratwin.placement.portfolio import _built
    from loratwin.placement.types import Placement

    greedy = place_paper_greedy(skewed)
    n = greedy.gpus + 2
    _, spread = _built(skewed, "wide", least_loaded_groups(skewed.adapters, n))
    wide = Placement("loratwin", spread, 0.0)
    pool = candidates(skewed, wide)
    assert ("paper-greedy", greedy.servers) in pool
    chosen = choose(pool, PrefillTwin(skewed, cap=1e9), SearchOptions(), 0)
    assert chosen is not None and chosen.name == "paper-greedy"
    assert len(chosen.servers) == greedy.gpus
    ours = api.place(skewed, "loratwin", confirm_borderline=False)
    if ours.gpus <= greedy.gpus:
        assert all(name != "paper-greedy" for name, _ in candidates(skewed, ours))


def test_fewer_gpus_go_to_the_twin_whatever_the_surrogates_starvation_figure(
        skewed: PlacementProblem) -> None:
    """In ``choose``, a candidate on fewer GPUs than the largest in the pool is simulated
    even with GPUs the surrogate predicts to starve; one on as many GPUs is not."""
    from loratwin.placement.portfolio import _built

    def starving(servers: Sequence[GpuAssignment]) -> tuple[GpuAssignment, ...]:
        return tuple(dataclasses.replace(g, predicted={**g.predicted,
                                                       "starvation_probability": 0.9})
                     for g in servers)

    n = 4
    _, wide = _built(skewed, "wide", least_loaded_groups(skewed.adapters, n))
    _, narrow = _built(skewed, "narrow", least_loaded_groups(skewed.adapters, n - 1))
    big = PrefillTwin(skewed, cap=1e9)
    chosen = choose([("wide", wide), ("narrow", starving(narrow))], big, SearchOptions(), 0)
    assert chosen is not None and chosen.name == "narrow" and big.runs == n - 1
    only = PrefillTwin(skewed, cap=1e9)
    assert choose([("wide", starving(wide))], only, SearchOptions(), 0) is None
    assert only.runs == 0


def test_fewer_gpus_takes_a_spread_on_one_gpu_fewer_that_the_twin_passes(
        skewed: PlacementProblem) -> None:
    """The default ``place`` with twin runs: the spreads on N - 1 GPUs (and nothing on N)
    go to the twin; one that passes replaces ``ours`` (no repair: the chosen spread as it
    is built), else ``ours`` is kept with a note; its trade-off is re-stated."""
    opts, tgt = SearchOptions(), LatencyTarget()
    strong = dataclasses.replace(skewed, predictor=AnalyticPredictor(c0=32000.0))
    ours = api.place(skewed, "loratwin", confirm_borderline=False)
    pool = candidates(strong, ours, fewer_only=True)
    assert pool and all(len(s) < ours.gpus for _, s in pool)
    judge = PrefillTwin(strong, cap=41000.0)
    out = fewer_gpus(strong, ours, judge, opts, tgt, 0)
    assert out.gpus == ours.gpus - 1
    check_valid(strong, out, may_split=True)
    chosen = choose(pool, PrefillTwin(strong, cap=41000.0), opts, 0, top=ours.gpus)
    assert chosen is not None and out.servers == chosen.servers
    assert any(n.startswith(f"fewer GPUs: {chosen.name} passes the twin") for n in out.notes)
    assert out.tradeoff is not None and out.tradeoff.gpus == out.gpus
    # N - 1 spreads go to the twin whatever their predicted starvation (top = N)
    assert judge.runs >= ours.gpus - 1
    kept = fewer_gpus(skewed, ours, PrefillTwin(skewed), opts, tgt, 0)
    assert kept.servers == ours.servers
    assert any(n.startswith("fewer GPUs: the twin passed no placement") for n in kept.notes)


def test_place_with_twin_runs_checks_one_gpu_fewer_by_default(
        skewed: PlacementProblem, monkeypatch: pytest.MonkeyPatch) -> None:
    """``place(..., confirm_borderline=True)`` without ``twin_search`` runs fewer_gpus (not
    the whole portfolio); with ``twin_search`` it runs improve."""
    called: list[str] = []
    monkeypatch.setattr(api, "fewer_gpus", lambda *a: called.append("fewer") or a[1])
    monkeypatch.setattr(api, "improve", lambda *a: called.append("improve") or a[1])
    monkeypatch.setattr(api, "twin_confirm", lambda *a, **k: (lambda gpus: [True] * len(gpus)))
    api.place(skewed, "loratwin")
    api.place(skewed, "loratwin", twin_search=True)
    api.place(skewed, "loratwin", confirm_borderline=False)
    assert called == ["fewer", "improve"]
