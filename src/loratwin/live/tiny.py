"""A tiny random Llama and LoRA adapters for it, built offline (tests and demos).

:func:`build_tiny_model` writes, without downloading anything,

* ``base/``: a randomly initialised ``LlamaForCausalLM`` (transformers) with a byte-level BPE
  tokenizer trained by the ``tokenizers`` library on a few strings and padded with added
  tokens to the model's vocabulary size (``PreTrainedTokenizerFast``);
* ``lora-r<R>/``: one LoRA adapter per rank (peft, ``init_lora_weights=False`` so that the
  adapters change the output), on every projection vLLM applies LoRA to.

vLLM serves it like any Llama (``vllm serve DIR/base --enable-lora --lora-modules
a=DIR/lora-r8``). It needs the ``[vllm]`` extra (transformers, tokenizers, peft, torch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Modules of a Llama layer that vLLM's LoRA supports (qkv, o, gate/up, down).
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_CORPUS = (
    "hello world", "the quick brown fox jumps over the lazy dog",
    "many lora adapters on one vllm server", "tokens per second and time to first token",
)


@dataclass(frozen=True)
class TinyModel:
    """Paths of a built tiny model: the base model folder and one adapter folder per rank."""

    base: Path
    adapters: dict[int, Path]
    max_model_len: int


def build_tiny_model(
    out_dir: Path,
    *,
    ranks: Sequence[int] = (8, 16),
    hidden_size: int = 128,
    num_layers: int = 2,
    vocab_size: int = 512,
    max_model_len: int = 2048,
    seed: int = 0,
) -> TinyModel:
    """Build the base model and one adapter per rank under ``out_dir`` (see module docstring).

    Weights are drawn from ``torch.manual_seed(seed)``, so a seed gives the same files'
    contents. ``vocab_size`` must exceed the trained BPE vocabulary (about 300 tokens).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=min(300, vocab_size), special_tokens=["<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.add_tokens([f"<extra_{i}>" for i in range(vocab_size - len(fast))])
    cfg = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=max_model_len, bos_token_id=0, eos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    base = out_dir / "base"
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(base)
    fast.save_pretrained(base)
    adapters: dict[int, Path] = {}
    for rank in ranks:
        torch.manual_seed(seed + rank)
        peft_model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(
            r=rank, lora_alpha=2 * rank, target_modules=list(TARGET_MODULES),
            init_lora_weights=False,
        ))
        path = out_dir / f"lora-r{rank}"
        peft_model.save_pretrained(path)
        adapters[rank] = path
    return TinyModel(base, adapters, max_model_len)
