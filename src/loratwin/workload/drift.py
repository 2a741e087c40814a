"""How a workload changes: the difference of two adapter lists, and simulated daily drift.

:func:`workload_drift` compares an old and a new adapter list by id: adapters added, removed,
re-rated (rate changed by more than a relative tolerance), re-ranked, with new mean lengths,
and the totals (req/s, offered tok/s) of both.

:func:`drift_day` makes one day of simulated drift, the model of ``benchmarks/replan_drift.py``:
a fraction of the adapters (drawn uniformly) is retired, every other adapter's rate is
multiplied by an independent mean-one log-normal factor ``exp(N(-sigma^2/2, sigma^2))``, and
new adapters are added, each a copy of a uniformly drawn existing adapter (its rank, its
pre-drift rate and mean lengths: a bootstrap of the day's adapter population) under a new id.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from loratwin.errors import ConfigError
from loratwin.workload.types import Adapter

#: Default relative rate change below which an adapter counts as unchanged.
RATE_TOLERANCE = 0.01


def _offered(a: Adapter, default_in: float, default_out: float) -> float:
    return a.rate * ((a.mean_input_tokens or default_in) + (a.mean_output_tokens or default_out))


@dataclass(frozen=True)
class WorkloadDrift:
    """What changed between two adapter lists (:func:`workload_drift`).

    Attributes
    ----------
    added, removed:
        Adapters only in the new / only in the old list.
    rerated:
        (old, new) pairs whose rate changed by more than the tolerance.
    reranked, relengthened:
        (old, new) pairs whose rank / mean lengths changed.
    unchanged:
        Adapters in both lists with rank, lengths and rate (within the tolerance) kept.
    old_count, new_count:
        Adapters in each list.
    old_rate_req_s, new_rate_req_s:
        Total rates, req/s.
    old_offered_tok_s, new_offered_tok_s:
        Total offered load, tok/s (adapters without mean lengths count with the defaults).
    """

    added: tuple[Adapter, ...]
    removed: tuple[Adapter, ...]
    rerated: tuple[tuple[Adapter, Adapter], ...]
    reranked: tuple[tuple[Adapter, Adapter], ...]
    relengthened: tuple[tuple[Adapter, Adapter], ...]
    unchanged: int
    old_count: int
    new_count: int
    old_rate_req_s: float
    new_rate_req_s: float
    old_offered_tok_s: float
    new_offered_tok_s: float

    def rate_factors(self) -> np.ndarray:
        """(n,) new / old rate of the adapters in both lists with an old rate > 0."""
        return np.array([b.rate / a.rate for a, b in self.rerated if a.rate > 0])


def workload_drift(old: Sequence[Adapter], new: Sequence[Adapter], *,
                   rate_tolerance: float = RATE_TOLERANCE, default_input_tokens: float = 0.0,
                   default_output_tokens: float = 0.0) -> WorkloadDrift:
    """Compare two adapter lists by id (see :class:`WorkloadDrift`).

    Parameters
    ----------
    rate_tolerance:
        Relative rate change (>= 0) up to which a rate counts as unchanged.
    default_input_tokens, default_output_tokens:
        Mean lengths of adapters that give none, for the offered loads (tokens).

    Raises
    ------
    ConfigError
        A negative tolerance, or duplicate ids in a list.
    """
    if not (rate_tolerance >= 0 and math.isfinite(rate_tolerance)):
        raise ConfigError(f"must be >= 0 (got {rate_tolerance})", field="rate_tolerance")
    maps = []
    for label, lst in (("old", old), ("new", new)):
        m = {a.id: a for a in lst}
        if len(m) != len(lst):
            raise ConfigError(f"the {label} workload has duplicate adapter ids", field="id")
        maps.append(m)
    o, n = maps
    both = [(o[i], n[i]) for i in o if i in n]
    rerated = tuple((a, b) for a, b in both
                    if abs(b.rate - a.rate) > rate_tolerance * max(a.rate, 1e-12))
    reranked = tuple((a, b) for a, b in both if a.rank != b.rank)
    relength = tuple((a, b) for a, b in both if (a.mean_input_tokens, a.mean_output_tokens)
                     != (b.mean_input_tokens, b.mean_output_tokens))
    changed = {a.id for a, _ in (*rerated, *reranked, *relength)}
    d_in, d_out = default_input_tokens, default_output_tokens
    return WorkloadDrift(
        added=tuple(a for a in new if a.id not in o),
        removed=tuple(a for a in old if a.id not in n),
        rerated=rerated, reranked=reranked, relengthened=relength,
        unchanged=sum(1 for a, _ in both if a.id not in changed),
        old_count=len(old), new_count=len(new),
        old_rate_req_s=float(sum(a.rate for a in old)),
        new_rate_req_s=float(sum(a.rate for a in new)),
        old_offered_tok_s=float(sum(_offered(a, d_in, d_out) for a in old)),
        new_offered_tok_s=float(sum(_offered(a, d_in, d_out) for a in new)),
    )


@dataclass(frozen=True)
class DriftSpec:
    """One simulated day of drift (:func:`drift_day`).

    Attributes
    ----------
    add_fraction, remove_fraction:
        Adapters added / retired per day, as a fraction of the day's count (rounded).
    sigma:
        Standard deviation of the log of every kept adapter's daily rate factor (mean one).
    """

    add_fraction: float = 0.05
    remove_fraction: float = 0.05
    sigma: float = 0.15

    def __post_init__(self) -> None:
        for name in ("add_fraction", "remove_fraction"):
            v = getattr(self, name)
            if not (0 <= v < 1):
                raise ConfigError(f"must be in [0, 1) (got {v})", field=name)
        if not (self.sigma >= 0 and math.isfinite(self.sigma)):
            raise ConfigError(f"must be >= 0 (got {self.sigma})", field="sigma")


def drift_day(adapters: Sequence[Adapter], spec: DriftSpec, rng: np.random.Generator,
              day: int, id_prefix: str = "new-") -> list[Adapter]:
    """The adapter list one day later (module docstring): retire, re-rate, add.

    New ids are ``f"{id_prefix}{day:03d}-{j:04d}"``. All draws come from ``rng`` in a fixed
    order (retired set, factors, templates), so the same generator state gives the same day.

    Raises
    ------
    ConfigError
        An empty list.
    """
    n = len(adapters)
    if n == 0:
        raise ConfigError("the workload has no adapters", field="adapters")
    n_remove = min(n - 1, round(spec.remove_fraction * n))
    n_add = round(spec.add_fraction * n)
    retired = set(rng.choice(n, size=n_remove, replace=False).tolist()) if n_remove else set()
    factors = np.exp(rng.normal(-spec.sigma ** 2 / 2, spec.sigma, n))
    templates = rng.integers(0, n, n_add)
    kept = [replace(a, rate=float(a.rate * f))
            for i, (a, f) in enumerate(zip(adapters, factors, strict=True)) if i not in retired]
    added = [replace(adapters[int(t)], id=f"{id_prefix}{day:03d}-{j:04d}")
             for j, t in enumerate(templates)]
    return kept + added
