"""A step cost with the costs taken out: every step that computes tokens takes 1 s.

With it, engine time counts ``schedule()`` calls, so arrivals can be placed before a given step
(at an integer time) and the twin's per-step traces compared with vLLM's scheduler driven
step by step (``tests/realvllm``).
"""

from __future__ import annotations

from loratwin.twin.cost import StepCost


class UnitStepCost(StepCost):
    """1 s per step with tokens, nothing for the scheduler or adapter loads."""

    def exec_s(self, num_tokens: int, n_decode: int, n_prefill: int, context_tokens: int,
               n_adapters: int) -> float:
        return 1.0 if num_tokens > 0 else 0.0

    def sched_s(self, n_running: int, walked: int) -> float:
        return 0.0

    def decode_run(self, n_decode: int, context_tokens: int, n_adapters: int, n_running: int,
                   walked: int) -> tuple[float, float, int]:
        return 1.0, 0.0, 1 << 62

    def cpu_load_s(self, adapter_rank: int) -> float:
        return 0.0

    def disk_load_s(self, adapter_rank: int) -> float:
        return 0.0
