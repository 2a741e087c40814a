"""``loratwin place`` / ``loratwin compare`` end to end (stand-in surrogate)."""

from __future__ import annotations

import json
import math
import os
import shlex
import subprocess
from pathlib import Path

import pytest

import loratwin.cli.app as cli_app
import loratwin.placement.predictor as predictor_mod
from loratwin.cli import place_cmd  # noqa: F401  (registers the commands)
from loratwin.placement import api
from loratwin.workload.adapters import save_adapters_csv
from loratwin.workload.types import Adapter
from tests.cli_run import run_cli

from .conftest import AnalyticPredictor, make_adapters


@pytest.fixture()
def workload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(predictor_mod, "load_predictor",
                        lambda profile, surrogate=None: AnalyticPredictor())
    ads = make_adapters(16, 70.0, ranks=(8, 16), seed=7)
    ads[3] = Adapter(ads[3].id, 24, ads[3].rate, 300.0, 100.0)  # rank vLLM does not accept
    return save_adapters_csv(ads, tmp_path / "adapters.csv")


def test_commands_are_registered() -> None:
    names = {c.name for c in cli_app.app.registered_commands}
    assert {"place", "compare"} <= names


def test_place_json_schema_and_vllm_scripts(workload: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out, scripts = tmp_path / "p.json", tmp_path / "serve"
    code = run_cli(["place", str(workload), "--algorithm", "least-loaded", "--json", str(out),
                 "--emit-vllm", str(scripts), "--lora-dir", "/models/my loras/"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert {"gpus", "algorithm", "placement_s", "servers", "lower_bound"} <= set(doc)
    assert doc["algorithm"] == "least-loaded"
    assert doc["gpus"] == len(doc["servers"]) >= doc["lower_bound"] >= 1
    placed = []
    for s in doc["servers"]:
        assert {"adapters", "max_loras", "max_cpu_loras", "max_lora_rank", "predicted",
                "verified", "rates_req_s", "traffic_share"} <= set(s)
        assert s["verified"] is None
        assert {"total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms", "headroom",
                "starvation_probability"} <= set(s["predicted"])
        placed += s["adapters"]
    assert sorted(placed) == sorted(f"a{i:03d}" for i in range(16))
    files = sorted(scripts.glob("gpu-*.sh"))
    assert [f.name for f in files] == [f"gpu-{k:02d}.sh" for k in range(doc["gpus"])]
    for f, s in zip(files, doc["servers"], strict=True):
        text = f.read_text()
        assert os.access(f, os.X_OK)
        assert subprocess.run(["bash", "-n", str(f)], check=False).returncode == 0
        cmd = next(line for line in text.splitlines() if line.startswith("exec "))
        argv = shlex.split(" ".join(
            line.rstrip("\\") for line in text.splitlines()[text.splitlines().index(cmd):]
        ).replace('"${PORT:-8000}"', "8000"))
        assert argv[:4] == ["exec", "vllm", "serve", "meta-llama/Llama-3.1-8B-Instruct"]
        assert "--enable-lora" in argv

        def flag(name: str, argv: list[str] = argv) -> str:
            return argv[argv.index(name) + 1]

        assert int(flag("--max-loras")) == s["max_loras"]
        assert int(flag("--max-cpu-loras")) == s["max_cpu_loras"]
        expected_rank = 32 if s["max_lora_rank"] == 24 else s["max_lora_rank"]
        assert int(flag("--max-lora-rank")) == expected_rank
        assert int(flag("--max-num-seqs")) == 2048
        mods = argv[argv.index("--lora-modules") + 1:]
        assert mods == [f"{i}=/models/my loras/{i}" for i in s["adapters"]]
        if s["max_lora_rank"] == 24:
            assert "rounded up to 32" in text


def test_place_verify_fills_the_verified_block(workload: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    assert run_cli(["place", str(workload), "--verify", "--duration", "120", "--no-confirm",
                 "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["algorithm"] == "loratwin"
    for s in doc["servers"]:
        v = s["verified"]
        assert {"starvation", "memory_error", "total_throughput_tok_s", "mean_itl_ms",
                "mean_ttft_ms"} <= set(v)
        assert v["duration_s"] == 120


def test_place_advise_applies_the_chosen_flags(workload: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.json"
    assert run_cli(["place", str(workload), "--advise", "--duration", "120", "--no-confirm",
                 "--json", str(out)]) == 0
    assert "batching advisor" in capsys.readouterr().out
    doc = json.loads(out.read_text())
    for s in doc["servers"]:
        adv = s["advice"]
        assert adv["chosen"] in adv["candidates"]
        chosen = adv["candidates"][adv["chosen"]]
        assert s["max_num_seqs"] == chosen["flags"]["max_num_seqs"]
        assert s["max_loras"] == chosen["flags"]["max_loras"]
        assert s["verified"] == chosen["verified"]
        assert adv["max_num_seqs"] <= 2048 and adv["freed_gib"] >= 0
        current = adv["candidates"]["current"]
        if not (current["verified"]["starvation"] or current["verified"]["memory_error"]):
            assert chosen["e2e_ms"] <= current["e2e_ms"]


def test_place_ttft_slo_spreads_the_load(workload: Path, tmp_path: Path) -> None:
    loose, tight = tmp_path / "loose.json", tmp_path / "tight.json"
    assert run_cli(["place", str(workload), "--no-confirm", "--json", str(loose)]) == 0
    a = json.loads(loose.read_text())
    worst = max(s["predicted"]["mean_ttft_ms"] for s in a["servers"])
    slo = 100.0 + 0.5 * (worst - 100.0)  # the stand-in's TTFT floor is 100 ms
    assert run_cli(["place", str(workload), "--no-confirm", "--max-ttft-ms", f"{slo}",
                    "--json", str(tight)]) == 0
    b = json.loads(tight.read_text())
    assert all(s["predicted"]["mean_ttft_ms"] <= slo for s in b["servers"])
    assert b["gpus"] > a["gpus"]
    # the default objective reports the latency target against the GPU count
    assert a["tradeoff"]["gpus"] == a["gpus"] and a["tradeoff"]["mean_ttft_ms"] == 2000.0


@pytest.mark.parametrize(("argv", "message"), [
    (["--gpus", "1"], "at least"),                 # below the lower bound
    (["--algorithm", "nope"], "unknown algorithm"),
    (["--jobs", "0"], "jobs"),
    (["--max-ttft-ms", "0"], "max_ttft_ms"),
    (["--max-itl-ms", "20", "--algorithm", "random"], "loratwin algorithm only"),
])
def test_place_user_errors_exit_2(workload: Path, capsys: pytest.CaptureFixture[str],
                                  argv: list[str], message: str) -> None:
    assert run_cli(["place", str(workload), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and message in err[0]


def test_place_more_gpus_needed_than_available_exits_2(
    workload: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "p.json"
    assert run_cli(["place", str(workload), "--algorithm", "random", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["gpus"] > doc["lower_bound"]  # so a budget in between passes the bound check
    capsys.readouterr()
    assert run_cli(["place", str(workload), "--algorithm", "random",
                 "--gpus", str(doc["gpus"] - 1)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: gpus:") and "available" in err


def test_missing_workload_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["place", str(tmp_path / "none.csv")]) == 2
    assert capsys.readouterr().err.startswith("error:")


def test_compare_json_and_plot(workload: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "c.json", tmp_path / "c.png"
    assert run_cli(["compare", str(workload), "--json", str(out), "--plot", str(png),
                 "--duration", "120", "--no-confirm", "--jobs", "2"]) == 0
    doc = json.loads(out.read_text())
    assert isinstance(doc["lower_bound"], int) and isinstance(doc["optimum"], int)
    assert doc["lower_bound"] <= doc["optimum"]
    assert doc["lower_bound"] == max(doc["throughput_lower_bound"], doc["lp_lower_bound"])
    assert doc["lp_lower_bound"] == math.ceil(doc["lp_lower_bound_value"] - 1e-6)
    assert [r["algorithm"] for r in doc["results"]] == list(api.ALGORITHMS)
    for r in doc["results"]:
        assert {"algorithm", "gpus", "starved_gpus", "memory_errors", "total_throughput_tok_s",
                "mean_itl_ms", "mean_ttft_ms", "placement_s", "worst_gpu_mean_ttft_ms",
                "p99_ttft_ms"} <= set(r)
        assert r["worst_gpu_mean_ttft_ms"] >= r["mean_ttft_ms"] * (1 - 1e-9)
        assert r["p99_ttft_ms"] >= r["worst_gpu_mean_ttft_ms"] * 0.5
        assert r["gpus"] >= doc["lower_bound"]
        assert 0 <= r["starved_gpus"] <= r["gpus"]
        assert r["verified"] is True
        if r["predicted_starving_gpus"] == 0:
            assert doc["optimum"] <= r["gpus"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_subset_and_errors(workload: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "c.json"
    assert run_cli(["compare", str(workload), "--algorithms", "paper-greedy,max-backbone",
                 "--no-optimum", "--duration", "60", "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["optimum"] is None
    assert [r["algorithm"] for r in doc["results"]] == ["paper-greedy", "max-backbone"]
    capsys.readouterr()
    assert run_cli(["compare", str(workload), "--algorithms", "paper-greedy,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
