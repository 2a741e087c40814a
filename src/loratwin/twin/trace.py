"""Per-step traces of the scheduler: what one ``schedule()`` call decided.

The twin's engine and the reference schedulers of the tests record them on request, so that
they can be compared step by step with vLLM's own ``Scheduler`` driven in-process
(``tests/realvllm``). Request ids are indices into the simulated :class:`Requests`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepTrace:
    """One ``schedule()`` call and the processing of its output.

    Attributes
    ----------
    step:
        Index of the ``schedule()`` call (0-based; empty calls that vLLM repeats while
        nothing can run until the next arrival are not counted).
    t_s:
        Engine time at the start of the step, s.
    scheduled:
        ``{request id: tokens scheduled}`` (vLLM's ``num_scheduled_tokens``).
    preempted:
        Requests preempted in this call, sorted.
    finished:
        Requests whose last token this step sampled, sorted (finished when its output is
        processed by ``update_from_output``).
    """

    step: int
    t_s: float
    scheduled: dict[int, int]
    preempted: tuple[int, ...]
    finished: tuple[int, ...]
