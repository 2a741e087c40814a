"""The exact optimum: brute force agreement, below every algorithm, above the lower bound."""

from __future__ import annotations

import pytest

from loratwin.errors import ConfigError
from loratwin.placement import api
from loratwin.placement.baselines import P_STARVING, best_loras, group_rows
from loratwin.placement.bounds import lower_bound
from loratwin.placement.exact import MAX_ADAPTERS, solve_exact
from loratwin.placement.problem import PlacementProblem
from loratwin.profile.model import Profile
from loratwin.workload.types import Adapter

from .conftest import AnalyticPredictor, make_adapters
from .helpers import check_valid


def _partitions(items: list[int]):
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for part in _partitions(rest):
        for k in range(len(part)):
            yield [*part[:k], [first, *part[k]], *part[k + 1:]]
        yield [[first], *part]


def _feasible_everywhere(problem: PlacementProblem, placement) -> bool:
    return all(g.predicted["starvation_probability"] < P_STARVING for g in placement.servers)


def test_exhaustive_optimum_matches_brute_force(profile: Profile) -> None:
    problem = PlacementProblem(make_adapters(7, 60.0, ranks=(8, 16, 32), seed=4), profile,
                               AnalyticPredictor())
    ads = list(problem.adapters)
    # every subset's verdict, then the best partition by enumeration (Bell(7) = 877)
    from itertools import combinations
    subsets = [c for k in range(1, 8) for c in combinations(range(7), k)]
    ev = best_loras(problem, group_rows(problem, [[ads[i] for i in c] for c in subsets]))
    ok = {frozenset(c): not s for c, s in zip(subsets, ev.starving, strict=True)}
    best = min(len(p) for p in _partitions(list(range(7)))
               if all(ok[frozenset(b)] for b in p))
    res = solve_exact(problem, [api.place(problem, "least-loaded")])
    assert res.exhaustive and res.status == "kOptimal"
    assert res.gpus == best
    assert res.starving_gpus == 0
    check_valid(problem, res.placement, may_split=True)
    assert "every subset" in res.describe()


@pytest.mark.parametrize(("n", "rate"), [(10, 45.0), (20, 80.0)])
def test_optimum_is_between_the_lower_bound_and_every_algorithm(
    profile: Profile, n: int, rate: float
) -> None:
    problem = PlacementProblem(make_adapters(n, rate, ranks=(8, 16, 32), seed=n, sigma=1.3),
                               profile, AnalyticPredictor())
    placements = [api.place(problem, a, confirm_borderline=False) for a in api.ALGORITHMS]
    lb = lower_bound(problem)
    res = solve_exact(problem, placements, lower=lb.gpus, random_orders=10, max_rounds=2)
    assert res.exhaustive == (n <= 12)
    check_valid(problem, res.placement, may_split=True)
    assert lb.gpus <= res.gpus
    assert res.starving_gpus == 0
    for p in placements:
        if _feasible_everywhere(problem, p):
            assert res.gpus <= p.gpus, p.algorithm
    assert res.placement.algorithm == "optimum"
    assert res.columns >= n and res.checked_columns >= res.columns - n


def test_a_starving_singleton_is_reported(profile: Profile) -> None:
    ads = [Adapter("hot", 16, 60.0), Adapter("b", 16, 1.0), Adapter("c", 8, 1.0)]
    problem = PlacementProblem(ads, profile, AnalyticPredictor())
    res = solve_exact(problem, [api.place(problem, "least-loaded")])
    assert res.starving_gpus == 1
    check_valid(problem, res.placement, may_split=True)


def test_too_many_adapters_is_a_config_error(profile: Profile) -> None:
    problem = PlacementProblem(make_adapters(MAX_ADAPTERS + 1, 100.0), profile,
                               AnalyticPredictor())
    with pytest.raises(ConfigError, match="at most 40"):
        solve_exact(problem, [])
