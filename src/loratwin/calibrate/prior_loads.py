"""Adapter load times of a prior profile, from what vLLM 0.8.5 does per tensor and per kernel.

vLLM 0.8.5 loads an adapter in two stages (``vllm/lora/worker_manager.py``,
``vllm/lora/models.py``, ``vllm/lora/layers.py``):

* **CPU -> GPU** (``LoRAModelManager.activate_adapter``, in the step that first needs it):
  for every wrapped module, ``reset_lora`` fills the slot's A and B buffers of each weight
  slice with zeros (two ``fill_`` kernels per slice: qkv has 3 slices, o 1, gate_up 2 or an
  OPT ``fc1`` 1, down 1; the embedding and logits-processor wrappers of Llama/Mistral 3
  each), and ``set_lora`` copies A and B of every adapted slice into it with
  ``copy_(..., non_blocking=True)`` from pinned CPU tensors. The copies are queued, not
  waited for, so the measured time is the host's cost of *enqueueing* those operations, not
  the PCIe transfer: the measured loads do not grow with the adapter rank (Llama-3.1-8B,
  full slots: 6.79 / 6.54 / 6.52 ms at rank 8 / 16 / 32; ``adapter_loading.csv``). A B copy
  into a slot of larger rank (``max_lora_rank`` > rank) writes a non-contiguous slice, which
  PyTorch stages through a contiguous GPU temporary and a second kernel::

      cpu_ms = op_ms x (2 x slices x layers + 2 x adapted slices) [+ 6 embedding fills]
               + strided_ms x adapted slices  [rank < max_lora_rank]

* **disk -> CPU** (``_load_adapter`` -> ``LoRAModel.from_local_checkpoint``, on a CPU-cache
  miss): every tensor of the safetensors file is read, cast (``.to(dtype)``), transposed,
  copied into pinned memory and B scaled (``optimize``)::

      disk_ms = tensor_ms x tensors + adapter bytes / storage bandwidth

``op_ms``, ``strided_ms``, ``tensor_ms`` and the storage bandwidth are host and software
constants fitted on the calibration profiles' measured loads (``adapter_loading.csv``), whose
adapters are assumed to adapt every linear layer (``q/k/v/o/gate/up/down_proj``, or OPT's
``out_proj``/``fc1``/``fc2``) in the model dtype: the measured data does not say which modules
its dummy adapters adapt (``docs/prior.md`` discusses what the measurements imply). The
user's adapters are counted by their own targets (:class:`~.prior_targets.AdapterTargets`,
``profile prior --target-modules`` / ``--adapter-config``; default every linear layer).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loratwin.calibrate.prior_gpu import GpuSpec
from loratwin.calibrate.prior_memory import TABLE_RANKS
from loratwin.calibrate.prior_model import Shard
from loratwin.calibrate.prior_targets import (
    AdapterTargets,
    all_linear,
    layer_modules,
    module_dims,
)
from loratwin.profile.model import LoadModel, LoadPoint

#: ``fill_`` kernels of ``reset_lora`` of one embedding wrapper (A, B, extra embeddings).
EMBEDDING_WRAPPER_FILLS = 3


class LoadConstants(BaseModel):
    """Host constants of adapter loading (fitted).

    ``op_ms``: ms per CUDA operation ``activate_adapter`` enqueues (with its Python call);
    ``strided_ms``: ms more per B copy into a slot of larger rank; ``tensor_ms``: ms per
    tensor of the adapter file; ``storage_bytes_s``: file read and CPU processing, B/s.
    """

    model_config = ConfigDict(frozen=True)

    op_ms: float = Field(ge=0)
    strided_ms: float = Field(ge=0)
    tensor_ms: float = Field(ge=0)
    storage_bytes_s: float = Field(gt=0)


def slices_per_layer(shard: Shard) -> int:
    """Weight slices of the LoRA layers of one transformer layer: one per linear module
    (qkv_proj packs 3, gate_up_proj 2; o, down or OPT's out_proj, fc1, fc2 one each)."""
    return len(layer_modules(shard.spec))


def _pairs(shard: Shard, targets: AdapterTargets | None) -> tuple[tuple[int, str], ...]:
    return (targets or all_linear(shard.spec)).pairs


def adapter_bytes(shard: Shard, rank: int, targets: AdapterTargets | None = None) -> int:
    """Bytes of one adapter of ``rank`` on one GPU: A (rank x input) and B (output x rank) of
    every adapted module (``targets``; default every linear layer)."""
    elements = sum(sum(module_dims(shard, m)) for _, m in _pairs(shard, targets))
    return rank * elements * shard.spec.dtype_bytes


def adapter_tensors(shard: Shard, targets: AdapterTargets | None = None) -> int:
    """Tensors of the adapter file: A and B of every adapted slice of every layer."""
    return 2 * len(_pairs(shard, targets))


def activation_ops(shard: Shard, targets: AdapterTargets | None = None) -> int:
    """CUDA operations ``activate_adapter`` enqueues: a ``fill_`` of A and of B of every
    slice of every wrapped module (adapted or not), a copy of A and of B of every adapted
    slice, and the embedding wrappers' fills."""
    fills = 2 * slices_per_layer(shard) * shard.spec.num_layers
    copies = 2 * len(_pairs(shard, targets))
    return fills + copies + (2 * EMBEDDING_WRAPPER_FILLS if shard.spec.lora_embeddings else 0)


def strided_copies(shard: Shard, max_lora_rank: int, rank: int,
                   targets: AdapterTargets | None = None) -> int:
    """B copies into a non-contiguous slot slice (adapter rank below the slot rank)."""
    return len(_pairs(shard, targets)) if rank < max_lora_rank else 0


def cpu_load_ms(shard: Shard, gpu: GpuSpec, c: LoadConstants, max_lora_rank: int,
                rank: int, targets: AdapterTargets | None = None) -> float:
    """CPU -> GPU activation of one adapter, ms (host enqueue time; module docstring).

    ``gpu`` is unused: the copies are asynchronous, so neither PCIe nor HBM bandwidth sets
    the time the host spends.
    """
    del gpu
    return c.op_ms * activation_ops(shard, targets) + c.strided_ms * strided_copies(
        shard, max_lora_rank, rank, targets)


def disk_load_ms(shard: Shard, c: LoadConstants, rank: int,
                 targets: AdapterTargets | None = None) -> float:
    """Disk -> CPU load of one adapter, ms."""
    return c.tensor_ms * adapter_tensors(shard, targets) + 1e3 * adapter_bytes(
        shard, rank, targets) / c.storage_bytes_s


def _nonneg_lstsq(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares with non-negative coefficients (columns dropped while one is < 0)."""
    keep = list(range(x.shape[1]))
    coef = np.zeros(x.shape[1])
    while keep:
        sol, *_ = np.linalg.lstsq(x[:, keep], y, rcond=None)
        if (sol >= 0).all():
            coef[keep] = sol
            break
        keep.pop(int(np.argmin(sol)))
    return coef


def fit_load_constants(measured: list[tuple[Shard, GpuSpec, LoadModel]]
                       ) -> tuple[LoadConstants, dict[str, float | int | str]]:
    """Least squares of the measured mean load times (every (max_lora_rank, rank) point).

    CPU -> GPU: ``op_ms`` and ``strided_ms`` on the operation counts; disk -> CPU:
    ``tensor_ms`` and the inverse storage bandwidth on the tensor counts and bytes.
    """
    xc, yc, xd, yd = [], [], [], []
    for shard, _gpu, loads in measured:
        for p in loads.points:
            xc.append([activation_ops(shard),
                       strided_copies(shard, p.max_lora_rank, p.adapter_rank)])
            yc.append(p.cpu_ms)
            xd.append([adapter_tensors(shard), adapter_bytes(shard, p.adapter_rank) / 1e6])
            yd.append(p.disk_ms)
    op_ms, strided_ms = _nonneg_lstsq(np.array(xc, float), np.array(yc, float))
    tensor_ms, ms_per_mb = _nonneg_lstsq(np.array(xd, float), np.array(yd, float))
    consts = LoadConstants(op_ms=float(op_ms), strided_ms=float(strided_ms),
                           tensor_ms=float(tensor_ms),
                           storage_bytes_s=1e9 / ms_per_mb if ms_per_mb > 0 else 1e15)
    return consts, {"points": len(yc), "op_us": 1e3 * consts.op_ms,
                    "strided_us": 1e3 * consts.strided_ms, "tensor_us": 1e3 * consts.tensor_ms,
                    "storage_gb_s": consts.storage_bytes_s / 1e9}


def build_load_model(shard: Shard, gpu: GpuSpec, c: LoadConstants,
                     targets: AdapterTargets | None = None) -> LoadModel:
    """Load times at every (slot rank, adapter rank <= slot rank) of ``TABLE_RANKS`` of
    adapters of ``targets`` (default: every linear layer)."""
    pts = tuple(
        LoadPoint(max_lora_rank=m, adapter_rank=r,
                  cpu_ms=cpu_load_ms(shard, gpu, c, m, r, targets),
                  disk_ms=disk_load_ms(shard, c, r, targets))
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
    "activation_ops",
    "adapter_bytes",
    "adapter_tensors",
    "build_load_model",
    "cpu_load_ms",
    "disk_load_ms",
    "fit_load_constants",
    "slices_per_layer",
    "strided_copies",
]
