"""Twin verification of GPU assignments: simulate each GPU with its adapters' arrivals."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from joblib import Parallel, delayed

from loratwin.placement.parallel import run_tasks
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import GpuAssignment, Placement
from loratwin.surrogate.point import lengths_for
from loratwin.twin.config import ClientConfig
from loratwin.twin.simulate import simulate
from loratwin.twin.timeseries import resample
from loratwin.workload.lengths import BoundedHeavyTailed, LengthFits
from loratwin.workload.spec import ArrivalSpec, generate_requests


def gpu_lengths(problem: PlacementProblem, gpu: GpuAssignment) -> BoundedHeavyTailed:
    """Length model of a verification run: as for the surrogate's data set
    (:func:`loratwin.surrogate.point.lengths_for`) at the GPU's largest adapter means; each
    adapter's own means are then honoured by the sampler."""
    means = [problem.mean_lengths(a) for a in gpu.adapters]
    return lengths_for(problem.profile, max(m[0] for m in means), max(m[1] for m in means))


def verify_gpu(
    problem: PlacementProblem, gpu: GpuAssignment, *, duration_s: float = 3600.0, seed: int = 0,
    timeseries_bins: int = 0, fits: LengthFits | None = None,
) -> dict[str, Any]:
    """Twin metrics of one GPU (a benchmark window with the adapters' Poisson/gamma arrivals).

    Returns the keys of the ``verified`` block of ``loratwin place --json``; with
    ``timeseries_bins > 0`` also ``timeseries``: running and waiting requests and the KV cache
    fraction in use, time-averaged over that many bins of the window
    (:func:`loratwin.twin.timeseries.resample`). ``fits``: a memo of solved length
    distributions shared by a batch of runs (same requests without it, see
    :class:`~loratwin.workload.lengths.LengthFits`).
    """
    # every adapter's means explicit (unset ones: the profile's ShareGPT means)
    adapters = [
        dataclasses.replace(a, mean_input_tokens=mi, mean_output_tokens=mo)
        for a, (mi, mo) in ((a, problem.mean_lengths(a)) for a in gpu.adapters)
    ]
    arrivals = (ArrivalSpec() if problem.arrival_cv == 1.0
                else ArrivalSpec(process="gamma", cv=problem.arrival_cv))
    req = generate_requests(adapters, duration_s, arrivals, gpu_lengths(problem, gpu), seed,
                            fits=fits)
    server = problem.server(
        max_loras=gpu.max_loras, max_cpu_loras=gpu.max_cpu_loras,
        max_lora_rank=gpu.max_lora_rank, max_num_seqs=gpu.max_num_seqs,
        max_num_batched_tokens=max(2048, gpu.max_num_seqs),
    )
    client = ClientConfig(duration_s=duration_s)
    res = simulate(problem.profile, server, adapters, req, client,
                   record_timeseries=timeseries_bins > 0)
    m = res.metrics
    out = {
        "starvation": bool(m.starvation),
        "memory_error": bool(m.memory_error),
        "memory_error_reason": m.memory_error_reason,
        "total_throughput_tok_s": m.total_throughput_tok_s,
        "offered_throughput_tok_s": m.offered_throughput_tok_s,
        "mean_itl_ms": m.mean_itl_ms,
        "p99_itl_ms": m.p99_itl_ms,
        "mean_ttft_ms": m.mean_ttft_ms,
        "p99_ttft_ms": m.p99_ttft_ms,
        "preemptions": m.preemptions,
        "adapter_loads": m.adapter_loads,
        "duration_s": duration_s,
    }
    if timeseries_bins > 0 and res.timeseries_columns is not None and m.kv_cache_tokens > 0:
        out["timeseries"] = resample(res.timeseries_columns, duration_s, timeseries_bins,
                                     m.kv_cache_tokens // server.block_size)
    return out


def verify_gpus(
    problem: PlacementProblem,
    gpus: list[GpuAssignment],
    *,
    duration_s: float = 3600.0,
    seed: int = 0,
    n_jobs: int = 1,
    timeseries_bins: int = 0,
    on_done: Callable[[], None] | None = None,
    ray_address: str | None = None,
) -> list[GpuAssignment]:
    """The GPUs with their ``verified`` block filled (GPU i with seed ``seed + i``), in
    parallel with joblib (``n_jobs`` processes) or on a Ray cluster (``ray_address``, see
    :mod:`.parallel`); ``on_done`` is called as each GPU's run finishes (progress)."""
    res: list[dict[str, Any]] = []
    if ray_address:
        res = run_tasks(verify_gpu_seeded, [(problem, g, duration_s, seed + i, timeseries_bins)
                                            for i, g in enumerate(gpus)],
                        jobs=n_jobs, ray_address=ray_address)
        for _ in res:
            if on_done is not None:
                on_done()
    else:
        for v in Parallel(n_jobs=n_jobs, return_as="generator")(
            delayed(verify_gpu)(problem, g, duration_s=duration_s, seed=seed + i,
                                timeseries_bins=timeseries_bins)
            for i, g in enumerate(gpus)
        ):
            res.append(v)
            if on_done is not None:
                on_done()
    return [dataclasses.replace(g, verified=v) for g, v in zip(gpus, res, strict=True)]


def verify_gpu_seeded(problem: PlacementProblem, gpu: GpuAssignment, duration_s: float,
                      seed: int, timeseries_bins: int = 0) -> dict[str, Any]:
    """:func:`verify_gpu` with positional arguments (a task for :func:`run_tasks`)."""
    return verify_gpu(problem, gpu, duration_s=duration_s, seed=seed,
                      timeseries_bins=timeseries_bins)


def verify_placement(
    problem: PlacementProblem, placement: Placement, *, duration_s: float = 3600.0,
    seed: int = 0, n_jobs: int = 1, timeseries_bins: int = 0,
    on_done: Callable[[], None] | None = None, ray_address: str | None = None,
) -> Placement:
    """``placement`` with every GPU verified by the twin (see :func:`verify_gpus`)."""
    servers = verify_gpus(problem, list(placement.servers), duration_s=duration_s, seed=seed,
                          n_jobs=n_jobs, timeseries_bins=timeseries_bins, on_done=on_done,
                          ray_address=ray_address)
    return dataclasses.replace(placement, servers=tuple(servers))


def is_healthy(verified: dict[str, Any] | None) -> bool:
    """A verified GPU that neither starves nor fails to start."""
    return bool(verified) and not verified["starvation"] and not verified["memory_error"]


def verify_gpu_memo(problem: PlacementProblem, gpu: GpuAssignment, duration_s: float,
                    seed: int, fits: LengthFits) -> tuple[dict[str, Any], LengthFits]:
    """:func:`verify_gpu` with a length memo, returning the memo with this run's solves (a
    task for :func:`run_tasks`: a worker process's solves come back to the caller)."""
    return verify_gpu(problem, gpu, duration_s=duration_s, seed=seed, fits=fits), fits
