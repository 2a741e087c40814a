"""vLLM's start-up memory arithmetic against the logged loads and KV sizes."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from loratwin.calibrate.prior import PriorCalibration, build_prior
from loratwin.calibrate.prior_check import kv_errors
from loratwin.calibrate.prior_gpu import load_gpu
from loratwin.calibrate.prior_memory import (
    MIB,
    alloc_bytes,
    slots_bytes,
    startup_memory,
    weights_bytes,
)
from loratwin.calibrate.prior_model import Shard, load_model_spec
from loratwin.profile.model import GIB, Profile


def test_caching_allocator_rounding() -> None:
    assert alloc_bytes(1) == 512
    assert alloc_bytes(7 * MIB) == 7 * MIB  # split from a 20 MiB segment
    assert alloc_bytes(49 * MIB) == 50 * MIB  # 1 MiB would be left: not split
    assert alloc_bytes(int(49.5 * MIB)) == 50 * MIB
    assert alloc_bytes(int(48.5 * MIB)) == int(48.5 * MIB)  # 1.5 MiB left: split
    assert alloc_bytes(12 * MIB + 1) == 12 * MIB + 512


def test_weights_match_the_logged_model_loads() -> None:
    setup = json.loads(resources.files("loratwin").joinpath("data", "bca", "setup.json")
                       .read_text())
    for model, facts in setup["models"].items():
        shard = Shard.of(load_model_spec(model), 1)
        assert weights_bytes(shard, False) / GIB == pytest.approx(
            facts["weights_load_gib"], abs=2e-4), model


def test_slot_buffers_match_the_logged_loads(qwen: Profile, llama: Profile) -> None:
    """Weights + slot buffers against "Model loading took" of every start-up (both models)."""
    for prof, model, tol in ((qwen, "qwen2.5-7b", 2e-3), (llama, "llama-3.1-8b", 3e-3)):
        shard = Shard.of(load_model_spec(model), 1)
        w = weights_bytes(shard, True)
        for p in prof.kv.points:
            if p.model_load_gib is None:
                continue
            got = (w + slots_bytes(shard, p.max_loras, p.max_lora_rank)) / GIB
            assert got == pytest.approx(p.model_load_gib, abs=tol), (model, p)


def test_startup_failures_in_order(calib_llama: PriorCalibration) -> None:
    gpu = load_gpu("h100-64gb")
    shard = Shard.of(load_model_spec("llama-3.1-8b"), 1)

    def failure(n: int, r: int, mml: int = 131072) -> str | None:
        return startup_memory(shard, gpu, calib_llama.memory, max_loras=n, max_lora_rank=r,
                              enable_lora=True, max_num_seqs=2048, gpu_memory_utilization=0.9,
                              max_model_len=mml).failure

    assert failure(8, 8) is None
    assert failure(256, 16) == "kv_cache_smaller_than_max_model_len"
    assert failure(256, 16, mml=4096) is None
    assert failure(224, 32) == "no_memory_for_kv_cache"
    assert failure(384, 32) == "cuda_oom"


@pytest.mark.parametrize("model, held, calib", [
    ("qwen2.5-7b", "qwen", "calib_llama"),
    ("llama-3.1-8b", "llama", "calib_qwen"),
])
def test_leave_one_model_out_kv_within_3_percent(model: str, held: str, calib: str,
                                                 request: pytest.FixtureRequest) -> None:
    prior = build_prior(load_model_spec(model), load_gpu("h100-64gb"),
                        request.getfixturevalue(calib))
    check = kv_errors(prior, request.getfixturevalue(held))
    assert check.max_abs_rel_err <= 0.03
    same, n = check.startup_agreement
    assert same == n
