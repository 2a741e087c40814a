"""Re-planning a deployed placement for a changed workload with few adapter moves.

Adapters are added and retired and their rates drift; placing the new workload from scratch
reshuffles most adapters, and every move is a cold adapter load and a cache miss on the
receiving server. :func:`replan` repairs the deployed placement instead, under the safety
rules of ``loratwin place`` (:class:`~loratwin.placement.prefix_search.SearchOptions`: the
surrogate's starvation probability below ``p_max`` and the SLOs, borderline GPUs confirmed
in the twin with ``twin_margin``):

1. **Carry over.** Every deployed GPU keeps the adapters that are still in the workload, at
   their new rates (an adapter split over several GPUs keeps its replicas; each carries the
   same fraction of its traffic as before). Removed adapters are dropped; GPUs left empty are
   freed. An adapter now too hot for the replicas it has gets more
   (:func:`~loratwin.placement.prefix_search.split_hot`'s rule).
2. **Check.** Each GPU is checked at its deployed flags; if unsafe there, with re-sized
   flags (``max_loras`` chosen as :func:`~loratwin.placement.api.resize_loras` does: a
   server restart, but no adapter moves).
3. **Shed.** An unsafe GPU gives up its hottest adapters (largest offered tok/s first: the
   fewest moves that remove the excess load) until the rest is safe. When the fleet splits
   adapters over several GPUs, steps 3-5 are also run shedding the split replicas last
   (shedding a replica from each of its GPUs opens a new GPU per replica); the repair with
   fewer moves, then fewer GPUs, is kept.
4. **Insert.** New adapters, new replicas and shed adapters are inserted, hottest first,
   into the GPU that stays safe with the most room (lowest predicted starvation
   probability, then least offered load), GPUs that need no restart first (a server that
   is restarted anyway gets ``max_cpu_loras`` = :data:`CPU_SLACK` x its adapters, room for
   later additions); what fits nowhere opens new GPUs.
5. **Cap.** While the fleet has more GPUs than a fresh placement needs plus the allowance
   (``extra_gpus``), the GPU with the fewest adapters whose adapters all fit elsewhere is
   drained (before step 4, so that nothing new lands on it, and again after it). With a
   move cost (``move_cost`` GPUs per move), further GPUs are drained while a drain's moves
   cost less than the GPU it frees.
6. **Fallback.** The fresh placement with its GPUs matched to the deployed ones (most
   adapters in common, :func:`match_gpus`) is also a candidate; the plan with fewer moves
   wins (it is the only one when the repair cannot meet the cap).

A placement already safe for the new workload and within the cap is returned unchanged (no
moves, no restarts). A *move* is an adapter kept in the workload that is loaded on a GPU that
did not serve it before (one per GPU for a split adapter); adding a new adapter is not a move.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from loratwin.errors import ConfigError
from loratwin.placement.baselines import best_loras, evaluate_rows
from loratwin.placement.deployed import DeployedPlacement, DeployedServer
from loratwin.placement.prefix_search import SearchOptions, split_hot
from loratwin.placement.problem import PlacementProblem, group_rows
from loratwin.placement.types import GpuAssignment, Placement
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

#: The twin confirmation ``place`` uses (:func:`loratwin.placement.api.twin_confirm`): a
#: batch of GPUs in, one healthy flag per GPU out. Re-planning asks about one GPU at a time.
Confirm = Callable[[Sequence[GpuAssignment]], list[bool]]

_I_RANK = FEATURES.index("max_rank")
#: ``max_cpu_loras`` of a server re-planning (re)starts, as a multiple of its adapters.
CPU_SLACK = 1.25
#: Relative tie of two starvation probabilities when choosing where to insert an adapter.
_P_TIE = 0.005


@dataclass(frozen=True)
class Gpu:
    """A GPU during re-planning: its adapters (rate pieces served here) and vLLM flags.

    ``deployed`` holds the flags the GPU runs with today (``None`` for a new GPU);
    ``max_loras`` and ``max_lora_rank`` are the flags planned.
    """

    name: str
    pieces: tuple[Adapter, ...]
    max_loras: int
    max_lora_rank: int
    max_cpu_loras: int
    deployed: tuple[int, int, int] | None = None

    @property
    def ids(self) -> set[str]:
        return {a.id for a in self.pieces}

    @property
    def flags_changed(self) -> bool:
        """Whether the server must be restarted with other flags."""
        return self.deployed is not None and self.deployed != (
            self.max_loras, self.max_lora_rank, self.max_cpu_loras)


@dataclass(frozen=True)
class Move:
    """One adapter loaded on a GPU that did not serve it before."""

    adapter: str
    source: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class ReplanResult:
    """The outcome of :func:`replan`.

    Attributes
    ----------
    placement:
        The new placement (``placement.servers[i]`` is the GPU named ``names[i]``).
    names:
        GPU names: deployed GPUs keep theirs, new ones get the next free ``gpu-<k>``.
    strategy:
        ``unchanged``, ``repair`` or ``fresh-remapped`` (see the module docstring).
    moves, added, removed:
        Adapter moves, ids new to the workload, ids no longer in it.
    new_gpus, freed_gpus, restarted_gpus:
        Names of GPUs started, stopped, and restarted with other flags.
    before:
        Per deployed GPU name, the surrogate's view of it under the new workload (keys of
        ``GpuAssignment.predicted``), i.e. what happens if nothing is changed.
    fresh_gpus, cap:
        GPUs of a fresh placement and the most GPUs allowed (``fresh_gpus + extra_gpus``).
    notes:
        What was done, in order.
    """

    placement: Placement
    names: tuple[str, ...]
    strategy: str
    moves: tuple[Move, ...]
    added: tuple[str, ...]
    removed: tuple[str, ...]
    new_gpus: tuple[str, ...]
    freed_gpus: tuple[str, ...]
    restarted_gpus: tuple[str, ...]
    before: dict[str, dict[str, float]]
    fresh_gpus: int
    cap: int
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- evaluation


def _rows(problem: PlacementProblem, gpus: Sequence[tuple[Sequence[Adapter], int, int]]
          ) -> np.ndarray:
    """Feature rows of (pieces, max_loras, max_lora_rank) triples: the slot rank counts as
    the GPU's largest rank (slots are sized for it)."""
    rows = group_rows(problem, [g[0] for g in gpus])
    rows[:, _I_RANK] = np.maximum(rows[:, _I_RANK], [g[2] for g in gpus])
    return rows


@dataclass(frozen=True)
class _Verdict:
    safe: bool
    max_loras: int
    max_lora_rank: int
    p: float
    offered: float


class _Judge:
    """Safety of candidate GPUs by the rules of ``place`` (surrogate, then twin)."""

    def __init__(self, problem: PlacementProblem, options: SearchOptions,
                 confirm: Confirm | None) -> None:
        self.problem = problem
        self.options = options
        self.confirm = confirm
        self.twin_runs = 0

    def _fits(self, pieces: Sequence[Adapter], m: int, rank: int) -> bool:
        return (rank >= max(a.rank for a in pieces)
                and m <= self.problem.max_loras_limit(rank))

    def surrogate(self, cands: Sequence[tuple[Sequence[Adapter], int, int]],
                  resize: bool) -> list[_Verdict]:
        """Verdicts at the given flags, or (``resize``) at the best ``max_loras`` with the
        slot rank of the largest adapter. One surrogate call."""
        if not cands:
            return []
        if resize:
            rows = group_rows(self.problem, [c[0] for c in cands])
            ev = best_loras(self.problem, rows, safe=self.options.safe)
            ranks = [self.problem.slot_rank(max(a.rank for a in c[0])) for c in cands]
            fits = [True] * len(cands)
        else:
            rows = _rows(self.problem, cands)
            ev = evaluate_rows(self.problem, rows, np.array([c[1] for c in cands]))
            ranks = [c[2] for c in cands]
            fits = [self._fits(*c) for c in cands]
        ok = self.options.safe(ev.pred)
        p = np.asarray(ev.pred.starvation_probability, float)
        return [_Verdict(bool(ok[i] and fits[i]), int(ev.loras[i]), int(ranks[i]), float(p[i]),
                         self.problem.offered_tok_s(c[0]))
                for i, c in enumerate(cands)]

    def twin_ok(self, pieces: Sequence[Adapter], v: _Verdict) -> bool:
        """A surrogate-safe GPU also passes the twin when borderline (``p >= p_confirm``)."""
        if self.confirm is None or v.p < self.options.p_confirm:
            return True
        self.twin_runs += 1
        gpu = assign(self.problem, Gpu("candidate", tuple(pieces), v.max_loras,
                                       v.max_lora_rank, v.max_loras))
        return bool(self.confirm([gpu])[0])

    def check(self, gpu: Gpu) -> Gpu | None:
        """The GPU at its flags if safe, else with re-sized flags if safe, else ``None``."""
        keep = self.surrogate([(gpu.pieces, gpu.max_loras, gpu.max_lora_rank)], False)[0]
        if keep.safe and self.twin_ok(gpu.pieces, keep):
            return _with_flags(gpu, keep)
        new = self.surrogate([(gpu.pieces, gpu.max_loras, gpu.max_lora_rank)], True)[0]
        if new.safe and (new.max_loras, new.max_lora_rank) != (keep.max_loras,
                                                               keep.max_lora_rank) \
                and self.twin_ok(gpu.pieces, new):
            return _with_flags(gpu, new)
        return None


def assign(problem: PlacementProblem, gpu: Gpu) -> GpuAssignment:
    """The GPU as a :class:`GpuAssignment` with the surrogate's view at its flags (the slot
    rank counting as its largest rank)."""
    rows = _rows(problem, [(gpu.pieces, gpu.max_loras, gpu.max_lora_rank)])
    ev = evaluate_rows(problem, rows, np.array([gpu.max_loras]))
    a = problem.assignment(list(gpu.pieces), gpu.max_loras, ev.pred, 0)
    return dataclasses.replace(a, max_lora_rank=gpu.max_lora_rank,
                               max_cpu_loras=max(gpu.max_cpu_loras, len(gpu.pieces)))


def _with_flags(gpu: Gpu, v: _Verdict) -> Gpu:
    """The GPU at the verdict's flags. ``max_cpu_loras`` stays as deployed while the server
    keeps its flags and its adapters fit; a server that is (re)started gets
    :data:`CPU_SLACK` x its adapters, room for later additions without a restart."""
    n = len(gpu.pieces)
    if gpu.deployed is not None and (v.max_loras, v.max_lora_rank) == gpu.deployed[:2] \
            and n <= gpu.deployed[2]:
        cpu = gpu.deployed[2]
    elif (gpu.deployed is None or gpu.flags_changed) and gpu.max_cpu_loras >= n:
        cpu = gpu.max_cpu_loras
    else:
        cpu = math.ceil(CPU_SLACK * n)
    return dataclasses.replace(gpu, max_loras=v.max_loras, max_lora_rank=v.max_lora_rank,
                               max_cpu_loras=max(cpu, v.max_loras, n))


# ----------------------------------------------------------------------------- steps


def _carry_over(problem: PlacementProblem, deployed: DeployedPlacement, options: SearchOptions
                ) -> tuple[list[Gpu], list[Adapter], list[str]]:
    """Deployed GPUs with the new rates, and the pieces without a GPU (new adapters and new
    replicas of adapters now too hot for the replicas they have)."""
    by_id = {a.id: a for a in problem.adapters}
    split, _ = split_hot(problem, options)
    needed: dict[str, int] = {}
    for a in split:
        needed[a.id] = needed.get(a.id, 0) + 1
    have = deployed.gpus_of()
    share_sum: dict[str, float] = {}
    for s in deployed.servers:
        for i, sh in zip(s.adapters, s.shares, strict=True):
            share_sum[i] = share_sum.get(i, 0.0) + sh
    notes: list[str] = []
    gpus: list[Gpu] = []
    for s in deployed.servers:
        pieces = []
        for i, sh in zip(s.adapters, s.shares, strict=True):
            a = by_id.get(i)
            if a is None:
                continue
            k = max(needed[i], len(have[i]))
            frac = sh / share_sum[i] if needed[i] <= len(have[i]) else 1.0 / k
            pieces.append(dataclasses.replace(a, rate=a.rate * frac))
        if pieces:
            gpus.append(Gpu(s.name, tuple(pieces), s.max_loras, s.max_lora_rank,
                            s.max_cpu_loras, (s.max_loras, s.max_lora_rank, s.max_cpu_loras)))
        else:
            notes.append(f"{s.name}: every adapter removed, freed")
    homeless: list[Adapter] = []
    for a in problem.adapters:
        k, h = needed[a.id], len(have.get(a.id, ()))
        if k > h:
            homeless += [dataclasses.replace(a, rate=a.rate / k)] * (k - h)
            if h:
                notes.append(f"{a.id}: {h} -> {k} replicas (too hot for {h})")
    return gpus, homeless, notes


def _shed(judge: _Judge, gpu: Gpu, keep: frozenset[str]) -> tuple[Gpu, list[Adapter]]:
    """The GPU keeping its coolest adapters (largest safe set), and the hottest ones shed.

    Pieces of the adapters in ``keep`` (replicas of split adapters, when the caller asks)
    are shed last."""
    p = judge.problem
    order = sorted(gpu.pieces, key=lambda a: (a.id not in keep, p.offered_tok_s([a])))
    keep_n = len(order)
    while keep_n > 1:
        sets = [order[:k] for k in range(1, keep_n)]
        for resize in (False, True):
            verdicts = judge.surrogate([(s, gpu.max_loras, gpu.max_lora_rank) for s in sets],
                                       resize)
            good = [k for k, v in enumerate(verdicts) if v.safe]
            if good:
                break
        if not good:
            keep_n = 1
            break
        k = good[-1]
        if judge.twin_ok(sets[k], verdicts[k]):
            kept = dataclasses.replace(gpu, pieces=tuple(sets[k]))
            return _with_flags(kept, verdicts[k]), order[k + 1:]
        keep_n = max(1, int((k + 1) * 0.9))
    kept = dataclasses.replace(gpu, pieces=tuple(order[:1]))
    one = judge.surrogate([(kept.pieces, gpu.max_loras, gpu.max_lora_rank)], True)[0]
    return _with_flags(kept, one), order[1:]


def _insert(judge: _Judge, gpus: list[Gpu], piece: Adapter, exclude: set[str]) -> int | None:
    """Index of the GPU ``piece`` joined (``gpus`` updated in place), or ``None``.

    Candidates: every GPU not serving the adapter yet, at its flags and with re-sized flags.
    Preferred: no new restart, then the lowest predicted starvation probability (within
    :data:`_P_TIE`, the least offered load)."""
    cands = [i for i, g in enumerate(gpus) if g.name not in exclude and piece.id not in g.ids]
    trial = [((*gpus[i].pieces, piece), gpus[i].max_loras, gpus[i].max_lora_rank)
             for i in cands]
    options = []
    for resize in (False, True):
        for j, v in enumerate(judge.surrogate(trial, resize)):
            if v.safe:
                g = _with_flags(dataclasses.replace(gpus[cands[j]], pieces=trial[j][0]), v)
                restart = g.flags_changed and not gpus[cands[j]].flags_changed
                options.append((restart, v.p, v.offered, j, g, v))
    floor = {r: min(o[1] for o in options if o[0] == r) for r in {o[0] for o in options}}
    options.sort(key=lambda o: (o[0], o[1] > floor[o[0]] + _P_TIE, o[2], o[1]))
    for _, _, _, j, g, v in options:
        if judge.twin_ok(trial[j][0], v):
            gpus[cands[j]] = g
            return cands[j]
    return None


def _place_homeless(judge: _Judge, gpus: list[Gpu], homeless: list[Adapter],
                    new_name: Callable[[], str]) -> list[str]:
    """Insert the pieces hottest first; what fits nowhere opens new GPUs."""
    p = judge.problem
    notes: list[str] = []
    for piece in sorted(homeless, key=lambda a: -p.offered_tok_s([a])):
        if _insert(judge, gpus, piece, set()) is not None:
            continue
        v = judge.surrogate([([piece], 1, piece.rank)], True)[0]
        gpu = Gpu(new_name(), (piece,), v.max_loras, v.max_lora_rank, v.max_loras)
        gpus.append(_with_flags(gpu, v))
        notes.append(f"{gpu.name}: new GPU for {piece.id}")
    return notes


def _drain(judge: _Judge, gpus: list[Gpu], victim: int) -> list[Gpu] | None:
    """The fleet without GPU ``victim``, its adapters inserted elsewhere, or ``None``."""
    p = judge.problem
    rest = [g for i, g in enumerate(gpus) if i != victim]
    for piece in sorted(gpus[victim].pieces, key=lambda a: -p.offered_tok_s([a])):
        if _insert(judge, rest, piece, set()) is None:
            return None
    return rest


def _drain_order(gpus: list[Gpu]) -> list[int]:
    return sorted(range(len(gpus)), key=lambda i: (len(gpus[i].pieces),
                                                   sum(a.rate for a in gpus[i].pieces)))


def _consolidate(judge: _Judge, gpus: list[Gpu], cap: int, move_cost: float | None
                 ) -> tuple[list[Gpu], list[str], bool]:
    """Drain GPUs down to ``cap`` (and further while worth ``move_cost``); returns the fleet,
    notes and whether the cap is met."""
    notes: list[str] = []
    while True:
        over = len(gpus) > cap
        if not over and (move_cost is None or len(gpus) <= 1):
            return gpus, notes, True
        drained = None
        for i in _drain_order(gpus):
            if not over and len(gpus[i].pieces) * (move_cost or 0.0) >= 1.0:
                break
            drained = _drain(judge, gpus, i)
            if drained is not None:
                notes.append(f"{gpus[i].name}: drained (its {len(gpus[i].pieces)} "
                             "adapter(s) placed elsewhere), freed")
                break
        if drained is None:
            return gpus, notes, not over
        gpus = drained


# ----------------------------------------------------------------------------- accounting


def match_gpus(old: Sequence[set[str]], new: Sequence[set[str]]) -> list[int | None]:
    """For each new GPU, the index of the old GPU it takes over (most adapter ids in common,
    a maximum-weight matching by ``scipy.optimize.linear_sum_assignment``), or ``None``."""
    if not old or not new:
        return [None] * len(new)
    w = np.array([[len(n & o) for o in old] for n in new], float)
    rows, cols = linear_sum_assignment(-w)
    out: list[int | None] = [None] * len(new)
    for r, c in zip(rows, cols, strict=True):
        if w[r, c] > 0:
            out[r] = int(c)
    return out


def count_moves(before: dict[str, Sequence[str]], after: dict[str, Sequence[str]]
                ) -> list[Move]:
    """Moves between two placements given as adapter id -> GPU names (ids in both only)."""
    moves = []
    for a, targets in after.items():
        src = before.get(a)
        if src is None:
            continue
        moves += [Move(a, tuple(src), t) for t in targets if t not in src]
    return moves


def _fresh_as_gpus(fresh: Placement, deployed: DeployedPlacement,
                   new_name: Callable[[], str]) -> list[Gpu]:
    match = match_gpus([set(s.adapters) for s in deployed.servers],
                       [{a.id for a in g.adapters} for g in fresh.servers])
    out = []
    for g, m in zip(fresh.servers, match, strict=True):
        dep: DeployedServer | None = deployed.servers[m] if m is not None else None
        out.append(Gpu(dep.name if dep else new_name(), g.adapters, g.max_loras,
                       g.max_lora_rank, g.max_cpu_loras,
                       (dep.max_loras, dep.max_lora_rank, dep.max_cpu_loras) if dep else None))
    return out


def _where(gpus: Sequence[Gpu]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for g in gpus:
        for a in g.pieces:
            out.setdefault(a.id, []).append(g.name)
    return out


def _namer(taken: set[str]) -> Callable[[], str]:
    used = set(taken)

    def new_name() -> str:
        k = 0
        while f"gpu-{k}" in used:
            k += 1
        used.add(f"gpu-{k}")
        return f"gpu-{k}"
    return new_name


def _before(judge: _Judge, gpus: Sequence[Gpu]) -> dict[str, dict[str, float]]:
    return {g.name: {**assign(judge.problem, g).predicted, "adapters": float(len(g.pieces))}
            for g in gpus}


# ----------------------------------------------------------------------------- entry point


def replan(
    problem: PlacementProblem,
    deployed: DeployedPlacement,
    fresh: Placement,
    *,
    options: SearchOptions | None = None,
    confirm: Confirm | None = None,
    extra_gpus: int = 0,
    max_moves: int | None = None,
    move_cost: float | None = None,
) -> ReplanResult:
    """Re-plan ``deployed`` for the workload of ``problem`` (see the module docstring).

    Parameters
    ----------
    problem:
        The new workload (adapters with their new rates) on the deployed model's profile.
    deployed:
        The running placement (checked against the profile by the caller,
        :func:`~loratwin.placement.deployed.check_model`).
    fresh:
        A fresh placement of the new workload by the same rules (``loratwin place``): its
        GPU count plus ``extra_gpus`` caps the result, and it is the fallback.
    options, confirm:
        Safety rules and the twin confirmation of borderline GPUs, as for ``place``.
    extra_gpus:
        GPUs allowed above the fresh placement's count (>= 0).
    max_moves:
        Most adapter moves allowed.
    move_cost:
        Cost of one adapter move in GPUs: GPUs are drained below the cap while a drain costs
        fewer moves than ``1 / move_cost``.

    Raises
    ------
    ConfigError
        Invalid allowance, budget or cost; no deployed adapter in the workload; or the
        plan needs more than ``max_moves`` moves.
    """
    opts = options or SearchOptions()
    if extra_gpus < 0:
        raise ConfigError(f"must be >= 0 (got {extra_gpus})", field="extra_gpus")
    if max_moves is not None and max_moves < 0:
        raise ConfigError(f"must be >= 0 (got {max_moves})", field="max_moves")
    if move_cost is not None and not move_cost > 0:
        raise ConfigError(f"must be > 0 (got {move_cost})", field="move_cost")
    if max_moves is not None and move_cost is not None:
        raise ConfigError("give --max-moves or --move-cost, not both", field="move_cost")
    ids = {a.id for a in problem.adapters}
    old_ids = deployed.adapter_ids
    if not ids & old_ids:
        raise ConfigError(f"no adapter of the workload is served by {deployed.source}: is it "
                          "the placement of this fleet?", field="adapters")
    cap = fresh.gpus + extra_gpus
    split_ids = frozenset(i for i, where in deployed.gpus_of().items() if len(where) > 1)
    judge = _Judge(problem, opts, confirm)
    gpus, homeless, notes = _carry_over(problem, deployed, opts)
    before = _before(judge, gpus)
    old_where = deployed.gpus_of()
    # two ways to shed from an unsafe GPU: its hottest adapters (fewest moves), or, when
    # the fleet splits adapters, everything but the split replicas (no replica moves and
    # no new GPU per replica); the plan with fewer moves, then fewer GPUs, is kept
    repairs = []
    for keep in ((frozenset(), split_ids) if split_ids else (frozenset(),)):
        fleet, more, within = _repair(judge, deployed, gpus, list(homeless), cap, move_cost,
                                      keep)
        repairs.append((len(count_moves(old_where, _where(fleet))), len(fleet), fleet,
                        more, within))
    _, _, repaired, more, within = min(repairs, key=lambda r: (not r[4], r[0], r[1]))
    notes += more

    plans = {"repair": repaired} if within else {}
    fresh_gpus = _fresh_as_gpus(fresh, deployed, _namer({s.name for s in deployed.servers}))
    plans["fresh-remapped"] = fresh_gpus
    counted = {k: count_moves(old_where, _where(v)) for k, v in plans.items()}
    strategy = min(plans, key=lambda k: (len(counted[k]), len(plans[k]), k != "repair"))
    if not within:
        notes.append(f"the repaired fleet needs more than {cap} GPU(s): using the fresh "
                     "placement, re-mapped onto the deployed GPUs")
    final, moves = plans[strategy], counted[strategy]
    if _same(final, deployed):
        strategy = "unchanged"
    if max_moves is not None and len(moves) > max_moves:
        raise ConfigError(f"a safe placement on at most {cap} GPU(s) needs {len(moves)} "
                          f"adapter moves, more than {max_moves} (raise --max-moves or "
                          "--extra-gpus)", field="max_moves")
    return _result(problem, deployed, final, strategy, moves, before, fresh.gpus, cap,
                   notes, judge.twin_runs)


def _repair(judge: _Judge, deployed: DeployedPlacement, gpus: list[Gpu],
            homeless: list[Adapter], cap: int, move_cost: float | None,
            keep_ids: frozenset[str]) -> tuple[list[Gpu], list[str], bool]:
    """Steps 2-5 on the carried-over fleet: the repaired GPUs, notes, whether within ``cap``
    (an unsafe GPU sheds the pieces of ``keep_ids`` last)."""
    new_name = _namer({s.name for s in deployed.servers})
    notes: list[str] = []
    checked: list[Gpu] = []
    for g in gpus:
        ok = judge.check(g)
        if ok is not None:
            checked.append(ok)
            continue
        kept, shed = _shed(judge, g, keep_ids)
        notes.append(f"{g.name}: unsafe at the new rates, {len(shed)} adapter(s) shed")
        checked.append(kept)
        homeless += shed
    # drain before inserting, so that nothing new lands on a GPU that is then emptied
    checked, drain_notes, _ = _consolidate(judge, checked, cap, None)
    notes += drain_notes
    notes += _place_homeless(judge, checked, homeless, new_name)
    repaired, drain_notes, within = _consolidate(judge, checked, cap, move_cost)
    return repaired, notes + drain_notes, within


def _same(gpus: Sequence[Gpu], deployed: DeployedPlacement) -> bool:
    """Whether the plan is the deployed placement (same GPUs, adapters and flags)."""
    now = {g.name: (g.ids, g.max_loras, g.max_lora_rank, g.max_cpu_loras) for g in gpus}
    then = {s.name: (set(s.adapters), s.max_loras, s.max_lora_rank, s.max_cpu_loras)
            for s in deployed.servers}
    return now == then


def _result(problem: PlacementProblem, deployed: DeployedPlacement, final: list[Gpu],
            strategy: str, moves: list[Move], before: dict[str, dict[str, float]],
            fresh_gpus: int, cap: int, notes: list[str], twin_runs: int) -> ReplanResult:
    servers = [assign(problem, g) for g in final]
    names = tuple(g.name for g in final)
    old_names = [s.name for s in deployed.servers]
    ids = {a.id for a in problem.adapters}
    placement = Placement("loratwin-replan", tuple(servers), 0.0,
                          (f"replan: {strategy}", *notes,
                           f"twin confirmations during re-planning: {twin_runs}"))
    return ReplanResult(
        placement=placement, names=names, strategy=strategy, moves=tuple(moves),
        added=tuple(sorted(ids - deployed.adapter_ids)),
        removed=tuple(sorted(deployed.adapter_ids - ids)),
        new_gpus=tuple(n for n in names if n not in old_names),
        freed_gpus=tuple(n for n in old_names if n not in names),
        restarted_gpus=tuple(g.name for g in final if g.flags_changed),
        before=before, fresh_gpus=fresh_gpus, cap=cap, notes=tuple(notes),
    )
