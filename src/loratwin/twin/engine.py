"""The event loop of the digital twin: one vLLM 0.8.5 V1 engine serving many LoRA adapters.

Semantics mirror vLLM 0.8.5 (``vllm/v1/core/sched/scheduler.py``,
``vllm/v1/core/kv_cache_manager.py``, ``vllm/lora/models.py``, ``vllm/lora/worker_manager.py``):

* Each engine step first accepts the requests that arrived while the previous step ran, then
  ``schedule()`` walks the *running* requests (in admission order) and then the *waiting*
  requests (FCFS, preempted requests at the front) under a budget of
  ``max_num_batched_tokens`` tokens (chunked prefill) and ``max_num_seqs`` running requests.
* KV cache blocks of ``block_size`` tokens are allocated incrementally. When a running request
  cannot get a block, the last running request (lowest priority) is preempted (its KV cache is
  freed and it will recompute) and goes to the front of the waiting queue; a step that
  preempted admits no waiting request.
* ``max_loras`` bounds the distinct adapters in a step: a waiting request whose adapter would
  exceed it is skipped, and the requests behind it are still considered.
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

from loratwin.profile.model import Profile, cpu_load_s, disk_load_s, kv_capacity
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.workload.types import Requests

# request states
_PENDING, _WAITING, _PREFILL, _DECODE, _DONE, _DROPPED = range(6)


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


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


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
) -> RawRun:
    """Simulate one server over the client's window and return raw per-request outcomes.

    Parameters
    ----------
    profile:
        Fitted performance profile (step costs, load times, KV capacity).
    server:
        vLLM flags. The caller has checked that the server starts (no memory error).
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

    Raises
    ------
    ValueError
        If the KV cache cannot start (the caller should check :func:`kv_capacity` first).
    """
    wall0 = time.perf_counter()
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
    t_end = client.duration_s
    port_cap = client.max_ports if client.max_ports is not None else 1 << 62
    tw_s = client.time_wait_s

    n = len(requests)
    arr: list[float] = requests.arrival_s.tolist()
    ad: list[int] = requests.adapter.tolist()
    plen: list[int] = requests.input_tokens.tolist()
    olen: list[int] = requests.output_tokens.tolist()
    n_ad = len(adapter_ranks)
    ranks = list(adapter_ranks)

    # per-request state
    state = [_PENDING] * n
    gen = [0] * n  # tokens generated so far
    comp = [0] * n  # computed tokens (prefill phase)
    blk = [0] * n  # blocks held (prefill phase)
    key = [0] * n  # waiting-queue key (acceptance index, or negative for preempted)
    acc = [-1] * n  # acceptance index
    s_first = [0] * n  # decoders: first decode step
    c_first = [0] * n  # decoders: computed tokens before that step
    g_first = [0] * n  # decoders: tokens generated before that step
    fin_step = [-1] * n
    phase = [0] * n
    run_pos = [-1] * n
    npre = [0] * n
    first_tok = [math.nan] * n
    finish = [math.nan] * n
    last_tok = [math.nan] * n

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
    fen = [0] * (n + 1)
    n_acc = 0

    # LoRA caches. An adapter with running requests is in use; the others are ranked by
    # recency = the last step in which the adapter was in a batch (ties: lower index first).
    # The LRU victim is the least recent adapter not in use (lazy heaps of (recency, a)).
    in_gpu = [False] * n_ad
    in_cpu = [False] * n_ad
    last_used = [-1] * n_ad
    gpu_idle: list[tuple[int, int]] = []
    cpu_idle: list[tuple[int, int]] = []
    n_gpu = 0
    n_cpu = 0
    cpu_s = [cpu_load_s(profile, server.max_lora_rank, r) for r in ranks]
    disk_s = [disk_load_s(profile, r) for r in ranks]
    if lora_on and preload and n_ad:
        for a in range(max(0, n_ad - cpu_cap), n_ad):
            in_cpu[a] = True
            cpu_idle.append((-1, a))
        n_cpu = min(cpu_cap, n_ad)
        for a in range(max(0, n_ad - min(cpu_cap, max_loras)), n_ad):
            in_gpu[a] = True
            gpu_idle.append((-1, a))
        n_gpu = min(cpu_cap, max_loras, n_ad)

    free = cap.blocks
    total_blocks = cap.blocks

    # client ports
    inflight = 0
    tw_q: deque[tuple[float, int]] = deque()
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
    decode_run = cost.decode_run
    record_run = cost.record_run
    heappush = heapq.heappush
    heappop = heapq.heappop

    # ------------------------------------------------------------------ helpers
    def fen_removed_upto(i: int) -> int:
        i += 1
        s = 0
        while i > 0:
            s += fen[i]
            i -= i & -i
        return s

    def fen_remove(i: int) -> None:
        i += 1
        while i <= n:
            fen[i] += 1
            i += i & -i

    def wait_pos(r: int) -> int:
        """1-based position of waiting request r in vLLM's waiting deque."""
        k = key[r]
        if k < 0:
            return bisect_right(pre_keys, k)
        return len(pre_keys) + acc[r] + 1 - fen_removed_upto(acc[r])

    def candidate() -> int:
        """Next waiting request vLLM would admit (FCFS, skipping adapters over max_loras)."""
        member = n_sched_ad >= max_loras
        heap = mheap if member else gheap
        while heap:
            k, a = heap[0]
            q = wq[a]
            if q and key[q[0]] == k and (not member or run_cnt[a] > 0):
                return q[0]
            heappop(heap)
        return -1

    def adapter_idle(a: int, when: int) -> None:
        """Adapter a has no running request any more; it was last in a batch at step `when`."""
        last_used[a] = when
        if in_gpu[a]:
            heappush(gpu_idle, (when, a))
        if in_cpu[a]:
            heappush(cpu_idle, (when, a))

    def lru_victim(heap: list[tuple[int, int]], present: list[bool]) -> int:
        while True:
            when, a = heappop(heap)
            if present[a] and run_cnt[a] == 0 and last_used[a] == when:
                return a

    def adapter_in_use(a: int) -> float:
        """Adapter a enters the batch; returns the load time it costs (s)."""
        nonlocal n_gpu, n_cpu, loads, disk_loads
        if not lora_on or in_gpu[a]:
            return 0.0
        t_load = cpu_s[a]
        loads += 1
        if not in_cpu[a]:
            disk_loads += 1
            t_load += disk_s[a]
            if n_cpu >= cpu_cap:
                e = lru_victim(cpu_idle, in_cpu)
                in_cpu[e] = False
                n_cpu -= 1
                if in_gpu[e]:
                    in_gpu[e] = False
                    n_gpu -= 1
            in_cpu[a] = True
            n_cpu += 1
        if n_gpu >= max_loras:
            e = lru_victim(gpu_idle, in_gpu)
            in_gpu[e] = False
            n_gpu -= 1
        in_gpu[a] = True
        n_gpu += 1
        return t_load

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

    def leave_running(r: int, when: int) -> None:
        nonlocal n_running, n_sched_ad
        n_running -= 1
        a = ad[r]
        run_cnt[a] -= 1
        if run_cnt[a] == 0:
            n_sched_ad -= 1
            adapter_idle(a, when)

    def preempt_tail(step: int, now: float) -> tuple[int, int]:
        """Preempt the last running request. Returns (blocks freed, block demand removed)."""
        nonlocal n_dec, dec_ctx, x, preemptions
        while True:
            r = order.pop()
            if run_pos[r] == len(order) and state[r] in (_PREFILL, _DECODE):
                break
        preemptions += 1
        npre[r] += 1
        run_pos[r] = -1
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
        leave_running(r, step - 1)
        push_waiting_front(r)
        return freed, demand

    def finish_request(r: int, now: float, blocks: int, step: int) -> None:
        nonlocal free, inflight, tw_n
        state[r] = _DONE
        finish[r] = now
        free += blocks
        leave_running(r, step)
        inflight -= 1
        tw_q.append((now, 1))
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
        while ia < n and arr[ia] <= t:
            if inflight + tw_n >= port_cap:
                j = bisect_right(arr, t, ia)
                for r in range(ia, j):
                    state[r] = _DROPPED
                ia = j
                break
            r = ia
            ia += 1
            if plen[r] + olen[r] > max_len:
                state[r] = _DROPPED  # vLLM rejects the request (400)
                continue
            inflight += 1
            state[r] = _WAITING
            acc[r] = n_acc
            key[r] = n_acc
            n_acc += 1
            a = ad[r]
            q = wq[a]
            q.append(r)
            n_wait += 1
            if len(q) == 1:
                heappush(gheap, (n_acc - 1, a))
                if run_cnt[a] > 0:
                    heappush(mheap, (n_acc - 1, a))

        if n_running == 0 and n_wait == 0:
            if ia >= n or arr[ia] >= t_end:
                break
            t = arr[ia]
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
                    need = _cdiv(min(plen[c] + gen[c], budget_max - n_dec), bs)
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
                # memory: largest k with cumulative block demand <= free
                k_mem = (free // n_dec) * bs if n_dec else k_max
                rem = free - (k_mem // bs) * n_dec
                j = 0
                while j < bs and k_mem < k_max:
                    d = cnt[(step + k_mem) % bs]
                    if d > rem:
                        break
                    rem -= d
                    k_mem += 1
                    j += 1
                k = min(k_max, k_mem)
                if k >= 2:
                    # step j (0-based) costs a + b*j (the context grows by n_dec per step)
                    a0, b0 = decode_run(n_dec, dec_ctx + n_dec, n_sched_ad, n_running, walked)
                    t_stop = t_end
                    if ia < n and arr[ia] < t_stop:
                        t_stop = arr[ia]
                    # smallest k' with t + k'a + b k'(k'-1)/2 >= t_stop
                    span = t_stop - t
                    if b0 > 0:
                        disc = (a0 - b0 / 2) ** 2 + 2 * b0 * span
                        k_t = math.ceil(((-(a0 - b0 / 2)) + math.sqrt(max(disc, 0.0))) / b0)
                    else:
                        k_t = math.ceil(span / a0) if a0 > 0 else k
                    k_t = max(k_t, 1)
                    while k_t > 1 and t + (k_t - 1) * a0 + b0 * (k_t - 1) * (k_t - 2) / 2 >= t_stop:
                        k_t -= 1
                    k = min(k, k_t)
                if k >= 2:
                    dt = k * a0 + b0 * k * (k - 1) / 2
                    record_run(k, n_dec, dec_ctx + n_dec, n_sched_ad, n_running, walked)
                    demand = (k // bs) * n_dec
                    for j in range(k % bs):
                        demand += cnt[(step + j) % bs]
                    free -= demand
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
                    continue

        # ---- one general step: running requests first
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
            while True:
                if n_running >= max_seqs:
                    break
                r = candidate()
                if r < 0:
                    walked = n_wait + n_adm
                    break
                tokens = plen[r] + gen[r]
                num_new = tokens if tokens < budget else budget
                need = _cdiv(num_new, bs)
                if need > free:
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
                    fen_remove(acc[r])
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
                    entering.append(a)
                run_cnt[a] += 1
                if q:
                    heappush(gheap, (key[q[0]], a))
                    heappush(mheap, (key[q[0]], a))
                admitted.append(r)
                if num_new < tokens:
                    new_x = r
                if budget <= 0:
                    break
            # the model runner loads the batch's missing adapters before the forward pass;
            # LRU victims are adapters outside the batch
            for a in entering:
                load_s += adapter_in_use(a)

        # ---- cost of the step
        if n_tok == 0:
            if preempted:  # an empty step; the next one admits again
                step += 1
                continue
            # nothing can run until something arrives
            if ia >= n or arr[ia] >= t_end:
                break
            t = max(t, arr[ia])
            continue
        dt = (
            exec_s(n_tok, n_dec, n_pref, dec_ctx + n_dec, n_sched_ad)
            + sched_s(n_running, walked)
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

        # ---- outcomes at the end of the step
        dec_ctx += n_dec
        while fin_heap and fin_heap[0][0] <= step:
            f, r = heappop(fin_heap)
            if fin_step[r] != f:
                continue
            cnt[phase[r]] -= 1
            n_dec -= 1
            dec_ctx -= c_first[r] + (step + 1 - s_first[r])
            gen[r] = olen[r]
            fin_step[r] = -1
            finish_request(r, t, _cdiv(c_first[r] + (f - s_first[r] + 1), bs), step)
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
            start_decode(r, step, t)
        if new_x >= 0:
            x = new_x
        step += 1

        # occasional compaction of the running order and the lazy heaps
        if len(order) > 2 * n_running + 256:
            order[:] = [r for i, r in enumerate(order)
                        if run_pos[r] == i and state[r] in (_PREFILL, _DECODE)]
            for i, r in enumerate(order):
                run_pos[r] = i
        if len(mheap) > 4 * n_ad + 1024:
            mheap[:] = [(key[wq[a][0]], a) for a in range(n_ad) if wq[a] and run_cnt[a] > 0]
            heapq.heapify(mheap)
        if len(gpu_idle) > 4 * n_ad + 1024:
            gpu_idle[:] = [(last_used[a], a) for a in range(n_ad) if in_gpu[a] and run_cnt[a] == 0]
            heapq.heapify(gpu_idle)
        if len(cpu_idle) > 4 * n_ad + 1024:
            cpu_idle[:] = [(last_used[a], a) for a in range(n_ad) if in_cpu[a] and run_cnt[a] == 0]
            heapq.heapify(cpu_idle)
        if len(gheap) > 4 * n_ad + 1024:
            gheap[:] = [(key[wq[a][0]], a) for a in range(n_ad) if wq[a]]
            heapq.heapify(gheap)

    # requests still open when the window closes are cancelled by the client
    first = np.asarray(first_tok, dtype=np.float64)
    fin = np.asarray(finish, dtype=np.float64)
    state_a = np.asarray(state, dtype=np.int8)
    ts_arrays = (
        {k: np.asarray(v, dtype=np.float64) for k, v in ts.items()} if ts is not None else None
    )
    return RawRun(
        first_token_s=first,
        finish_s=fin,
        preemptions_per_request=np.asarray(npre, dtype=np.int32),
        dropped=state_a == _DROPPED,
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
