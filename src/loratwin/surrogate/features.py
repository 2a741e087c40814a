"""Features of one GPU's configuration, as the surrogates see it.

The papers' seven features (Agullo et al., arXiv 2508.08343, Sec. 5.2): sum and standard
deviation of the adapters' request rates, maximum, mean and standard deviation of their ranks,
``max_loras`` and the number of served adapters. The papers fixed the request lengths; we add
the mean input and output tokens per request, and the coefficient of variation of the arrival
gaps (1 = Poisson) because bursty arrivals starve a server earlier.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from loratwin.errors import DataError
from loratwin.workload.types import Adapter

REQUIRED: tuple[str, ...] = (
    "sum_rate_req_s",
    "std_rate_req_s",
    "max_rank",
    "mean_rank",
    "std_rank",
    "max_loras",
    "served_adapters",
)
OPTIONAL: tuple[str, ...] = ("mean_input_tokens", "mean_output_tokens", "arrival_cv")
FEATURES: tuple[str, ...] = REQUIRED + OPTIONAL
"""Column order of the feature matrix."""


def gpu_features(
    adapters: Sequence[Adapter],
    max_loras: int,
    *,
    default_input_tokens: float,
    default_output_tokens: float,
    arrival_cv: float = 1.0,
) -> np.ndarray:
    """Feature vector (len(FEATURES),) of the adapters served by one GPU.

    Standard deviations are population ones (ddof = 0). The mean lengths are request-weighted:
    adapters with ``mean_input_tokens`` / ``mean_output_tokens`` set contribute those, the
    others the defaults (the profile's ShareGPT means), weighted by their rates.

    Raises
    ------
    DataError
        No adapters.
    """
    if not adapters:
        raise DataError("a GPU needs at least one adapter")
    rates = np.array([a.rate for a in adapters], float)
    ranks = np.array([a.rank for a in adapters], float)
    w = rates if rates.sum() > 0 else np.ones_like(rates)
    mi = np.array([a.mean_input_tokens or default_input_tokens for a in adapters], float)
    mo = np.array([a.mean_output_tokens or default_output_tokens for a in adapters], float)
    return np.array([
        rates.sum(), rates.std(), ranks.max(), ranks.mean(), ranks.std(), float(max_loras),
        float(len(adapters)), float(np.average(mi, weights=w)), float(np.average(mo, weights=w)),
        float(arrival_cv),
    ])


def feature_frame(
    df: pd.DataFrame, *, default_input_tokens: float, default_output_tokens: float
) -> np.ndarray:
    """Feature matrix (n, len(FEATURES)) from a table with the feature columns.

    The ``REQUIRED`` columns must be present; missing ``OPTIONAL`` columns (or empty cells)
    take the profile's ShareGPT means and a Poisson arrival CV of 1.

    Raises
    ------
    DataError
        A required column is missing, or a value is not a finite number or is out of range.
    """
    for col in REQUIRED:
        if col not in df.columns:
            raise DataError(f"missing column {col!r}")
    defaults = {
        "mean_input_tokens": default_input_tokens,
        "mean_output_tokens": default_output_tokens,
        "arrival_cv": 1.0,
    }
    cols = []
    for col in FEATURES:
        if col in df.columns:
            v = pd.to_numeric(df[col], errors="coerce")
            if col in defaults:
                v = v.fillna(defaults[col])
        else:
            v = pd.Series(defaults[col], index=df.index)
        arr = v.to_numpy(dtype=float)
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"row {row + 1}: {col}: must be a finite number >= 0")
        cols.append(arr)
    x = np.column_stack(cols)
    served = x[:, FEATURES.index("served_adapters")]
    loras = x[:, FEATURES.index("max_loras")]
    bad = (served < 1) | (loras < 1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(f"row {row + 1}: served_adapters and max_loras must be >= 1")
    return x
