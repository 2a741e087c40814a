"""Accuracy of the physics prior (``loratwin profile prior``) against measurements.

Prints every acceptance figure of the prior, each from the same code the CLI runs:

* ``loo``: leave one model out. The Qwen2.5-7B prior calibrated on the Llama profile only
  (``loratwin profile prior --hf-config qwen2.5-7b --gpu h100-64gb --calibrate-on
  llama-3.1-8b-instruct``) against Qwen's calibration runs, and the Llama-3.1-8B prior
  calibrated on Qwen only against Llama's: step latency (the duration of every engine-bound
  calibration run replayed in the twin, SMAPE), KV capacity at every measured
  (``max_loras``, ``max_lora_rank``) point, start-up failures, adapter load times;
* ``real``: the twin with the Qwen-calibrated Llama prior on the real Llama serving runs
  (``loratwin validate ... --model``): throughput SMAPE and starvation agreement;
* ``bca``: priors of OPT-1.3B, OPT-2.7B and Llama-2-7B on the H100 (default calibration)
  re-running the "Mind the Memory Gap" sweeps through ``loratwin advise --twin`` under the
  rules of the sweeps' release (``0.6.3``, V0 engine; constants from
  ``benchmarks/v0_host_fit.py``):
  throughput SMAPE per ``max_num_seqs`` and B_opt of the advisor's rules against the
  measured sweeps.

Usage::

    python benchmarks/prior_accuracy.py [--data ../shared/data] [--only loo,real,bca]
        [--bca-models opt-1.3b,opt-2.7b,llama-2-7b,llama-2-13b] [--hbm-gb-s 1638]
                                        [--jobs 2] [--json prior_accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from loratwin.advisor.advice import advise_sweep
from loratwin.advisor.rules import make_rule
from loratwin.calibrate.prior import build_prior, calibrate, default_calibration_profiles
from loratwin.calibrate.prior_check import (
    bca_twin_sweep,
    kv_errors,
    load_errors,
    replay_errors,
    smape,
)
from loratwin.calibrate.prior_gpu import load_gpu
from loratwin.calibrate.prior_model import load_model_spec
from loratwin.profile.store import load_profile, save_profile
from loratwin.twin.validate import summarise, validate_runs

LOO = (
    # (prior model, measured profile held out, calibrate-on profile)
    ("qwen2.5-7b", "qwen-2.5-7b-instruct", "llama-3.1-8b-instruct"),
    ("llama-3.1-8b", "llama-3.1-8b-instruct", "qwen-2.5-7b-instruct"),
)
BCA_MODELS = ("opt-1.3b", "opt-2.7b", "llama-2-7b")
GPU = "h100-64gb"


def _data_dir(arg: str | None) -> Path:
    for cand in ([Path(arg)] if arg else []) + [Path("../shared/data"), Path("/work/shared/data")]:
        if (cand / "profiles").is_dir():
            return cand
    sys.exit("error: measurement folder not found (pass --data ../shared/data)")


def loo_profiles(work: Path) -> dict[str, Path]:
    """Build the two leave-one-model-out priors; returns held-out profile -> prior path."""
    out = {}
    for model, held, cal in LOO:
        prior = build_prior(load_model_spec(model), load_gpu(GPU), calibrate([load_profile(cal)]))
        path = work / f"{held}-prior-calibrated-on-{cal}.json"
        save_profile(prior, path)
        out[held] = path
    return out


def run_loo(data: Path, priors: dict[str, Path]) -> dict:
    res: dict = {}
    for model, held, cal in LOO:
        prior = load_profile(priors[held])
        measured = load_profile(held)
        t0 = time.perf_counter()
        rep = replay_errors(prior, data / "profiles" / held)
        own = replay_errors(measured, data / "profiles" / held)
        kv = kv_errors(prior, measured)
        loads = load_errors(prior, measured)
        same, n = kv.startup_agreement
        entry = {
            "command": f"loratwin profile prior --hf-config {model} --gpu {GPU} "
                       f"--calibrate-on {cal} -o {held}-prior.json",
            "runs": len(rep),
            "step_latency_smape_pct": smape(rep.twin_duration_s, rep.duration_s),
            "itl_smape_pct": smape(rep.twin_mean_itl_ms, rep.mean_itl_ms),
            "measured_profile_step_latency_smape_pct": smape(own.twin_duration_s,
                                                             own.duration_s),
            "step_latency_smape_by_kind_pct": {
                k: smape(g.twin_duration_s, g.duration_s) for k, g in rep.groupby("kind")},
            "kv_max_abs_rel_err_pct": 100 * kv.max_abs_rel_err,
            "kv_points_within_3pct": int(sum(1 for r in kv.rows
                                             if np.isfinite(r[6]) and abs(r[6]) <= 0.03)),
            "kv_points_started": int(sum(1 for r in kv.rows if r[2] is not None)),
            "startup_outcome_agreement": f"{same}/{n}",
            "cpu_load_max_abs_rel_err_pct": 100 * float(loads.cpu_rel_err.abs().max()),
            "cpu_load_mean_ms": float(loads.cpu_ms.mean()),
            "measured_cpu_load_mean_ms": float(loads.measured_cpu_ms.mean()),
            "disk_load_max_abs_rel_err_pct": 100 * float(loads.disk_rel_err.abs().max()),
            "seconds": time.perf_counter() - t0,
        }
        res[f"{model} prior calibrated on {cal}"] = entry
    return res


def run_real(data: Path, priors: dict[str, Path], jobs: int) -> dict:
    path = priors["llama-3.1-8b-instruct"]
    runs = pd.read_csv(data / "real_runs" / "llama-3.1-8b-instruct.csv")
    t0 = time.perf_counter()
    out = validate_runs(runs, load_profile(path), seed=0, n_jobs=jobs)
    s = summarise(out)
    s["command"] = ("loratwin validate ../shared/data/real_runs/llama-3.1-8b-instruct.csv "
                    "--model qwen-calibrated-llama-prior.json")
    s["seconds"] = time.perf_counter() - t0
    return s


def _b_opt(frame: pd.DataFrame, rule: str, **kw: float | str) -> dict[str, float | None]:
    advices = advise_sweep(frame, make_rule(rule, **kw))
    return {a.key.label(): a.b_opt for a in advices}


def _grid_steps(grid: list[int], a: float | None, b: float | None) -> int | None:
    if a is None or b is None:
        return None
    ia = int(np.argmin([abs(g - a) for g in grid]))
    ib = int(np.argmin([abs(g - b) for g in grid]))
    return abs(ia - ib)


def run_bca(data: Path, work: Path, models: tuple[str, ...] = BCA_MODELS) -> dict:
    calib = calibrate(default_calibration_profiles())
    res: dict = {}
    for fixed in (False, True):
        measured = pd.read_csv(data / "bca" / ("batch_sweep_fixed_length.csv" if fixed
                                               else "batch_sweep_sharegpt.csv"))
        for model in models:
            prof = build_prior(load_model_spec(model), load_gpu(GPU), calib)
            path = work / f"{model}-prior.json"
            save_profile(prof, path)
            t0 = time.perf_counter()
            twin = bca_twin_sweep(path, measured, model, work, fixed_length=fixed)
            meas = measured[measured["model"] == model]
            keys = ["max_num_seqs", "output_len"] if fixed else ["max_num_seqs"]
            both = meas.merge(twin, on=keys, suffixes=("", "_twin"))
            name = f"{model} {'fixed-length' if fixed else 'sharegpt'}"
            entry: dict = {
                "rows": len(both),
                "throughput_smape_pct": smape(both.total_token_throughput_tok_s_twin,
                                              both.total_token_throughput_tok_s),
                "itl_smape_pct": smape(both.mean_itl_ms_twin, both.mean_itl_ms),
                # one running sequence: the fixed step cost and the weight read alone
                "itl_ms_at_max_num_seqs_1": {
                    "measured": float(both.mean_itl_ms[both.max_num_seqs == 1].mean()),
                    "twin": float(both.mean_itl_ms_twin[both.max_num_seqs == 1].mean()),
                },
                "seconds": time.perf_counter() - t0,
            }
            grid = sorted(int(b) for b in meas.max_num_seqs.unique())
            if fixed:
                rule = {"rule": "b"}
                bm = _b_opt(meas, "b")
                bt = _b_opt(twin, "b")
            else:
                rule = {"rule": "a", "eps": 0.1, "latency_factor": 2.0}
                bm = _b_opt(meas, "a", eps=0.1, latency_factor=2.0)
                bt = _b_opt(twin, "a", eps=0.1, latency_factor=2.0)
            entry["b_opt_rule"] = rule
            entry["b_opt"] = {k: {"measured": bm.get(k), "twin": bt.get(k),
                                  "grid_steps_apart": _grid_steps(grid, bm.get(k), bt.get(k))}
                              for k in bm}
            res[name] = entry
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=None, help="measurement folder (../shared/data)")
    ap.add_argument("--only", default="loo,real,bca", help="comma-separated parts")
    ap.add_argument("--jobs", type=int, default=1, help="processes for the real-run replays")
    ap.add_argument("--json", default=None, help="write the figures as JSON")
    ap.add_argument("--bca-models", default=",".join(BCA_MODELS),
                    help="comma-separated models of the bca part (llama-2-13b also has sweeps)")
    ap.add_argument("--hbm-gb-s", type=float, default=None,
                    help="what-if HBM bandwidth of the H100 64 GB, GB/s (default: the table's)")
    args = ap.parse_args()
    if args.hbm_gb_s is not None:
        global load_gpu
        import v0_host_fit

        v0_host_fit.set_hbm(args.hbm_gb_s)
        load_gpu = v0_host_fit.load_gpu
    data = _data_dir(args.data)
    parts = set(args.only.split(","))
    figures: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        priors = loo_profiles(work)
        if "loo" in parts:
            figures["leave_one_model_out"] = run_loo(data, priors)
            print(json.dumps(figures["leave_one_model_out"], indent=1, default=str), flush=True)
        if "real" in parts:
            figures["real_runs_llama_prior_calibrated_on_qwen"] = run_real(data, priors,
                                                                          args.jobs)
            print(json.dumps(figures["real_runs_llama_prior_calibrated_on_qwen"], indent=1,
                             default=str), flush=True)
        if "bca" in parts:
            figures["bca_sweeps"] = run_bca(data, work, tuple(args.bca_models.split(",")))
            print(json.dumps(figures["bca_sweeps"], indent=1, default=str), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
