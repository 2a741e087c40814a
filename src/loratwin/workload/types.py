"""Plain value types shared by the workload generators and the twin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Adapter:
    """One LoRA adapter of a workload.

    Attributes
    ----------
    id:
        Unique adapter name (used in ``--lora-modules``).
    rank:
        LoRA rank r (8, 16, 32, 64, ...).
    rate:
        Mean request arrival rate in req/s.
    mean_input_tokens, mean_output_tokens:
        Optional per-adapter mean prompt / output length in tokens. ``None`` means "use the
        workload's length distribution as it is".
    """

    id: str
    rank: int
    rate: float
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None


@dataclass(frozen=True)
class Requests:
    """The requests of one run, in arrival order (structure of arrays, length n).

    Attributes
    ----------
    arrival_s:
        float64 (n,), arrival time in s since the start of the run, non-decreasing.
    adapter:
        int32 (n,), index of the request's adapter in the run's adapter list.
    input_tokens:
        int32 (n,), prompt length in tokens (>= 1).
    output_tokens:
        int32 (n,), number of tokens the request generates (>= 1); requests generate exactly
        this many tokens (``ignore_eos``, as in vLLM's benchmark_serving).
    """

    arrival_s: np.ndarray
    adapter: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])

    @staticmethod
    def empty() -> Requests:
        return Requests(
            np.zeros(0, np.float64),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
            np.zeros(0, np.int32),
        )
