"""Plain types of the placement layer: the problem, one GPU's assignment, a placement."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

import numpy as np

from loratwin.workload.types import Adapter

#: The papers' testing points / max_loras grid (Agullo et al., arXiv 2602.24044).
PAPER_GRID: tuple[int, ...] = (8, 16, 32, 64, 96, 128, 160, 192, 256, 320, 384, 448, 512, 576)


@dataclass(frozen=True)
class Predictions:
    """Surrogate answers for n candidate GPU configurations (arrays of shape (n,)).

    Units: tok/s for throughput, ms for latencies (``p99_ttft_ms``: the 99th percentile of
    TTFT, NaN when the surrogate has no model for it); ``starvation_probability`` in [0, 1].
    Fields not asked for (``GpuPredictor.predict(..., fields)``) may be NaN.
    """

    total_throughput_tok_s: np.ndarray
    mean_itl_ms: np.ndarray
    mean_ttft_ms: np.ndarray
    p99_ttft_ms: np.ndarray
    starvation_probability: np.ndarray
    out_of_envelope: np.ndarray

    def take(self, idx: np.ndarray) -> Predictions:
        """The predictions of the rows ``idx`` (an index or boolean array)."""
        return Predictions(**{f.name: np.asarray(getattr(self, f.name))[idx]
                              for f in fields(self)})

    @staticmethod
    def empty() -> Predictions:
        """Predictions of no configuration."""
        z = np.zeros(0)
        return Predictions(z, z, z, z, z, np.zeros(0, bool))


class GpuPredictor(Protocol):
    """What placement needs from a surrogate: batch predictions on feature rows."""

    def predict(self, features: np.ndarray,
                fields: Collection[str] | None = None) -> Predictions:
        """features: (n, len(FEATURES)) in the order of ``surrogate.features.FEATURES``.

        ``fields``: the :class:`Predictions` fields the caller reads (None: all). A predictor
        may compute only those (the others NaN) or all of them; a row's answer in a field
        must not depend on the fields asked for.
        """
        ...


@dataclass(frozen=True)
class GpuAssignment:
    """One GPU of a placement: its adapters and vLLM flags, with predicted/verified metrics.

    ``predicted`` holds the surrogate's ``total_throughput_tok_s``, ``mean_itl_ms``,
    ``mean_ttft_ms``, ``p99_ttft_ms``, ``starvation_probability``, ``offered_throughput_tok_s`` and
    ``headroom`` (1 - offered / predicted throughput); ``verified`` the twin's metrics when
    verification ran.
    """

    adapters: tuple[Adapter, ...]
    max_loras: int
    max_cpu_loras: int
    max_lora_rank: int
    max_num_seqs: int = 2048
    predicted: dict[str, float] = field(default_factory=dict)
    verified: dict[str, Any] | None = None

    @property
    def total_rate(self) -> float:
        """Sum of the adapters' rates, req/s."""
        return float(sum(a.rate for a in self.adapters))


@dataclass(frozen=True)
class SloTradeoff:
    """The latency target against the GPU count (predicted by the surrogate).

    Attributes
    ----------
    mean_ttft_ms, p99_ttft_ms:
        The per-GPU target (mean TTFT, and p99 TTFT or None), ms.
    gpus:
        GPUs of the placement (the fewest by the papers' starvation rule).
    worst_mean_ttft_ms, worst_p99_ttft_ms:
        Highest predicted mean / p99 TTFT over those GPUs, ms (p99 NaN if not predicted).
    gpus_for_target:
        Fewest GPUs whose balanced placement meets the target on every GPU (``gpus`` when
        the placement meets it; None if none up to twice the GPUs does).
    target_worst_mean_ttft_ms, target_worst_p99_ttft_ms:
        The same highest TTFTs on ``gpus_for_target`` GPUs, ms.
    """

    mean_ttft_ms: float
    p99_ttft_ms: float | None
    gpus: int
    worst_mean_ttft_ms: float
    worst_p99_ttft_ms: float
    gpus_for_target: int | None
    target_worst_mean_ttft_ms: float | None = None
    target_worst_p99_ttft_ms: float | None = None

    @property
    def met(self) -> bool:
        """The placement itself meets the target: its GPU count is the target's and its
        worst predicted TTFTs are within the target (the p99 part where p99 is predicted)."""
        if self.gpus_for_target != self.gpus or self.worst_mean_ttft_ms > self.mean_ttft_ms:
            return False
        return not (self.p99_ttft_ms is not None and self.p99_predicted
                    and self.worst_p99_ttft_ms > self.p99_ttft_ms)

    @property
    def p99_predicted(self) -> bool:
        """The surrogate predicted p99 TTFT (else the target is the mean alone)."""
        return math.isfinite(self.worst_p99_ttft_ms)

    def target_text(self, p99_checked: bool | None = None) -> str:
        """The target in words; the p99 part says "not checked" unless p99 is checked
        (default: where the surrogate predicts p99; the twin always measures it)."""
        if self.p99_ttft_ms is None:
            return f"mean TTFT <= {self.mean_ttft_ms / 1e3:g} s"
        if not (self.p99_predicted if p99_checked is None else p99_checked):
            return (f"mean TTFT <= {self.mean_ttft_ms / 1e3:g} s (p99 <= "
                    f"{self.p99_ttft_ms / 1e3:g} s not checked: the surrogate has no p99 model)")
        return f"mean TTFT <= {self.mean_ttft_ms / 1e3:g} s, p99 <= {self.p99_ttft_ms / 1e3:g} s"

    def describe(self) -> str:
        """One line for the terminal."""
        def ttft(mean: float | None, p99: float | None) -> str:
            text = f"worst GPU mean TTFT {(mean or 0.0) / 1e3:.1f} s"
            if p99 is not None and math.isfinite(p99):
                text += f", p99 {p99 / 1e3:.1f} s"
            return text

        at = "predicted " + ttft(self.worst_mean_ttft_ms, self.worst_p99_ttft_ms)
        if self.met:
            return f"latency target met on every GPU ({at}): {self.target_text()}"
        if self.gpus_for_target is None:
            return (f"{self.gpus} GPU(s) at the papers' rule ({at}); no placement up to "
                    f"{2 * self.gpus + 1} GPUs meets {self.target_text()}")
        return (f"{self.gpus} GPU(s) at the papers' rule ({at}), {self.gpus_for_target} "
                f"GPU(s) for {self.target_text()} "
                f"(predicted "
                f"{ttft(self.target_worst_mean_ttft_ms, self.target_worst_p99_ttft_ms)})")

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in (
            "mean_ttft_ms", "p99_ttft_ms", "gpus", "worst_mean_ttft_ms", "worst_p99_ttft_ms",
            "gpus_for_target", "target_worst_mean_ttft_ms", "target_worst_p99_ttft_ms")}
        d = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
             for k, v in d.items()}
        d["met"] = self.met
        return d


@dataclass(frozen=True)
class Placement:
    """The result of a placement algorithm (``tradeoff``: the latency target against the GPU
    count, for ``loratwin``'s default objective)."""

    algorithm: str
    servers: tuple[GpuAssignment, ...]
    placement_s: float
    notes: tuple[str, ...] = ()
    tradeoff: SloTradeoff | None = None

    @property
    def gpus(self) -> int:
        return len(self.servers)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the ``--json`` schema of ``loratwin place``)."""
        return {
            "gpus": self.gpus,
            "algorithm": self.algorithm,
            "placement_s": self.placement_s,
            "notes": list(self.notes),
            "tradeoff": None if self.tradeoff is None else self.tradeoff.to_dict(),
            "servers": [
                {
                    "adapters": [a.id for a in s.adapters],
                    "ranks": [a.rank for a in s.adapters],
                    "total_rate_req_s": s.total_rate,
                    "max_loras": s.max_loras,
                    "max_cpu_loras": s.max_cpu_loras,
                    "max_lora_rank": s.max_lora_rank,
                    "max_num_seqs": s.max_num_seqs,
                    "predicted": s.predicted,
                    "verified": s.verified,
                }
                for s in self.servers
            ],
        }
