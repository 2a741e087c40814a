"""Placement speed: wall time to place 1,000 and 10,000 adapters (surrogate only).

Targets (issues): 1,000 adapters in <= 1 s and 10,000 in <= 10 s for ``loratwin``, measured
without twin confirmations (``api.place(..., confirm_borderline=False)``) and without
``--verify``; with ``--confirm-sizes 2000`` also a ``place`` with twin confirmations of
borderline GPUs and the twin-judged portfolio and repair (``placement/portfolio.py``) on
``--jobs`` processes (target: 2,000 adapters in <= 120 s on 2 cores).
Baselines are timed too (their time includes the lower bound's one twin run, about 0.4 s,
which seeds their search over N).

The machine may be shared: the script prints the load average (``os.getloadavg``) before
each timing and, besides the wall time, the CPU time of this process
(``time.process_time``; twin runs in worker processes are not in it), which a busy machine
inflates much less than the wall time.

Workload: adapters synthesised from the bundled Azure conversation trace
(:func:`loratwin.workload.from_trace.adapters_from_trace`, ranks {8, 16, 32}, Dirichlet 0.5
popularity) with the trace's rates multiplied by ``n / 100``, so that the load grows with the
adapter count (about 5 GPUs per 1,000 adapters).

Run::

    python benchmarks/placement_speed.py                       # loratwin, 1,000 and 10,000
    python benchmarks/placement_speed.py --algorithms all --sizes 1000
    python benchmarks/placement_speed.py --surrogate path/to/surrogate.npz --profile
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

from loratwin.placement.api import ALGORITHMS, place
from loratwin.placement.predictor import SurrogatePredictor, make_problem
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.trace import load_azure_trace

TARGET_S = {1000: 1.0, 10000: 10.0}
CONFIRM_TARGET_S = 120.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b-instruct")
    ap.add_argument("--surrogate", default=None, help="surrogate .npz (default: bundled)")
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--algorithms", default="loratwin", help="comma list or 'all'")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--profile", action="store_true", help="cProfile the loratwin runs")
    ap.add_argument("--confirm-sizes", default="", help="sizes timed with twin confirmations")
    ap.add_argument("--jobs", type=int, default=2, help="twin processes for --confirm-sizes")
    args = ap.parse_args()

    algorithms = list(ALGORITHMS) if args.algorithms == "all" else args.algorithms.split(",")
    trace = load_azure_trace()
    source = args.surrogate or f"bundled {args.model}"
    pred = SurrogatePredictor.load(args.surrogate or args.model)
    print(f"surrogate: {source}")
    print(f"{'adapters':>9} {'algorithm':<16} {'GPUs':>5} {'best s':>8} {'CPU s':>7} "
          f"{'target s':>9} {'load':>5}")
    for n in (int(x) for x in args.sizes.split(",") if x):
        ads = adapters_from_trace(trace, n, (8, 16, 32), n / 100.0, seed=0)
        problem = make_problem(ads, args.model, predictor=pred)
        for alg in algorithms:
            times, cpus = [], []
            load = os.getloadavg()[0]
            for _ in range(args.repeat if alg == "loratwin" else 1):
                t0, c0 = time.perf_counter(), time.process_time()
                p = place(problem, alg, confirm_borderline=False)
                times.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
            target = TARGET_S.get(n) if alg == "loratwin" else None
            flag = "" if target is None else (" ok" if min(times) <= target else " MISSED")
            print(f"{n:>9} {alg:<16} {p.gpus:>5} {min(times):>8.3f} {min(cpus):>7.2f} "
                  f"{'-' if target is None else f'{target:.1f}':>9} {load:>5.1f}{flag}",
                  flush=True)
            if args.profile and alg == "loratwin":
                prof = cProfile.Profile()
                prof.enable()
                place(problem, alg, confirm_borderline=False)
                prof.disable()
                pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
    for n in (int(x) for x in args.confirm_sizes.split(",") if x):
        ads = adapters_from_trace(trace, n, (8, 16, 32), n / 100.0, seed=0)
        problem = make_problem(ads, args.model, predictor=pred)
        load = os.getloadavg()[0]
        t0, c0 = time.perf_counter(), time.process_time()
        p = place(problem, "loratwin", jobs=args.jobs)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        runs = "; ".join(x for x in p.notes
                         if x.startswith(("twin confirmations", "portfolio", "fewer GPUs")))
        flag = " ok" if wall <= CONFIRM_TARGET_S else " MISSED"
        print(f"{n:>9} {'loratwin+twin':<16} {p.gpus:>5} {wall:>8.3f} {cpu:>7.2f} "
              f"{CONFIRM_TARGET_S:>9.1f} {load:>5.1f}{flag} "
              f"({runs or 'no twin run'}, --jobs {args.jobs})",
              flush=True)


if __name__ == "__main__":
    main()
