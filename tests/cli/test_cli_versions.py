"""``--vllm-version`` on the commands that build a server configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli_run import run_cli


@pytest.fixture
def adapters_csv(tmp_path: Path) -> Path:
    csv = tmp_path / "a.csv"
    csv.write_text("id,rank,rate\nx,8,0.5\ny,16,0.5\nz,16,0.5\n")
    return csv


def test_simulate_follows_the_release_and_says_timings_are_estimated(
        tmp_path: Path, adapters_csv: Path, capsys) -> None:
    out = tmp_path / "o.json"
    rc = run_cli(["simulate", "--adapters", str(adapters_csv), "--max-loras", "2",
                  "--max-lora-rank", "16", "--duration", "60", "--vllm-version", "0.32.0",
                  "--json", str(out)])
    assert rc == 0
    data = json.loads(out.read_text())
    assert data["vllm_version"] == "0.32" and "estimated" in data["note"]
    assert data["completed"] > 0
    assert "vLLM 0.32" in capsys.readouterr().out


def test_yaml_server_release(tmp_path: Path, adapters_csv: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"adapters: {adapters_csv}\nduration_s: 60\n"
                   "server: {max_loras: 2, vllm_version: '0.33'}\n")
    out = tmp_path / "o.json"
    assert run_cli(["simulate", str(cfg), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["vllm_version"] == "0.33"
    # the flag overrides the YAML; the profile's own release needs no note
    assert run_cli(["simulate", str(cfg), "--vllm-version", "0.8.5", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["vllm_version"] == "0.8.5" and "note" not in data


@pytest.mark.parametrize("argv", [
    ["simulate", "--duration", "10", "--vllm-version", "0.9.1"],
    ["place", "--vllm-version", "0.9.1"],
])
def test_unknown_release_is_a_one_line_error(adapters_csv: Path, capsys,
                                             argv: list[str]) -> None:
    argv = [*argv[:1], *(["--adapters"] if argv[0] == "simulate" else []), str(adapters_csv),
            *argv[1:]]
    rc = run_cli(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and "\n" not in err
    assert "0.9.1" in err and "0.8.5, 0.32, 0.33" in err
