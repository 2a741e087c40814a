"""Bit-for-bit A/B of the twin's engine: ``run_engine`` outcomes of this tree against another.

For a restructuring of the engine that must not change any result. Each tree runs the same
cases in a fresh process and pickles every field of the ``RawRun`` (but the wall time), the
per-step traces and the time series; the two are then compared exactly (NaN equals NaN).
Cases, for each release 0.8.5, 0.32, 0.33: the random servers and streams of
``tests/twin/test_engine_vs_reference.py`` (``--seeds`` of them) with tracing and time
series, without start-up loads for odd seeds, with unit step costs; and a 900 s saturated run
(256 adapters, ``max_loras`` 32 and 8) of ``twin_speed.py``'s workload.

Run (the previous commit exported to /tmp/prev)::

    git archive HEAD~1 | (mkdir -p /tmp/prev && tar -x -C /tmp/prev)
    python benchmarks/twin_engine_ab.py --baseline /tmp/prev/src --seeds 12

Exit status 1 if any case differs.
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

DUMP = """
import pickle, sys
from loratwin.profile.store import load_profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.engine import run_engine
from loratwin.twin.runconfig import default_lengths
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter
from tests.twin.stepcost import UnitStepCost
from tests.twin.test_engine_vs_reference import _random_case

prof = load_profile("llama-3.1-8b-instruct")
out = {}
def dump(raw):
    return {k: v for k, v in raw.__dict__.items() if k != "wall_s"}
for version in ("0.8.5", "0.32", "0.33"):
    for seed in range(SEEDS):
        server, ranks, req, client = _random_case(seed, version)
        tr = []
        raw = run_engine(prof, server, ranks, req, client, trace=tr, record_timeseries=True)
        out[(version, seed, "trace")] = (dump(raw), [repr(s) for s in tr])
        raw = run_engine(prof, server, ranks, req, client, preload=seed % 2 == 0)
        out[(version, seed, "preload")] = dump(raw)
        raw = run_engine(prof, server, ranks, req, client, cost=UnitStepCost(prof, server),
                         trace=[])
        out[(version, seed, "unit")] = dump(raw)
rates = (1.6, 0.8, 0.4)
adapters = [Adapter(f"a{i}", (8, 16)[i % 2], rates[i % 3]) for i in range(256)]
requests = generate_requests(adapters, 900.0, ArrivalSpec(), default_lengths(prof), 0)
for version in ("0.8.5", "0.32", "0.33"):
    for seqs, max_loras in ((2048, 32), (64, 8)):
        server = ServerConfig(max_loras=max_loras, max_cpu_loras=256, max_lora_rank=16,
                              max_num_seqs=seqs, max_num_batched_tokens=2048,
                              vllm_version=version)
        raw = run_engine(prof, server, [a.rank for a in adapters], requests,
                         ClientConfig(duration_s=900.0), record_timeseries=True)
        out[(version, seqs, "saturated")] = dump(raw)
pickle.dump(out, open(OUT, "wb"))
"""


def _dump(src: Path, seeds: int, out: Path) -> dict[Any, Any]:
    """Run the cases with `src` first on the path; return the pickled outcomes."""
    env = {**os.environ, "PYTHONPATH": f"{src}{os.pathsep}{ROOT}"}
    code = f"SEEDS = {seeds}\nOUT = {str(out)!r}\n{DUMP}"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=ROOT)
    with out.open("rb") as f:
        data: dict[Any, Any] = pickle.load(f)
    return data


def same(x: Any, y: Any) -> bool:
    """Exact equality of nested outcomes (arrays by shape, dtype and value; NaN == NaN)."""
    if isinstance(x, np.ndarray):
        return (isinstance(y, np.ndarray) and x.shape == y.shape and x.dtype == y.dtype
                and bool(np.array_equal(x, y, equal_nan=x.dtype.kind == "f")))
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
    if isinstance(x, list | tuple):
        return len(x) == len(y) and all(same(p, q) for p, q in zip(x, y, strict=True))
    if isinstance(x, float) and x != x:
        return isinstance(y, float) and y != y
    return bool(x == y)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", type=Path, required=True, help="src/ of the other tree")
    ap.add_argument("--seeds", type=int, default=12, help="random cases per release")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = _dump(args.baseline, args.seeds, Path(tmp) / "base.pkl")
        this = _dump(ROOT / "src", args.seeds, Path(tmp) / "this.pkl")
    if base.keys() != this.keys():
        sys.exit("the two trees ran different cases")
    differ = [k for k in base if not same(base[k], this[k])]
    for k in differ:
        print("differs:", k)
    print(f"{len(base)} cases, {len(differ)} differ")
    sys.exit(1 if differ else 0)


if __name__ == "__main__":
    main()
