"""The batching advisor applied to one placed GPU (``loratwin place --advise``).

For a GPU of a placement (its adapters, ``max_loras``, slot rank) the twin runs the batch sweep
of "Mind the Memory Gap" on that GPU's own request mix (:func:`~loratwin.advisor.twin_sweep.
sweep_row`), the advisor picks ``B_opt`` and the KV memory the smaller batch frees, and that
memory is offered back in two ways:

* as KV capacity: the same flags with ``max_num_seqs = B_opt`` (vLLM also reserves fewer
  activations, so the KV pool grows a little), or with ``gpu_memory_utilization`` lowered to
  what the GPU needs (memory free for other processes);
* as adapter slots: the largest ``max_loras`` whose KV pool still holds the KV used at
  ``B_opt`` (fewer adapter loads when the GPU serves more adapters than slots).

Each candidate is verified in the twin with the GPU's serving workload; the recommendation is
the healthy candidate (no starvation, no memory error) with the lowest mean end-to-end latency
(TTFT + ITL x (mean output tokens - 1)), ties broken by the memory freed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
from joblib import Parallel, delayed

from loratwin.advisor.advice import advise_max_num_seqs
from loratwin.advisor.twin_sweep import sweep_row
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.types import GpuAssignment, Placement
from loratwin.placement.verify import gpu_lengths, is_healthy, verify_gpu
from loratwin.profile.model import GIB, kv_capacity
from loratwin.workload.lengths import sample_lengths
from loratwin.workload.types import Requests

SWEEP_BATCHES: tuple[int, ...] = (8, 16, 32, 64, 128, 256, 512, 1024, 2048)


@dataclass(frozen=True)
class GpuAdvice:
    """Advisor outcome for one GPU.

    Attributes
    ----------
    b_opt, max_num_seqs:
        The advisor's batch and the recommended ``--max-num-seqs``.
    freed_gib:
        KV memory the smaller batch leaves unused (GiB).
    gpu_memory_utilization:
        Utilisation that keeps just what the GPU needs at ``B_opt``.
    candidates:
        name -> (flags, twin-verified metrics) for ``current``, ``smaller batch`` and
        ``more slots``.
    chosen:
        Name of the recommended candidate.
    mean_output_tokens:
        Mean output length of the GPU's requests (tokens), for :meth:`e2e_ms`.
    """

    b_opt: int
    max_num_seqs: int
    freed_gib: float
    gpu_memory_utilization: float
    candidates: dict[str, tuple[dict[str, int], dict[str, Any]]]
    chosen: str
    mean_output_tokens: float

    def e2e_ms(self, name: str) -> float:
        """Mean end-to-end latency of candidate ``name`` in the twin, ms:
        TTFT + ITL x (mean output tokens - 1)."""
        v = self.candidates[name][1]
        return v["mean_ttft_ms"] + v["mean_itl_ms"] * max(self.mean_output_tokens - 1.0, 0.0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``loratwin place --advise --json``)."""
        return {
            "b_opt": self.b_opt, "max_num_seqs": self.max_num_seqs,
            "freed_gib": self.freed_gib, "gpu_memory_utilization": self.gpu_memory_utilization,
            "chosen": self.chosen,
            "candidates": {n: {"flags": f, "verified": v, "e2e_ms": self.e2e_ms(n)}
                           for n, (f, v) in self.candidates.items()},
        }

    def assignment(self, gpu: GpuAssignment) -> GpuAssignment:
        """The GPU with the chosen candidate's flags and verified metrics."""
        flags, verified = self.candidates[self.chosen]
        return dataclasses.replace(gpu, verified=verified, **flags)


def _sweep(problem: PlacementProblem, gpu: GpuAssignment, num_prompts: int, seed: int):
    import pandas as pd

    rng = np.random.default_rng(seed)
    adapters = list(gpu.adapters)
    idx = (np.arange(num_prompts) % len(adapters)).astype(np.int32)
    pin, pout = sample_lengths(gpu_lengths(problem, gpu), idx, [
        dataclasses.replace(a, mean_input_tokens=m[0], mean_output_tokens=m[1])
        for a, m in ((a, problem.mean_lengths(a)) for a in adapters)
    ], rng)
    req = Requests(np.zeros(num_prompts), idx, pin.astype(np.int32), pout.astype(np.int32))
    rows = []
    for b in SWEEP_BATCHES:
        if b > gpu.max_num_seqs:
            break
        server = problem.server(
            max_loras=gpu.max_loras, max_cpu_loras=gpu.max_cpu_loras,
            max_lora_rank=gpu.max_lora_rank, max_num_seqs=b,
            max_num_batched_tokens=max(2048, b),
        )
        if kv_capacity(problem.profile, gpu.max_loras, gpu.max_lora_rank, max_num_seqs=b,
                       gpu_memory_utilization=server.gpu_memory_utilization
                       ).failure is not None:
            continue
        row = sweep_row(problem.profile, server, len(adapters), req)
        row["model"] = problem.profile.name
        rows.append(row)
    return pd.DataFrame(rows)


def advise_gpu(
    problem: PlacementProblem, gpu: GpuAssignment, *, num_prompts: int = 2000, seed: int = 0,
    duration_s: float = 3600.0,
) -> GpuAdvice:
    """Advise ``max_num_seqs`` for one GPU and turn the freed memory into KV or slots.

    See the module docstring. Runs one twin sweep (closed runs) and up to three serving runs.
    """
    sweep = _sweep(problem, gpu, num_prompts, seed)
    adv = advise_max_num_seqs(sweep, "b")
    b_opt = int(adv.max_num_seqs)
    prof = problem.profile
    kv_needed_tokens = adv.memory.kv_used_gib * GIB / prof.arch.kv_bytes_per_token
    limit = problem.max_loras_limit(gpu.max_lora_rank)
    more = gpu.max_loras
    if len(gpu.adapters) > gpu.max_loras:
        for m in range(gpu.max_loras + 1, min(len(gpu.adapters), limit * 2) + 1):
            cap = kv_capacity(prof, m, gpu.max_lora_rank, max_num_seqs=b_opt)
            if cap.failure is not None or cap.tokens < kv_needed_tokens:
                break
            more = m
    flags = {
        "current": {"max_loras": gpu.max_loras, "max_num_seqs": gpu.max_num_seqs},
        "smaller batch": {"max_loras": gpu.max_loras, "max_num_seqs": b_opt},
    }
    if more > gpu.max_loras:
        flags["more slots"] = {"max_loras": more, "max_num_seqs": b_opt,
                               "max_cpu_loras": max(more, gpu.max_cpu_loras)}
    candidates: dict[str, tuple[dict[str, int], dict[str, Any]]] = {}
    for name, f in flags.items():
        cand = dataclasses.replace(gpu, **f)
        candidates[name] = (f, verify_gpu(problem, cand, duration_s=duration_s, seed=seed))
    healthy = [n for n, (_, v) in candidates.items() if is_healthy(v)]
    out_mean = float(np.mean([problem.mean_lengths(a)[1] for a in gpu.adapters]))
    advice = GpuAdvice(
        b_opt=int(adv.b_opt), max_num_seqs=b_opt, freed_gib=float(adv.memory.freed_gib),
        gpu_memory_utilization=float(adv.memory.gpu_memory_utilization),
        candidates=candidates, chosen="current", mean_output_tokens=out_mean,
    )
    order = {"more slots": 0, "smaller batch": 1, "current": 2}
    if healthy:
        chosen = min(healthy, key=lambda n: (advice.e2e_ms(n), order[n]))
        advice = dataclasses.replace(advice, chosen=chosen)
    return advice


def advise_placement(
    problem: PlacementProblem, placement: Placement, *, duration_s: float = 3600.0,
    seed: int = 0, n_jobs: int = 1, num_prompts: int = 2000,
) -> tuple[Placement, list[GpuAdvice]]:
    """:func:`advise_gpu` on every GPU (in parallel with joblib, GPU ``k`` seeded ``seed + k``).

    Returns
    -------
    The placement with each GPU's recommended flags and their twin verification, and the
    advice per GPU (same order).
    """
    advice = Parallel(n_jobs=n_jobs)(
        delayed(advise_gpu)(problem, g, num_prompts=num_prompts, seed=seed + k,
                            duration_s=duration_s)
        for k, g in enumerate(placement.servers)
    )
    servers = tuple(a.assignment(g) for a, g in zip(advice, placement.servers, strict=True))
    return dataclasses.replace(placement, servers=servers), list(advice)
