"""The entry point's error contract (issue 9): one line, exit 2 for bad input, exit 1 and a
``--debug`` hint for internal failures, and the traceback only with ``--debug``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import typer

import loratwin.cli.app as cli_app
from loratwin.cli.common import atomic_output, check_output_file
from loratwin.errors import ConfigError
from tests.cli_run import run_cli

ROOT = Path(__file__).resolve().parents[2]
WORKLOAD = str(ROOT / "examples" / "azure-conv-512.csv")


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize(("argv", "needle"), [
    (["place", WORKLOAD, "--bogus"], "No such option: --bogus"),
    (["place", WORKLOAD, "--gpus", "abc"], "'--gpus'"),
    (["place"], "Missing argument"),
    (["nosuchcommand"], "nosuchcommand"),
    (["place", WORKLOAD, "--duration", "nan"], "--duration: must be a finite number"),
    (["place", WORKLOAD, "--seed", "-1"], "--seed: must be >= 0"),
])
def test_usage_errors(argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(argv) == 2
    assert needle in _one_line(capsys)


def test_output_under_a_file_is_refused_before_work(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "FILE"
    blocker.write_text("x\n")
    assert run_cli(["place", WORKLOAD, "--json", str(blocker / "x.json")]) == 2
    assert "--json: cannot write" in _one_line(capsys)


def test_yaml_server_not_a_mapping(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: 'x'\n")
    assert run_cli(["simulate", str(cfg)]) == 2
    assert "server: expected a mapping" in _one_line(capsys)


def _boom_app(exc: BaseException) -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.command("boom")
    def boom() -> None:
        raise exc

    @app.command("other")
    def other() -> None:  # two commands, so that Typer keeps the command name
        pass

    return app


@pytest.fixture()
def boom(monkeypatch: pytest.MonkeyPatch) -> Callable[[BaseException], None]:
    def install(exc: BaseException) -> None:
        monkeypatch.setattr(cli_app, "app", _boom_app(exc))
        monkeypatch.setattr(cli_app, "_register_commands", lambda: None)
    return install


def test_internal_error_hint_and_debug(boom, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cli_app.DEBUG_ENV, raising=False)
    boom(ZeroDivisionError("division by zero"))
    assert run_cli(["boom"]) == 1
    line = _one_line(capsys)
    assert "internal error (ZeroDivisionError: division by zero)" in line and "--debug" in line
    assert run_cli(["boom", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "ZeroDivisionError" in err


@pytest.mark.parametrize(("exc", "code", "needle"), [
    (ConfigError("must be > 0 (got -1)", field="rate"), 2, "error: rate: must be > 0"),
    (FileNotFoundError(2, "No such file or directory", "x.csv"), 2, "error: x.csv: no such file"),
    (PermissionError(13, "Permission denied", "/root/x"), 2, "error: /root/x: permission denied"),
    (MemoryError(), 1, "error: internal error (MemoryError)"),
])
def test_exception_kinds(boom, exc: BaseException, code: int, needle: str,
                         capsys: pytest.CaptureFixture[str]) -> None:
    boom(exc)
    assert run_cli(["boom"]) == code
    assert _one_line(capsys).startswith(needle)


def test_keyboard_interrupt_is_130(boom, capsys: pytest.CaptureFixture[str]) -> None:
    boom(KeyboardInterrupt())
    assert run_cli(["boom"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_pydantic_error_is_one_line(boom, capsys: pytest.CaptureFixture[str]) -> None:
    from pydantic import BaseModel, ValidationError

    class M(BaseModel):
        x: int

    try:
        M.model_validate({"x": "nope"})
    except ValidationError as exc:
        boom(exc)
    assert run_cli(["boom"]) == 2
    assert _one_line(capsys).startswith("error: x: ")


def test_atomic_output_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "o.json"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("{partial")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(target) as tmp:
        tmp.write_text("{}\n")
    assert target.read_text() == "{}\n" and [p.name for p in tmp_path.iterdir()] == ["o.json"]


@pytest.mark.parametrize(("name", "needle"), [(".", "not a file name"), ("d", "is a folder")])
def test_check_output_file(tmp_path: Path, name: str, needle: str) -> None:
    (tmp_path / "d").mkdir()
    with pytest.raises(ConfigError, match=needle):
        check_output_file(tmp_path / name if name != "." else Path("."), "--json")
    check_output_file(tmp_path / "new" / "deeper" / "o.json", "--json")  # parents are made
