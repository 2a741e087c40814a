"""Prediction speed of a surrogate (issue: <= 20 us per configuration in a batch of 10,000;
<= 1 ms for a single configuration).

A batch of 10,000 random configurations inside the training envelope is predicted with
``Surrogate.predict`` (all four targets plus the envelope flags); single configurations
with ``Surrogate.predict_one`` and ``Surrogate.predict_gpu`` (features from adapters).
Figures are medians over repeats.

Run: ``python benchmarks/surrogate_speed.py [--model NAME_OR_NPZ] [--n 10000]``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from loratwin.surrogate.model import Surrogate
from loratwin.workload.types import Adapter


def random_features(s: Surrogate, n: int, seed: int = 0) -> np.ndarray:
    """n configurations drawn uniformly (log-uniformly for wide ranges) in the envelope."""
    rng = np.random.default_rng(seed)
    lo, hi = s.envelope_min, s.envelope_max
    u = rng.random((n, len(lo)))
    wide = (lo > 0) & (hi > 10 * lo)
    x = lo + u * (hi - lo)
    x[:, wide] = np.exp(np.log(lo[wide]) + u[:, wide] * np.log(hi[wide] / lo[wide]))
    loras, served = 5, 6
    x[:, served] = np.round(x[:, served])
    x[:, loras] = np.minimum(np.round(x[:, loras]), x[:, served])
    return x


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="llama-3.1-8b-instruct")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()

    t0 = time.perf_counter()
    s = Surrogate.load(args.model)
    load_s = time.perf_counter() - t0
    sizes = {t: (m.ensemble.n_trees, m.ensemble.n_nodes, m.compiled.method)
             for t, m in s.models.items()}
    print(f"surrogate {args.model}: loaded in {load_s * 1e3:.0f} ms; trees / nodes / "
          f"evaluator per target: {sizes}")

    x = random_features(s, args.n)
    s.predict(x[:100])  # warm-up
    walls, cpus = [], []
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        s.predict(x)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    per = statistics.median(walls) / args.n * 1e6
    print(f"batch of {args.n:,}: median {statistics.median(walls) * 1e3:.1f} ms "
          f"(min {min(walls) * 1e3:.1f}) = {per:.2f} us per configuration (target <= 20 us); "
          f"CPU time {statistics.median(cpus) / args.n * 1e6:.2f} us")

    rows = [list(map(float, r)) for r in x[:2000]]
    for r in rows[:50]:
        s.predict_one(r)
    walls = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        for r in rows:
            s.predict_one(r)
        walls.append((time.perf_counter() - t) / len(rows))
    print(f"single configuration (predict_one, plain Python): median "
          f"{statistics.median(walls) * 1e6:.0f} us (min {min(walls) * 1e6:.0f} us; "
          f"target <= 1000 us)")

    adapters = [Adapter(f"a{i}", (8, 16, 32)[i % 3], (0.4, 0.2, 0.1)[i % 3]) for i in range(64)]
    walls = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        for _ in range(200):
            s.predict_gpu(adapters, 16)
        walls.append((time.perf_counter() - t) / 200)
    print(f"single GPU from 64 adapters (predict_gpu: features + predict_one): median "
          f"{statistics.median(walls) * 1e6:.0f} us")

    batch1 = [s.predict(x[i:i + 1]) for i in range(5)]
    del batch1
    walls = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        for i in range(200):
            s.predict(x[i:i + 1])
        walls.append((time.perf_counter() - t) / 200)
    print(f"single configuration through the numpy batch path: median "
          f"{statistics.median(walls) * 1e6:.0f} us (for comparison)")


if __name__ == "__main__":
    main()
