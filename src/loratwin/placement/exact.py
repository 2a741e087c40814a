"""The exact optimum of small instances: a set-partitioning MILP over surrogate-checked GPUs.

The surrogate is a black box (tree ensembles over GPU-level features), so "the fewest GPUs"
cannot be written as a compact MILP over adapters. Instead every candidate GPU (a *column*:
a set of adapters, or of adapter pieces with a fraction of their rate) is checked by the
surrogate at its best ``max_loras`` (the candidates of ``api.resize_loras``), and HiGHS
(``highspy``) solves, to proven optimality, the set-partitioning problem

    minimise   sum_c x_c + PENALTY x sum_{c starving} x_c
    subject to sum_c f_ic x_c = 1   for every adapter i       (f_ic: fraction of i's rate on c)
               x_c in {0, 1}

over the pool of columns. Feasible columns are those predicted not to starve (probability
< ``p_starving``, 0.5 by default, the baselines' rule); starving singletons stay in the pool
at a large penalty so that a partition always exists, and are reported.

**What is optimal with respect to what.**

- *Exhaustive pools* (at most :data:`EXHAUSTIVE_UP_TO` adapters): every non-empty subset of
  adapters is a column, so the result is the optimum over *all* placements that do not split
  adapters, under the surrogate's starvation rule (plus any split columns given as seeds).
- *Larger instances* (up to :data:`MAX_ADAPTERS`): the result is optimal over the pool only:
  the GPUs of the seed placements (every algorithm's, split pieces included), their
  subsets without one or two adapters, single-adapter moves and swaps between two GPUs of a
  placement, maximal GPUs of random adapter orders (random and rank-grouped, each packed with
  the largest safe prefix), singletons; then, for a few rounds, the same moves and random
  re-packings of pairs and triples of the incumbent's GPUs are added and the MILP re-solved
  until the optimum stops improving. It is an upper bound on the true optimum and, with the
  twin lower bound (:mod:`loratwin.placement.bounds`), brackets it.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import highspy
import numpy as np

from loratwin.errors import ConfigError
from loratwin.placement.baselines import P_STARVING, best_loras, group_rows
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import Placement
from loratwin.workload.types import Adapter

#: Largest instance the exact model accepts.
MAX_ADAPTERS = 40
#: Up to this many adapters the pool holds every subset.
EXHAUSTIVE_UP_TO = 12
#: Random re-packings of pairs / triples of the incumbent's GPUs per round.
REPACKS_PER_ROUND = 20
#: Objective penalty of a column predicted to starve (only singletons are kept that way).
PENALTY = 1000.0

Column = tuple[tuple[int, float], ...]
"""A candidate GPU: sorted (adapter index, fraction of its rate) pairs."""


@dataclass(frozen=True)
class ExactResult:
    """The optimum of the set-partitioning MILP.

    Attributes
    ----------
    gpus:
        GPUs of the optimal placement.
    starving_gpus:
        Of them, GPUs predicted to starve (0 unless some adapter starves even alone).
    placement:
        The optimal placement (algorithm name ``optimum``).
    columns:
        Candidate columns in the final MILP (feasible ones plus starving singletons).
    checked_columns:
        Distinct columns checked by the surrogate.
    exhaustive:
        True when the pool held every subset of adapters.
    p_starving:
        Feasibility threshold on the predicted starvation probability.
    rounds:
        MILP solves.
    status:
        HiGHS model status of the last solve (``kOptimal``: proven optimal over the pool).
    meets_lower_bound:
        The optimum equals the given lower bound (so no placement at all does better).
    """

    gpus: int
    starving_gpus: int
    placement: Placement
    columns: int
    checked_columns: int
    exhaustive: bool
    p_starving: float
    rounds: int
    status: str
    meets_lower_bound: bool = False

    def describe(self) -> str:
        """What the optimum is optimal over, in one line."""
        scope = ("over all placements without split adapters (every subset is a column)"
                 if self.exhaustive else f"over {self.columns:,} candidate columns")
        proof = "; equals the lower bound" if self.meets_lower_bound else ""
        return (f"optimum {self.gpus} GPU(s) {scope}, surrogate rule p(starve) < "
                f"{self.p_starving:g} (HiGHS: {self.status}{proof})")


class _Pool:
    """Columns with their surrogate verdicts, checked in batches."""

    def __init__(self, problem: PlacementProblem, p_starving: float) -> None:
        self.problem = problem
        self.adapters = list(problem.adapters)
        self.p_starving = p_starving
        self.checked: dict[Column, tuple[bool, int]] = {}  # column -> (feasible, max_loras)

    def pieces(self, col: Column) -> list[Adapter]:
        out = []
        for i, f in col:
            a = self.adapters[i]
            out.append(a if f == 1.0 else Adapter(a.id, a.rank, a.rate * f,
                                                  a.mean_input_tokens, a.mean_output_tokens))
        return out

    def add(self, cols: Iterable[Column]) -> int:
        """Check new columns; returns how many of them are feasible."""
        new = list(dict.fromkeys(c for c in cols if c and c not in self.checked))
        if not new:
            return 0
        ev = best_loras(self.problem, group_rows(self.problem, [self.pieces(c) for c in new]))
        ok = ~ev.starving
        for c, good, m in zip(new, ok, ev.loras, strict=True):
            self.checked[c] = (bool(good), int(m))
        return int(ok.sum())

    def feasible(self, col: Column) -> bool:
        return self.checked.get(col, (False, 0))[0]

    def milp_columns(self) -> list[tuple[Column, bool]]:
        """Feasible columns plus every starving singleton (penalised)."""
        return [(c, ok) for c, (ok, _) in self.checked.items() if ok or len(c) == 1]


def _whole(idx: Iterable[int]) -> Column:
    return tuple((i, 1.0) for i in sorted(idx))


def _is_whole(col: Column) -> bool:
    return all(f == 1.0 for _, f in col)


def _column_of(problem: PlacementProblem, index: dict[str, int],
               adapters: Sequence[Adapter]) -> Column:
    """A GPU of a placement as a column (pieces as fractions of the adapter's rate)."""
    acc: dict[int, float] = {}
    for a in adapters:
        i = index[a.id]
        rate = problem.adapters[i].rate
        acc[i] = acc.get(i, 0.0) + (a.rate / rate if rate > 0 else 1.0)
    return tuple((i, 1.0 if abs(f - 1.0) < 1e-9 else round(f, 12)) for i, f in sorted(acc.items()))


def _neighbours(cols: Sequence[Column], removals: int) -> list[Column]:
    """Subsets without up to ``removals`` adapters, and moves / swaps between column pairs
    (whole-adapter columns only)."""
    whole = [tuple(i for i, _ in c) for c in cols if _is_whole(c)]
    out: list[Column] = []
    for c in whole:
        for r in range(1, removals + 1):
            if len(c) > r and (r == 1 or len(c) <= 12):
                out += [_whole(set(c) - set(d)) for d in itertools.combinations(c, r)]
    for a, b in itertools.combinations(whole, 2):
        sa, sb = set(a), set(b)
        for i in a:
            out.append(_whole(sb | {i}))
            out.append(_whole(sa - {i}))
            for j in b:
                out.append(_whole((sa - {i}) | {j}))
                out.append(_whole((sb - {j}) | {i}))
        for j in b:
            out.append(_whole(sa | {j}))
    return out


def _greedy_pack(pool: _Pool, order: Sequence[int]) -> list[Column]:
    """Pack ``order`` GPU by GPU, each GPU the largest prefix predicted not to starve."""
    cols: list[Column] = []
    rest = list(order)
    while rest:
        prefixes = [_whole(rest[:k]) for k in range(1, len(rest) + 1)]
        pool.add(prefixes)
        k = max((k for k in range(1, len(rest) + 1) if pool.feasible(prefixes[k - 1])),
                default=1)
        cols.append(_whole(rest[:k]))
        rest = rest[k:]
    return cols


def _random_packings(pool: _Pool, idx: Sequence[int], count: int,
                     rng: np.random.Generator) -> list[Column]:
    ranks = np.array([pool.adapters[i].rank for i in idx])
    out: list[Column] = []
    for t in range(count):
        perm = rng.permutation(len(idx))
        if t % 2:  # rank-grouped: descending rank, random within the rank
            perm = perm[np.argsort(-ranks[perm], kind="stable")]
        out += _greedy_pack(pool, [idx[p] for p in perm])
    return out


def _solve(pool: _Pool, n: int, time_limit_s: float) -> tuple[list[Column], float, str, int]:
    cols = pool.milp_columns()
    starts, index, value, cost = [0], [], [], []
    for c, ok in cols:
        for i, f in c:
            index.append(i)
            value.append(f)
        starts.append(len(index))
        cost.append(1.0 if ok else 1.0 + PENALTY)
    lp = highspy.HighsLp()
    lp.num_col_ = len(cols)
    lp.num_row_ = n
    lp.col_cost_ = np.array(cost)
    lp.col_lower_ = np.zeros(len(cols))
    lp.col_upper_ = np.ones(len(cols))
    lp.row_lower_ = np.ones(n)
    lp.row_upper_ = np.ones(n)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.array(starts, np.int32)
    lp.a_matrix_.index_ = np.array(index, np.int32)
    lp.a_matrix_.value_ = np.array(value, float)
    lp.integrality_ = [highspy.HighsVarType.kInteger] * len(cols)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("time_limit", float(time_limit_s))
    h.setOptionValue("mip_rel_gap", 0.0)
    h.passModel(lp)
    h.run()
    status = h.getModelStatus()
    has_solution = h.getInfo().primal_solution_status == highspy.kSolutionStatusFeasible
    if status != highspy.HighsModelStatus.kOptimal and not has_solution:
        raise ConfigError(f"the exact model found no solution ({status.name})", field="exact")
    x = np.asarray(h.getSolution().col_value)
    chosen = [cols[k][0] for k in np.flatnonzero(x > 0.5)]
    return chosen, float(h.getObjectiveValue()), status.name, len(cols)


def solve_exact(
    problem: PlacementProblem,
    placements: Sequence[Placement] = (),
    *,
    p_starving: float = P_STARVING,
    seed: int = 0,
    random_orders: int = 40,
    max_rounds: int = 4,
    time_limit_s: float = 60.0,
    lower: int | None = None,
) -> ExactResult:
    """Fewest GPUs of ``problem`` over a pool of surrogate-checked GPUs (module docstring).

    Parameters
    ----------
    problem:
        At most :data:`MAX_ADAPTERS` adapters.
    placements:
        Seed placements (their GPUs join the pool). Empty: every algorithm of
        :data:`loratwin.placement.api.ALGORITHMS` is run (without twin confirmations).
    p_starving:
        A column is feasible when its predicted starvation probability is below this.
    seed:
        Seed of the random packings (and of the seed placements when they are computed).
    random_orders:
        Random adapter orders packed into columns at the start (half of them rank-grouped).
    max_rounds:
        Most MILP solves (each round adds the incumbent's neighbourhood).
    time_limit_s:
        HiGHS time limit per solve, s (on time-out the best solution found is returned and
        ``status`` says so).
    lower:
        A lower bound on the GPUs (e.g. :func:`~loratwin.placement.bounds.lower_bound`):
        the rounds stop once the optimum reaches it (then it is optimal over all
        placements, not only over the pool).

    Raises
    ------
    ConfigError
        More than :data:`MAX_ADAPTERS` adapters, or HiGHS did not prove optimality.
    """
    t0 = time.perf_counter()
    n = len(problem.adapters)
    if n > MAX_ADAPTERS:
        raise ConfigError(f"the exact optimum is for at most {MAX_ADAPTERS} adapters "
                          f"(got {n})", field="adapters")
    if not placements:
        from loratwin.placement.api import ALGORITHMS, place

        placements = [place(problem, a, seed=seed, confirm_borderline=False)
                      for a in ALGORITHMS]
    index = {a.id: i for i, a in enumerate(problem.adapters)}
    pool = _Pool(problem, p_starving)
    rng = np.random.default_rng(seed)
    everyone = list(range(n))
    seeds = [_column_of(problem, index, g.adapters) for p in placements for g in p.servers]
    exhaustive = n <= EXHAUSTIVE_UP_TO
    pool.add(seeds)
    pool.add(_whole([i]) for i in everyone)
    if exhaustive:
        pool.add(_whole(c) for k in range(2, n + 1) for c in itertools.combinations(everyone, k))
    else:
        per_placement = [[_column_of(problem, index, g.adapters) for g in p.servers]
                         for p in placements]
        for cols in per_placement:
            pool.add(_neighbours(cols, removals=2))
        _random_packings(pool, everyone, random_orders, rng)
    best: float | None = None
    rounds = 0
    while True:
        chosen, value, status, ncols = _solve(pool, n, time_limit_s)
        rounds += 1
        if exhaustive or rounds >= max_rounds or (lower is not None and value <= lower + 1e-9):
            break
        improved = best is None or value < best - 1e-9
        best = value if best is None else min(best, value)
        if not improved or (lower is not None and value <= lower + 1e-9):
            break
        before = len(pool.checked)
        pool.add(_neighbours(chosen, removals=1))
        whole = [k for k, c in enumerate(chosen) if _is_whole(c)]
        combos = [c for r in (2, 3) for c in itertools.combinations(whole, r)]
        for j in rng.permutation(len(combos))[:REPACKS_PER_ROUND]:
            idx = sorted(i for k in combos[j] for i, _ in chosen[k])
            _random_packings(pool, idx, 2, rng)
        if len(pool.checked) == before:
            break
    chosen.sort(key=lambda c: c[0][0])
    groups = [pool.pieces(c) for c in chosen]
    ev = best_loras(problem, group_rows(problem, groups))
    servers = tuple(problem.assignment(g, int(ev.loras[k]), ev.pred, k)
                    for k, g in enumerate(groups))
    starving = int(sum(not pool.feasible(c) for c in chosen))
    result = ExactResult(
        gpus=len(chosen), starving_gpus=starving, placement=Placement("optimum", (), 0.0),
        columns=ncols, checked_columns=len(pool.checked), exhaustive=exhaustive,
        p_starving=p_starving, rounds=rounds, status=status,
        meets_lower_bound=lower is not None and len(chosen) <= lower,
    )
    placement = Placement("optimum", servers, time.perf_counter() - t0, (result.describe(),))
    return dataclasses.replace(result, placement=placement)
