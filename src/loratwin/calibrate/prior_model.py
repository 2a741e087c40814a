"""Transformer shapes of a model from its Hugging Face ``config.json``, as vLLM lays it out.

:class:`ModelSpec` holds the numbers the physics prior needs (layers, hidden size, heads, KV
heads, head dim, MLP size, vocabulary, tied embeddings) and the architecture facts that
change vLLM's memory and kernels: a gated MLP (``gate_up_proj``) or a plain one (OPT's
``fc1``/``fc2``), biases, extra norms, learned positions, and whether vLLM 0.8.5 wraps the
embeddings with LoRA (``embedding_modules`` of the model class in
``vllm/model_executor/models/<arch>.py``). :class:`Shard` gives the per-GPU sizes under
tensor parallelism (column/row-parallel layers, vocabulary-parallel embeddings, KV heads
split or replicated as in ``vllm/model_executor/layers/linear.py`` ``QKVParallelLinear``).

Bundled configs live in ``loratwin/data/models/<name>.json`` (config.json numbers, with their
source); ``--hf-config`` also takes a user's ``config.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from loratwin.configfile import read_json_object
from loratwin.errors import ConfigError, DataError

_MODELS = ("data", "models")

#: Architecture facts of the model classes the prior knows (vLLM 0.8.5).
#: gated: MLP is gate_up_proj + down_proj; lora_embeddings: vLLM wraps embed_tokens and the
#: logits processor with LoRA (``embedding_modules`` non-empty); qkv_bias / linear_bias:
#: biases of qkv_proj only / of every linear layer; norms: norm weight vectors per layer;
#: norm_bias: LayerNorm with bias; qk_norm: per-head q/k RMSNorm; learned_positions: rows of
#: the learned position table beyond max_position_embeddings (OPT: offset 2), -1 = RoPE.
_ARCHITECTURES: dict[str, dict[str, Any]] = {
    "LlamaForCausalLM": dict(gated=True, lora_embeddings=True, qkv_bias=False,
                             linear_bias=False, norms=2, norm_bias=False, qk_norm=False,
                             learned_positions=-1, lora=True),
    "MistralForCausalLM": dict(gated=True, lora_embeddings=True, qkv_bias=False,
                               linear_bias=False, norms=2, norm_bias=False, qk_norm=False,
                               learned_positions=-1, lora=True),
    "Qwen2ForCausalLM": dict(gated=True, lora_embeddings=False, qkv_bias=True,
                             linear_bias=False, norms=2, norm_bias=False, qk_norm=False,
                             learned_positions=-1, lora=True),
    "Qwen3ForCausalLM": dict(gated=True, lora_embeddings=False, qkv_bias=False,
                             linear_bias=False, norms=2, norm_bias=False, qk_norm=True,
                             learned_positions=-1, lora=True),
    "Gemma2ForCausalLM": dict(gated=True, lora_embeddings=False, qkv_bias=False,
                              linear_bias=False, norms=4, norm_bias=False, qk_norm=False,
                              learned_positions=-1, lora=True),
    "OPTForCausalLM": dict(gated=False, lora_embeddings=False, qkv_bias=True,
                           linear_bias=True, norms=2, norm_bias=True, qk_norm=False,
                           learned_positions=2, lora=False),
}

#: Bytes per element of the ``--dtype`` values the prior accepts.
DTYPE_BYTES: dict[str, int] = {"bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "half": 2}


class ModelSpec(BaseModel):
    """The shapes of one model (whole model, not per GPU); sizes in elements.

    Raises
    ------
    pydantic.ValidationError
        On a negative or missing size (the parser raises :class:`ConfigError` first).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    hf_model_id: str
    architecture: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    gated: bool
    lora_embeddings: bool
    qkv_bias: bool
    linear_bias: bool
    norms: int
    norm_bias: bool
    qk_norm: bool
    learned_positions: int
    lora_supported: bool
    dtype: str
    sampling_penalties: bool = False
    source: str = ""

    @property
    def q_size(self) -> int:
        """Query projection width, heads x head_dim."""
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Key (or value) projection width, KV heads x head_dim."""
        return self.num_kv_heads * self.head_dim

    @property
    def dtype_bytes(self) -> int:
        """Bytes per weight and KV element."""
        return DTYPE_BYTES[self.dtype]


def _need(cfg: dict[str, Any], keys: tuple[str, ...], where: str) -> int:
    for k in keys:
        v = cfg.get(k)
        if v is not None:
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"{where}: {k} must be a positive integer, got {v!r}")
            return v
    raise ConfigError(f"{where}: missing field {keys[0]} (a config.json of a decoder model)")


def has_sampling_penalties(generation_config: dict[str, Any]) -> bool:
    """Whether a ``generation_config.json`` makes vLLM apply sampling penalties by default.

    vLLM 0.8.5 takes ``repetition_penalty`` (and the other sampling defaults) from the
    model's generation config (``--generation-config auto``, ``ModelConfig.
    get_diff_sampling_param``); a request that does not set it, like the benchmark's, then
    runs the penalty kernels of ``vllm/v1/sample/ops/penalties.py`` every step.
    """
    rep = generation_config.get("repetition_penalty")
    freq = generation_config.get("frequency_penalty")
    pres = generation_config.get("presence_penalty")
    return any(isinstance(v, int | float) and float(v) != neutral
               for v, neutral in ((rep, 1.0), (freq, 0.0), (pres, 0.0)))


def model_spec_from_config(
    cfg: dict[str, Any], name: str, *, dtype: str | None = None, where: str = "config.json",
    generation_config: dict[str, Any] | None = None,
) -> ModelSpec:
    """A :class:`ModelSpec` from the dictionary of a Hugging Face ``config.json``.

    Parameters
    ----------
    cfg:
        The parsed ``config.json`` (``architectures``, ``hidden_size``, ``num_hidden_layers``,
        ``num_attention_heads``, ``num_key_value_heads``, ``head_dim``, ``intermediate_size``
        or ``ffn_dim``, ``vocab_size``, ``max_position_embeddings``, ``tie_word_embeddings``,
        ``torch_dtype``).
    name:
        Name given to the model in the profile.
    dtype:
        ``--dtype`` (``bf16``/``fp16``); ``None`` takes ``torch_dtype`` (float32 checkpoints
        are served in float16 by vLLM, as for OPT).
    where:
        File name used in error messages.
    generation_config:
        The model's ``generation_config.json`` (sampling defaults); default: the bundled
        config's copy, else none.

    Raises
    ------
    ConfigError
        Missing or non-positive fields, an architecture the prior does not know, an
        unsupported dtype.
    """
    archs = cfg.get("architectures")
    if not isinstance(archs, list) or not archs:
        raise ConfigError(f"{where}: architectures must be a non-empty list, got {archs!r}")
    arch = archs[0]
    if arch not in _ARCHITECTURES:
        known = ", ".join(sorted(_ARCHITECTURES))
        raise ConfigError(f"{where}: architecture {arch!r} is not supported (known: {known})")
    facts = _ARCHITECTURES[arch]
    hidden = _need(cfg, ("hidden_size",), where)
    heads = _need(cfg, ("num_attention_heads",), where)
    kv_heads = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or (hidden // heads if hidden % heads == 0 else 0)
    if not isinstance(kv_heads, int) or kv_heads <= 0 or heads % kv_heads:
        raise ConfigError(f"{where}: num_key_value_heads ({kv_heads}) must divide "
                          f"num_attention_heads ({heads})")
    if not isinstance(head_dim, int) or head_dim <= 0:
        raise ConfigError(f"{where}: missing field head_dim (hidden_size is not a multiple "
                          "of num_attention_heads)")
    if arch == "OPTForCausalLM" and cfg.get("word_embed_proj_dim", hidden) != hidden:
        raise ConfigError(f"{where}: OPT with word_embed_proj_dim != hidden_size is not "
                          "supported")
    chosen = dtype if dtype is not None else _checkpoint_dtype(cfg)
    if chosen not in DTYPE_BYTES:
        raise ConfigError(f"dtype {chosen!r} is not supported (known: bf16, fp16)",
                          field="--dtype")
    meta = cfg.get("_loratwin", {})
    ids = meta.get("hf_model_ids") or [cfg.get("_name_or_path") or name]
    gen = generation_config if generation_config is not None else meta.get(
        "generation_config", {})
    if not isinstance(gen, dict):
        raise ConfigError("generation config: not a JSON object", field="--generation-config")
    tie = cfg.get("tie_word_embeddings", arch in ("OPTForCausalLM", "Gemma2ForCausalLM"))
    if not isinstance(tie, bool):
        raise ConfigError(f"{where}: tie_word_embeddings must be true or false, got {tie!r}")
    return ModelSpec(
        name=name,
        hf_model_id=str(ids[0]),
        architecture=arch,
        num_layers=_need(cfg, ("num_hidden_layers",), where),
        hidden_size=hidden,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        intermediate_size=_need(cfg, ("intermediate_size", "ffn_dim"), where),
        vocab_size=_need(cfg, ("vocab_size",), where),
        max_position_embeddings=_need(cfg, ("max_position_embeddings",), where),
        tie_word_embeddings=bool(tie),
        gated=facts["gated"],
        lora_embeddings=facts["lora_embeddings"],
        qkv_bias=facts["qkv_bias"],
        linear_bias=facts["linear_bias"],
        norms=facts["norms"],
        norm_bias=facts["norm_bias"],
        qk_norm=facts["qk_norm"],
        learned_positions=facts["learned_positions"],
        lora_supported=facts["lora"],
        dtype=_canonical_dtype(chosen),
        sampling_penalties=has_sampling_penalties(gen),
        source=str(meta.get("source", where)),
    )


def _checkpoint_dtype(cfg: dict[str, Any]) -> str:
    d = str(cfg.get("torch_dtype", "bfloat16"))
    return "fp16" if d in ("float32", "float16") else ("bf16" if d == "bfloat16" else d)


def _canonical_dtype(d: str) -> str:
    return "bf16" if DTYPE_BYTES[d] == 2 and d in ("bf16", "bfloat16") else "fp16"


# ----------------------------------------------------------------------------- loading


def _models_dir() -> Any:
    return resources.files("loratwin").joinpath(*_MODELS)


def bundled_models() -> list[str]:
    """Names of the bundled model configs (``loratwin/data/models/<name>.json``)."""
    return sorted(p.name.removesuffix(".json") for p in _models_dir().iterdir()
                  if p.name.endswith(".json"))


def _read_json(text: str, where: str) -> dict[str, Any]:
    try:
        cfg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{where}: invalid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(cfg, dict):
        raise DataError(f"{where}: not a JSON object")
    return cfg


def load_model_spec(name_or_path: str | Path, *, dtype: str | None = None,
                    generation_config: str | Path | None = None) -> ModelSpec:
    """A bundled model by name or Hugging Face id, or a user's ``config.json`` path.

    ``generation_config`` is a path to the model's ``generation_config.json`` (default: the
    bundled copy for bundled models; none for a user's file).

    Raises
    ------
    ConfigError
        Unknown name (the message lists the bundled ones), invalid fields.
    DataError
        Missing file or invalid JSON.
    """
    gen = None
    if generation_config is not None:
        gen = read_json_object(Path(generation_config), "generation config",
                               field="--generation-config")
    text = str(name_or_path)
    path = Path(text)
    if path.suffix == ".json" or path.exists():
        cfg = read_json_object(path, "config", field="--hf-config")
        stem = cfg.get("_loratwin", {}).get("name") or path.parent.name or path.stem
        name = stem if path.name == "config.json" else path.stem
        return model_spec_from_config(cfg, str(name), dtype=dtype, where=str(path),
                                      generation_config=gen)
    bundled = bundled_model_name(text)
    if bundled is None:
        raise ConfigError(f"unknown model {text!r} (bundled: {', '.join(bundled_models())}; "
                          "or give the path of a config.json)", field="--hf-config")
    res = _models_dir().joinpath(f"{bundled}.json")
    cfg = _read_json(res.read_text(), f"{bundled}.json")
    return model_spec_from_config(cfg, bundled, dtype=dtype, where=f"{bundled}.json",
                                  generation_config=gen)


def bundled_model_name(name_or_id: str) -> str | None:
    """The bundled config for a name or a Hugging Face id (case-insensitive), or ``None``."""
    key = name_or_id.lower()
    for name in bundled_models():
        if key == name:
            return name
        cfg = json.loads(_models_dir().joinpath(f"{name}.json").read_text())
        ids = [i.lower() for i in cfg.get("_loratwin", {}).get("hf_model_ids", [])]
        if key in ids or key in (i.split("/")[-1] for i in ids):
            return name
    return None


# ----------------------------------------------------------------------------- TP shards


@dataclass(frozen=True)
class Shard:
    """Per-GPU sizes of a model under tensor parallelism ``tp`` (elements).

    Column-parallel layers (qkv, gate_up / fc1) split their outputs, row-parallel ones (o,
    down / fc2) their inputs; KV heads are split when ``num_kv_heads >= tp`` and otherwise
    replicated (one per GPU), as ``QKVParallelLinear`` does; the vocabulary is split by the
    vocabulary-parallel embedding and LM head.
    """

    spec: ModelSpec
    tp: int

    @staticmethod
    def of(spec: ModelSpec, tp: int) -> Shard:
        """Validate ``tp`` against the model (vLLM's rules) and return the shard.

        Raises
        ------
        ConfigError
            ``tp`` < 1, ``num_attention_heads`` not divisible by ``tp``, or KV heads that
            neither divide by ``tp`` nor divide it.
        """
        if tp < 1:
            raise ConfigError(f"must be >= 1, got {tp}", field="--tp")
        if spec.num_heads % tp:
            raise ConfigError(f"tp {tp} does not divide the {spec.num_heads} attention heads "
                              f"of {spec.name}", field="--tp")
        kv = spec.num_kv_heads
        if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
            raise ConfigError(f"tp {tp} and the {kv} KV heads of {spec.name} neither divide "
                              "the other", field="--tp")
        if spec.intermediate_size % tp:
            raise ConfigError(f"tp {tp} does not divide intermediate_size "
                              f"{spec.intermediate_size} of {spec.name}", field="--tp")
        return Shard(spec, tp)

    @property
    def heads(self) -> int:
        """Query heads on one GPU."""
        return self.spec.num_heads // self.tp

    @property
    def kv_heads(self) -> int:
        """KV heads held by one GPU (split, or one replicated head)."""
        return max(self.spec.num_kv_heads // self.tp, 1)

    @property
    def q_size(self) -> int:
        """Query width on one GPU."""
        return self.heads * self.spec.head_dim

    @property
    def kv_size(self) -> int:
        """Key (or value) width on one GPU."""
        return self.kv_heads * self.spec.head_dim

    @property
    def intermediate(self) -> int:
        """MLP width on one GPU."""
        return self.spec.intermediate_size // self.tp

    def linear_params_per_layer(self) -> int:
        """Weight elements of one layer's linear layers on one GPU (no biases)."""
        h = self.spec.hidden_size
        mlp_out = 2 * self.intermediate if self.spec.gated else self.intermediate
        return h * (self.q_size + 2 * self.kv_size) + self.q_size * h + h * mlp_out \
            + self.intermediate * h

    def kv_bytes_per_token(self, kv_dtype_bytes: int | None = None) -> int:
        """KV cache bytes of one token over all layers on one GPU (K and V)."""
        b = kv_dtype_bytes or self.spec.dtype_bytes
        return 2 * self.spec.num_layers * self.kv_size * b


__all__ = [
    "DTYPE_BYTES",
    "ModelSpec",
    "Shard",
    "bundled_model_name",
    "bundled_models",
    "has_sampling_penalties",
    "load_model_spec",
    "model_spec_from_config",
]
