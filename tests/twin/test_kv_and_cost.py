"""KV capacity model and step-cost model."""

from __future__ import annotations

import pytest

from loratwin.profile.model import kv_capacity, max_loras_that_fit
from loratwin.profile.store import load_profile
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import LoraShapes, StepCost, lora_cta_counts, padded_tokens


@pytest.fixture(scope="module")
def llama():
    return load_profile("llama-3.1-8b-instruct")


def test_measured_kv_points_are_reproduced(llama) -> None:
    cap = kv_capacity(llama, 8, 8)
    assert cap.measured and cap.failure is None and cap.tokens == 305104
    assert kv_capacity(llama, 224, 16).tokens == 138272


@pytest.mark.parametrize(
    ("loras", "rank", "failure"),
    [
        (256, 16, "kv_cache_smaller_than_max_model_len"),
        (128, 32, "kv_cache_smaller_than_max_model_len"),
        (256, 32, "cuda_oom"),
    ],
)
def test_measured_start_up_failures(llama, loras: int, rank: int, failure: str) -> None:
    assert kv_capacity(llama, loras, rank).failure == failure


def test_unmeasured_points_interpolate_between_neighbours(llama) -> None:
    lo, mid, hi = (kv_capacity(llama, n, 16).tokens for n in (96, 100, 128))
    assert hi < mid < lo
    # rank 64 was never measured: a rank-64 slot costs more than a rank-32 one
    assert kv_capacity(llama, 16, 64).tokens < kv_capacity(llama, 16, 32).tokens


def test_smaller_max_num_seqs_and_higher_utilisation_give_more_kv(llama) -> None:
    base = kv_capacity(llama, 32, 16).tokens
    assert kv_capacity(llama, 32, 16, max_num_seqs=256).tokens > base
    assert kv_capacity(llama, 32, 16, gpu_memory_utilization=0.95).tokens > base


def test_max_loras_that_fit_matches_the_table(llama) -> None:
    # measured: rank 16 starts with 224 slots and fails with 256
    assert 224 <= max_loras_that_fit(llama, 16) < 256
    assert max_loras_that_fit(llama, 8) >= 384


def test_padded_tokens_follow_cuda_graph_sizes() -> None:
    assert [padded_tokens(m) for m in (1, 2, 3, 5, 9, 512, 513)] == [1, 2, 4, 8, 16, 512, 513]


def test_lora_blocks_grow_with_slots_and_adapters(llama) -> None:
    shapes = LoraShapes.of(llama.arch)
    e8, w8, _ = lora_cta_counts(shapes, 256, 4, 8, 16)
    e300, w300, _ = lora_cta_counts(shapes, 256, 4, 300, 16)
    assert e300 > 30 * e8 and w300 == w8
    _, w_more, _ = lora_cta_counts(shapes, 256, 64, 300, 16)
    assert w_more > 5 * w8
    # below 128 tokens the shrink kernel splits K 64 ways: extra working blocks
    assert lora_cta_counts(shapes, 64, 4, 8, 16)[2] > 0
    assert lora_cta_counts(shapes, 256, 4, 8, 16)[2] == 0


def test_step_cost_increases_with_load_and_slots(llama) -> None:
    small = StepCost(llama, ServerConfig(max_loras=8, max_lora_rank=16))
    big = StepCost(llama, ServerConfig(max_loras=128, max_lora_rank=16))
    t1 = small.exec_s(32, 32, 0, 32 * 300, 8)
    assert small.exec_s(256, 256, 0, 256 * 300, 8) > t1
    assert big.exec_s(32, 32, 0, 32 * 300, 8) > t1
    no_lora = StepCost(llama, ServerConfig(enable_lora=False))
    assert no_lora.exec_s(32, 32, 0, 32 * 300, 8) < t1
    # decode sweep of the measurements: 50 sequences -> 13.9 ms per step, 1000 -> 49.6 ms
    assert 0.010 < no_lora.exec_s(50, 50, 0, 50 * 55, 0) < 0.016


def test_decode_run_matches_single_steps(llama) -> None:
    cost = StepCost(llama, ServerConfig(max_loras=16, max_lora_rank=16))
    a, b, k = cost.decode_run(100, 30000, 10, 120, 5)
    assert k >= 3  # synchronous engine: the formula holds for any run length
    for j in range(3):
        single = cost.exec_s(100, 100, 0, 30000 + 100 * j, 10) + cost.sched_s(120, 5)
        assert a + b * j == pytest.approx(single, rel=1e-12)
