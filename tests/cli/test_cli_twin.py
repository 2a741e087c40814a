"""End-to-end CLI: simulate on the bundled example, validate, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import run_cli

ROOT = Path(__file__).resolve().parents[2]
REAL_RUNS = ROOT.parent / "shared" / "data" / "real_runs" / "llama-3.1-8b-instruct.csv"


def test_simulate_bundled_example(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.json"
    rc = run_cli(["simulate", str(ROOT / "examples" / "llama-128-adapters.yaml"),
                "--duration", "300", "--json", str(out),
                "--requests-parquet", str(tmp_path / "r.parquet")])
    assert rc == 0
    data = json.loads(out.read_text())
    for key in ("total_throughput_tok_s", "input_throughput_tok_s", "output_throughput_tok_s",
                "request_throughput_req_s", "offered_throughput_tok_s", "mean_ttft_ms",
                "p99_ttft_ms", "mean_itl_ms", "p99_itl_ms", "mean_tpot_ms", "completed",
                "arrivals", "preemptions", "adapter_loads", "starvation", "memory_error",
                "wall_s", "per_adapter"):
        assert key in data
    assert data["completed"] > 0 and len(data["per_adapter"]) == 128
    assert (tmp_path / "r.parquet").stat().st_size > 0


def test_simulate_with_flags_only(tmp_path: Path) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("id,rank,rate\nx,8,0.5\ny,16,0.5\n")
    rc = run_cli(["simulate", "--adapters", str(csv), "--max-loras", "2", "--max-lora-rank", "16",
                "--duration", "120", "--seed", "3", "--json", str(tmp_path / "o.json")])
    assert rc == 0
    assert json.loads((tmp_path / "o.json").read_text())["completed"] > 10


def test_simulate_trace_replay(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                     "0.5,a,100,20\n1.0,b,50,10\n1.5,a,10,5\n")
    rc = run_cli(["simulate", "--trace", str(trace), "--max-loras", "2", "--duration", "60",
                "--json", str(tmp_path / "o.json")])
    assert rc == 0
    assert json.loads((tmp_path / "o.json").read_text())["completed"] == 3


@pytest.mark.parametrize(
    ("content", "flags", "needle"),
    [
        ("id,rank,rate\nx,8,-1\n", [], "rate"),
        ("id,rank,rate\nx,32,1\n", ["--max-lora-rank", "16"], "max_lora_rank"),
        ("id,rank,rate\nx,8,1\n", ["--max-loras", "4", "--max-cpu-loras", "2"], "max_cpu_loras"),
        ("id,rank,rate\nx,8,1\n", ["--model", "no-such-model"], "unknown profile"),
    ],
)
def test_bad_input_gives_one_line_and_exit_2(tmp_path: Path, capsys, content, flags, needle):
    csv = tmp_path / "a.csv"
    csv.write_text(content)
    rc = run_cli(["simulate", "--adapters", str(csv), "--duration", "10", *flags])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and needle in err and "\n" not in err


def test_missing_file_and_malformed_trace(tmp_path: Path, capsys) -> None:
    assert run_cli(["simulate", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    trace = tmp_path / "t.csv"
    trace.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n0.5,a,abc,20\n")
    assert run_cli(["simulate", "--trace", str(trace), "--duration", "10"]) == 2
    err = capsys.readouterr().err
    assert "row" in err and "input_tokens" in err


@pytest.mark.skipif(not REAL_RUNS.is_file(), reason="needs ../shared/data")
def test_validate_on_a_few_real_runs(tmp_path: Path) -> None:
    import pandas as pd

    df = pd.read_csv(REAL_RUNS)
    sub = df.iloc[[0, 9, 17, 35, 41]]  # light loads and one memory error
    path = tmp_path / "runs.csv"
    sub.to_csv(path, index=False)
    out = tmp_path / "v.json"
    rc = run_cli(["validate", str(path), "--model", "llama-3.1-8b-instruct", "--json", str(out),
                "--jobs", "1", "--quiet"])
    assert rc == 0
    summary = json.loads(out.read_text())["summary"]
    assert summary["memory_error_runs"] == 1 and summary["memory_errors_predicted"] == 1
    assert summary["throughput_smape_pct"] < 5.0
    assert summary["itl_smape_pct"] < 15.0
    assert summary["starvation_agreement"] == 1.0


def test_validate_missing_column(tmp_path: Path, capsys) -> None:
    path = tmp_path / "runs.csv"
    path.write_text("a,b\n1,2\n")
    assert run_cli(["validate", str(path), "--model", "llama-3.1-8b-instruct"]) == 2
    assert "missing column" in capsys.readouterr().err
