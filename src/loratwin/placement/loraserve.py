"""``loraserve``: rank-aware fractional packing, after LoRAServe.

LoRAServe (rank-aware placement and routing of heterogeneous-rank LoRA adapters across a
cluster, 2025) observes that serving adapters of different ranks together slows a GPU (every
slot is sized for the largest rank and the kernels run at that rank), so it keeps ranks apart,
sizes each rank's share of the cluster from a per-rank operating point, and lets one adapter's
traffic be served by several GPUs. This module re-implements that idea as a static placement
on our surrogate (the original routes requests online; here an adapter's traffic is split in
fixed fractions):

1. **Operating points.** For each rank r, with ``n_r`` adapters of total rate ``L_r`` req/s
   (rate coefficient of variation ``cv_r``, rate-weighted mean lengths of the group), the
   operating point ``T_r`` is the largest total rate a GPU serving only rank-r adapters
   sustains: the surrogate is asked, in one batch, about a GPU serving ``k`` rank-r adapters
   at total rates on a geometric grid (``std_rate = cv_r x T / k``, ``max_loras`` from the
   usual candidates within the memory limit of rank r), and ``T_r`` is the grid point before
   the first rate predicted to starve (at its best ``max_loras``). ``k`` is the adapters per
   GPU the rank will get: it starts at ``n_r`` and is refined twice as ``n_r / (L_r / T_r)``.
2. **Hamilton apportionment.** N GPUs are shared among the ranks in proportion to their
   demand ``L_r / T_r`` by the largest-remainder method, every rank getting at least one GPU
   (a rank left at 0 takes one from the rank with the largest allocation above its quota).
3. **Fractional bin packing.** Within a rank, adapters in zig-zag rate order fill the rank's
   GPUs up to an equal share ``L_r / N_r`` each; the adapter crossing a boundary is split, the
   next GPU taking the rest. A piece is an :class:`Adapter` with the same id and a fraction
   of the rate (pieces of one adapter sum to its rate; at most ``N_r - 1`` splits per rank).
4. N starts at ``max(lower bound, number of ranks, sum_r ceil(L_r / T_r))`` and is searched
   upward (:func:`~loratwin.placement.baselines.smallest_feasible`) to the first N at which
   the surrogate predicts no GPU to starve; each GPU's ``max_loras`` is chosen as
   ``api.resize_loras`` does.

Simplifications: no online routing or adapter migration; traffic splits are static; the
operating point uses the surrogate instead of LoRAServe's profiling; the packing balances
req/s, not GPU time.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np

from loratwin.placement.baselines import (
    GroupEval,
    best_loras,
    finish,
    group_rows,
    smallest_feasible,
)
from loratwin.placement.bounds import lower_bound
from loratwin.placement.paper_greedy import zigzag
from loratwin.placement.prefix_search import _lora_candidates
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import Placement
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

#: Rate grid of the operating-point search: factors on the group's total rate.
_GRID = np.geomspace(1e-3, 1e3, 241)
_I_RATE = FEATURES.index("sum_rate_req_s")
_I_STD = FEATURES.index("std_rate_req_s")
_I_LORAS = FEATURES.index("max_loras")
_I_SERVED = FEATURES.index("served_adapters")


def operating_point(problem: PlacementProblem, group: Sequence[Adapter], per_gpu: int,
                    p_starving: float = 0.5) -> float:
    """Largest total rate (req/s) a GPU serving ``per_gpu`` adapters like ``group`` sustains.

    ``group`` holds adapters of one rank; see step 1 of the module docstring. Returns 0 if
    even the smallest grid rate is predicted to starve.
    """
    base = group_rows(problem, [list(group)])[0]
    total = float(base[_I_RATE])
    n = len(group)
    if total <= 0:
        return math.inf
    cv = float(base[_I_STD]) / (total / n)
    k = max(1, min(int(per_gpu), n))
    rank = int(base[FEATURES.index("max_rank")])
    cands = np.asarray(_lora_candidates(k, problem.max_loras_limit(rank)), float)
    rates = total * _GRID
    rows = np.repeat(base[None], len(rates) * len(cands), axis=0)
    rows[:, _I_RATE] = np.repeat(rates, len(cands))
    rows[:, _I_STD] = cv * rows[:, _I_RATE] / k
    rows[:, _I_SERVED] = k
    rows[:, _I_LORAS] = np.tile(cands, len(rates))
    p = np.asarray(problem.evaluate(rows).starvation_probability).reshape(len(rates), -1)
    ok = p.min(axis=1) < p_starving
    if not ok[0]:
        return 0.0
    bad = np.flatnonzero(~ok)
    return float(rates[bad[0] - 1] if bad.size else rates[-1])


def hamilton(quotas: Sequence[float], seats: int) -> list[int]:
    """Largest-remainder (Hamilton) apportionment of ``seats`` with at least 1 seat each.

    Parameters
    ----------
    quotas:
        Non-negative demands (only their proportions matter).
    seats:
        Seats to share, ``>= len(quotas)``.
    """
    q = np.asarray(quotas, float)
    if seats < len(q):
        raise ValueError("fewer seats than parties")
    q = q / q.sum() * seats if q.sum() > 0 else np.full(len(q), seats / len(q))
    alloc = np.floor(q).astype(int)
    rest = seats - int(alloc.sum())
    order = np.lexsort((np.arange(len(q)), -(q - alloc)))  # largest remainder, then index
    alloc[order[:rest]] += 1
    while (alloc == 0).any():
        i = int(np.flatnonzero(alloc == 0)[0])
        donors = np.flatnonzero(alloc > 1)
        j = int(donors[np.argmax((alloc - q)[donors])])
        alloc[j] -= 1
        alloc[i] += 1
    return alloc.tolist()


def fractional_pack(adapters: Sequence[Adapter], n_gpus: int) -> list[list[Adapter]]:
    """Fill ``n_gpus`` GPUs to equal shares of the total rate, splitting boundary adapters.

    Adapters are taken in the given order; returns the non-empty GPUs (an adapter of rate 0
    is never split).
    """
    total = sum(a.rate for a in adapters)
    if total <= 0:
        groups = [list(adapters[i::n_gpus]) for i in range(n_gpus)]
        return [g for g in groups if g]
    share = total / n_gpus
    groups: list[list[Adapter]] = [[]]
    room = share
    for a in adapters:
        left = a.rate
        if left <= 0:
            groups[-1].append(a)
            continue
        while left > 0:
            if room <= share * 1e-9 and len(groups) < n_gpus:
                groups.append([])
                room = share
            if left <= room + share * 1e-9 or len(groups) == n_gpus:
                piece = a if left == a.rate else Adapter(
                    a.id, a.rank, left, a.mean_input_tokens, a.mean_output_tokens)
                groups[-1].append(piece)
                room -= left
                left = 0.0
            else:
                groups[-1].append(Adapter(a.id, a.rank, room, a.mean_input_tokens,
                                          a.mean_output_tokens))
                left -= room
                room = 0.0
    return [g for g in groups if g]


def place_loraserve(problem: PlacementProblem, *, seed: int = 0) -> Placement:
    """Place with rank-aware fractional packing (see the module docstring).

    ``seed`` only seeds the lower bound's twin run.
    """
    t0 = time.perf_counter()
    ranks = sorted({a.rank for a in problem.adapters}, reverse=True)
    groups = {r: zigzag([a for a in problem.adapters if a.rank == r]) for r in ranks}
    loads = {r: sum(a.rate for a in g) for r, g in groups.items()}
    points: dict[int, float] = {}
    for r, g in groups.items():
        k = len(g)
        for _ in range(3):
            t = operating_point(problem, g, k)
            need = loads[r] / t if t > 0 else float(len(g))
            k = max(1, math.ceil(len(g) / max(need, 1.0)))
        points[r] = t
    demand = [loads[r] / points[r] if points[r] > 0 else float(len(groups[r])) for r in ranks]
    lb = lower_bound(problem, seed=seed).gpus
    start = max(lb, len(ranks), sum(max(1, math.ceil(d - 1e-9)) for d in demand))
    stop = max(start, 4 * len(problem.adapters))

    def trial(n: int) -> tuple[bool, tuple[list[list[Adapter]], GroupEval]]:
        alloc = hamilton(demand, n)
        gpus = [gpu for r, m in zip(ranks, alloc, strict=True)
                for gpu in fractional_pack(groups[r], m)]
        ev = best_loras(problem, group_rows(problem, gpus))
        return (not ev.starving.any()), (gpus, ev)

    n, (gpus, ev), ok = smallest_feasible(trial, start, stop)
    notes = [
        "operating points (req/s): " + ", ".join(f"r{r}: {points[r]:.3g}" for r in ranks),
        f"search from {start} (lower bound {lb})",
    ]
    if not ok:
        notes.append(f"every N up to {n} has a GPU predicted to starve")
    return finish(problem, "loraserve", gpus, ev, t0, notes)
