"""The prior profile: fitted factors, shared constants, tensor parallelism, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

from loratwin.calibrate.prior import PriorCalibration, build_prior, calibrate
from loratwin.calibrate.prior_gpu import load_gpu
from loratwin.calibrate.prior_model import Shard, load_model_spec
from loratwin.calibrate.prior_report import prior_summary_table
from loratwin.calibrate.prior_roofline import fixed_step_s, physics, step_coefficients
from loratwin.errors import ConfigError
from loratwin.profile.model import Profile, kv_capacity
from loratwin.profile.store import load_profile
from tests.cli_run import run_cli

COEFS = ("base_s", "per_token_s", "per_decode_seq_s", "per_context_token_s",
         "per_prefill_req_s", "lora_empty_cta_s", "lora_work_cta_s")


def test_one_profile_calibration_reproduces_its_own_coefficients(
        calib_llama: PriorCalibration, llama: Profile) -> None:
    prior = build_prior(load_model_spec("llama-3.1-8b"), load_gpu("h100-64gb"), calib_llama)
    for c in COEFS:
        assert getattr(prior.step, c) == pytest.approx(getattr(llama.step, c), rel=1e-6), c
    assert prior.profile_kind == "prior"
    assert "estimated" in prior.source and "estimated" in prior.gpu


def test_generation_config_penalties_cost_per_decoding_request(
        calib_llama: PriorCalibration, tmp_path: Path) -> None:
    """Qwen2.5's generation config sets repetition_penalty 1.05: vLLM applies it to every
    request that does not override it, and the prior prices its passes over the logits."""
    gpu = load_gpu("h100-64gb")
    qwen = load_model_spec("qwen2.5-7b")
    assert qwen.sampling_penalties
    gen = tmp_path / "generation_config.json"
    gen.write_text(json.dumps({"temperature": 0.7}))
    plain = load_model_spec("qwen2.5-7b", generation_config=gen)
    assert not plain.sampling_penalties
    with_pen = build_prior(qwen, gpu, calib_llama).step.per_decode_seq_s
    without = build_prior(plain, gpu, calib_llama).step.per_decode_seq_s
    assert with_pen - without == pytest.approx(129 * 152064 / (0.9 * 2000e9), rel=1e-9)


def test_factors_are_shared_not_per_model(calib_llama: PriorCalibration) -> None:
    """Two models from one calibration: coefficients scale with the models' physics only."""
    gpu = load_gpu("h100-64gb")
    a = build_prior(load_model_spec("llama-3.1-8b"), gpu, calib_llama).step
    b = build_prior(load_model_spec("mistral-7b"), gpu, calib_llama).step
    # same layer shapes, smaller vocabulary: only the LM-head parts change
    assert b.per_token_s == pytest.approx(a.per_token_s)
    assert b.base_s < a.base_s
    assert b.per_decode_seq_s < a.per_decode_seq_s


def test_faster_gpu_and_tensor_parallelism(calib_llama: PriorCalibration) -> None:
    spec = load_model_spec("llama-3.1-8b")
    eff = calib_llama.efficiency
    h64 = build_prior(spec, load_gpu("h100-64gb"), calib_llama)
    h200 = build_prior(spec, load_gpu("h200"), calib_llama)
    # the fixed step cost (per step + per layer) does not change with the GPU's bandwidth
    fixed = fixed_step_s(Shard.of(spec, 1), eff)
    assert h200.step.base_s - fixed == pytest.approx((h64.step.base_s - fixed) * 2000 / 4800,
                                                     rel=1e-9)
    assert kv_capacity(h200, 64, 16).tokens > 2 * kv_capacity(h64, 64, 16).tokens
    tp2 = step_coefficients(Shard.of(spec, 2), load_gpu("h100-sxm-80gb"), eff)
    tp1 = build_prior(spec, load_gpu("h100-sxm-80gb"), calib_llama).step
    assert tp2.per_token_s < tp1.per_token_s  # half the FLOPs, plus all-reduce bytes
    assert tp2.base_s < tp1.base_s  # half the weights, plus all-reduce latency
    big = build_prior(load_model_spec("llama-3.1-70b"), load_gpu("h100-sxm-80gb"), calib_llama,
                      tp=4)
    assert big.arch.kv_size == 256 and kv_capacity(big, 8, 16).failure is None
    alone = build_prior(load_model_spec("llama-3.1-70b"), load_gpu("h100-sxm-80gb"),
                        calib_llama)
    assert kv_capacity(alone, 8, 16).failure == "cuda_oom"


def test_one_layer_count_keeps_the_fixed_cost_per_step(calib_llama: PriorCalibration,
                                                       calib_qwen: PriorCalibration) -> None:
    """One calibration model cannot tell a per-layer cost from a per-step one: the whole
    fixed cost stays per step, as measured (Llama: 2.71 ms besides its weight read)."""
    for calib in (calib_llama, calib_qwen):
        assert calib.efficiency.layer_s == 0.0
        assert calib.reports["step_fit"]["fixed_cost"].startswith("per step only")
    assert calib_llama.efficiency.step_s == pytest.approx(2.713e-3, rel=1e-3)


def test_two_layer_counts_split_the_fixed_cost_per_layer(calib_both: PriorCalibration) -> None:
    """Llama-3.1-8B (32 layers) and Qwen2.5-7B (28) together fit a per-step and a per-layer
    fixed cost; a model's fixed cost then grows with its layers, not with its width."""
    eff = calib_both.efficiency
    assert calib_both.reports["step_fit"]["fixed_cost"] == "per step + per layer"
    assert eff.step_s == pytest.approx(0.552e-3, rel=1e-2)
    assert eff.layer_s == pytest.approx(73.8e-6, rel=1e-2)
    gpu = load_gpu("h100-64gb")
    opt = load_model_spec("opt-1.3b")  # 24 layers
    weights = physics(Shard.of(opt, 1), gpu)["weights_s"] / eff.weights
    assert build_prior(opt, gpu, calib_both).step.base_s - weights == pytest.approx(
        eff.step_s + 24 * eff.layer_s, rel=1e-9)
    spec = load_model_spec("llama-3.1-8b")
    assert fixed_step_s(Shard.of(spec, 1), eff) == pytest.approx(eff.step_s + 32 * eff.layer_s)
    # tensor parallelism splits the weights, not the layers: the fixed part is per GPU alike
    assert fixed_step_s(Shard.of(spec, 2), eff) == fixed_step_s(Shard.of(spec, 1), eff)


def test_calibration_refuses_priors(calib_llama: PriorCalibration) -> None:
    prior = build_prior(load_model_spec("qwen3-8b"), load_gpu("h200"), calib_llama)
    with pytest.raises(ConfigError, match="prior profile"):
        calibrate([prior])
    with pytest.raises(ConfigError, match="no profile"):
        calibrate([])


def test_cli_leave_one_out_command_and_labels(tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "qwen-prior.json"
    assert run_cli(["profile", "prior", "--hf-config", "qwen2.5-7b", "--gpu", "h100-64gb",
                    "--calibrate-on", "llama-3.1-8b-instruct", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["profile_kind"] == "prior"
    assert doc["fit_report"]["prior"]["calibrated_on"] == "llama-3.1-8b-instruct"
    assert "estimated" in capsys.readouterr().out
    assert run_cli(["profile", "show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "estimated: qwen2.5-7b-h100-64gb-prior" in shown.replace("\n", " ")
    assert load_profile(out).name == "qwen2.5-7b-h100-64gb-prior"


@pytest.mark.parametrize("argv, message", [
    (["--hf-config", "qwen3-8b", "--gpu", "h300"], "unknown GPU 'h300' (known: a100-80gb"),
    (["--hf-config", "qwen3-8b", "--gpu", "h200", "--tp", "3"], "does not divide"),
    (["--hf-config", "nope", "--gpu", "h200"], "unknown model"),
    (["--hf-config", "qwen3-8b", "--gpu", "h200", "--calibrate-on", "nope"],
     "unknown profile"),
])
def test_cli_bad_input_is_one_line(argv: list[str], message: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    assert run_cli(["profile", "prior", *argv, "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not out.exists()


def test_cli_bad_output_path_fails_before_the_fit(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    for out, message in ((tmp_path, "is a folder"), (tmp_path / "p.txt", "ending in .json")):
        assert run_cli(["profile", "prior", "--hf-config", "qwen3-8b", "--gpu", "h200",
                        "-o", str(out)]) == 2
        assert message in capsys.readouterr().err


def test_simulate_and_validate_label_a_prior(calib_llama: PriorCalibration, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from loratwin.profile.store import save_profile

    path = tmp_path / "prior.json"
    save_profile(build_prior(load_model_spec("qwen3-8b"), load_gpu("h200"), calib_llama), path)
    ads = tmp_path / "ad.csv"
    ads.write_text("id,rank,rate\na,8,0.5\nb,16,0.2\n")
    out = tmp_path / "sim.json"
    assert run_cli(["simulate", "--model", str(path), "--adapters", str(ads), "--max-loras",
                    "2", "--duration", "20", "--json", str(out)]) == 0
    assert "estimated: qwen3-8b-h200-prior" in capsys.readouterr().out.replace("\n", " ")
    assert json.loads(out.read_text())["profile_kind"] == "prior"


def test_cli_binary_config_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    # found by benchmarks/fuzz_cli.py: a non-UTF-8 config.json was an internal error
    cfg = tmp_path / "config.json"
    cfg.write_bytes(b"\xff\xfe\x00\x01\x89PNG\r\n")
    out = tmp_path / "p.json"
    assert run_cli(["profile", "prior", "--hf-config", str(cfg), "--gpu", "h200",
                    "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --hf-config: ") and "not a UTF-8 text file" in err
    assert not out.exists()


def test_summary_shows_the_split_fixed_cost(calib_both: PriorCalibration) -> None:
    prior = build_prior(load_model_spec("qwen3-8b"), load_gpu("h200"), calib_both)
    console = Console(width=200, record=True)
    console.print(prior_summary_table(prior))
    text = console.export_text()
    assert "fixed step cost (per step + per layer)" in text
    assert "0.55 ms + 36 x 73.8 us = 3.21 ms" in text
