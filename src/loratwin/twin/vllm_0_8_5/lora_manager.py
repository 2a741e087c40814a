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
