"""Constants of the serving path that no calibration sweep identifies, fitted on serving runs.

The calibration sweeps (``profile fit``) measure closed benchmarks: decode-only steps with
LoRA at 220-250 sequences and ``max_loras`` 300, pure prefill steps without LoRA, and a few
mixed runs. Three effects of the serving runs are outside what they can separate:

* ``lora_eager_layer_s``: a step of more than 512 tokens runs outside CUDA graphs, and each
  layer launches its LoRA Triton kernels from Python (vLLM's punica wrapper, two kernels per
  LoRA module); this launch cost, per layer and step, is CPU work on the critical path;
* ``split_k_fixed_fraction``: below 128 tokens ``lora_shrink`` splits K 64 ways instead of 8;
  each extra block does 1/8 of a regular block's loop, and costs this fraction of one;
* ``frontend_latency_s``: what the API server and the client add to TTFT (HTTP, tokenisation,
  de-tokenisation and streaming of the first token).

They are machine and vLLM constants, not model constants (the eager cost is per layer), so
they are fitted once on the development serving runs (``real_runs/<model>.csv``) and used
for every profile. :func:`calibrate_serving` grid-searches the first two on the SMAPE of ITL
plus throughput and sets the third to the median TTFT gap of the unsaturated runs, and reports
a leave-one-group-out cross-validation (each run group held out in turn).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from loratwin.errors import DataError

_FILE = "serving_constants.json"


class ServingConstants(BaseModel):
    """The three serving constants (see the module docstring), with their provenance."""

    model_config = ConfigDict(frozen=True)

    lora_eager_layer_s: float = Field(ge=0.0)
    split_k_fixed_fraction: float = Field(ge=0.0, le=1.0)
    frontend_latency_s: float = Field(ge=0.0)
    source: str = ""
    report: dict[str, float | int | str] = Field(default_factory=dict)


def load_serving_constants(path: Path | None = None) -> ServingConstants:
    """The bundled constants (``profile/bundled/serving_constants.json``) or a given file."""
    if path is None:
        text = (resources.files("loratwin.profile.bundled") / _FILE).read_text()
    else:
        if not Path(path).is_file():
            raise DataError(f"file not found: {path}")
        text = Path(path).read_text()
    return ServingConstants.model_validate_json(text)


def save_serving_constants(constants: ServingConstants, path: Path) -> None:
    """Write the constants as indented JSON."""
    path.write_text(constants.model_dump_json(indent=1) + "\n")


def _score(results: pd.DataFrame, rows: Sequence[int] | None = None) -> float:
    from loratwin.twin.validate import smape

    r = results if rows is None else results[results["row"].isin(rows)]
    ok = r[(r["status"] == "ok") & ~r["memory_error"]]
    return smape(ok["twin_mean_itl_ms"], ok["real_mean_itl_ms"]) + smape(
        ok["twin_total_throughput_tok_s"], ok["real_total_throughput"]
    )


def calibrate_serving(
    profile_for: Callable[[float, float, float], object],
    runs: pd.DataFrame,
    *,
    eager_grid: Sequence[float],
    fraction_grid: Sequence[float],
    n_jobs: int = 1,
    seed: int = 0,
    on_point: Callable[[int, int], None] | None = None,
) -> ServingConstants:
    """Grid search of the eager launch cost and split-K fraction, then the front-end latency.

    Parameters
    ----------
    profile_for:
        ``(eager_s_per_layer, fraction, frontend_s) -> Profile`` (refits or patches a profile).
    runs:
        Development serving runs (schema of ``real_runs/<model>.csv``, with ``group``).
    eager_grid, fraction_grid:
        Candidate values (s per layer; dimensionless in [0, 1]).
    on_point:
        Progress callback ``(done, total)``.

    Returns
    -------
    ServingConstants
        With ``report``: the chosen point's ITL and throughput SMAPE, and the held-out score
        of the leave-one-group-out cross-validation.
    """
    from loratwin.twin.validate import smape, validate_runs

    if "group" not in runs.columns:
        raise DataError("serving runs need a 'group' column for the cross-validation")
    groups = runs.reset_index(drop=True)["group"]
    grid = list(itertools.product(eager_grid, fraction_grid))
    results: dict[tuple[float, float], pd.DataFrame] = {}
    for i, (eager, frac) in enumerate(grid):
        prof = profile_for(eager, frac, 0.0)
        results[(eager, frac)] = validate_runs(runs, prof, seed=seed, n_jobs=n_jobs)
        if on_point:
            on_point(i + 1, len(grid))
    best = min(grid, key=lambda g: _score(results[g]))
    # leave one group out: pick the best point without the group, score it on the group
    held: list[float] = []
    for g in sorted(groups.unique()):
        test = [i for i in range(len(groups)) if groups[i] == g]
        train = [i for i in range(len(groups)) if groups[i] != g]
        pick = min(grid, key=lambda p: _score(results[p], train))
        held.append(_score(results[pick], test))
    res = results[best]
    ok = res[(res["status"] == "ok") & ~res["memory_error"]]
    # front end: TTFT gap of runs whose queues stay short (TTFT below 1 s)
    light = ok[ok["real_mean_ttft_ms"] < 1000.0]
    gap_ms = float(np.median(light["real_mean_ttft_ms"] - light["twin_mean_ttft_ms"])) if len(
        light) else 0.0
    fe = max(gap_ms, 0.0) / 1e3
    report: dict[str, float | int | str] = {
        "runs": len(ok),
        "grid_points": len(grid),
        "itl_smape_pct": smape(ok["twin_mean_itl_ms"], ok["real_mean_itl_ms"]),
        "throughput_smape_pct": smape(
            ok["twin_total_throughput_tok_s"], ok["real_total_throughput"]
        ),
        "cv_heldout_itl_plus_throughput_smape_pct": float(np.mean(held)),
        "in_sample_itl_plus_throughput_smape_pct": _score(res),
        "frontend_runs": len(light),
    }
    if not math.isfinite(fe):
        fe = 0.0
    return ServingConstants(
        lora_eager_layer_s=best[0], split_k_fixed_fraction=best[1], frontend_latency_s=fe,
        source="fitted by `loratwin profile calibrate-serving` on the development real runs",
        report=report,
    )
