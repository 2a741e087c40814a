"""Small plan documents in the ``loratwin place --json`` schema (tests only)."""

from __future__ import annotations

import math
from typing import Any


def plan_doc(n_gpus: int = 3, verified: bool = True, kind: str = "measured") -> dict[str, Any]:
    """A plan of ``n_gpus`` servers; with ``verified`` each has twin metrics and a time series
    (made-up but plausible numbers: these tests check rendering, not physics)."""
    servers = []
    for k in range(n_gpus):
        n = 10 + 5 * k
        ranks = [(8, 16, 32)[(i + k) % 3] for i in range(n)]
        offered = 8000.0 + 1500 * k
        v = None
        if verified:
            t = [15.0 + 30 * i for i in range(120)]
            v = {"starvation": k == n_gpus - 1, "memory_error": False,
                 "memory_error_reason": None, "total_throughput_tok_s": offered * 0.95,
                 "offered_throughput_tok_s": offered, "mean_itl_ms": 40.0 + 5 * k,
                 "p99_itl_ms": 90.0 + 5 * k, "mean_ttft_ms": 300.0 * (k + 1),
                 "p99_ttft_ms": 2000.0 * (k + 1), "preemptions": 0, "adapter_loads": 10,
                 "duration_s": 3600.0,
                 "timeseries": {"t_s": t,
                                "running": [50 + 20 * math.sin(x / 600) + k for x in t],
                                "waiting": [max(0.0, 10 * math.sin(x / 300)) for x in t],
                                "kv_used_fraction": [0.3 + 0.2 * math.sin(x / 900) ** 2
                                                     for x in t]}}
        servers.append({
            "adapters": [f"g{k}-a{i:02d}" for i in range(n)], "ranks": ranks,
            "total_rate_req_s": offered / 400.0, "max_loras": 8 + 4 * k,
            "max_cpu_loras": n, "max_lora_rank": max(ranks), "max_num_seqs": 2048,
            "predicted": {"total_throughput_tok_s": offered * 0.97, "mean_itl_ms": 38.0 + 4 * k,
                          "mean_ttft_ms": 250.0 * (k + 1), "starvation_probability": 0.05 * k,
                          "offered_throughput_tok_s": offered, "headroom": 0.3,
                          "out_of_envelope": False},
            "verified": v, "rates_req_s": [offered / 400.0 / n] * n,
            "traffic_share": [1.0] * n,
        })
    return {"gpus": n_gpus, "algorithm": "loratwin", "placement_s": 1.5,
            "notes": ["adapter order: zig-zag"], "servers": servers, "lower_bound": 2,
            "profile": {"name": "llama-3.1-8b-instruct",
                        "hf_model_name": "meta-llama/Llama-3.1-8B-Instruct",
                        "profile_kind": kind, "vllm_version": "0.8.5"},
            "workload": "adapters.csv", "slo": {"max_ttft_ms": 2000.0, "max_itl_ms": None}}
