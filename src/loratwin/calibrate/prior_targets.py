"""Which linear layers the user's LoRA adapters adapt (PEFT's ``target_modules``), and their shapes.

vLLM wraps every LoRA-capable linear layer of the model whatever an adapter adapts
(``supported_lora_modules`` / ``packed_modules_mapping`` of the model class), so the slot
buffers, the KV capacity and the LoRA kernels do not depend on the adapters' targets. The
adapter *loads* do: ``activate_adapter`` copies A and B only of the slices an adapter has and
fills the others with zeros (``vllm/lora/models.py``, ``vllm/lora/layers.py`` of 0.8.5), and
the adapter file holds only the adapted tensors. :class:`AdapterTargets` says which slices of
which layers an adapter has; the load model of :mod:`.prior_loads` counts from it.

The matching rules are PEFT's (``peft/tuners/tuners_utils.py`` ``check_target_module_exists``
and ``INCLUDE_LINEAR_LAYERS_SHORTHAND``): a list entry matches a module whose name equals it or
ends with ``"." + entry``; a string is a regular expression that must match a module's whole
name; ``"all-linear"`` is every linear layer but the LM head. ``layers_to_transform`` keeps
the listed decoder layers only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from loratwin.calibrate.prior_model import ModelSpec, Shard
from loratwin.configfile import read_json_object
from loratwin.errors import ConfigError, DataError

#: The decoder layer's linear modules as Hugging Face names them, with their module path
#: inside one layer: models with a gated MLP (Llama, Mistral, Qwen2/3, Gemma-2) ...
GATED_MODULES: dict[str, str] = {
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "o_proj": "self_attn.o_proj", "gate_proj": "mlp.gate_proj", "up_proj": "mlp.up_proj",
    "down_proj": "mlp.down_proj",
}
#: ... and OPT (``OPTDecoderLayer``: ``self_attn.out_proj``, ``fc1``, ``fc2``).
OPT_MODULES: dict[str, str] = {
    "q_proj": "self_attn.q_proj", "k_proj": "self_attn.k_proj", "v_proj": "self_attn.v_proj",
    "out_proj": "self_attn.out_proj", "fc1": "fc1", "fc2": "fc2",
}
ALL_LINEAR = "all-linear"


def layer_modules(spec: ModelSpec) -> dict[str, str]:
    """Short name -> path inside one decoder layer of every LoRA-capable linear module."""
    return GATED_MODULES if spec.gated else OPT_MODULES


def module_path(spec: ModelSpec, layer: int, short: str) -> str:
    """Full module name as PEFT sees it (``model.layers.3.self_attn.q_proj``; OPT:
    ``model.decoder.layers.3.fc1``)."""
    prefix = "model.layers" if spec.gated else "model.decoder.layers"
    return f"{prefix}.{layer}.{layer_modules(spec)[short]}"


def module_dims(shard: Shard, short: str) -> tuple[int, int]:
    """(input, output) elements of the LoRA A (rank x input) and B (output x rank) of one
    module on one GPU. Column-parallel layers (q/k/v, gate/up, fc1) keep A whole and split
    B's output; row-parallel ones (o/out_proj, down_proj, fc2) split A's input and keep B
    whole (``vllm/lora/layers.py`` ``ColumnParallelLinearWithLoRA`` /
    ``RowParallelLinearWithLoRA``)."""
    h, q, kv, i = shard.spec.hidden_size, shard.q_size, shard.kv_size, shard.intermediate
    dims = {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
            "out_proj": (q, h), "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
            "fc1": (h, i), "fc2": (i, h)}
    return dims[short]


@dataclass(frozen=True)
class AdapterTargets:
    """The (decoder layer, linear module) pairs an adapter adapts.

    ``pairs``: (layer index, short module name) of every adapted module, sorted;
    ``source``: where the answer came from, for the profile's report. Each pair is one weight
    slice of vLLM's packed LoRA layers (q, k and v are the three slices of ``qkv_proj``, gate
    and up the two of ``gate_up_proj``).
    """

    pairs: tuple[tuple[int, str], ...]
    source: str = "every linear layer (assumed: no target modules given)"

    @property
    def modules(self) -> tuple[str, ...]:
        """Short names of the adapted modules, in the layer's order."""
        seen = {m for _, m in self.pairs}
        order = (*GATED_MODULES, *(m for m in OPT_MODULES if m not in GATED_MODULES))
        return tuple(m for m in order if m in seen)

    @property
    def layers(self) -> tuple[int, ...]:
        """Decoder layers with an adapted module."""
        return tuple(sorted({i for i, _ in self.pairs}))

    def label(self, spec: ModelSpec) -> str:
        """One line for reports: the modules, the layers and the source."""
        n = len(self.layers)
        layers = "all layers" if n == spec.num_layers else f"{n} of {spec.num_layers} layers"
        return f"{','.join(self.modules)} ({layers}; {self.source})"


def all_linear(spec: ModelSpec) -> AdapterTargets:
    """Every linear layer of every decoder layer (the prior's default assumption)."""
    return AdapterTargets(tuple((i, m) for i in range(spec.num_layers)
                                for m in layer_modules(spec)))


def _list_match(entries: Sequence[str], name: str) -> bool:
    return any(name == t or name.endswith("." + t) for t in entries)


def resolve_targets(spec: ModelSpec, target_modules: str | Sequence[str] | None,
                    layers_to_transform: int | Sequence[int] | None = None,
                    source: str = "--target-modules") -> AdapterTargets:
    """The :class:`AdapterTargets` of PEFT's ``target_modules`` (module docstring).

    Raises
    ------
    ConfigError
        A regular expression that does not compile, a list entry that names no linear module
        of the model's decoder layers (embeddings and the LM head are not modelled), nothing
        matched, or a layer index outside the model.
    """
    if target_modules is None and layers_to_transform is None:
        return all_linear(spec)
    layers = _layers(spec, layers_to_transform, source)
    paths = [(i, m, module_path(spec, i, m)) for i in layers for m in layer_modules(spec)]
    if target_modules is None or target_modules == ALL_LINEAR:
        pairs = [(i, m) for i, m, _ in paths]
    elif isinstance(target_modules, str):
        try:
            pattern = re.compile(target_modules)
        except re.error as exc:
            raise ConfigError(f"target_modules {target_modules!r} is not a regular "
                              f"expression ({exc})", field=source) from exc
        pairs = [(i, m) for i, m, p in paths if pattern.fullmatch(p)]
    else:
        every = [module_path(spec, i, m) for i in range(spec.num_layers)
                 for m in layer_modules(spec)]
        for t in target_modules:
            if not any(_list_match([t], p) for p in every):
                raise ConfigError(
                    f"{t!r} is not a linear layer of {spec.name}'s decoder layers (known: "
                    f"{', '.join(layer_modules(spec))}; embeddings and the LM head are not "
                    "modelled)", field=source)
        pairs = [(i, m) for i, m, p in paths if _list_match(target_modules, p)]
    if not pairs:
        raise ConfigError(f"target_modules {target_modules!r} matches no linear layer of "
                          f"{spec.name}", field=source)
    return AdapterTargets(tuple(pairs), source)


def _layers(spec: ModelSpec, layers: int | Sequence[int] | None, source: str
            ) -> tuple[int, ...]:
    if layers is None:
        return tuple(range(spec.num_layers))
    picked = (layers,) if isinstance(layers, int) else tuple(layers)
    bad = [i for i in picked
           if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < spec.num_layers]
    if bad or not picked:
        raise ConfigError(f"layers_to_transform {list(picked)} is not a set of layers 0-"
                          f"{spec.num_layers - 1} of {spec.name}", field=source)
    return tuple(sorted(set(picked)))


def read_adapter_config(path: Path, spec: ModelSpec) -> AdapterTargets:
    """The targets of a PEFT ``adapter_config.json`` (``target_modules``,
    ``layers_to_transform``).

    Raises
    ------
    DataError
        The file is missing or not a JSON object (:func:`~loratwin.configfile.read_json_object`),
        not a LoRA config, or has no ``target_modules``.
    ConfigError
        As :func:`resolve_targets`.
    """
    cfg = read_json_object(Path(path), "adapter config", field="--adapter-config")
    peft_type = cfg.get("peft_type")
    if peft_type is not None and str(peft_type).upper() != "LORA":
        raise DataError(f"{path}: peft_type {peft_type!r} is not LORA")
    target = cfg.get("target_modules")
    if target is None:
        raise DataError(f"{path}: no target_modules")
    if not isinstance(target, str) and not (
            isinstance(target, list) and target and all(isinstance(t, str) for t in target)):
        raise DataError(f"{path}: target_modules must be a string or a list of names")
    layers = cfg.get("layers_to_transform")
    if layers is not None and not isinstance(layers, int) and not (
            isinstance(layers, list) and all(isinstance(i, int) for i in layers)):
        raise DataError(f"{path}: layers_to_transform must be an integer or a list of them")
    return resolve_targets(spec, target, layers, source=str(path))


__all__ = [
    "ALL_LINEAR",
    "GATED_MODULES",
    "OPT_MODULES",
    "AdapterTargets",
    "all_linear",
    "layer_modules",
    "module_dims",
    "module_path",
    "read_adapter_config",
    "resolve_targets",
]
