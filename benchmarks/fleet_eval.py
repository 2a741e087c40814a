"""Mixed GPU-type fleets: cost per hour of ``place --gpu-types`` against the cheapest
single-type fleet on the evaluation workloads.

Types: the measured H100 64 GB (bundled Llama-3.1-8B profile and surrogate) and one or more
other types given as prior profiles (``loratwin profile prior``), whose surrogate is the
H100's carried over by the capacity ratio
(:class:`loratwin.placement.transfer.CapacityTransferPredictor`) unless a surrogate file is
given. Prices are the user's (``--price``; the defaults are illustrative on-demand prices
per GPU-hour, not measurements).

Workloads: the Azure trace setups and heavy-tailed synthetic ones of
``benchmarks/placement_eval.py`` (a subset: 128 and 512 adapters, rates x 4 and x 16, ranks
8/16/32; Zipf and log-normal rates over 100 adapters).

For each workload and GPU-type pair, :func:`loratwin.placement.fleet.place_fleet` places
the adapters on every single type and on the cost-greedy mixed fleet and returns the
cheapest. ``--confirm`` adds the twin confirmations of ``place`` (every GPU of a type with a
transferred surrogate is confirmed in that type's twin; slow); ``--verify`` simulates every
GPU of the chosen fleet in its type's twin (3,600 s windows).

Run (the prior profiles made first)::

    loratwin profile prior --hf-config llama-3.1-8b --gpu h200 -o h200.json
    loratwin profile prior --hf-config llama-3.1-8b --gpu l40s -o l40s.json
    OPENBLAS_NUM_THREADS=1 python benchmarks/fleet_eval.py --type H200=h200.json \\
        --type L40S=l40s.json
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from loratwin.placement.fleet import GpuType, place_fleet
from loratwin.placement.predictor import SurrogatePredictor, make_problem
from loratwin.placement.transfer import CapacityTransferPredictor
from loratwin.placement.verify import verify_gpu
from loratwin.profile.store import load_profile
from loratwin.surrogate.capacity import CapacityTable
from loratwin.workload.from_trace import adapters_from_trace
from loratwin.workload.trace import load_azure_trace
from loratwin.workload.types import Adapter

MODEL = "llama-3.1-8b-instruct"
PRICES = {"H100": 2.99, "H200": 3.79, "L40S": 1.29}


def workloads(profile) -> dict[str, list[Adapter]]:
    trace = load_azure_trace("azure-conv")
    out = {}
    for n in (128, 512):
        for mult in (4.0, 16.0):
            out[f"trace-81632-{n}-x{mult:g}"] = adapters_from_trace(trace, n, (8, 16, 32), mult,
                                                                    seed=0)
    rng = np.random.default_rng(1)
    per_req = profile.sharegpt_mean_input_tokens + profile.sharegpt_mean_output_tokens
    for kind in ("zipf", "lognormal"):
        w = 1.0 / np.arange(1, 101) ** 1.1 if kind == "zipf" else rng.lognormal(0, 2, 100)
        if kind == "zipf":
            rng.shuffle(w)
        rates = w / w.sum() * 8 * 20000.0 / per_req
        ranks = rng.choice((8, 16, 32), 100)
        out[f"{kind}-100"] = [Adapter(f"a{i:04d}", int(r), float(q))
                              for i, (r, q) in enumerate(zip(ranks, rates, strict=True))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--type", action="append", required=True,
                    help="NAME=PRIOR_PROFILE.json[,SURROGATE.npz], repeated")
    ap.add_argument("--price", action="append", default=[], help="NAME=COST_PER_HOUR")
    ap.add_argument("--confirm", action="store_true")
    ap.add_argument("--verify", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated workload names")
    args = ap.parse_args()
    prices = dict(PRICES)
    prices.update({k: float(v) for k, v in (p.split("=") for p in args.price)})
    h100 = load_profile(MODEL)
    ref = SurrogatePredictor.load(MODEL)
    others = {}
    for item in args.type:
        name, spec = item.split("=", 1)
        path, _, sur = spec.partition(",")
        prof = load_profile(path)
        pred = (SurrogatePredictor.load(sur) if sur else CapacityTransferPredictor(
            ref, ref.surrogate.capacity, CapacityTable.build(prof)))
        others[name] = (prof, pred, not sur)
    wls = workloads(h100)
    if args.only:
        wls = {k: v for k, v in wls.items() if k in args.only.split(",")}
    print("| workload | types | H100 alone | other alone | mixed fleet | chosen | saving |")
    print("|---|---|---:|---:|---:|---|---:|")
    t0 = time.perf_counter()
    for wname, ads in wls.items():
        for oname, (prof, pred, transferred) in others.items():
            types = [GpuType("H100", prices["H100"], None,
                             make_problem(ads, h100, predictor=ref)),
                     GpuType(oname, prices[oname], None, make_problem(ads, prof, predictor=pred),
                             confirm_all=transferred)]
            fleet = place_fleet(types, confirm_borderline=args.confirm)
            c = fleet.candidates
            single = min(c["single:H100"], c[f"single:{oname}"])
            mixed = min((v for k, v in c.items() if k.startswith("mixed")), default=math.inf)
            counts = ", ".join(f"{n} {t}" for t, n in sorted(fleet.counts().items()))
            starved = ""
            if args.verify:
                by = {t.name: t for t in types}
                bad = sum(1 for i, (t, g) in enumerate(zip(fleet.types, fleet.placement.servers,
                                                          strict=True))
                          if _starves(verify_gpu(by[t].problem, g, duration_s=3600.0, seed=i)))
                starved = f", twin: {bad} starved"
            print(f"| {wname} | H100 + {oname} | {c['single:H100']:.2f} | "
                  f"{c[f'single:{oname}']:.2f} | {mixed:.2f} | {counts}{starved} | "
                  f"{1 - fleet.cost_per_hour / single:.1%} |", flush=True)
    print(f"\nprices per GPU-hour: {prices}; twin confirmations: {args.confirm}; "
          f"wall time {time.perf_counter() - t0:.0f} s")


def _starves(v: dict) -> bool:
    return bool(v["starvation"] or v["memory_error"])


if __name__ == "__main__":
    main()
