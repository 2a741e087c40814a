"""A lower bound from the LP relaxation of set partitioning over surrogate-safe GPU types.

**Model.** A placement is a set of GPU *columns*; column c serves a fraction ``f_ic`` of
adapter i's traffic. The fewest GPUs solve ``min sum_c x_c`` s.t. ``sum_c f_ic x_c >= 1`` for
every adapter, over the columns the surrogate accepts; its LP relaxation (x >= 0) is a lower
bound. The surrogate is a black box, so its feasible columns are relaxed to a polytope per
GPU *type* t = (slot rank r, a bucket of served counts up to K_t): a GPU of type t carries at
most ``L_t`` tok/s, the largest offered load the surrogate predicts not to starve
(probability < 0.5, the baselines' rule) for a GPU whose largest rank is r and whose served
count lies in the bucket, over a scan of every ``max_loras`` within the memory limit of r,
rate spreads (std / mean 0, 1, 3), rank mixes (all r, or half the smallest rank) and the
workload's length mixes (its mean, 10th and 90th percentiles), plus 5% slack as the twin
bound. Column polytope of type t: ``sum_i load_i f_i <= L_t``, ``sum_i f_i <= K_t``,
``0 <= f <= 1``, ranks above r excluded.

**Solving.** Column generation over these polytopes (Dantzig-Wolfe, pricing = a fractional
knapsack per type) converges to the LP over *all* their points; since each polytope is given
by linear inequalities, that master LP equals the compact LP with ``y_t`` GPUs of type t and
``z_it`` units of adapter i on them (``sum_t z_it >= 1``, ``sum_i load_i z_it <= L_t y_t``,
``sum_i z_it <= K_t y_t``; the per-GPU limit ``f_i <= 1`` is dropped, which only weakens the
bound), so HiGHS (``highspy``) solves that one directly: no tailing-off, the exact LP value
in one solve for thousands of adapters.

**What it bounds.** Placements the surrogate accepts at the baselines' rule whose GPUs carry
loads the scan saw as safe: a bound *under the surrogate*, as the exact optimum of
:mod:`.exact`, not under the twin (:mod:`.bounds`). Splitting adapters is allowed (fractional
``z``), so it bounds placements with replicas too. Assumption: between two scanned served
counts a GPU's safe load does not exceed the larger of the two, and beyond the last scanned
count (the design's 1,200) it does not exceed that count's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import highspy
import numpy as np

from loratwin.errors import ConfigError
from loratwin.placement.baselines import P_STARVING
from loratwin.placement.bounds import _ceiling_tok_s
from loratwin.placement.prefix_search import MAX_SERVED, _lora_candidates
from loratwin.placement.problem import PlacementProblem
from loratwin.surrogate.features import FEATURES

#: Served-adapter counts at which the safe load is scanned.
SERVED_LADDER: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256,
                                  384, 512, 768, 1024, MAX_SERVED)
#: Rate spreads scanned: std of the rates over their mean.
SPREADS: tuple[float, ...] = (0.0, 1.0, 3.0)
#: Relative slack on the scanned safe loads.
SLACK = 0.05
#: Bisection steps on the total rate.
BISECTION_STEPS = 14

_F = {f: i for i, f in enumerate(FEATURES)}


@dataclass(frozen=True)
class GpuTypes:
    """Relaxed GPU types: slot rank, served-adapter limit and safe load (tok/s) of each."""

    rank: np.ndarray  # (T,)
    count: np.ndarray  # (T,) most adapters (K)
    load: np.ndarray  # (T,) largest safe offered load, tok/s (slack included)


@dataclass(frozen=True)
class LpBound:
    """The LP lower bound (see the module docstring).

    Attributes
    ----------
    gpus:
        ``ceil`` of the bound.
    value:
        The LP optimum (fractional GPUs).
    types:
        GPU types in the model.
    gpus_by_type:
        Fractional GPUs of each type in the LP optimum (``r<rank>-n<served limit>``).
    wall_s:
        Wall time of the LP (the surrogate scan excluded), s.
    """

    gpus: int
    value: float
    types: int
    gpus_by_type: dict[str, float]
    wall_s: float

    def describe(self) -> str:
        """One line for the terminal."""
        return (f"LP lower bound {self.gpus} GPU(s) ({self.value:.2f}: set-partitioning "
                f"relaxation over {self.types} surrogate-safe GPU types, HiGHS)")


def gpu_types(problem: PlacementProblem) -> GpuTypes:
    """Scan the surrogate for the largest safe load of every (slot rank, served bucket)."""
    ads = problem.adapters
    lengths = np.array([problem.mean_lengths(a) for a in ads], float)
    rates = np.array([a.rate for a in ads], float)
    w = rates if rates.sum() > 0 else np.ones_like(rates)
    mean = [float(np.average(lengths[:, c], weights=w)) for c in (0, 1)]
    mixes = {(round(mean[0], 3), round(mean[1], 3))}
    for q in (0.1, 0.9):
        mixes.add((float(np.quantile(lengths[:, 0], q)), float(np.quantile(lengths[:, 1], q))))
    ranks = sorted({a.rank for a in ads})
    rows, owner, per_req = [], [], []
    types_r, types_k = [], []
    for r in ranks:
        limit = problem.max_loras_limit(r)
        mixes_rank = [(float(r), 0.0)]
        if ranks[0] < r:
            mixes_rank.append(((r + ranks[0]) / 2.0, (r - ranks[0]) / 2.0))
        for j, n in enumerate(SERVED_LADDER):
            t = len(types_r)
            types_r.append(r)
            types_k.append(SERVED_LADDER[j + 1] if j + 1 < len(SERVED_LADDER)
                           else max(MAX_SERVED, len(ads)))
            for m in _lora_candidates(n, limit):
                for mean_k, std_k in (mixes_rank if n > 1 else mixes_rank[:1]):
                    for spread in (SPREADS if n > 1 else (0.0,)):
                        for mi, mo in sorted(mixes):
                            rows.append([0.0, spread / n, r, mean_k, std_k, m, n, mi, mo,
                                         problem.arrival_cv])
                            owner.append(t)
                            per_req.append(mi + mo)
    base = np.array(rows, float)
    owner_a = np.array(owner, np.int64)
    per = np.array(per_req, float)
    spread_n = base[:, _F["std_rate_req_s"]].copy()  # std of rates = this x total rate
    # bisection on each row's total rate, from above the backbone's analytic ceiling
    lo = np.zeros(len(base))
    hi = 1.5 * _ceiling_tok_s(problem) / per
    for _ in range(20):  # grow hi where the surrogate still sees no starvation
        ok = _safe(problem, base, hi, spread_n)
        if not ok.any():
            break
        hi = np.where(ok, hi * 2.0, hi)
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        ok = _safe(problem, base, mid, spread_n)
        lo = np.where(ok, mid, lo)
        hi = np.where(ok, hi, mid)
    safe_load = hi * per  # the first starving rate found: above every safe one seen
    t_count = len(types_r)
    best = np.zeros(t_count)
    np.maximum.at(best, owner_a, safe_load)
    # a bucket [n_j, n_j+1]: the larger of its two ends (same rank)
    by_rank = best.reshape(len(ranks), len(SERVED_LADDER))
    nxt = np.concatenate([by_rank[:, 1:], by_rank[:, -1:]], axis=1)
    load = np.maximum(by_rank, nxt).reshape(-1) * (1.0 + SLACK)
    return GpuTypes(np.array(types_r, float), np.array(types_k, float), load)


def _safe(problem: PlacementProblem, base: np.ndarray, total: np.ndarray,
          spread_n: np.ndarray) -> np.ndarray:
    """(n,) rows of ``base`` at total rates ``total`` predicted not to starve."""
    x = base.copy()
    x[:, _F["sum_rate_req_s"]] = total
    x[:, _F["std_rate_req_s"]] = spread_n * total  # spread x mean rate, mean = total / n
    return np.asarray(problem.evaluate(x).starvation_probability) < P_STARVING


def lp_lower_bound(problem: PlacementProblem, *, types: GpuTypes | None = None) -> LpBound:
    """The LP bound of ``problem`` (see the module docstring).

    Raises
    ------
    ConfigError
        HiGHS finds no optimum (it always should: every adapter alone is a column).
    """
    t0 = time.perf_counter()
    ty = types or gpu_types(problem)
    ads = problem.adapters
    n, t_count = len(ads), len(ty.rank)
    load = np.array([problem.offered_tok_s([a]) for a in ads], float)
    rank = np.array([a.rank for a in ads], float)
    # columns: y_t (t_count), then z_it for allowed (i, t) pairs
    pair_i, pair_t = np.nonzero(rank[:, None] <= ty.rank[None, :])
    m = len(pair_i)
    z = t_count + np.arange(m)
    inf = highspy.kHighsInf
    # rows: cover (n), load (t_count), count (t_count)
    r_idx = np.concatenate([pair_i, n + pair_t, n + t_count + pair_t,
                            n + np.arange(t_count), n + t_count + np.arange(t_count)])
    c_idx = np.concatenate([z, z, z, np.arange(t_count), np.arange(t_count)])
    vals = np.concatenate([np.ones(m), load[pair_i], np.ones(m), -ty.load, -ty.count])
    order = np.lexsort((r_idx, c_idx))
    c_sorted = c_idx[order]
    starts = np.searchsorted(c_sorted, np.arange(t_count + m)).astype(np.int32)
    lp = highspy.HighsLp()
    lp.num_col_ = t_count + m
    lp.num_row_ = n + 2 * t_count
    lp.col_cost_ = np.concatenate([np.ones(t_count), np.zeros(m)])
    lp.col_lower_ = np.zeros(t_count + m)
    lp.col_upper_ = np.concatenate([np.full(t_count, inf), np.ones(m)])
    lp.row_lower_ = np.concatenate([np.ones(n), np.full(2 * t_count, -inf)])
    lp.row_upper_ = np.concatenate([np.full(n, inf), np.zeros(2 * t_count)])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = np.append(starts, len(order)).astype(np.int32)
    lp.a_matrix_.index_ = r_idx[order].astype(np.int32)
    lp.a_matrix_.value_ = vals[order].astype(float)
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        raise ConfigError(f"the LP bound found no optimum ({h.getModelStatus().name})",
                          field="lower-bound")
    value = float(h.getObjectiveValue())
    y = np.asarray(h.getSolution().col_value)[:t_count]
    return LpBound(gpus=max(1, math.ceil(value - 1e-6)), value=value, types=t_count,
                   gpus_by_type={f"r{int(ty.rank[t])}-n{int(ty.count[t])}": float(y[t])
                                 for t in np.flatnonzero(y > 1e-9)},
                   wall_s=time.perf_counter() - t0)
