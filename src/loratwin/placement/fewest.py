"""``loratwin``: the fewest GPUs first, then the best latency on that many GPUs.

1. **Items.** Adapters too hot for a GPU of their own are split into the fewest replicas that
   are safe alone (:func:`~loratwin.placement.prefix_search.split_hot`).
2. **A first count.** The prefix search (:mod:`.prefix_search`: one GPU filled at a time, as
   the papers do, but sized by batch search) packs the items on the surrogate alone; its
   N0 GPUs are a feasible start.
3. **Fewer GPUs.** For n = N0 - 1, N0 - 2, ... the items are placed on n GPUs from three
   starts: longest-processing-time on token load (Graham 1969), the same per rank group,
   and the best layout on n + 1 GPUs with its lightest GPU emptied onto the others; each start
   is repaired and balanced by :func:`~loratwin.placement.balance.balance` (min-max local
   search). The search goes down while every GPU ends safe (predicted starvation probability
   below ``p_max``, hard SLOs met) and stops at the lower bound.
4. **Balance.** On the smallest safe count the balanced layout is searched further (a
   longer move budget): the worst GPU's predicted TTFT (in units of the latency target) is
   as low as the local search gets it. Each count's search starts from the best of its
   starts (lowest worst cost) only.
5. **Twin confirmation.** Every GPU whose predicted starvation probability is at least
   ``p_confirm`` is simulated in the twin (all in one parallel batch: joblib or Ray); a GPU
   passes when the server starts and its throughput is at least (0.9 + ``twin_margin``) x
   its offered load. If one fails, the layout is balanced again with a stricter ``p_max``
   (halved), then with one GPU more; twin results are cached per GPU content.
6. **Latency target** (objective ``latency``, the default): if some GPU of the result is
   predicted above the :class:`~loratwin.placement.balance.LatencyTarget`, the smallest
   count (up to twice the GPUs) whose balanced layout meets it is found on the surrogate and
   reported as the trade-off (:class:`SloTradeoff`); the placement itself keeps the fewest
   GPUs. Objective ``throughput`` (the papers' rule alone) skips this step.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from loratwin.placement.balance import (
    LatencyTarget,
    Layout,
    balance,
    lpt_owner,
    owner_of_groups,
    size_loras,
)
from loratwin.placement.items import Items
from loratwin.placement.paper_greedy import zigzag
from loratwin.placement.prefix_search import SearchOptions, _merge_pieces, _pack, split_hot
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import GpuAssignment, Placement, SloTradeoff

Objective = Literal["latency", "throughput"]
#: ``gpus -> healthy?`` for a batch of GPUs (typically twin runs in parallel).
ConfirmMany = Callable[[Sequence[GpuAssignment]], list[bool]]
#: Stricter ``p_max`` factors tried when the twin rejects a GPU of the layout.
TIGHTEN = (1.0, 0.5)


@dataclass(frozen=True)
class _Search:
    problem: PlacementProblem
    items: Items
    opts: SearchOptions
    target: LatencyTarget

    def balanced(self, n: int, starts: Sequence[np.ndarray], max_moves: int | None = None,
                 stop_at: float | None = None) -> Layout | None:
        """The balanced layout on n GPUs from the best of the given starts (None: none)."""
        start = self.best_start(n, starts)
        if start is None:
            return None
        return balance(self.problem, self.items, start, n, self.opts, self.target,
                       max_moves, stop_at=stop_at)

    def best_start(self, n: int, starts: Sequence[np.ndarray]) -> Layout | None:
        """The start of lowest worst cost (ties: lower largest starvation probability)."""
        best: Layout | None = None
        for owner in starts:
            sums, hist = self.items.gpu_sums(owner, n)
            loras, cost, p = size_loras(self.problem, self.items, sums, hist, self.opts,
                                        self.target)
            lay = Layout(owner, loras, cost, p)
            if best is None or (lay.worst, lay.p.max()) < (best.worst, best.p.max()):
                best = lay
        return best

    def starts(self, n: int, above: Layout | None) -> list[np.ndarray]:
        """Start owners on n GPUs (see the module docstring, step 3)."""
        out = [o for o in (lpt_owner(self.items, n, False), lpt_owner(self.items, n, True))
               if o is not None]
        if above is not None and above.gpus == n + 1:
            out.append(_empty_lightest(self.items, above))
        return out


def _empty_lightest(items: Items, lay: Layout) -> np.ndarray:
    """``lay``'s owner with its lightest GPU's items moved, heaviest first, each to the GPU
    of least load that holds no replica of the same adapter (GPUs renumbered 0 .. n-1)."""
    load = np.bincount(lay.owner, weights=items.load, minlength=lay.gpus)
    gone = int(np.argmin(load))
    owner = lay.owner.copy()
    moving = np.flatnonzero(owner == gone)
    load[gone] = np.inf
    for i in moving[np.argsort(-items.load[moving], kind="stable")].tolist():
        holders = set(owner[items.ident == items.ident[i]].tolist())
        order = np.argsort(load, kind="stable")
        g = next((int(x) for x in order if int(x) not in holders and int(x) != gone),
                 int(order[0]))
        owner[i] = g
        load[g] += items.load[i]
    return np.where(owner > gone, owner - 1, owner)


def _greedy_owner(problem: PlacementProblem, items: Items, opts: SearchOptions
                  ) -> np.ndarray:
    """Owner of the prefix search's packing (zig-zag order within descending rank groups)."""
    tagged = [dataclasses.replace(a, id=f"{i}") for i, a in enumerate(items.adapters)]
    ranks = sorted({a.rank for a in tagged}, reverse=True)
    order = [a for r in ranks for a in zigzag([x for x in tagged if x.rank == r])]
    servers, _ = _pack(problem, order, opts, None)
    return owner_of_groups(items, [[int(a.id) for a in s.adapters] for s in servers])


def _servers(problem: PlacementProblem, items: Items, lay: Layout) -> list[GpuAssignment]:
    groups = [_merge_pieces([items.adapters[i] for i in members])
              for members in lay.groups(items)]
    return problem.assignments(groups, [int(min(m, len(g)))
                                        for g, m in zip(groups, lay.loras, strict=True)])


class _Confirmer:
    """Twin confirmations of borderline GPUs, cached by GPU content.

    One rejected GPU rejects its layout, so the borderline GPUs are simulated riskiest first
    (highest predicted starvation probability) in batches of ``chunk`` (0: all at once), and
    a layout stops being simulated after the first batch holding a rejection: the decision is
    the same as with every GPU simulated, for fewer runs.
    """

    def __init__(self, confirm: ConfirmMany | None, p_confirm: float, chunk: int = 0) -> None:
        self.confirm = confirm
        self.p_confirm = p_confirm
        self.chunk = chunk
        self.cache: dict[tuple[tuple[tuple[str, float], ...], int], bool] = {}
        self.runs = 0

    @staticmethod
    def key(g: GpuAssignment) -> tuple[tuple[tuple[str, float], ...], int]:
        return tuple(sorted((a.id, round(a.rate, 9)) for a in g.adapters)), g.max_loras

    def failed(self, servers: Sequence[GpuAssignment]) -> list[int]:
        """Indices of GPUs the twin rejects (empty: every borderline GPU passes). Not every
        rejected GPU is listed: the search stops at the first batch holding one."""
        if self.confirm is None:
            return []
        border = sorted((k for k, g in enumerate(servers)
                         if g.predicted["starvation_probability"] >= self.p_confirm),
                        key=lambda k: -servers[k].predicted["starvation_probability"])
        known = [k for k in border if self.cache.get(self.key(servers[k])) is False]
        if known:
            return sorted(known)
        todo: dict[tuple[tuple[tuple[str, float], ...], int], int] = {}
        for k in border:
            todo.setdefault(self.key(servers[k]), k)  # identical GPUs: one run
        keys = [key for key in todo if key not in self.cache]
        step = self.chunk if self.chunk > 0 else max(1, len(keys))
        for lo in range(0, len(keys), step):
            part = keys[lo:lo + step]
            res = self.confirm([servers[todo[key]] for key in part])
            self.runs += len(part)
            for key, ok in zip(part, res, strict=True):
                self.cache[key] = bool(ok)
            bad = [k for k in border if self.cache.get(self.key(servers[k])) is False]
            if bad:
                return sorted(bad)
        return []


def place_fewest(
    problem: PlacementProblem,
    options: SearchOptions | None = None,
    target: LatencyTarget | None = None,
    *,
    objective: Objective = "latency",
    confirm: ConfirmMany | None = None,
    lower: int = 1,
    confirm_chunk: int = 0,
) -> Placement:
    """Place the adapters on the fewest GPUs, balanced for latency (module docstring).

    Parameters
    ----------
    problem:
        Adapters, profile and surrogate.
    options:
        Safety margin (``p_max``, ``p_confirm``, ``twin_margin``) and hard SLOs.
    target:
        Latency target of the default objective (mean / p99 TTFT per GPU, ms).
    objective:
        ``latency`` (default): also report the GPUs the latency target needs when the
        fewest GPUs miss it; ``throughput``: the papers' starvation rule alone.
    confirm:
        Batch twin check of borderline GPUs (``None``: surrogate only).
    lower:
        A lower bound on the GPUs: the downward search stops there.
    confirm_chunk:
        GPUs per ``confirm`` call (0: every borderline GPU of a layout in one call); with a
        positive chunk a layout's remaining GPUs are not simulated once one is rejected.
    """
    t0 = time.perf_counter()
    opts = options or SearchOptions()
    tgt = target or LatencyTarget()
    adapters, notes = split_hot(problem, opts)
    items = Items.build(problem, adapters)
    replicas = int(np.bincount(items.ident).max())
    floor = max(1, lower, replicas)
    confirmer = _Confirmer(confirm, opts.p_confirm, confirm_chunk)

    def search(o: SearchOptions) -> _Search:
        return _Search(problem, items, o, tgt)

    s = search(opts)
    greedy = _greedy_owner(problem, items, opts)
    n0 = int(greedy.max()) + 1
    layouts: dict[int, Layout] = {}
    layouts[n0] = _pick(s.balanced(n0, [greedy, *s.starts(n0, None)]))
    n = n0
    while n - 1 >= floor:
        lay = s.balanced(n - 1, s.starts(n - 1, layouts[n]))
        if lay is None or not lay.safe:
            break
        n -= 1
        layouts[n] = lay
    notes.append(f"{n0} GPU(s) by filling one GPU at a time; {n} after balancing")
    # polish the count found with a longer search from where the short one stopped, unless
    # its worst GPU is frozen: then no transfer can lower the worst cost any more
    if not _worst_final(layouts[n]):
        polished = balance(problem, items, layouts[n], n, opts, tgt, max_moves=4 * n + 40)
        if polished.worst <= layouts[n].worst:
            layouts[n] = polished

    chosen, servers = _confirmed(problem, items, layouts, n, opts, tgt, confirmer, notes)
    if chosen is None:
        # last resort: the prefix search with its own twin checks (shrinks until it passes)
        from loratwin.placement.prefix_search import place_loratwin

        single = None if confirm is None else (lambda g: confirm([g])[0])
        fallback = place_loratwin(problem, opts, confirm=single)
        return dataclasses.replace(fallback, placement_s=time.perf_counter() - t0,
                                   notes=(*notes, *fallback.notes))
    if confirmer.runs:
        notes.append(f"twin confirmations: {confirmer.runs} GPU run(s)")
    tradeoff = None
    if objective == "latency":
        tradeoff = _tradeoff(search(opts), layouts, chosen, servers, tgt)
    return Placement("loratwin", tuple(servers), time.perf_counter() - t0, tuple(notes),
                     tradeoff=tradeoff)


def _worst_final(lay: Layout) -> bool:
    """The local search froze the worst GPU: every later transfer must lower the cost of
    the GPU it works on below that GPU's cost, so the worst cost cannot go down any more."""
    return lay.frozen is not None and bool(lay.frozen[int(np.argmax(lay.cost))])


def _pick(lay: Layout | None) -> Layout:
    assert lay is not None  # the greedy start always exists
    return lay


def _confirmed(problem: PlacementProblem, items: Items, layouts: dict[int, Layout], n: int,
               opts: SearchOptions, tgt: LatencyTarget, confirmer: _Confirmer,
               notes: list[str]) -> tuple[Layout | None, list[GpuAssignment]]:
    """The first layout from n GPUs up whose borderline GPUs all pass the twin."""
    top = max(layouts) + 2
    while n <= top:
        base = layouts.get(n)
        for factor in TIGHTEN:
            o = dataclasses.replace(opts, p_max=opts.p_max * factor)
            s = _Search(problem, items, o, tgt)
            if factor == 1.0 and base is not None:
                lay: Layout | None = base
            else:
                starts = s.starts(n, layouts.get(n + 1))
                if base is not None:
                    starts.append(base.owner)
                lay = s.balanced(n, starts)
            if lay is None or not lay.safe:
                continue
            servers = _servers(problem, items, lay)
            bad = confirmer.failed(servers)
            if not bad:
                return lay, servers
            notes.append(f"{n} GPU(s): the twin rejected GPU(s) {', '.join(map(str, bad))}"
                         + ("; re-balancing with a stricter margin" if factor > TIGHTEN[-1]
                            else ""))
        n += 1
        if n not in layouts:
            s = _Search(problem, items, opts, tgt)
            lay = s.balanced(n, s.starts(n, None))
            if lay is not None and lay.safe:
                layouts[n] = lay
    return None, []


def _tradeoff(s: _Search, layouts: dict[int, Layout], chosen: Layout,
              servers: Sequence[GpuAssignment], tgt: LatencyTarget) -> SloTradeoff:
    """The latency target at the chosen count, or the smallest count meeting it.

    The smallest count above the chosen one whose best start (one surrogate call per start)
    meets the target is found by galloping (n + 1, n + 2, n + 4, ...) then bisection, up to
    twice the GPUs: more GPUs give every start less load per GPU, so meeting the target is
    taken as monotone in the count. That count's predecessor is then balanced (stopping as
    soon as it meets the target), and the smaller of the two that meets it is reported.
    """
    n = chosen.gpus
    at = _worst(servers)
    if chosen.worst <= 1.0:
        return SloTradeoff(tgt.mean_ttft_ms, tgt.p99_ttft_ms, n, *at, n, *at)

    def start_meets(m: int) -> bool:
        start = s.best_start(m, s.starts(m, None))
        return start is not None and start.worst <= 1.0

    top = 2 * n + 1
    below, first, step = n, None, 1  # below: a count whose start misses the target
    while below < top:
        m = min(below + step, top)
        if start_meets(m):
            first = m
            break
        below, step = m, 2 * step
    if first is None:
        return SloTradeoff(tgt.mean_ttft_ms, tgt.p99_ttft_ms, n, *at, None)
    while first - below > 1:
        mid = (below + first) // 2
        below, first = (below, mid) if start_meets(mid) else (mid, first)
    found = None
    for m in sorted({max(n + 1, first - 1), first}):
        lay = layouts.get(m) or s.balanced(m, s.starts(m, None), stop_at=1.0)
        if lay is not None and lay.worst <= 1.0:
            found = lay
            break
    if found is None:  # the start met it, its balanced layout is no worse
        found = s.best_start(first, s.starts(first, None))
    assert found is not None
    more = _worst(_servers(s.problem, s.items, found))
    return SloTradeoff(tgt.mean_ttft_ms, tgt.p99_ttft_ms, n, *at, found.gpus, *more)


def _worst(servers: Sequence[GpuAssignment]) -> tuple[float, float]:
    """Highest predicted mean and p99 TTFT over the GPUs, ms."""
    return (max(g.predicted["mean_ttft_ms"] for g in servers),
            max(g.predicted.get("p99_ttft_ms", float("nan")) for g in servers))
