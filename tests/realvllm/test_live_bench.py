"""``loratwin bench`` against a real vLLM server (the shared tiny CPU server)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tests.cli_run import run_cli
from tests.realvllm.live_fixtures import ADAPTER_RANKS, RunningServer

WORKLOAD = """\
adapters:
{adapters}
lengths: {{kind: fixed, input_tokens: 24, output_tokens: 12}}
arrivals: {{process: poisson}}
duration_s: {duration}
seed: 11
"""


def _workload(tmp_path: Path, duration: float = 12.0) -> Path:
    lines = "\n".join(f"  - {{id: {a}, rank: {r}, rate: 0.5}}" for a, r in ADAPTER_RANKS.items())
    p = tmp_path / "workload.yaml"
    p.write_text(WORKLOAD.format(adapters=lines, duration=duration))
    return p


def test_bench_real_server_twice_same_requests(vllm_server: RunningServer,
                                               tmp_path: Path) -> None:
    wl = _workload(tmp_path)
    runs = []
    for name in ("first", "second"):
        out = tmp_path / name
        code = run_cli(["bench", str(wl), "--url", vllm_server.url, "--out", str(out),
                        "--max-cpu-loras", "4", "--max-lora-rank", "16",
                        "--max-num-seqs", "128", "--max-num-batched-tokens", "2048"])
        assert code == 0
        runs.append(out)
    rows = [pd.read_csv(out / "run.csv").iloc[0] for out in runs]
    for row in rows:
        assert row["status"] == "ok" and row["completed"] > 0
        assert row["max_loras"] == 2  # vllm:lora_requests_info max_lora
        assert row["block_size"] == 128  # the CPU backend's KV block
        assert row["kv_cache_tokens"] > 0
        assert str(row["vllm_version"]).startswith("0.")
        assert row["n_sched_steps"] > 0  # vllm:iteration_tokens_total_count moved
    reqs = [pd.read_parquet(out / "requests.parquet") for out in runs]
    cols = ["index", "arrival_s", "adapter_id", "input_tokens", "output_tokens"]
    # same seed: the same requests (arrival times, adapters, lengths) were sent
    assert reqs[0][cols].equals(reqs[1][cols])
    for df in reqs:
        done = df[df["status"] == "ok"]
        assert (done["completion_tokens"] == 12).all()  # ignore_eos: exactly max_tokens
        assert (done["prompt_tokens"] == 24).all()  # token-id prompts arrive unchanged
        assert (done["ttft_ms"] > 0).all()
