"""The performance profile of one model on one GPU: fitted costs and measured memory facts.

A :class:`Profile` is plain data (pydantic, stored as JSON inside the package); the
functions here only read it. The twin's step-cost model that uses the coefficients lives in
:mod:`loratwin.twin.cost`; the fitting code in :mod:`loratwin.calibrate.fit`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

GIB = float(1 << 30)


class Architecture(BaseModel):
    """Transformer shapes needed by the LoRA kernel model and the KV accounting.

    All sizes are per layer, in elements (not bytes), except ``kv_bytes_per_token`` which is
    the KV cache size of one token over all layers in bytes (2 x layers x kv heads x head dim
    x 2 bytes for bf16).
    """

    model_config = ConfigDict(frozen=True)

    num_layers: int
    hidden_size: int
    q_size: int
    kv_size: int
    intermediate_size: int
    vocab_size: int
    kv_bytes_per_token: int


class StepCoefficients(BaseModel):
    """Coefficients of the engine step cost, all in seconds (see :mod:`loratwin.twin.cost`).

    Execution (one ``execute_model`` call):
    ``base_s + per_token_s*M + per_decode_seq_s*n_decode + per_context_token_s*ctx
    + per_prefill_req_s*n_prefill``;
    LoRA kernels: ``lora_empty_cta_s*E + lora_work_cta_s*(W + split_k_fixed_fraction*X)
    + lora_eager_layer_s*layers*[M > 512]`` where E, W and X count the empty, the working and
    the extra split-K Triton thread blocks of vLLM's ``lora_shrink``/``lora_expand``
    (``split_k_fixed_fraction`` is dimensionless);
    scheduler CPU: ``sched_base_s + sched_per_running_s*running + sched_per_walked_s*walked``;
    PyTorch LoRA ops of vLLM's CPU backend (``device == "cpu"``, zero on CUDA):
    ``lora_step_s + lora_token_rank_s*M*max_lora_rank`` per step with LoRA enabled.
    """

    model_config = ConfigDict(frozen=True)

    base_s: float
    per_token_s: float
    per_decode_seq_s: float
    per_context_token_s: float
    per_prefill_req_s: float
    lora_empty_cta_s: float
    lora_work_cta_s: float
    lora_eager_layer_s: float = 0.0
    split_k_fixed_fraction: float = 1.0
    sched_base_s: float
    sched_per_running_s: float
    sched_per_walked_s: float
    lora_step_s: float = 0.0
    lora_token_rank_s: float = 0.0


class LoadPoint(BaseModel):
    """One measured adapter load: CPU->GPU (``cpu_ms``) and disk->CPU (``disk_ms``) in ms."""

    model_config = ConfigDict(frozen=True)

    max_lora_rank: int
    adapter_rank: int
    cpu_ms: float
    disk_ms: float


class LoadModel(BaseModel):
    """Adapter load times, measured with ``max_loras`` 1 (``adapter_loading.csv``).

    ``cpu_coef`` = (a, b, c) of ``cpu_ms = a + b*max_lora_rank + c*adapter_rank`` and
    ``disk_coef`` = (a, b) of ``disk_ms = a + b*adapter_rank``, least-squares fits over the
    measured points, used for (max_lora_rank, rank) pairs that were not measured.
    """

    model_config = ConfigDict(frozen=True)

    points: tuple[LoadPoint, ...]
    cpu_coef: tuple[float, float, float]
    disk_coef: tuple[float, float]


class KVPoint(BaseModel):
    """One row of ``kv_capacity.csv``: KV tokens, or the start-up failure vLLM reported."""

    model_config = ConfigDict(frozen=True)

    max_loras: int
    max_lora_rank: int
    kv_cache_tokens: int | None
    failure: str | None
    model_load_gib: float | None


class KVModel(BaseModel):
    """KV cache capacity as a function of (``max_loras``, ``max_lora_rank``, ``max_num_seqs``).

    ``rank_lines`` maps a measured ``max_lora_rank`` to (a, b): ``kv_tokens = a - b*max_loras``
    fitted on the successful rows (each GPU slot takes a fixed amount of memory, so the
    relation is linear); ``load_lines`` likewise gives the reported model load in GiB
    (weights + slot buffers). ``no_lora_by_max_num_seqs`` is the measured KV size without
    LoRA per ``max_num_seqs`` (the profiling pass reserves activations for that many
    sequences); ``reference_max_num_seqs`` is the value the LoRA table was measured at.
    """

    model_config = ConfigDict(frozen=True)

    points: tuple[KVPoint, ...]
    rank_lines: dict[int, tuple[float, float]]
    load_lines: dict[int, tuple[float, float]]
    no_lora_by_max_num_seqs: dict[int, int]
    reference_max_num_seqs: int
    cuda_graph_gib: float


class Profile(BaseModel):
    """Everything the twin needs to know about one (model, GPU) pair.

    Built by ``loratwin profile fit`` from the calibration sweeps measured on vLLM 0.8.5
    (Agullo et al., arXiv 2508.08343 / 2602.24044, public repository
    FerranAgulloLopez/GPULLMAdapterOptimization) and shipped as JSON in
    ``loratwin/profile/bundled/``.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    hf_model_name: str
    gpu: str
    gpu_total_memory_gib: float
    gpu_memory_utilization_measured: float = 0.9
    max_model_len: int
    block_size: int = 16
    arch: Architecture
    step: StepCoefficients
    loads: LoadModel
    kv: KVModel
    frontend_latency_s: float = Field(
        description="client-visible latency added to TTFT (HTTP, tokenisation, streaming), s"
    )
    frontend_per_request_s: float = Field(
        default=0.0, ge=0.0,
        description="serial API-server time per request before it reaches the engine, s "
                    "(loratwin.twin.frontend; 0 when not measured)",
    )
    sharegpt_mean_input_tokens: float
    sharegpt_mean_output_tokens: float
    sharegpt_std_input_tokens: float
    sharegpt_std_output_tokens: float
    source: str
    fit_report: dict[str, dict[str, float | int | str]] = Field(default_factory=dict)
    vllm_version: str = Field(
        default="0.8.5", description="vLLM release the profile was measured on (or models)"
    )
    device: Literal["cuda", "cpu"] = Field(
        default="cuda",
        description=(
            "cuda: CUDA graphs and vLLM's Triton LoRA kernels, KV memory from "
            "gpu_memory_utilization; cpu: vLLM's CPU backend (eager, PyTorch LoRA ops, KV "
            "memory set by VLLM_CPU_KVCACHE_SPACE)"
        ),
    )
    profile_kind: Literal["measured", "collected", "prior"] = Field(
        default="measured",
        description=(
            "measured: fitted on published measurements; collected: fitted on a campaign "
            "that `loratwin profile collect` ran on the user's server; prior: estimated from "
            "a model config and a GPU datasheet (every output from it says 'estimated')"
        ),
    )


# ----------------------------------------------------------------------------- queries


@dataclass(frozen=True)
class KVCapacity:
    """Result of :func:`kv_capacity`.

    Attributes
    ----------
    tokens:
        KV cache size in tokens (0 when the server cannot start).
    blocks:
        Number of KV cache blocks (``tokens // block_size``).
    failure:
        ``None`` if the server starts, else vLLM's start-up failure:
        ``kv_cache_smaller_than_max_model_len``, ``no_memory_for_kv_cache`` or ``cuda_oom``.
    measured:
        Whether (max_loras, max_lora_rank) is a measured point (else interpolated).
    """

    tokens: int
    blocks: int
    failure: str | None
    measured: bool


def _rank_line(lines: dict[int, tuple[float, float]], rank: int) -> tuple[float, float]:
    """Linear interpolation of (a, b) between measured ranks, linear extrapolation outside.

    The slot memory grows linearly with the slot rank (LoRA A and B are rank x dim), so both
    coefficients are interpolated linearly in the rank.
    """
    ranks = sorted(lines)
    if rank in lines:
        return lines[rank]
    if len(ranks) == 1:
        return lines[ranks[0]]
    if rank < ranks[0]:
        r0, r1 = ranks[0], ranks[1]
    elif rank > ranks[-1]:
        r0, r1 = ranks[-2], ranks[-1]
    else:
        r1 = next(r for r in ranks if r > rank)
        r0 = max(r for r in ranks if r < rank)
    w = (rank - r0) / (r1 - r0)
    a0, b0 = lines[r0]
    a1, b1 = lines[r1]
    return a0 + w * (a1 - a0), b0 + w * (b1 - b0)


def _no_lora_tokens(kv: KVModel, max_num_seqs: int) -> float:
    xs = sorted(kv.no_lora_by_max_num_seqs)
    ys = [kv.no_lora_by_max_num_seqs[x] for x in xs]
    if len(xs) == 1:  # one measured max_num_seqs: no slope to extrapolate with
        return float(ys[0])
    if max_num_seqs <= xs[-1]:
        return float(np.interp(max_num_seqs, xs, ys))
    slope = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
    return ys[-1] + slope * (max_num_seqs - xs[-1])


def kv_capacity(
    profile: Profile,
    max_loras: int,
    max_lora_rank: int,
    *,
    enable_lora: bool = True,
    max_num_seqs: int | None = None,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
) -> KVCapacity:
    """KV cache capacity of a vLLM server, or the memory error it reports at start-up.

    Measured points of ``kv_capacity.csv`` are returned as measured (when ``max_num_seqs`` and
    ``gpu_memory_utilization`` are the measured ones); other points use the per-rank linear
    fits. ``max_num_seqs`` shifts the size by the measured no-LoRA difference (vLLM profiles
    activations for ``max_num_seqs`` sequences); ``gpu_memory_utilization`` adds
    ``(u - 0.9) x total GPU memory`` of KV bytes (not on the CPU backend, whose KV memory is
    ``VLLM_CPU_KVCACHE_SPACE``).

    The start-up checks mirror vLLM 0.8.5 (``vllm/v1/core/kv_cache_utils.py``,
    ``check_enough_kv_cache_memory``): no memory left for the KV cache, or a KV cache too
    small for one request of ``max_model_len`` tokens; a slot buffer that does not fit next
    to the weights and CUDA graphs is a CUDA OOM.

    Parameters
    ----------
    max_loras, max_lora_rank:
        GPU LoRA slots and their rank.
    enable_lora:
        ``False`` gives the no-LoRA capacity.
    max_num_seqs:
        ``--max-num-seqs``; ``None`` means the value the table was measured at.
    gpu_memory_utilization:
        ``--gpu-memory-utilization``.
    max_model_len:
        ``--max-model-len``; ``None`` means the profile's.
    """
    kv = profile.kv
    mns = kv.reference_max_num_seqs if max_num_seqs is None else max_num_seqs
    mml = profile.max_model_len if max_model_len is None else max_model_len
    gmu_tokens = 0.0 if profile.device == "cpu" else (
        (gpu_memory_utilization - profile.gpu_memory_utilization_measured)
        * profile.gpu_total_memory_gib * GIB / profile.arch.kv_bytes_per_token
    )
    if not enable_lora:
        tokens = _no_lora_tokens(kv, mns) + gmu_tokens
        load_gib = 0.0
        measured_failure = None
        measured = mns in kv.no_lora_by_max_num_seqs and gmu_tokens == 0
    else:
        shift = _no_lora_tokens(kv, mns) - _no_lora_tokens(kv, kv.reference_max_num_seqs)
        shift += gmu_tokens
        point = next(
            (p for p in kv.points
             if p.max_loras == max_loras and p.max_lora_rank == max_lora_rank),
            None,
        )
        a, b = _rank_line(kv.rank_lines, max_lora_rank)
        la, lb = _rank_line(kv.load_lines, max_lora_rank)
        tokens = a - b * max_loras + shift
        load_gib = la + lb * max_loras
        measured = point is not None
        measured_failure = None
        if point is not None:
            if point.kv_cache_tokens is not None:
                tokens = point.kv_cache_tokens + shift
            elif shift == 0:
                measured_failure = point.failure
            if point.model_load_gib is not None:
                load_gib = point.model_load_gib
    failure = measured_failure
    if failure is None:
        if enable_lora and load_gib > profile.gpu_total_memory_gib - kv.cuda_graph_gib:
            failure = "cuda_oom"
        elif tokens < profile.block_size:
            failure = "no_memory_for_kv_cache"
        elif tokens < mml:
            failure = "kv_cache_smaller_than_max_model_len"
    if failure is not None:
        return KVCapacity(0, 0, failure, measured)
    blocks = int(tokens) // profile.block_size
    return KVCapacity(blocks * profile.block_size, blocks, None, measured)


def cpu_load_s(profile: Profile, max_lora_rank: int, adapter_rank: int) -> float:
    """Time to copy an adapter from the CPU cache into a GPU slot, in s.

    Measured per (``max_lora_rank``, adapter rank) in ``adapter_loading.csv``; other pairs use
    the linear fit. Mirrors ``LoRAModelManager.activate_adapter`` (``vllm/lora/models.py``),
    which runs inside the step that first needs the adapter.
    """
    for p in profile.loads.points:
        if p.max_lora_rank == max_lora_rank and p.adapter_rank == adapter_rank:
            return p.cpu_ms / 1e3
    a, b, c = profile.loads.cpu_coef
    return max(a + b * max_lora_rank + c * adapter_rank, 0.0) / 1e3


def disk_load_s(profile: Profile, adapter_rank: int) -> float:
    """Time to read an adapter from disk into the CPU cache, in s (linear in the rank).

    Charged when an adapter is not in the CPU cache (``max_cpu_loras`` miss), on top of
    :func:`cpu_load_s`; mirrors ``WorkerLoRAManager._load_adapter``.
    """
    a, b = profile.loads.disk_coef
    return max(a + b * adapter_rank, 0.0) / 1e3


def max_loras_that_fit(
    profile: Profile,
    max_lora_rank: int,
    *,
    max_num_seqs: int | None = None,
    gpu_memory_utilization: float = 0.9,
    max_model_len: int | None = None,
    upper: int = 4096,
) -> int:
    """Largest ``max_loras`` for which the server starts (0 if none), by bisection."""
    def ok(n: int) -> bool:
        return kv_capacity(
            profile, n, max_lora_rank, max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
        ).failure is None

    if not ok(1):
        return 0
    lo, hi = 1, upper
    if ok(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


def ceil_div(a: int, b: int) -> int:
    """Integer ceiling division."""
    return -(-a // b)


__all__ = [
    "GIB",
    "Architecture",
    "KVCapacity",
    "KVModel",
    "KVPoint",
    "LoadModel",
    "LoadPoint",
    "Profile",
    "StepCoefficients",
    "ceil_div",
    "cpu_load_s",
    "disk_load_s",
    "kv_capacity",
    "max_loras_that_fit",
]
