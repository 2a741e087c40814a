"""The scheduler's waiting queue without walking it (vLLM's ``FCFSRequestQueue``).

vLLM 0.8.5 keeps ``Scheduler.waiting`` as one deque (``vllm/v1/core/sched/scheduler.py``;
0.32 and later ``vllm/v1/core/sched/request_queue.py``): arrivals at the back, preempted
requests at the front (``appendleft``), and ``schedule()`` walks it from the front, skipping
(and later putting back in order) the requests whose adapter would exceed ``max_loras``.

The twin keeps one FIFO per adapter (``waiting_per_lora``) and the heads of those FIFOs in two
lazy heaps keyed by queue position (``wait_key``: the acceptance index, or a decreasing
negative number for preempted requests): ``waiting_heap`` over all adapters and
``waiting_heap_in_batch`` over adapters with running requests. The first request vLLM's walk
would admit is then the smallest head of the right heap (:func:`candidate`), and how many
requests the walk passed over follows from counts of the requests already admitted
(:func:`wait_pos`), without a walk.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right

from loratwin.twin.engine_state import BLOCK_BITS, BLOCK_MASK, EngineState


def add_request(es: EngineState, r: int, a: int) -> None:
    """``add_request``: accepted request `r` (adapter `a`) joins the back of the queue."""
    q = es.waiting_per_lora[a]
    q.append(r)
    es.num_waiting += 1
    if len(q) == 1:
        heapq.heappush(es.waiting_heap, (r, a))
        if es.running_per_lora[a] > 0:
            heapq.heappush(es.waiting_heap_in_batch, (r, a))


def prepend_request(es: EngineState, r: int) -> None:
    """A preempted request `r` goes to the front of the queue (``waiting.appendleft``)."""
    a = es.lora[r]
    k = es.next_preempted_key
    es.wait_key[r] = k
    es.preempted_keys.insert(0, k)
    es.next_preempted_key = k - 1
    es.waiting_per_lora[a].appendleft(r)
    es.num_waiting += 1
    heapq.heappush(es.waiting_heap, (k, a))
    if es.running_per_lora[a] > 0:
        heapq.heappush(es.waiting_heap_in_batch, (k, a))


def removed_upto(es: EngineState, i: int) -> int:
    """Admitted requests among acceptance indices 0..i."""
    b = i >> BLOCK_BITS
    low = es.admitted_bits[b] & ((2 << (i & BLOCK_MASK)) - 1)
    return sum(es.admitted_count[:b]) + low.bit_count()


def wait_pos(es: EngineState, r: int) -> int:
    """1-based position of waiting request `r` in vLLM's waiting deque."""
    k = es.wait_key[r]
    if k < 0:
        return bisect_right(es.preempted_keys, k)
    return len(es.preempted_keys) + r + 1 - removed_upto(es, r)


def candidate(es: EngineState) -> int:
    """The next waiting request ``schedule()`` would admit, or -1.

    FCFS, passing over requests whose adapter is not in ``scheduled_loras`` once
    ``len(scheduled_loras) == max_loras`` (``vllm/v1/core/sched/scheduler.py``, every
    release). ``pending_only_loras`` holds the adapters counted only through a request whose
    last token is still in flight (0.33's count of all running requests).
    """
    pend_only = es.pending_only_loras
    run_cnt = es.running_per_lora
    wq = es.waiting_per_lora
    key = es.wait_key
    member = es.num_scheduled_loras + len(pend_only) >= es.max_loras
    heap = es.waiting_heap_in_batch if member else es.waiting_heap
    best = -1
    while heap:
        k, a = heap[0]
        q = wq[a]
        if q and key[q[0]] == k and (not member or run_cnt[a] > 0 or a in pend_only):
            best = q[0]
            break
        heapq.heappop(heap)
    if member:
        for a in pend_only:
            q = wq[a]
            if q and (best < 0 or key[q[0]] < key[best]):
                best = q[0]
    return best


def compact_heaps(es: EngineState) -> None:
    """Drop the stale entries of the lazy heaps longer than ``heap_limit`` (4 entries per
    adapter + 1024)."""
    n_ad = es.num_loras
    wq = es.waiting_per_lora
    key = es.wait_key
    mheap = es.waiting_heap_in_batch
    if len(mheap) > es.heap_limit:
        run_cnt = es.running_per_lora
        mheap[:] = [(key[wq[a][0]], a) for a in range(n_ad) if wq[a] and run_cnt[a] > 0]
        heapq.heapify(mheap)
    gheap = es.waiting_heap
    if len(gheap) > es.heap_limit:
        gheap[:] = [(key[wq[a][0]], a) for a in range(n_ad) if wq[a]]
        heapq.heapify(gheap)
