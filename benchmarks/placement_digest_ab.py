"""Do two trees place alike? Digests of every algorithm's placement on a few workloads.

A speed-up of the placement layer or of the surrogate should leave every answer as it was.
This script places, with each tree (``--baseline`` and this one, each in a fresh process),
the adapters of several workloads with several algorithms on the bundled Llama surrogate
(surrogate only: ``confirm_borderline=False``) and prints, per (workload, algorithm), the GPU
count and a digest of the whole result: every GPU's adapters with their rates, its
``max_loras`` and its predicted figures (``GpuAssignment.predicted``), and the latency
trade-off. Then it lists the pairs whose digests differ ("identical" when none).

Workloads: the bundled example ``examples/azure-conv-512.csv`` and adapters synthesised from
the bundled Azure conversation trace (:func:`loratwin.workload.from_trace.adapters_from_trace`,
seed 1): 300 adapters x8 and 1,000 x10 with ranks {8, 16, 32}, 2,000 x20 with ranks {8, 16},
5,000 x50 with ranks {8, 16, 32}.

Run (the previous commit exported to /tmp/prev)::

    git archive HEAD~1 | (mkdir -p /tmp/prev && tar -x -C /tmp/prev)
    python benchmarks/placement_digest_ab.py --baseline /tmp/prev/src
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

CASE = """
import hashlib
from loratwin.placement.api import place
from loratwin.placement.predictor import SurrogatePredictor, make_problem
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.trace import load_azure_trace
pred = SurrogatePredictor.load("llama-3.1-8b-instruct")
trace = load_azure_trace()
cases = [("example-512", EXAMPLE)]
for n, ranks, mult in [(300, (8, 16, 32), 8.0), (1000, (8, 16, 32), 10.0),
                       (2000, (8, 16), 20.0), (5000, (8, 16, 32), 50.0)]:
    cases.append((f"trace-{n}-x{mult:g}", adapters_from_trace(trace, n, ranks, mult, seed=1)))
for name, ads in cases:
    if ONLY and name not in ONLY:
        continue
    problem = make_problem(ads, "llama-3.1-8b-instruct", predictor=pred)
    for alg in ALGORITHMS:
        p = place(problem, alg, confirm_borderline=False)
        text = repr([(sorted((a.id, a.rate) for a in g.adapters), g.max_loras,
                      sorted(g.predicted.items())) for g in p.servers]) + repr(p.tradeoff)
        print(name, alg, p.gpus, hashlib.sha256(text.encode()).hexdigest()[:12], flush=True)
"""


def digests(src: Path, algorithms: list[str], only: list[str]) -> dict[tuple[str, str], str]:
    """(workload, algorithm) -> 'GPUs digest' of the tree whose src/ is ``src``."""
    env = {**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    head = (f"EXAMPLE = {str(ROOT / 'examples' / 'azure-conv-512.csv')!r}\n"
            f"ALGORITHMS = {algorithms!r}\nONLY = {only!r}\n")
    out = subprocess.run([sys.executable, "-c", head + CASE], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    return {(w, a): f"{g} {d}" for w, a, g, d in (line.split() for line in out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="src/ of another tree")
    ap.add_argument("--algorithms", default="loratwin,dlora-proactive,least-loaded,paper-greedy")
    ap.add_argument("--only", default="", help="comma list of workload names (default: all)")
    args = ap.parse_args()
    algorithms = args.algorithms.split(",")
    only = [w for w in args.only.split(",") if w]
    base = digests(args.baseline, algorithms, only)
    this = digests(SRC, algorithms, only)
    print(f"{'workload':<18} {'algorithm':<16} {'baseline':<18} {'this tree':<18}")
    for key in base:
        print(f"{key[0]:<18} {key[1]:<16} {base[key]:<18} {this.get(key, '-'):<18}")
    differ = [k for k in base if base[k] != this.get(k)]
    print("identical" if not differ and base.keys() == this.keys() else
          f"differ: {', '.join(f'{w}/{a}' for w, a in differ)}")


if __name__ == "__main__":
    main()
