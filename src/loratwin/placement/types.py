"""Plain types of the placement layer: the problem, one GPU's assignment, a placement."""

from __future__ import annotations

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

    def predict(self, features: np.ndarray) -> Predictions:
        """features: (n, len(FEATURES)) in the order of ``surrogate.features.FEATURES``."""
        ...


@dataclass(frozen=True)
class GpuAssignment:
    """One GPU of a placement: its adapters and vLLM flags, with predicted/verified metrics.

    ``predicted`` holds the surrogate's ``total_throughput_tok_s``, ``mean_itl_ms``,
    ``mean_ttft_ms``, ``starvation_probability``, ``offered_throughput_tok_s`` and
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
class Placement:
    """The result of a placement algorithm."""

    algorithm: str
    servers: tuple[GpuAssignment, ...]
    placement_s: float
    notes: tuple[str, ...] = ()

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
