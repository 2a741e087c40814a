"""The event loop of the digital twin: one vLLM V1 engine serving many LoRA adapters.

The rules come from the release's package (``loratwin.twin.vllm_0_8_5``, ``vllm_0_32``,
``vllm_0_33``: ``scheduler``, ``kv_cache_manager``, ``lora_manager``), read once per run into
:class:`~loratwin.twin.release.ReleaseRules`; this module is the machinery that applies them
without walking every running request every step:

* Each engine step first accepts the requests that arrived while the previous step ran, then
  ``schedule()`` walks the *running* requests (in admission order) and then the *waiting*
  requests (FCFS, preempted requests at the front) under a budget of
  ``max_num_batched_tokens`` tokens (chunked prefill) and ``max_num_seqs`` running requests.
* KV cache blocks of ``block_size`` tokens are allocated incrementally out of the pool less
  its null block. When a running request cannot get a block, the last running request is
  preempted (its KV cache is freed and it will recompute) and goes to the front of the
  waiting queue; a step that preempted admits no waiting request. A waiting request needs
  free blocks for its first chunk (0.8.5) or for its whole sequence (0.32 and later).
* ``max_loras`` bounds the adapters counted in a step (those of the scheduled running
  requests, or from 0.33 of all running requests): a waiting request whose adapter would
  exceed it is skipped, and the requests behind it are still considered.
* With asynchronous scheduling (default from 0.32) the output of step n is processed after
  step n+1 was scheduled: a request whose last token step n sampled is not scheduled in step
  n+1 but keeps its blocks and its place among the running requests until then.
* GPU slots (``max_loras``) and the CPU adapter cache (``max_cpu_loras``) are LRU caches; a
  step that needs an adapter that is not in a GPU slot pays the load (from the CPU cache, or
  from disk on a CPU-cache miss). Static adapters are loaded at start-up as vLLM's
  ``--lora-modules`` does, so the last ``max_cpu_loras`` adapters start in the CPU cache and
  the last ``max_loras`` of them in GPU slots.
* Requests generate exactly their output length; the first token is sampled in the step that
  completes the prompt.

The hot loop never iterates over all running requests. Per-request progress is implicit:
a decoding request advances one token per step, so its finishing step is known when it
starts decoding (a heap), the decoders that need a new KV block in a step are those whose
``computed tokens % block_size`` phase matches (16 counters), and the context tokens are a
running sum. Runs of identical decode-only steps between events are applied in one go.
Only preemption walks the running list, and only from its tail.

Layout: this module holds :func:`run_engine`, the loop (:func:`event_loop`) and one engine
step (:func:`engine_step`); the state is :class:`~loratwin.twin.engine_state.EngineState`,
the steps are in :mod:`loratwin.twin.engine_steps` (arrivals, ``schedule()`` of running and
waiting requests, preemption, adapter loads, ``update_from_output``), the waiting queue in
:mod:`loratwin.twin.waiting` and the event skipping in :mod:`loratwin.twin.skip`
(``docs/twin-versions.md`` has the table).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loratwin.profile.model import Profile, kv_capacity
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.engine_state import EngineState
from loratwin.twin.engine_steps import (
    accept_arrivals,
    account_step,
    advance_partial,
    compact_running,
    finish_decoders,
    pending_only_loras,
    release_pending,
    schedule_running,
    schedule_waiting,
    start_admitted,
    trace_scheduled,
    trace_step,
)
from loratwin.twin.release import release_rules
from loratwin.twin.skip import skip_decode_steps
from loratwin.twin.trace import StepTrace
from loratwin.twin.waiting import compact_heaps
from loratwin.workload.types import Requests

__all__ = ["RawRun", "run_engine"]


@dataclass(frozen=True)
class RawRun:
    """Raw outcome of :func:`run_engine` (per-request arrays and counters).

    Times are engine times in s (the client adds ``frontend_latency_s``); NaN = never.
    """

    first_token_s: np.ndarray
    finish_s: np.ndarray
    preemptions_per_request: np.ndarray
    dropped: np.ndarray
    steps: int
    preemptions: int
    adapter_loads: int
    disk_loads: int
    busy_s: float
    end_s: float
    running_time_integral: float
    waiting_time_integral: float
    kv_used_time_integral: float
    kv_blocks: int
    itl_step_s: np.ndarray
    itl_step_weight: np.ndarray
    resume_gaps_s: np.ndarray
    timeseries: dict[str, np.ndarray] | None
    features: dict[str, float] | None
    wall_s: float


def run_engine(
    profile: Profile,
    server: ServerConfig,
    adapter_ranks: Sequence[int],
    requests: Requests,
    client: ClientConfig,
    *,
    cost: StepCost | None = None,
    record_timeseries: bool = False,
    preload: bool = True,
    trace: list[StepTrace] | None = None,
) -> RawRun:
    """Simulate one server over the client's window and return raw per-request outcomes.

    Parameters
    ----------
    profile:
        Fitted performance profile (step costs, load times, KV capacity).
    server:
        vLLM flags and release (resolved against the profile here). The caller has checked
        that the server starts (no memory error).
    adapter_ranks:
        Rank of each adapter, indexed like ``requests.adapter``.
    requests:
        Arrival-ordered requests (see :class:`loratwin.workload.types.Requests`).
    client:
        Benchmark window and client port limit.
    cost:
        Step-cost model; defaults to ``StepCost(profile, server)``. Calibration passes a
        recording subclass.
    record_timeseries:
        Keep one row per simulated step (or run of identical steps).
    preload:
        Load the static adapters at start-up (vLLM's ``--lora-modules``).
    trace:
        If given, one :class:`StepTrace` per ``schedule()`` call is appended (slow: for the
        conformance tests).

    Raises
    ------
    ValueError
        If the KV cache cannot start (the caller should check :func:`kv_capacity` first).
    """
    wall0 = time.perf_counter()
    server = server.resolved(profile)
    rules = release_rules(server.vllm_version)
    if cost is None:
        cost = StepCost(profile, server)
    cap = kv_capacity(
        profile, server.max_loras, server.max_lora_rank, enable_lora=server.enable_lora,
        max_num_seqs=server.max_num_seqs, gpu_memory_utilization=server.gpu_memory_utilization,
        max_model_len=server.max_model_len,
    )
    if cap.failure is not None:
        raise ValueError(f"server does not start: {cap.failure}")
    es = EngineState(profile, server, rules, cap, cost, adapter_ranks, requests, client,
                     preload=preload, record_timeseries=record_timeseries, trace=trace)
    event_loop(es)
    return _raw_run(es, time.perf_counter() - wall0)


def event_loop(es: EngineState) -> None:
    """Run engine steps from ``es.t`` until the window closes or nothing is left to do.

    Each iteration accepts the arrivals, then either skips a run of identical decode-only
    steps (:func:`loratwin.twin.skip.skip_decode_steps`) or runs one general step
    (:func:`engine_step`); an idle engine jumps to the next arrival.
    """
    tw_q = es.time_wait_q
    tw_s = es.time_wait_s
    t_end = es.t_end
    while True:
        t = es.t
        if es.next_arrival_s <= t or (tw_q and tw_q[0][0] + tw_s <= t):
            accept_arrivals(es, t)
        if es.num_running == 0 and es.num_waiting == 0:
            if es.next_arrival_s >= t_end:
                break
            es.t = es.next_arrival_s
            continue
        if t >= t_end:
            break
        n_dec = es.num_decoding
        if es.partial < 0 and n_dec > 0 and n_dec == es.num_running and skip_decode_steps(es):
            continue
        if not engine_step(es):
            break


def engine_step(es: EngineState) -> bool:
    """One engine step: ``schedule()``, the forward pass's cost, ``update_from_output``.

    Returns False when nothing can run before the window closes (the loop ends).
    """
    step = es.step
    t = es.t
    if es.max_loras_counts_pending:
        es.pending_only_loras.clear()
        pending_only_loras(es)
    preempted, chunk_x, need_x = schedule_running(es, step)
    n_dec = es.num_decoding
    budget = es.max_num_batched_tokens - n_dec - chunk_x
    n_tok = n_dec + chunk_x
    n_pref = 1 if chunk_x > 0 else 0
    if not preempted and es.num_waiting and budget > 0:
        admitted, new_x, walked, load_s, n_new = schedule_waiting(es, step, budget)
        n_tok += n_new
        n_pref += len(admitted)
    else:
        admitted, new_x, walked, load_s = [], -1, 0, 0.0
    released = False
    n_run_sched = es.num_running  # schedule() walked the running list before that
    if es.pending:
        release_pending(es)
        released = True
    tracing = es.tracing
    if tracing:
        scheduled = trace_scheduled(es, chunk_x, admitted)
    if n_tok == 0:
        return _empty_step(es, step, t, preempted or released)
    ctx = es.decode_context + n_dec
    e_s = es.exec_s(n_tok, n_dec, n_pref, ctx, es.num_scheduled_loras)
    s_s = es.sched_s(n_run_sched, walked)
    # with asynchronous scheduling the scheduler runs during the forward pass
    dt = ((e_s if e_s > s_s else s_s) if es.overlap else e_s + s_s) + load_s
    es.walked_total += walked
    account_step(es, t, dt, 1, n_tok)
    t_after = t + dt
    es.t = t_after
    # update_from_output
    finish_decoders(es, step, t_after)
    if chunk_x > 0 and es.partial >= 0:
        advance_partial(es, step, t_after, chunk_x, need_x)
    if admitted:
        start_admitted(es, step, t_after, admitted, new_x)
        if new_x >= 0:
            es.partial = new_x
    if tracing:
        trace_step(es, step, t, scheduled)
    es.step = step + 1
    if len(es.running) > 4 * es.num_running + 1024:
        compact_running(es)
    if len(es.waiting_heap) > es.heap_limit or len(es.waiting_heap_in_batch) > es.heap_limit:
        compact_heaps(es)
    return True


def _empty_step(es: EngineState, step: int, t: float, repeat: bool) -> bool:
    """A ``schedule()`` call with no tokens. After a preemption or a release the next call
    can schedule again (`repeat`: the step counts); otherwise nothing runs until the next
    arrival. Returns False if that is after the window."""
    if repeat:
        if es.tracing:
            assert es.trace is not None
            es.trace.append(StepTrace(step, t, {}, tuple(sorted(es.trace_preempted)), ()))
            es.trace_preempted.clear()
        es.step = step + 1
        return True
    if es.next_arrival_s >= es.t_end:
        return False
    es.t = max(t, es.next_arrival_s)
    return True


def _raw_run(es: EngineState, wall_s: float) -> RawRun:
    """The :class:`RawRun` of a finished loop; requests still open when the window closes
    were cancelled by the client."""
    first, fin, pre, dropped = es.per_input_request()
    ts = es.timeseries
    ts_arrays = (
        {k: np.asarray(v, dtype=np.float64) for k, v in ts.items()} if ts is not None else None
    )
    t = es.t
    return RawRun(
        first_token_s=first,
        finish_s=fin,
        preemptions_per_request=pre,
        dropped=dropped,
        steps=es.step,
        preemptions=es.preemptions,
        adapter_loads=es.adapter_loads,
        disk_loads=es.disk_loads,
        busy_s=es.busy_s,
        end_s=min(t, es.t_end) if t > 0 else es.t_end,
        running_time_integral=es.running_integral,
        waiting_time_integral=es.waiting_integral,
        kv_used_time_integral=es.kv_integral,
        kv_blocks=es.num_gpu_blocks,
        itl_step_s=np.asarray(es.itl_dt, dtype=np.float64),
        itl_step_weight=np.asarray(es.itl_w, dtype=np.float64),
        resume_gaps_s=np.asarray(es.resume_gaps, dtype=np.float64),
        timeseries=ts_arrays,
        features={"walked": float(es.walked_total)},
        wall_s=wall_s,
    )
