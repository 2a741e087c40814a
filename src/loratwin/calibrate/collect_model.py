"""What a campaign needs to know about the served model, its adapters and its server command.

* :func:`model_shapes` reads a Hugging Face ``config.json`` (Llama / Qwen2 / Mistral style
  keys) into the layer shapes of :class:`~loratwin.profile.model.Architecture` and the KV
  bytes per token (2 x layers x KV heads x head dim x dtype bytes);
* :func:`adapter_rank` reads a peft ``adapter_config.json`` (``r``);
* :func:`served_model` finds the model folder of a ``vllm serve`` command line, and
  :func:`adapter_paths` its ``--lora-modules`` (``name=path`` or vLLM's JSON form);
* :func:`server_argv` turns the user's command into the command of one campaign server.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from loratwin.calibrate.collect_plan import ServerSpec
from loratwin.configfile import read_json_object
from loratwin.errors import ConfigError, DataError
from loratwin.live.launcher import flag_value, set_flags

_DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "half": 2, "float32": 4, "float": 4}
#: LoRA flags the campaign sets on every server it starts.
LORA_FLAGS = ("--enable-lora", "--max-loras", "--max-cpu-loras", "--max-lora-rank",
              "--lora-modules")


def model_shapes(config_json: Path) -> tuple[dict[str, int], int]:
    """(layer shapes, KV bytes per token) of a model from its ``config.json``.

    Raises
    ------
    DataError
        Missing file, invalid JSON or a missing size key.
    """
    cfg = read_json_object(config_json, "config")
    cfg = cfg.get("text_config", cfg)
    try:
        hidden = int(cfg["hidden_size"])
        heads = int(cfg["num_attention_heads"])
        head_dim = int(cfg.get("head_dim") or hidden // heads)
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        layers = int(cfg["num_hidden_layers"])
        shapes = {
            "num_layers": layers, "hidden_size": hidden, "q_size": heads * head_dim,
            "kv_size": kv_heads * head_dim, "intermediate_size": int(cfg["intermediate_size"]),
            "vocab_size": int(cfg["vocab_size"]),
        }
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{config_json}: missing or invalid size key ({exc})") from None
    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    kv_bytes = 2 * layers * kv_heads * head_dim * _DTYPE_BYTES.get(dtype, 2)
    return shapes, kv_bytes


def adapter_rank(path: Path) -> int:
    """The LoRA rank ``r`` of a peft adapter folder.

    Raises
    ------
    DataError
        No readable ``adapter_config.json`` with an integer ``r``.
    """
    cfg = read_json_object(Path(path) / "adapter_config.json", "adapter config")
    try:
        return int(cfg["r"])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{path}/adapter_config.json: no integer 'r'") from None


def served_model(argv: Sequence[str]) -> str:
    """The model of a ``vllm serve MODEL ...`` command (positional, or ``--model``).

    Raises
    ------
    ConfigError
        No model in the command.
    """
    model = flag_value(argv, "--model")
    if isinstance(model, str) and model:
        return model
    words = list(argv)
    if "serve" in words:
        i = words.index("serve") + 1
        if i < len(words) and not words[i].startswith("-"):
            return words[i]
    raise ConfigError("no model in the command (vllm serve MODEL ...)", field="launch")


def adapter_paths(argv: Sequence[str]) -> dict[str, Path]:
    """``--lora-modules`` of a command line: name -> path (``name=path`` or JSON objects)."""
    words = flag_value(argv, "--lora-modules")
    out: dict[str, Path] = {}
    for w in words if isinstance(words, list) else []:
        if w.startswith("{"):
            try:
                obj = json.loads(w)
                out[str(obj["name"])] = Path(obj["path"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ConfigError(f"--lora-modules: cannot read {w!r}", field="launch") from None
        elif "=" in w:
            name, path = w.split("=", 1)
            out[name] = Path(path)
        else:
            raise ConfigError(f"--lora-modules: expected name=path, got {w!r}", field="launch")
    return out


def server_argv(base: Sequence[str], spec: ServerSpec, paths_by_rank: dict[int, Path]
                ) -> list[str]:
    """The user's command with the LoRA flags of one campaign server.

    Raises
    ------
    ConfigError
        The server needs an adapter rank no ``--lora-modules`` entry has.
    """
    if not spec.enable_lora:
        return set_flags(base, dict.fromkeys(LORA_FLAGS))
    modules = []
    for name, rank in zip(spec.adapter_names, spec.adapter_ranks, strict=True):
        if rank not in paths_by_rank:
            raise ConfigError(f"no adapter of rank {rank} in --lora-modules", field="launch")
        modules.append(f"{name}={paths_by_rank[rank]}")
    return set_flags(base, {
        "--enable-lora": True, "--max-loras": str(spec.max_loras),
        "--max-cpu-loras": str(spec.max_cpu_loras), "--max-lora-rank": str(spec.max_lora_rank),
        "--lora-modules": modules,
    })
