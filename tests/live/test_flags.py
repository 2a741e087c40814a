"""Where the benchmark row's vLLM flags come from, and contradictions between sources."""

from __future__ import annotations

import pytest

from loratwin.errors import ConfigError
from loratwin.live.flags import command_flags, resolve_flags
from loratwin.live.metrics import ServerFacts


def test_sources_and_defaults() -> None:
    r = resolve_flags(facts=ServerFacts(max_loras=4), command={"max_lora_rank": 16},
                      options={"max_num_seqs": 64, "max_loras": None},
                      workload={"max_cpu_loras": 8}, platform="cpu")
    assert r.values == {"max_loras": 4, "max_cpu_loras": 8, "max_lora_rank": 16,
                        "max_num_seqs": 64, "max_num_batched_tokens": 2048}
    assert r.sources["max_loras"] == "server" and r.sources["max_lora_rank"] == "command"
    assert r.sources["max_num_batched_tokens"] == "vllm default"
    assert "max_loras=4 (server)" in r.describe()


def test_vllm_defaults_per_platform() -> None:
    cpu = resolve_flags(facts=ServerFacts(), platform="cpu").values
    gpu = resolve_flags(facts=ServerFacts(), platform="gpu").values
    assert (cpu["max_num_seqs"], gpu["max_num_seqs"]) == (128, 256)
    assert cpu["max_cpu_loras"] == cpu["max_loras"] == 1


def test_option_contradicting_the_server_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"max_loras: the option says 8 but the server says 4"):
        resolve_flags(facts=ServerFacts(max_loras=4), options={"max_loras": 8})


def test_command_contradicting_option() -> None:
    with pytest.raises(ConfigError, match="max_num_seqs"):
        resolve_flags(facts=ServerFacts(), command={"max_num_seqs": 32},
                      options={"max_num_seqs": 64})


def test_cpu_cache_below_slots() -> None:
    with pytest.raises(ConfigError, match="max_cpu_loras"):
        resolve_flags(facts=ServerFacts(max_loras=4), options={"max_cpu_loras": 2})


def test_command_flags() -> None:
    argv = ["vllm", "serve", "m", "--max-loras", "3", "--max-lora-rank=32", "--enable-lora"]
    assert command_flags(argv) == {"max_loras": 3, "max_lora_rank": 32}
    with pytest.raises(ConfigError, match="launch"):
        command_flags(["vllm", "serve", "m", "--max-num-seqs", "many"])
