"""Re-planning under 30 days of simulated drift: adapter moves and GPU-days of ``replan``
against placing from scratch every day, and starved GPUs in the twin.

Setup
-----
- Workloads: the bundled Azure LLM inference traces, conversation (rates x 8, about 60,000
  tok/s) and code (rates x 12, about 64,000 tok/s), 512 adapters each with ranks 8/16/32
  (``loratwin workload from-trace``, Dirichlet(0.5) popularity, seed 0), on the bundled
  Llama-3.1-8B profile and surrogate.
- Day 0: ``loratwin place`` (the ``loratwin`` algorithm with its twin confirmations); both
  fleets start from it.
- Each day (:func:`loratwin.workload.drift.drift_day`, one seeded generator per workload):
  5% of the adapters retired, 5% added (copies of drawn adapters under new ids), every other
  rate x a mean-one log-normal factor (sigma ``--sigma``, default 0.15).
- ``fresh``: ``place`` from scratch (same algorithm and confirmations). Its moves are
  counted after matching its GPUs to yesterday's fresh fleet for the most adapters kept
  (:func:`loratwin.placement.replan.match_gpus`), so renumbered GPUs are not moves.
- ``replan``: :func:`loratwin.placement.replan.replan` of yesterday's replanned fleet, capped
  at the fresh placement's GPU count (``--extra-gpus``, default 0), twin confirmations as
  ``place`` does.
- Every GPU of the replanned fleet is simulated in the twin each day (``--duration`` s,
  default 3,600 s, seed = the day); ``--verify-fresh`` does the same for the fresh fleet.
  A GPU is starved when the twin's throughput is below 0.9 x its offered load.

Run time: the twin runs dominate and most of a run's time is spent fitting each adapter's
length model (:meth:`BoundedHeavyTailed.solve`, a pure function of its parameters); this
script memoises that function within its own process, which changes no result. One day of
one workload is about 40 s of CPU. Records are cached per day in ``--cache`` (JSON lines),
so the run resumes and can be split by workload (``--only``).

Run::

    OPENBLAS_NUM_THREADS=1 python benchmarks/replan_drift.py            # both, 30 days
    OPENBLAS_NUM_THREADS=1 python benchmarks/replan_drift.py --only conv --days 10
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from loratwin.placement.api import CONFIRM_DURATION_S, place, twin_confirm
from loratwin.placement.deployed import DeployedPlacement, parse_deployed
from loratwin.placement.predictor import SurrogatePredictor, make_problem
from loratwin.placement.prefix_search import SearchOptions
from loratwin.placement.replan import count_moves, match_gpus, replan
from loratwin.placement.report import placement_dict
from loratwin.placement.types import Placement
from loratwin.placement.verify import verify_placement
from loratwin.profile.store import load_profile
from loratwin.workload.drift import DriftSpec, drift_day
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.heavy_tailed import BoundedHeavyTailed
from loratwin.workload.trace import load_azure_trace
from loratwin.workload.types import Adapter

MODEL = "llama-3.1-8b-instruct"
WORKLOADS = {"conv": ("azure-conv", 8.0), "code": ("azure-code", 12.0)}


def _memoise_length_solve() -> None:
    """Memoise BoundedHeavyTailed.solve in this process (a pure function of the frozen
    dataclass's fields; results unchanged)."""
    solve = BoundedHeavyTailed.solve
    BoundedHeavyTailed.solve = functools.lru_cache(maxsize=1500)(solve)  # type: ignore


def day_workloads(name: str, n: int, days: int, spec: DriftSpec, seed: int) -> list[list[Adapter]]:
    trace, mult = WORKLOADS[name]
    ads = adapters_from_trace(load_azure_trace(trace), n, (8, 16, 32), mult, seed=0)
    rng = np.random.default_rng([seed, list(WORKLOADS).index(name)])
    out = [ads]
    for d in range(1, days + 1):
        out.append(drift_day(out[-1], spec, rng, d))
    return out


def as_deployed(placement: Placement, names: list[str], adapters: list[Adapter]
                ) -> DeployedPlacement:
    doc = placement_dict(placement, {a.id: a.rate for a in adapters})
    for s, nm in zip(doc["servers"], names, strict=True):
        s["name"] = nm
    doc["model"] = MODEL
    return parse_deployed(doc)


def fresh_names(prev: DeployedPlacement, fresh: Placement) -> list[str]:
    match = match_gpus([set(s.adapters) for s in prev.servers],
                       [{a.id for a in g.adapters} for g in fresh.servers])
    taken = {prev.servers[m].name for m in match if m is not None}
    names, k = [], 0
    for m in match:
        if m is not None:
            names.append(prev.servers[m].name)
            continue
        while f"gpu-{k}" in taken:
            k += 1
        taken.add(f"gpu-{k}")
        names.append(f"gpu-{k}")
    return names


def restarts(prev: DeployedPlacement, nxt: DeployedPlacement) -> int:
    flags = {s.name: (s.max_loras, s.max_lora_rank, s.max_cpu_loras) for s in prev.servers}
    return sum(1 for s in nxt.servers if s.name in flags and flags[s.name] != (
        s.max_loras, s.max_lora_rank, s.max_cpu_loras))


def starved(problem, placement: Placement, duration: float, seed: int) -> list[int]:
    v = verify_placement(problem, placement, duration_s=duration, seed=seed)
    return [k for k, g in enumerate(v.servers)
            if g.verified["starvation"] or g.verified["memory_error"]]


def run_workload(name: str, args: argparse.Namespace, cache: Path) -> list[dict[str, Any]]:
    done = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            r = json.loads(line)
            if r["workload"] == name and r["sigma"] == args.sigma:
                done[r["day"]] = r
    profile = load_profile(MODEL)
    pred = SurrogatePredictor.load(MODEL)
    opts = SearchOptions()
    days = day_workloads(name, args.adapters, args.days,
                         DriftSpec(sigma=args.sigma), args.seed)
    records = []
    dep_r = dep_f = None
    for d, ads in enumerate(days):
        if d in done:
            r = done[d]
            dep_r, dep_f = parse_deployed(r["replan_doc"]), parse_deployed(r["fresh_doc"])
            records.append(r)
            continue
        t0 = time.perf_counter()
        problem = make_problem(ads, profile, predictor=pred)
        fresh = place(problem, seed=d, options=opts)
        t_fresh = time.perf_counter() - t0
        rec: dict[str, Any] = {"workload": name, "day": d, "sigma": args.sigma,
                               "adapters": len(ads), "fresh_gpus": fresh.gpus,
                               "fresh_s": t_fresh}
        if dep_r is None or dep_f is None:
            names = [f"gpu-{k}" for k in range(fresh.gpus)]
            new_r = new_f = as_deployed(fresh, names, ads)
            rec.update(replan_gpus=fresh.gpus, replan_moves=0, fresh_moves=0, strategy="day 0",
                       replan_restarts=0, fresh_restarts=0, replan_s=0.0)
            plan = fresh
        else:
            t1 = time.perf_counter()
            res = replan(problem, dep_r, fresh, options=opts,
                         confirm=twin_confirm(problem, CONFIRM_DURATION_S, d, opts.twin_margin),
                         extra_gpus=args.extra_gpus)
            rec["replan_s"] = time.perf_counter() - t1
            plan = res.placement
            new_r = as_deployed(plan, list(res.names), ads)
            new_f = as_deployed(fresh, fresh_names(dep_f, fresh), ads)
            rec.update(replan_gpus=plan.gpus, replan_moves=len(res.moves),
                       strategy=res.strategy, added=len(res.added), removed=len(res.removed),
                       fresh_moves=len(count_moves(dep_f.gpus_of(), new_f.gpus_of())),
                       replan_restarts=len(res.restarted_gpus),
                       fresh_restarts=restarts(dep_f, new_f),
                       new_gpus=len(res.new_gpus), freed_gpus=len(res.freed_gpus))
        t2 = time.perf_counter()
        rec["replan_starved"] = starved(problem, plan, args.duration, d)
        if args.verify_fresh:
            rec["fresh_starved"] = starved(problem, fresh, args.duration, d)
        rec["verify_s"] = time.perf_counter() - t2
        rec["replan_doc"] = {"model": MODEL, "servers": [
            dataclasses.asdict(s) | {"adapters": list(s.adapters), "traffic_share":
                                     list(s.shares), "ranks": list(s.ranks),
                                     "rates_req_s": list(s.rates_req_s)}
            for s in new_r.servers]}
        rec["fresh_doc"] = {"model": MODEL, "servers": [
            dataclasses.asdict(s) | {"adapters": list(s.adapters), "traffic_share":
                                     list(s.shares), "ranks": list(s.ranks),
                                     "rates_req_s": list(s.rates_req_s)}
            for s in new_f.servers]}
        with cache.open("a") as fh:
            fh.write(json.dumps(rec) + "\n")
        dep_r, dep_f = new_r, new_f
        records.append(rec)
        print(f"{name} day {d:2d}: fresh {rec['fresh_gpus']} GPUs {rec['fresh_moves']:4d} moves"
              f" | replan {rec['replan_gpus']} GPUs {rec['replan_moves']:4d} moves "
              f"({rec['strategy']}), starved {rec['replan_starved']} "
              f"[{time.perf_counter() - t0:.0f} s]", flush=True)
    return records


def report(name: str, records: list[dict[str, Any]]) -> None:
    days = [r for r in records if r["day"] > 0]
    fm = sum(r["fresh_moves"] for r in days)
    rm = sum(r["replan_moves"] for r in days)
    fg = sum(r["fresh_gpus"] for r in days)
    rg = sum(r["replan_gpus"] for r in days)
    st = sum(len(r["replan_starved"]) for r in days)
    fs = [len(r["fresh_starved"]) for r in days if "fresh_starved" in r]
    print(f"\n{name}: {len(days)} days of drift")
    print("| fleet | adapter moves | GPU-days | restarts | starved GPU-days (twin) |")
    print("|---|---:|---:|---:|---:|")
    print(f"| place from scratch | {fm:,} | {fg} | {sum(r['fresh_restarts'] for r in days)} | "
          f"{sum(fs) if fs else 'not verified'} |")
    print(f"| replan | {rm:,} | {rg} | {sum(r['replan_restarts'] for r in days)} | {st} |")
    ratio = fm / rm if rm else float("inf")
    print(f"moves: {ratio:.1f}x fewer; GPU-days: {rg / fg - 1:+.1%}; strategies: "
          f"{sorted({r['strategy'] for r in days})}; time per day (s): fresh "
          f"{np.mean([r['fresh_s'] for r in days]):.0f}, replan "
          f"{np.mean([r['replan_s'] for r in days]):.0f}, twin verification "
          f"{np.mean([r['verify_s'] for r in days]):.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--adapters", type=int, default=512)
    ap.add_argument("--sigma", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra-gpus", type=int, default=0)
    ap.add_argument("--duration", type=float, default=3600.0)
    ap.add_argument("--verify-fresh", action="store_true")
    ap.add_argument("--only", default="conv,code")
    ap.add_argument("--cache", type=Path, action="append",
                    help="JSON-lines cache (default replan-drift.jsonl); with --report-only, "
                         "repeatable")
    ap.add_argument("--report-only", action="store_true",
                    help="print the tables of the days in the cache(s), compute nothing")
    args = ap.parse_args()
    caches = args.cache or [Path("replan-drift.jsonl")]
    if args.report_only:
        recs = [json.loads(line) for c in caches for line in c.read_text().splitlines()]
        for n in args.only.split(","):
            days = sorted((r for r in recs if r["workload"] == n and r["sigma"] == args.sigma),
                          key=lambda r: r["day"])
            if days:
                report(n, days)
        return
    args.cache = caches[0]
    _memoise_length_solve()
    t0 = time.perf_counter()
    results = {n: run_workload(n, args, args.cache) for n in args.only.split(",")}
    for n, recs in results.items():
        report(n, recs)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
