"""A lower bound on the GPUs any placement needs, and the backbone capacity behind it.

**Backbone capacity** (:func:`backbone_capacity`): the twin's saturated throughput of the
model *without LoRA* (``ServerConfig(enable_lora=False)``, same ``max_num_seqs`` and token
budget as the placed servers) under an overloaded stream with the workload's own request
mix. Adapters are grouped into at most 16 length classes (quantile bins of their mean input
and mean output lengths); a class keeps its members' share of the traffic and their
rate-weighted mean lengths, so the workload's request-weighted means are exact and only 16
length models are fitted, however many adapters there are. All rates are scaled so that the
stream offers 1.25 x an analytic ceiling of the GPU (every step a full
``max_num_batched_tokens`` budget at the profile's base + per-token cost), about twice what
the GPU sustains. Requests are drawn as :mod:`loratwin.placement.verify` draws them for a
placed GPU (Poisson arrivals, :func:`~loratwin.placement.verify.gpu_lengths`). The window is
1,200 s (3% above a 300 s window, which loses more to requests cut by its end); the client
has no port limit, so that the server alone is the bottleneck. It is measured in every call,
never cached.

**Lower bound** (:func:`lower_bound`). A GPU that does not starve delivers at least 0.9 x its
offered load (the papers' starvation rule, :data:`STARVATION_FRACTION`). Under the twin's
cost model LoRA only adds work: LoRA kernels add to every step's time, GPU slots take KV cache
memory (smaller batches), adapter loads add stalls; none of them makes a step cheaper. So no
GPU serving LoRA adapters delivers more than the backbone capacity C, and a placement of the
whole workload (offered load O tok/s, adapters whole or split: splitting does not change the
work) needs at least ``ceil(0.9 x O / (C x (1 + slack)))`` GPUs. The slack (5%) covers the
sampling noise of one window and the mix of request lengths on a GPU differing from the
workload's (the bound assumes a GPU's capacity in tok/s does not exceed the workload-mix
capacity by more than that). Memory gives no bound beyond one GPU: adapters beyond the GPU
slots wait in the CPU cache (host memory, ``max_cpu_loras``), so any number of adapters fits
one GPU's memory; the KV model only caps ``max_loras`` per GPU, and
:class:`~loratwin.placement.problem.PlacementProblem` already rejects ranks that fit no GPU.

The bound is a bound *under the twin*: placements judged by the surrogate may undercut it
where the surrogate over-predicts capacity; the twin's verification then shows them starving.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from loratwin.placement.problem import STARVATION_FRACTION, PlacementProblem
from loratwin.placement.types import GpuAssignment
from loratwin.placement.verify import gpu_lengths
from loratwin.twin.config import ClientConfig
from loratwin.twin.simulate import simulate
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter

#: Relative slack on the backbone capacity in the lower bound (window noise, length mixes).
LOWER_BOUND_SLACK = 0.05
#: Offered load of the capacity run, as a multiple of the analytic ceiling.
OVERLOAD = 1.25
#: Quantile bins per length axis of the capacity run's request mix.
LENGTH_BINS = 4
#: Benchmark window of the capacity run, s.
CAPACITY_WINDOW_S = 1200.0


@dataclass(frozen=True)
class BackboneCapacity:
    """Saturated throughput of the model without LoRA on one GPU.

    Attributes
    ----------
    throughput_tok_s:
        Measured total (input + output) throughput, tok/s.
    offered_tok_s:
        Offered load of the overloaded stream, tok/s.
    mean_input_tokens, mean_output_tokens:
        Request-weighted mean lengths of the workload, tokens.
    duration_s:
        Benchmark window, s.
    """

    throughput_tok_s: float
    offered_tok_s: float
    mean_input_tokens: float
    mean_output_tokens: float
    duration_s: float


@dataclass(frozen=True)
class LowerBound:
    """A lower bound on the GPUs of any placement (see the module docstring).

    Attributes
    ----------
    gpus:
        The bound, ``max(throughput_gpus, memory_gpus)``.
    throughput_gpus:
        ``ceil(0.9 x offered / (capacity x (1 + slack)))`` (at least 1).
    memory_gpus:
        1: memory bounds adapters per GPU only through ``max_loras``.
    offered_tok_s:
        The workload's offered load, tok/s.
    capacity:
        The backbone capacity measurement.
    slack:
        Relative slack on the capacity.
    """

    gpus: int
    throughput_gpus: int
    memory_gpus: int
    offered_tok_s: float
    capacity: BackboneCapacity
    slack: float

    def describe(self) -> str:
        """One line: the bound and how it was obtained."""
        return (
            f"lower bound {self.gpus} GPU(s): 0.9 x {self.offered_tok_s:,.0f} tok/s offered / "
            f"({self.capacity.throughput_tok_s:,.0f} tok/s backbone capacity x "
            f"{1 + self.slack:g})"
        )


def _ceiling_tok_s(problem: PlacementProblem) -> float:
    """Analytic ceiling: every step a full token budget at base + per-token cost."""
    c = problem.profile.step
    budget = max(2048, problem.max_num_seqs)
    return budget / (c.base_s + c.per_token_s * budget)


def _length_classes(rates: np.ndarray, lengths: np.ndarray, bins: int = LENGTH_BINS
                    ) -> list[Adapter]:
    """The workload's request mix as at most ``bins**2`` pseudo-adapters.

    Adapters are classed by quantile bins of their log mean input and log mean output
    lengths; a class has its members' total rate and rate-weighted mean lengths (so the
    workload's request-weighted means are kept exactly). Fewer length fits than one per
    adapter keep the run fast for thousands of adapters.
    """
    cls = np.zeros(len(rates), np.int64)
    for col in (0, 1):
        x = np.log(lengths[:, col])
        edges = np.unique(np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1]))
        cls = cls * bins + np.searchsorted(edges, x, side="right")
    out = []
    for k in np.unique(cls):
        sel = cls == k
        q = rates[sel]
        w = q if q.sum() > 0 else np.ones_like(q)
        mi, mo = (float(np.average(lengths[sel, c], weights=w)) for c in (0, 1))
        out.append(Adapter(f"class-{k}", 8, float(q.sum()), mi, mo))
    return out


def backbone_capacity(problem: PlacementProblem, *, duration_s: float | None = None,
                      seed: int = 0) -> BackboneCapacity:
    """Saturated throughput of the backbone (no LoRA) at the workload's request mix.

    One twin simulation, described in the module docstring.

    Parameters
    ----------
    problem:
        The workload (its adapters' rate shares and mean lengths are the mix), profile and
        ``max_num_seqs``.
    duration_s:
        Benchmark window, s (default :data:`CAPACITY_WINDOW_S`).
    seed:
        Seed of the request draws.
    """
    duration_s = CAPACITY_WINDOW_S if duration_s is None else duration_s
    lengths = np.array([problem.mean_lengths(a) for a in problem.adapters], float)
    rates = np.array([a.rate for a in problem.adapters], float)
    if rates.sum() <= 0:  # no traffic: the mix is uniform over adapters
        rates = np.ones_like(rates)
    stream = _length_classes(rates, lengths)
    total_rate = float(rates.sum())
    mean_in = float(rates @ lengths[:, 0] / total_rate)
    mean_out = float(rates @ lengths[:, 1] / total_rate)
    target = OVERLOAD * _ceiling_tok_s(problem)
    scale = target / (total_rate * (mean_in + mean_out))
    stream = [dataclasses.replace(a, rate=a.rate * scale) for a in stream]
    gpu = GpuAssignment(tuple(stream), 1, 1, problem.slot_rank(max(a.rank for a in stream)))
    requests = generate_requests(stream, duration_s, ArrivalSpec(), gpu_lengths(problem, gpu),
                                 seed)
    server = problem.server(
        enable_lora=False, max_lora_rank=gpu.max_lora_rank, max_num_seqs=problem.max_num_seqs,
        max_num_batched_tokens=max(2048, problem.max_num_seqs),
    )
    m = simulate(problem.profile, server, stream, requests,
                 ClientConfig(duration_s=duration_s, max_ports=None)).metrics
    return BackboneCapacity(
        throughput_tok_s=float(m.total_throughput_tok_s),
        offered_tok_s=float(m.offered_throughput_tok_s),
        mean_input_tokens=float(mean_in), mean_output_tokens=float(mean_out),
        duration_s=float(duration_s),
    )


def lower_bound(problem: PlacementProblem, *, capacity: BackboneCapacity | None = None,
                slack: float = LOWER_BOUND_SLACK, seed: int = 0) -> LowerBound:
    """Fewest GPUs any placement of ``problem`` can use without starving (module docstring).

    Parameters
    ----------
    capacity:
        A backbone capacity already measured for this problem (else measured here).
    slack:
        Relative slack on the capacity (>= 0).
    seed:
        Seed of the capacity run.
    """
    cap = capacity or backbone_capacity(problem, seed=seed)
    offered = problem.offered_tok_s(problem.adapters)
    per_gpu = cap.throughput_tok_s * (1.0 + slack)
    # tiny relative epsilon: a workload at exactly k GPUs' worth must not round up to k + 1
    tp = max(1, math.ceil(STARVATION_FRACTION * offered / per_gpu * (1 - 1e-12)))
    return LowerBound(gpus=max(tp, 1), throughput_gpus=tp, memory_gpus=1,
                      offered_tok_s=offered, capacity=cap, slack=slack)
