"""The placement problem: adapters, a profile, a surrogate, and fast candidate evaluation.

Placement algorithms ask one question thousands of times: "if this GPU served these
adapters with this ``max_loras``, would it keep up, and how fast would it be?". This module
answers it in batches: :class:`PrefixStats` gives the surrogate features of every prefix of
an ordered adapter list in O(1) each (prefix sums), :meth:`PlacementProblem.evaluate` predicts
many (adapter set, ``max_loras``) candidates in one surrogate call, and memory limits per slot
rank come from the profile's KV model.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from loratwin.configfile import validate
from loratwin.errors import ConfigError
from loratwin.placement.memo import PredictionMemo
from loratwin.placement.types import GpuAssignment, GpuPredictor, Predictions
from loratwin.profile.model import Profile, max_loras_that_fit
from loratwin.surrogate.features import FEATURES
from loratwin.twin.config import ServerConfig
from loratwin.twin.release import normalise_version, release_rules, slot_rank
from loratwin.workload.types import Adapter

#: Starvation rule of the papers: throughput below this fraction of the offered load.
STARVATION_FRACTION = 0.9
_I_MAX_RANK = FEATURES.index("max_rank")


@dataclass
class PlacementProblem:
    """One workload to place.

    Attributes
    ----------
    adapters:
        The adapters (rates in req/s; optional per-adapter mean lengths in tokens).
    profile:
        Model/GPU profile (memory limits, default lengths).
    predictor:
        Surrogate answering batches of feature rows.
    max_num_seqs:
        ``--max-num-seqs`` of every server (2048, as in the measured runs).
    arrival_cv:
        Burstiness of every adapter's arrivals (1 = Poisson).
    vllm_version:
        vLLM release of the servers (rules of the twin runs, flag defaults); ``None``: the
        profile's.
    """

    adapters: Sequence[Adapter]
    profile: Profile
    predictor: GpuPredictor
    max_num_seqs: int = 2048
    arrival_cv: float = 1.0
    vllm_version: str | None = None
    _mem: dict[int, int] = field(default_factory=dict, repr=False)
    _release: str = field(init=False, repr=False)
    _slots: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._release = normalise_version(self.vllm_version or self.profile.vllm_version)
        self._slots = np.asarray(release_rules(self._release).defaults.max_lora_ranks, float)
        if not self.adapters:
            raise ConfigError("the workload has no adapters", field="adapters")
        ids = [a.id for a in self.adapters]
        if len(set(ids)) != len(ids):
            raise ConfigError("adapter ids must be unique", field="id")
        checked: set[int] = set()  # ranks whose slot rank and memory limit were checked
        for a in self.adapters:
            if not (a.rate >= 0 and math.isfinite(a.rate)):
                raise ConfigError(f"adapter {a.id!r}: rate must be >= 0", field="rate")
            if a.rank in checked:
                continue
            checked.add(a.rank)
            try:
                self.slot_rank(a.rank)
            except ConfigError as exc:
                raise ConfigError(f"adapter {a.id!r}: {exc.message}", field="rank") from None
            if self.max_loras_limit(a.rank) < 1:
                raise ConfigError(
                    f"adapter {a.id!r}: rank {a.rank} does not fit on the GPU at all",
                    field="rank",
                )

    # ------------------------------------------------------------------ memory
    def slot_rank(self, rank: int) -> int:
        """``--max-lora-rank`` of a server whose largest adapter rank is ``rank``: the
        smallest value this problem's vLLM release accepts (:func:`loratwin.twin.release.
        slot_rank`).

        Raises
        ------
        ConfigError
            ``rank`` above the largest the release accepts.
        """
        return slot_rank(rank, self._release)

    def max_loras_limit(self, max_lora_rank: int) -> int:
        """Most GPU slots a server whose largest adapter rank is ``max_lora_rank`` can start
        with (KV model at the slot rank vLLM allocates, :meth:`slot_rank`)."""
        if max_lora_rank not in self._mem:
            rank = self.slot_rank(max_lora_rank)
            gmu = self.server(max_lora_rank=rank).gpu_memory_utilization
            self._mem[max_lora_rank] = max_loras_that_fit(
                self.profile, rank, max_num_seqs=self.max_num_seqs,
                gpu_memory_utilization=gmu,
            )
        return self._mem[max_lora_rank]

    def server(self, **flags: Any) -> ServerConfig:
        """The flags of a server of this problem's release, resolved against its profile.

        Raises
        ------
        ConfigError
            An unknown release or invalid flags.
        """
        data = {"vllm_version": self.vllm_version, **flags}
        return validate(ServerConfig, data).resolved(self.profile)

    # ------------------------------------------------------------------ lengths
    def mean_lengths(self, a: Adapter) -> tuple[float, float]:
        """The adapter's mean input and output tokens (profile defaults if unset)."""
        return (
            a.mean_input_tokens or self.profile.sharegpt_mean_input_tokens,
            a.mean_output_tokens or self.profile.sharegpt_mean_output_tokens,
        )

    def offered_tok_s(self, adapters: Sequence[Adapter]) -> float:
        """Offered load of a set of adapters in tok/s (rate x mean input + output)."""
        return float(sum(a.rate * sum(self.mean_lengths(a)) for a in adapters))

    # ------------------------------------------------------------------ prediction
    def headroom(self, row: np.ndarray, p_starving: float = 0.5) -> float:
        """Load growth a GPU absorbs before the surrogate predicts starvation.

        All the GPU's rates are scaled by 1.00, 1.05, ..., 4.00; the headroom is the largest
        factor still predicted not to starve, minus 1 (0 if it starves already; 3 means "at
        least 3"). One batch call of 61 rows.
        """
        return float(self.headrooms(row[None], p_starving)[0])

    def headrooms(self, rows: np.ndarray, p_starving: float = 0.5) -> np.ndarray:
        """(G,) :meth:`headroom` of G feature rows (G, len(FEATURES)), in one batch call."""
        rows = np.asarray(rows, float)
        if len(rows) == 0:
            return np.zeros(0)
        steps = len(HEADROOM_STEPS)
        pred = self.evaluate(np.vstack([_scaled(r, HEADROOM_STEPS) for r in rows]),
                             STARVATION_FIELDS)
        ok = (pred.starvation_probability < p_starving).reshape(len(rows), steps)
        # index of the first starving factor (steps if none); 0 starving already -> 0
        first_bad = np.where(ok.all(axis=1), steps, np.argmin(ok, axis=1))
        last = HEADROOM_STEPS[np.maximum(first_bad - 1, 0)]
        return np.where(ok[:, 0], last - 1.0, 0.0)

    def evaluate(self, features: np.ndarray,
                 fields: Collection[str] | None = None) -> Predictions:
        """Surrogate predictions for a (n, len(FEATURES)) feature matrix.

        ``fields``: the :class:`Predictions` fields the caller reads (None: all); the
        surrogate runs only their models, the other fields may be NaN.

        Repeated rows are predicted once (the surrogate answers each row on its own, so the
        result is the same): a local search scores one sender-side row per moved set and
        receiver, i.e. the same row several times.
        """
        x = self._at_slot_rank(np.asarray(features, dtype=float))
        if isinstance(self.predictor, PredictionMemo):
            return self.predictor.predict(x, fields)  # each distinct row once
        if len(x) > 1:
            uniq, inv = np.unique(x, axis=0, return_inverse=True)
            # two rows at least: a batch of one is summed in another order (ulp changes)
            if 2 <= len(uniq) < len(x):
                return self.predictor.predict(uniq, fields).take(inv.reshape(-1))
        return self.predictor.predict(x, fields)

    def _at_slot_rank(self, x: np.ndarray) -> np.ndarray:
        """Rows whose ``max_rank`` is the GPU's ``--max-lora-rank`` (:meth:`slot_rank`):
        vLLM sizes every slot and LoRA kernel at that rank, and the surrogate learnt from
        servers whose largest adapter rank was their ``max_lora_rank``."""
        if len(x) == 0:
            return x
        col = x[:, _I_MAX_RANK]
        idx = np.minimum(np.searchsorted(self._slots, col), len(self._slots) - 1)
        slot = np.maximum(self._slots[idx], col)
        if np.array_equal(slot, col):
            return x
        x = x.copy()
        x[:, _I_MAX_RANK] = slot
        return x

    def with_memo(self) -> PlacementProblem:
        """The same problem with its surrogate answers remembered (:mod:`.memo`): for the
        searches of one placement, which ask for the same rows many times (same answers)."""
        if isinstance(self.predictor, PredictionMemo):
            return self
        return dataclasses.replace(self, predictor=PredictionMemo(self.predictor))

    def assignment(
        self, adapters: Sequence[Adapter], max_loras: int, pred: Predictions | None = None,
        index: int = 0,
    ) -> GpuAssignment:
        """A GPU serving ``adapters`` with ``max_loras`` slots, with the surrogate's view."""
        row = PrefixStats(self, adapters).row(len(adapters), max_loras)
        if pred is None:
            pred = self.evaluate(row[None])
            index = 0
        return self._assigned(adapters, max_loras, pred, index, self.headroom(row))

    def assignments(self, groups: Sequence[Sequence[Adapter]], loras: Sequence[int]
                    ) -> list[GpuAssignment]:
        """:meth:`assignment` of G GPUs at once (two batch surrogate calls in all)."""
        if not groups:
            return []
        rows = np.vstack([PrefixStats(self, g).row(len(g), int(m))
                          for g, m in zip(groups, loras, strict=True)])
        pred = self.evaluate(rows)
        room = self.headrooms(rows)
        return [self._assigned(g, int(m), pred, k, float(room[k]))
                for k, (g, m) in enumerate(zip(groups, loras, strict=True))]

    def _assigned(self, adapters: Sequence[Adapter], max_loras: int, pred: Predictions,
                  index: int, headroom: float) -> GpuAssignment:
        predicted = {
            "total_throughput_tok_s": float(pred.total_throughput_tok_s[index]),
            "mean_itl_ms": float(pred.mean_itl_ms[index]),
            "mean_ttft_ms": float(pred.mean_ttft_ms[index]),
            "p99_ttft_ms": float(pred.p99_ttft_ms[index]),
            "starvation_probability": float(pred.starvation_probability[index]),
            "offered_throughput_tok_s": self.offered_tok_s(adapters),
            "headroom": headroom,
            "out_of_envelope": bool(pred.out_of_envelope[index]),
        }
        return GpuAssignment(
            adapters=tuple(adapters), max_loras=int(max_loras),
            max_cpu_loras=max(int(max_loras), len(adapters)),
            max_lora_rank=self.slot_rank(max(a.rank for a in adapters)),
            max_num_seqs=self.max_num_seqs, predicted=predicted,
        )


HEADROOM_STEPS = np.round(np.arange(1.0, 4.0001, 0.05), 2)
#: The fields of a starvation check (:meth:`PlacementProblem.evaluate`).
STARVATION_FIELDS: tuple[str, ...] = ("starvation_probability",)


def _scaled(row: np.ndarray, factors: np.ndarray) -> np.ndarray:
    rows = np.repeat(row[None], len(factors), axis=0)
    i, j = FEATURES.index("sum_rate_req_s"), FEATURES.index("std_rate_req_s")
    rows[:, i] *= factors
    rows[:, j] *= factors
    return rows


class PrefixStats:
    """Surrogate features of every prefix ``adapters[:k]`` of an ordered list, in O(1) each.

    Prefix sums of rates, squared rates, ranks, squared ranks, the running maximum rank and
    the rate-weighted mean lengths give the feature rows (see
    :func:`loratwin.surrogate.features.gpu_features`, whose definitions they reproduce).
    """

    def __init__(self, problem: PlacementProblem, adapters: Sequence[Adapter]) -> None:
        self.adapters = list(adapters)
        rates = np.array([a.rate for a in self.adapters], float)
        ranks = np.array([a.rank for a in self.adapters], float)
        lengths = np.array([problem.mean_lengths(a) for a in self.adapters], float).reshape(-1, 2)
        zero = np.zeros(1)
        self._r = np.concatenate([zero, np.cumsum(rates)])
        self._r2 = np.concatenate([zero, np.cumsum(rates * rates)])
        self._k = np.concatenate([zero, np.cumsum(ranks)])
        self._k2 = np.concatenate([zero, np.cumsum(ranks * ranks)])
        self._kmax = np.concatenate([zero, np.maximum.accumulate(ranks)]) if len(ranks) else zero
        self._wi = np.concatenate([zero, np.cumsum(rates * lengths[:, 0])])
        self._wo = np.concatenate([zero, np.cumsum(rates * lengths[:, 1])])
        self._li = np.concatenate([zero, np.cumsum(lengths[:, 0])])
        self._lo = np.concatenate([zero, np.cumsum(lengths[:, 1])])
        self._cv = problem.arrival_cv

    def max_rank(self, k: int) -> int:
        """Largest rank among the first k adapters."""
        return int(self._kmax[k])

    def rows(self, ks: np.ndarray, loras: np.ndarray) -> np.ndarray:
        """Feature rows (n, len(FEATURES)) for prefixes ``ks`` with ``max_loras`` ``loras``."""
        ks = np.asarray(ks, dtype=np.int64)
        n = ks.astype(float)
        s = self._r[ks]
        mean_r = s / n
        std_r = np.sqrt(np.maximum(self._r2[ks] / n - mean_r * mean_r, 0.0))
        mean_k = self._k[ks] / n
        std_k = np.sqrt(np.maximum(self._k2[ks] / n - mean_k * mean_k, 0.0))
        pos = s > 0
        mi = np.where(pos, self._wi[ks] / np.where(pos, s, 1.0), self._li[ks] / n)
        mo = np.where(pos, self._wo[ks] / np.where(pos, s, 1.0), self._lo[ks] / n)
        out = np.column_stack([
            s, std_r, self._kmax[ks], mean_k, std_k, np.asarray(loras, float), n, mi, mo,
            np.full(ks.shape, self._cv),
        ])
        assert out.shape[1] == len(FEATURES)
        return out

    def row(self, k: int, loras: int) -> np.ndarray:
        """One feature row (len(FEATURES),)."""
        return self.rows(np.array([k]), np.array([loras]))[0]


def group_rows(problem: PlacementProblem, groups: Sequence[Sequence[Adapter]]) -> np.ndarray:
    """Surrogate feature rows (G, len(FEATURES)) of G GPUs, ``max_loras`` column set to 1.

    Same definitions as :class:`~loratwin.placement.problem.PrefixStats` (population standard
    deviations, rate-weighted mean lengths or plain means when every rate is 0), computed for
    all groups at once with ``np.add.reduceat``. ``groups`` may hold rate pieces (adapters
    with a fraction of their rate).
    """
    sizes = np.array([len(g) for g in groups], dtype=np.int64)
    if sizes.size == 0:
        return np.zeros((0, len(FEATURES)))
    if (sizes < 1).any():
        raise ValueError("every GPU needs at least one adapter")
    flat = [a for g in groups for a in g]
    rate = np.fromiter((a.rate for a in flat), float, len(flat))
    rank = np.fromiter((a.rank for a in flat), float, len(flat))
    lengths = np.array([problem.mean_lengths(a) for a in flat], float).reshape(-1, 2)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n = sizes.astype(float)

    def red(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(x, starts)

    s = red(rate)
    mean_r = s / n
    std_r = np.sqrt(np.maximum(red(rate * rate) / n - mean_r * mean_r, 0.0))
    kmax = np.maximum.reduceat(rank, starts)
    mean_k = red(rank) / n
    std_k = np.sqrt(np.maximum(red(rank * rank) / n - mean_k * mean_k, 0.0))
    pos = s > 0
    safe_s = np.where(pos, s, 1.0)
    mi = np.where(pos, red(rate * lengths[:, 0]) / safe_s, red(lengths[:, 0]) / n)
    mo = np.where(pos, red(rate * lengths[:, 1]) / safe_s, red(lengths[:, 1]) / n)
    return np.column_stack([
        s, std_r, kmax, mean_k, std_k, np.ones_like(s), n, mi, mo,
        np.full(s.shape, problem.arrival_cv),
    ])
