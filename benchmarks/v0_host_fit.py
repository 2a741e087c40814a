"""Fit the V0 engine's host constants on one model's measured batch sweep, score the others.

The V0 release rules (``loratwin.twin.vllm_0_6_3.model_runner``) add ``host_step_s`` per
engine step and ``host_per_seq_s`` per scheduled sequence to the prior's step cost. This script
re-runs the "Mind the Memory Gap" ShareGPT sweeps (``../shared/data/bca``) through
``advise --twin``'s code path with the priors of OPT-1.3B, OPT-2.7B, Llama-2-7B and
Llama-2-13B on the H100 64 GB (default calibration) over a grid of the two constants, picks
for each model the pair with the lowest throughput SMAPE on that model's sweep alone, and every
model's SMAPE at that pair: the other models are held out (leave-one-model-out).

Usage::

    python benchmarks/v0_host_fit.py [--data ../shared/data] [--json v0_host_fit.json]
        [--step-ms -0.5,0,0.5] [--per-seq-us 40,45,50] [--hbm-gb-s 1638]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import tempfile
from pathlib import Path

import pandas as pd

import loratwin.calibrate.prior_fit as prior_fit
import loratwin.twin.vllm_0_6_3 as v0
from loratwin.calibrate.prior import build_prior, calibrate, default_calibration_profiles
from loratwin.calibrate.prior_check import bca_twin_sweep, smape
from loratwin.calibrate.prior_gpu import GpuSpec, load_gpu
from loratwin.calibrate.prior_model import load_model_spec
from loratwin.profile.store import save_profile

MODELS = ("opt-1.3b", "opt-2.7b", "llama-2-7b", "llama-2-13b")
STEP_MS = (-0.5, -0.25, 0.0, 0.25, 0.5)
PER_SEQ_US = tuple(range(40, 85, 5))


def set_host(step_s: float, per_seq_s: float) -> None:
    """Replace the V0 release's host constants in this process (for the grid only)."""
    runner = dataclasses.replace(v0.RULES.model_runner, host_step_s=step_s,
                                 host_per_seq_s=per_seq_s)
    v0.RULES = dataclasses.replace(v0.RULES, model_runner=runner)


def set_hbm(gb_s: float) -> None:
    """Give the H100 64 GB ``gb_s`` GB/s of HBM bandwidth in this process (a what-if of the
    GPU table's inferred figure): the calibration fit and the priors both see it."""
    def patched(gpu: GpuSpec) -> GpuSpec:
        if gpu.name != "h100-64gb":
            return gpu
        return gpu.model_copy(update={"hbm_bandwidth_gb_s": gb_s})

    of_profile = prior_fit.gpu_of_profile
    prior_fit.gpu_of_profile = lambda text: patched(of_profile(text))
    global load_gpu
    load_one = load_gpu
    load_gpu = lambda name: patched(load_one(name))  # noqa: E731


def sweep_smape(path: Path, measured: pd.DataFrame, model: str, work: Path) -> float:
    """Throughput SMAPE (%) of the twin against the measured sweep of ``model``."""
    twin = bca_twin_sweep(path, measured, model, work, fixed_length=False)
    both = measured[measured["model"] == model].merge(twin, on="max_num_seqs",
                                                      suffixes=("", "_twin"))
    return smape(both.total_token_throughput_tok_s_twin, both.total_token_throughput_tok_s)


def leave_one_out(grid: dict[str, dict[str, float]]) -> dict[str, dict]:
    """For every model: the grid pair fitted on it alone, and every model's SMAPE there."""
    out = {}
    for fit in grid:
        best = min(grid[fit], key=grid[fit].__getitem__)
        s_ms, q_us = (float(x) for x in best.split(","))
        out[fit] = {"host_step_ms": s_ms, "host_per_seq_us": q_us,
                    "throughput_smape_pct": {m: grid[m][best] for m in grid}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data", help="measurement folder")
    ap.add_argument("--json", default=None, help="write the grid and the result as JSON")
    ap.add_argument("--step-ms", default=",".join(map(str, STEP_MS)),
                    help="comma-separated per-step host costs of the grid, ms")
    ap.add_argument("--per-seq-us", default=",".join(map(str, PER_SEQ_US)),
                    help="comma-separated per-sequence host costs of the grid, us")
    ap.add_argument("--hbm-gb-s", type=float, default=None,
                    help="what-if HBM bandwidth of the H100 64 GB, GB/s (default: the table's)")
    args = ap.parse_args()
    step_ms = [float(x) for x in args.step_ms.split(",")]
    per_seq_us = [float(x) for x in args.per_seq_us.split(",")]
    sweep_csv = Path(args.data) / "bca" / "batch_sweep_sharegpt.csv"
    if not sweep_csv.is_file():
        sys.exit(f"error: {sweep_csv} not found (pass --data ../shared/data)")
    measured = pd.read_csv(sweep_csv)
    if args.hbm_gb_s is not None:
        set_hbm(args.hbm_gb_s)
    calib = calibrate(default_calibration_profiles())
    original = v0.RULES
    grid: dict[str, dict[str, float]] = {m: {} for m in MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        paths = {}
        for m in MODELS:
            paths[m] = work / f"{m}.json"
            save_profile(build_prior(load_model_spec(m), load_gpu("h100-64gb"), calib), paths[m])
        try:
            for s_ms, q_us in itertools.product(step_ms, per_seq_us):
                set_host(s_ms * 1e-3, q_us * 1e-6)
                for m in MODELS:
                    grid[m][f"{s_ms},{q_us}"] = sweep_smape(paths[m], measured, m, work)
                print(s_ms, q_us, {m: round(grid[m][f"{s_ms},{q_us}"], 2) for m in MODELS},
                      flush=True)
        finally:
            v0.RULES = original
    result = leave_one_out(grid)
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps({"leave_one_model_out": result, "grid": grid},
                                              indent=1) + "\n")


if __name__ == "__main__":
    main()
