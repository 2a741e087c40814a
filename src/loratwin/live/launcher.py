"""Start a vLLM server from a ``vllm serve``-like command, wait until it serves, stop it.

:class:`LaunchedServer` runs the command in its own process group with its output in a log
file, polls ``GET /health`` until it answers 200, and on exit sends SIGINT to the group
(vLLM shuts its engine processes down on it), then SIGTERM and SIGKILL if they linger. A
server that exits before it is healthy raises :class:`~loratwin.live.errors.StartupError`
whose reason is read from the log (:func:`startup_failure`): the start-up memory errors of
``vllm/v1/core/kv_cache_utils.py`` (``_check_enough_kv_cache_memory``, same messages in
0.8.5 and 0.32) and CUDA's out-of-memory error.

:func:`set_flags` rewrites a command line's vLLM flags (the campaign varies ``--max-loras``
and friends), :func:`flag_value` reads one back.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loratwin.errors import ConfigError
from loratwin.live.errors import StartupError

#: (reason, pattern) of the start-up failures recognised in a server log, first match wins.
STARTUP_FAILURES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("no_memory_for_kv_cache", re.compile(r"No available memory for the cache blocks")),
    ("kv_cache_smaller_than_max_model_len",
     re.compile(r"KV\s+cache is needed, which is larger than the available KV cache memory")),
    ("cuda_oom", re.compile(r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError")),
)
_KV_AVAILABLE = re.compile(r"available KV cache memory \(([\d.]+) GiB\)")
_KV_NEEDED = re.compile(r"\(([\d.]+) GiB KV\s+cache is needed")
_KV_TOKENS = re.compile(r"(?:GPU|CPU) KV cache size: ([\d,]+) tokens")

#: Flags of ``vllm serve`` that take no value.
BOOLEAN_FLAGS = frozenset({"--enable-lora", "--enforce-eager", "--enable-prefix-caching",
                           "--no-enable-prefix-caching", "--enable-chunked-prefill",
                           "--no-enable-chunked-prefill"})
#: Flags whose value is a list of words (``--lora-modules a=p b=q``).
LIST_FLAGS = frozenset({"--lora-modules"})


@dataclass(frozen=True)
class StartupFailure:
    """A start-up failure read from a server log (``kv_*_gib`` from the KV message)."""

    reason: str
    line: str
    kv_needed_gib: float | None = None
    kv_available_gib: float | None = None


def _default_sigint() -> None:
    """In the server's process, before exec: SIGINT back to its default action.

    A job started in the background by a non-interactive shell (``nohup loratwin ... &``, CI
    runners) inherits SIGINT ignored, and Python then leaves it ignored, so ``vllm serve``
    would not shut down on :meth:`LaunchedServer.stop`'s SIGINT and would only die on the
    SIGTERM 60 s later."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def startup_failure(log_text: str) -> StartupFailure | None:
    """The first known start-up failure in a server log, or ``None``."""
    for reason, pat in STARTUP_FAILURES:
        m = pat.search(log_text)
        if m is None:
            continue
        start = log_text.rfind("\n", 0, m.start()) + 1
        end = log_text.find("\n", m.end())
        line = log_text[start:end if end >= 0 else None].strip()
        need = _KV_NEEDED.search(log_text)
        avail = _KV_AVAILABLE.search(log_text)
        return StartupFailure(
            reason, line[:300],
            float(need.group(1)) if need else None,
            float(avail.group(1)) if avail else None,
        )
    return None


def kv_tokens_from_log(log_text: str) -> int | None:
    """The KV cache size the server logged at start-up (``GPU/CPU KV cache size: N tokens``)."""
    m = _KV_TOKENS.search(log_text)
    return int(m.group(1).replace(",", "")) if m else None


def split_command(cmd: str | Sequence[str]) -> list[str]:
    """A command line as a list of words (``shlex`` rules for a string).

    Raises
    ------
    ConfigError
        An empty command or unbalanced quotes.
    """
    if isinstance(cmd, str):
        try:
            words = shlex.split(cmd)
        except ValueError as exc:
            raise ConfigError(f"cannot parse the command ({exc})", field="launch") from None
    else:
        words = list(cmd)
    if not words:
        raise ConfigError("empty command", field="launch")
    return words


def _flag_spans(argv: Sequence[str], flag: str) -> list[tuple[int, int]]:
    """[start, end) word ranges of every occurrence of ``flag`` (with its value words)."""
    spans = []
    i = 0
    while i < len(argv):
        w = argv[i]
        if w == flag:
            j = i + 1
            if flag in LIST_FLAGS:
                while j < len(argv) and not argv[j].startswith("--"):
                    j += 1
            elif flag not in BOOLEAN_FLAGS and j < len(argv):
                j += 1
            spans.append((i, j))
            i = j
        elif w.startswith(flag + "="):
            spans.append((i, i + 1))
            i += 1
        else:
            i += 1
    return spans


def flag_value(argv: Sequence[str], flag: str) -> str | list[str] | bool | None:
    """The value of ``flag`` in a command line (last occurrence wins).

    Returns ``True`` for a present boolean flag, a list of words for ``--lora-modules``, the
    value string otherwise, ``None`` when absent.
    """
    spans = _flag_spans(argv, flag)
    if not spans:
        return None
    i, j = spans[-1]
    if "=" in argv[i] and argv[i].startswith(flag + "="):
        value = argv[i].split("=", 1)[1]
        return value.split() if flag in LIST_FLAGS else value
    if flag in BOOLEAN_FLAGS:
        return True
    if flag in LIST_FLAGS:
        return list(argv[i + 1:j])
    return argv[i + 1] if j > i + 1 else None


def set_flags(argv: Sequence[str], flags: Mapping[str, str | Sequence[str] | bool | None]
              ) -> list[str]:
    """A copy of ``argv`` with each flag removed and, unless its value is ``None`` or
    ``False``, appended with the new value (``True`` for a boolean flag, a list of words
    for ``--lora-modules``)."""
    out = list(argv)
    for flag, value in flags.items():
        for i, j in reversed(_flag_spans(out, flag)):
            del out[i:j]
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, str):
            out += [flag, value]
        else:
            out += [flag, *value]
    return out


def server_url(argv: Sequence[str]) -> str:
    """``http://HOST:PORT`` of a ``vllm serve`` command (``--host``, ``--port``; vLLM's
    defaults are all interfaces and 8000, reached here through 127.0.0.1)."""
    host = flag_value(argv, "--host")
    port = flag_value(argv, "--port") or "8000"
    if not isinstance(host, str) or host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://{host}:{port}"


@dataclass
class LaunchedServer:
    """A vLLM server process started by loratwin (use as a context manager).

    Attributes
    ----------
    argv:
        The command, e.g. ``["vllm", "serve", MODEL, "--enable-lora", ...]``.
    log_path:
        File that receives the server's stdout and stderr.
    env:
        Extra environment variables (e.g. ``VLLM_CPU_KVCACHE_SPACE``).
    startup_timeout_s:
        How long to wait for ``/health`` before giving up.
    """

    argv: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    startup_timeout_s: float = 900.0
    stop_timeout_s: float = 60.0
    url: str = ""
    startup_s: float = float("nan")
    _proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.url = self.url or server_url(self.argv)

    def __enter__(self) -> LaunchedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log_text(self) -> str:
        """The server log so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> None:
        """Start the process and wait until ``/health`` answers 200.

        Raises
        ------
        StartupError
            The process exited first (reason from the log) or the timeout passed.
        """
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        t0 = time.monotonic()
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=env, start_new_session=True, preexec_fn=_default_sigint,
                )
            except OSError as exc:
                raise StartupError(self.url, "exec", f"cannot run {self.argv[0]!r}: "
                                   f"{exc.strerror or exc}") from None
        try:
            self._wait_healthy(t0)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - t0

    def _wait_healthy(self, t0: float) -> None:
        assert self._proc is not None
        with httpx.Client(timeout=5.0, follow_redirects=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    fail = startup_failure(self.log_text())
                    if fail is not None:
                        raise StartupError(self.url, fail.reason, fail.line)
                    raise StartupError(self.url, "exited", f"exit code {code}; see "
                                                           f"{self.log_path}")
                if time.monotonic() - t0 > self.startup_timeout_s:
                    raise StartupError(self.url, "timeout", f"no healthy answer within "
                                       f"{self.startup_timeout_s:g} s; see {self.log_path}")
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(f"{self.url}/health").status_code == 200:
                        return
                time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server: SIGINT to its process group, then SIGTERM, then SIGKILL."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGINT, self.stop_timeout_s), (signal.SIGTERM, 10.0),
                            (signal.SIGKILL, 10.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        # engine processes of the group that outlived the API server
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
