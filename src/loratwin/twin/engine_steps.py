"""The steps of one vLLM V1 engine step, as the twin applies them to an :class:`EngineState`.

In vLLM's order (``EngineCore.step`` / ``step_with_batch_queue`` in ``vllm/v1/engine/core.py``,
``Scheduler.schedule()`` / ``update_from_output()`` in ``vllm/v1/core/sched/scheduler.py``):

1. :func:`accept_arrivals`: requests that arrived while the previous step ran are added
   (``add_request``), unless vLLM refuses them or the client has no port for them;
2. :func:`schedule_running`: the running requests get their tokens (a decode 1, the partial
   prefill its next chunk) and KV blocks; when blocks run out the last running request is
   preempted (:func:`preempt_tail`);
3. :func:`schedule_waiting`: waiting requests are admitted under ``token_budget``,
   ``max_num_seqs``, the ``max_loras`` cap and the release's admission check; the model
   runner loads their missing adapters;
4. :func:`release_pending`: with asynchronous scheduling, the previous step's finished
   requests leave ``running`` only now;
5. :func:`account_step`: the step's cost and the time integrals;
6. ``update_from_output``: decoders at their last token finish (:func:`finish_decoders`,
   :func:`finish_request`), the partial prefill advances (:func:`advance_partial`), admitted
   requests with a complete prompt sample their first token (:func:`start_admitted`,
   :func:`start_decode`).

What differs by release is read from the release's rules (:mod:`loratwin.twin.release`,
``vllm_<release>/scheduler.py``, ``kv_cache_manager.py``, ``lora_manager.py``) into the state:
``admission_blocks``, ``async_scheduling``, ``max_loras_counts_pending``,
``apply_adapters``, the reserved KV blocks. Runs of identical decode-only steps are applied
in one go by :mod:`loratwin.twin.skip`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from heapq import heappop, heappush

import numpy as np

from loratwin.twin.engine_state import (
    BLOCK_BITS,
    BLOCK_MASK,
    CHUNK,
    DECODE,
    DONE,
    PEND,
    PREFILL,
    WAITING,
    EngineState,
)
from loratwin.twin.trace import StepTrace
from loratwin.twin.waiting import prepend_request, wait_pos


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


# ---------------------------------------------------------------- 1. arrivals


def _arrival(arrival_s: np.ndarray, i: int, n: int) -> float:
    """Arrival time of input request `i` (s), or inf past the last of the `n`."""
    return float(arrival_s[i]) if i < n else math.inf


def accept_arrivals(es: EngineState, t: float) -> None:
    """Close expired TIME_WAIT ports, then add the requests arrived by engine time `t` (s).

    The engine core drains its input queue before each step (``EngineCore.step``). A request
    with ``prompt + max_tokens > max_model_len`` is refused (HTTP 400, ``rejected``); when the
    client holds ``max_ports`` connections (open or in TIME_WAIT) every request arriving up to
    `t` is dropped. Accepted requests join the waiting queue (:mod:`loratwin.twin.waiting`).
    """
    tw_q = es.time_wait_q
    tw_s = es.time_wait_s
    tw_n = es.time_wait_n
    while tw_q and tw_q[0][0] + tw_s <= t:
        tw_n -= tw_q.popleft()[1]
    es.time_wait_n = tw_n
    next_arr = es.next_arrival_s
    if next_arr > t:
        return
    (orig, ad, plen, olen, state, key, wq, run_cnt, gheap, mheap, rejected, arr_np, port_cap,
     max_len) = es.arrival_view
    n = es.num_inputs
    ia = es.next_input
    chunk0 = es.chunk0
    c_ad = es.chunk_lora
    c_in = es.chunk_in
    c_out = es.chunk_out
    c_arr = es.chunk_arrival
    r = es.num_accepted
    inflight = es.inflight
    n_wait = es.num_waiting
    while next_arr <= t:
        i = ia - chunk0
        if inflight + tw_n >= port_cap:
            # drop up to the first arrival after t (found in the current chunk if it is there)
            if 0 <= i < len(c_arr) and c_arr[-1] > t:
                j = chunk0 + bisect_right(c_arr, t, i)
            else:
                j = int(np.searchsorted(arr_np, t, side="right"))
            es.dropped_ranges.append((ia, j))
            ia = j
            k = j - chunk0
            next_arr = c_arr[k] if 0 <= k < len(c_arr) else _arrival(arr_np, ia, n)
            break
        if i < 0 or i >= len(c_ad):
            chunk0 = ia
            i = 0
            c_ad = es.lora_np[ia:ia + CHUNK].tolist()
            c_in = es.input_np[ia:ia + CHUNK].tolist()
            c_out = es.output_np[ia:ia + CHUNK].tolist()
            c_arr = arr_np[ia:ia + CHUNK].tolist()
        p_in = c_in[i]
        p_out = c_out[i]
        a = c_ad[i]
        ia += 1
        next_arr = c_arr[i + 1] if i + 1 < len(c_arr) else _arrival(arr_np, ia, n)
        if p_in + p_out > max_len:
            rejected.append(ia - 1)  # vLLM refuses the request (400)
            continue
        if r == es.capacity:
            es.grow()
        orig[r] = ia - 1
        ad[r] = a
        plen[r] = p_in
        olen[r] = p_out
        state[r] = WAITING
        key[r] = r
        inflight += 1
        q = wq[a]
        q.append(r)
        n_wait += 1
        if len(q) == 1:
            heappush(gheap, (r, a))
            if run_cnt[a] > 0:
                heappush(mheap, (r, a))
        r += 1
    es.num_accepted = r
    es.inflight = inflight
    es.num_waiting = n_wait
    es.next_input = ia
    es.next_arrival_s = next_arr
    es.chunk0 = chunk0
    es.chunk_lora = c_ad
    es.chunk_in = c_in
    es.chunk_out = c_out
    es.chunk_arrival = c_arr


# ---------------------------------------------------------------- 2. running requests


def pending_only_loras(es: EngineState) -> None:
    """0.33: adapters counted for ``max_loras`` only through a request whose last token is in
    flight (running but not scheduled; ``scheduled_loras`` is built from ``self.running``)."""
    pend_only = es.pending_only_loras
    state = es.status
    run_cnt = es.running_per_lora
    ad = es.lora
    for r in es.pending:
        if state[r] == PEND and run_cnt[ad[r]] == 0:
            pend_only.add(ad[r])


def schedule_running(es: EngineState, step: int) -> tuple[bool, int, int]:
    """The running requests' part of ``schedule()``: returns ``(preempted, chunk, blocks)``.

    Every decoder gets 1 token (its new KV block, if its ``num_computed_tokens`` crosses a
    block boundary, comes out of the free pool); the partial prefill at the tail gets
    ``min(num_tokens - num_computed_tokens, token_budget)`` tokens (`chunk`) and the `blocks`
    they need (``KVCacheManager.allocate_slots``). When the pool cannot serve them, the last
    running request is preempted until it can (``self.running.pop()``, every release).
    """
    bs = es.block_size
    demand = es.phase_count[step % bs]
    chunk_x = 0
    need_x = 0
    x = es.partial
    if x >= 0:
        comp = es.num_computed_tokens
        chunk_x = min(es.num_prompt_tokens[x] + es.num_output_tokens[x] - comp[x],
                      es.max_num_batched_tokens - es.num_decoding)
        if chunk_x > 0:
            need_x = _cdiv(comp[x] + chunk_x, bs) - es.num_blocks[x]
    free = es.num_free_blocks
    preempted = False
    if demand + need_x > free:
        preempted = True
        t = es.t
        while demand + need_x > free:
            was_x = es.partial
            freed, dem = preempt_tail(es, step, t)
            free += freed
            demand -= dem
            if was_x >= 0 and es.partial < 0:
                need_x = 0
                chunk_x = 0
            if es.num_running == 0:
                break
    es.num_free_blocks = free - demand - need_x
    return preempted, chunk_x, need_x


def leave_batch(es: EngineState, r: int, when: int) -> None:
    """Request `r` is no longer scheduled: its adapter leaves the batch after step `when`."""
    a = es.lora[r]
    k = es.running_per_lora[a] - 1
    es.running_per_lora[a] = k
    if k == 0:
        es.num_scheduled_loras -= 1
        es.scheduled_loras.discard(a)
        es.last_used[a] = when


def preempt_tail(es: EngineState, step: int, now: float) -> tuple[int, int]:
    """``_preempt_request`` of the last running request (recompute: its KV blocks are freed,
    ``num_computed_tokens = 0``, front of the waiting queue); every release.

    Returns ``(blocks freed, block demand of this step removed)``. A request whose last token
    is in flight (asynchronous scheduling) is freed now and finishes when its output is
    processed (``update_from_output``'s ``stopped_preempted_reqs``, 0.32).
    """
    order = es.running
    run_pos = es.running_pos
    state = es.status
    while True:
        r = order.pop()
        if run_pos[r] == len(order) and state[r] in (PREFILL, DECODE, PEND):
            break
    es.preemptions += 1
    es.num_preemptions[r] += 1
    run_pos[r] = -1
    es.num_running -= 1
    if es.tracing:
        es.trace_preempted.append(es.input_index[r])
    if state[r] == PEND:
        freed = es.num_blocks[r]
        es.num_blocks[r] = 0
        state[r] = DONE
        return freed, 0
    demand = 0
    bs = es.block_size
    if state[r] == DECODE:
        done = step - es.decode_step0[r]
        c_now = es.decode_computed0[r] + done
        freed = _cdiv(c_now, bs)
        ph = es.block_phase[r]
        if ph == step % bs:
            demand = 1
        es.phase_count[ph] -= 1
        es.num_decoding -= 1
        es.decode_context -= c_now
        es.num_output_tokens[r] = es.decode_output0[r] + done
        es.finish_step[r] = -1
        es.last_token_s[r] = now
    else:  # the partial prefill at the tail
        freed = es.num_blocks[r]
        es.partial = -1
    es.num_blocks[r] = 0
    es.num_computed_tokens[r] = 0
    state[r] = WAITING
    leave_batch(es, r, step - 1)
    prepend_request(es, r)
    return freed, demand


# ---------------------------------------------------------------- 3. waiting requests


def schedule_waiting(es: EngineState, step: int, budget: int
                     ) -> tuple[list[int], int, int, float, int]:
    """The waiting requests' part of ``schedule()`` with `budget` tokens left.

    FCFS (preempted requests first), while ``num_running < max_num_seqs`` and tokens are
    left: a request over the ``max_loras`` cap is passed over (skip-not-block, every
    release); the first that cannot get ``admission_blocks`` free KV blocks (its first chunk
    in 0.8.5, its whole sequence from 0.32: ``vllm_<release>/scheduler.py``) stops the walk.
    Then the model runner loads the batch's missing adapters (``apply_adapters``,
    ``lora_manager``).

    Returns ``(admitted, partial, walked, load_s, tokens)``: the admitted requests in order,
    the one left with a partial prompt (or -1), the waiting requests the walk looked at,
    the adapter load time in s, the tokens scheduled.
    """
    (bs, max_seqs, max_loras, admission_blocks, plen, gen, ad, key, state, comp, blk, run_pos,
     order, wq, run_cnt, gheap, mheap, pre_keys, rm_count, rm_bits, active,
     pend_only) = es.waiting_view
    n_running = es.num_running
    n_sched_ad = es.num_scheduled_loras
    n_wait = es.num_waiting
    free = es.num_free_blocks
    admitted: list[int] = []
    entering: list[int] = []
    walked = 0
    new_x = -1
    n_new = 0
    n_adm = 0
    n_po = len(pend_only)
    while True:
        if n_running >= max_seqs:
            break
        member = n_sched_ad + n_po >= max_loras
        heap = mheap if member else gheap
        r = -1
        while heap:
            k, a = heap[0]
            q = wq[a]
            if q and key[q[0]] == k and (
                    not member or run_cnt[a] > 0 or (n_po and a in pend_only)):
                r = q[0]
                break
            heappop(heap)
        if member and n_po:
            for a in pend_only:
                q = wq[a]
                if q and (r < 0 or key[q[0]] < key[r]):
                    r = q[0]
        if r < 0:
            walked = n_wait + n_adm
            break
        tokens = plen[r] + gen[r]
        num_new = tokens if tokens < budget else budget
        need = -(-num_new // bs)
        if admission_blocks(tokens, num_new, bs) > free:
            walked = wait_pos(es, r) + n_adm
            break
        if num_new == budget or n_running + 1 >= max_seqs:
            walked = wait_pos(es, r) + n_adm
        a = ad[r]
        q = wq[a]
        q.popleft()
        n_wait -= 1
        n_adm += 1
        if key[r] < 0:
            del pre_keys[bisect_left(pre_keys, key[r])]
        else:
            b = r >> BLOCK_BITS
            rm_count[b] += 1
            rm_bits[b] |= 1 << (r & BLOCK_MASK)
        state[r] = PREFILL
        comp[r] = num_new
        blk[r] = need
        free -= need
        budget -= num_new
        n_new += num_new
        run_pos[r] = len(order)
        order.append(r)
        n_running += 1
        if run_cnt[a] == 0:
            n_sched_ad += 1
            active.add(a)
            entering.append(a)
            if n_po and a in pend_only:
                pend_only.discard(a)
                n_po -= 1
        run_cnt[a] += 1
        if q:
            heappush(gheap, (key[q[0]], a))
            heappush(mheap, (key[q[0]], a))
        admitted.append(r)
        if num_new < tokens:
            new_x = r
        if budget <= 0:
            break
    es.num_running = n_running
    es.num_scheduled_loras = n_sched_ad
    es.num_waiting = n_wait
    es.num_free_blocks = free
    load_s = 0.0
    if es.enable_lora and entering:
        load_s = load_adapters(es, step, entering)
    return admitted, new_x, walked, load_s, n_new


def load_adapters(es: EngineState, step: int, entering: list[int]) -> float:
    """The model runner's ``set_active_adapters`` for a batch `entering` adapters joined.

    Returns the load time in s (0 when they are all in GPU slots); the release's
    ``lora_manager.apply_adapters`` updates the LRU caches.
    """
    in_gpu = es.in_gpu
    if all(in_gpu[a] for a in entering):
        return 0.0
    got = es.apply_adapters(
        step, es.scheduled_loras, entering, in_gpu, es.in_cpu, es.num_in_gpu, es.num_in_cpu,
        es.last_used, es.hash_rank, es.max_loras, es.max_cpu_loras, es.cpu_load_s,
        es.disk_load_s)
    es.adapter_loads += got.loads
    es.disk_loads += got.disk_loads
    es.num_in_gpu = got.n_gpu
    es.num_in_cpu = got.n_cpu
    return got.load_s


# ---------------------------------------------------------------- 4. asynchronous scheduling


def release_pending(es: EngineState) -> None:
    """Asynchronous scheduling (0.32 and later): ``update_from_output`` of the previous step
    runs after this step's ``schedule()``, so the requests that step finished leave
    ``running`` and free their KV blocks only now (``EngineCore.step_with_batch_queue``)."""
    state = es.status
    blk = es.num_blocks
    free = es.num_free_blocks
    n_running = es.num_running
    for r in es.pending:
        if state[r] == PEND:
            state[r] = DONE
            free += blk[r]
            blk[r] = 0
            n_running -= 1
    es.num_free_blocks = free
    es.num_running = n_running
    es.pending.clear()
    es.pending_only_loras.clear()


# ---------------------------------------------------------------- 5. cost and integrals


def account_step(es: EngineState, t: float, dt: float, k: int, n_tok: int) -> None:
    """Add `k` steps of `dt` s in all (from engine time `t`, s) to the time integrals.

    `n_tok` is the tokens of one step (the time-series row of a run of `k` identical steps
    holds the tokens of one of them).
    """
    n_running = es.num_running
    n_wait = es.num_waiting
    n_dec = es.num_decoding
    kv_used = es.num_gpu_blocks - es.num_free_blocks
    es.running_integral += n_running * dt
    es.waiting_integral += n_wait * dt
    es.kv_integral += kv_used * dt
    es.busy_s += dt
    if n_dec:
        es.itl_dt.append(dt / k)
        es.itl_w.append(n_dec * k)
    ts = es.timeseries
    if ts is not None:
        for name, v in (("t_s", t), ("dt_s", dt), ("steps", k), ("running", n_running),
                        ("waiting", n_wait), ("kv_used_blocks", kv_used), ("tokens", n_tok),
                        ("adapters", es.num_scheduled_loras)):
            ts[name].append(v)


# ---------------------------------------------------------------- 6. outputs


def finish_request(es: EngineState, r: int, now: float, blocks: int, step: int) -> None:
    """Request `r` sampled its last token at the end of `step` (holding `blocks` KV blocks).

    Synchronously it leaves ``running`` and frees its blocks at once; with asynchronous
    scheduling only after the next ``schedule()`` (:func:`release_pending`). Its client
    connection closes and holds a port in TIME_WAIT.
    """
    es.finish_s[r] = now
    if es.async_scheduling:
        es.status[r] = PEND
        es.num_blocks[r] = blocks
        es.pending.append(r)
    else:
        es.status[r] = DONE
        es.num_free_blocks += blocks
        es.num_running -= 1
    leave_batch(es, r, step)
    if es.tracing:
        es.trace_finished.append(es.input_index[r])
    es.inflight -= 1
    # connections close at the end of a step: one TIME_WAIT entry per step
    tw_q = es.time_wait_q
    if tw_q and tw_q[-1][0] == now:
        tw_q[-1][1] += 1
    else:
        tw_q.append([now, 1])
    es.time_wait_n += 1


def start_decode(es: EngineState, r: int, step: int, now: float) -> None:
    """Request `r` sampled a token at the end of `step` after computing its prompt (or its
    recomputation after a preemption); it finishes at ``max_tokens`` or ``max_model_len``
    (``check_stop``, ``vllm/v1/core/sched/utils.py``)."""
    gen = es.num_output_tokens
    tokens = es.num_prompt_tokens[r] + gen[r]
    g = gen[r] + 1
    gen[r] = g
    if g == 1:
        es.first_token_s[r] = now
    elif not math.isnan(es.last_token_s[r]):
        es.resume_gaps.append(now - es.last_token_s[r])
    bs = es.block_size
    if g >= es.max_tokens[r] or tokens >= es.max_model_len:
        finish_request(es, r, now, _cdiv(tokens, bs), step)
        return
    es.status[r] = DECODE
    es.decode_step0[r] = step + 1
    es.decode_computed0[r] = tokens
    es.decode_output0[r] = g
    f = step + (es.max_tokens[r] - g)
    es.finish_step[r] = f
    ph = (step + 1 - tokens) % bs
    es.block_phase[r] = ph
    es.phase_count[ph] += 1
    es.num_decoding += 1
    es.decode_context += tokens
    heappush(es.finish_heap, (f, r))


def advance_partial(es: EngineState, step: int, t: float, chunk_x: int, need_x: int) -> None:
    """The partial prefill computed `chunk_x` more tokens (`need_x` more blocks) in `step`;
    with its prompt complete it samples a token (:func:`start_decode`) at time `t` (s)."""
    x = es.partial
    comp = es.num_computed_tokens
    comp[x] += chunk_x
    es.num_blocks[x] += need_x
    if comp[x] >= es.num_prompt_tokens[x] + es.num_output_tokens[x]:
        es.partial = -1
        start_decode(es, x, step, t)


def finish_decoders(es: EngineState, step: int, t: float) -> None:
    """The decoders whose last token `step` sampled finish (see :func:`finish_request`; the
    common path written out: this is the hottest part of the loop)."""
    fin_heap = es.finish_heap
    if not fin_heap or fin_heap[0][0] > step:
        es.decode_context += es.num_decoding
        return
    (_, fin_step, phase, cnt, c_first, s_first, gen, olen, finish, ad, state, blk, run_cnt, active,
     last_used, pend, orig, bs, async_on) = es.finish_view
    tr_fin = es.trace_finished if es.tracing else None
    n_dec = es.num_decoding
    dec_ctx = es.decode_context + n_dec
    free = es.num_free_blocks
    n_running = es.num_running
    n_sched_ad = es.num_scheduled_loras
    step1 = step + 1
    n_closed = 0
    while fin_heap and fin_heap[0][0] <= step:
        f, r = heappop(fin_heap)
        if fin_step[r] != f:
            continue
        cnt[phase[r]] -= 1
        n_dec -= 1
        done_tokens = c_first[r] + (step1 - s_first[r])
        dec_ctx -= done_tokens
        gen[r] = olen[r]
        fin_step[r] = -1
        finish[r] = t
        a = ad[r]
        if async_on:  # leaves `running` after the next schedule()
            state[r] = PEND
            blk[r] = -(-done_tokens // bs)
            pend.append(r)
        else:
            state[r] = DONE
            free += -(-done_tokens // bs)
            n_running -= 1
        if tr_fin is not None:
            tr_fin.append(orig[r])
        k = run_cnt[a] - 1
        run_cnt[a] = k
        if k == 0:
            n_sched_ad -= 1
            active.discard(a)
            last_used[a] = step
        n_closed += 1
    es.num_decoding = n_dec
    es.decode_context = dec_ctx
    es.num_free_blocks = free
    es.num_running = n_running
    es.num_scheduled_loras = n_sched_ad
    if n_closed:
        es.inflight -= n_closed
        es.time_wait_n += n_closed
        es.time_wait_q.append([t, n_closed])


def start_admitted(es: EngineState, step: int, t: float, admitted: list[int],
                   new_x: int) -> None:
    """The admitted requests (but `new_x`, left with a partial prompt) sampled their first
    token at the end of `step` and decode from the next step (the common path of
    :func:`start_decode` written out)."""
    (gen, olen, plen, first_tok, state, s_first, c_first, g_first, fin_step, phase, cnt, fin_heap,
     bs) = es.start_view
    n_dec = es.num_decoding
    dec_ctx = es.decode_context
    step1 = step + 1
    for r in admitted:
        if r == new_x:
            continue
        if gen[r] or olen[r] == 1:  # resumed after a preemption, or a 1-token request
            es.num_decoding = n_dec
            es.decode_context = dec_ctx
            start_decode(es, r, step, t)
            n_dec = es.num_decoding
            dec_ctx = es.decode_context
            continue
        tokens = plen[r]
        gen[r] = 1
        first_tok[r] = t
        state[r] = DECODE
        s_first[r] = step1
        c_first[r] = tokens
        g_first[r] = 1
        f = step + olen[r] - 1
        fin_step[r] = f
        ph = (step1 - tokens) % bs
        phase[r] = ph
        cnt[ph] += 1
        n_dec += 1
        dec_ctx += tokens
        heappush(fin_heap, (f, r))
    es.num_decoding = n_dec
    es.decode_context = dec_ctx


# ---------------------------------------------------------------- tracing and upkeep


def trace_scheduled(es: EngineState, chunk_x: int, admitted: list[int]) -> dict[int, int]:
    """``num_scheduled_tokens`` of this step by input request id (tracing only)."""
    orig = es.input_index
    state = es.status
    scheduled = {orig[r]: 1 for r in es.running_now() if state[r] == DECODE}
    if chunk_x > 0:
        scheduled[orig[es.partial]] = chunk_x
    comp = es.num_computed_tokens
    for r in admitted:
        scheduled[orig[r]] = comp[r]
    return scheduled


def trace_step(es: EngineState, step: int, t: float, scheduled: dict[int, int]) -> None:
    """Record one ``schedule()`` call with this step's preemptions and finishes."""
    assert es.trace is not None
    es.trace.append(StepTrace(step, t, scheduled, tuple(sorted(es.trace_preempted)),
                              tuple(sorted(es.trace_finished))))
    es.trace_preempted.clear()
    es.trace_finished.clear()


def compact_running(es: EngineState) -> None:
    """Drop the stale entries of ``running`` when it outgrows the running requests 4 times."""
    order = es.running
    if len(order) > 4 * es.num_running + 1024:
        run_pos = es.running_pos
        state = es.status
        order[:] = [r for i, r in enumerate(order)
                    if run_pos[r] == i and state[r] in (PREFILL, DECODE)]
        for i, r in enumerate(order):
            run_pos[r] = i
