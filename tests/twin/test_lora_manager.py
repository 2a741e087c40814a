"""vLLM's LRU LoRA caches as ``lora_manager.apply_adapters`` applies them."""

from __future__ import annotations

from loratwin.twin.vllm_0_8_5.lora_manager import apply_adapters, lora_hash_order


def _run(batch: set[int], entering: list[int], in_gpu: list[bool], in_cpu: list[bool],
         last_used: list[int], max_loras: int, max_cpu_loras: int):
    n = len(in_gpu)
    return apply_adapters(
        10, batch, entering, in_gpu, in_cpu, sum(in_gpu), sum(in_cpu), last_used,
        lora_hash_order(n), max_loras, max_cpu_loras, [1.0] * n, [10.0] * n,
    )


def test_gpu_miss_evicts_least_recently_used_slot() -> None:
    # adapters 0, 1 in the two GPU slots (0 older); 2 enters from the CPU cache
    in_gpu = [True, True, False]
    in_cpu = [True, True, True]
    got = _run({1, 2}, [2], in_gpu, in_cpu, [3, 5, 1], max_loras=2, max_cpu_loras=3)
    assert (got.load_s, got.loads, got.disk_loads) == (1.0, 1, 0)
    assert in_gpu == [False, True, True]
    assert (got.n_gpu, got.n_cpu) == (2, 3)


def test_cpu_miss_reads_disk_and_frees_the_evicted_adapters_slot() -> None:
    # CPU cache full (0, 1), 0 the least recently used and in a GPU slot; 2 comes from disk
    in_gpu = [True, False, False]
    in_cpu = [True, True, False]
    got = _run({2}, [2], in_gpu, in_cpu, [1, 4, 0], max_loras=2, max_cpu_loras=2)
    assert (got.load_s, got.loads, got.disk_loads) == (11.0, 1, 1)
    assert in_cpu == [False, True, True]
    assert in_gpu == [False, False, True]
    assert (got.n_gpu, got.n_cpu) == (1, 2)


def test_resident_batch_loads_nothing() -> None:
    in_gpu = [True, True]
    in_cpu = [True, True]
    got = _run({0, 1}, [], in_gpu, in_cpu, [9, 9], max_loras=2, max_cpu_loras=2)
    assert (got.load_s, got.loads, got.disk_loads, got.n_gpu) == (0.0, 0, 0, 2)
    assert in_gpu == [True, True]
