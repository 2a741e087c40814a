"""Loading and validating sweeps; the minimal-column contract for twin-generated frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loratwin.advisor import (
    LatencyGrowthRule,
    advise_max_num_seqs,
    advise_sweep,
    read_sweep,
    validate_sweep,
)
from loratwin.advisor.sweep import BASE_COLUMNS, split_sweep
from loratwin.errors import DataError, LoraTwinError


def test_bundled_sweeps_load() -> None:
    fixed = read_sweep("bundled:fixed-length")
    share = read_sweep("bundled:sharegpt")
    assert len(fixed) == 151 and len(share) == 54
    keys = [k for k, _ in split_sweep(validate_sweep(fixed, ()))]
    assert len(keys) == 16
    assert keys[0].model == "opt-1.3b" and keys[0].output_len == 130
    assert keys[0].label() == "opt-1.3b, output_len 130"
    share_keys = [k for k, _ in split_sweep(validate_sweep(share, ()))]
    assert [k.model for k in share_keys] == ["opt-1.3b", "opt-2.7b", "llama-2-7b", "llama-2-13b"]
    assert all(k.output_len is None for k in share_keys)


def test_unknown_bundled_name() -> None:
    with pytest.raises(DataError, match="unknown bundled sweep"):
        read_sweep("bundled:nope")


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LoraTwinError) as info:
        read_sweep(tmp_path / "missing.csv")
    assert "file not found" in str(info.value)
    with pytest.raises(DataError, match="not a file"):
        read_sweep(tmp_path)


def test_empty_csv(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match="cannot read"):
        read_sweep(path)


@pytest.mark.parametrize("column", ["kv_usage_peak_frac", "running_max", "mean_tpot_ms", "model"])
def test_missing_column(column: str) -> None:
    sweep = read_sweep("bundled:fixed-length").drop(columns=[column])
    with pytest.raises(DataError) as info:
        advise_sweep(sweep)
    assert info.value.field == column
    assert str(info.value) == f"{column}: missing column in the sweep"


def test_rule_a_needs_request_throughput() -> None:
    sweep = read_sweep("bundled:sharegpt").drop(columns=["request_throughput_rps"])
    advise_sweep(sweep, "b")  # not needed by rule (b)
    with pytest.raises(DataError) as info:
        advise_sweep(sweep, "a")
    assert info.value.field == "request_throughput_rps"


def test_empty_cell_non_numeric_and_duplicates() -> None:
    sweep = read_sweep("bundled:sharegpt")
    holed = sweep.copy()
    holed.loc[3, "mean_tpot_ms"] = np.nan
    with pytest.raises(DataError, match=r"empty cell for model 'opt-1\.3b', max_num_seqs 8"):
        advise_sweep(holed)
    text = sweep.copy()
    text["kv_cache_size_gib"] = "lots"
    with pytest.raises(DataError, match="must be numeric"):
        advise_sweep(text)
    with pytest.raises(DataError, match="duplicate run"):
        advise_sweep(pd.concat([sweep, sweep.iloc[[0]]]))
    with pytest.raises(DataError, match="no rows"):
        advise_sweep(sweep.iloc[0:0])


def test_advise_max_num_seqs_needs_one_curve() -> None:
    with pytest.raises(DataError, match="expected one model and setting, got 4"):
        advise_max_num_seqs(read_sweep("bundled:sharegpt"))


def _minimal_frame() -> pd.DataFrame:
    """A twin-like frame with only the documented minimal columns for rule (b)."""
    b = np.array([1, 8, 32, 64, 128, 256])
    tpot = 10.0 + 0.2 * b  # ms
    return pd.DataFrame({
        "model": "toy",
        "max_num_seqs": b,
        "running_max": b,
        "mean_tpot_ms": tpot,
        "total_token_throughput_tok_s": 1000.0 * b / tpot,
        "num_preemptions_total": [0, 0, 0, 0, 0, 3],
        "kv_usage_peak_frac": b / 300.0,
        "kv_cache_size_gib": 40.0,
        "peak_torch_memory_gib": 14.0,
        "non_torch_memory_gib": 0.5,
        "total_gpu_memory_gib": 79.0,
        "gpu_memory_utilization": 0.9,
    })


def test_minimal_columns_are_enough() -> None:
    frame = _minimal_frame()
    assert set(frame.columns) == {*BASE_COLUMNS, "running_max", "mean_tpot_ms"}
    advice = advise_max_num_seqs(frame)
    # ref = 32: TPOT 16.4 ms, limit 49.2 ms; B = 128 has 35.6 ms, B = 256 preempted.
    assert advice.key.model == "toy" and advice.key.output_len is None
    assert advice.latency_limit_ms == pytest.approx(49.2)
    assert advice.b_opt == 128
    assert advice.memory.freed_gib == pytest.approx(40.0 * (1 - 128 / 300))
    assert advice.memory.gpu_memory_utilization == pytest.approx(
        np.ceil((40.0 * 128 / 300 + 14.5) / 79.0 * 100) / 100)
    with_pre = advise_max_num_seqs(frame, LatencyGrowthRule(include_preempted=True))
    assert with_pre.b_opt == 128  # B = 256: TPOT 61.2 ms > 49.2 ms anyway
