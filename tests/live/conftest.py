"""Fixtures of the live-path unit tests: a fake vLLM server on a loopback port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.live.fakevllm import FakeVllm


@pytest.fixture
def fake_vllm() -> Iterator[FakeVllm]:
    """A fresh fake vLLM 0.32 server (adapters a0, a1; max_loras 2)."""
    server = FakeVllm().start()
    yield server
    server.stop()
