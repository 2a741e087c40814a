"""The server launcher: command-line flags, start-up failures, start / health / stop."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import httpx
import pytest

from loratwin.errors import ConfigError
from loratwin.live.errors import StartupError
from loratwin.live.launcher import (
    LaunchedServer,
    flag_value,
    kv_tokens_from_log,
    server_url,
    set_flags,
    split_command,
    startup_failure,
)

ARGV = ["vllm", "serve", "m", "--enable-lora", "--lora-modules", "a=/p/a", "b=/p/b",
        "--max-loras", "2", "--port=8011"]


def test_flag_value_and_set_flags() -> None:
    assert flag_value(ARGV, "--enable-lora") is True
    assert flag_value(ARGV, "--lora-modules") == ["a=/p/a", "b=/p/b"]
    assert flag_value(ARGV, "--max-loras") == "2"
    assert flag_value(ARGV, "--port") == "8011"
    assert flag_value(ARGV, "--max-cpu-loras") is None
    new = set_flags(ARGV, {"--max-loras": "4", "--port": "9000", "--enable-lora": False,
                           "--lora-modules": ["c=/p/c"], "--max-cpu-loras": "8"})
    assert new[:3] == ["vllm", "serve", "m"]
    assert flag_value(new, "--max-loras") == "4" and flag_value(new, "--port") == "9000"
    assert flag_value(new, "--enable-lora") is None
    assert flag_value(new, "--lora-modules") == ["c=/p/c"]
    assert new.count("--max-loras") == 1 and "--port=8011" not in new


def test_server_url_and_split() -> None:
    assert server_url(ARGV) == "http://127.0.0.1:8011"
    assert server_url(["vllm", "serve", "m", "--host", "10.0.0.5"]) == "http://10.0.0.5:8000"
    assert split_command("vllm serve 'my model' --port 1")[2] == "my model"
    with pytest.raises(ConfigError, match="launch"):
        split_command("vllm serve 'unclosed")
    with pytest.raises(ConfigError, match="launch"):
        split_command("   ")


# the start-up errors as vLLM 0.32 words them (vllm/v1/core/kv_cache_utils.py)
KV_LOG = ("INFO x\nValueError: To serve at least one request with the model's max seq len "
          "(131072), (16.00 GiB KV cache is needed, which is larger than the available KV "
          "cache memory (9.75 GiB). Try increasing `gpu_memory_utilization`\n")


def test_startup_failures_from_logs() -> None:
    f = startup_failure(KV_LOG)
    assert f is not None and f.reason == "kv_cache_smaller_than_max_model_len"
    assert (f.kv_needed_gib, f.kv_available_gib) == (16.0, 9.75)
    f = startup_failure("ValueError: No available memory for the cache blocks. Try ...")
    assert f is not None and f.reason == "no_memory_for_kv_cache"
    f = startup_failure("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate")
    assert f is not None and f.reason == "cuda_oom"
    assert startup_failure("INFO all good\n") is None
    assert kv_tokens_from_log("INFO [kv_cache_utils.py] CPU KV cache size: 2,097,152 tokens"
                              ) == 2_097_152


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launch_waits_for_health_and_stops(tmp_path) -> None:
    port = _free_port()
    argv = [sys.executable, "-m", "tests.live.fakevllm", "--port", str(port), "--delay", "1"]
    server = LaunchedServer(argv, tmp_path / "server.log", url=f"http://127.0.0.1:{port}",
                            startup_timeout_s=60)
    with server:
        assert httpx.get(f"{server.url}/health").status_code == 200
        assert server.startup_s >= 1.0
        pid = server._proc.pid
    with pytest.raises(ProcessLookupError):
        import os

        os.kill(pid, 0)


def test_launch_failure_names_the_reason(tmp_path) -> None:
    script = f"import sys; print({KV_LOG!r}); sys.exit(1)"
    server = LaunchedServer([sys.executable, "-c", script], tmp_path / "server.log",
                            url=f"http://127.0.0.1:{_free_port()}", startup_timeout_s=60)
    t0 = time.monotonic()
    with pytest.raises(StartupError, match="kv_cache_smaller_than_max_model_len") as exc:
        server.start()
    assert exc.value.reason == "kv_cache_smaller_than_max_model_len"
    assert time.monotonic() - t0 < 30


def test_launch_of_missing_program(tmp_path) -> None:
    server = LaunchedServer(["/nonexistent/vllm", "serve"], tmp_path / "log", url="http://x:1")
    with pytest.raises(StartupError, match="cannot run"):
        server.start()


def test_stop_interrupts_a_server_started_with_sigint_ignored(tmp_path: Path) -> None:
    """A background job (``nohup loratwin ... &``) inherits SIGINT ignored; the server must
    still get SIGINT's default action, so that ``stop`` ends it by SIGINT, not 60 s later by
    SIGTERM."""
    port = _free_port()
    argv = [sys.executable, "-m", "tests.live.fakevllm", "--port", str(port)]
    server = LaunchedServer(argv, tmp_path / "server.log", url=f"http://127.0.0.1:{port}",
                            startup_timeout_s=60, stop_timeout_s=60)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with server:
            proc = server._proc
            assert proc is not None
    finally:
        signal.signal(signal.SIGINT, old)
    assert proc.returncode == -signal.SIGINT
