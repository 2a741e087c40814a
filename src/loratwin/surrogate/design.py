"""Sampling design of the surrogate data set: which single-GPU configurations the twin runs.

The design has two parts, both deterministic functions of the spec (and its ``seed``) and of
the profile, so that an interrupted data-set run can be resumed point by point.

**1. The papers' grid** (Agullo et al., arXiv 2508.08343 Sec. 5 / 2602.24044): served adapters
and ``max_loras`` in {8, 16, 32, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512, 576} with
``max_loras <= served``; a rate triplet (three values, with repetition, in descending order)
from {3.2, 1.6, 0.8, 0.4, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125} req/s and an ordered
rank triplet from {8, 16, 32}; adapter ``i`` gets ``rates[i % 3]`` and ``ranks[i % 3]``
(ordered rank triplets vary which rank pairs with which rate). The request lengths are the
profile's ShareGPT means and arrivals are Poisson, as in the measured runs. ``max_loras`` is
clipped to the largest value that starts (:func:`~loratwin.profile.model.max_loras_that_fit`
at the largest rank), so no point is a memory error. The full grid has ~300,000 distinct
points (per profile); ``grid.points`` of them are sampled:

- *coverage*: one point for every value of every axis (each served count, each
  ``max_loras``, each rate value, each rank value) and the corners (fewest / most adapters,
  fewest / most slots, highest / lowest rates, all-8 / all-32 ranks), so that every value of
  the papers' grid is in the data set;
- *band-weighted fill*: the remaining points are drawn without replacement (exponential-race
  sampling, Efraimidis and Spirakis 2006) with weight ``grid.band_weight`` for points whose
  estimated load factor (offered load / :func:`capacity_tok_s`) is inside ``load_band`` and 1
  outside it, so the grid concentrates near the starvation boundary but keeps the extremes.

**2. Space-filling samples** between grid points: a scrambled Sobol (or Latin hypercube)
sequence of ``qmc.points`` points in 9 dimensions, mapped to

- served adapters: log-uniform in ``qmc.served`` (default 8 ... 1200);
- ``max_loras``: a log-uniform fraction of served in ``qmc.max_loras_fraction``, rounded, at
  least 1, clipped to the memory limit of the largest rank;
- rank mix: one of the non-empty subsets of ``qmc.ranks`` ({8, 16, 32, 64}: 15 mixes),
  cycled over the adapters;
- load factor ``rho``: the fraction ``1 - qmc.extreme_fraction`` of the points draw ``rho``
  log-uniform in ``load_band`` (default 0.2 ... 3, around the starvation boundary at ~1),
  the others log-uniform in ``qmc.extreme_load`` (default 0.01 ... 30: idle and hopelessly
  overloaded servers). The total rate is ``rho x capacity / (mean input + mean output)``;
- rate spread ``sigma`` uniform in ``qmc.rate_spread``: per-adapter rates are log-normal
  (median 1, log-standard deviation ``sigma``, from a per-point random stream) scaled to the
  total rate, so ``sigma = 0`` gives equal rates and ``sigma = 2`` a few hot adapters;
- mean input and output tokens: log-uniform in ``qmc.input_tokens`` (50 ... 2000) and
  ``qmc.output_tokens`` (30 ... 600);
- arrival CV: one of ``qmc.arrival_cv`` ({1, 1.5, 2, 3}; 1 = Poisson, above 1 = gamma gaps).

**Capacity estimate.** :func:`capacity_tok_s` is a steady-state estimate of the token
throughput a saturated server reaches, from the profile's step-cost model
(:class:`~loratwin.twin.cost.StepCost`): ``n`` decoding requests with chunked prefill feed
``n (1 + in/out)`` tokens per step, limited by the token budget, ``max_num_seqs`` and the KV
cache (``n (in + out/2)`` tokens); the estimate is tokens per step over the step time. It
ignores adapter-slot swapping, so servers with few slots starve below it: it only steers the
sampling, the twin decides the labels.

Points are shuffled (seeded) before being cut into chunks so that slow (overloaded) and fast
points mix in every chunk. Each point has an id (``g000123`` grid, ``q000045`` QMC), a twin
seed derived from ``(seed, id)`` and ``origin`` ``grid`` / ``qmc``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.stats import qmc

from loratwin.configfile import read_yaml_mapping, validate
from loratwin.errors import ConfigError
from loratwin.profile.model import Profile, kv_capacity, max_loras_that_fit
from loratwin.surrogate.point import GpuPoint
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.release import normalise_version

#: Served adapters and ``max_loras`` of the papers' grid.
PAPER_SIZES: tuple[int, ...] = (8, 16, 32, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512, 576)
#: Per-adapter rates of the papers' grid, req/s.
PAPER_RATES: tuple[float, ...] = (3.2, 1.6, 0.8, 0.4, 0.1, 0.05, 0.025, 0.0125, 0.00625, 0.003125)
#: Adapter ranks of the papers' grid.
PAPER_RANKS: tuple[int, ...] = (8, 16, 32)


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _range(v: tuple[float, float], name: str, positive: bool = True) -> tuple[float, float]:
    lo, hi = v
    if positive and lo <= 0:
        raise ValueError(f"{name}: lower bound must be > 0")
    if hi < lo:
        raise ValueError(f"{name}: upper bound must be >= lower bound")
    return v


class GridSpec(_Strict):
    """The papers' grid and how many of its points to sample (see the module docstring)."""

    points: int = Field(2000, ge=0, description="points sampled from the full grid")
    served: tuple[int, ...] = PAPER_SIZES
    max_loras: tuple[int, ...] = PAPER_SIZES
    rates: tuple[float, ...] = PAPER_RATES
    ranks: tuple[int, ...] = PAPER_RANKS
    band_weight: float = Field(
        4.0, ge=1.0, description="sampling weight of points inside load_band (1 outside)"
    )

    @model_validator(mode="after")
    def _check(self) -> GridSpec:
        for name in ("served", "max_loras", "rates", "ranks"):
            vals = getattr(self, name)
            if not vals:
                raise ValueError(f"{name}: needs at least one value")
            if min(vals) <= 0:
                raise ValueError(f"{name}: values must be > 0")
        return self


class QmcSpec(_Strict):
    """Space-filling samples between grid points (see the module docstring)."""

    points: int = Field(2000, ge=0, description="quasi-random points")
    method: Literal["sobol", "lhs"] = "sobol"
    served: tuple[int, int] = (8, 1200)
    max_loras_fraction: tuple[float, float] = (0.01, 1.0)
    ranks: tuple[int, ...] = (8, 16, 32, 64)
    input_tokens: tuple[float, float] = (50.0, 2000.0)
    output_tokens: tuple[float, float] = (30.0, 600.0)
    arrival_cv: tuple[float, ...] = (1.0, 1.5, 2.0, 3.0)
    rate_spread: tuple[float, float] = (0.0, 2.0)
    extreme_fraction: float = Field(0.25, ge=0.0, le=1.0)
    extreme_load: tuple[float, float] = (0.01, 30.0)

    @model_validator(mode="after")
    def _check(self) -> QmcSpec:
        _range(self.served, "served")
        _range(self.max_loras_fraction, "max_loras_fraction")
        if self.max_loras_fraction[1] > 1:
            raise ValueError("max_loras_fraction: upper bound must be <= 1")
        _range(self.input_tokens, "input_tokens")
        _range(self.output_tokens, "output_tokens")
        _range(self.rate_spread, "rate_spread", positive=False)
        if self.rate_spread[0] < 0:
            raise ValueError("rate_spread: must be >= 0")
        _range(self.extreme_load, "extreme_load")
        if not self.ranks or min(self.ranks) <= 0:
            raise ValueError("ranks: needs positive values")
        if not self.arrival_cv or min(self.arrival_cv) <= 0:
            raise ValueError("arrival_cv: needs positive values")
        return self


class DesignSpec(_Strict):
    """The whole sampling design (the GRID.yaml of ``loratwin dataset``).

    Attributes
    ----------
    model:
        Profile name or JSON path the twin runs with.
    seed:
        Seed of every random draw of the design (and of the twin runs).
    duration_s:
        Benchmark window of every twin run, s (3600 as in the measured runs).
    chunk_size:
        Points per Parquet chunk (the unit of parallelism and of resumption).
    max_num_seqs:
        ``--max-num-seqs`` of every point (2048 in the measured runs).
    load_band:
        Offered load / estimated capacity where points concentrate.
    vllm_version:
        vLLM release whose rules the twin runs follow (default: the profile's).
    """

    model: str = "llama-3.1-8b-instruct"
    seed: int = Field(0, ge=0)
    duration_s: float = Field(3600.0, gt=0)
    chunk_size: int = Field(16, ge=1)
    max_num_seqs: int = Field(2048, ge=1)
    load_band: tuple[float, float] = (0.2, 3.0)
    grid: GridSpec = GridSpec()
    qmc: QmcSpec = QmcSpec()
    vllm_version: str | None = None

    @model_validator(mode="after")
    def _check(self) -> DesignSpec:
        _range(self.load_band, "load_band")
        if self.vllm_version is not None:
            try:
                normalise_version(self.vllm_version)
            except ConfigError as exc:
                raise ValueError(f"vllm_version: {exc.message}") from None
        return self


def load_design_spec(path: Path) -> DesignSpec:
    """Read a GRID.yaml (see ``examples/surrogate-grid.yaml``); missing keys take defaults.

    Raises
    ------
    DataError
        Missing file or invalid YAML.
    ConfigError
        Unknown key or invalid value (the message names the field).
    """
    data = read_yaml_mapping(path, "design")
    return parse_design_spec(data)


def parse_design_spec(data: dict[str, object]) -> DesignSpec:
    """Validate a design mapping; errors become one-line :class:`ConfigError`."""
    return validate(DesignSpec, data)


# ----------------------------------------------------------------------------- capacity


@dataclass(frozen=True)
class SaturatedStep:
    """The steady state of a saturated server (see :func:`saturated_step`).

    Attributes
    ----------
    tokens:
        Tokens scheduled per step (prompt chunks + decodes), tokens.
    step_s:
        Time of one such step (execution + scheduler), s; 0 if the server does not start.
    kv_tokens:
        KV cache size, tokens (0 if the server does not start).
    """

    tokens: int
    step_s: float
    kv_tokens: int

    @property
    def capacity_tok_s(self) -> float:
        """Tokens per second of the saturated server (0 if it does not start)."""
        return self.tokens / self.step_s if self.step_s > 0 else 0.0


def saturated_step(
    profile: Profile,
    max_loras: int,
    max_lora_rank: int,
    mean_input_tokens: float,
    mean_output_tokens: float,
    *,
    max_num_seqs: int = 2048,
    max_num_batched_tokens: int = 2048,
    step_cost: StepCost | None = None,
) -> SaturatedStep:
    """The step of a saturated server: tokens per step, its time and the KV cache size.

    ``n`` decoding requests, each adding ``in/out`` prompt tokens per generated token on
    average (chunked prefill), make ``M = n (1 + in/out)`` tokens per step; ``n`` is the
    largest value allowed by the token budget (``M <= max_num_batched_tokens``),
    ``max_num_seqs`` and the KV cache (``n (in + out/2)`` context tokens). The step time is
    the profile's step-cost model (:class:`~loratwin.twin.cost.StepCost`) with ``n/out``
    prefills per step and ``min(max_loras, n)`` distinct adapters. Adapter loads and slot
    swapping are ignored.

    Parameters
    ----------
    step_cost:
        A ready ``StepCost`` of the same (profile, server) pair, to save its construction.
    """
    server = ServerConfig(
        max_loras=max_loras, max_cpu_loras=max_loras, max_lora_rank=max_lora_rank,
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
    )
    kv = kv_capacity(profile, max_loras, max_lora_rank, max_num_seqs=max_num_seqs)
    if kv.failure is not None:
        return SaturatedStep(0, 0.0, 0)
    cost = step_cost if step_cost is not None else StepCost(profile, server)
    inp, out = float(mean_input_tokens), max(float(mean_output_tokens), 1.0)
    per_seq_tokens = 1.0 + inp / out
    n = min(
        float(max_num_seqs),
        max_num_batched_tokens / per_seq_tokens,
        kv.tokens / (inp + out / 2.0),
    )
    n = max(n, 1.0)
    m = min(max_num_batched_tokens, max(1, round(n * per_seq_tokens)))
    n_dec = max(1, min(m, round(n)))
    n_pref = max(1, math.ceil(n / out)) if inp > 0 else 0
    ctx = round(n * (inp + out / 2.0))
    t = cost.exec_s(m, n_dec, n_pref, ctx, min(max_loras, n_dec)) + cost.sched_s(n_dec, 0)
    return SaturatedStep(m, max(t, 0.0), kv.tokens)


def capacity_tok_s(
    profile: Profile,
    max_loras: int,
    max_lora_rank: int,
    mean_input_tokens: float,
    mean_output_tokens: float,
    *,
    max_num_seqs: int = 2048,
    max_num_batched_tokens: int = 2048,
    step_cost: StepCost | None = None,
) -> float:
    """Steady-state throughput of a saturated server, tok/s (input + output tokens).

    The tokens of :func:`saturated_step` over its step time.

    Returns
    -------
    float
        Estimated capacity in tok/s; 0 if the server does not start.
    """
    return saturated_step(
        profile, max_loras, max_lora_rank, mean_input_tokens, mean_output_tokens,
        max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
        step_cost=step_cost,
    ).capacity_tok_s


# ----------------------------------------------------------------------------- design


@dataclass(frozen=True)
class DesignPoint:
    """One point of the design: its id, its chunk and the configuration."""

    point_id: str
    chunk: int
    point: GpuPoint


#: Bumped whenever the mapping from a spec to points changes (part of the fingerprint, so a
#: resumed run never mixes points of two versions).
DESIGN_VERSION = 1


def spec_fingerprint(spec: DesignSpec, profile: Profile) -> str:
    """SHA-256 (first 16 hex digits) of the design version, the spec and the profile."""
    h = hashlib.sha256()
    h.update(f"design-v{DESIGN_VERSION}".encode())
    # a design without vllm_version hashes as before the field existed (data sets resume)
    h.update(spec.model_dump_json(
        exclude={"vllm_version"} if spec.vllm_version is None else None).encode())
    h.update(profile_hash(profile).encode())
    return h.hexdigest()[:16]


def profile_hash(profile: Profile) -> str:
    """SHA-256 of the profile's canonical JSON (what a surrogate was trained for)."""
    return hashlib.sha256(profile.model_dump_json().encode()).hexdigest()


def _point_seed(seed: int, point_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{point_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


class _Capacity:
    """Capacity lookups with the step-cost tables of each (max_loras, rank) pair built once."""

    def __init__(self, profile: Profile, spec: DesignSpec) -> None:
        self.profile = profile
        self.spec = spec
        self._costs: dict[tuple[int, int], StepCost] = {}

    def __call__(self, max_loras: int, rank: int, inp: float, out: float) -> float:
        key = (max_loras, rank)
        cost = self._costs.get(key)
        if cost is None:
            cost = StepCost(self.profile, ServerConfig(
                max_loras=max_loras, max_cpu_loras=max_loras, max_lora_rank=rank,
                max_num_seqs=self.spec.max_num_seqs,
                max_num_batched_tokens=max(2048, self.spec.max_num_seqs),
            ))
            self._costs[key] = cost
        return capacity_tok_s(
            self.profile, max_loras, rank, inp, out, max_num_seqs=self.spec.max_num_seqs,
            max_num_batched_tokens=max(2048, self.spec.max_num_seqs), step_cost=cost,
        )


def _cycled(values: tuple, n: int) -> tuple:
    return tuple(values[i % len(values)] for i in range(n))


def _grid_points(spec: DesignSpec, profile: Profile, cap: _Capacity) -> list[GpuPoint]:
    g = spec.grid
    if g.points == 0:
        return []
    rng = np.random.default_rng([spec.seed, 1])
    inp, out = profile.sharegpt_mean_input_tokens, profile.sharegpt_mean_output_tokens
    rate_trips = np.array([sorted(t, reverse=True) for t in
                           itertools.combinations_with_replacement(sorted(set(g.rates)), 3)])
    rank_trips = np.array(list(itertools.product(sorted(set(g.ranks)), repeat=3)))
    limits = {r: max_loras_that_fit(profile, r, max_num_seqs=spec.max_num_seqs)
              for r in sorted(set(g.ranks))}
    # distinct (served, max_loras clipped to memory, largest rank) triples
    pairs = sorted({(s, min(ml, limits[r]), r) for s in set(g.served) for ml in set(g.max_loras)
                    for r in limits if ml <= s and limits[r] >= 1})
    if not pairs:
        raise ConfigError("no grid point fits in memory", field="grid")
    cols: list[np.ndarray] = []
    for r in limits:
        p_r = np.array([p for p in pairs if p[2] == r]).reshape(-1, 3)
        k_r = np.flatnonzero(rank_trips.max(axis=1) == r)
        if not len(p_r) or not len(k_r):
            continue
        pi, ri, ki = np.meshgrid(np.arange(len(p_r)), np.arange(len(rate_trips)), k_r,
                                 indexing="ij")
        cols.append(np.column_stack([p_r[pi.ravel()], ri.ravel(), ki.ravel()]))
    cand = np.concatenate(cols)  # columns: served, max_loras, rank, rate trip, rank trip
    served, mls, mrank, ri, ki = (cand[:, j] for j in range(5))
    n = len(cand)
    q_, rem = np.divmod(served, 3)
    trip = rate_trips[ri]
    rates_sum = q_ * trip.sum(axis=1) + (rem >= 1) * trip[:, 0] + (rem >= 2) * trip[:, 1]
    offered = rates_sum * (inp + out)
    caps = {(m, r): cap(int(m), int(r), inp, out)
            for m, r in {(int(a), int(b)) for a, b in zip(mls, mrank, strict=True)}}
    capacity = np.array([caps[(int(m), int(r))] for m, r in zip(mls, mrank, strict=True)])
    rho = offered / np.maximum(capacity, 1e-9)
    lo, hi = spec.load_band
    weight = np.where((rho >= lo) & (rho <= hi), g.band_weight, 1.0)
    chosen: list[int] = []
    taken = np.zeros(n, bool)

    def pick(mask: np.ndarray) -> None:
        idx = np.flatnonzero(mask & ~taken)
        if idx.size == 0:
            return
        i = int(rng.choice(idx, p=weight[idx] / weight[idx].sum()))
        taken[i] = True
        chosen.append(i)

    # coverage of every axis value, then the corners
    for s in sorted(set(g.served)):
        pick(served == s)
    for ml in np.unique(mls):
        pick(mls == ml)
    for v in sorted(set(g.rates)):
        pick((rate_trips == v).any(axis=1)[ri])
    for v in sorted(set(g.ranks)):
        pick((rank_trips == v).any(axis=1)[ki])
    rate_hi = ri == len(rate_trips) - 1  # (max, max, max)
    rate_lo = ri == 0  # (min, min, min)
    uniform_rank = (rank_trips == rank_trips[:, :1]).all(axis=1)
    rank_lo = (uniform_rank & (rank_trips[:, 0] == rank_trips.min()))[ki]
    rank_hi = (uniform_rank & (rank_trips[:, 0] == rank_trips.max()))[ki]
    for s_mask in (served == served.min(), served == served.max()):
        for m_mask in (mls == mls[s_mask].min(), mls == mls[s_mask].max()):
            for r_mask in (rate_hi, rate_lo):
                for k_mask in (rank_lo, rank_hi):
                    pick(s_mask & m_mask & r_mask & k_mask)
    chosen = chosen[: g.points]
    # band-weighted fill without replacement (exponential race)
    need = g.points - len(chosen)
    if need > 0:
        rest = np.flatnonzero(~taken)
        keys = rng.exponential(size=rest.size) / weight[rest]
        chosen.extend(rest[np.argsort(keys, kind="stable")[:need]].tolist())
    pts = []
    for i in chosen:
        s = int(served[i])
        pts.append(GpuPoint(
            ranks=_cycled(tuple(int(k) for k in rank_trips[ki[i]]), s),
            rates=_cycled(tuple(float(v) for v in rate_trips[ri[i]]), s),
            max_loras=int(mls[i]), mean_input_tokens=inp, mean_output_tokens=out,
            arrival_cv=1.0, max_num_seqs=spec.max_num_seqs, duration_s=spec.duration_s,
            origin="grid",
        ))
    return pts


def _log_uniform(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def _qmc_points(spec: DesignSpec, profile: Profile, cap: _Capacity) -> list[GpuPoint]:
    q = spec.qmc
    if q.points == 0:
        return []
    dim = 9
    if q.method == "sobol":
        m = max(0, math.ceil(math.log2(q.points)))
        u = qmc.Sobol(dim, scramble=True, seed=spec.seed).random_base2(m)[: q.points]
    else:
        u = qmc.LatinHypercube(dim, seed=spec.seed).random(q.points)
    u = np.clip(u, 0.0, np.nextafter(1.0, 0.0))
    ranks = sorted(set(q.ranks))
    mixes = [c for k in range(1, len(ranks) + 1) for c in itertools.combinations(ranks, k)]
    limits = {r: max_loras_that_fit(profile, r, max_num_seqs=spec.max_num_seqs) for r in ranks}
    served = np.rint(_log_uniform(u[:, 0], *q.served)).astype(int)
    frac = _log_uniform(u[:, 1], *q.max_loras_fraction)
    mix_idx = (u[:, 2] * len(mixes)).astype(int)
    extreme = u[:, 8] < q.extreme_fraction
    # load factor: stretch u over the band, or over the extreme range
    rho = np.where(extreme, _log_uniform(u[:, 3], *q.extreme_load),
                   _log_uniform(u[:, 3], *spec.load_band))
    sigma = q.rate_spread[0] + u[:, 4] * (q.rate_spread[1] - q.rate_spread[0])
    inp = _log_uniform(u[:, 5], *q.input_tokens)
    out = _log_uniform(u[:, 6], *q.output_tokens)
    cv_idx = (u[:, 7] * len(q.arrival_cv)).astype(int)
    pts = []
    for i in range(q.points):
        mix = mixes[mix_idx[i]]
        r = max(mix)
        if limits[r] < 1:
            raise ConfigError(f"rank {r} adapters do not fit in memory", field="qmc.ranks")
        s = int(max(1, served[i]))
        ml = int(min(max(1, round(frac[i] * s)), s, limits[r]))
        i_tok, o_tok = round(float(inp[i]), 1), round(float(out[i]), 1)
        total_rate = rho[i] * cap(ml, r, i_tok, o_tok) / (i_tok + o_tok)
        rng = np.random.default_rng([spec.seed, 2, i])
        w = rng.lognormal(0.0, sigma[i], size=s) if sigma[i] > 0 else np.ones(s)
        rates = total_rate * w / w.sum()
        pts.append(GpuPoint(
            ranks=_cycled(mix, s), rates=tuple(float(f"{x:.6g}") for x in rates),
            max_loras=ml, mean_input_tokens=i_tok, mean_output_tokens=o_tok,
            arrival_cv=float(q.arrival_cv[cv_idx[i]]), max_num_seqs=spec.max_num_seqs,
            duration_s=spec.duration_s, origin="qmc",
        ))
    return pts


def build_design(spec: DesignSpec, profile: Profile) -> list[DesignPoint]:
    """All points of the design, in chunk order (deterministic from ``spec`` and ``profile``).

    Returns
    -------
    list[DesignPoint]
        ``grid.points`` grid points then ``qmc.points`` QMC points, shuffled (seeded) and
        numbered into chunks of ``chunk_size``; ids are ``g<index>`` / ``q<index>`` in the
        unshuffled order, twin seeds are derived from ``(seed, id)``.

    Raises
    ------
    ConfigError
        A rank of the spec whose adapters do not fit in memory at all.
    """
    cap = _Capacity(profile, spec)
    grid = _grid_points(spec, profile, cap)
    qpts = _qmc_points(spec, profile, cap)
    labelled = [(f"g{i:06d}", p) for i, p in enumerate(grid)]
    labelled += [(f"q{i:06d}", p) for i, p in enumerate(qpts)]
    order = np.random.default_rng([spec.seed, 3]).permutation(len(labelled))
    out = []
    for pos, k in enumerate(order):
        pid, p = labelled[int(k)]
        version = None if spec.vllm_version is None else normalise_version(spec.vllm_version)
        p = GpuPoint(**{**p.__dict__, "seed": _point_seed(spec.seed, pid),
                        "vllm_version": version})
        out.append(DesignPoint(pid, pos // spec.chunk_size, p))
    return out


def design_summary(points: list[DesignPoint]) -> dict[str, object]:
    """Counts per origin and the ranges of the main axes (for the CLI and design.json)."""
    served = [p.point.served_adapters for p in points]
    loras = [p.point.max_loras for p in points]
    return {
        "points": len(points),
        "chunks": (max(p.chunk for p in points) + 1) if points else 0,
        "grid": sum(p.point.origin == "grid" for p in points),
        "qmc": sum(p.point.origin == "qmc" for p in points),
        "served_range": [min(served, default=0), max(served, default=0)],
        "max_loras_range": [min(loras, default=0), max(loras, default=0)],
    }


def design_json(spec: DesignSpec, profile: Profile, points: list[DesignPoint]) -> str:
    """The ``design.json`` written next to the chunks (spec, fingerprint, profile, summary)."""
    return json.dumps({
        "fingerprint": spec_fingerprint(spec, profile),
        "design_version": DESIGN_VERSION,
        "profile": profile.name,
        "profile_sha256": profile_hash(profile),
        "spec": json.loads(spec.model_dump_json()),
        "summary": design_summary(points),
    }, indent=1)
