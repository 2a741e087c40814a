"""One entry point for every placement algorithm: :func:`place`.

Every algorithm has the signature ``(problem, *, seed, n_gpus) -> Placement`` and is listed in
:data:`ALGORITHMS`. ``loratwin`` (ours) additionally confirms borderline GPUs in the twin and
never returns more GPUs than ``paper-greedy``: when the papers' greedy placement needs fewer
GPUs, its adapter sets are re-sized with our ``max_loras`` search and, if every GPU is then
safe (surrogate, and twin for the borderline ones), that placement is returned instead.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from importlib import import_module

from loratwin.errors import ConfigError
from loratwin.placement.baselines import best_loras
from loratwin.placement.paper_greedy import place_paper_greedy
from loratwin.placement.prefix_search import SearchOptions, place_loratwin
from loratwin.placement.problem import PlacementProblem, group_rows
from loratwin.placement.types import GpuAssignment, Placement
from loratwin.placement.verify import is_healthy, verify_gpu

Algorithm = Callable[..., Placement]

#: Baselines live in their own modules, imported on first use: name -> "module:function".
_BASELINES: dict[str, str] = {
    "max-backbone": "loratwin.placement.baselines:place_max_backbone",
    "least-loaded": "loratwin.placement.baselines:place_least_loaded",
    "loraserve": "loratwin.placement.loraserve:place_loraserve",
    "dlora-proactive": "loratwin.placement.dlora:place_dlora_proactive",
    "random": "loratwin.placement.baselines:place_random",
}
ALGORITHMS: tuple[str, ...] = ("loratwin", "paper-greedy", *_BASELINES)


def twin_confirm(problem: PlacementProblem, duration_s: float, seed: int, margin: float = 0.0
                 ) -> Callable[[GpuAssignment], bool]:
    """A ``confirm`` callback: simulate the GPU in the twin; healthy = it starts and its
    throughput is at least (0.9 + margin) x the offered load (the papers' rule, plus a
    margin)."""
    def confirm(gpu: GpuAssignment) -> bool:
        v = verify_gpu(problem, gpu, duration_s=duration_s, seed=seed)
        return is_healthy(v) and v["total_throughput_tok_s"] >= (
            (0.9 + margin) * v["offered_throughput_tok_s"])
    return confirm


def resize_loras(problem: PlacementProblem, gpu: GpuAssignment, options: SearchOptions
                 ) -> tuple[GpuAssignment, bool]:
    """The same adapters with the best ``max_loras`` (safe under ``options``, then lowest
    predicted starvation probability, then lowest ITL), and whether that choice is safe."""
    adapters = list(gpu.adapters)
    ev = best_loras(problem, group_rows(problem, [adapters]), safe=options.safe)
    return (problem.assignment(adapters, int(ev.loras[0]), ev.pred, 0),
            bool(options.safe(ev.pred)[0]))


def place(
    problem: PlacementProblem,
    algorithm: str = "loratwin",
    *,
    seed: int = 0,
    n_gpus: int | None = None,
    options: SearchOptions | None = None,
    confirm_borderline: bool = True,
    confirm_duration_s: float = 1800.0,
) -> Placement:
    """Place ``problem.adapters`` with the named algorithm.

    Parameters
    ----------
    algorithm:
        One of :data:`ALGORITHMS`.
    seed:
        Seed of randomised algorithms and of the twin confirmations.
    n_gpus:
        GPUs available; a placement needing more raises :class:`ConfigError`.
    options:
        Margins and SLOs of ``loratwin``.
    confirm_borderline:
        Let ``loratwin`` check borderline GPUs in the twin (``confirm_duration_s`` windows).

    Raises
    ------
    ConfigError
        Unknown algorithm, or the workload needs more than ``n_gpus`` GPUs.
    """
    if algorithm == "paper-greedy":
        result = place_paper_greedy(problem)
    elif algorithm == "loratwin":
        result = _place_ours(problem, options or SearchOptions(), seed,
                             confirm_borderline, confirm_duration_s)
    elif algorithm in _BASELINES:
        module, func = _BASELINES[algorithm].split(":")
        result = getattr(import_module(module), func)(problem, seed=seed)
    else:
        raise ConfigError(
            f"unknown algorithm {algorithm!r} (one of {', '.join(ALGORITHMS)})", field="algorithm"
        )
    if n_gpus is not None and result.gpus > n_gpus:
        raise ConfigError(
            f"{algorithm} needs {result.gpus} GPUs, only {n_gpus} available", field="gpus"
        )
    return result


def _place_ours(problem: PlacementProblem, options: SearchOptions, seed: int,
                confirm_borderline: bool, confirm_duration_s: float) -> Placement:
    t0 = time.perf_counter()
    confirm = (twin_confirm(problem, confirm_duration_s, seed, options.twin_margin)
               if confirm_borderline else None)
    ours = place_loratwin(problem, options, confirm=confirm)
    greedy = place_paper_greedy(problem)
    if greedy.gpus < ours.gpus:
        checked = [resize_loras(problem, g, options) for g in greedy.servers]
        resized = [g for g, _ in checked]
        safe = all(ok for _, ok in checked) and all(
            confirm is None or g.predicted["starvation_probability"] < options.p_confirm
            or confirm(g)
            for g in resized
        )
        if safe:
            return Placement(
                "loratwin", tuple(resized), time.perf_counter() - t0,
                ("paper-greedy's adapter sets, re-sized", *greedy.notes),
            )
    return dataclasses.replace(ours, placement_s=time.perf_counter() - t0)
