"""Placement baselines: ``max-backbone``, ``least-loaded`` and ``random``, and the shared
machinery of every baseline (batched surrogate evaluation of whole GPUs, ``max_loras``
choice, headroom, the search for the smallest GPU count).

All baselines share the signature ``(problem, *, seed=0) -> Placement`` (see
:data:`loratwin.placement.api._BASELINES`) and the same safety rule: a GPU is *predicted to
starve* when the surrogate's starvation probability is at least :data:`P_STARVING` (0.5, the
classifier's own decision rule, as in the papers' greedy algorithm). Our algorithm
``loratwin`` uses a stricter margin (``SearchOptions.p_max`` = 0.2); the baselines use the
plain decision so that they are not handicapped by our margin.

Each GPU's ``max_loras`` is chosen as :func:`resize_loras` does: among
the candidates of ``prefix_search._lora_candidates`` (powers of two, the papers' grid, the
served count and fractions of it, all within the memory limit of the GPU's largest rank), the
one of lowest predicted starvation probability (ties: lowest predicted ITL). Here it is done
for many GPUs in one surrogate call (:func:`best_loras`).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from loratwin.placement.prefix_search import SearchOptions, _lora_candidates
from loratwin.placement.problem import HEADROOM_STEPS, PlacementProblem, group_rows
from loratwin.placement.types import GpuAssignment, Placement, Predictions
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

#: A GPU is predicted to starve from this surrogate starvation probability on.
P_STARVING = 0.5

_I_RATE = FEATURES.index("sum_rate_req_s")
_I_STD = FEATURES.index("std_rate_req_s")
_I_LORAS = FEATURES.index("max_loras")

T = TypeVar("T")


# ----------------------------------------------------------------------------- features


def _take(pred: Predictions, idx: np.ndarray) -> Predictions:
    return pred.take(idx)


@dataclass(frozen=True)
class GroupEval:
    """Surrogate view of G GPUs at their chosen ``max_loras``.

    Attributes
    ----------
    loras:
        (G,) chosen ``max_loras``.
    rows:
        (G, len(FEATURES)) feature rows at those ``max_loras``.
    pred:
        Predictions of those rows (arrays of shape (G,)).
    """

    loras: np.ndarray
    rows: np.ndarray
    pred: Predictions

    @property
    def p(self) -> np.ndarray:
        """(G,) predicted starvation probability."""
        return np.asarray(self.pred.starvation_probability, float)

    @property
    def starving(self) -> np.ndarray:
        """(G,) bool: predicted to starve (probability >= :data:`P_STARVING`)."""
        return self.p >= P_STARVING


def memory_limits(problem: PlacementProblem, rows: np.ndarray) -> np.ndarray:
    """(G,) most GPU slots each row's largest rank allows (the profile's KV model)."""
    return np.array([problem.max_loras_limit(int(r)) for r in rows[:, FEATURES.index("max_rank")]],
                    dtype=np.int64)


def evaluate_rows(problem: PlacementProblem, rows: np.ndarray, loras: np.ndarray) -> GroupEval:
    """Predict G GPUs with given ``max_loras`` (one surrogate call)."""
    rows = rows.copy()
    rows[:, _I_LORAS] = loras
    return GroupEval(np.asarray(loras, np.int64), rows, problem.evaluate(rows))


def best_loras(problem: PlacementProblem, rows: np.ndarray,
               safe: Callable[[Predictions], np.ndarray] | None = None) -> GroupEval:
    """Choose every GPU's ``max_loras`` (as :func:`resize_loras`).

    Parameters
    ----------
    rows:
        (G, len(FEATURES)) rows from :func:`group_rows` (the ``max_loras`` column is ignored).
    safe:
        Optional ``predictions -> (n,) bool``; when given, safe candidates come first
        (e.g. :meth:`~loratwin.placement.prefix_search.SearchOptions.safe` with SLOs).

    Returns
    -------
    GroupEval
        Per GPU the candidate of lowest predicted starvation probability (ties: lowest ITL),
        from one surrogate call over all (GPU, candidate) pairs.
    """
    g = rows.shape[0]
    if g == 0:
        return GroupEval(np.zeros(0, np.int64), rows, Predictions.empty())
    limits = memory_limits(problem, rows)
    served = rows[:, FEATURES.index("served_adapters")].astype(np.int64)
    cache: dict[tuple[int, int], list[int]] = {}
    owner: list[np.ndarray] = []
    cands: list[np.ndarray] = []
    for i in range(g):
        key = (int(served[i]), int(limits[i]))
        if key not in cache:
            cache[key] = _lora_candidates(*key)
        c = cache[key]
        cands.append(np.asarray(c, np.int64))
        owner.append(np.full(len(c), i, np.int64))
    own = np.concatenate(owner)
    m = np.concatenate(cands)
    big = rows[own].copy()
    big[:, _I_LORAS] = m
    pred = problem.evaluate(big)
    score = np.asarray(pred.starvation_probability, float) + 1e-9 * np.asarray(pred.mean_itl_ms)
    if safe is not None:
        score = score + ~safe(pred)
    order = np.lexsort((score, own))  # by GPU, then by score
    first = order[np.concatenate([[0], np.flatnonzero(np.diff(own[order])) + 1])]
    return GroupEval(m[first], big[first], _take(pred, first))


def resize_adapters(problem: PlacementProblem, adapters: Sequence[Adapter],
                    options: SearchOptions) -> tuple[GpuAssignment, bool]:
    """A GPU serving ``adapters`` at the best ``max_loras`` (safe under ``options`` first,
    then lowest predicted starvation probability, then lowest ITL), and whether that choice
    is safe."""
    adapters = list(adapters)
    ev = best_loras(problem, group_rows(problem, [adapters]), safe=options.safe)
    return (problem.assignment(adapters, int(ev.loras[0]), ev.pred, 0),
            bool(options.safe(ev.pred)[0]))


def resize_loras(problem: PlacementProblem, gpu: GpuAssignment, options: SearchOptions
                 ) -> tuple[GpuAssignment, bool]:
    """The same adapters with the best ``max_loras`` (:func:`resize_adapters`)."""
    return resize_adapters(problem, gpu.adapters, options)


def headrooms(problem: PlacementProblem, ev: GroupEval, p_starving: float = P_STARVING
              ) -> np.ndarray:
    """(G,) load growth each GPU absorbs before predicted starvation, vectorised.

    Same definition as :meth:`PlacementProblem.headroom`: all rates scaled by 1.00, 1.05,
    ..., 4.00; the largest factor still predicted not to starve, minus 1 (0 if the GPU starves
    already). One surrogate call of G x 61 rows.
    """
    g = ev.rows.shape[0]
    if g == 0:
        return np.zeros(0)
    s = len(HEADROOM_STEPS)
    rows = np.repeat(ev.rows, s, axis=0)
    f = np.tile(HEADROOM_STEPS, g)
    rows[:, _I_RATE] *= f
    rows[:, _I_STD] *= f
    ok = (np.asarray(problem.evaluate(rows).starvation_probability) < p_starving).reshape(g, s)
    bad = ~ok
    first_bad = np.where(bad.any(axis=1), bad.argmax(axis=1), s)
    last_ok = HEADROOM_STEPS[np.maximum(first_bad - 1, 0)]
    return np.where(ok[:, 0], last_ok - 1.0, 0.0)


def finish(problem: PlacementProblem, name: str, groups: Sequence[Sequence[Adapter]],
           ev: GroupEval, t0: float, notes: Sequence[str] = ()) -> Placement:
    """A :class:`Placement` from GPUs already evaluated (``ev`` row i = ``groups[i]``)."""
    servers = tuple(
        problem.assignment(list(grp), int(ev.loras[i]), ev.pred, i)
        for i, grp in enumerate(groups)
    )
    return Placement(name, servers, time.perf_counter() - t0, tuple(notes))


# ----------------------------------------------------------------------------- search over N


def smallest_feasible(trial: Callable[[int], tuple[bool, T]], start: int, stop: int,
                      linear_steps: int = 4) -> tuple[int, T, bool]:
    """Smallest GPU count N in [start, stop] whose ``trial(N)`` is feasible.

    N is searched upward from ``start``: ``linear_steps`` single steps, then steps doubling
    (N + 1, N + 2, N + 4, ...); once a feasible N is found, the gap to the last infeasible N
    is bisected. Feasibility is assumed monotone in N inside that last gap (more GPUs, less
    load each); every trial is cached.

    Returns
    -------
    (N, result, feasible):
        The chosen N, ``trial(N)``'s result and whether it is feasible (``False``: no N up
        to ``stop`` was, and ``stop``'s result is returned).
    """
    start = max(1, min(start, stop))
    cache: dict[int, tuple[bool, T]] = {}

    def run(n: int) -> bool:
        if n not in cache:
            cache[n] = trial(n)
        return cache[n][0]

    lo, n, step = start - 1, start, 1
    while not run(n):
        lo = n
        if n >= stop:
            return n, cache[n][1], False
        if n - start + 1 >= linear_steps:
            step *= 2
        n = min(stop, n + step)
    hi = n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid):
            hi = mid
        else:
            lo = mid
    return hi, cache[hi][1], True


def _start(problem: PlacementProblem, seed: int) -> tuple[int, str]:
    from loratwin.placement.bounds import lower_bound

    lb = lower_bound(problem, seed=seed)
    return lb.gpus, f"search from the lower bound {lb.gpus}"


# ----------------------------------------------------------------------------- max-backbone


def place_max_backbone(problem: PlacementProblem, *, seed: int = 0) -> Placement:
    """``max-backbone``: next-fit on the measured capacity of the model without LoRA.

    A LoRA-unaware baseline: a GPU is assumed to sustain what the backbone sustains. The
    backbone capacity is measured in the twin in the call (one simulation of the model
    *without* LoRA, ``ServerConfig(enable_lora=False)``, under an overloaded stream with the
    workload's own length mix, see :func:`loratwin.placement.bounds.backbone_capacity`).
    Adapters, in descending token demand (rate x (mean input + output tokens), tok/s), fill
    one GPU after the other (next-fit): an adapter that would push the open GPU's demand
    above the capacity opens a new GPU. ``max_loras`` = the adapters on the GPU, capped by
    the memory limit of its largest rank; ``max_cpu_loras`` = the adapters on the GPU.

    Simplifications: the surrogate is not consulted to place (only to report predictions),
    so GPUs may be predicted to starve, which is the point of this baseline (LoRA costs GPU
    time the backbone measurement does not see); an adapter whose demand alone exceeds the
    capacity still gets one GPU.
    """
    from loratwin.placement.bounds import backbone_capacity

    t0 = time.perf_counter()
    cap = backbone_capacity(problem, seed=seed).throughput_tok_s
    demand = {a.id: problem.offered_tok_s([a]) for a in problem.adapters}
    order = sorted(problem.adapters, key=lambda a: -demand[a.id])
    groups: list[list[Adapter]] = []
    load = 0.0
    for a in order:
        if groups and load + demand[a.id] <= cap:
            groups[-1].append(a)
            load += demand[a.id]
        else:
            groups.append([a])
            load = demand[a.id]
    rows = group_rows(problem, groups)
    loras = np.minimum(np.array([len(g) for g in groups]), memory_limits(problem, rows))
    ev = evaluate_rows(problem, rows, np.maximum(loras, 1))
    return finish(problem, "max-backbone", groups, ev, t0,
                  (f"backbone capacity {cap:,.0f} tok/s (twin, no LoRA)",))


# ----------------------------------------------------------------------------- least-loaded


def least_loaded_groups(adapters: Sequence[Adapter], n_gpus: int) -> list[list[Adapter]]:
    """Adapters in descending rate, each to the GPU of lowest total rate (ties: lowest index);
    empty GPUs dropped."""
    heap = [(0.0, i) for i in range(n_gpus)]
    groups: list[list[Adapter]] = [[] for _ in range(n_gpus)]
    for a in sorted(adapters, key=lambda a: -a.rate):
        load, i = heapq.heappop(heap)
        groups[i].append(a)
        heapq.heappush(heap, (load + a.rate, i))
    return [g for g in groups if g]


def _search_groups(problem: PlacementProblem, name: str, seed: int, stop: int,
                   make: Callable[[int], list[list[Adapter]]]) -> Placement:
    t0 = time.perf_counter()
    start, note = _start(problem, seed)

    def trial(n: int) -> tuple[bool, tuple[list[list[Adapter]], GroupEval]]:
        groups = make(n)
        ev = best_loras(problem, group_rows(problem, groups))
        return (not ev.starving.any()), (groups, ev)

    n, (groups, ev), ok = smallest_feasible(trial, start, stop)
    notes = [note]
    if not ok:
        notes.append(f"every N up to {n} has a GPU predicted to starve")
    return finish(problem, name, groups, ev, t0, notes)


def place_least_loaded(problem: PlacementProblem, *, seed: int = 0) -> Placement:
    """``least-loaded``: greedy load balancing (LPT list scheduling, Graham 1969) on N GPUs.

    Adapters in descending rate (req/s) go one by one to the GPU with the lowest total rate,
    for the smallest N (searched upward from the lower bound, see :func:`smallest_feasible`)
    at which the surrogate predicts no GPU to starve; each GPU's ``max_loras`` is chosen as
    ``api.resize_loras`` does. Balancing is on req/s, blind to ranks and lengths (the
    classic load balancer of serving systems); ``seed`` only seeds the lower bound's twin run.
    """
    return _search_groups(problem, "least-loaded", seed, len(problem.adapters),
                          lambda n: least_loaded_groups(problem.adapters, n))


# ----------------------------------------------------------------------------- random


def random_groups(adapters: Sequence[Adapter], n_gpus: int, seed: int) -> list[list[Adapter]]:
    """Every adapter to a uniformly random GPU of N (``default_rng([seed, N])``); empty GPUs
    dropped."""
    rng = np.random.default_rng([seed, n_gpus])
    owner = rng.integers(0, n_gpus, size=len(adapters))
    groups: list[list[Adapter]] = [[] for _ in range(n_gpus)]
    for a, i in zip(adapters, owner, strict=True):
        groups[int(i)].append(a)
    return [g for g in groups if g]


def place_random(problem: PlacementProblem, *, seed: int = 0) -> Placement:
    """``random``: uniformly random assignment on the smallest safe N.

    For N searched upward from the lower bound (:func:`smallest_feasible`), every adapter
    goes to a uniformly random GPU (one draw per N, seeded by ``(seed, N)``); the first N at
    which the surrogate predicts no GPU to starve is returned (empty GPUs dropped, so fewer
    may be used). ``max_loras`` as ``api.resize_loras``. N goes up to twice the adapters.
    """
    return _search_groups(problem, "random", seed, 2 * len(problem.adapters),
                          lambda n: random_groups(problem.adapters, n, seed))
