"""Leave-one-profile-out of the universal surrogate without some of its inputs (ablation).

Trains the universal surrogate's throughput regressor and starvation classifier
(:mod:`loratwin.surrogate.universal_train`: ``gb-d5`` / ``gb-d4``) on the runs of
``loratwin surrogate universal`` with the measured profile and the priors calibrated on it
held out, as that command's leave-one-out does, but with columns of
:data:`~loratwin.surrogate.universal.UNIVERSAL_INPUTS` removed, and prints throughput SMAPE
(%) and starvation F1 on the held-out profile's runs for each variant. The variants are those
quoted in docs/prior.md ("What format 2 adds"): none of the five inputs of format 2, the
swap cycle in steps, with the visit requests, the operating point alone, all five.

Run (the runs of ``loratwin surrogate universal --jobs 2 --data DIR`` first; ~30 s per
variant on 2 cores)::

    python benchmarks/universal_inputs_ablation.py --data surrogate-data/universal
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

from loratwin.surrogate.dataset import load_dataset
from loratwin.surrogate.train import _fit, classification_scores, smape
from loratwin.surrogate.universal import UNIVERSAL_INPUTS, forward_target, inverse_target
from loratwin.surrogate.universal_build import (
    MEASURED,
    chunks_of,
    loo_training_names,
    training_profiles,
)
from loratwin.surrogate.universal_train import CLASSIFIER, REGRESSOR, _pool, prepare_rows

FORMAT_2 = ("cycle_over_window", "cycle_steps", "batch_fill", "batch_per_slot",
            "visit_requests")
VARIANTS: dict[str, tuple[str, ...]] = {
    "format-1 inputs": (),
    "+ cycle_steps": ("cycle_steps",),
    "+ cycle_steps, visit_requests": ("cycle_steps", "visit_requests"),
    "+ batch_fill, batch_per_slot": ("batch_fill", "batch_per_slot"),
    "+ all five (shipped)": FORMAT_2,
}
THROUGHPUT = "total_throughput_tok_s"


def held_out_scores(parts, profiles, keep: list[int]) -> dict[str, tuple[float, float]]:
    """(throughput SMAPE %, starvation F1) per held-out measured profile."""
    cut = [dataclasses.replace(p, inputs=p.inputs[:, keep]) for p in parts]
    by = {p.name: p for p in cut}
    out = {}
    for held in MEASURED:
        pooled = _pool([by[n] for n in loo_training_names(list(profiles), held) if n in by])
        test = by[held]
        z = forward_target(THROUGHPUT, pooled.targets[THROUGHPUT], pooled.x, pooled.scales)
        reg = _fit(REGRESSOR, False, 0, pooled.inputs, z)
        thr = smape(test.targets[THROUGHPUT],
                    inverse_target(THROUGHPUT, reg.predict(test.inputs), test.x, test.scales))
        clf = _fit(CLASSIFIER, True, 0, pooled.inputs, pooled.targets["starvation"].astype(bool))
        f1 = classification_scores(test.targets["starvation"].astype(bool),
                                   clf.predict(test.inputs).astype(bool))["f1"]
        out[held] = (thr, f1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("surrogate-data/universal"))
    args = ap.parse_args()
    profiles = training_profiles()
    parts = [prepare_rows(load_dataset(args.data / p.name, chunks_of(p)), p) for p in profiles]
    base = [i for i, n in enumerate(UNIVERSAL_INPUTS) if n not in FORMAT_2]
    print(f"{'inputs':<32} " + " ".join(f"{h[:22]:>28}" for h in MEASURED))
    for name, extra in VARIANTS.items():
        keep = sorted([*base, *(UNIVERSAL_INPUTS.index(e) for e in extra)])
        got = held_out_scores(parts, profiles, keep)
        cells = [f"thr {t:5.2f} %, F1 {f:.3f}" for t, f in (got[h] for h in MEASURED)]
        print(f"{name:<32} " + " ".join(f"{c:>28}" for c in cells), flush=True)
    runs = int(np.sum([len(p) for p in parts]))
    print(f"(throughput SMAPE and starvation F1 on the held-out profile's runs; {runs:,} runs)")


if __name__ == "__main__":
    main()
