"""``paper-greedy``: the placement algorithm proposed by Agullo et al. (arXiv 2602.24044).

Re-implemented from its description, as a baseline:

1. adapters are grouped by rank and the groups taken in descending rank; within a group the
   rates are ordered in zig-zag (largest, smallest, second largest, second smallest, ...);
2. one GPU is filled at a time, one adapter after the other;
3. at each testing point of served adapters (8, 16, 32, 64, 96, ..., 576) the surrogate's
   throughput is compared for the GPU's current ``max_loras`` and the next value of the same
   grid (a value above the memory limit of the GPU's largest rank, or above the number of
   served adapters, is dropped); the better one is kept;
4. the batch of adapters added since the previous testing point is accepted unless the
   starvation classifier predicts starvation (probability >= 0.5); on rejection the pending
   adapters go back to the front of their groups and the next GPU opens;
5. when the adapters run out mid-batch, the partial final batch is tested padded with
   mean-rate, minimum-rank adapters up to the next testing point.

Two guards the description does not need but an implementation does: a GPU whose very first
batch is rejected keeps the largest prefix of that batch predicted not to starve (at least one
adapter), and a GPU full at the last testing point (576) closes.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from loratwin.placement.problem import PlacementProblem, PrefixStats
from loratwin.placement.types import PAPER_GRID, Placement, Predictions
from loratwin.workload.types import Adapter

STARVING_PROBABILITY = 0.5


@dataclass(frozen=True)
class _GridTable:
    """Predictions of every (testing point n, grid ``max_loras``) of the next GPU's adapters,
    from one batch surrogate call: the papers' sequence of tests is then replayed by lookups
    (the same rows, so the same answers as one call per test)."""

    stats: PrefixStats
    index: dict[tuple[int, int], int]
    pred: Predictions

    @staticmethod
    def build(problem: PlacementProblem, upcoming: list[Adapter]) -> _GridTable:
        stats = PrefixStats(problem, upcoming)
        index: dict[tuple[int, int], int] = {}
        for n in (g for g in PAPER_GRID if g <= len(upcoming)):
            top = min(n, problem.max_loras_limit(stats.max_rank(n)))
            for m in (g for g in PAPER_GRID if g <= top):
                index[n, m] = len(index)
        keys = list(index)
        pred = (problem.evaluate(stats.rows(np.array([k[0] for k in keys]),
                                            np.array([k[1] for k in keys])))
                if keys else Predictions.empty())
        return _GridTable(stats, index, pred)


def zigzag(adapters: list[Adapter]) -> list[Adapter]:
    """Largest rate, smallest, second largest, second smallest, ... (stable on ties)."""
    by_rate = sorted(adapters, key=lambda a: -a.rate)
    out: list[Adapter] = []
    lo, hi = 0, len(by_rate) - 1
    while lo <= hi:
        out.append(by_rate[lo])
        if lo != hi:
            out.append(by_rate[hi])
        lo += 1
        hi -= 1
    return out


def _next_grid(value: int) -> int | None:
    return next((g for g in PAPER_GRID if g > value), None)


def place_paper_greedy(problem: PlacementProblem) -> Placement:
    """Place ``problem.adapters`` with the papers' greedy algorithm (see the module docstring).

    Returns
    -------
    Placement
        One :class:`GpuAssignment` per GPU with the surrogate's predictions.
    """
    t0 = time.perf_counter()
    groups: dict[int, deque[Adapter]] = {}
    for rank in sorted({a.rank for a in problem.adapters}, reverse=True):
        groups[rank] = deque(zigzag([a for a in problem.adapters if a.rank == rank]))
    mean_rate = float(np.mean([a.rate for a in problem.adapters]))
    min_rank = min(a.rank for a in problem.adapters)
    notes: list[str] = []
    taken: list[tuple[list[Adapter], int]] = []  # (adapters, max_loras) per GPU

    def take() -> Adapter | None:
        for q in groups.values():
            if q:
                return q.popleft()
        return None

    def give_back(batch: list[Adapter]) -> None:
        for a in reversed(batch):
            groups[a.rank].appendleft(a)

    def peek() -> list[Adapter]:
        """The adapters the next GPU takes if it accepts every batch (take order)."""
        out: list[Adapter] = []
        for q in groups.values():
            out += list(itertools.islice(q, PAPER_GRID[-1] - len(out)))
        return out

    def test(members: list[Adapter], loras: int, pad_to: int = 0,
             table: _GridTable | None = None) -> tuple[bool, int]:
        """(accepted, chosen max_loras) for the members."""
        pad = [Adapter(f"_pad{i}", min_rank, mean_rate)
               for i in range(max(0, pad_to - len(members)))]
        full = members + pad
        n = len(full)
        stats = table.stats if table is not None and not pad else PrefixStats(problem, full)
        limit = problem.max_loras_limit(stats.max_rank(n))
        cands = [c for c in (loras, _next_grid(loras)) if c is not None and c <= min(limit, n)]
        if not cands:
            cands = [max(1, min(limit, n, loras))]
        if table is not None and not pad and all((n, c) in table.index for c in cands):
            thr = table.pred.total_throughput_tok_s[[table.index[n, c] for c in cands]]
            p = table.pred.starvation_probability[[table.index[n, c] for c in cands]]
        else:
            pred = problem.evaluate(stats.rows(np.full(len(cands), n), np.array(cands)))
            thr, p = pred.total_throughput_tok_s, pred.starvation_probability
        best = int(np.argmax(thr))
        return bool(p[best] < STARVING_PROBABILITY), cands[best]

    while any(groups.values()):
        accepted: list[Adapter] = []
        pending: list[Adapter] = []
        loras = PAPER_GRID[0]
        table = _GridTable.build(problem, peek())
        while True:
            a = take()
            if a is None:
                break
            pending.append(a)
            n = len(accepted) + len(pending)
            if n not in PAPER_GRID:
                continue
            ok, chosen = test(accepted + pending, loras, table=table)
            if ok:
                accepted += pending
                pending = []
                loras = chosen
                if n == PAPER_GRID[-1]:
                    break
                continue
            give_back(pending)
            pending = []
            break
        if pending:  # partial final batch
            n = len(accepted) + len(pending)
            pad_to = _next_grid(n - 1) or n
            ok, chosen = test(accepted + pending, loras, pad_to=pad_to)
            if ok:
                accepted += pending
                loras = chosen
            else:
                give_back(pending)
            pending = []
        if not accepted:
            # guard: the first batch of an empty GPU starves; keep its largest safe prefix
            batch = []
            while (a := take()) is not None and len(batch) < PAPER_GRID[0]:
                batch.append(a)
            if a is not None and len(batch) == PAPER_GRID[0]:
                give_back([a])
            stats = PrefixStats(problem, batch)
            ks = np.arange(1, len(batch) + 1)
            lim = problem.max_loras_limit(max(x.rank for x in batch))
            pred = problem.evaluate(stats.rows(ks, np.minimum(ks, lim)))
            safe = np.flatnonzero(pred.starvation_probability < STARVING_PROBABILITY)
            keep = int(safe[-1]) + 1 if safe.size else 1
            give_back(batch[keep:])
            accepted = batch[:keep]
            loras = min(keep, lim)
            notes.append(f"GPU {len(taken)}: first batch predicted to starve; kept {keep}")
        loras = min(loras, len(accepted), problem.max_loras_limit(max(a.rank for a in accepted)))
        taken.append((accepted, max(1, loras)))
    servers = problem.assignments([a for a, _ in taken], [m for _, m in taken])
    return Placement("paper-greedy", tuple(servers), time.perf_counter() - t0, tuple(notes))
