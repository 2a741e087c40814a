"""Whole-process time of ``loratwin`` against the engine's own time, this tree vs a baseline.

Issue 16: the saturated benchmark hour (256 adapters, ranks 8/16 and rates 1.6/0.8/0.4 req/s
cycled, ``max_loras`` 32) replayed from a trace CSV of ~862k arrivals::

    loratwin simulate --model llama-3.1-8b-instruct --adapters ad.csv --trace arr.csv \\
        --max-loras 32 --max-cpu-loras 256 --max-lora-rank 16 --duration 3600 --json o.json

For this tree and a baseline commit (checked out with ``git worktree``, default ``main``),
each in a fresh interpreter of the same environment (``PYTHONPATH=<tree>/src python -m
loratwin``), the script prints the process wall time, the engine's ``wall_s`` from the JSON
and their ratio (target <= 1.5), the start-up times of ``--help``, ``place --help`` and a
refused flag (target <= 0.4 s), and the ingest rate of the trace and adapter readers (target
>= 2 million rows/s including validation). Medians of ``--repeats`` runs; CPU time (user +
sys of the child) is printed beside wall time because a shared machine inflates wall time.

    python benchmarks/cli_process.py --repeats 3 --baseline main
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = "llama-3.1-8b-instruct"
SIMULATE = ["simulate", "--model", MODEL, "--adapters", "ad.csv", "--trace", "arr.csv",
            "--max-loras", "32", "--max-cpu-loras", "256", "--max-lora-rank", "16",
            "--duration", "3600", "--json", "o.json"]
STARTUP = {"--help": ["--help"], "place --help": ["place", "--help"],
           "refused flag": ["place", "x.csv", "--bogus"]}


def make_inputs(work: Path, seed: int) -> int:
    """ad.csv (256 adapters) and arr.csv (Poisson arrivals over 3600 s, the profile's
    ShareGPT lengths); returns the number of trace rows."""
    sys.path.insert(0, str(ROOT / "src"))
    from loratwin.profile.store import load_profile
    from loratwin.twin.runconfig import default_lengths
    from loratwin.workload.adapters import save_adapters_csv
    from loratwin.workload.spec import ArrivalSpec, generate_requests
    from loratwin.workload.trace import save_trace_csv
    from loratwin.workload.types import Adapter

    adapters = [Adapter(f"adapter-{i:03d}", (8, 16)[i % 2], (1.6, 0.8, 0.4)[i % 3])
                for i in range(256)]
    save_adapters_csv(adapters, work / "ad.csv")
    req = generate_requests(adapters, 3600.0, ArrivalSpec(),
                            default_lengths(load_profile(MODEL)), seed)
    save_trace_csv(req, [a.id for a in adapters], work / "arr.csv")
    return len(req)


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, int]:
    """(wall s, child CPU s, return code) of one process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL).returncode
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), rc


def measure(tree: Path, work: Path, repeats: int, pycache: Path | None) -> dict[str, float]:
    """Medians over ``repeats`` runs of ``tree``; ``pycache``: its bytecode cache folder
    (``None``: the environment's bytecode setting as is)."""
    import os

    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "COLUMNS": "100"}
    if pycache is not None:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    py = [sys.executable, "-m", "loratwin"]
    if timed([*py, *SIMULATE], work, env)[2] != 0:  # warm-up, untimed
        raise SystemExit(f"{tree}: simulate failed")
    out: dict[str, float] = {}
    walls, cpus, engines = [], [], []
    for _ in range(repeats):
        (work / "o.json").unlink(missing_ok=True)
        wall, cpu, rc = timed([*py, *SIMULATE], work, env)
        if rc != 0:
            raise SystemExit(f"{tree}: simulate failed (exit {rc})")
        walls.append(wall)
        cpus.append(cpu)
        engines.append(float(json.loads((work / "o.json").read_text())["wall_s"]))
    out.update(process_s=statistics.median(walls), process_cpu_s=statistics.median(cpus),
               engine_s=statistics.median(engines))
    for name, args in STARTUP.items():
        runs = [timed([*py, *args], work, env) for _ in range(max(3, repeats))]
        out[f"{name} wall"] = statistics.median(r[0] for r in runs)
        out[f"{name} cpu"] = statistics.median(r[1] for r in runs)
    return out


def ingest_rates(work: Path, rows: int, repeats: int) -> dict[str, float]:
    """Rows per CPU second (this process, all threads) of load_trace_csv on arr.csv and of
    load_adapters on a 1M-adapter CSV, this tree; the adapters reader also without building
    its one Python ``Adapter`` object per row."""
    from loratwin.workload.adapters import _csv_columns, load_adapters
    from loratwin.workload.trace import load_trace_csv

    big = work / "ad-1m.csv"
    with big.open("w") as fh:
        fh.write("id,rank,rate,mean_input_tokens,mean_output_tokens\n")
        fh.writelines(f"a{i},{(8, 16, 32)[i % 3]},{0.1 + (i % 7) * 0.05},{200 + i % 50},"
                      f"{40 + i % 9}\n" for i in range(1_000_000))
    rates = {}
    for name, fn, n in (("trace CSV", lambda: load_trace_csv(work / "arr.csv"), rows),
                        ("adapters CSV, read + checks", lambda: _csv_columns(big), 1_000_000),
                        ("adapters CSV, with Adapter objects", lambda: load_adapters(big),
                         1_000_000)):
        best = min(_seconds(fn) for _ in range(repeats))
        rates[name] = n / best
    return rates


def _seconds(fn: object) -> float:
    start = time.process_time()
    fn()  # type: ignore[operator]
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="main", help="git revision to compare with")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ingest-only", action="store_true", help="only the ingest rates")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help="run with the environment's bytecode setting (default: a cache "
                         "folder per tree, as an installed package has)")
    args = ap.parse_args()
    if args.ingest_only:
        with tempfile.TemporaryDirectory(prefix="loratwin-bench-") as tmp:
            rows = make_inputs(Path(tmp), args.seed)
            for name, rate in ingest_rates(Path(tmp), rows, args.repeats).items():
                print(f"ingest {name} (this tree): {rate / 1e6:.2f} million rows per CPU s")
        return
    with tempfile.TemporaryDirectory(prefix="loratwin-bench-") as tmp:
        tmp_path = Path(tmp)
        work, base_tree = tmp_path / "work", tmp_path / "baseline"
        work.mkdir()
        rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT,
                             check=True, capture_output=True, text=True).stdout.strip()
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), rev], cwd=ROOT,
                       check=True, capture_output=True)
        try:
            rows = make_inputs(work, args.seed)
            cache = None if args.no_bytecode_cache else tmp_path
            print(f"trace: {rows:,} arrivals, 256 adapters (seed {args.seed}); "
                  f"{args.repeats} repeats, medians; bytecode "
                  + ("as the environment says" if cache is None else "cached per tree"))
            results = {
                "this tree": measure(ROOT, work, args.repeats,
                                     cache and cache / "pyc-this"),
                f"baseline {args.baseline} ({rev})": measure(base_tree, work, args.repeats,
                                                              cache and cache / "pyc-base")}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT,
                           capture_output=True)
        print(f"{'':28s}{'process s':>10s}{'cpu s':>8s}{'engine s':>10s}{'ratio':>7s}")
        for name, r in results.items():
            print(f"{name:28s}{r['process_s']:10.2f}{r['process_cpu_s']:8.2f}"
                  f"{r['engine_s']:10.2f}{r['process_s'] / r['engine_s']:7.2f}")
        print(f"{'start-up (wall / cpu s)':28s}" + "".join(f"{k:>22s}" for k in STARTUP))
        for name, r in results.items():
            print(f"{name:28s}" + "".join(f"{r[k + ' wall']:>13.3f} / {r[k + ' cpu']:.3f}"
                                          for k in STARTUP))
        for name, rate in ingest_rates(work, rows, args.repeats).items():
            print(f"ingest {name} (this tree): {rate / 1e6:.2f} million rows per CPU s")


if __name__ == "__main__":
    main()
