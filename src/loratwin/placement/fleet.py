"""Mixed GPU types: the adapters on the fleet of least cost per hour.

Each GPU type has a price (per GPU-hour), an optional most-GPUs count, and its own
profile (measured, collected or prior) with a surrogate; a GPU of a type is safe by the
rules of ``loratwin place`` under that type's surrogate and, when borderline, that type's
twin. :func:`place_fleet` returns the cheapest of these candidates:

* every **single-type fleet**: ``loratwin place`` with that type's profile (the baseline;
  a type whose fleet would exceed its most-GPUs count is not a candidate);
* the **cost-greedy mixed fleet** (:func:`pack_mixed`): the adapters in the order of
  ``loratwin`` (ranks in descending groups, rates zig-zag, or descending rates), one GPU at a
  time; for each type with GPUs left, the largest safe prefix of the remaining adapters is
  found (:func:`largest_safe_prefix`), and the GPU takes the type of most offered load
  (tok/s) per unit of price, except that when some type can take *all* the rest, the
  cheapest such type closes the fleet. Borderline GPUs are confirmed in the type's twin and
  shrink by 10% when the twin sees them starve.

So the result is never more expensive than the cheapest single-type fleet, and cheaper when
mixing pays (for example a faster type for the bulk and a cheaper one for the tail).
Adapters too hot for one GPU of the fastest type are split first
(:func:`~loratwin.placement.prefix_search.split_hot` on that type); a type on which a piece is
unsafe alone cannot take it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loratwin.errors import ConfigError
from loratwin.placement.api import CONFIRM_DURATION_S, place, twin_confirm
from loratwin.placement.baselines import best_loras
from loratwin.placement.fewest import ConfirmMany
from loratwin.placement.paper_greedy import zigzag
from loratwin.placement.prefix_search import MAX_SERVED, SearchOptions, split_hot
from loratwin.placement.problem import PlacementProblem, PrefixStats
from loratwin.placement.types import PAPER_GRID, GpuAssignment, Placement
from loratwin.workload.types import Adapter


@dataclass(frozen=True)
class GpuType:
    """One GPU type of a fleet.

    Attributes
    ----------
    name:
        Type name as the user gave it (e.g. ``H100``).
    cost_per_hour:
        Price of one GPU of this type per hour (any currency, the same for every type).
    max_count:
        Most GPUs of this type available (``None``: unlimited).
    problem:
        The workload on this type's profile and surrogate.
    confirm_all:
        Confirm every GPU of this type in its twin, not only borderline ones (for types
        whose predictor is an estimate, e.g.
        :class:`~loratwin.placement.transfer.CapacityTransferPredictor`).
    """

    name: str
    cost_per_hour: float
    max_count: int | None
    problem: PlacementProblem
    confirm_all: bool = False

    @property
    def estimated(self) -> bool:
        """Whether the type's profile is a prior (unmeasured) one."""
        return self.problem.profile.profile_kind == "prior"


@dataclass(frozen=True)
class FleetPlacement:
    """The fleet of least cost, and the candidates it was chosen from.

    Attributes
    ----------
    placement:
        Servers in fleet order; ``types[i]`` is the GPU type of ``placement.servers[i]``.
    types:
        GPU type name of every server.
    cost_per_hour:
        Sum of the servers' prices.
    candidates:
        Candidate name (``single:<type>``, ``mixed:<order>``) -> cost per hour (``inf`` when
        the candidate is infeasible, e.g. over a type's most-GPUs count).
    chosen:
        The candidate returned.
    """

    placement: Placement
    types: tuple[str, ...]
    cost_per_hour: float
    candidates: dict[str, float]
    chosen: str

    def counts(self) -> dict[str, int]:
        """GPUs per type."""
        out: dict[str, int] = {}
        for t in self.types:
            out[t] = out.get(t, 0) + 1
        return out


def parse_gpu_type(text: str) -> tuple[str, float, int | None]:
    """``"H100=4.5"`` or ``"H200=6.1:8"`` -> (name, cost per hour, most GPUs or ``None``).

    Raises
    ------
    ConfigError
        Not ``TYPE=COST_PER_HOUR[:MAX_COUNT]`` with a cost > 0 and a count >= 1.
    """
    name, sep, rest = text.partition("=")
    cost_s, _, count_s = rest.partition(":")
    try:
        cost = float(cost_s)
        count = int(count_s) if count_s else None
    except ValueError:
        cost, count = math.nan, None
    if not sep or not name.strip() or not (math.isfinite(cost) and cost > 0) or (
            count is not None and count < 1):
        raise ConfigError(f"expected TYPE=COST_PER_HOUR[:MAX_COUNT] with a cost > 0 and a "
                          f"count >= 1 (got {text!r})", field="gpu_types")
    return name.strip(), cost, count


# ----------------------------------------------------------------------------- sizing


def _loras(k: int, limit: int) -> list[int]:
    top = max(1, min(k, limit))
    c = {top, *(g for g in PAPER_GRID if g <= top)}
    c.update(1 << i for i in range(11) if (1 << i) <= top)
    return sorted(c)


def largest_safe_prefix(problem: PlacementProblem, seq: Sequence[Adapter],
                        opts: SearchOptions, k_cap: int) -> tuple[int, int]:
    """(k, max_loras) of the largest prefix ``seq[:k]`` (k <= ``k_cap``) that the surrogate
    deems safe with some ``max_loras`` (powers of two, the papers' grid and k, within the
    memory limit), or (0, 0) if not even one adapter is.

    A geometric ladder of k first, then every k between the last safe and the next rung;
    :func:`~loratwin.placement.baselines.best_loras` chooses ``max_loras`` per k (one
    surrogate call per stage).
    """
    stats = PrefixStats(problem, list(seq[:k_cap]))

    def safe_ks(ks: list[int]) -> dict[int, int]:
        rows = stats.rows(np.array(ks), np.ones(len(ks)))
        ev = best_loras(problem, rows, safe=opts.safe)
        ok = opts.safe(ev.pred)
        return {k: int(m) for k, m, good in zip(ks, ev.loras, ok, strict=True) if good}

    ladder = sorted({1, k_cap, *np.unique(np.geomspace(1, k_cap, 40).astype(int)).tolist()})
    good = safe_ks(ladder)
    if not good:
        return 0, 0
    k1 = max(good)
    above = [k for k in ladder if k > k1]
    if above and above[0] > k1 + 1:
        fine = safe_ks(list(range(k1 + 1, above[0])))
        if fine:
            k2 = max(fine)
            return k2, fine[k2]
    return k1, good[k1]


def _merge(pieces: Sequence[Adapter]) -> list[Adapter]:
    out: dict[str, Adapter] = {}
    for a in pieces:
        b = out.get(a.id)
        out[a.id] = a if b is None else dataclasses.replace(b, rate=b.rate + a.rate)
    return list(out.values())


def _sized_gpu(t: GpuType, remaining: list[Adapter], opts: SearchOptions,
               confirm: ConfirmMany | None) -> tuple[int, GpuAssignment | None]:
    """The type's largest safe first GPU of ``remaining`` (twin-confirmed when borderline)."""
    k_cap = min(len(remaining), MAX_SERVED)
    while True:
        k, m = largest_safe_prefix(t.problem, remaining, opts, k_cap)
        if k == 0:
            return 0, None
        members = _merge(remaining[:k])
        gpu = t.problem.assignment(members, min(m, len(members)))
        p = gpu.predicted["starvation_probability"]
        if confirm is None or (p < opts.p_confirm and not t.confirm_all) or k == 1 \
                or confirm([gpu])[0]:
            return k, gpu
        k_cap = max(1, int(k * 0.9))


def pack_mixed(types: Sequence[GpuType], order: list[Adapter], opts: SearchOptions,
               confirms: dict[str, ConfirmMany | None]
               ) -> tuple[list[tuple[str, GpuAssignment]], bool]:
    """The cost-greedy mixed fleet of ``order`` (module docstring) and whether it is feasible
    (every adapter placed within the most-GPUs counts)."""
    remaining = list(order)
    used = {t.name: 0 for t in types}
    out: list[tuple[str, GpuAssignment]] = []
    while remaining:
        options = []
        for t in types:
            if t.max_count is not None and used[t.name] >= t.max_count:
                continue
            k, gpu = _sized_gpu(t, remaining, opts, None)
            if gpu is not None:
                options.append((t, k, gpu))
        if not options:
            return out, False
        closing = [o for o in options if o[1] == len(remaining)]
        if closing:
            t, _, _ = min(closing, key=lambda o: o[0].cost_per_hour)
        else:
            t, _, _ = max(options, key=lambda o: (o[2].predicted["offered_throughput_tok_s"]
                                                   / o[0].cost_per_hour))
        k, gpu = _sized_gpu(t, remaining, opts, confirms.get(t.name))
        if gpu is None:
            return out, False
        out.append((t.name, gpu))
        used[t.name] += 1
        remaining = remaining[k:]
    return out, True


# ----------------------------------------------------------------------------- entry point


def _orders(adapters: list[Adapter]) -> dict[str, list[Adapter]]:
    groups = sorted({a.rank for a in adapters}, reverse=True)
    return {
        "zig-zag": [a for r in groups for a in zigzag([x for x in adapters if x.rank == r])],
        "descending rate": [a for r in groups for a in sorted(
            (x for x in adapters if x.rank == r), key=lambda x: -x.rate)],
    }


def _fleet_cost(types: dict[str, GpuType], names: Sequence[str]) -> float:
    return float(sum(types[n].cost_per_hour for n in names))


def place_fleet(
    types: Sequence[GpuType],
    *,
    options: SearchOptions | None = None,
    seed: int = 0,
    confirm_borderline: bool = True,
    confirm_duration_s: float = CONFIRM_DURATION_S,
) -> FleetPlacement:
    """The adapters on the fleet of least cost per hour (module docstring).

    Parameters
    ----------
    types:
        At least one GPU type; every type's problem holds the same adapters.
    options:
        Safety rules of ``loratwin place``.
    seed, confirm_borderline, confirm_duration_s:
        Twin confirmations of borderline GPUs, as for ``place``.

    Raises
    ------
    ConfigError
        No type, duplicate type names, types with different adapters, or no candidate
        within the most-GPUs counts.
    """
    if not types:
        raise ConfigError("give at least one GPU type", field="gpu_types")
    by_name = {t.name: t for t in types}
    if len(by_name) != len(types):
        raise ConfigError("a GPU type is given twice", field="gpu_types")
    ids = [a.id for a in types[0].problem.adapters]
    if any([a.id for a in t.problem.adapters] != ids for t in types):
        raise ConfigError("every GPU type must place the same adapters", field="gpu_types")
    opts = options or SearchOptions()
    confirms = {t.name: (twin_confirm(t.problem, confirm_duration_s, seed, opts.twin_margin)
                         if confirm_borderline else None) for t in types}
    candidates: dict[str, float] = {}
    fleets: dict[str, tuple[list[str], list[GpuAssignment], tuple[str, ...]]] = {}
    for t in types:
        p = place(t.problem, "loratwin", seed=seed,
                  options=dataclasses.replace(opts, p_confirm=0.0) if t.confirm_all else opts,
                  confirm_borderline=confirm_borderline, confirm_duration_s=confirm_duration_s)
        key = f"single:{t.name}"
        ok = t.max_count is None or p.gpus <= t.max_count
        candidates[key] = t.cost_per_hour * p.gpus if ok else math.inf
        fleets[key] = ([t.name] * p.gpus, list(p.servers), p.notes)
    if len(types) > 1:
        # the type of the fewest GPUs alone is the fastest: its split of hot adapters
        fastest = min(types, key=lambda t: len(fleets[f"single:{t.name}"][0]))
        pieces, split_notes = split_hot(fastest.problem, opts)
        for oname, order in _orders(pieces).items():
            # orders compared on the surrogate alone; the cheaper one is packed with the twin
            packed, ok = pack_mixed(types, order, opts, {})
            candidates[f"mixed:{oname}"] = (_fleet_cost(by_name, [n for n, _ in packed])
                                            if ok else math.inf)
        best_order = min(_orders(pieces), key=lambda o: candidates[f"mixed:{o}"])
        key = f"mixed:{best_order}"
        if math.isfinite(candidates[key]):
            packed, ok = pack_mixed(types, _orders(pieces)[best_order], opts, confirms)
            candidates[key] = _fleet_cost(by_name, [n for n, _ in packed]) if ok else math.inf
            fleets[key] = ([n for n, _ in packed], [g for _, g in packed],
                           (f"adapter order: {best_order}", *split_notes))
        for o in _orders(pieces):
            if o != best_order:
                candidates.pop(f"mixed:{o}", None)
    feasible = {k: v for k, v in candidates.items() if math.isfinite(v) and k in fleets}
    if not feasible:
        raise ConfigError("no fleet fits the most-GPUs counts of the GPU types (raise a "
                          ":MAX_COUNT)", field="gpu_types")
    chosen = min(feasible, key=lambda k: (feasible[k], len(fleets[k][0]),
                                          not k.startswith("single")))
    names, servers, notes = fleets[chosen]
    return FleetPlacement(
        placement=Placement("loratwin-fleet", tuple(servers), 0.0,
                            (f"fleet: {chosen}", *notes)),
        types=tuple(names), cost_per_hour=feasible[chosen], candidates=candidates,
        chosen=chosen)

