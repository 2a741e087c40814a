"""The adapters' target modules (PEFT's rules) and the load times they set in a prior."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratwin.calibrate.prior import PriorCalibration, build_prior
from loratwin.calibrate.prior_gpu import load_gpu
from loratwin.calibrate.prior_loads import (
    activation_ops,
    adapter_bytes,
    adapter_tensors,
    strided_copies,
)
from loratwin.calibrate.prior_model import Shard, load_model_spec
from loratwin.calibrate.prior_targets import (
    AdapterTargets,
    all_linear,
    read_adapter_config,
    resolve_targets,
)
from loratwin.errors import ConfigError, DataError
from tests.cli_run import run_cli

LLAMA = load_model_spec("llama-3.1-8b")
OPT = load_model_spec("opt-1.3b")


def test_default_and_all_linear_adapt_every_linear_layer_of_every_layer() -> None:
    every = all_linear(LLAMA)
    assert len(every.pairs) == 7 * 32 and len(all_linear(OPT).pairs) == 6 * 24
    assert resolve_targets(LLAMA, None) == every
    assert resolve_targets(LLAMA, "all-linear").pairs == every.pairs
    assert every.modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                             "down_proj")
    assert all_linear(OPT).modules == ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def test_list_entries_match_a_name_or_its_suffix_as_peft_does() -> None:
    qv = resolve_targets(LLAMA, ["q_proj", "v_proj"])
    assert qv.modules == ("q_proj", "v_proj") and len(qv.layers) == 32
    one = resolve_targets(LLAMA, ["model.layers.0.self_attn.q_proj", "mlp.down_proj"])
    assert one.pairs[0] == (0, "q_proj")
    assert len(one.pairs) == 1 + 32
    assert resolve_targets(OPT, ["fc1", "out_proj"]).modules == ("out_proj", "fc1")


def test_a_string_is_a_regular_expression_on_the_whole_module_name() -> None:
    t = resolve_targets(LLAMA, r"model\.layers\.(0|1)\.self_attn\.(q|v)_proj")
    assert t.pairs == ((0, "q_proj"), (0, "v_proj"), (1, "q_proj"), (1, "v_proj"))
    assert t.label(LLAMA).startswith("q_proj,v_proj (2 of 32 layers")
    # a partial match is no match (re.fullmatch, as PEFT)
    with pytest.raises(ConfigError, match="matches no linear layer"):
        resolve_targets(LLAMA, "q_proj")


def test_layers_to_transform_keeps_the_listed_layers() -> None:
    t = resolve_targets(LLAMA, ["q_proj", "v_proj"], [3, 0, 3])
    assert t.layers == (0, 3) and len(t.pairs) == 4
    assert len(resolve_targets(LLAMA, None, 5).pairs) == 7


@pytest.mark.parametrize(("target", "layers", "message"), [
    (["lm_head"], None, "not a linear layer"),
    (["embed_tokens", "q_proj"], None, "not a linear layer"),
    ("(", None, "not a regular expression"),
    (["q_proj"], [32], "not a set of layers"),
    (["q_proj"], [-1], "not a set of layers"),
    (["q_proj"], [], "not a set of layers"),
])
def test_targets_the_prior_cannot_model_are_refused(target: object, layers: object,
                                                    message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_targets(LLAMA, target, layers)  # type: ignore[arg-type]


def test_a_module_of_another_architecture_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"not a linear layer of opt-1\.3b"):
        resolve_targets(OPT, ["gate_proj"])


def test_loads_count_fills_of_every_slot_slice_and_copies_of_adapted_ones() -> None:
    """vLLM fills A and B of every wrapped slice (reset_lora) and copies only the adapted
    ones (set_lora); the file holds the adapted tensors only."""
    sh = Shard.of(LLAMA, 1)
    qv = resolve_targets(LLAMA, ["q_proj", "v_proj"])
    assert activation_ops(sh, qv) == 2 * 7 * 32 + 2 * 2 * 32 + 6
    assert adapter_tensors(sh, qv) == 2 * 2 * 32
    assert strided_copies(sh, 32, 8, qv) == 2 * 32 and strided_copies(sh, 8, 8, qv) == 0
    h, kv = 4096, 1024
    assert adapter_bytes(sh, 8, qv) == 8 * 32 * ((h + h) + (h + kv)) * 2
    # the default is every linear layer, the former formula
    assert adapter_bytes(sh, 8) == adapter_bytes(sh, 8, all_linear(LLAMA))


def test_fewer_targets_load_faster_in_the_prior(calib_qwen: PriorCalibration) -> None:
    gpu = load_gpu("h100-64gb")
    full = build_prior(LLAMA, gpu, calib_qwen)
    qv = build_prior(LLAMA, gpu, calib_qwen, targets=resolve_targets(LLAMA, ["q_proj", "v_proj"]))
    for a, b in zip(full.loads.points, qv.loads.points, strict=True):
        assert b.cpu_ms < a.cpu_ms and b.disk_ms < a.disk_ms
    assert qv.fit_report["prior"]["adapter_targets"].startswith("q_proj,v_proj (all layers")
    assert full.step == qv.step and full.kv == qv.kv  # slots and kernels do not change


def _write(tmp_path: Path, cfg: object) -> Path:
    p = tmp_path / "adapter_config.json"
    p.write_text(json.dumps(cfg))
    return p


def test_adapter_config_json(tmp_path: Path) -> None:
    t = read_adapter_config(_write(tmp_path, {
        "peft_type": "LORA", "r": 16, "target_modules": ["v_proj", "q_proj"],
        "layers_to_transform": [1, 2]}), LLAMA)
    assert isinstance(t, AdapterTargets) and t.layers == (1, 2) and t.modules == ("q_proj",
                                                                                 "v_proj")
    for bad, message in [
        ({"peft_type": "PREFIX_TUNING", "target_modules": ["q_proj"]}, "not LORA"),
        ({"peft_type": "LORA"}, "no target_modules"),
        ({"target_modules": []}, "string or a list"),
        ({"target_modules": [1]}, "string or a list"),
        ({"target_modules": ["q_proj"], "layers_to_transform": "x"}, "integer or a list"),
        ([1, 2], "not a JSON object"),
    ]:
        with pytest.raises(DataError, match=message):
            read_adapter_config(_write(tmp_path, bad), LLAMA)
    with pytest.raises(DataError, match="adapter config file not found"):
        read_adapter_config(tmp_path / "missing.json", LLAMA)
    (tmp_path / "broken.json").write_text('{"target_modules": [')
    with pytest.raises(DataError, match="invalid JSON"):
        read_adapter_config(tmp_path / "broken.json", LLAMA)


def test_profile_prior_takes_the_targets(tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.json"
    code = run_cli(["profile", "prior", "--hf-config", "qwen2.5-7b", "--gpu", "h100-64gb",
                    "--calibrate-on", "llama-3.1-8b-instruct", "--target-modules",
                    "q_proj,v_proj", "-o", str(out)])
    assert code == 0
    prof = json.loads(out.read_text())
    assert prof["fit_report"]["prior"]["adapter_targets"].startswith("q_proj,v_proj")
    assert "adapter targets" in capsys.readouterr().out
    code = run_cli(["profile", "prior", "--hf-config", "qwen2.5-7b", "--gpu", "h100-64gb",
                    "--target-modules", "q_proj", "--adapter-config", "a.json",
                    "-o", str(tmp_path / "q.json")])
    captured = capsys.readouterr()
    assert code != 0 and "not both" in captured.out + captured.err
    assert not (tmp_path / "q.json").exists()
