"""The latency target checked in the twin: which GPUs of a verified placement miss it.

The default objective of ``loratwin place`` sizes GPUs to a TTFT target on the surrogate's
prediction (:class:`~loratwin.placement.types.SloTradeoff`). The surrogate sees each GPU's
rate-weighted mean request lengths only, so on workloads whose adapters' lengths differ by
orders of magnitude (the Azure traces: mean prompts of 12 to 4,110 tokens per adapter) its
TTFT can be far below the twin's. After a twin verification (``--verify``), this module states
the twin's verdict on the same target next to the prediction, so that no output claims a
latency the twin contradicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from loratwin.placement.types import Placement, SloTradeoff


@dataclass(frozen=True)
class TwinLatency:
    """The twin's verdict on the latency target of a verified placement.

    Attributes
    ----------
    missed:
        Indices of the GPUs whose twin mean TTFT (or p99 TTFT, where the target has one)
        exceeds the target.
    worst_mean_ttft_ms, worst_p99_ttft_ms:
        Highest twin mean / p99 TTFT over the verified GPUs, ms.
    target_text:
        The target in words (:meth:`SloTradeoff.target_text`, p99 checked).
    predicted_met:
        The surrogate predicted the placement to meet the target (``SloTradeoff.met``).
    """

    missed: tuple[int, ...]
    worst_mean_ttft_ms: float
    worst_p99_ttft_ms: float
    target_text: str
    predicted_met: bool

    @property
    def met(self) -> bool:
        return not self.missed

    def describe(self) -> str:
        """One line for the terminal."""
        at = (f"worst GPU mean TTFT {self.worst_mean_ttft_ms / 1e3:.1f} s, "
              f"p99 {self.worst_p99_ttft_ms / 1e3:.1f} s")
        if self.met:
            return f"twin: latency target met on every GPU ({at}): {self.target_text}"
        gpus = ", ".join(map(str, self.missed))
        text = f"twin: latency target missed on GPU(s) {gpus} ({at}): {self.target_text}"
        if self.predicted_met:
            text += "; the surrogate predicted it met: its TTFT is optimistic for this workload"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {"met": self.met, "missed_gpus": list(self.missed),
                "worst_mean_ttft_ms": self.worst_mean_ttft_ms,
                "worst_p99_ttft_ms": self.worst_p99_ttft_ms}


def twin_latency(placement: Placement, tradeoff: SloTradeoff) -> TwinLatency | None:
    """The twin's verdict on ``tradeoff``'s target for the verified GPUs of ``placement``.

    Returns ``None`` when no GPU carries a twin verification (``GpuAssignment.verified``) or
    no verified GPU reports a TTFT. A GPU that failed to start counts as missing the target.
    """
    rows = [(k, g.verified) for k, g in enumerate(placement.servers) if g.verified]
    if not rows:
        return None
    missed: list[int] = []
    means: list[float] = []
    p99s: list[float] = []
    for k, v in rows:
        mean = float(v.get("mean_ttft_ms") or math.nan)
        p99 = float(v.get("p99_ttft_ms") or math.nan)
        if v.get("memory_error"):
            missed.append(k)
            continue
        if math.isfinite(mean):
            means.append(mean)
        if math.isfinite(p99):
            p99s.append(p99)
        over_mean = not math.isfinite(mean) or mean > tradeoff.mean_ttft_ms
        over_p99 = (tradeoff.p99_ttft_ms is not None and math.isfinite(p99)
                    and p99 > tradeoff.p99_ttft_ms)
        if over_mean or over_p99:
            missed.append(k)
    if not means:
        return None
    return TwinLatency(tuple(missed), max(means), max(p99s) if p99s else math.nan,
                       tradeoff.target_text(p99_checked=True), tradeoff.met)
