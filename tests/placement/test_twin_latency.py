"""The twin's verdict on the latency target (placement/twin_latency.py)."""

from __future__ import annotations

import dataclasses
import math

from loratwin.placement.twin_latency import twin_latency
from loratwin.placement.types import GpuAssignment, Placement, SloTradeoff
from loratwin.workload.types import Adapter


def _gpu(verified: dict | None) -> GpuAssignment:
    return GpuAssignment(adapters=(Adapter("a", 8, 1.0),), max_loras=1, max_lora_rank=8,
                         max_cpu_loras=1, predicted={"mean_ttft_ms": 500.0},
                         verified=verified)


def _tradeoff(gpus: int, p99: float | None = 10_000.0, met: bool = True) -> SloTradeoff:
    return SloTradeoff(mean_ttft_ms=2000.0, p99_ttft_ms=p99, gpus=gpus,
                       worst_mean_ttft_ms=500.0, worst_p99_ttft_ms=math.nan,
                       gpus_for_target=gpus if met else gpus + 1)


def _v(mean: float, p99: float, memory_error: bool = False) -> dict:
    return {"mean_ttft_ms": mean, "p99_ttft_ms": p99, "memory_error": memory_error,
            "starvation": False}


def test_the_twin_names_the_gpus_above_the_target() -> None:
    p = Placement("loratwin", (_gpu(_v(900.0, 4000.0)), _gpu(_v(6800.0, 50_000.0)),
                               _gpu(_v(1500.0, 12_000.0))), 0.0)
    t = twin_latency(p, _tradeoff(3))
    assert t is not None and not t.met
    assert t.missed == (1, 2)  # GPU 2 by its p99 alone
    assert t.worst_mean_ttft_ms == 6800.0 and t.worst_p99_ttft_ms == 50_000.0
    line = t.describe()
    assert "missed on GPU(s) 1, 2" in line and "optimistic" in line
    assert t.to_dict()["missed_gpus"] == [1, 2]
    # without a p99 target, GPU 2 meets the mean target
    assert twin_latency(p, _tradeoff(3, p99=None)).missed == (1,)
    # a prediction that already said "missed" is not called optimistic
    assert "optimistic" not in twin_latency(p, _tradeoff(3, met=False)).describe()


def test_met_unverified_and_failed_gpus() -> None:
    ok = Placement("loratwin", (_gpu(_v(900.0, 4000.0)),), 0.0)
    t = twin_latency(ok, _tradeoff(1))
    assert t is not None and t.met and t.describe().startswith("twin: latency target met")
    assert twin_latency(Placement("loratwin", (_gpu(None),), 0.0), _tradeoff(1)) is None
    failed = dataclasses.replace(ok, servers=(*ok.servers, _gpu(_v(math.nan, math.nan, True))))
    assert twin_latency(failed, _tradeoff(2)).missed == (1,)
