"""vLLM 0.8.5's V1 scheduler as the twin applies it (``vllm/v1/core/sched/scheduler.py``).

One ``Scheduler.schedule()`` call, in vLLM's order:

1. **Running requests**, in admission order, while ``token_budget`` (``max_num_batched_tokens``)
   lasts: each gets ``min(num_tokens - num_computed_tokens, token_budget)`` tokens (chunked
   prefill; a decode gets 1). ``KVCacheManager.allocate_slots`` must find the blocks; when it
   cannot, the *last* running request is preempted (``self.running.pop()``: its blocks are
   freed, ``num_computed_tokens = 0``, it will recompute) and put at the front of the waiting
   queue, until the allocation succeeds or the request preempted itself.
2. **The max_loras cap**: ``scheduled_loras`` = the adapters of the running requests
   *scheduled in this step* (``scheduled_running_reqs``; base-model requests count for
   nothing).
3. **Waiting requests**, only if nothing was preempted in this step, FCFS (preempted requests
   at the front), while the budget lasts and fewer than ``max_num_seqs`` requests run: a
   request whose adapter is not in ``scheduled_loras`` while ``len(scheduled_loras) ==
   max_loras`` is *skipped* (popped and put back at the head afterwards, in order) and the
   queue is walked on; the first request ``allocate_slots`` cannot serve (blocks for its first
   chunk, ``min(num_tokens, token_budget)`` tokens) stops the walk.
4. ``update_from_output`` appends one sampled token to every request whose prompt (or
   recomputation) is complete and finishes it at ``max_tokens`` or ``max_model_len``
   (``check_stop`` in ``sched/utils.py``); a partial prefill chunk samples nothing.

The engine core runs these synchronously (``EngineCore.step``: schedule, execute, update);
requests that arrived meanwhile are added before the next ``schedule()``. ``--scheduling-policy
priority`` is rejected by V1 in this release (``vllm/v1/engine/processor.py``).
"""

from __future__ import annotations

from loratwin.twin.release import SchedulerRules


def admission_blocks(num_tokens: int, num_new_tokens: int, block_size: int) -> int:
    """Free blocks a waiting request needs to be admitted: those of its first chunk.

    Parameters
    ----------
    num_tokens:
        The request's tokens (prompt plus any generated before a preemption).
    num_new_tokens:
        Tokens scheduled for it in this step (``min(num_tokens, token_budget)``).
    block_size:
        KV block size in tokens.
    """
    return -(-num_new_tokens // block_size)


RULES = SchedulerRules(
    # `scheduled_loras = set(req.lora_request.lora_int_id for req in scheduled_running_reqs ...)`
    max_loras_counts_unscheduled_running=False,
    # `allocate_slots(request, num_new_tokens + num_external_tokens, computed_blocks)`: the
    # first chunk only
    reserve_full_sequence=False,
    async_scheduling_default=False,
    async_scheduling_supported=False,
    admission_blocks=admission_blocks,
)
