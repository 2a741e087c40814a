"""One entry point for every placement algorithm: :func:`place`.

Every algorithm has the signature ``(problem, *, seed, n_gpus) -> Placement`` and is listed in
:data:`ALGORITHMS`. ``loratwin`` (ours, :mod:`.fewest`) additionally balances its GPUs for
latency, confirms borderline GPUs in the twin and never returns more GPUs than
``paper-greedy``: when the papers' greedy placement needs fewer
GPUs, its adapter sets are re-sized with our ``max_loras`` search and, if every GPU is then
safe (surrogate, and twin for the borderline ones), that placement is returned instead.
With twin confirmations on, the twin then checks the balanced spreads on one GPU fewer
(:func:`~loratwin.placement.portfolio.fewer_gpus`); with ``twin_search`` it makes the final
choice among that placement and the spreads on one GPU fewer and as many, and repairs the
worst GPU (:mod:`.portfolio`).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence
from importlib import import_module

from loratwin.errors import ConfigError
from loratwin.placement.balance import LatencyTarget
from loratwin.placement.baselines import resize_loras
from loratwin.placement.fewest import ConfirmMany, Objective, place_fewest
from loratwin.placement.paper_greedy import place_paper_greedy
from loratwin.placement.parallel import run_tasks
from loratwin.placement.portfolio import TwinJudge, fewer_gpus, improve
from loratwin.placement.prefix_search import SearchOptions
from loratwin.placement.problem import STARVATION_FRACTION, PlacementProblem
from loratwin.placement.types import GpuAssignment, Placement
from loratwin.placement.verify import is_healthy, verify_gpu_memo
from loratwin.workload.lengths import LengthFits

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
#: Window of a twin confirmation, s: the window of ``--verify`` and of the papers'
#: benchmark runs. The throughput of a GPU with a queue falls short of its offered load by
#: the work still queued at the end of the window, so the ratio depends on the window: the
#: 5 GPUs of ``trace-816-2000-x8`` (``benchmarks/placement_eval.py``, mean TTFT 213-246 s)
#: reach 0.91-0.93 x offered in 3,600 s (seeds 0 and 1) but 0.84-0.86 in 1,800 s. A
#: confirmation shorter than the verification window is therefore stricter than the rule
#: it stands for, by far more than the seed noise.
CONFIRM_DURATION_S = 3600.0
#: Objectives of ``loratwin`` (see :mod:`.fewest`).
OBJECTIVES: tuple[str, ...] = ("latency", "throughput")


def twin_confirm(problem: PlacementProblem, duration_s: float, seed: int, margin: float = 0.0,
                 *, jobs: int = 1, ray_address: str | None = None) -> ConfirmMany:
    """A batch ``confirm`` callback: simulate the GPUs in the twin (in parallel: joblib
    ``jobs`` or a Ray cluster); healthy = the server starts and its throughput is at least
    (0.9 + margin) x the offered load (the papers' rule, plus a margin).

    The callback keeps one :class:`~loratwin.workload.lengths.LengthFits` for all its calls:
    an adapter's length distribution is solved once however many candidate GPUs it is
    simulated on (the requests are the same as without the memo)."""
    fits = LengthFits()

    def confirm(gpus: Sequence[GpuAssignment]) -> list[bool]:
        res = run_tasks(verify_gpu_memo, [(problem, g, duration_s, seed, fits) for g in gpus],
                        jobs=jobs, ray_address=ray_address)
        for _, solved in res:
            if solved is not fits:  # solved in a worker process
                fits.update(solved)
        return [is_healthy(v) and v["total_throughput_tok_s"] >= (
            (STARVATION_FRACTION + margin) * v["offered_throughput_tok_s"]) for v, _ in res]
    return confirm


def confirm_chunk(jobs: int, ray_address: str | None) -> int:
    """GPUs confirmed per batch (0: all at once): as many as run in parallel locally, so
    that a layout is rejected after the first batch holding a rejected GPU."""
    if ray_address:
        return 0
    return jobs if jobs > 0 else max(1, os.cpu_count() or 1)


def place(
    problem: PlacementProblem,
    algorithm: str = "loratwin",
    *,
    seed: int = 0,
    n_gpus: int | None = None,
    options: SearchOptions | None = None,
    target: LatencyTarget | None = None,
    objective: Objective = "latency",
    confirm_borderline: bool = True,
    twin_search: bool = False,
    confirm_duration_s: float = CONFIRM_DURATION_S,
    jobs: int = 1,
    ray_address: str | None = None,
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
        Margins and hard SLOs of ``loratwin``.
    target, objective:
        ``loratwin``'s latency target and objective (see :mod:`.fewest`).
    confirm_borderline:
        Let ``loratwin`` check borderline GPUs in the twin (``confirm_duration_s`` windows),
        on ``jobs`` local processes or the Ray cluster at ``ray_address``, and check in the
        twin the portfolio's placements on one GPU fewer (:func:`.portfolio.fewer_gpus`).
    twin_search:
        With ``confirm_borderline``, let the twin choose ``loratwin``'s final placement
        among its own and balanced spreads on one GPU fewer and as many, then repair the
        worst GPU's TTFT (:mod:`.portfolio`; tens of twin runs of ``confirm_duration_s``).

    Raises
    ------
    ConfigError
        Unknown algorithm or objective, or the workload needs more than ``n_gpus`` GPUs.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r} (one of {', '.join(OBJECTIVES)})",
                          field="objective")
    if algorithm == "paper-greedy":
        result = place_paper_greedy(problem)
    elif algorithm == "loratwin":
        opts = options or SearchOptions()
        confirm = (twin_confirm(problem, confirm_duration_s, seed, opts.twin_margin,
                                jobs=jobs, ray_address=ray_address)
                   if confirm_borderline else None)
        judge = (TwinJudge(problem, confirm_duration_s, seed, jobs=jobs,
                           ray_address=ray_address)
                 if confirm_borderline else None)
        # one memo of surrogate answers for all of ours' searches (the twin runs get the
        # plain problem: workers need no memo)
        result = _place_ours(problem.with_memo(), opts, target or LatencyTarget(), objective,
                             confirm, confirm_chunk(jobs, ray_address), judge, twin_search)
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


def _place_ours(problem: PlacementProblem, options: SearchOptions, target: LatencyTarget,
                objective: Objective, confirm: ConfirmMany | None, chunk: int = 0,
                judge: TwinJudge | None = None, twin_search: bool = False) -> Placement:
    """``loratwin``: :func:`place_fewest`, the papers' greedy sets where they need fewer
    GPUs, then (with twin runs allowed) the twin's check of the portfolio's placements on
    fewer GPUs (:func:`~.portfolio.fewer_gpus`) or, with ``twin_search``, the whole
    twin-judged portfolio and repair of :mod:`.portfolio`."""
    t0 = time.perf_counter()
    result = _fewest_or_greedy(problem, options, target, objective, confirm, chunk)
    if judge is not None:
        step = improve if twin_search else fewer_gpus
        result = step(problem, result, judge, options, target, chunk)
    return dataclasses.replace(result, placement_s=time.perf_counter() - t0)


def _fewest_or_greedy(problem: PlacementProblem, options: SearchOptions,
                      target: LatencyTarget, objective: Objective,
                      confirm: ConfirmMany | None, chunk: int) -> Placement:
    t0 = time.perf_counter()
    ours = place_fewest(problem, options, target, objective=objective, confirm=confirm,
                        confirm_chunk=chunk)
    greedy = place_paper_greedy(problem)
    if greedy.gpus < ours.gpus:
        checked = [resize_loras(problem, g, options) for g in greedy.servers]
        resized = [g for g, _ in checked]
        border = [g for g in resized
                  if g.predicted["starvation_probability"] >= options.p_confirm]
        safe = all(ok for _, ok in checked) and (
            confirm is None or not border or all(confirm(border)))
        if safe:
            return Placement(
                "loratwin", tuple(resized), time.perf_counter() - t0,
                ("paper-greedy's adapter sets, re-sized", *greedy.notes),
            )
    return dataclasses.replace(ours, placement_s=time.perf_counter() - t0)
