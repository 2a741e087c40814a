"""Adapter load times of a prior profile, from adapter bytes and host-device bandwidth.

vLLM 0.8.5 loads an adapter in two stages (``vllm/lora/worker_manager.py``,
``vllm/lora/models.py``):

* **disk -> CPU** (``_load_adapter``, on a CPU-cache miss): read the safetensors file and
  build the CPU tensors: ``disk_ms = file_ms + adapter_bytes / storage bandwidth``;
* **CPU -> GPU** (``activate_adapter``, in the step that first needs it): for every wrapped
  module, zero the slot (``reset_lora``) and copy the adapter's A and B into it
  (``set_lora``, ``non_blocking`` copies from pinned memory):
  ``cpu_ms = module_ms x wrapped modules + adapter_bytes / (PCIe bandwidth)
  + slot_bytes / (HBM bandwidth)``.

``module_ms`` (the per-module launch cost), ``file_ms`` and the storage bandwidth are host
and software constants fitted on the calibration profiles' measured loads
(``adapter_loading.csv``); the bandwidths are the GPU table's. The adapters are assumed to
adapt every linear layer (``q/k/v/o/gate/up/down_proj``) in the model dtype.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loratwin.calibrate.prior_gpu import GpuSpec
from loratwin.calibrate.prior_memory import TABLE_RANKS, lora_slot_tensors
from loratwin.calibrate.prior_model import Shard
from loratwin.profile.model import LoadModel, LoadPoint


class LoadConstants(BaseModel):
    """Host constants of adapter loading (fitted): ms per wrapped module, ms per file, B/s."""

    model_config = ConfigDict(frozen=True)

    module_ms: float = Field(ge=0)
    file_ms: float = Field(ge=0)
    storage_bytes_s: float = Field(gt=0)


def adapter_bytes(shard: Shard, rank: int) -> int:
    """Bytes of one adapter of ``rank`` on one GPU (A and B of every linear layer)."""
    s = shard.spec
    h, q, kv, i = s.hidden_size, shard.q_size, shard.kv_size, shard.intermediate
    mlp = 3 if s.gated else 2
    per_layer = rank * (3 * h + q + 2 * kv)  # q, k, v: A (r x H) each; B (q + 2 kv) x r
    per_layer += rank * (q + h)  # o
    per_layer += rank * ((mlp - 1) * (h + i) + (i + h))  # gate/up (or fc1) and down (fc2)
    return per_layer * s.num_layers * s.dtype_bytes


def wrapped_modules(shard: Shard) -> int:
    """LoRA-wrapped modules vLLM activates: qkv, o, gate_up, down per layer (+ embeddings)."""
    return 4 * shard.spec.num_layers + (2 if shard.spec.lora_embeddings else 0)


def cpu_load_ms(shard: Shard, gpu: GpuSpec, c: LoadConstants, max_lora_rank: int,
                rank: int) -> float:
    """CPU -> GPU activation of one adapter, ms (module docstring)."""
    slot = sum(lora_slot_tensors(shard, 1, max_lora_rank))
    return (c.module_ms * wrapped_modules(shard)
            + 1e3 * adapter_bytes(shard, rank) / gpu.pcie_gb_s / 1e9
            + 1e3 * slot / gpu.hbm_bytes_s)


def disk_load_ms(shard: Shard, c: LoadConstants, rank: int) -> float:
    """Disk -> CPU load of one adapter, ms."""
    return c.file_ms + 1e3 * adapter_bytes(shard, rank) / c.storage_bytes_s


def fit_load_constants(measured: list[tuple[Shard, GpuSpec, LoadModel]]
                       ) -> tuple[LoadConstants, dict[str, float | int | str]]:
    """Least squares of the measured mean load times (every (max_lora_rank, rank) point).

    ``module_ms`` from the CPU -> GPU times less their bandwidth terms; ``file_ms`` and the
    storage bandwidth from the disk -> CPU times (a straight line in the adapter bytes).
    """
    unit = LoadConstants(module_ms=1.0, file_ms=0.0, storage_bytes_s=1.0)
    xs, ys, xd, yd = [], [], [], []
    for shard, gpu, loads in measured:
        for p in loads.points:
            zero = cpu_load_ms(shard, gpu, unit, p.max_lora_rank, p.adapter_rank) \
                - wrapped_modules(shard)
            xs.append(wrapped_modules(shard))
            ys.append(p.cpu_ms - zero)
            xd.append(adapter_bytes(shard, p.adapter_rank))
            yd.append(p.disk_ms)
    x, y = np.array(xs, float), np.array(ys, float)
    module_ms = max(float((x @ y) / (x @ x)), 0.0)
    slope, icpt = np.polyfit(np.array(xd, float), np.array(yd, float), 1)
    consts = LoadConstants(module_ms=module_ms, file_ms=max(float(icpt), 0.0),
                           storage_bytes_s=1e3 / slope if slope > 0 else 1e12)
    return consts, {"points": len(ys), "module_us": 1e3 * module_ms,
                    "file_ms": consts.file_ms, "storage_gb_s": consts.storage_bytes_s / 1e9}


def build_load_model(shard: Shard, gpu: GpuSpec, c: LoadConstants) -> LoadModel:
    """Load times at every (slot rank, adapter rank <= slot rank) of ``TABLE_RANKS``."""
    pts = tuple(
        LoadPoint(max_lora_rank=m, adapter_rank=r,
                  cpu_ms=cpu_load_ms(shard, gpu, c, m, r), disk_ms=disk_load_ms(shard, c, r))
        for m in TABLE_RANKS for r in TABLE_RANKS if r <= m
    )
    x = np.array([[1.0, p.max_lora_rank, p.adapter_rank] for p in pts])
    cpu, *_ = np.linalg.lstsq(x, np.array([p.cpu_ms for p in pts]), rcond=None)
    xd = np.array([[1.0, p.adapter_rank] for p in pts])
    disk, *_ = np.linalg.lstsq(xd, np.array([p.disk_ms for p in pts]), rcond=None)
    return LoadModel(points=pts, cpu_coef=(float(cpu[0]), float(cpu[1]), float(cpu[2])),
                     disk_coef=(float(disk[0]), float(disk[1])))


__all__ = [
    "LoadConstants",
    "adapter_bytes",
    "build_load_model",
    "cpu_load_ms",
    "disk_load_ms",
    "fit_load_constants",
    "wrapped_modules",
]
