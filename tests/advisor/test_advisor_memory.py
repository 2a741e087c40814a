"""KV memory used/freed at B_opt and the recommended gpu_memory_utilization."""

from __future__ import annotations

import pandas as pd
import pytest

from loratwin.advisor import (
    AdvisorOptions,
    advise_max_num_seqs,
    freed_kv_tokens,
    read_sweep,
    recommend_gpu_memory_utilization,
)
from loratwin.errors import ConfigError


def _opt13_390() -> pd.DataFrame:
    df = read_sweep("bundled:fixed-length")
    return df[(df["model"] == "opt-1.3b") & (df["output_len"] == 390)]


def test_recommended_utilization_leaves_just_the_kv_needed() -> None:
    advice = advise_max_num_seqs(_opt13_390())
    mem = advice.memory
    # B_opt = 128: peak_torch 2.71 + non_torch 0.10 GiB, KV used 54.48 x 0.2572 = 14.01 GiB
    assert mem.non_kv_gib == pytest.approx(2.81)
    exact = (mem.kv_used_gib + 2.81) / 63.43
    assert exact == pytest.approx(0.26521, abs=1e-5)
    assert mem.gpu_memory_utilization == 0.27
    # vLLM's identity at the recommended utilisation gives a pool that holds the KV used.
    pool = mem.gpu_memory_utilization * 63.43 - 2.71 - 0.10
    assert mem.kv_used_gib <= pool < mem.kv_used_gib + 0.01 * 63.43
    assert mem.footprint_gib == pytest.approx(2.81 + mem.kv_used_gib)


def test_headroom_and_denominator_options() -> None:
    options = AdvisorOptions(gpu_memory_gib=63.43, kv_headroom=0.25)
    mem = advise_max_num_seqs(_opt13_390(), options=options).memory
    assert mem.kv_reserved_gib == pytest.approx(mem.kv_used_gib * 1.25)
    assert mem.gpu_memory_utilization == 0.33  # (17.5157 + 2.81) / 63.43 = 0.3204, rounded up
    assert mem.freed_pct_of_gpu_memory == pytest.approx(40.46741228762399 / 63.43 * 100)


def test_utilization_is_capped_at_the_sweep_value() -> None:
    assert recommend_gpu_memory_utilization(60.0, 3.0, 63.43, max_utilization=0.9) == 0.9
    assert recommend_gpu_memory_utilization(6.343, 0.0, 63.43, max_utilization=0.9) == 0.1
    with pytest.raises(ConfigError):
        recommend_gpu_memory_utilization(1.0, 1.0, 0.0, max_utilization=0.9)


def test_freed_kv_tokens_whole_blocks() -> None:
    # 1 GiB / (16 tokens x 196,608 B) = 341.33 blocks -> 341 blocks = 5,456 tokens (OPT-1.3B)
    assert freed_kv_tokens(1.0, 196_608) == 5456
    # Llama-2-7B, 524,288 B/token: exactly 128 blocks per GiB
    assert freed_kv_tokens(6.0, 524_288) == 6 * 128 * 16
    assert freed_kv_tokens(0.0, 524_288) == 0
    with pytest.raises(ConfigError):
        freed_kv_tokens(1.0, 0)
    with pytest.raises(ConfigError):
        freed_kv_tokens(-1.0, 196_608)


def test_bad_options_raise_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        AdvisorOptions(gpu_memory_gib=0)
    assert info.value.field == "gpu_memory_gib"
    with pytest.raises(ConfigError) as info:
        AdvisorOptions(kv_headroom=-0.1)
    assert info.value.field == "kv_headroom"
