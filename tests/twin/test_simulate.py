"""The public simulate() API: determinism, metrics, memory errors, invalid configs."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.errors import ConfigError
from loratwin.profile.store import load_profile
from loratwin.twin import ClientConfig, ServerConfig, simulate
from loratwin.twin.runconfig import default_lengths
from loratwin.twin.validate import smape
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter


@pytest.fixture(scope="module")
def llama():
    return load_profile("llama-3.1-8b-instruct")


def _run(profile, n=16, rate=0.1, max_loras=8, seed=0, duration=600.0, **kw):
    adapters = [Adapter(f"a{i}", (8, 16)[i % 2], rate) for i in range(n)]
    req = generate_requests(adapters, duration, ArrivalSpec(), default_lengths(profile), seed)
    server = ServerConfig(max_loras=max_loras, max_cpu_loras=n, max_lora_rank=16,
                          max_num_seqs=2048, **kw)
    return simulate(profile, server, adapters, req, ClientConfig(duration_s=duration),
                    record_requests=True, record_timeseries=True)


def test_same_seed_same_result_and_different_seed_differs(llama) -> None:
    a, b, c = _run(llama, seed=1), _run(llama, seed=1), _run(llama, seed=2)
    assert a.metrics.total_throughput_tok_s == b.metrics.total_throughput_tok_s
    assert a.metrics.mean_ttft_ms == b.metrics.mean_ttft_ms
    assert a.metrics.total_throughput_tok_s != c.metrics.total_throughput_tok_s


def test_light_load_serves_the_offered_load(llama) -> None:
    m = _run(llama, n=16, rate=0.1).metrics
    assert not m.starvation and not m.memory_error
    assert m.total_throughput_tok_s == pytest.approx(m.offered_throughput_tok_s, rel=0.05)
    # an 8B model on an H100 decodes a near-empty batch in ~13-16 ms per token
    assert 11.0 < m.mean_itl_ms < 18.0
    assert m.mean_ttft_ms < 100.0
    assert m.completed > 0.9 * m.arrivals


def test_overload_starves_and_queues(llama) -> None:
    m = _run(llama, n=64, rate=1.6, max_loras=8).metrics
    assert m.starvation
    assert m.mean_num_waiting > 100
    assert m.mean_ttft_ms > 10_000


def test_records_are_consistent(llama) -> None:
    res = _run(llama)
    req = res.requests
    done = req[req["completed"]]
    assert len(done) == res.metrics.completed
    assert (done["finish_s"] >= done["first_token_s"]).all()
    assert (done["ttft_ms"] > 0).all()
    ts = res.timeseries
    assert ts["dt_s"].min() > 0 and ts["t_s"].is_monotonic_increasing
    per = res.per_adapter
    assert per["completed"].sum() == res.metrics.completed
    tot = per["total_throughput_tok_s"].sum()
    assert tot == pytest.approx(res.metrics.total_throughput_tok_s, rel=1e-9)


def test_memory_error_is_a_result_not_an_exception(llama) -> None:
    adapters = [Adapter("a", 32, 1.0)]
    req = generate_requests(adapters, 60, ArrivalSpec(), default_lengths(llama), 0)
    res = simulate(llama, ServerConfig(max_loras=256, max_lora_rank=32), adapters, req,
                   ClientConfig(duration_s=60))
    assert res.metrics.memory_error and res.metrics.memory_error_reason == "cuda_oom"
    assert res.metrics.completed == 0


def test_rank_above_max_lora_rank_is_rejected(llama) -> None:
    adapters = [Adapter("big", 64, 1.0)]
    req = generate_requests(adapters, 10, ArrivalSpec(), default_lengths(llama), 0)
    with pytest.raises(ConfigError, match="max_lora_rank"):
        simulate(llama, ServerConfig(max_lora_rank=16), adapters, req, ClientConfig(duration_s=10))


def test_smape_is_the_papers_form() -> None:
    assert smape(np.array([110.0]), np.array([100.0])) == pytest.approx(100 * 10 / 210)
    assert smape(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
