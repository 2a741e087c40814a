"""The fast event loop must reproduce the literal vLLM scheduling loop request by request."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.profile.store import load_profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.engine import run_engine
from loratwin.workload.types import Requests
from tests.twin.reference import reference_run


def _random_case(seed: int) -> tuple[ServerConfig, list[int], Requests, ClientConfig]:
    rng = np.random.default_rng(seed)
    n_ad = int(rng.integers(1, 13))
    max_loras = int(rng.integers(1, min(n_ad, 4) + 1))
    cpu = int(rng.integers(max_loras, n_ad + 2))
    seqs = int(rng.integers(2, 48))
    budget = int(rng.integers(max(seqs, 32), 512))
    # a small KV cache (low gpu_memory_utilization) forces preemptions
    gmu = float(rng.choice([0.9, 0.3, 0.29, 0.28, 0.275]))
    server = ServerConfig(
        max_loras=max_loras, max_cpu_loras=cpu, max_lora_rank=16, max_num_seqs=seqs,
        max_num_batched_tokens=budget, gpu_memory_utilization=gmu, max_model_len=2048,
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


@pytest.mark.parametrize("seed", range(40))
def test_engine_matches_reference(seed: int) -> None:
    profile = load_profile("llama-3.1-8b-instruct")
    server, ranks, req, client = _random_case(seed)
    raw = run_engine(profile, server, ranks, req, client)
    first, finish, preemptions, loads = reference_run(profile, server, ranks, req, client)
    np.testing.assert_allclose(raw.first_token_s, np.array(first), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(raw.finish_s, np.array(finish), rtol=1e-9, atol=1e-9)
    assert raw.preemptions == preemptions
    assert raw.adapter_loads == loads
