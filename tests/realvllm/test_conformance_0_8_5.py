"""vLLM 0.8.5's own scheduler and the twin (fast engine and literal reference) on the same
random request streams, compared step by step (``conformance.py``).

vLLM 0.8.5 runs in a venv of its own (``.ci/vllm-env-0.8.5`` builds ``.venv-vllm-0.8.5``;
``LORATWIN_VLLM_085_PYTHON`` points to another interpreter), as a subprocess that reads the
streams as JSON and prints the traces (``vllm_driver.py``), so loratwin's dependencies stay
out of it. Every step must be identical: scheduled request ids and token counts, preempted
ids, finished ids, distinct adapters.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from loratwin.profile.store import load_profile
from tests.realvllm.conformance import Tally, random_stream

pytestmark = pytest.mark.vllm_venv

N_STREAMS = 300
REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("vllm_driver.py")


def vllm_085_python() -> Path | None:
    """The interpreter of the vLLM 0.8.5 venv, or None when it is not built."""
    env = os.environ.get("LORATWIN_VLLM_085_PYTHON")
    path = Path(env) if env else REPO / ".venv-vllm-0.8.5" / "bin" / "python"
    return path if path.is_file() else None


def run_vllm_085(streams: list[dict], tmp: Path, python: Path) -> dict:
    """Traces of vLLM 0.8.5's scheduler for the streams (subprocess in its venv)."""
    src = tmp / "streams.json"
    src.write_text(json.dumps(streams))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    done = subprocess.run([str(python), str(DRIVER), str(src)], capture_output=True,
                          text=True, timeout=7200, env=env, check=False)
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-5:])
        raise AssertionError(f"vLLM 0.8.5 driver failed ({done.returncode}):\n{tail}")
    return json.loads(done.stdout)


def test_twin_schedules_every_step_as_vllm_0_8_5(tmp_path: Path) -> None:
    python = vllm_085_python()
    if python is None:
        pytest.skip("vLLM 0.8.5 venv missing: build it with .ci/vllm-env-0.8.5 "
                    "(or set LORATWIN_VLLM_085_PYTHON)")
    streams = [random_stream(seed, "0.8.5") for seed in range(N_STREAMS)]
    out = run_vllm_085(streams, tmp_path, python)
    assert out["vllm"].startswith("0.8.5"), out["vllm"]
    llama = load_profile("llama-3.1-8b-instruct")
    tally = Tally()
    for stream, raw in zip(streams, out["traces"], strict=True):
        tally.add(stream["seed"], stream, raw, "0.8.5", llama)
    steps, same_fast, same_ref = tally.steps, tally.same_fast, tally.same_ref
    failures = tally.failures
    print(f"vLLM 0.8.5: {N_STREAMS} streams, {steps} steps; identical: fast engine "
          f"{same_fast}, reference {same_ref}")
    assert steps > 10 * N_STREAMS
    assert not failures, "\n".join(failures[:5])
