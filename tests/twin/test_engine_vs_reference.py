"""The fast event loop must reproduce the literal vLLM scheduling loop of each release,
request by request (times, preemptions, adapter loads) and step by step (traces)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.engine import run_engine
from loratwin.twin.trace import StepTrace
from loratwin.workload.types import Requests
from tests.twin import reference_0_8_5, reference_0_32, reference_0_33
from tests.twin.stepcost import UnitStepCost

REFERENCES: dict[str, Callable[..., tuple[list[float], list[float], int, int]]] = {
    "0.8.5": reference_0_8_5.reference_run,
    "0.32": reference_0_32.reference_run,
    "0.33": reference_0_33.reference_run,
}


def _random_case(seed: int, version: str) -> tuple[ServerConfig, list[int], Requests,
                                                   ClientConfig]:
    rng = np.random.default_rng(seed)
    n_ad = int(rng.integers(1, 13))
    max_loras = int(rng.integers(1, min(n_ad, 4) + 1))
    cpu = int(rng.integers(max_loras, n_ad + 2))
    seqs = int(rng.integers(2, 48))
    budget = int(rng.integers(max(seqs, 32), 512))
    # a small KV cache (low gpu_memory_utilization) forces preemptions
    gmu = float(rng.choice([0.9, 0.3, 0.29, 0.28, 0.275]))
    extra = {}
    if version != "0.8.5" and rng.random() < 0.25:
        extra["async_scheduling"] = False
    server = ServerConfig(
        vllm_version=version, max_loras=max_loras, max_cpu_loras=cpu, max_lora_rank=16,
        max_num_seqs=seqs, max_num_batched_tokens=budget, gpu_memory_utilization=gmu,
        max_model_len=2048, **extra,
    )
    ranks = [int(rng.choice([8, 16])) for _ in range(n_ad)]
    duration = float(rng.uniform(20, 60))
    rate = float(rng.uniform(0.5, 40))
    n = int(rng.poisson(rate * duration))
    arrival = np.sort(rng.uniform(0, duration * 1.05, n))
    if rng.random() < 0.3:  # bursts of simultaneous arrivals
        arrival = np.round(arrival, 0)
    req = Requests(
        arrival,
        rng.integers(0, n_ad, n).astype(np.int32),
        rng.integers(1, 700, n).astype(np.int32),
        rng.integers(1, 300, n).astype(np.int32),
    )
    ports = int(rng.integers(20, 200)) if rng.random() < 0.3 else None
    client = ClientConfig(
        duration_s=duration, max_ports=ports, time_wait_s=float(rng.uniform(0, 3))
    )
    return server, ranks, req, client


@pytest.fixture(scope="module")
def llama() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


@pytest.mark.parametrize("version", list(REFERENCES))
@pytest.mark.parametrize("seed", range(20))
def test_engine_matches_reference(llama: Profile, version: str, seed: int) -> None:
    server, ranks, req, client = _random_case(seed, version)
    raw = run_engine(llama, server, ranks, req, client)
    first, finish, preemptions, loads = REFERENCES[version](llama, server, ranks, req, client)
    np.testing.assert_allclose(raw.first_token_s, np.array(first), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(raw.finish_s, np.array(finish), rtol=1e-9, atol=1e-9)
    assert raw.preemptions == preemptions
    assert raw.adapter_loads == loads


def _steps(trace: list[StepTrace]) -> list[tuple]:
    return [(s.step, s.t_s, s.scheduled, s.preempted, s.finished) for s in trace]


@pytest.mark.parametrize("version", list(REFERENCES))
@pytest.mark.parametrize("seed", range(100, 110))
def test_engine_traces_match_reference_step_by_step(llama: Profile, version: str,
                                                     seed: int) -> None:
    server, ranks, req, client = _random_case(seed, version)
    # arrivals on whole steps (1 s each with the costs taken out)
    req = Requests(np.ceil(req.arrival_s), req.adapter, req.input_tokens, req.output_tokens)
    fast: list[StepTrace] = []
    ref: list[StepTrace] = []
    run_engine(llama, server, ranks, req, client, cost=UnitStepCost(llama, server), trace=fast)
    REFERENCES[version](llama, server, ranks, req, client, cost=UnitStepCost(llama, server),
                        trace=ref)
    assert len(fast) > 0
    assert _steps(fast) == _steps(ref)
