"""``loratwin bench`` end to end against a fake vLLM server, and ``validate`` of its row."""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import pytest

from loratwin.live.bench import BenchOptions, run_bench
from loratwin.live.workload import load_workload
from tests.cli_run import run_cli
from tests.live.fakevllm import FakeVllm

WORKLOAD = """\
adapters:
  - {id: a0, rank: 8, rate: 4.0}
  - {id: a1, rank: 16, rate: 2.0}
lengths: {kind: fixed, input_tokens: 12, output_tokens: 4}
duration_s: 2
seed: 5
"""


@pytest.fixture
def workload(tmp_path: Path) -> Path:
    p = tmp_path / "w.yaml"
    p.write_text(WORKLOAD)
    return p


def _bench(fake: FakeVllm, wl: Path, out: Path, *extra: str) -> int:
    return run_cli(["bench", str(wl), "--url", fake.url, "--out", str(out),
                    "--max-cpu-loras", "2", "--max-lora-rank", "16", "--max-num-seqs", "64",
                    *extra])


def test_bench_writes_row_that_validate_reads(fake_vllm: FakeVllm, workload: Path,
                                              tmp_path: Path) -> None:
    out = tmp_path / "run1"
    assert _bench(fake_vllm, workload, out) == 0
    for f in ("run.csv", "requests.parquet", "timeseries.parquet", "trace.csv", "adapters.csv"):
        assert (out / f).is_file(), f
    row = pd.read_csv(out / "run.csv").iloc[0]
    assert row["status"] == "ok" and row["max_loras"] == 2  # read from the server
    assert row["max_num_seqs"] == 64 and row["served_adapters"] == 2
    assert row["completed"] > 0 and row["completed"] <= row["n_planned"]
    assert row["kv_cache_tokens"] == 4096 and row["block_size"] == 16
    assert "max_loras=2 (server)" in row["flags_source"]
    req = pd.read_parquet(out / "requests.parquet")
    assert set(req["adapter_id"]) <= {"a0", "a1"}
    assert (req.loc[req["status"] == "ok", "completion_tokens"] == 4).all()
    assert len(pd.read_parquet(out / "timeseries.parquet")) >= 2
    # validate takes the row as it is and replays the exact requests
    assert run_cli(["validate", str(out / "run.csv"), "--model", "llama-3.1-8b-instruct",
                    "--jobs", "1", "--quiet"]) == 0


def test_same_seed_same_requests(fake_vllm: FakeVllm, workload: Path, tmp_path: Path) -> None:
    assert _bench(fake_vllm, workload, tmp_path / "x") == 0
    first = list(fake_vllm.seen)
    fake_vllm.seen.clear()
    assert _bench(fake_vllm, workload, tmp_path / "y") == 0
    assert (tmp_path / "x" / "trace.csv").read_text() == (tmp_path / "y" / "trace.csv").read_text()
    assert first == fake_vllm.seen  # same models, prompts and lengths, in the same order
    fake_vllm.seen.clear()
    assert _bench(fake_vllm, workload, tmp_path / "z", "--seed", "6") == 0
    assert (tmp_path / "z" / "trace.csv").read_text() != (tmp_path / "x" / "trace.csv").read_text()


def test_contradicting_flag(fake_vllm: FakeVllm, workload: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench(fake_vllm, workload, tmp_path / "c", "--max-loras", "3") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: max_loras: the option says 3 but the server says 2 "
                   "(vllm:lora_requests_info max_lora)"]


def test_device_chooses_the_unstated_defaults(fake_vllm: FakeVllm, workload: Path,
                                              tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Without --max-num-seqs, a --url row takes vLLM's default of the --device given:
    128 on the CPU backend, 256 on a GPU (``auto``: a --url server cannot be asked)."""
    seen = {}
    for device in ("cpu", "auto"):
        out = tmp_path / device
        assert run_cli(["bench", str(workload), "--url", fake_vllm.url, "--out", str(out),
                        "--max-cpu-loras", "2", "--device", device]) == 0
        row = pd.read_csv(out / "run.csv").iloc[0]
        seen[device] = int(row["max_num_seqs"])
        assert "max_num_seqs" in row["flags_source"] and "(vllm default)" in row["flags_source"]
        out_text = " ".join(capsys.readouterr().out.split())
        assert ("note: max_lora_rank, max_num_seqs, max_num_batched_tokens: not reported by "
                "the server nor given, vLLM's defaults assumed") in out_text
    assert seen == {"cpu": 128, "auto": 256}
    # nothing left to a default: no note
    assert _bench(fake_vllm, workload, tmp_path / "stated", "--max-num-batched-tokens",
                  "2048") == 0
    assert "defaults assumed" not in capsys.readouterr().out


def test_down_server(workload: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = run_cli(["bench", str(workload), "--url", f"http://127.0.0.1:{port}", "--out",
                    str(tmp_path / "d")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: http://127.0.0.1:{port}: cannot reach the server")


def test_refused_adapter(fake_vllm: FakeVllm, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    wl = tmp_path / "w.yaml"
    wl.write_text(WORKLOAD.replace("id: a1", "id: other"))
    assert _bench(fake_vllm, wl, tmp_path / "r") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not serve model 'other'" in err[0]
    assert fake_vllm.url in err[0]


def test_failing_requests_keep_the_measured_part(fake_vllm: FakeVllm, workload: Path,
                                                 tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    fake_vllm.fail_model = "a1"  # served, but its requests fail (after the test request)
    out = tmp_path / "f"
    assert _bench(fake_vllm, workload, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 500" in err[0] and "'a1'" in err[0]
    row = pd.read_csv(out / "run.csv").iloc[0]
    assert row["status"] == "failed" and row["n_errors"] == 1


def test_ctrl_c_keeps_what_was_measured(fake_vllm: FakeVllm, workload: Path,
                                        tmp_path: Path) -> None:
    wl = load_workload(workload)
    out = tmp_path / "i"

    def report(p: object) -> None:
        if getattr(p, "phase", "") == "benchmark" and getattr(p, "elapsed_s", 0) > 0.5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_bench(wl, BenchOptions(out_dir=out, url=fake_vllm.url), report)
    row = pd.read_csv(out / "run.csv").iloc[0]
    assert row["status"] == "interrupted"
    assert len(pd.read_parquet(out / "requests.parquet")) >= 1


def test_bad_inputs_are_one_line_errors(fake_vllm: FakeVllm, workload: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        ["bench", str(workload)],  # neither --url nor --launch
        ["bench", str(workload), "--url", "localhost:8000"],
        ["bench", str(tmp_path / "missing.yaml"), "--url", fake_vllm.url],
        ["bench", str(workload), "--url", fake_vllm.url, "--duration", "-1"],
        ["bench", str(workload), "--url", fake_vllm.url, "--max-concurrency", "0"],
        ["bench", str(workload), "--launch", "vllm serve 'x"],
        ["bench", str(workload), "--url", fake_vllm.url, "--max-requests", "1"],
        ["bench", str(workload), "--launch", "x", "--env", "NOEQUALS"],
        ["bench", str(workload), "--url", fake_vllm.url, "--device", "tpu"],
    ]
    for argv in cases:
        assert run_cli(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), (argv, err)
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "run.csv").write_text("x\n")
    assert _bench(fake_vllm, workload, tmp_path / "done") == 2
    assert "already holds a benchmark" in capsys.readouterr().err
