"""The advisor on twin-generated sweeps: ``advise --twin`` and the per-GPU advice."""

from __future__ import annotations

from pathlib import Path

import pytest

from loratwin.advisor import advise_max_num_seqs
from loratwin.advisor.gpu import advise_gpu
from loratwin.advisor.twin_sweep import sweep_from_twin_config
from loratwin.errors import ConfigError
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import GpuAssignment
from loratwin.profile.store import load_profile
from loratwin.workload.types import Adapter


def test_twin_sweep_has_the_schema_and_a_plateau(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("model: llama-3.1-8b-instruct\nserver: {enable_lora: false}\nadapters: 1\n"
                   "max_num_seqs: [1, 8, 32, 128, 512]\nnum_prompts: 600\n"
                   "lengths: {kind: fixed, input_tokens: 250, output_tokens: 200}\n")
    df = sweep_from_twin_config(cfg)
    assert list(df["max_num_seqs"]) == [1, 8, 32, 128, 512]
    thr = df["total_token_throughput_tok_s"].to_numpy()
    tpot = df["mean_tpot_ms"].to_numpy()
    assert (thr[1:] > thr[:-1]).all() and (tpot[1:] >= tpot[:-1]).all()
    # memory identity of the advisor: KV + the rest = utilisation x total
    row = df.iloc[0]
    total = row["kv_cache_size_gib"] + row["peak_torch_memory_gib"] + row["non_torch_memory_gib"]
    assert total == pytest.approx(row["gpu_memory_utilization"] * row["total_gpu_memory_gib"])
    adv = advise_max_num_seqs(df, "b")
    assert adv.b_opt in set(df["running_max"].astype(int))
    assert adv.memory.freed_gib > 0


def test_twin_sweep_bad_config(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("num_prompts: -3\n")
    with pytest.raises(ConfigError, match="num_prompts"):
        sweep_from_twin_config(cfg)


def test_advise_gpu_turns_freed_memory_into_slots() -> None:
    profile = load_profile("llama-3.1-8b-instruct")
    adapters = [Adapter(f"a{i}", 16, 0.3) for i in range(64)]
    problem = PlacementProblem(adapters, profile, predictor=None)  # type: ignore[arg-type]
    gpu = GpuAssignment(tuple(adapters), max_loras=16, max_cpu_loras=64, max_lora_rank=16)
    adv = advise_gpu(problem, gpu, num_prompts=600, duration_s=600)
    assert adv.max_num_seqs < gpu.max_num_seqs and adv.freed_gib > 0
    assert set(adv.candidates) == {"current", "smaller batch", "more slots"}
    flags, verified = adv.candidates["more slots"]
    assert flags["max_loras"] > 16 and verified["adapter_loads"] < (
        adv.candidates["current"][1]["adapter_loads"])
    assert adv.assignment(gpu).max_num_seqs == adv.candidates[adv.chosen][0]["max_num_seqs"]
