"""KV-cache memory used and freed at B_opt, and the ``gpu_memory_utilization`` to recommend.

Memory identities of vLLM (V0, as logged in every run of the bundled sweeps; see the data
``README.md``, section ``bca/``)::

    kv_cache_size_gib = gpu_memory_utilization x total_gpu_memory_gib
                        - peak_torch_memory_gib - non_torch_memory_gib
    num_gpu_blocks    = floor(kv_cache_size_bytes / (block_size x kv_bytes_per_token))

``peak_torch_memory_gib`` is the weights plus the activations of vLLM's profiling pass (which
uses ``max_num_seqs`` dummy sequences, so it grows slightly with B).

Freed memory follows the paper's memory-breakdown figure (Recasens, Agullo et al.,
arXiv:2503.08311; recomputed in ``bca/expected_results.md``, section 1): with u the peak KV
use at B_opt and KV_full the KV pool of the curve (the largest ``kv_cache_size_gib``, i.e. the
pool profiled at small ``max_num_seqs``)::

    kv_used = KV_full x u          freed = KV_full x (1 - u)
    freed % = freed / G x 100      (G = 64 by default, see PAPER_GPU_MEMORY_GIB)

Recommended utilisation: the smallest ``gpu_memory_utilization`` (rounded up to 0.01) whose KV
pool still holds the KV needed at B_opt, from the first identity::

    u_rec = (kv_used x (1 + headroom) + peak_torch + non_torch) / total_gpu_memory

with ``peak_torch`` and ``non_torch`` of the B_opt run, capped at the utilisation of that run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from loratwin.errors import ConfigError

PAPER_GPU_MEMORY_GIB = 64.0
"""Denominator of the paper's "% of GPU memory": the nominal 64 "GB" of the H100 64 GB card.

The authors divide GiB values (as printed by vLLM) by this nominal 64, so the percentages mix
units; we keep the convention by default to reproduce their numbers. Pass the capacity of your
GPU (e.g. ``total_gpu_memory_gib``, 63.43 GiB here) for a unit-consistent percentage.
"""

BYTES_PER_GIB = 2**30
UTILIZATION_STEP = 0.01
"""Granularity of a recommended ``gpu_memory_utilization`` (rounded up)."""


@dataclass(frozen=True)
class MemoryAdvice:
    """KV memory at B_opt and the recommended memory configuration.

    Attributes
    ----------
    kv_pool_gib:
        KV_full, the KV pool of the curve at the sweep's utilisation, GiB.
    kv_usage_peak_frac:
        u, the peak KV-cache use of the B_opt run, fraction 0-1.
    kv_used_gib:
        KV_full x u, GiB.
    freed_gib:
        KV_full x (1 - u), GiB.
    freed_pct_of_gpu_memory:
        freed / gpu_memory_gib x 100, %.
    gpu_memory_gib:
        The denominator of the percentage, GiB (64 = the paper's nominal capacity).
    non_kv_gib:
        Weights + activations + non-torch memory of the B_opt run
        (``peak_torch_memory_gib + non_torch_memory_gib``), GiB.
    kv_reserved_gib:
        KV the recommendation provides for: kv_used x (1 + headroom), GiB.
    total_gpu_memory_gib:
        GPU memory vLLM reports, GiB.
    gpu_memory_utilization:
        Recommended ``gpu_memory_utilization``, fraction (multiple of 0.01).
    """

    kv_pool_gib: float
    kv_usage_peak_frac: float
    kv_used_gib: float
    freed_gib: float
    freed_pct_of_gpu_memory: float
    gpu_memory_gib: float
    non_kv_gib: float
    kv_reserved_gib: float
    total_gpu_memory_gib: float
    gpu_memory_utilization: float

    @property
    def footprint_gib(self) -> float:
        """Memory one server needs at B_opt: weights, activations and the reserved KV, GiB."""
        return self.non_kv_gib + self.kv_reserved_gib


def kv_pool_gib(frame: pd.DataFrame) -> float:
    """KV_full of one curve: the largest ``kv_cache_size_gib`` among its runs, GiB.

    The pool shrinks slightly as ``max_num_seqs`` grows (vLLM profiles with ``max_num_seqs``
    dummy sequences); the paper's figure uses the pool at small B, i.e. the largest value.
    """
    return float(frame["kv_cache_size_gib"].max())


def recommend_gpu_memory_utilization(
    kv_needed_gib: float,
    non_kv_gib: float,
    total_gpu_memory_gib: float,
    max_utilization: float,
) -> float:
    """Smallest ``gpu_memory_utilization`` whose KV pool holds ``kv_needed_gib``.

    Parameters
    ----------
    kv_needed_gib:
        KV cache the server must hold, GiB.
    non_kv_gib:
        ``peak_torch_memory_gib + non_torch_memory_gib``, GiB.
    total_gpu_memory_gib:
        GPU memory as vLLM reports it, GiB.
    max_utilization:
        Upper bound (the utilisation the sweep ran with), fraction.

    Returns
    -------
    float
        (kv_needed + non_kv) / total, rounded up to a multiple of 0.01 and capped at
        ``max_utilization``.

    Raises
    ------
    ConfigError
        If ``total_gpu_memory_gib`` is not positive.
    """
    if total_gpu_memory_gib <= 0:
        raise ConfigError(f"must be > 0, got {total_gpu_memory_gib}", field="total_gpu_memory_gib")
    exact = (kv_needed_gib + non_kv_gib) / total_gpu_memory_gib
    steps = math.ceil(round(exact / UTILIZATION_STEP, 9))
    return round(min(steps * UTILIZATION_STEP, max_utilization), 4)


def memory_at_batch(
    row: pd.Series,
    pool_gib: float,
    *,
    gpu_memory_gib: float = PAPER_GPU_MEMORY_GIB,
    kv_headroom: float = 0.0,
) -> MemoryAdvice:
    """Memory used and freed by the run selected as B_opt.

    Parameters
    ----------
    row:
        The B_opt run, with the memory columns of a sweep (``kv_usage_peak_frac``,
        ``peak_torch_memory_gib``, ``non_torch_memory_gib``, ``total_gpu_memory_gib``,
        ``gpu_memory_utilization``).
    pool_gib:
        KV_full of the curve, GiB (see :func:`kv_pool_gib`).
    gpu_memory_gib:
        Denominator of the freed percentage, GiB (default: the paper's nominal 64).
    kv_headroom:
        Extra KV reserved above the measured peak, as a fraction (0.1 = 10 %).

    Raises
    ------
    ConfigError
        For a non-positive ``gpu_memory_gib`` or a negative ``kv_headroom``.
    """
    if not gpu_memory_gib > 0:
        raise ConfigError(f"must be > 0 GiB, got {gpu_memory_gib}", field="gpu_memory_gib")
    if not kv_headroom >= 0:
        raise ConfigError(f"must be >= 0, got {kv_headroom}", field="kv_headroom")
    u = float(row["kv_usage_peak_frac"])
    used = pool_gib * u
    freed = pool_gib * (1.0 - u)
    non_kv = float(row["peak_torch_memory_gib"]) + float(row["non_torch_memory_gib"])
    reserved = used * (1.0 + kv_headroom)
    total = float(row["total_gpu_memory_gib"])
    util = recommend_gpu_memory_utilization(
        reserved, non_kv, total, max_utilization=float(row["gpu_memory_utilization"])
    )
    return MemoryAdvice(
        kv_pool_gib=pool_gib,
        kv_usage_peak_frac=u,
        kv_used_gib=used,
        freed_gib=freed,
        freed_pct_of_gpu_memory=freed / gpu_memory_gib * 100.0,
        gpu_memory_gib=gpu_memory_gib,
        non_kv_gib=non_kv,
        kv_reserved_gib=reserved,
        total_gpu_memory_gib=total,
        gpu_memory_utilization=util,
    )


def freed_kv_tokens(freed_gib: float, kv_bytes_per_token: int, block_size: int = 16) -> int:
    """KV-cache capacity, in tokens, of ``freed_gib`` of memory, in whole KV blocks.

    Parameters
    ----------
    freed_gib:
        Memory, GiB (2^30 bytes).
    kv_bytes_per_token:
        KV bytes per token: 2 (K and V) x layers x KV heads x head size x bytes per element,
        e.g. 196,608 for OPT-1.3B in float16 (``setup.json``).
    block_size:
        vLLM block size, tokens (default 16).

    Returns
    -------
    int
        floor(freed bytes / (block_size x kv_bytes_per_token)) x block_size tokens.

    Raises
    ------
    ConfigError
        For a non-positive ``kv_bytes_per_token`` or ``block_size``, or negative memory.
    """
    if kv_bytes_per_token <= 0:
        raise ConfigError(f"must be > 0, got {kv_bytes_per_token}", field="kv_bytes_per_token")
    if block_size <= 0:
        raise ConfigError(f"must be > 0, got {block_size}", field="block_size")
    if freed_gib < 0:
        raise ConfigError(f"must be >= 0 GiB, got {freed_gib}", field="freed_gib")
    blocks = math.floor(freed_gib * BYTES_PER_GIB / (block_size * kv_bytes_per_token))
    return int(blocks * block_size)
