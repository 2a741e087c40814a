"""One single-GPU configuration of the surrogate data set, and its evaluation in the twin.

A :class:`GpuPoint` fixes everything a run needs: the served adapters' ranks and rates, the
vLLM flags (``max_loras``, ``max_cpu_loras`` = served adapters as in the measured runs,
``max_lora_rank`` = the largest rank, ``max_num_seqs`` 2048), the request length means and
the arrival burstiness. :func:`evaluate_point` simulates one benchmark window and returns the
features, the targets (:mod:`.targets`) and every other metric the twin reports, so that a
later surrogate with new targets can reuse the rows.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from loratwin.profile.model import Profile
from loratwin.surrogate.features import FEATURES, gpu_features
from loratwin.surrogate.targets import REGRESSION_TARGETS
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.simulate import simulate
from loratwin.workload.lengths import BoundedHeavyTailed
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter

#: Length window of the data set: wide enough for trace workloads (Azure conversation
#: prompts average 1,155 tokens, up to 14,050).
MAX_INPUT_TOKENS = 16384
MAX_TOTAL_TOKENS = 20480


@dataclass(frozen=True)
class GpuPoint:
    """A single-GPU configuration (rates in req/s, lengths in tokens, window in s)."""

    ranks: tuple[int, ...]
    rates: tuple[float, ...]
    max_loras: int
    mean_input_tokens: float
    mean_output_tokens: float
    arrival_cv: float = 1.0
    max_num_seqs: int = 2048
    duration_s: float = 3600.0
    seed: int = 0
    origin: str = "grid"
    vllm_version: str | None = None  # None: the profile's release

    @property
    def served_adapters(self) -> int:
        return len(self.ranks)

    def adapters(self) -> list[Adapter]:
        """The served adapters (ids ``a0``, ``a1``, ...)."""
        return [Adapter(f"a{i}", r, q) for i, (r, q) in enumerate(zip(self.ranks, self.rates,
                                                                      strict=True))]

    def server(self) -> ServerConfig:
        """The vLLM flags of the point."""
        return ServerConfig(
            vllm_version=self.vllm_version,
            max_loras=self.max_loras, max_cpu_loras=max(self.max_loras, len(self.ranks)),
            max_lora_rank=max(self.ranks), max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=max(2048, self.max_num_seqs),
        )

    def to_json(self) -> str:
        """Compact JSON spec (stored with every data-set row for provenance; without
        ``vllm_version`` when unset, as in data sets made before it existed)."""
        d = asdict(self)
        if d["vllm_version"] is None:
            del d["vllm_version"]
        return json.dumps(d, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> GpuPoint:
        d = json.loads(text)
        d["ranks"] = tuple(d["ranks"])
        d["rates"] = tuple(d["rates"])
        return GpuPoint(**d)


#: Up to these means the point uses vLLM's ShareGPT window (prompt <= 1024, total <= 2048),
#: as the measured runs did; above them the wide window.
SHAREGPT_WINDOW_MAX_MEANS = (512.0, 512.0)


def lengths_for(profile: Profile, mean_input: float, mean_output: float) -> BoundedHeavyTailed:
    """Length model at given means: the profile's ShareGPT spread (CV) and, up to
    :data:`SHAREGPT_WINDOW_MAX_MEANS`, vLLM's ShareGPT window, else the wide window."""
    cv_in = profile.sharegpt_std_input_tokens / profile.sharegpt_mean_input_tokens
    cv_out = profile.sharegpt_std_output_tokens / profile.sharegpt_mean_output_tokens
    sharegpt = (mean_input <= SHAREGPT_WINDOW_MAX_MEANS[0]
                and mean_output <= SHAREGPT_WINDOW_MAX_MEANS[1])
    window = {} if sharegpt else {"max_input": MAX_INPUT_TOKENS, "max_total": MAX_TOTAL_TOKENS}
    # soft std targets (cv_*): the ShareGPT CV where the window allows it, else about the
    # largest std it allows; hard std_* targets fail e.g. at means 447 / 42 in the window
    return BoundedHeavyTailed(
        mean_input=mean_input, mean_output=mean_output, cv_input=cv_in, cv_output=cv_out,
        **window,
    )


def point_lengths(profile: Profile, point: GpuPoint) -> BoundedHeavyTailed:
    """The point's length model (see :func:`lengths_for`)."""
    return lengths_for(profile, point.mean_input_tokens, point.mean_output_tokens)


def evaluate_point(profile: Profile, point: GpuPoint) -> dict[str, Any]:
    """Simulate one point; returns a data-set row (features, targets and diagnostics).

    The row holds the features, every field of the run's
    :class:`~loratwin.twin.metrics.SimMetrics` (among them the targets of
    :mod:`loratwin.surrogate.targets`), the point's origin and JSON spec. Memory errors are
    returned with ``memory_error`` True and NaN targets (the design avoids them, placement
    checks memory separately).
    """
    adapters = point.adapters()
    arrivals = (ArrivalSpec() if point.arrival_cv == 1.0
                else ArrivalSpec(process="gamma", cv=point.arrival_cv))
    req = generate_requests(adapters, point.duration_s, arrivals, point_lengths(profile, point),
                            point.seed)
    res = simulate(
        profile, point.server(), adapters, req, ClientConfig(duration_s=point.duration_s)
    )
    m = res.metrics
    x = gpu_features(
        adapters, point.max_loras, default_input_tokens=point.mean_input_tokens,
        default_output_tokens=point.mean_output_tokens, arrival_cv=point.arrival_cv,
    )
    row: dict[str, Any] = dict(zip(FEATURES, map(float, x), strict=True))
    row.update(asdict(m))  # every metric of the run: the targets and the diagnostics
    row.update(starvation=bool(m.starvation), memory_error=bool(m.memory_error),
               memory_error_reason=m.memory_error_reason or "", origin=point.origin,
               point=point.to_json())
    if m.memory_error:
        for t in REGRESSION_TARGETS:
            row[t] = float("nan")
    row["mean_input_tokens_realised"] = float(np.mean(req.input_tokens)) if len(req) else 0.0
    return row
