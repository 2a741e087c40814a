"""A malformed-input case, how it is run through the installed ``loratwin`` script, and the
verdict on what came back (issue 9).

Every case is bad input by construction, so the only right answer is: exit code 2, exactly
one line on stderr starting with ``error: ``, no traceback, within the time limit, and none
of the output files the command was asked to write left behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

VERDICTS = ("ok", "traceback", "internal", "hang", "accepted", "not-one-line", "output-left")
"""``ok`` is the right answer; the others are failures of the contract."""

DEFAULT_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class Case:
    """One command line with the files it reads, all relative to a fresh folder.

    Attributes
    ----------
    command:
        Registry key (``place``, ``profile fit``, ...).
    argv:
        Arguments after ``loratwin``.
    files:
        ``(relative path, content)`` written before the run; a path ending in ``/`` is a
        folder (content ignored).
    outputs:
        Paths the command line asks to write; none may exist after the refusal.
    why:
        What is wrong with the input (shown when a case fails).
    """

    command: str
    argv: tuple[str, ...]
    files: tuple[tuple[str, bytes], ...] = ()
    outputs: tuple[str, ...] = ()
    why: str = ""

    def describe(self) -> str:
        shown = ", ".join(f"{name}={content[:120]!r}" for name, content in self.files)
        return f"loratwin {' '.join(self.argv)}  [{self.why}]  files: {shown or '-'}"


@dataclass(frozen=True)
class Outcome:
    """What one run gave, and the verdict."""

    case: Case
    verdict: str
    returncode: int | None
    stderr: str
    wall_s: float


def loratwin_script() -> str | None:
    """The ``loratwin`` console script of the active environment (next to its Python), or on
    ``PATH``; ``None`` if it is not installed."""
    here = Path(sys.executable).parent / "loratwin"
    if here.is_file() and os.access(here, os.X_OK):
        return str(here)
    return shutil.which("loratwin")


def _write_files(root: Path, files: tuple[tuple[str, bytes], ...]) -> None:
    for name, content in files:
        path = root / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def _verdict(case: Case, root: Path, rc: int, err: str) -> str:
    if "Traceback (most recent call last)" in err:
        return "traceback"
    if rc == 0:
        return "accepted"
    if rc == 1 and "internal error" in err:
        return "internal"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if rc != 2 or len(lines) != 1 or not lines[0].startswith("error: "):
        return "not-one-line"
    given = {name.rstrip("/") for name, _ in case.files}
    if any((root / out).exists() for out in case.outputs if out.rstrip("/") not in given):
        return "output-left"
    return "ok"


def run_case(case: Case, script: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> Outcome:
    """Run the case in a fresh folder through ``script``; kill it (and its workers) on
    timeout."""
    env = {k: v for k, v in os.environ.items() if k not in ("LORATWIN_DEBUG", "COLUMNS")}
    env.update(COLUMNS="100", PYTHONWARNINGS="ignore::DeprecationWarning")
    with tempfile.TemporaryDirectory(prefix="loratwin-fuzz-") as tmp:
        root = Path(tmp)
        _write_files(root, case.files)
        start = time.perf_counter()
        proc = subprocess.Popen([script, *case.argv], cwd=root, env=env, text=True,
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True,
                                errors="replace")
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return Outcome(case, "hang", None, "", time.perf_counter() - start)
        wall = time.perf_counter() - start
        return Outcome(case, _verdict(case, root, proc.returncode, err), proc.returncode,
                       err, wall)
