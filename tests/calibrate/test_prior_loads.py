"""Adapter load times of the prior: what vLLM 0.8.5's activate_adapter and _load_adapter do."""

from __future__ import annotations

import pytest

from loratwin.calibrate.prior_gpu import load_gpu
from loratwin.calibrate.prior_loads import (
    activation_ops,
    adapter_tensors,
    cpu_load_ms,
    disk_load_ms,
    fit_load_constants,
    strided_copies,
)
from loratwin.calibrate.prior_model import Shard, load_model_spec
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile


def _shard(name: str) -> Shard:
    return Shard.of(load_model_spec(name), 1)


def test_operation_counts_follow_vllm_layers() -> None:
    """Per layer 7 slices (qkv 3, o, gate_up 2, down): 2 fills + 2 copies each; Llama's
    embedding and logits-processor wrappers add 3 fills each; OPT has 6 slices."""
    llama, qwen, opt = _shard("llama-3.1-8b"), _shard("qwen2.5-7b"), _shard("opt-1.3b")
    assert activation_ops(llama) == 28 * 32 + 6
    assert activation_ops(qwen) == 28 * 28
    assert activation_ops(opt) == 24 * 24
    assert adapter_tensors(llama) == 14 * 32
    assert strided_copies(llama, 32, 32) == 0
    assert strided_copies(llama, 32, 8) == 7 * 32


def test_cpu_load_is_host_enqueue_time_not_pcie() -> None:
    """The copies are non_blocking: full-slot loads do not grow with the rank (as measured),
    a slot of larger rank costs more (strided B copies), disk loads grow with the bytes."""
    llama = load_profile("llama-3.1-8b-instruct")
    sh = _shard("llama-3.1-8b")
    gpu = load_gpu("h100-64gb")
    c, _ = fit_load_constants([(sh, gpu, llama.loads)])
    assert cpu_load_ms(sh, gpu, c, 8, 8) == pytest.approx(cpu_load_ms(sh, gpu, c, 32, 32))
    assert cpu_load_ms(sh, gpu, c, 32, 8) > cpu_load_ms(sh, gpu, c, 32, 32)
    assert disk_load_ms(sh, c, 32) > disk_load_ms(sh, c, 8)


@pytest.mark.parametrize(("profile", "model"), [
    ("llama-3.1-8b-instruct", "llama-3.1-8b"), ("qwen-2.5-7b-instruct", "qwen2.5-7b")])
def test_fit_reproduces_the_calibration_profile_loads(profile: str, model: str) -> None:
    """In sample, every measured CPU -> GPU point within 10 % (a bytes / PCIe term would make
    the rank-32 loads 2-5 ms slower than the rank-8 ones, which the measurements are not)."""
    measured: Profile = load_profile(profile)
    sh, gpu = _shard(model), load_gpu("h100-64gb")
    c, report = fit_load_constants([(sh, gpu, measured.loads)])
    assert report["points"] == 6
    for p in measured.loads.points:
        got = cpu_load_ms(sh, gpu, c, p.max_lora_rank, p.adapter_rank)
        assert got == pytest.approx(p.cpu_ms, rel=0.10), (p.max_lora_rank, p.adapter_rank)
