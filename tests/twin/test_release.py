"""vLLM releases: names, flag defaults per release and GPU, and the release's cost rules."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loratwin.errors import ConfigError
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost, padded_tokens
from loratwin.twin.release import KNOWN_VERSIONS, normalise_version, release_rules
from loratwin.twin.vllm_0_32.model_runner import cudagraph_sizes


@pytest.fixture(scope="module")
def llama() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


@pytest.mark.parametrize(("given", "name"), [
    ("0.8.5", "0.8.5"), ("v0.8.5", "0.8.5"), ("0.32", "0.32"), ("0.32.0", "0.32"),
    ("0.32.1", "0.32"), ("0.33.0", "0.33"), (None, "0.8.5"),
])
def test_release_names(given: str | None, name: str) -> None:
    assert normalise_version(given) == name
    assert release_rules(given).version == name


@pytest.mark.parametrize("bad", ["0.8.4", "0.9.0", "1.0", "0.32.x", "latest", "0.8"])
def test_unknown_release_is_one_line_listing_the_known_ones(bad: str) -> None:
    with pytest.raises(ConfigError) as err:
        normalise_version(bad)
    msg = str(err.value)
    assert "\n" not in msg and bad in msg
    assert all(v in msg for v in KNOWN_VERSIONS)


def test_defaults_follow_the_release(llama: Profile) -> None:
    old = ServerConfig(max_loras=4).resolved(llama)
    assert (old.vllm_version, old.async_scheduling) == ("0.8.5", False)
    assert (old.max_num_seqs, old.max_num_batched_tokens, old.gpu_memory_utilization) == (
        256, 2048, 0.9)
    new = ServerConfig(max_loras=4, vllm_version="0.32.0").resolved(llama)
    assert (new.vllm_version, new.async_scheduling, new.gpu_memory_utilization) == (
        "0.32", True, 0.92)
    # explicit flags are kept, resolving twice changes nothing
    given = ServerConfig(vllm_version="0.33", gpu_memory_utilization=0.8, max_num_seqs=64,
                         async_scheduling=False).resolved(llama)
    assert (given.gpu_memory_utilization, given.max_num_seqs, given.async_scheduling) == (
        0.8, 64, False)
    assert given.resolved(llama) == given
    # the profile's release is the default one
    assert ServerConfig().resolved(llama.model_copy(update={"vllm_version": "0.33"})
                                   ).vllm_version == "0.33"


def test_a_small_budget_caps_the_default_max_num_seqs_from_0_32(llama: Profile) -> None:
    assert ServerConfig(vllm_version="0.32", max_num_batched_tokens=128).max_num_seqs == 128
    assert ServerConfig(vllm_version="0.32", max_num_batched_tokens=128
                        ).resolved(llama).max_num_seqs == 128
    with pytest.raises(ValidationError, match="max_num_seqs"):
        ServerConfig(vllm_version="0.8.5", max_num_batched_tokens=128)


@pytest.mark.parametrize(("gib", "gpu", "v085", "v032"), [
    (63.43, "NVIDIA H100 64 GB", (2048, 256), (2048, 256)),
    (79.2, "NVIDIA H100 80GB HBM3", (8192, 1024), (8192, 1024)),
    (79.2, "NVIDIA A100-SXM4-80GB", (8192, 1024), (2048, 256)),
    (178.0, "NVIDIA B200", (8192, 1024), (16384, 1024)),
])
def test_batch_defaults_per_gpu(llama: Profile, gib: float, gpu: str,
                                v085: tuple[int, int], v032: tuple[int, int]) -> None:
    prof = llama.model_copy(update={"gpu_total_memory_gib": gib, "gpu": gpu})
    for version, want in (("0.8.5", v085), ("0.32", v032), ("0.33", v032)):
        s = ServerConfig(vllm_version=version).resolved(prof)
        assert (s.max_num_batched_tokens, s.max_num_seqs) == want


def test_flags_a_release_does_not_have_are_refused() -> None:
    with pytest.raises(ValidationError, match="async_scheduling"):
        ServerConfig(vllm_version="0.8.5", async_scheduling=True)
    with pytest.raises(ValidationError, match="specialize_active_lora"):
        ServerConfig(vllm_version="0.8.5", specialize_active_lora=True)
    with pytest.raises(ValidationError, match="unknown vLLM version"):
        ServerConfig(vllm_version="0.10.0")


def test_cudagraph_sizes_of_0_32() -> None:
    sizes = cudagraph_sizes(2048, 2048)
    assert sizes[:4] == (1, 2, 4, 8) and 248 in sizes and 252 not in sizes
    assert 256 in sizes and 264 not in sizes and 272 in sizes and sizes[-1] == 512
    assert cudagraph_sizes(8, 64) == (1, 2, 4, 8, 16)
    assert cudagraph_sizes(300, 2048)[-1] == 512 and 300 in cudagraph_sizes(300, 2048)
    assert padded_tokens(260, sizes) == 272 and padded_tokens(600, sizes) == 600


def test_cost_rules_per_release(llama: Profile) -> None:
    flags = dict(max_loras=32, max_lora_rank=16, max_num_seqs=2048, max_num_batched_tokens=2048)
    c085 = StepCost(llama, ServerConfig(vllm_version="0.8.5", **flags))
    c032 = StepCost(llama, ServerConfig(vllm_version="0.32", **flags))
    spec = StepCost(llama, ServerConfig(vllm_version="0.32", specialize_active_lora=True,
                                        **flags))
    no_lora = StepCost(llama, ServerConfig(enable_lora=False, **flags)).exec_s(
        64, 64, 0, 10_000, 0)
    # 0.8.5 launches the LoRA kernels on every step; 0.32 skips them without a LoRA request
    assert c085.exec_s(64, 64, 0, 10_000, 0) > no_lora
    assert c032.exec_s(64, 64, 0, 10_000, 0) == pytest.approx(no_lora)
    assert c032.exec_s(64, 64, 0, 10_000, 1) > no_lora
    # --specialize-active-lora: grids over 1, 2, 4, ... slots instead of max_loras + 1
    # (3 active -> a grid of 4; 32 -> 32, one fewer than max_loras + 1)
    assert spec.exec_s(64, 64, 0, 10_000, 3) < c032.exec_s(64, 64, 0, 10_000, 3)
    assert (spec.exec_s(64, 64, 0, 10_000, 16) < spec.exec_s(64, 64, 0, 10_000, 32)
            < c032.exec_s(64, 64, 0, 10_000, 32))
    # asynchronous scheduling: the scheduler's CPU time overlaps the forward pass
    assert c032.overlap and not c085.overlap
    e, s = c032.exec_s(64, 64, 0, 10_000, 8), c032.sched_s(5000, 0)
    a, b, k = c032.decode_run(64, 10_000, 8, 5000, 0)
    assert a == pytest.approx(max(e, s)) and (b == 0.0) == (s > e)
    assert k >= 1


def test_the_cpu_backend_never_schedules_asynchronously(llama: Profile) -> None:
    # vllm/platforms/cpu.py (0.32): scheduler_config.async_scheduling = False, whatever is asked
    cpu = llama.model_copy(update={"device": "cpu", "vllm_version": "0.32"})
    assert ServerConfig().resolved(cpu).async_scheduling is False
    assert ServerConfig(async_scheduling=True).resolved(cpu).async_scheduling is False
    assert StepCost(cpu, ServerConfig()).overlap is False
    assert ServerConfig().resolved(llama.model_copy(update={"vllm_version": "0.32"})
                                   ).async_scheduling is True  # a GPU profile keeps the default
