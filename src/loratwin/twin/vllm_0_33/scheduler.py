"""vLLM 0.33's V1 scheduler as the twin applies it (``vllm/v1/core/sched/scheduler.py``).

Everything of :mod:`loratwin.twin.vllm_0_32.scheduler` holds (running requests first with
recompute preemption of the last one, skip-not-block at the ``max_loras`` cap, whole-sequence
admission check, asynchronous scheduling by default) except one rule:

* **The max_loras cap** counts the adapters of *all* running requests, scheduled in this step
  or not ("Record the LoRAs of all running requests, including those not scheduled in this
  step, which can join a later batch": ``scheduled_loras = set(... for req in self.running
  ...)``). With asynchronous scheduling a request whose last token is still in flight is
  running but not scheduled; its adapter keeps its place under the cap for that step.

Also new in 0.33, without effect on the twin's requests: a waiting request that can be given
no token (encoder budget, Mamba alignment) is skipped instead of stopping the walk.
"""

from __future__ import annotations

from loratwin.twin.release import SchedulerRules
from loratwin.twin.vllm_0_32.scheduler import admission_blocks

RULES = SchedulerRules(
    max_loras_counts_unscheduled_running=True,
    reserve_full_sequence=True,
    async_scheduling_default=True,
    async_scheduling_supported=True,
    admission_blocks=admission_blocks,
)

__all__ = ["RULES", "admission_blocks"]
