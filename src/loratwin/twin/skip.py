"""Event skipping: a run of identical decode-only engine steps applied in one go.

Not a vLLM rule but the twin's machinery. When every running request decodes (no partial
prefill) and no waiting request can be admitted, consecutive steps differ only in their
context tokens (each decoder's grows by 1 per step) and in which decoders need a new KV block
(those whose ``num_computed_tokens % block_size`` phase matches the step). Until the next
event (a decoder finishing, the free KV blocks running short, an arrival, the end of the
window, or the step cost leaving the linear regime of ``StepCost.decode_run``) the steps can
be summed in closed form: step j of the run costs ``a + b*j`` s.
"""

from __future__ import annotations

import math
from heapq import heappop

from loratwin.twin.engine_state import DECODE, EngineState
from loratwin.twin.engine_steps import account_step, finish_request
from loratwin.twin.trace import StepTrace
from loratwin.twin.waiting import candidate, wait_pos


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def steps_within_blocks(free: int, n_dec: int, cnt: list[int], step: int, bs: int,
                        k_max: int) -> int:
    """Largest k <= k_max such that k decode-only steps from `step` need <= `free` new blocks.

    ``n_dec`` (> 0) decoders each need a block every ``bs`` steps; ``cnt[p]`` of them need it
    in the steps with ``step % bs == p``.
    """
    k_mem = (free // n_dec) * bs
    rem = free - (k_mem // bs) * n_dec
    j = 0
    while j < bs and k_mem < k_max:
        d = cnt[(step + k_mem) % bs]
        if d > rem:
            break
        rem -= d
        k_mem += 1
        j += 1
    return min(k_max, k_mem)


def steps_before(t: float, t_stop: float, a0: float, b0: float, k: int) -> int:
    """Steps of a run (step j costs ``a0 + b0 * j`` s) from `t` that start before `t_stop`.

    At most `k` and at least 1: the smallest k' with ``t + k' a0 + b0 k'(k'-1)/2 >= t_stop``,
    so the run ends on the first step that reaches `t_stop` (an arrival or the window's end).
    """
    span = t_stop - t
    if b0 > 0:
        disc = (a0 - b0 / 2) ** 2 + 2 * b0 * span
        k_t = math.ceil(((-(a0 - b0 / 2)) + math.sqrt(max(disc, 0.0))) / b0)
    else:
        k_t = math.ceil(span / a0) if a0 > 0 else k
    k_t = max(k_t, 1)
    while k_t > 1 and t + (k_t - 1) * a0 + b0 * (k_t - 1) * (k_t - 2) / 2 >= t_stop:
        k_t -= 1
    return min(k, k_t)


def run_block_demand(k: int, n_dec: int, cnt: list[int], step: int, bs: int) -> int:
    """New KV blocks the ``n_dec`` decoders take over `k` decode-only steps from `step`."""
    demand = (k // bs) * n_dec
    for j in range(k % bs):
        demand += cnt[(step + j) % bs]
    return demand


def admission_blocked(es: EngineState) -> tuple[bool, int]:
    """Whether ``schedule()`` would admit no waiting request now, and how many waiting
    requests its walk looks at (the scheduler's CPU time depends on it)."""
    n_dec = es.num_decoding
    if not (es.num_waiting and es.num_running < es.max_num_seqs
            and es.max_num_batched_tokens > n_dec):
        return True, 0
    c = candidate(es)
    if c < 0:
        return True, es.num_waiting
    tokens = es.num_prompt_tokens[c] + es.num_output_tokens[c]
    need = es.admission_blocks(tokens, min(tokens, es.max_num_batched_tokens - n_dec),
                               es.block_size)
    if need <= es.num_free_blocks:
        return False, 0
    return True, wait_pos(es, c)


def skip_decode_steps(es: EngineState) -> bool:
    """Apply a run of at least 2 identical decode-only steps from ``es.step``, if there is
    one (every running request decodes, ``es.partial < 0``). Returns whether it did."""
    blocked, walked = admission_blocked(es)
    if not blocked:
        return False
    fin_heap = es.finish_heap
    fin_step = es.finish_step
    while fin_heap and fin_step[fin_heap[0][1]] != fin_heap[0][0]:
        heappop(fin_heap)
    step = es.step
    n_dec = es.num_decoding
    bs = es.block_size
    cnt = es.phase_count
    f_top = fin_heap[0][0] if fin_heap else step + (1 << 40)
    k = steps_within_blocks(es.num_free_blocks, n_dec, cnt, step, bs, f_top - step + 1)
    if k < 2:
        return False
    # step j (0-based) costs a + b*j (the context grows by n_dec per step)
    ctx = es.decode_context + n_dec
    n_sched_ad = es.num_scheduled_loras
    a0, b0, k_lim = es.decode_run(n_dec, ctx, n_sched_ad, es.num_running, walked)
    if k_lim < k:
        k = k_lim
    t = es.t
    t_stop = es.next_arrival_s if es.next_arrival_s < es.t_end else es.t_end
    k = steps_before(t, t_stop, a0, b0, k)
    if k < 2:
        return False
    apply_decode_run(es, k, a0, b0, walked)
    return True


def apply_decode_run(es: EngineState, k: int, a0: float, b0: float, walked: int) -> None:
    """Advance `k` decode-only steps (step j costs ``a0 + b0*j`` s): KV blocks, integrals,
    time, and the decoders that finish in the run."""
    step = es.step
    t = es.t
    n_dec = es.num_decoding
    bs = es.block_size
    dt = k * a0 + b0 * k * (k - 1) / 2
    es.record_run(k, n_dec, es.decode_context + n_dec, es.num_scheduled_loras,
                  es.num_running, walked)
    es.num_free_blocks -= run_block_demand(k, n_dec, es.phase_count, step, bs)
    account_step(es, t, dt, k, n_dec)
    tracing = es.tracing
    if tracing:
        state = es.status
        orig = es.input_index
        decoding = {orig[r]: 1 for r in es.running_now() if state[r] == DECODE}
    t_step = t
    t += dt
    es.t = t
    dec_ctx = es.decode_context + n_dec * k
    last = step + k - 1
    step += k
    es.step = step
    es.walked_total += walked * k
    fin_heap = es.finish_heap
    fin_step = es.finish_step
    c_first = es.decode_computed0
    s_first = es.decode_step0
    cnt = es.phase_count
    phase = es.block_phase
    while fin_heap and fin_heap[0][0] <= last:
        f, r = heappop(fin_heap)
        if fin_step[r] != f:
            continue
        c_after = c_first[r] + (f - s_first[r] + 1)
        cnt[phase[r]] -= 1
        n_dec -= 1
        dec_ctx -= c_first[r] + (step - s_first[r])
        es.num_output_tokens[r] = es.max_tokens[r]
        fin_step[r] = -1
        finish_request(es, r, t, _cdiv(c_after, bs), f)
    es.num_decoding = n_dec
    es.decode_context = dec_ctx
    if tracing:
        trace = es.trace
        assert trace is not None
        tr_fin = es.trace_finished
        for j in range(k):
            t_j = t_step + j * a0 + b0 * j * (j - 1) / 2
            fins = tuple(sorted(tr_fin)) if j == k - 1 else ()
            trace.append(StepTrace(last - k + 1 + j, t_j, dict(decoding), (), fins))
        tr_fin.clear()
