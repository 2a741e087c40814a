"""The live path end to end on the shared CPU server, short version (the full one with six
configurations and launched campaign servers is ``benchmarks/live_e2e.py``):
``profile collect --url --quick`` (bursts of >= 7 s: ``profile fit`` uses those of >= 5 s)
-> ``profile fit`` -> two ``bench`` runs (a light one and one far beyond the server's
capacity) -> ``validate`` of the fitted profile against them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from loratwin.live.sizing import starving_rate
from loratwin.live.tiny import TinyModel
from loratwin.profile.store import load_profile
from tests.cli_run import run_cli
from tests.realvllm.live_fixtures import ADAPTER_RANKS, RunningServer

#: (adapters used, req/s each, prompt tokens, output tokens): light load on the 2 slots, with
#: requests short beside the window and enough of them (about 40 expected) that one or two cut by
#: its end stay under the starvation rule's 10 %; 7 adapters of long prompts at a rate sized
#: from the fitted profile (:func:`loratwin.live.sizing.starving_rate`; at least 3 req/s each).
RUNS = {"light": (2, 1.0, 32, 8), "starving": (7, 3.0, 1024, 8)}
DURATION_S = 20


def _workload(path: Path, n: int, rate: float, prompt: int, output: int) -> Path:
    items = list(ADAPTER_RANKS.items())[:n]
    lines = "\n".join(f"  - {{id: {a}, rank: {r}, rate: {rate}}}" for a, r in items)
    path.write_text(f"adapters:\n{lines}\nlengths: {{kind: fixed, input_tokens: {prompt}, "
                    f"output_tokens: {output}}}\narrivals: {{process: poisson}}\n"
                    f"duration_s: {DURATION_S}\nseed: 5\n")
    return path


def test_collect_fit_bench_validate(vllm_server: RunningServer, tiny_model: TinyModel,
                                    tmp_path: Path) -> None:
    cal, prof_dir = tmp_path / "cal", tmp_path / "profile"
    assert run_cli(["profile", "collect", "--url", vllm_server.url, "--out", str(cal),
                    "--quick", "--point-seconds", "7", "--budget", "10",
                    "--max-cpu-loras", "4", "--max-lora-rank", "16", "--model-name", "tiny-ci",
                    "--device", "cpu",
                    "--hf-config", str(tiny_model.base / "config.json")]) == 0
    loading = pd.read_csv(cal / "adapter_loading.csv").iloc[0]
    assert loading["n_loads"] > 0 and loading["n_disk_loads"] > 0  # 5 rank-16 names > 4
    assert run_cli(["profile", "fit", str(cal), "-o", str(prof_dir), "--jobs", "1"]) == 0
    prof = load_profile(str(prof_dir / "tiny-ci.json"))
    assert prof.device == "cpu" and prof.block_size == 128
    assert prof.step.base_s > 0 and prof.step.per_token_s > 0
    rows = []
    for name, (n, rate, prompt, output) in RUNS.items():
        if name == "starving":
            # 2.5 x an upper bound of the fitted profile's prefill capacity (a fixed rate
            # starved the server on a loaded CI host but not on a quiet one)
            rate = starving_rate(prof, n, rate, prompt, min(list(ADAPTER_RANKS.values())[:n]))
        out = tmp_path / name
        wl = _workload(tmp_path / f"{name}.yaml", n, rate, prompt, output)
        assert run_cli(["bench", str(wl), "--url", vllm_server.url, "--out", str(out),
                        "--max-cpu-loras", "4", "--max-lora-rank", "16",
                        "--device", "cpu"]) == 0
        row = pd.read_csv(out / "run.csv")
        # the CPU backend's default, not a GPU's 256 (the server states no --max-num-seqs)
        assert int(row["max_num_seqs"].iloc[0]) == 128
        for col in ("trace_file", "adapters_file"):
            row[col] = [str(out / v) for v in row[col]]
        rows.append(row)
    runs = tmp_path / "runs.csv"
    pd.concat(rows, ignore_index=True).to_csv(runs, index=False)
    assert [bool(r["starvation_est"].iloc[0]) for r in rows] == [False, True]
    res = tmp_path / "validate.json"
    assert run_cli(["validate", str(runs), "--model", str(prof_dir / "tiny-ci.json"),
                    "--json", str(res), "--jobs", "1"]) == 0
    val = json.loads(res.read_text())
    assert val["summary"]["n_ok_runs"] == 2
    assert val["summary"]["starvation_agreement"] == 1.0
    light = val["runs"][0]  # a loose bound: CI machines are shared (figures: docs/live.md)
    assert abs(light["twin_total_throughput_tok_s"] / light["real_total_throughput"] - 1) < 0.25
