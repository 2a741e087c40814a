"""The vLLM of the test group imports and exposes the V1 scheduler the twin mirrors."""

from __future__ import annotations


def test_vllm_release_and_scheduler_import() -> None:
    import vllm
    from vllm.v1.core.sched.scheduler import Scheduler

    major, minor = (int(p) for p in vllm.__version__.split(".")[:2])
    assert (major, minor) >= (0, 8)
    assert callable(Scheduler.schedule) and callable(Scheduler.update_from_output)
