"""Fuzz the installed ``loratwin`` script with malformed input (issue 9).

Draws cases from every generator in ``tests/fuzz/registry.py`` (round robin over the
commands, reproducible from ``--seed``), runs each through the console script in a fresh
folder and prints the verdict counts: tracebacks, internal errors, hangs, accepted bad inputs,
messages that are not one line, output files left behind. Target: all zero.

    python benchmarks/fuzz_cli.py --cases 1000 --seed 0 --workers 2
"""

from __future__ import annotations

import argparse
import collections
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, given, seed, settings  # noqa: E402
from tests.fuzz.cases import VERDICTS, Case, loratwin_script, run_case  # noqa: E402
from tests.fuzz.registry import REGISTRY, strategy  # noqa: E402


def draw_cases(name: str, n: int, rng_seed: int) -> list[Case]:
    """``n`` cases of one command from its Hypothesis strategy, reproducible from the seed."""
    out: list[Case] = []

    @seed(rng_seed)
    @settings(max_examples=n, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(strategy(name))
    def collect(case: Case) -> None:
        if len(out) < n:
            out.append(case)

    collect()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=90.0, help="hang limit per case, s")
    args = ap.parse_args()
    script = loratwin_script()
    if script is None:
        sys.exit("the loratwin console script is not installed (pip install -e .)")
    names = sorted(REGISTRY)
    per = -(-args.cases // len(names))
    cases = [c for k, n in enumerate(names) for c in draw_cases(n, per, args.seed + k)]
    random.Random(args.seed).shuffle(cases)
    cases = cases[: args.cases]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=args.workers) as pool:
        outcomes = list(pool.map(lambda c: run_case(c, script, args.timeout), cases))
    wall = time.perf_counter() - start
    counts = collections.Counter(o.verdict for o in outcomes)
    by_cmd = collections.Counter(o.case.command for o in outcomes)
    print(f"loratwin fuzz: {len(outcomes)} cases, seed {args.seed}, {len(names)} commands, "
          f"{wall:.0f} s wall ({args.workers} workers)")
    for v in VERDICTS:
        print(f"  {v:13s} {counts.get(v, 0):5d}")
    print(f"tracebacks {counts['traceback'] + counts['internal']} / hangs {counts['hang']} / "
          f"accepted bad inputs {counts['accepted']}")
    print("cases per command: " + ", ".join(f"{k} {v}" for k, v in sorted(by_cmd.items())))
    for o in outcomes:
        if o.verdict != "ok":
            print(f"[{o.verdict}] rc={o.returncode} {o.case.describe()}\n"
                  f"    {o.stderr.strip()[-300:]!r}")


if __name__ == "__main__":
    main()
