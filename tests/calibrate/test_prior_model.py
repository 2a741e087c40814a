"""Model configs and GPU table: parsing, tensor-parallel shards, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratwin.calibrate.prior_gpu import bundled_gpus, gpu_of_profile, load_gpu
from loratwin.calibrate.prior_model import (
    Shard,
    bundled_model_name,
    bundled_models,
    load_model_spec,
    model_spec_from_config,
)
from loratwin.errors import ConfigError, DataError

REQUIRED_GPUS = {"h100-sxm-80gb", "h100-64gb", "h200", "a100-80gb", "l40s", "b200"}
REQUIRED_MODELS = {"llama-3.1-8b", "qwen2.5-7b", "qwen3-8b", "mistral-7b", "gemma-2-9b",
                   "llama-3.1-70b", "opt-1.3b", "opt-2.7b", "llama-2-7b"}


def test_bundled_tables_cover_the_required_entries_with_sources() -> None:
    assert set(bundled_gpus()) >= REQUIRED_GPUS
    assert set(bundled_models()) >= REQUIRED_MODELS
    for name in bundled_gpus():
        gpu = load_gpu(name)
        numeric = {"memory_total_gib", "memory_gb", "hbm_bandwidth_gb_s", "bf16_dense_tflops",
                   "pcie_gb_s", "nvlink_gb_s"}
        assert numeric <= set(gpu.sources), name
    for name in bundled_models():
        assert "Hugging Face" in load_model_spec(name).source


def test_config_numbers_of_two_models() -> None:
    q = load_model_spec("qwen2.5-7b")
    assert (q.num_layers, q.hidden_size, q.num_heads, q.num_kv_heads, q.head_dim) == (
        28, 3584, 28, 4, 128)
    assert q.qkv_bias and not q.lora_embeddings and q.dtype == "bf16"
    opt = load_model_spec("opt-1.3b")
    assert not opt.gated and opt.tie_word_embeddings and opt.dtype == "fp16"
    assert opt.intermediate_size == 8192  # ffn_dim


def test_hf_ids_and_user_files(tmp_path: Path) -> None:
    assert bundled_model_name("meta-llama/Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert bundled_model_name("Qwen2.5-7B-Instruct") == "qwen2.5-7b"
    cfg = json.loads((Path(__file__).parents[2] / "src/loratwin/data/models/qwen3-8b.json")
                     .read_text())
    cfg.pop("_loratwin")
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(cfg))
    spec = load_model_spec(folder / "config.json")
    assert spec.name == "my-model" and spec.num_layers == 36 and spec.qk_norm


@pytest.mark.parametrize("cfg, message", [
    ({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096},
     "missing field num_attention_heads"),
    ({"architectures": ["FooForCausalLM"], "hidden_size": 4096}, "is not supported"),
    ({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096, "num_attention_heads": 32,
      "num_key_value_heads": 5, "num_hidden_layers": 2, "intermediate_size": 8,
      "vocab_size": 10, "max_position_embeddings": 8}, "must divide"),
    ({"architectures": ["LlamaForCausalLM"], "hidden_size": -1, "num_attention_heads": 32},
     "positive integer"),
])
def test_bad_configs_raise_one_line_config_errors(cfg: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        model_spec_from_config(cfg, "x")
    assert "\n" not in str(err.value)


def test_unknown_names_list_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="h100-sxm-80gb"):
        load_gpu("h100-80")
    with pytest.raises(ConfigError, match="qwen3-8b"):
        load_model_spec("no-such-model")
    with pytest.raises(DataError, match="not found"):
        load_model_spec(tmp_path / "config.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match="invalid JSON"):
        load_model_spec(bad)
    with pytest.raises(ConfigError, match="dtype"):
        load_model_spec("qwen3-8b", dtype="int4")


def test_tensor_parallel_shards_follow_vllm() -> None:
    llama70 = load_model_spec("llama-3.1-70b")
    s = Shard.of(llama70, 8)
    assert (s.heads, s.kv_heads, s.intermediate) == (8, 1, 3584)
    s16 = Shard.of(load_model_spec("qwen2.5-7b"), 4)
    assert s16.kv_heads == 1  # 4 KV heads over 4 GPUs
    with pytest.raises(ConfigError, match="does not divide the 28 attention heads"):
        Shard.of(load_model_spec("qwen2.5-7b"), 8)
    with pytest.raises(ConfigError, match="--tp"):
        Shard.of(llama70, 0)
    one = Shard.of(llama70, 1)
    assert s.kv_bytes_per_token() * 8 == one.kv_bytes_per_token()


def test_measured_profiles_map_to_the_measured_gpu() -> None:
    assert gpu_of_profile("NVIDIA H100 64 GB (MareNostrum 5 accelerated partition)").name \
        == "h100-64gb"
    with pytest.raises(ConfigError, match="not in the GPU table"):
        gpu_of_profile("Some TPU")
