"""Balancing adapters over a fixed number of GPUs: minimise the worst GPU's predicted latency.

Given N GPUs, :func:`balance` looks for the assignment of items (adapters, or replicas of
split ones) to GPUs and each GPU's ``max_loras`` that minimises the largest per-GPU *cost*:

* a GPU that is not safe (predicted starvation probability at least ``p_max``, or a hard SLO
  of :class:`~loratwin.placement.prefix_search.SearchOptions` violated) costs
  ``UNSAFE x (1 + p + offered / predicted throughput)``, so repairing unsafe GPUs comes
  first;
* a safe GPU costs its predicted latency in units of the :class:`LatencyTarget`:
  ``max(mean TTFT / target mean, p99 TTFT / target p99)`` (the p99 term when the surrogate
  predicts p99). Below 1 the GPU meets the target. Mean TTFT grows steeply as a GPU nears its
  capacity, so the min-max of it also maximises the smallest headroom.

The search is a min-max local search (as in the local search for makespan scheduling,
e.g. Schuurman & Vredeveld, "Performance guarantees of local search for multiprocessor
scheduling", INFORMS J. Computing 2007): the worst GPU w is taken and, in one batch
surrogate call, every candidate transfer out of it is scored: single items of w to the
least-loaded GPUs, blocks of w's lightest items (many small adapters at once), and swaps of
w's heaviest items with items of the least-loaded GPUs. The transfer that lowers
``max(cost of w, cost of the receiver)`` most is applied when it lowers w's cost, both GPUs'
``max_loras`` are re-sized (:func:`size_loras`), and the loop goes on. When no transfer
helps w, w is frozen (its cost is final) and the next worst GPU is worked on, so the
vector of costs decreases lexicographically from the top. The number of moves is bounded
(deterministic: no time limits), and the search stops at once when the worst GPU is unsafe
and no transfer helps it.

Features of modified GPUs come from sums (:mod:`.items`), so scoring a transfer is O(1)
besides the surrogate row.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from loratwin.placement.items import Items, N
from loratwin.placement.prefix_search import SearchOptions, _lora_candidates
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import Predictions
from loratwin.surrogate.features import FEATURES

#: Cost scale of an unsafe GPU.
UNSAFE = 1e6
_I_RATE = FEATURES.index("sum_rate_req_s")
_I_IN = FEATURES.index("mean_input_tokens")
_I_OUT = FEATURES.index("mean_output_tokens")
#: Receivers scored per move: the GPUs of lowest cost.
RECEIVERS = 4
#: Receivers scored for swaps.
SWAP_RECEIVERS = 2
#: Items of the worst GPU tried as single moves: all up to this many, else a spread.
SINGLE_ITEMS = 64
#: Items of each side tried in swaps.
SWAP_ITEMS = 8
#: Block sizes of the lightest items moved at once.
BLOCKS = (2, 4, 8, 16, 32, 64, 128)


@dataclass(frozen=True)
class LatencyTarget:
    """Per-GPU latency target of the default objective, ms.

    The default (mean TTFT <= 2 s, p99 TTFT <= 10 s) is what an interactive chat service
    accepts: a first token within about two seconds on average, and no more than one request
    in a hundred waiting over ten seconds (see ``docs/placement.md``, "Latency target").
    """

    mean_ttft_ms: float = 2000.0
    p99_ttft_ms: float | None = 10000.0

    def fields(self) -> tuple[str, ...]:
        """The :class:`Predictions` fields :meth:`ratio` reads."""
        return ("mean_ttft_ms", *(("p99_ttft_ms",) if self.p99_ttft_ms is not None else ()))

    def ratio(self, pred: Predictions) -> np.ndarray:
        """(n,) predicted latency over the target (the p99 term where p99 is predicted)."""
        r = np.asarray(pred.mean_ttft_ms, float) / self.mean_ttft_ms
        if self.p99_ttft_ms is not None:
            p99 = np.asarray(pred.p99_ttft_ms, float) / self.p99_ttft_ms
            r = np.where(np.isfinite(p99), np.maximum(r, p99), r)
        return r


def gpu_cost(pred: Predictions, rows: np.ndarray, opts: SearchOptions,
             target: LatencyTarget) -> np.ndarray:
    """(n,) cost of n GPU configurations (feature rows ``rows``; see the module docstring).

    An unsafe GPU costs ``UNSAFE x (1 + p + offered / predicted throughput)``: the load
    ratio keeps growing where the probability (and the latency) saturate, so that moving
    load off a hopelessly overloaded GPU still shows as progress.
    """
    p = np.asarray(pred.starvation_probability, float)
    offered = rows[:, _I_RATE] * (rows[:, _I_IN] + rows[:, _I_OUT])
    over = offered / np.maximum(np.asarray(pred.total_throughput_tok_s, float), 1.0)
    return np.where(opts.safe(pred), np.maximum(target.ratio(pred), 0.0),
                    UNSAFE * (1.0 + p + over))


def evaluate_cost(problem: PlacementProblem, rows: np.ndarray, opts: SearchOptions,
                  target: LatencyTarget) -> tuple[np.ndarray, np.ndarray]:
    """(cost, p): :func:`gpu_cost` of the rows (n, len(FEATURES)) and their starvation
    probability, with only the surrogate models the cost reads.

    The safety fields first (starvation, SLOs), then the latency target's fields for the
    safe rows and the throughput for the unsafe ones: the same costs as ``gpu_cost`` of a
    full prediction (each row's answers do not depend on the batch, for batches of two rows
    or more; a single row stays a batch of one).
    """
    first = problem.evaluate(rows, opts.safety_fields())
    safe = opts.safe(first)
    cols = {f.name: np.array(getattr(first, f.name)) for f in fields(Predictions)}
    for sel, need in ((safe, target.fields()), (~safe, ("total_throughput_tok_s",))):
        idx = np.flatnonzero(sel)
        if len(idx) == 0:
            continue
        batch = idx if len(idx) > 1 or len(rows) == 1 else np.repeat(idx, 2)
        got = problem.evaluate(rows[batch], need)
        for name in need:
            cols[name][idx] = np.asarray(getattr(got, name))[:len(idx)]
    pred = Predictions(**cols)
    return gpu_cost(pred, rows, opts, target), np.asarray(first.starvation_probability, float)


@dataclass(frozen=True)
class Layout:
    """Items on N GPUs with their ``max_loras`` and costs.

    Attributes
    ----------
    owner:
        (I,) GPU of each item.
    loras:
        (N,) ``max_loras`` of each GPU.
    cost:
        (N,) cost of each GPU (see :func:`gpu_cost`).
    p:
        (N,) predicted starvation probability of each GPU.
    frozen:
        (N,) GPUs the local search found no improving transfer for (None: not searched);
        :func:`balance` resumes from it.
    """

    owner: np.ndarray
    loras: np.ndarray
    cost: np.ndarray
    p: np.ndarray
    frozen: np.ndarray | None = None

    @property
    def gpus(self) -> int:
        return len(self.loras)

    @property
    def worst(self) -> float:
        """The largest GPU cost."""
        return float(self.cost.max()) if len(self.cost) else 0.0

    @property
    def safe(self) -> bool:
        """Every GPU safe (cost below :data:`UNSAFE`)."""
        return bool((self.cost < UNSAFE).all())

    def groups(self, items: Items) -> list[list[int]]:
        """Item indices of every GPU."""
        out: list[list[int]] = [[] for _ in range(self.gpus)]
        for i, g in enumerate(self.owner.tolist()):
            out[g].append(i)
        return out


class _Limits:
    """Memory limit on ``max_loras`` per slot rank, as an array lookup."""

    def __init__(self, problem: PlacementProblem, items: Items) -> None:
        self.values = items.rank_values
        self.limit = np.array([problem.max_loras_limit(int(r)) for r in self.values], np.int64)

    def __call__(self, max_rank: np.ndarray) -> np.ndarray:
        idx = np.clip(np.searchsorted(self.values, max_rank), 0, len(self.values) - 1)
        return self.limit[idx]


def size_loras(problem: PlacementProblem, items: Items, sums: np.ndarray, hist: np.ndarray,
               opts: SearchOptions, target: LatencyTarget,
               extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The best ``max_loras`` of G GPUs given by their sums: (loras, cost, p), each (G,).

    Candidates per GPU: ``prefix_search._lora_candidates`` (powers of two, the papers'
    grid, the served count and fractions of it, within the memory limit of the GPU's largest
    rank) plus ``extra[g]`` if given; the lowest cost wins (ties: lowest starvation
    probability). One surrogate call.
    """
    g = len(sums)
    limits = _Limits(problem, items)(items.max_rank(hist))
    served = sums[:, N].round().astype(np.int64)
    owner: list[np.ndarray] = []
    cands: list[np.ndarray] = []
    cache: dict[tuple[int, int], list[int]] = {}
    for i in range(g):
        key = (int(served[i]), int(limits[i]))
        if key not in cache:
            cache[key] = _lora_candidates(*key)
        c = cache[key]
        if extra is not None and 1 <= extra[i] <= min(key) and int(extra[i]) not in c:
            c = [*c, int(extra[i])]
        cands.append(np.asarray(c, np.int64))
        owner.append(np.full(len(c), i, np.int64))
    own = np.concatenate(owner)
    m = np.concatenate(cands)
    rows = items.rows(sums[own], hist[own], m)
    cost, p = evaluate_cost(problem, rows, opts, target)
    order = np.lexsort((p, cost, own))
    first = order[np.concatenate([[0], np.flatnonzero(np.diff(own[order])) + 1])]
    return m[first], cost[first], p[first]


# ----------------------------------------------------------------------------- starts


def lpt_owner(items: Items, gpus: int, by_rank: bool) -> np.ndarray | None:
    """Longest-processing-time start on ``gpus`` GPUs (Graham 1969) on token load (tok/s).

    Items in descending load go to the GPU of least load that holds no replica of the same
    adapter. With ``by_rank`` the GPUs are first apportioned to the rank groups in
    proportion to their load (largest remainders, at least one GPU each), so that no GPU
    sizes its slots for a rank it rarely serves; ``None`` when there are fewer GPUs than rank
    groups or than the replicas of an adapter.
    """
    if by_rank:
        ranks = items.hist.argmax(axis=1)
        load = np.bincount(ranks, weights=items.load, minlength=len(items.rank_values))
        groups = np.flatnonzero(load > 0) if load.sum() > 0 else np.unique(ranks)
        if gpus < len(groups):
            return None
        share = load[groups] / max(load[groups].sum(), 1e-12) * gpus
        alloc = np.maximum(np.floor(share).astype(int), 1)
        while alloc.sum() > gpus:
            alloc[np.argmax(alloc - share)] -= 1
        while alloc.sum() < gpus:
            alloc[np.argmax(share - alloc)] += 1
        owner = np.zeros(len(items), np.int64)
        base = 0
        for grp, k in zip(groups, alloc, strict=True):
            members = np.flatnonzero(ranks == grp)
            sub = _lpt(items, members, int(k))
            if sub is None:
                return None
            owner[members] = base + sub
            base += int(k)
        return owner
    return _lpt(items, np.arange(len(items)), gpus)


def _lpt(items: Items, members: np.ndarray, gpus: int) -> np.ndarray | None:
    """LPT of the items ``members`` on ``gpus`` GPUs; owner (len(members),) or None.

    The heap's (load, GPU) pairs are totally ordered, so the GPU each item gets does not
    depend on the heap's internal layout (``heapreplace`` = pop then push)."""
    if gpus < 1:
        return None
    order = members[np.argsort(-items.load[members], kind="stable")]
    load_of = items.load.tolist()
    heap = [(0.0, g) for g in range(gpus)]
    owner = np.empty(len(items), np.int64)
    count = [0] * gpus
    if not items.replicas:
        for i in order.tolist():
            load, g = heap[0]
            owner[i] = g
            count[g] += 1
            heapq.heapreplace(heap, (load + load_of[i], g))
    else:
        ident_of = items.ident.tolist()
        held: list[set[int]] = [set() for _ in range(gpus)]
        for i in order.tolist():
            ident = ident_of[i]
            popped = []
            while heap and ident in held[heap[0][1]]:
                popped.append(heapq.heappop(heap))
            if not heap:
                return None  # more replicas of one adapter than GPUs
            load, g = heapq.heappop(heap)
            owner[i] = g
            count[g] += 1
            held[g].add(ident)
            heapq.heappush(heap, (load + load_of[i], g))
            for e in popped:
                heapq.heappush(heap, e)
    if min(count) == 0:
        return None  # fewer items than GPUs
    return owner[members]


def owner_of_groups(items: Items, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """(I,) owner array of item-index groups."""
    owner = np.full(len(items), -1, np.int64)
    for g, members in enumerate(groups):
        owner[list(members)] = g
    if (owner < 0).any():
        raise ValueError("every item needs a GPU")
    return owner


# ----------------------------------------------------------------------------- local search


@dataclass(frozen=True)
class _Moves:
    """Candidate transfers out of one GPU: items out of it, the receiver, items back."""

    receiver: np.ndarray  # (C,)
    out_idx: np.ndarray  # flat item indices leaving the worst GPU
    out_start: np.ndarray  # (C,) start of each candidate's slice in out_idx
    in_idx: np.ndarray  # flat item indices coming back (swaps)
    in_start: np.ndarray  # (C,) start of each candidate's slice in in_idx (len 0: none)


def _spread(members: np.ndarray, k: int) -> np.ndarray:
    """Up to k members evenly spaced over the list (all of them if there are at most k)."""
    if len(members) <= k:
        return members
    return members[np.unique(np.linspace(0, len(members) - 1, k).round().astype(int))]


def _candidates(items: Items, owner: np.ndarray, w: int, receivers: np.ndarray,
                swap_receivers: np.ndarray) -> _Moves:
    """Transfers out of GPU w, in this order: for every receiver, its single items (all up
    to :data:`SINGLE_ITEMS`, else the heaviest third and a spread of the rest) then blocks
    (the lightest 2-128, and 2, 4, 8 items from 0, 1/4 and 1/2 down the list); then swaps of
    w's heaviest items with a spread of each swap receiver's items. Transfers that would put
    two replicas of one adapter on a GPU are dropped."""
    members = np.flatnonzero(owner == w)
    members = members[np.argsort(-items.load[members], kind="stable")]  # heaviest first
    none = np.zeros(0, np.int64)
    out_parts: list[np.ndarray] = []  # flat items leaving w, per receiver block
    out_lens: list[np.ndarray] = []
    in_parts: list[np.ndarray] = []
    in_lens: list[np.ndarray] = []
    recv_parts: list[np.ndarray] = []
    if len(members) >= 2 and len(receivers):
        singles = (members if len(members) <= SINGLE_ITEMS else np.concatenate(
            [members[:SINGLE_ITEMS // 3], _spread(members[SINGLE_ITEMS // 3:],
                                                   SINGLE_ITEMS - SINGLE_ITEMS // 3)]))
        blocks = [members[-b:] for b in BLOCKS if b < len(members)]
        for size in (2, 4, 8):
            for f in (0.0, 0.25, 0.5):
                s = int(f * len(members))
                if s + size < len(members):
                    blocks.append(members[s:s + size])
        flat = np.concatenate([singles, *blocks])
        lens = np.array([1] * len(singles) + [len(b) for b in blocks], np.int64)
        r = len(receivers)
        out_parts.append(np.tile(flat, r))
        out_lens.append(np.tile(lens, r))
        in_lens.append(np.zeros(r * len(lens), np.int64))
        recv_parts.append(np.repeat(receivers, len(lens)))
    heavy = members[:SWAP_ITEMS]
    for g in swap_receivers.tolist():
        theirs = np.flatnonzero(owner == g)
        theirs = _spread(theirs[np.argsort(-items.load[theirs], kind="stable")], SWAP_ITEMS)
        k = len(heavy) * len(theirs)
        out_parts.append(np.repeat(heavy, len(theirs)))
        out_lens.append(np.ones(k, np.int64))
        in_parts.append(np.tile(theirs, len(heavy)))
        in_lens.append(np.ones(k, np.int64))
        recv_parts.append(np.full(k, g, np.int64))
    out_idx = np.concatenate(out_parts) if out_parts else none
    out_len = np.concatenate(out_lens) if out_lens else none
    in_idx = np.concatenate(in_parts) if in_parts else none
    in_len = np.concatenate(in_lens) if in_lens else none
    recv = np.concatenate(recv_parts) if recv_parts else none
    if items.replicas and len(recv):
        keep = _no_shared_replicas(items, owner, members, recv, out_idx, out_len, in_idx,
                                   in_len)
        out_idx, in_idx = out_idx[np.repeat(keep, out_len)], in_idx[np.repeat(keep, in_len)]
        out_len, in_len, recv = out_len[keep], in_len[keep], recv[keep]
    return _Moves(
        receiver=recv,
        out_idx=out_idx,
        out_start=np.concatenate([[0], np.cumsum(out_len)[:-1]]).astype(np.int64),
        in_idx=in_idx,
        in_start=np.concatenate([[0], np.cumsum(in_len)[:-1]]).astype(np.int64),
    )


def _no_shared_replicas(items: Items, owner: np.ndarray, members: np.ndarray,
                        recv: np.ndarray, out_idx: np.ndarray, out_len: np.ndarray,
                        in_idx: np.ndarray, in_len: np.ndarray) -> np.ndarray:
    """(C,) bool: the transfer puts no two replicas of one adapter on a GPU."""
    held = {g: set(items.ident[owner == g].tolist()) for g in set(recv.tolist())}
    held_w = set(items.ident[members].tolist())
    out_ids = items.ident[out_idx].tolist()
    in_ids = items.ident[in_idx].tolist()
    keep = np.ones(len(recv), bool)
    lo_o = lo_i = 0
    for k, (g, no, ni) in enumerate(zip(recv.tolist(), out_len.tolist(), in_len.tolist(),
                                        strict=True)):
        if held[g].intersection(out_ids[lo_o:lo_o + no]) or (
                ni and held_w.intersection(in_ids[lo_i:lo_i + ni])):
            keep[k] = False
        lo_o += no
        lo_i += ni
    return keep


def _segment_sums(values: np.ndarray, idx: np.ndarray, start: np.ndarray,
                  count: int) -> np.ndarray:
    """(count, k) sums of ``values[idx]`` over the segments starting at ``start``."""
    out = np.zeros((count, values.shape[1]))
    if len(idx) == 0:
        return out
    lengths = np.diff(np.append(start, len(idx)))
    nonempty = lengths > 0
    if nonempty.any():
        out[nonempty] = np.add.reduceat(values[idx], start[nonempty], axis=0)
    return out


def balance(problem: PlacementProblem, items: Items, start: np.ndarray | Layout, gpus: int,
            opts: SearchOptions, target: LatencyTarget, max_moves: int | None = None,
            *, stop_at: float | None = None) -> Layout:
    """Min-max local search from ``start`` on ``gpus`` GPUs (see the module docstring).

    Parameters
    ----------
    start:
        (I,) owner array: GPU of each item (every GPU holds at least one item); or a
        :class:`Layout` of an earlier search, resumed where it stopped (its costs and
        ``max_loras`` reused, its frozen GPUs kept frozen: a finished search stays finished).
    max_moves:
        Bound on the moves and freezes (default ``2 x gpus + 20``). The search also stops
        when the worst GPU is unsafe and no transfer helps it (the layout is infeasible).
    stop_at:
        Stop as soon as the worst cost is at most this (e.g. 1.0: the latency target met),
        or as soon as the worst GPU is frozen above it: no move raises the largest cost and
        a frozen worst GPU keeps its cost, so the largest cost is then final (the moves left
        would only lower the other GPUs).

    Returns
    -------
    Layout
        The best layout found (never worse than the start: its largest cost is at most the
        start's), with the GPUs the search froze.
    """
    if isinstance(start, Layout):
        owner, loras, cost, p = (start.owner.copy(), start.loras.copy(), start.cost.copy(),
                                 start.p.copy())
        sums, hist = items.gpu_sums(owner, gpus)
        frozen = (np.zeros(gpus, bool) if start.frozen is None else start.frozen.copy())
    else:
        owner = start.copy()
        sums, hist = items.gpu_sums(owner, gpus)
        loras, cost, p = size_loras(problem, items, sums, hist, opts, target)
        frozen = np.zeros(gpus, bool)
    limits = _Limits(problem, items)
    budget = max_moves if max_moves is not None else 2 * gpus + 20
    for _ in range(budget):
        if frozen.all() or gpus < 2 or (stop_at is not None and cost.max() <= stop_at):
            break
        w = int(np.argmax(np.where(frozen, -np.inf, cost)))
        open_ = np.flatnonzero(~frozen & (np.arange(gpus) != w))
        if open_.size == 0:
            break
        by_cost = open_[np.argsort(cost[open_], kind="stable")]
        mv = _candidates(items, owner, w, by_cost[:RECEIVERS], by_cost[:SWAP_RECEIVERS])
        c = len(mv.receiver)
        if c == 0:
            frozen[w] = True
            continue
        d_out = _segment_sums(items.sums, mv.out_idx, mv.out_start, c)
        d_in = _segment_sums(items.sums, mv.in_idx, mv.in_start, c)
        h_out = _segment_sums(items.hist, mv.out_idx, mv.out_start, c)
        h_in = _segment_sums(items.hist, mv.in_idx, mv.in_start, c)
        s_w = sums[w] - d_out + d_in
        h_w = hist[w] - h_out + h_in
        s_g = sums[mv.receiver] - d_in + d_out
        h_g = hist[mv.receiver] - h_in + h_out
        ok = (s_w[:, N] >= 0.5) & (s_g[:, N] >= 0.5)
        l_w = np.minimum.reduce([np.full(c, loras[w]), s_w[:, N].round().astype(np.int64),
                                 limits(items.max_rank(h_w))])
        l_g = np.minimum.reduce([np.maximum(loras[mv.receiver], 1),
                                 s_g[:, N].round().astype(np.int64),
                                 limits(items.max_rank(h_g))])
        l_w, l_g = np.maximum(l_w, 1), np.maximum(l_g, 1)
        rows = np.vstack([items.rows(s_w, h_w, l_w), items.rows(s_g, h_g, l_g)])
        cst, _ = evaluate_cost(problem, rows, opts, target)
        new_max = np.where(ok, np.maximum(cst[:c], cst[c:]), np.inf)
        best = int(np.argmin(new_max))
        if not new_max[best] < cost[w] * (1.0 - 1e-4) - 1e-9:
            frozen[w] = True
            if cost[w] >= UNSAFE:
                frozen[:] = True  # the worst GPU cannot be made safe: infeasible
                break
            if stop_at is not None and cost[w] > stop_at and cost[w] >= cost.max():
                break  # the worst GPU is frozen: the worst cost is final, above stop_at
            continue
        g = int(mv.receiver[best])
        lo = mv.out_start[best]
        hi = mv.out_start[best + 1] if best + 1 < c else len(mv.out_idx)
        out_items = mv.out_idx[lo:hi]
        lo = mv.in_start[best]
        hi = mv.in_start[best + 1] if best + 1 < c else len(mv.in_idx)
        in_items = mv.in_idx[lo:hi]
        owner[out_items] = g
        owner[in_items] = w
        pair = np.array([w, g])
        sums[pair] = np.vstack([s_w[best], s_g[best]])
        hist[pair] = np.vstack([h_w[best], h_g[best]])
        lw, cw, pw = size_loras(problem, items, sums[pair], hist[pair], opts, target,
                                extra=np.array([l_w[best], l_g[best]]))
        loras[pair], cost[pair], p[pair] = lw, cw, pw
    return Layout(owner, loras, cost, p, frozen)
