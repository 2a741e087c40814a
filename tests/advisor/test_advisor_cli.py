"""``loratwin advise`` end to end on the bundled sweeps, and its error handling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from tests.cli_run import run_cli
from typer.testing import CliRunner

import loratwin.cli.app as cli_app
from loratwin.cli import advise_cmd


def _app() -> typer.Typer:
    """A Typer app holding only ``advise`` (other command modules are not needed here)."""
    local = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @local.callback()
    def _root() -> None:
        """loratwin (test app)."""

    local.command("advise")(advise_cmd.advise)
    return local


def _main(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> int:
    """Run ``loratwin.cli.app.main`` with the test app; return the exit code."""
    monkeypatch.setattr(cli_app, "app", _app())
    monkeypatch.setattr(cli_app, "_register_commands", lambda: None)
    return run_cli(argv)


def test_command_is_registered_on_the_shared_app() -> None:
    names = [c.name for c in cli_app.app.registered_commands]
    assert "advise" in names


def test_advise_fixed_length_json_table_and_plot(tmp_path: Path) -> None:
    out, png = tmp_path / "advice.json", tmp_path / "advice.png"
    result = CliRunner().invoke(
        _app(), ["advise", "bundled:fixed-length", "--json", str(out), "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert "63.23" in result.output and "45.05" in result.output and "10.51" in result.output
    assert "WITHOUT MPS replication is expected to LOSE" in result.output
    assert "fit error 6.0 % RMS" in result.output
    doc = json.loads(out.read_text())
    rows = {(r["model"], r["output_len"]): r for r in doc["results"]}
    assert len(rows) == 16
    r = rows[("opt-1.3b", 390)]
    assert list(r)[:9] == ["model", "output_len", "b_opt", "max_num_seqs",
                           "gpu_memory_utilization", "kv_used_gib", "freed_gib",
                           "freed_pct_of_gpu_memory", "throughput_kept_pct"]
    assert (r["b_opt"], r["max_num_seqs"], r["gpu_memory_utilization"]) == (128, 128, 0.27)
    assert r["freed_pct_of_gpu_memory"] == pytest.approx(63.23033169941249, rel=1e-6)
    assert r["kv_used_gib"] == pytest.approx(14.012587712376, rel=1e-6)
    assert r["throughput_kept_pct"] == pytest.approx(89.96471283328821, rel=1e-6)
    assert r["replication"]["loses_without_mps"] is True
    assert rows[("opt-2.7b", 390)]["freed_pct_of_gpu_memory"] == pytest.approx(45.0516, abs=1e-4)
    assert rows[("llama-2-7b", 390)]["freed_pct_of_gpu_memory"] == pytest.approx(10.5119,
                                                                                abs=1e-4)
    assert doc["rule"]["name"] == "b" and doc["rule"]["latency_factor"] == 3.0
    assert doc["replication_model"]["fit_rms_error_pct"] == pytest.approx(6.0326, abs=1e-3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_advise_efficiency_rule_sharegpt(tmp_path: Path) -> None:
    out = tmp_path / "a.json"
    result = CliRunner().invoke(_app(), ["advise", "bundled:sharegpt", "--rule", "a", "--eps",
                                         "0.1", "-L", "2", "--json", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    b_opt = {r["model"]: r["b_opt"] for r in doc["results"]}
    assert b_opt == {"opt-1.3b": 96, "opt-2.7b": 96, "llama-2-7b": 96, "llama-2-13b": 80}
    assert doc["results"][0]["output_len"] is None
    assert doc["results"][0]["eta"] == pytest.approx(0.24649469089035123, rel=1e-6)


def test_advise_csv_path_and_slo_rule(tmp_path: Path) -> None:
    from loratwin.advisor import read_sweep

    sweep = read_sweep("bundled:fixed-length")
    path = tmp_path / "sweep.csv"
    sweep[sweep["output_len"] == 390].to_csv(path, index=False)
    out = tmp_path / "c.json"
    result = CliRunner().invoke(_app(), ["advise", str(path), "--rule", "c", "--slo-ms", "20",
                                         "--json", str(out)])
    assert result.exit_code == 0, result.output
    b_opt = {r["model"]: r["b_opt"] for r in json.loads(out.read_text())["results"]}
    assert b_opt == {"opt-1.3b": 128, "opt-2.7b": 64, "llama-2-7b": 32, "llama-2-13b": 2}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["advise", "nope.csv"], "error: SWEEP: file not found: nope.csv"),
        (["advise", "bundled:fixed-length", "--rule", "x"], "error: rule: unknown rule 'x'"),
        (["advise", "bundled:fixed-length", "--eps", "0.2"], "error: eps: only rule (a)"),
        (["advise", "bundled:fixed-length", "--rule", "c"], "error: slo_ms: rule (c) needs"),
        (["advise"], "error: SWEEP: give either"),
        (["advise", "--twin", "twin.yaml"], "error: config file not found: twin.yaml"),
    ],
)
def test_user_errors_exit_2_with_one_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:
    assert _main(monkeypatch, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message), err
    assert err.count("\n") == 1


def test_missing_column_exits_2(monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from loratwin.advisor import read_sweep

    path = tmp_path / "sweep.csv"
    read_sweep("bundled:sharegpt").drop(columns=["num_preemptions_total"]).to_csv(path,
                                                                                  index=False)
    assert _main(monkeypatch, ["advise", str(path)]) == 2
    assert capsys.readouterr().err == (
        "error: num_preemptions_total: missing column in the sweep\n")


def test_output_under_a_file(monkeypatch: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "no").write_text("a file, not a folder\n")
    target = tmp_path / "no" / "a.json"
    assert _main(monkeypatch, ["advise", "bundled:sharegpt", "--json", str(target)]) == 2
    assert "error: --json: cannot write" in capsys.readouterr().err


def test_twin_sweep_end_to_end(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cfg = tmp_path / "twin.yaml"
    cfg.write_text("server: {enable_lora: false}\nadapters: 1\nmax_num_seqs: [1, 16, 64, 256]\n"
                   "num_prompts: 300\n"
                   "lengths: {kind: fixed, input_tokens: 100, output_tokens: 100}\n")
    out = tmp_path / "a.json"
    assert _main(monkeypatch, ["advise", "--twin", str(cfg), "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["model"] == "llama-3.1-8b-instruct" and result["max_num_seqs"] >= 1
