"""Wall time of the digital twin per simulated hour (issue: <= 1 s on one core).

Workload of the issue: 256 adapters, ranks 8/16 alternating, rates 1.6/0.8/0.4 req/s cycled,
max_loras 32, ShareGPT-like lengths, one simulated hour (a saturated server). Also a
moderate and a light load, for reference. Run: ``python benchmarks/twin_speed.py`` (add
``--vllm-version 0.32`` for another release's rules; ``twin_speed_ab.py`` compares two trees).
"""

from __future__ import annotations

import argparse
import statistics
import time

from loratwin.profile.store import load_profile
from loratwin.twin import ClientConfig, ServerConfig, simulate
from loratwin.twin.runconfig import default_lengths
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter


def case(n: int, rates: tuple[float, ...], max_loras: int, repeat: int = 3,
         vllm_version: str | None = None) -> None:
    profile = load_profile("llama-3.1-8b-instruct")
    adapters = [Adapter(f"a{i}", (8, 16)[i % 2], rates[i % len(rates)]) for i in range(n)]
    requests = generate_requests(adapters, 3600.0, ArrivalSpec(), default_lengths(profile), 0)
    server = ServerConfig(max_loras=max_loras, max_cpu_loras=n, max_lora_rank=16,
                          max_num_seqs=2048, max_num_batched_tokens=2048,
                          vllm_version=vllm_version)
    walls = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = simulate(profile, server, adapters, requests, ClientConfig(duration_s=3600.0))
        walls.append(time.perf_counter() - t0)
    m = res.metrics
    print(f"{n:4d} adapters, rates {rates}, max_loras {max_loras}: {len(requests):,} requests, "
          f"{m.steps:,} steps, throughput {m.total_throughput_tok_s:,.0f} tok/s, "
          f"starved {m.starvation} | wall per simulated hour: "
          f"median {statistics.median(walls):.2f} s "
          f"(min {min(walls):.2f}, engine {m.wall_s:.2f})")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="twin wall time per simulated hour")
    ap.add_argument("--vllm-version", default=None, help="release rules (default: profile's)")
    v = ap.parse_args().vllm_version
    case(256, (1.6, 0.8, 0.4), 32, vllm_version=v)
    case(128, (0.1, 0.05, 0.025), 32, vllm_version=v)
    case(8, (0.1, 0.05, 0.025), 8, vllm_version=v)
