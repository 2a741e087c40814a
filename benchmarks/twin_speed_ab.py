"""Wall time of the saturated benchmark hour of ``twin_speed.py``, this tree against another.

The machine is shared, so the two trees are measured in one run, interleaved: every round
runs the other tree's twin (vLLM 0.8.5 rules, the only ones it may know) and this tree's twin
under each release, each in a fresh process; the medians over the rounds are printed, of the
wall time and of the process CPU time (user + sys of the run; less disturbed by other load on
the machine than the wall time).

Run (the previous commit exported to /tmp/prev)::

    git archive HEAD~1 | (mkdir -p /tmp/prev && tar -x -C /tmp/prev)
    python benchmarks/twin_speed_ab.py --baseline /tmp/prev/src --rounds 5

``--baseline`` repeats; a tree that knows ``vllm_version`` runs under 0.8.5 and 0.32.
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
import time
from loratwin.profile.store import load_profile
from loratwin.twin import ClientConfig, ServerConfig, simulate
from loratwin.twin.runconfig import default_lengths
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter
profile = load_profile("llama-3.1-8b-instruct")
rates = (1.6, 0.8, 0.4)
adapters = [Adapter(f"a{i}", (8, 16)[i % 2], rates[i % 3]) for i in range(256)]
requests = generate_requests(adapters, 3600.0, ArrivalSpec(), default_lengths(profile), 0)
flags = dict(max_loras=32, max_cpu_loras=256, max_lora_rank=16, max_num_seqs=2048,
             max_num_batched_tokens=2048)
if VERSION is not None:
    flags["vllm_version"] = VERSION
server = ServerConfig(**flags)
t0 = time.perf_counter()
c0 = time.process_time()
res = simulate(profile, server, adapters, requests, ClientConfig(duration_s=3600.0))
print(time.perf_counter() - t0, res.metrics.total_throughput_tok_s, res.metrics.steps,
      time.process_time() - c0)
"""


def one(src: Path, version: str | None) -> tuple[float, float, int, float]:
    """``(wall s, throughput tok/s, steps, CPU s)`` of one run of the case in a fresh process."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    code = f"VERSION = {version!r}\n{CASE}"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), float(out[3])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, action="append",
                    help="src/ of another tree (repeatable)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    runs: list[tuple[str, Path, str | None]] = []
    for base in args.baseline:
        if (base / "loratwin" / "twin" / "release.py").is_file():  # knows vllm_version
            runs += [(f"{base} {v}", base, v) for v in ("0.8.5", "0.32")]
        else:
            runs.append((f"{base} (0.8.5)", base, None))
    runs += [("this tree 0.8.5", SRC, "0.8.5"), ("this tree 0.32", SRC, "0.32"),
             ("this tree 0.33", SRC, "0.33")]
    walls: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    cpus: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    facts: dict[str, tuple[float, int]] = {}
    for k in range(args.rounds):
        for name, src, version in runs:
            wall, thr, steps, cpu = one(src, version)
            walls[name].append(wall)
            cpus[name].append(cpu)
            facts[name] = (thr, steps)
            print(f"round {k + 1}: {name}: {wall:.2f} s wall, {cpu:.2f} s CPU", flush=True)
    for name, _, _ in runs:
        thr, steps = facts[name]
        print(f"{name:34s} median {statistics.median(walls[name]):.2f} s "
              f"(min {min(walls[name]):.2f}) wall, CPU median "
              f"{statistics.median(cpus[name]):.3f} s (min {min(cpus[name]):.3f}) over "
              f"{args.rounds} rounds; {thr:,.0f} tok/s, {steps:,} steps")


if __name__ == "__main__":
    main()
