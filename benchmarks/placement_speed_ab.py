"""Placement speed of ``loratwin`` on the surrogate, this tree against another, in one run.

The machine is shared, so the trees are measured interleaved: every round places the
adapters of ``placement_speed.py`` (``--size`` adapters from the bundled Azure conversation
trace, ranks {8, 16, 32}, rates x n / 100; ``confirm_borderline=False``) once with each
tree, each in a fresh process, and prints wall and CPU seconds (``time.process_time`` of the
placing process) with the load average; the medians over the rounds and the CPU ratio
follow. Each process also prints a digest of its placement (GPU count, every GPU's adapters
and ``max_loras``), so that a speed-up that changes the placement shows.

Run (the previous commit exported to /tmp/prev)::

    git archive HEAD~1 | (mkdir -p /tmp/prev && tar -x -C /tmp/prev)
    python benchmarks/placement_speed_ab.py --baseline /tmp/prev/src --size 10000 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

CASE = """
import hashlib, time
from loratwin.placement.api import place
from loratwin.placement.predictor import SurrogatePredictor, make_problem
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.trace import load_azure_trace
pred = SurrogatePredictor.load("llama-3.1-8b-instruct")
ads = adapters_from_trace(load_azure_trace(), N, (8, 16, 32), N / 100.0, seed=0)
problem = make_problem(ads, "llama-3.1-8b-instruct", predictor=pred)
t0, c0 = time.perf_counter(), time.process_time()
p = place(problem, "loratwin", confirm_borderline=False)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
text = repr([(sorted((a.id, a.rate) for a in g.adapters), g.max_loras) for g in p.servers])
print(wall, cpu, p.gpus, hashlib.sha256(text.encode()).hexdigest()[:12])
"""


def one(src: Path, n: int) -> tuple[float, float, int, str]:
    env = {**os.environ, "PYTHONPATH": str(src), "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", f"N = {n}\n{CASE}"], env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), out[3]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="src/ of another tree")
    ap.add_argument("--size", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    runs = [("baseline", args.baseline), ("this tree", SRC)]
    cpu: dict[str, list[float]] = {name: [] for name, _ in runs}
    wall: dict[str, list[float]] = {name: [] for name, _ in runs}
    for k in range(args.rounds):
        for name, src in runs:
            load = os.getloadavg()[0]
            w, c, gpus, digest = one(src, args.size)
            wall[name].append(w)
            cpu[name].append(c)
            print(f"round {k + 1}: {name:9s} {args.size} adapters: {w:7.2f} s wall "
                  f"{c:6.2f} s CPU, load {load:4.1f}; {gpus} GPUs, placement {digest}",
                  flush=True)
    for name, _ in runs:
        print(f"{name:9s} median {statistics.median(wall[name]):.2f} s wall, "
              f"{statistics.median(cpu[name]):.2f} s CPU over {args.rounds} rounds")
    ratio = statistics.median(cpu["baseline"]) / statistics.median(cpu["this tree"])
    print(f"CPU ratio baseline / this tree: {ratio:.2f}x")


if __name__ == "__main__":
    main()
