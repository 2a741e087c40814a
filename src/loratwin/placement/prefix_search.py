"""``loratwin``: our placement algorithm (fewest GPUs, each one safe by the surrogate and,
when borderline, by the twin).

Like the papers' greedy algorithm it fills one GPU at a time from an ordered list (ranks in
descending groups so that a GPU's slots are sized for one rank, rates in zig-zag so that each
GPU gets a balanced mix), but each GPU is sized by search, not by growing grid step by grid
step:

1. For the remaining list, the surrogate evaluates in one batch call every candidate prefix
   size k (a coarse geometric ladder, then every k between the last feasible and the first
   infeasible size) with a dense set of ``max_loras`` values m (powers of two, the papers'
   grid and k itself, all within the memory limit of the prefix's largest rank). A candidate
   is *safe* when the predicted starvation probability is below ``p_max`` (and the optional
   ITL/TTFT SLOs hold). The GPU takes the largest safe prefix, with the m of the lowest
   starvation probability (ties: lowest predicted ITL).
2. Mixing ranks costs slot memory (slots are sized for the largest rank): this is in the
   features and the memory limit, so the search sees it.
3. A GPU whose probability is borderline (at least ``p_confirm``) is simulated in the twin
   when a ``confirm`` callback is given; if the twin sees starvation or a memory error, the
   prefix shrinks by 10% and the GPU is re-sized and re-checked.
4. An adapter too hot for a GPU of its own is split into the fewest equal replicas that are
   safe alone (:func:`split_hot`); the router spreads its requests over them.
5. Several adapter orders are tried (zig-zag, descending rate) on the surrogate alone; the
   one with the fewest GPUs wins (ties: largest minimum headroom) and only that order is
   packed again with the twin confirmations of step 3. A confirmation asks for a margin over
   the starvation rule (``twin_margin``) so that the GPU also passes with other seeds.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from loratwin.errors import ConfigError
from loratwin.placement.paper_greedy import zigzag
from loratwin.placement.problem import PlacementProblem, PrefixStats, group_rows
from loratwin.placement.types import PAPER_GRID, GpuAssignment, Placement, Predictions
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

#: Largest number of adapters one GPU may serve (beyond the surrogate's training range).
MAX_SERVED = 1200


@dataclass(frozen=True)
class SearchOptions:
    """Knobs of :func:`place_loratwin`.

    Attributes
    ----------
    p_max:
        Largest predicted starvation probability a GPU may have.
    p_confirm:
        From this probability on, a GPU is checked in the twin (if ``confirm`` is given).
    itl_slo_ms, ttft_slo_ms, p99_ttft_slo_ms:
        Optional limits on the predicted mean ITL, mean TTFT and p99 TTFT of every GPU, in
        ms (a p99 limit needs a surrogate with a p99 model: NaN predictions fail it).
    twin_margin:
        A twin confirmation passes when the simulated throughput is at least
        (0.9 + twin_margin) x the offered load: the papers' starvation rule plus a margin
        for the seed-to-seed noise of one run, so that a confirmed GPU also passes
        ``--verify`` with other seeds. 0.01: over 10 GPUs near the edge (0.908-0.926 x
        offered in 3,600 s), two seeds differed by at most 0.006 x offered (see
        ``placement.api.CONFIRM_DURATION_S``).
    max_pieces:
        Most replicas an adapter too hot for one GPU is split into.
    """

    p_max: float = 0.2
    p_confirm: float = 0.02
    itl_slo_ms: float | None = None
    ttft_slo_ms: float | None = None
    p99_ttft_slo_ms: float | None = None
    twin_margin: float = 0.01
    max_pieces: int = 64

    def safety_fields(self) -> tuple[str, ...]:
        """The :class:`Predictions` fields :meth:`safe` reads."""
        slo = (("mean_itl_ms", self.itl_slo_ms), ("mean_ttft_ms", self.ttft_slo_ms),
               ("p99_ttft_ms", self.p99_ttft_slo_ms))
        return ("starvation_probability", *(f for f, v in slo if v is not None))

    def safe(self, pred: Predictions) -> np.ndarray:
        """(n,) bool: predicted starvation probability below ``p_max`` and the SLOs met."""
        ok = np.asarray(pred.starvation_probability) < self.p_max
        if self.itl_slo_ms is not None:
            ok &= np.asarray(pred.mean_itl_ms) <= self.itl_slo_ms
        if self.ttft_slo_ms is not None:
            ok &= np.asarray(pred.mean_ttft_ms) <= self.ttft_slo_ms
        if self.p99_ttft_slo_ms is not None:
            ok &= np.asarray(pred.p99_ttft_ms) <= self.p99_ttft_slo_ms
        return ok


def _lora_candidates(k: int, limit: int) -> list[int]:
    top = max(1, min(k, limit))
    c = {top, *(g for g in PAPER_GRID if g <= top)}
    c.update(1 << i for i in range(11) if (1 << i) <= top)
    c.update(int(top * f) for f in (0.75, 0.5, 0.375, 0.25) if int(top * f) >= 1)
    return sorted(c)


def _size_gpu(
    problem: PlacementProblem, seq: list[Adapter], opts: SearchOptions, k_cap: int
) -> tuple[int, int, Predictions, int]:
    """(k, max_loras, predictions, row) of the largest safe prefix of ``seq[:k_cap]``."""
    stats = PrefixStats(problem, seq[:k_cap])

    def evaluate(ks: list[int]) -> tuple[dict[int, tuple[int, int]], np.ndarray]:
        """Per safe k its best (max_loras, row), and the rows scored (only the fields of
        the choice are predicted)."""
        rows_k, rows_m = [], []
        for k in ks:
            for m in _lora_candidates(k, problem.max_loras_limit(stats.max_rank(k))):
                rows_k.append(k)
                rows_m.append(m)
        rk, rm = np.array(rows_k), np.array(rows_m)
        rows = stats.rows(rk, rm)
        pred = problem.evaluate(rows, {*opts.safety_fields(), "mean_itl_ms"})
        p = pred.starvation_probability
        ok = opts.safe(pred)
        best: dict[int, tuple[int, int]] = {}
        score = p + 1e-6 * pred.mean_itl_ms / 1e3
        for i in np.flatnonzero(ok):
            k = int(rk[i])
            if k not in best or score[i] < score[best[k][1]]:
                best[k] = (int(rm[i]), int(i))
        return best, rows

    def full(rows: np.ndarray, i: int) -> Predictions:
        """Every field of row i, as it was predicted in its batch (a batch of one row sums
        in another order than larger ones, so row i is sent twice unless it was alone)."""
        return problem.evaluate(rows[[i]] if len(rows) == 1 else rows[[i, i]])

    ladder = sorted({1, k_cap, *np.unique(np.geomspace(1, k_cap, 40).astype(int)).tolist(),
                     *(g for g in PAPER_GRID if g <= k_cap)})
    best, rows = evaluate(ladder)
    if not best:
        # nothing is safe, not even one adapter: it gets a GPU of its own
        _, rows1 = evaluate([1])
        return 1, 1, full(rows1, 0), 0
    k1 = max(best)
    above = [k for k in ladder if k > k1]
    if above:
        fine = list(range(k1 + 1, above[0]))
        if fine:
            best2, rows2 = evaluate(fine)
            if best2:
                k2 = max(best2)
                return k2, best2[k2][0], full(rows2, best2[k2][1]), 0
    return k1, best[k1][0], full(rows, best[k1][1]), 0


def split_hot(problem: PlacementProblem, opts: SearchOptions
              ) -> tuple[list[Adapter], list[str]]:
    """The adapters, with each one too hot for a GPU of its own split into replicas.

    An adapter whose predicted starvation alone (one slot) is not safe is replaced by ``k``
    pieces of ``rate / k`` (same id, rank and lengths), ``k`` the smallest count whose piece is
    safe alone (at most ``max_pieces``). The pieces go to different GPUs (two pieces together
    carry at least the rate of ``k - 1`` pieces, unsafe alone), and the requests of the
    adapter are spread over its replicas by the router, as in the LoRAServe and dLoRA
    baselines. An adapter still unsafe at ``1 / max_pieces`` of its rate is kept whole: its
    predicted starvation does not follow its load, so splitting is no remedy (seen with a
    surrogate trained on a small design, for a 0.002 req/s adapter of 12-token prompts, below
    its training envelope); the twin confirmation judges its GPU. One batch surrogate call
    for all adapters, one for the hot ones.
    """
    ads = list(problem.adapters)
    rows = group_rows(problem, [[a] for a in ads])
    hot = np.flatnonzero(~opts.safe(problem.evaluate(rows)))
    if hot.size == 0:
        return ads, []
    ks = np.arange(2, opts.max_pieces + 1)
    trial = np.repeat(rows[hot], len(ks), axis=0)
    trial[:, FEATURES.index("sum_rate_req_s")] /= np.tile(ks, len(hot))
    ok = opts.safe(problem.evaluate(trial)).reshape(len(hot), len(ks))
    pieces = {int(i): int(ks[r.argmax()]) if r.any() else 1
              for i, r in zip(hot, ok, strict=True)}
    out: list[Adapter] = []
    for i, a in enumerate(ads):
        k = pieces.get(i, 1)
        out += [dataclasses.replace(a, rate=a.rate / k)] * k
    notes = [f"{ads[i].id} ({ads[i].rate:.3g} req/s) is too hot for one GPU: split into "
             f"{k} replicas" if k > 1 else
             f"{ads[i].id} ({ads[i].rate:.3g} req/s) is predicted to starve alone even at "
             f"1/{opts.max_pieces} of its rate: not split (the prediction does not follow "
             "its load)"
             for i, k in pieces.items()]
    return out, notes


def _merge_pieces(adapters: list[Adapter]) -> list[Adapter]:
    """One entry per adapter id (pieces of a split adapter on one GPU add their rates)."""
    merged: dict[str, Adapter] = {}
    for a in adapters:
        b = merged.get(a.id)
        merged[a.id] = a if b is None else dataclasses.replace(b, rate=b.rate + a.rate)
    return list(merged.values())


def _pack(
    problem: PlacementProblem,
    order: list[Adapter],
    opts: SearchOptions,
    confirm: Callable[[GpuAssignment], bool] | None,
) -> tuple[list[GpuAssignment], list[str]]:
    remaining = list(order)
    servers: list[GpuAssignment] = []
    notes: list[str] = []
    while remaining:
        k_cap = min(len(remaining), MAX_SERVED)
        while True:
            k, m, pred, row = _size_gpu(problem, remaining, opts, k_cap)
            members = _merge_pieces(remaining[:k])
            gpu = (problem.assignment(remaining[:k], m, pred, row) if len(members) == k
                   else problem.assignment(members, min(m, len(members))))
            p = gpu.predicted["starvation_probability"]
            if confirm is None or p < opts.p_confirm or k == 1 or confirm(gpu):
                break
            notes.append(f"GPU {len(servers)}: the twin rejected {k} adapters; re-sizing")
            k_cap = max(1, int(k * 0.9))
        servers.append(gpu)
        remaining = remaining[k:]
    return servers, notes


def place_loratwin(
    problem: PlacementProblem,
    options: SearchOptions | None = None,
    *,
    confirm: Callable[[GpuAssignment], bool] | None = None,
    n_gpus: int | None = None,
) -> Placement:
    """Place the adapters on the fewest GPUs (see the module docstring).

    Parameters
    ----------
    problem:
        Adapters, profile and surrogate.
    options:
        Safety margin and SLOs.
    confirm:
        ``gpu -> healthy?`` check of borderline GPUs (typically a twin run).
    n_gpus:
        GPUs available.

    Raises
    ------
    ConfigError
        The workload needs more than ``n_gpus`` GPUs.
    """
    t0 = time.perf_counter()
    opts = options or SearchOptions()
    adapters, split_notes = split_hot(problem, opts)
    groups = sorted({a.rank for a in adapters}, reverse=True)
    orders = {
        "zig-zag": [a for r in groups for a in zigzag([x for x in adapters if x.rank == r])],
        "descending rate": [a for r in groups for a in sorted(
            (x for x in adapters if x.rank == r), key=lambda x: -x.rate)],
    }
    # orders are compared on the surrogate alone; only the winner pays for twin confirmations
    packed = {name: _pack(problem, order, opts, None)[0] for name, order in orders.items()}
    name = min(packed, key=lambda n: (len(packed[n]), -_min_headroom(packed[n])))
    servers, notes = packed[name], []
    if confirm is not None:
        servers, notes = _pack(problem, orders[name], opts, confirm)
    if n_gpus is not None and len(servers) > n_gpus:
        raise ConfigError(
            f"the workload needs {len(servers)} GPUs, only {n_gpus} available", field="gpus"
        )
    return Placement("loratwin", tuple(servers), time.perf_counter() - t0,
                     (f"adapter order: {name}", *split_notes, *notes))


def _min_headroom(servers: list[GpuAssignment]) -> float:
    return min(g.predicted["headroom"] for g in servers)
