"""The twin's own seed-to-seed noise: the floor under any surrogate's hold-out error.

A data-set row is one twin run with one seed. Near the starvation boundary (throughput just
around 0.9 x offered load) another seed can flip the label, so even a perfect surrogate of the
*expected* behaviour cannot score F1 = 1 against single runs. This script re-runs a random
sample of data-set points with a different seed and scores run 2 against run 1 with the same
figures as the hold-out (throughput SMAPE, starvation F1 / accuracy).

Run::

    python benchmarks/surrogate_noise_floor.py surrogate-data/llama-3.1-8b-instruct \
        --model llama-3.1-8b-instruct --points 200 --jobs 2
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from loratwin.profile.store import load_profile
from loratwin.surrogate.dataset import load_dataset
from loratwin.surrogate.point import GpuPoint, evaluate_point
from loratwin.twin.validate import smape


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--model", default="llama-3.1-8b-instruct")
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()

    profile = load_profile(args.model)
    df = load_dataset(Path(args.data)).usable()
    rows = df.sample(min(args.points, len(df)), random_state=args.seed)
    points = [GpuPoint.from_json(p) for p in rows["point"]]
    reruns = Parallel(n_jobs=args.jobs)(
        delayed(evaluate_point)(profile, dataclasses.replace(p, seed=p.seed + 1_000_003))
        for p in points
    )
    y1 = rows["starvation"].to_numpy(bool)
    y2 = np.array([r["starvation"] for r in reruns], bool)
    tp, fp, fn = int((y1 & y2).sum()), int((~y1 & y2).sum()), int((y1 & ~y2).sum())
    thr2 = np.array([r["total_throughput_tok_s"] for r in reruns])
    print(f"{len(rows)} data-set points of {args.data}, re-run with another seed")
    print(f"starving (run 1): {int(y1.sum())}")
    print(f"throughput SMAPE run 2 vs run 1: {smape(thr2, rows['total_throughput_tok_s']):.3f} %")
    print(f"starvation F1 run 2 vs run 1:    {2 * tp / (2 * tp + fp + fn):.3f}")
    print(f"starvation accuracy:             {float((y1 == y2).mean()):.3f}")


if __name__ == "__main__":
    main()
