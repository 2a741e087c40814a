"""``loratwin workload from-trace``."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import loratwin.cli.app as cli_app
from loratwin.cli.workload_cmd import parse_ranks
from loratwin.errors import ConfigError
from loratwin.workload.adapters import load_adapters
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.trace import load_azure_trace


def test_from_trace_writes_adapters(tmp_path: Path) -> None:
    out = tmp_path / "adapters.csv"
    result = CliRunner().invoke(cli_app.app, [
        "workload", "from-trace", "azure-code", "--adapters", "12", "--seed", "4",
        "--ranks", "8,32", "--rate-multiplier", "3", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "12 adapters" in result.output and "8: 6, 32: 6" in result.output
    adapters = load_adapters(out)
    expected = adapters_from_trace(load_azure_trace("azure-code"), 12, ranks=(8, 32),
                                   rate_multiplier=3.0, seed=4)
    assert [a.id for a in adapters] == [a.id for a in expected]
    assert [a.rate for a in adapters] == pytest.approx([a.rate for a in expected], rel=1e-15)


def test_from_trace_csv_path(tmp_path: Path) -> None:
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n"
                     "2023-11-16 18:00:00.0000000,100,10\n2023-11-16 18:00:10.0000000,300,30\n")
    out = tmp_path / "a.csv"
    result = CliRunner().invoke(cli_app.app, [
        "workload", "from-trace", str(trace), "-n", "2", "--alpha", "5", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert sum(a.rate for a in load_adapters(out)) == pytest.approx(0.2, abs=0.05 + 1e-12)


def test_user_errors_exit_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    # Only this command group is registered: the others are not part of this package.
    monkeypatch.setattr(cli_app, "_register_commands", lambda: None)
    with pytest.raises(SystemExit) as exc:
        cli_app.main(["workload", "from-trace", str(tmp_path / "none.csv"), "-n", "3",
                      "-o", str(tmp_path / "a.csv")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {tmp_path / 'none.csv'}: file not found"
    with pytest.raises(SystemExit) as exc:
        cli_app.main(["workload", "from-trace", "azure-conv", "-n", "3", "--ranks", "8,x",
                      "-o", str(tmp_path / "a.csv")])
    assert exc.value.code == 2
    assert "--ranks: expected comma-separated positive integers" in capsys.readouterr().err
    assert not (tmp_path / "a.csv").exists()


def test_parse_ranks() -> None:
    assert parse_ranks("8, 16,32") == (8, 16, 32)
    with pytest.raises(ConfigError):
        parse_ranks("0")
