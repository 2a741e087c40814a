"""``dlora-proactive``: replicas that maximise the minimum burst tolerance, after dLoRA.

dLoRA (Wu et al., "dLoRA: Dynamically Orchestrating Requests and Adapters for LoRA LLM
Serving", OSDI 2024) serves adapters on a cluster of replicas; besides its dynamic batching
and request-adapter co-migration, it places adapters (and replicas of popular ones)
*proactively*, so that the cluster absorbs load bursts. This module re-implements the
proactive placement idea on our surrogate, as a static placement:

1. For a GPU count N, adapters in descending token demand (rate x (mean input + output),
   tok/s) go to the GPU of lowest demand so far (LPT list scheduling).
2. Every GPU gets its ``max_loras`` as ``api.resize_loras`` does and a *burst tolerance*
   score: the surrogate headroom (the load growth factor it absorbs before predicted
   starvation, minus 1; :meth:`PlacementProblem.headroom`) or, if it starves already, minus
   its starvation probability.
3. Replication: repeatedly, on the GPU of lowest score, its hottest adapters (up to three, in
   descending rate) are tried as a new replica on the GPU of highest score not holding them;
   an adapter with k replicas sends rate / k to each. The first candidate that improves the
   sorted score vector lexicographically (leximin: the minimum first) is kept; the loop stops
   when no candidate improves or after ``min(2N + 10, 400)`` replicas.
4. N is searched upward from the lower bound
   (:func:`~loratwin.placement.baselines.smallest_feasible`); the first N at which no GPU is
   predicted to starve is returned.

Simplifications: dLoRA solves its placement as an optimisation over predicted workloads and
migrates adapters and requests online; here the load is the mean rate, replicas split an
adapter's traffic evenly and never move, and the optimisation is the greedy leximin loop
above. Replicas appear as :class:`Adapter` pieces with the same id and a fraction of the rate.
"""

from __future__ import annotations

import time

import numpy as np

from loratwin.placement.baselines import (
    GroupEval,
    best_loras,
    finish,
    group_rows,
    headrooms,
    smallest_feasible,
)
from loratwin.placement.bounds import lower_bound
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import Placement
from loratwin.workload.types import Adapter

#: Adapters of the weakest GPU tried as a new replica per step.
CANDIDATES_PER_STEP = 3
#: Score of an empty GPU (above any headroom: the best target of a replica).
EMPTY_SCORE = 1e9


class _State:
    """Replica sets and per-GPU evaluations for one GPU count."""

    def __init__(self, problem: PlacementProblem, n_gpus: int) -> None:
        self.problem = problem
        self.adapters = list(problem.adapters)
        demand = [problem.offered_tok_s([a]) for a in self.adapters]
        self.replicas: list[list[int]] = [[] for _ in self.adapters]
        self.members: list[set[int]] = [set() for _ in range(n_gpus)]
        load = np.zeros(n_gpus)
        for i in sorted(range(len(self.adapters)), key=lambda i: -demand[i]):
            j = int(np.argmin(load))
            load[j] += demand[i]
            self.replicas[i].append(j)
            self.members[j].add(i)
        self.loras, self.rows, self.score = self._evaluate(list(range(n_gpus)))

    def piece(self, i: int) -> Adapter:
        a = self.adapters[i]
        k = len(self.replicas[i])
        return a if k == 1 else Adapter(a.id, a.rank, a.rate / k, a.mean_input_tokens,
                                        a.mean_output_tokens)

    def group(self, j: int, members: set[int] | None = None) -> list[Adapter]:
        return [self.piece(i) for i in sorted(self.members[j] if members is None else members)]

    def _evaluate(self, gpus: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(max_loras, rows, scores) of the given GPUs; an empty GPU scores
        :data:`EMPTY_SCORE` (the best replica target) and has no row."""
        used = [j for j in gpus if self.members[j]]
        ev = best_loras(self.problem, group_rows(self.problem, [self.group(j) for j in used]))
        pos = {j: k for k, j in enumerate(used)}
        loras = np.zeros(len(gpus), np.int64)
        rows = np.full((len(gpus), ev.rows.shape[1] if used else 10), np.nan)
        score = np.full(len(gpus), EMPTY_SCORE)
        sc = _scores(self.problem, ev)
        for k, j in enumerate(gpus):
            if j in pos:
                loras[k], rows[k], score[k] = ev.loras[pos[j]], ev.rows[pos[j]], sc[pos[j]]
        return loras, rows, score

    def try_replica(self, i: int, h: int) -> np.ndarray:
        """Scores after adding a replica of adapter i on GPU h (state unchanged), or None."""
        old = self.replicas[i]
        self.replicas[i] = [*old, h]
        self.members[h].add(i)
        touched = sorted({*old, h})
        _, _, sc = self._evaluate(touched)
        self.members[h].discard(i)
        self.replicas[i] = old
        score = self.score.copy()
        score[touched] = sc
        return score

    def add_replica(self, i: int, h: int) -> None:
        self.replicas[i].append(h)
        self.members[h].add(i)
        touched = sorted(set(self.replicas[i]))
        loras, rows, sc = self._evaluate(touched)
        self.loras[touched] = loras
        self.rows[touched] = rows
        self.score[touched] = sc


def _scores(problem: PlacementProblem, ev: GroupEval) -> np.ndarray:
    """Burst tolerance: headroom if not predicted to starve, else -probability."""
    return np.where(ev.starving, -ev.p, headrooms(problem, ev))


def _leximin_better(new: np.ndarray, old: np.ndarray) -> bool:
    a, b = np.sort(new), np.sort(old)
    diff = np.flatnonzero(np.abs(a - b) > 1e-12)
    return bool(diff.size) and a[diff[0]] > b[diff[0]]


def proactive_groups(problem: PlacementProblem, n_gpus: int) -> tuple[list[list[Adapter]], int]:
    """GPUs (as adapter pieces) for N GPUs after LPT and greedy leximin replication; also
    the number of replicas added."""
    st = _State(problem, n_gpus)
    g_count = n_gpus
    added = 0
    limit = min(2 * g_count + 10, 400)
    while added < limit and g_count > 1:
        g = int(np.argmin(st.score))
        hot = sorted(st.members[g], key=lambda i: -st.adapters[i].rate)
        improved = False
        for i in hot[:CANDIDATES_PER_STEP]:
            if st.adapters[i].rate <= 0:
                continue
            free = [h for h in range(g_count) if h not in st.replicas[i]]
            if not free:
                continue
            h = max(free, key=lambda h: st.score[h])
            new = st.try_replica(i, h)
            if _leximin_better(new, st.score):
                st.add_replica(i, h)
                added += 1
                improved = True
                break
        if not improved:
            break
    return [st.group(j) for j in range(g_count) if st.members[j]], added


def place_dlora_proactive(problem: PlacementProblem, *, seed: int = 0) -> Placement:
    """Place with dLoRA-style proactive replication (see the module docstring).

    ``seed`` only seeds the lower bound's twin run.
    """
    t0 = time.perf_counter()
    lb = lower_bound(problem, seed=seed).gpus
    stop = max(lb, 2 * len(problem.adapters))

    def trial(n: int) -> tuple[bool, tuple[list[list[Adapter]], GroupEval, int]]:
        groups, added = proactive_groups(problem, n)
        ev = best_loras(problem, group_rows(problem, groups))
        return (not ev.starving.any()), (groups, ev, added)

    n, (groups, ev, added), ok = smallest_feasible(trial, lb, stop)
    notes = [f"search from the lower bound {lb}", f"{added} replica(s) added"]
    if not ok:
        notes.append(f"every N up to {n} has a GPU predicted to starve")
    return finish(problem, "dlora-proactive", groups, ev, t0, notes)
