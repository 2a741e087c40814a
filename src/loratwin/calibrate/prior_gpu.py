"""The bundled GPU table (``loratwin/data/gpus.yaml``): datasheet figures with their sources.

Each entry gives the device memory CUDA reports (GiB), the peak HBM bandwidth (GB/s), the
dense bf16/fp16 tensor-core throughput (TFLOP/s), the host (PCIe) and GPU-to-GPU (NVLink)
bandwidth per direction (GB/s), the SM count and boost clock, and a source for every figure.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loratwin.errors import ConfigError, DataError


class GpuSpec(BaseModel):
    """One GPU of the table (units in the field names: GiB, GB/s, TFLOP/s, GHz)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    display_name: str
    match: tuple[str, ...] = ()
    memory_total_gib: float = Field(gt=0)
    memory_gb: float = Field(gt=0)
    hbm_bandwidth_gb_s: float = Field(gt=0)
    bf16_dense_tflops: float = Field(gt=0)
    fp16_dense_tflops: float = Field(gt=0)
    pcie_gb_s: float = Field(gt=0)
    nvlink_gb_s: float = Field(ge=0)
    sm_count: int = Field(gt=0)
    boost_clock_ghz: float = Field(gt=0)
    sources: dict[str, str] = Field(default_factory=dict)

    @property
    def hbm_bytes_s(self) -> float:
        """Peak device-memory bandwidth, B/s."""
        return self.hbm_bandwidth_gb_s * 1e9

    def flops(self, dtype: str) -> float:
        """Dense tensor-core throughput for ``dtype`` (``bf16``/``fp16``), FLOP/s."""
        return (self.bf16_dense_tflops if dtype == "bf16" else self.fp16_dense_tflops) * 1e12

    @property
    def sm_cycles_s(self) -> float:
        """SM count x boost clock: thread-block slots the GPU retires per s (1/s)."""
        return self.sm_count * self.boost_clock_ghz * 1e9

    @property
    def link_bytes_s(self) -> float:
        """GPU-to-GPU bandwidth per direction for tensor parallelism, B/s (NVLink, else PCIe)."""
        return (self.nvlink_gb_s or self.pcie_gb_s) * 1e9


def _table() -> dict[str, Any]:
    text = resources.files("loratwin").joinpath("data", "gpus.yaml").read_text()
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), dict):
        raise DataError("gpus.yaml: no 'gpus' mapping")
    return data["gpus"]


def bundled_gpus() -> list[str]:
    """Names of the GPUs in the table."""
    return sorted(_table())


def load_gpu(name: str) -> GpuSpec:
    """The table entry ``name`` (e.g. ``h100-sxm-80gb``; case-insensitive).

    Raises
    ------
    ConfigError
        Unknown name; the message lists the known ones.
    """
    table = _table()
    key = name.lower()
    if key not in table:
        raise ConfigError(f"unknown GPU {name!r} (known: {', '.join(sorted(table))})",
                          field="--gpu")
    try:
        return GpuSpec(name=key, **table[key])
    except ValidationError as exc:
        raise DataError(f"gpus.yaml: entry {key}: {exc.errors()[0]['msg']}") from None


def gpu_of_profile(gpu_text: str) -> GpuSpec:
    """The table entry a profile's free-text ``gpu`` field names (its ``match`` patterns).

    Raises
    ------
    ConfigError
        No entry matches; the message lists the known GPUs.
    """
    low = gpu_text.lower()
    for key in sorted(_table()):
        spec = load_gpu(key)
        if key in low or any(m.lower() in low for m in spec.match):
            return spec
    raise ConfigError(f"the profile's GPU {gpu_text!r} is not in the GPU table "
                      f"(known: {', '.join(bundled_gpus())})", field="--calibrate-on")


__all__ = ["GpuSpec", "bundled_gpus", "gpu_of_profile", "load_gpu"]
