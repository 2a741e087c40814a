"""loratwin's reading of ``target_modules`` agrees with what PEFT itself adapts.

A tiny random Llama is wrapped by PEFT with several ``target_modules`` forms; the modules
PEFT gives a LoRA A are the (layer, module) pairs :func:`resolve_targets` and
:func:`read_adapter_config` (on the ``adapter_config.json`` PEFT writes) count.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loratwin.calibrate.prior_model import model_spec_from_config
from loratwin.calibrate.prior_targets import read_adapter_config, resolve_targets

CASES = [
    (["q_proj", "v_proj"], None),
    ("all-linear", None),
    (r"model\.layers\.(0|2)\.(self_attn\.(q|k)_proj|mlp\.down_proj)", None),
    (["o_proj", "mlp.gate_proj"], [1, 3]),
]


@pytest.mark.parametrize(("target", "layers"), CASES)
def test_peft_adapts_the_pairs_loratwin_counts(tmp_path: Path, target: object,
                                               layers: list[int] | None) -> None:
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    config = transformers.LlamaConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128, max_position_embeddings=256,
        architectures=["LlamaForCausalLM"])
    model = transformers.LlamaForCausalLM(config)
    lora = peft.LoraConfig(r=4, target_modules=target, layers_to_transform=layers)
    wrapped = peft.get_peft_model(model, lora)
    adapted = sorted(
        (int(name.split(".layers.")[1].split(".")[0]), name.split(".")[-3])
        for name, _ in wrapped.named_modules() if name.endswith(".lora_A.default"))
    spec = model_spec_from_config(config.to_dict(), "tiny-llama")
    ours = resolve_targets(spec, target, layers)  # type: ignore[arg-type]
    assert sorted(ours.pairs) == adapted
    wrapped.save_pretrained(tmp_path)
    assert sorted(read_adapter_config(tmp_path / "adapter_config.json", spec).pairs) == adapted
