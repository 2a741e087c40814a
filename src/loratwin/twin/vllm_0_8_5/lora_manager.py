"""vLLM 0.8.5's LoRA adapter caches (``vllm/lora/worker_manager.py``, ``vllm/lora/models.py``).

``LRUCacheWorkerLoRAManager`` keeps two LRU caches (``vllm/utils.py`` ``LRUCache``):

* the CPU cache, ``max_cpu_loras`` adapters (``_registered_adapters``);
* the GPU slots, ``max_loras`` adapters (``LRUCacheLoRAModelManager._active_adapters``).

Before each forward pass ``set_active_adapters`` -> ``_apply_adapters`` walks the step's ``set``
of ``LoRARequest`` objects (CPython's hash order of the adapter names) and calls
``add_adapter`` for each: an adapter missing from the CPU cache is loaded from disk (the least
recently used CPU entry is removed first when the cache is full, which also deactivates it
from its GPU slot); an adapter present is touched (``get`` moves it to the LRU end). Then
``activate_adapter``: an adapter not in a GPU slot evicts the least recently used slot
(``remove_oldest``, which does not look at the current batch: a batch member later in the walk
can be evicted and loaded again) and is copied CPU->GPU; the slot is touched.

Static adapters (``--lora-modules``) are added at start-up in the given order through the same
``add_adapter``, so the last ``max_cpu_loras`` stay in the CPU cache and the last ``max_loras``
of those in GPU slots.

The twin models the hash order as a fixed pseudo-random rank per adapter
(:func:`lora_hash_order`): vLLM's own order changes with ``PYTHONHASHSEED`` from one server
start to the next, so it cannot be reproduced exactly, only its statistics.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from loratwin.twin.release import LoRAManagerRules


def lora_hash_order(n: int) -> list[int]:
    """A fixed pseudo-random rank per adapter: the iteration order of a set of LoRARequests.

    A multiplicative (Knuth) hash of the adapter index stands for CPython's string hash: it
    stays the same from step to step, as the real order does within one server run.
    """
    return [((i + 1) * 2654435761) & 0xFFFFFFFF for i in range(n)]


def preloaded(n_adapters: int, max_cpu_loras: int, max_loras: int) -> tuple[range, range]:
    """Adapters in the CPU cache and in GPU slots after start-up (``--lora-modules`` order).

    Returns ``(cpu, gpu)`` as index ranges of the adapters.
    """
    cpu = range(max(0, n_adapters - max_cpu_loras), n_adapters)
    gpu = range(max(0, n_adapters - min(max_cpu_loras, max_loras)), n_adapters)
    return cpu, gpu


@dataclass(frozen=True)
class AdapterLoads:
    """Outcome of :func:`apply_adapters` for one step.

    ``load_s`` is the time of the step's loads in s; ``loads`` / ``disk_loads`` count the
    CPU->GPU copies and the disk reads (CPU-cache misses); ``n_gpu`` / ``n_cpu`` are the
    adapters held in GPU slots and in the CPU cache afterwards.
    """

    load_s: float
    loads: int
    disk_loads: int
    n_gpu: int
    n_cpu: int


def apply_adapters(
    step: int,
    batch: set[int],
    entering: list[int],
    in_gpu: list[bool],
    in_cpu: list[bool],
    n_gpu: int,
    n_cpu: int,
    last_used: list[int],
    hash_rank: list[int],
    max_loras: int,
    max_cpu_loras: int,
    cpu_load_s: list[float],
    disk_load_s: list[float],
) -> AdapterLoads:
    """``set_active_adapters`` -> ``_apply_adapters`` for a step whose batch needs loads.

    Walks the batch's adapters (``batch``, adapter indices) in hash order; an adapter not in
    a GPU slot is copied CPU->GPU (``cpu_load_s``), read from disk first on a CPU-cache miss
    (``disk_load_s``; the least recently used CPU entry is removed first when the cache holds
    ``max_cpu_loras``, which also frees its GPU slot), evicting the least recently touched
    GPU slot when ``max_loras`` are held. The LRU order of an adapter is ``(last step it was
    touched, hash_rank)``: those of the batch not ``entering`` it this step were touched in
    the previous step, the others at ``last_used``. ``remove_oldest`` does not look at the
    batch, so a member further down the walk can be evicted and loaded again; one not
    touched yet in this walk is the only one that can go.

    ``in_gpu`` / ``in_cpu`` (one flag per adapter) are updated in place; the rest is returned.
    """
    new = set(entering)

    def lru_key(a: int) -> tuple[int, int]:
        return (step - 1 if a in batch and a not in new else last_used[a], hash_rank[a])

    heaps: dict[int, list[tuple[tuple[int, int], int]]] = {}
    touched: set[int] = set()

    def evict_lru(present: list[bool]) -> int:
        """Remove and return the least recently touched adapter not touched yet."""
        heap = heaps.get(id(present))
        if heap is None:
            heap = [(lru_key(a), a) for a in range(len(present)) if present[a]]
            heapq.heapify(heap)
            heaps[id(present)] = heap
        while True:
            _, e = heapq.heappop(heap)
            if present[e] and e not in touched:
                present[e] = False
                return e

    load_s = 0.0
    loads = 0
    disk_loads = 0
    for b in sorted(batch, key=hash_rank.__getitem__):
        if not in_gpu[b]:
            loads += 1
            load_s += cpu_load_s[b]
            if not in_cpu[b]:
                disk_loads += 1
                load_s += disk_load_s[b]
                if n_cpu >= max_cpu_loras:
                    e = evict_lru(in_cpu)  # vLLM deactivates it from the GPU too
                    n_cpu -= 1
                    if in_gpu[e]:
                        in_gpu[e] = False
                        n_gpu -= 1
                in_cpu[b] = True
                n_cpu += 1
            if n_gpu >= max_loras:
                evict_lru(in_gpu)
                n_gpu -= 1
            in_gpu[b] = True
            n_gpu += 1
        touched.add(b)
    return AdapterLoads(load_s, loads, disk_loads, n_gpu, n_cpu)


RULES = LoRAManagerRules(
    lora_hash_order=lora_hash_order, preloaded=preloaded, apply_adapters=apply_adapters)
