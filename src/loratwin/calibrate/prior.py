"""Profiles for models and GPUs nobody measured: a physics prior (``loratwin profile prior``).

A prior profile is a :class:`~loratwin.profile.model.Profile` like the measured ones, built
from a model's ``config.json`` (:mod:`.prior_model`) and a GPU datasheet (:mod:`.prior_gpu`):

* step costs: a roofline of each step mapped onto the twin's step-cost coefficients
  (:mod:`.prior_roofline`);
* KV capacity per (``max_loras``, ``max_lora_rank``) and vLLM's start-up failures from
  memory arithmetic (:mod:`.prior_memory`);
* adapter load times from adapter bytes and host-device bandwidth (:mod:`.prior_loads`);
* tensor parallelism as the split of weights, KV heads and bandwidth plus all-reduces.

The efficiency factors and host constants are fitted once on measured profiles
(:func:`calibrate`, :mod:`.prior_fit`), shared across models, never per model; a
:class:`PriorCalibration` then builds any number of (model, GPU, tp) profiles in
well under a second each (:func:`build_prior`). Every prior profile has
``profile_kind == "prior"`` and every output made from it says "estimated".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict

from loratwin.calibrate.prior_fit import CalibrationSource, fit_efficiency, fit_memory_constants
from loratwin.calibrate.prior_gpu import GpuSpec
from loratwin.calibrate.prior_label import (
    ESTIMATED,
    estimated_note,
    estimated_prefix,
    is_estimated,
)
from loratwin.calibrate.prior_loads import LoadConstants, build_load_model, fit_load_constants
from loratwin.calibrate.prior_memory import MemoryConstants, build_kv_model, weights_bytes
from loratwin.calibrate.prior_model import ModelSpec, Shard
from loratwin.calibrate.prior_roofline import Efficiency, step_coefficients
from loratwin.calibrate.prior_targets import AdapterTargets, all_linear
from loratwin.errors import ConfigError
from loratwin.profile.model import GIB, Architecture, Profile
from loratwin.profile.store import bundled_profiles, load_profile


class PriorCalibration(BaseModel):
    """The shared constants of the prior, fitted on ``calibrated_on`` (see :func:`calibrate`).

    ``sharegpt_*`` are the calibration profiles' mean ShareGPT request lengths (tokens):
    tokenizer-dependent, they only set the default lengths of ``simulate``.
    """

    model_config = ConfigDict(frozen=True)

    calibrated_on: tuple[str, ...]
    vllm_version: str
    efficiency: Efficiency
    memory: MemoryConstants
    loads: LoadConstants
    sharegpt_mean_input_tokens: float
    sharegpt_mean_output_tokens: float
    sharegpt_std_input_tokens: float
    sharegpt_std_output_tokens: float
    reports: dict[str, dict[str, float | int | str]]


def default_calibration_profiles() -> list[Profile]:
    """Every bundled measured profile (the default of ``--calibrate-on``)."""
    profiles = [load_profile(n) for n in bundled_profiles()]
    return [p for p in profiles if p.profile_kind == "measured"]


def calibrate(profiles: Sequence[Profile]) -> PriorCalibration:
    """Fit the prior's efficiency factors and host constants on measured profiles.

    Parameters
    ----------
    profiles:
        Measured (or collected) profiles of models in the bundled config table, on GPUs of
        the GPU table, all of one vLLM version.

    Raises
    ------
    ConfigError
        No profile, a prior among them, an unknown model or GPU, mixed vLLM versions.
    """
    if not profiles:
        raise ConfigError("no profile to calibrate on", field="--calibrate-on")
    versions = {p.vllm_version for p in profiles}
    if len(versions) > 1:
        raise ConfigError(f"profiles of different vLLM versions ({', '.join(sorted(versions))})",
                          field="--calibrate-on")
    sources = [CalibrationSource.of(p) for p in profiles]
    eff, step_report = fit_efficiency(sources)
    mem, mem_report = fit_memory_constants(sources)
    loads, load_report = fit_load_constants([(s.shard, s.gpu, s.profile.loads) for s in sources])

    def mean(attr: str) -> float:
        return float(np.mean([getattr(p, attr) for p in profiles]))

    return PriorCalibration(
        calibrated_on=tuple(p.name for p in profiles),
        vllm_version=versions.pop(),
        efficiency=eff,
        memory=mem,
        loads=loads,
        sharegpt_mean_input_tokens=mean("sharegpt_mean_input_tokens"),
        sharegpt_mean_output_tokens=mean("sharegpt_mean_output_tokens"),
        sharegpt_std_input_tokens=mean("sharegpt_std_input_tokens"),
        sharegpt_std_output_tokens=mean("sharegpt_std_output_tokens"),
        reports={"step_fit": step_report, "memory_fit": mem_report, "load_fit": load_report},
    )


def prior_name(spec: ModelSpec, gpu: GpuSpec, tp: int) -> str:
    """Default profile name: ``<model>-<gpu>[-tp<N>]-prior``."""
    return f"{spec.name}-{gpu.name}{f'-tp{tp}' if tp > 1 else ''}-prior"


def build_prior(
    spec: ModelSpec,
    gpu: GpuSpec,
    calibration: PriorCalibration,
    *,
    tp: int = 1,
    vllm_version: str | None = None,
    name: str | None = None,
    targets: AdapterTargets | None = None,
) -> Profile:
    """The estimated profile of ``spec`` on ``tp`` GPUs ``gpu`` (one GPU's view).

    Parameters
    ----------
    spec, gpu:
        Model shapes and GPU datasheet.
    calibration:
        Shared constants (:func:`calibrate`).
    tp:
        Tensor-parallel size (``--tensor-parallel-size``).
    vllm_version:
        Version recorded in the profile; default: the calibration profiles' version (the
        step and memory constants are theirs in any case).
    name:
        Profile name; default :func:`prior_name`.
    targets:
        The modules the user's adapters adapt (:mod:`.prior_targets`), which set the adapter
        load times; default every linear layer.

    Raises
    ------
    ConfigError
        ``tp`` does not split the model (heads, KV heads, MLP).
    """
    shard = Shard.of(spec, tp)
    eff = calibration.efficiency
    max_model_len = spec.max_position_embeddings
    arch = Architecture(
        num_layers=spec.num_layers, hidden_size=spec.hidden_size, q_size=shard.q_size,
        kv_size=shard.kv_size, intermediate_size=shard.intermediate,
        vocab_size=spec.vocab_size, kv_bytes_per_token=shard.kv_bytes_per_token(),
    )
    gpu_text = gpu.display_name if tp == 1 else f"{tp}x {gpu.display_name}, tensor parallel"
    report: dict[str, dict[str, float | int | str]] = {
        "prior": {
            "kind": ESTIMATED,
            "model": spec.name,
            "model_source": spec.source,
            "gpu": gpu.name,
            "tp": tp,
            "dtype": spec.dtype,
            "weights_gib": weights_bytes(shard, False) / GIB,
            "sampling_penalties": str(spec.sampling_penalties).lower(),
            "calibrated_on": ", ".join(calibration.calibrated_on),
            "lora_supported_by_vllm": str(spec.lora_supported).lower(),
            "adapter_targets": (targets or all_linear(spec)).label(spec),
        },
        "prior_efficiency": dict(eff.model_dump()),
        "prior_memory": dict(calibration.memory.model_dump()),
        "prior_loads": dict(calibration.loads.model_dump()),
        **{f"prior_{k}": v for k, v in calibration.reports.items()},
    }
    return Profile(
        name=name or prior_name(spec, gpu, tp),
        hf_model_name=spec.hf_model_id,
        gpu=f"{gpu_text} ({ESTIMATED} from the datasheet)",
        gpu_total_memory_gib=gpu.memory_total_gib,
        gpu_memory_utilization_measured=0.9,
        max_model_len=max_model_len,
        arch=arch,
        step=step_coefficients(shard, gpu, eff),
        loads=build_load_model(shard, gpu, calibration.loads, targets),
        kv=build_kv_model(shard, gpu, calibration.memory, max_model_len=max_model_len),
        frontend_latency_s=eff.frontend_latency_s,
        sharegpt_mean_input_tokens=calibration.sharegpt_mean_input_tokens,
        sharegpt_mean_output_tokens=calibration.sharegpt_mean_output_tokens,
        sharegpt_std_input_tokens=calibration.sharegpt_std_input_tokens,
        sharegpt_std_output_tokens=calibration.sharegpt_std_output_tokens,
        source=(
            f"{ESTIMATED}: physics prior of {spec.name} ({spec.source}) on {gpu_text} "
            f"(datasheet figures of loratwin/data/gpus.yaml), efficiency factors fitted on "
            f"{', '.join(calibration.calibrated_on)} by `loratwin profile prior`"
        ),
        fit_report=report,
        vllm_version=vllm_version or calibration.vllm_version,
        profile_kind="prior",
    )


__all__ = [
    "ESTIMATED",
    "PriorCalibration",
    "build_prior",
    "calibrate",
    "default_calibration_profiles",
    "estimated_note",
    "estimated_prefix",
    "is_estimated",
    "prior_name",
]
