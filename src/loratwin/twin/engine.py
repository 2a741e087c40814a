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
"""

from __future__ import annotations

import heapq
import math
import time
from bisect import bisect_left, bisect_right
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loratwin.profile.model import Profile, kv_capacity
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.release import release_rules
from loratwin.twin.trace import StepTrace
from loratwin.twin.vllm_0_8_5.lora_manager import apply_adapters, lora_hash_order, preloaded
from loratwin.workload.types import Requests

# request states (_PEND: last token sampled in the previous step, output not yet processed)
_WAITING, _PREFILL, _DECODE, _DONE, _PEND = range(5)

__all__ = ["RawRun", "lora_hash_order", "run_engine"]


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


_CHUNK = 1 << 15  # input requests converted to python lists at a time
_BLOCK_BITS = 12
_BLOCK_MASK = (1 << _BLOCK_BITS) - 1


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _steps_within_blocks(free: int, n_dec: int, cnt: list[int], step: int, bs: int,
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


def _steps_before(t: float, t_stop: float, a0: float, b0: float, k: int) -> int:
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


def _run_block_demand(k: int, n_dec: int, cnt: list[int], step: int, bs: int) -> int:
    """New KV blocks the ``n_dec`` decoders take over `k` decode-only steps from `step`."""
    demand = (k // bs) * n_dec
    for j in range(k % bs):
        demand += cnt[(step + j) % bs]
    return demand


def _per_input_request(
    n: int, orig: list[int], first_tok: list[float], finish: list[float], npre: list[int],
    rejected: list[int], dropped_ranges: list[tuple[int, int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Scatter the accepted requests' outcomes back to the `n` input requests.

    ``orig[r]`` is the input index of engine request r. Returns ``(first_token_s, finish_s,
    preemptions, dropped)``, each of shape ``(n,)`` (NaN / 0 / False for requests never
    accepted); ``dropped`` marks the requests vLLM refused (`rejected`) and those the client
    had no port for (`dropped_ranges`, half-open input index ranges).
    """
    idx = np.asarray(orig, dtype=np.int64)
    first = np.full(n, np.nan)
    first[idx] = first_tok
    fin = np.full(n, np.nan)
    fin[idx] = finish
    pre = np.zeros(n, np.int32)
    pre[idx] = npre
    dropped = np.zeros(n, bool)
    dropped[np.asarray(rejected, dtype=np.int64)] = True
    for lo, hi in dropped_ranges:
        dropped[lo:hi] = True
    return first, fin, pre, dropped


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

    bs = server.block_size
    budget_max = server.max_num_batched_tokens
    max_seqs = server.max_num_seqs
    lora_on = server.enable_lora
    max_loras = server.max_loras if lora_on else 1 << 30
    cpu_cap = server.cpu_loras
    max_len = server.max_model_len or profile.max_model_len
    # release rules (see the release's scheduler module)
    admission_blocks = rules.scheduler.admission_blocks
    async_on = bool(server.async_scheduling)
    cap_counts_pending = async_on and rules.scheduler.max_loras_counts_unscheduled_running
    t_end = client.duration_s
    port_cap = client.max_ports if client.max_ports is not None else 1 << 62
    tw_s = client.time_wait_s

    # Inputs stay numpy arrays; only accepted requests get engine state. A request's engine
    # id r is its acceptance index (the client refuses most arrivals of a heavily overloaded
    # server, which then never cost memory or time).
    n = len(requests)
    arr_np = requests.arrival_s
    in_np = requests.input_tokens
    out_np = requests.output_tokens
    ad_np = requests.adapter
    chunk0 = 0  # the input arrays are read in chunks: python lists of [chunk0, chunk0 + len)
    c_ad: list[int] = []
    c_in: list[int] = []
    c_out: list[int] = []
    next_arr = float(arr_np[0]) if n else math.inf
    n_ad = len(adapter_ranks)
    ranks = list(adapter_ranks)

    # per accepted request (grown by doubling)
    cap_r = max(16, min(n, 1 << 14))
    orig = [0] * cap_r  # index in `requests`
    ad = [0] * cap_r
    plen = [0] * cap_r
    olen = [0] * cap_r
    state = [_WAITING] * cap_r
    gen = [0] * cap_r  # tokens generated so far
    comp = [0] * cap_r  # computed tokens (prefill phase)
    blk = [0] * cap_r  # blocks held (prefill phase)
    key = [0] * cap_r  # waiting-queue key (acceptance index, or negative for preempted)
    s_first = [0] * cap_r  # decoders: first decode step
    c_first = [0] * cap_r  # decoders: computed tokens before that step
    g_first = [0] * cap_r  # decoders: tokens generated before that step
    fin_step = [-1] * cap_r
    phase = [0] * cap_r
    run_pos = [-1] * cap_r
    npre = [0] * cap_r
    first_tok = [math.nan] * cap_r
    finish = [math.nan] * cap_r
    last_tok = [math.nan] * cap_r
    grown = (
        (orig, 0), (ad, 0), (plen, 0), (olen, 0), (state, _WAITING), (gen, 0), (comp, 0),
        (blk, 0), (key, 0), (s_first, 0), (c_first, 0), (g_first, 0), (fin_step, -1),
        (phase, 0), (run_pos, -1), (npre, 0), (first_tok, math.nan), (finish, math.nan),
        (last_tok, math.nan),
    )
    rejected: list[int] = []  # requests vLLM refuses (prompt + output > max_model_len)

    # running requests
    order: list[int] = []
    n_running = 0
    n_dec = 0
    dec_ctx = 0  # sum of computed tokens of decoders before the current step
    cnt = [0] * bs  # decoders needing a block when step % bs == phase
    fin_heap: list[tuple[int, int]] = []
    x = -1  # the (at most one) running request with a partial prompt, always last
    run_cnt = [0] * n_ad
    n_sched_ad = 0

    # waiting requests
    wq: list[deque[int]] = [deque() for _ in range(n_ad)]
    n_wait = 0
    gheap: list[tuple[int, int]] = []
    mheap: list[tuple[int, int]] = []
    pre_keys: list[int] = []
    pre_next = -1
    # admitted (removed) arrival-keyed requests, as per-block counts and per-block bitsets,
    # to count the waiting requests ahead of a given one (see wait_pos)
    rm_count = [0] * ((n >> _BLOCK_BITS) + 1)
    rm_bits = [0] * ((n >> _BLOCK_BITS) + 1)
    n_acc = 0  # accepted requests = next engine id

    # LoRA caches (vLLM's LRUCacheWorkerLoRAManager): GPU slots and the CPU cache are LRU
    # caches touched, every step, by the batch's adapters in the iteration order of the
    # step's set of LoRARequests (a hash order, modelled as the fixed pseudo-random rank
    # `hash_rank`). An adapter's LRU key is (last step it was touched, hash_rank); adapters
    # with running requests were touched in the previous step.
    in_gpu = [False] * n_ad
    in_cpu = [False] * n_ad
    hash_rank = lora_hash_order(n_ad)
    last_used = [i - n_ad - 1 for i in range(n_ad)]  # start-up loads, in adapter order
    active: set[int] = set()
    n_gpu = 0
    n_cpu = 0
    cpu_s = [cost.cpu_load_s(r) for r in ranks]
    disk_s = [cost.disk_load_s(r) for r in ranks]
    if lora_on and preload and n_ad:
        in_cpu_start, in_gpu_start = preloaded(n_ad, cpu_cap, max_loras)
        for a in in_cpu_start:
            in_cpu[a] = True
        n_cpu = len(in_cpu_start)
        for a in in_gpu_start:
            in_gpu[a] = True
        n_gpu = len(in_gpu_start)

    free = max(cap.blocks - rules.kv_cache.reserved_blocks, 0)  # BlockPool.null_block
    total_blocks = cap.blocks

    # asynchronous scheduling: requests whose last token the previous step sampled
    pend: list[int] = []
    # tracing (tests): per-step records and the preemptions / finishes of the current step
    tr_pre: list[int] = []
    tr_fin: list[int] = []

    # client ports
    inflight = 0
    tw_q: deque[list] = deque()  # [close time, connections]
    dropped_ranges: list[tuple[int, int]] = []  # requests refused for lack of a client port
    tw_n = 0

    # counters and integrals
    preemptions = 0
    loads = 0
    disk_loads = 0
    busy = 0.0
    run_int = 0.0
    wait_int = 0.0
    kv_int = 0.0
    itl_dt: list[float] = []
    itl_w: list[int] = []
    resume_gaps: list[float] = []
    ts: dict[str, list[float]] | None = (
        {k: [] for k in ("t_s", "dt_s", "steps", "running", "waiting", "kv_used_blocks",
                         "tokens", "adapters")}
        if record_timeseries else None
    )

    exec_s = cost.exec_s
    sched_s = cost.sched_s
    overlap = cost.overlap
    decode_run = cost.decode_run
    record_run = cost.record_run
    heappush = heapq.heappush
    heappop = heapq.heappop

    tracing = trace is not None
    pend_only: set[int] = set()  # adapters counted for max_loras only by a pending request

    # ------------------------------------------------------------------ helpers
    def running_now() -> list[int]:
        """The running requests in vLLM's ``running`` order (tracing only: walks them all)."""
        return [r for i, r in enumerate(order)
                if run_pos[r] == i and state[r] in (_PREFILL, _DECODE, _PEND)]

    def removed_upto(i: int) -> int:
        """Admitted requests among acceptance indices 0..i."""
        b = i >> _BLOCK_BITS
        low = rm_bits[b] & ((2 << (i & _BLOCK_MASK)) - 1)
        return sum(rm_count[:b]) + low.bit_count()

    def wait_pos(r: int) -> int:
        """1-based position of waiting request r in vLLM's waiting deque."""
        k = key[r]
        if k < 0:
            return bisect_right(pre_keys, k)
        return len(pre_keys) + r + 1 - removed_upto(r)

    def candidate() -> int:
        """Next waiting request vLLM would admit (FCFS, skipping adapters over max_loras)."""
        member = n_sched_ad + len(pend_only) >= max_loras
        heap = mheap if member else gheap
        best = -1
        while heap:
            k, a = heap[0]
            q = wq[a]
            if q and key[q[0]] == k and (not member or run_cnt[a] > 0 or a in pend_only):
                best = q[0]
                break
            heappop(heap)
        if member:  # adapters counted only through a request still in flight (0.33)
            for a in pend_only:
                q = wq[a]
                if q and (best < 0 or key[q[0]] < key[best]):
                    best = q[0]
        return best

    def push_waiting_front(r: int) -> None:
        nonlocal pre_next, n_wait
        a = ad[r]
        key[r] = pre_next
        pre_keys.insert(0, pre_next)
        pre_next -= 1
        wq[a].appendleft(r)
        n_wait += 1
        heappush(gheap, (key[r], a))
        if run_cnt[a] > 0:
            heappush(mheap, (key[r], a))

    def leave_batch(r: int, when: int) -> None:
        """Request r is no longer scheduled: its adapter leaves the batch after `when`."""
        nonlocal n_sched_ad
        a = ad[r]
        run_cnt[a] -= 1
        if run_cnt[a] == 0:
            n_sched_ad -= 1
            active.discard(a)
            last_used[a] = when

    def preempt_tail(step: int, now: float) -> tuple[int, int]:
        """Preempt the last running request. Returns (blocks freed, block demand removed)."""
        nonlocal n_dec, dec_ctx, x, preemptions, n_running
        while True:
            r = order.pop()
            if run_pos[r] == len(order) and state[r] in (_PREFILL, _DECODE, _PEND):
                break
        preemptions += 1
        npre[r] += 1
        run_pos[r] = -1
        n_running -= 1
        if tracing:
            tr_pre.append(orig[r])
        if state[r] == _PEND:
            # its last token is in flight: freed now, finished when that output is processed
            freed = blk[r]
            blk[r] = 0
            state[r] = _DONE
            return freed, 0
        demand = 0
        if state[r] == _DECODE:
            done = step - s_first[r]
            c_now = c_first[r] + done
            freed = _cdiv(c_now, bs)
            if phase[r] == step % bs:
                demand = 1
            cnt[phase[r]] -= 1
            n_dec -= 1
            dec_ctx -= c_now
            gen[r] = g_first[r] + done
            fin_step[r] = -1
            last_tok[r] = now
        else:  # the partial prefill at the tail
            freed = blk[r]
            x = -1
        blk[r] = 0
        comp[r] = 0
        state[r] = _WAITING
        leave_batch(r, step - 1)
        push_waiting_front(r)
        return freed, demand

    def finish_request(r: int, now: float, blocks: int, step: int) -> None:
        """Request r sampled its last token at the end of `step` (holding `blocks`)."""
        nonlocal free, inflight, tw_n, n_running
        finish[r] = now
        if async_on:  # leaves `running` after the next schedule()
            state[r] = _PEND
            blk[r] = blocks
            pend.append(r)
        else:
            state[r] = _DONE
            free += blocks
            n_running -= 1
        leave_batch(r, step)
        if tracing:
            tr_fin.append(orig[r])
        inflight -= 1
        # connections close at the end of a step: one TIME_WAIT entry per step
        if tw_q and tw_q[-1][0] == now:
            tw_q[-1][1] += 1
        else:
            tw_q.append([now, 1])
        tw_n += 1

    def start_decode(r: int, step: int, now: float) -> None:
        """Request r sampled a token at the end of `step` after computing its prompt."""
        nonlocal n_dec, dec_ctx
        tokens = plen[r] + gen[r]
        g = gen[r] + 1
        gen[r] = g
        if g == 1:
            first_tok[r] = now
        elif not math.isnan(last_tok[r]):
            resume_gaps.append(now - last_tok[r])
        if g >= olen[r] or tokens >= max_len:
            finish_request(r, now, _cdiv(tokens, bs), step)
            return
        state[r] = _DECODE
        s_first[r] = step + 1
        c_first[r] = tokens
        g_first[r] = g
        f = step + (olen[r] - g)
        fin_step[r] = f
        ph = (step + 1 - tokens) % bs
        phase[r] = ph
        cnt[ph] += 1
        n_dec += 1
        dec_ctx += tokens
        heappush(fin_heap, (f, r))

    # ------------------------------------------------------------------ main loop
    t = 0.0
    step = 0
    ia = 0
    feats_walk = 0
    while True:
        # ---- accept arrivals (the engine drains its input queue before each step)
        while tw_q and tw_q[0][0] + tw_s <= t:
            tw_n -= tw_q.popleft()[1]
        while next_arr <= t:
            if inflight + tw_n >= port_cap:
                j = int(np.searchsorted(arr_np, t, side="right"))
                dropped_ranges.append((ia, j))
                ia = j
                next_arr = float(arr_np[ia]) if ia < n else math.inf
                break
            i = ia - chunk0
            if i < 0 or i >= len(c_ad):
                chunk0 = ia
                i = 0
                c_ad = ad_np[ia:ia + _CHUNK].tolist()
                c_in = in_np[ia:ia + _CHUNK].tolist()
                c_out = out_np[ia:ia + _CHUNK].tolist()
            p_in = c_in[i]
            p_out = c_out[i]
            a = c_ad[i]
            ia += 1
            next_arr = float(arr_np[ia]) if ia < n else math.inf
            if p_in + p_out > max_len:
                rejected.append(ia - 1)  # vLLM refuses the request (400)
                continue
            r = n_acc
            if r == cap_r:
                for lst, default in grown:
                    lst.extend([default] * cap_r)
                cap_r *= 2
            orig[r] = ia - 1
            ad[r] = a
            plen[r] = p_in
            olen[r] = p_out
            state[r] = _WAITING
            key[r] = r
            n_acc = r + 1
            inflight += 1
            q = wq[a]
            q.append(r)
            n_wait += 1
            if len(q) == 1:
                heappush(gheap, (r, a))
                if run_cnt[a] > 0:
                    heappush(mheap, (r, a))

        if n_running == 0 and n_wait == 0:
            if next_arr >= t_end:
                break
            t = next_arr
            continue
        if t >= t_end:
            break

        # ---- fast path: a run of identical decode-only steps
        if x < 0 and n_dec > 0 and n_dec == n_running:
            blocked = True
            walked = 0
            if n_wait and n_running < max_seqs and budget_max > n_dec:
                c = candidate()
                if c >= 0:
                    tokens = plen[c] + gen[c]
                    need = admission_blocks(tokens, min(tokens, budget_max - n_dec), bs)
                    if need <= free:
                        blocked = False
                    else:
                        walked = wait_pos(c)
                else:
                    walked = n_wait
            if blocked:
                while fin_heap and fin_step[fin_heap[0][1]] != fin_heap[0][0]:
                    heappop(fin_heap)
                f_top = fin_heap[0][0] if fin_heap else step + (1 << 40)
                k_max = f_top - step + 1
                k = _steps_within_blocks(free, n_dec, cnt, step, bs, k_max)
                if k >= 2:
                    # step j (0-based) costs a + b*j (the context grows by n_dec per step)
                    a0, b0, k_lim = decode_run(
                        n_dec, dec_ctx + n_dec, n_sched_ad, n_running, walked)
                    if k_lim < k:
                        k = k_lim
                    k = _steps_before(t, next_arr if next_arr < t_end else t_end, a0, b0, k)
                if k >= 2:
                    dt = k * a0 + b0 * k * (k - 1) / 2
                    record_run(k, n_dec, dec_ctx + n_dec, n_sched_ad, n_running, walked)
                    free -= _run_block_demand(k, n_dec, cnt, step, bs)
                    run_int += n_running * dt
                    wait_int += n_wait * dt
                    kv_int += (total_blocks - free) * dt
                    busy += dt
                    itl_dt.append(dt / k)
                    itl_w.append(n_dec * k)
                    if ts is not None:
                        for name, v in (("t_s", t), ("dt_s", dt), ("steps", k),
                                        ("running", n_running), ("waiting", n_wait),
                                        ("kv_used_blocks", total_blocks - free),
                                        ("tokens", n_dec), ("adapters", n_sched_ad)):
                            ts[name].append(v)
                    if tracing:
                        decoding = {orig[r]: 1 for r in running_now() if state[r] == _DECODE}
                        t_step = t
                    t += dt
                    dec_ctx += n_dec * k
                    last = step + k - 1
                    step += k
                    feats_walk += walked * k
                    while fin_heap and fin_heap[0][0] <= last:
                        f, r = heappop(fin_heap)
                        if fin_step[r] != f:
                            continue
                        c_after = c_first[r] + (f - s_first[r] + 1)
                        cnt[phase[r]] -= 1
                        n_dec -= 1
                        dec_ctx -= c_first[r] + (step - s_first[r])
                        gen[r] = olen[r]
                        fin_step[r] = -1
                        finish_request(r, t, _cdiv(c_after, bs), f)
                    if tracing:
                        for j in range(k):
                            t_j = t_step + j * a0 + b0 * j * (j - 1) / 2
                            fins = tuple(sorted(tr_fin)) if j == k - 1 else ()
                            trace.append(StepTrace(last - k + 1 + j, t_j, dict(decoding), (), fins))
                        tr_fin.clear()
                    continue

        # ---- one general step: running requests first
        pend_only.clear()
        if cap_counts_pending:
            for r in pend:
                if state[r] == _PEND and run_cnt[ad[r]] == 0:
                    pend_only.add(ad[r])
        bmod = step % bs
        demand = cnt[bmod]
        chunk_x = 0
        need_x = 0
        if x >= 0:
            chunk_x = min(plen[x] + gen[x] - comp[x], budget_max - n_dec)
            if chunk_x > 0:
                need_x = _cdiv(comp[x] + chunk_x, bs) - blk[x]
        preempted = False
        if demand + need_x > free:
            preempted = True
            while demand + need_x > free:
                was_x = x
                freed, dem = preempt_tail(step, t)
                free += freed
                demand -= dem
                if was_x >= 0 and x < 0:
                    need_x = 0
                    chunk_x = 0
                if n_running == 0:
                    break
        free -= demand + need_x
        budget = budget_max - n_dec - chunk_x
        n_tok = n_dec + chunk_x
        n_pref = 1 if chunk_x > 0 else 0
        load_s = 0.0
        admitted: list[int] = []
        entering: list[int] = []
        walked = 0
        new_x = -1

        # ---- then waiting requests, unless this step preempted
        if not preempted and n_wait and budget > 0:
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
                    walked = wait_pos(r) + n_adm
                    break
                if num_new == budget or n_running + 1 >= max_seqs:
                    walked = wait_pos(r) + n_adm
                a = ad[r]
                q = wq[a]
                q.popleft()
                n_wait -= 1
                n_adm += 1
                if key[r] < 0:
                    del pre_keys[bisect_left(pre_keys, key[r])]
                else:
                    i = r
                    b = i >> _BLOCK_BITS
                    rm_count[b] += 1
                    rm_bits[b] |= 1 << (i & _BLOCK_MASK)
                state[r] = _PREFILL
                comp[r] = num_new
                blk[r] = need
                free -= need
                budget -= num_new
                n_tok += num_new
                n_pref += 1
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
            # the model runner loads the batch's missing adapters before the forward pass
            if lora_on and any(not in_gpu[a] for a in entering):
                got = apply_adapters(step, active, entering, in_gpu, in_cpu, n_gpu, n_cpu,
                                     last_used, hash_rank, max_loras, cpu_cap, cpu_s, disk_s)
                load_s += got.load_s
                loads += got.loads
                disk_loads += got.disk_loads
                n_gpu = got.n_gpu
                n_cpu = got.n_cpu

        # ---- asynchronous scheduling: the previous step's output is processed now
        released = False
        n_run_sched = n_running  # schedule() walked the running list before that
        if pend:
            for r in pend:
                if state[r] == _PEND:
                    state[r] = _DONE
                    free += blk[r]
                    blk[r] = 0
                    n_running -= 1
            pend.clear()
            pend_only.clear()
            released = True
        if tracing:
            scheduled = {orig[r]: 1 for r in running_now() if state[r] == _DECODE}
            if chunk_x > 0:
                scheduled[orig[x]] = chunk_x
            for r in admitted:
                scheduled[orig[r]] = comp[r]
            t_step = t

        # ---- cost of the step
        if n_tok == 0:
            if preempted or released:  # an empty step; the next one can schedule again
                if tracing:
                    trace.append(StepTrace(step, t, {}, tuple(sorted(tr_pre)), ()))
                    tr_pre.clear()
                step += 1
                continue
            # nothing can run until something arrives
            if next_arr >= t_end:
                break
            t = max(t, next_arr)
            continue
        if overlap:  # asynchronous scheduling: the scheduler runs during the forward pass
            e_s = exec_s(n_tok, n_dec, n_pref, dec_ctx + n_dec, n_sched_ad)
            s_s = sched_s(n_run_sched, walked)
            dt = (e_s if e_s > s_s else s_s) + load_s
        else:
            dt = (
                exec_s(n_tok, n_dec, n_pref, dec_ctx + n_dec, n_sched_ad)
                + sched_s(n_run_sched, walked)
                + load_s
            )
        feats_walk += walked
        run_int += n_running * dt
        wait_int += n_wait * dt
        kv_int += (total_blocks - free) * dt
        busy += dt
        if n_dec:
            itl_dt.append(dt)
            itl_w.append(n_dec)
        if ts is not None:
            for name, v in (("t_s", t), ("dt_s", dt), ("steps", 1), ("running", n_running),
                            ("waiting", n_wait), ("kv_used_blocks", total_blocks - free),
                            ("tokens", n_tok), ("adapters", n_sched_ad)):
                ts[name].append(v)
        t += dt

        # ---- outcomes at the end of the step (the common paths of finish_request and
        # start_decode are written out here: this is the hottest part of the loop)
        dec_ctx += n_dec
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
                state[r] = _PEND
                blk[r] = -(-done_tokens // bs)
                pend.append(r)
            else:
                state[r] = _DONE
                free += -(-done_tokens // bs)
                n_running -= 1
            if tracing:
                tr_fin.append(orig[r])
            k = run_cnt[a] - 1
            run_cnt[a] = k
            if k == 0:
                n_sched_ad -= 1
                active.discard(a)
                last_used[a] = step
            n_closed += 1
        if n_closed:
            inflight -= n_closed
            tw_n += n_closed
            tw_q.append([t, n_closed])
        if x >= 0 and chunk_x > 0:
            comp[x] += chunk_x
            blk[x] += need_x
            if comp[x] >= plen[x] + gen[x]:
                r = x
                x = -1
                start_decode(r, step, t)
        for r in admitted:
            if r == new_x:
                continue
            if gen[r] or olen[r] == 1:  # resumed after a preemption, or a 1-token request
                start_decode(r, step, t)
                continue
            tokens = plen[r]
            gen[r] = 1
            first_tok[r] = t
            state[r] = _DECODE
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
        if new_x >= 0:
            x = new_x
        if tracing:
            trace.append(StepTrace(step, t_step, scheduled, tuple(sorted(tr_pre)),
                                   tuple(sorted(tr_fin))))
            tr_pre.clear()
            tr_fin.clear()
        step = step1

        # occasional compaction of the running order and the lazy heaps
        if len(order) > 4 * n_running + 1024:
            order[:] = [r for i, r in enumerate(order)
                        if run_pos[r] == i and state[r] in (_PREFILL, _DECODE)]
            for i, r in enumerate(order):
                run_pos[r] = i
        if len(mheap) > 4 * n_ad + 1024:
            mheap[:] = [(key[wq[a][0]], a) for a in range(n_ad) if wq[a] and run_cnt[a] > 0]
            heapq.heapify(mheap)
        if len(gheap) > 4 * n_ad + 1024:
            gheap[:] = [(key[wq[a][0]], a) for a in range(n_ad) if wq[a]]
            heapq.heapify(gheap)

    # requests still open when the window closes are cancelled by the client; scatter the
    # accepted requests' outcomes back to the input order
    first, fin, pre, dropped = _per_input_request(
        n, orig[:n_acc], first_tok[:n_acc], finish[:n_acc], npre[:n_acc], rejected,
        dropped_ranges)
    ts_arrays = (
        {k: np.asarray(v, dtype=np.float64) for k, v in ts.items()} if ts is not None else None
    )
    return RawRun(
        first_token_s=first,
        finish_s=fin,
        preemptions_per_request=pre,
        dropped=dropped,
        steps=step,
        preemptions=preemptions,
        adapter_loads=loads,
        disk_loads=disk_loads,
        busy_s=busy,
        end_s=min(t, t_end) if t > 0 else t_end,
        running_time_integral=run_int,
        waiting_time_integral=wait_int,
        kv_used_time_integral=kv_int,
        kv_blocks=total_blocks,
        itl_step_s=np.asarray(itl_dt, dtype=np.float64),
        itl_step_weight=np.asarray(itl_w, dtype=np.float64),
        resume_gaps_s=np.asarray(resume_gaps, dtype=np.float64),
        timeseries=ts_arrays,
        features={"walked": float(feats_walk)},
        wall_s=time.perf_counter() - wall0,
    )
