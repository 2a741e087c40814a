"""vLLM 0.6.3 (V0 engine): host CPU time per step and sequence, prompts in steps of their own."""

from __future__ import annotations

import pandas as pd
import pytest
from pydantic import ValidationError

from loratwin.advisor import read_sweep
from loratwin.calibrate.prior import build_prior, calibrate, default_calibration_profiles
from loratwin.calibrate.prior_check import bca_twin_sweep, smape
from loratwin.calibrate.prior_gpu import load_gpu
from loratwin.calibrate.prior_model import load_model_spec
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile, save_profile
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.release import KNOWN_VERSIONS, normalise_version, release_rules
from loratwin.twin.vllm_0_6_3.model_runner import HOST_PER_SEQ_S, HOST_STEP_S, cudagraph_sizes


@pytest.fixture(scope="module")
def llama() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


@pytest.mark.parametrize("given", ["0.6.3", "v0.6.3", "0.6.3.post1"])
def test_v0_release_names(given: str) -> None:
    assert normalise_version(given) == "0.6.3"
    assert release_rules(given).version == "0.6.3"


def test_only_v0_has_host_terms_and_optional_chunking() -> None:
    assert HOST_PER_SEQ_S > 0
    for v in KNOWN_VERSIONS:
        rules = release_rules(v)
        v0 = v == "0.6.3"
        assert (rules.model_runner.host_per_seq_s > 0) == v0, v
        assert rules.scheduler.chunked_prefill_optional == v0, v
    assert cudagraph_sizes(768, 2048)[-1] == 256
    assert cudagraph_sizes(96, 2048)[-1] == 96


def test_chunked_prefill_is_off_by_default_only_in_v0(llama: Profile) -> None:
    assert ServerConfig(vllm_version="0.6.3").resolved(llama).enable_chunked_prefill is False
    assert ServerConfig(vllm_version="0.8.5").resolved(llama).enable_chunked_prefill is None
    with pytest.raises(ValidationError, match="always runs chunked prefill"):
        ServerConfig(vllm_version="0.8.5", enable_chunked_prefill=False)


def test_v0_step_adds_host_time_per_step_and_sequence(llama: Profile) -> None:
    v1 = StepCost(llama, ServerConfig(enable_lora=False, vllm_version="0.8.5"))
    v0 = StepCost(llama, ServerConfig(enable_lora=False, vllm_version="0.6.3"))
    for n in (8, 64, 200):
        extra = v0.exec_s(n, n, 0, 300 * n, 0) - v1.exec_s(n, n, 0, 300 * n, 0)
        assert extra == pytest.approx(HOST_STEP_S + n * HOST_PER_SEQ_S, rel=1e-9, abs=1e-12)


def test_v0_without_chunking_runs_prompts_and_decodes_as_two_steps(llama: Profile) -> None:
    split = StepCost(llama, ServerConfig(enable_lora=False, vllm_version="0.6.3"))
    mixed = StepCost(llama, ServerConfig(enable_lora=False, vllm_version="0.6.3",
                                         enable_chunked_prefill=True))
    both = split.exec_s(64 + 300, 64, 2, 64 * 500, 0)
    apart = split.exec_s(300, 0, 2, 0, 0) + split.exec_s(64, 64, 0, 64 * 500, 0)
    assert both == pytest.approx(apart, rel=1e-12)
    assert mixed.exec_s(64 + 300, 64, 2, 64 * 500, 0) < both


def _sweep_smape(model: str, version: str, tmp_path) -> float:
    measured = read_sweep("bundled:sharegpt")
    prior = build_prior(load_model_spec(model), load_gpu("h100-64gb"),
                        calibrate(default_calibration_profiles()))
    path = tmp_path / f"{model}.json"
    save_profile(prior, path)
    twin = bca_twin_sweep(path, measured, model, tmp_path, fixed_length=False,
                          vllm_version=version)
    both = measured[measured["model"] == model].merge(twin, on="max_num_seqs",
                                                      suffixes=("", "_twin"))
    assert isinstance(both, pd.DataFrame) and len(both) >= 12
    return smape(both.total_token_throughput_tok_s_twin, both.total_token_throughput_tok_s)


def test_v0_rules_reproduce_a_held_out_batch_sweep(tmp_path) -> None:
    """OPT-2.7B's sweep (arXiv 2503.08311; the V0 constants are fitted on Llama-2-13B's):
    with the 0.8.5 (V1) rules the twin is ~35 % off, with the 0.6.3 rules within 10 %."""
    assert _sweep_smape("opt-2.7b", "0.8.5", tmp_path) > 30.0
    assert _sweep_smape("opt-2.7b", "0.6.3", tmp_path) < 10.0
