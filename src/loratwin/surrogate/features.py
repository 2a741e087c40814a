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
    df: pd.DataFrame, *, default_input_tokens: float, default_output_tokens: float,
    source: str | None = None,
) -> np.ndarray:
    """Feature matrix (n, len(FEATURES)) from a table with the feature columns.

    The ``REQUIRED`` columns must be present; missing ``OPTIONAL`` columns (or empty cells)
    take the profile's ShareGPT means and a Poisson arrival CV of 1. Each row must describe
    adapters that can exist (:func:`check_feature_rows`).

    Parameters
    ----------
    source:
        The file the table was read from; its index then holds file line numbers (header =
        1) and errors read ``FILE row N: ...``. Without it rows are counted from 1.

    Raises
    ------
    DataError
        A required column is missing, or a value is not a finite number, out of range, or
        inconsistent with the other features of its row.
    """
    where = f"{source}: " if source else ""
    for col in REQUIRED:
        if col not in df.columns:
            raise DataError(f"{where}missing column {col!r}")
    labels = df.index.to_numpy() if source else np.arange(len(df)) + 1
    prefix = f"{source} " if source else ""
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
                v = v.where(df[col].notna(), defaults[col])
        else:
            v = pd.Series(defaults[col], index=df.index)
        arr = v.to_numpy(dtype=float)
        bad = ~np.isfinite(arr) | (arr < 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise DataError(f"{prefix}row {labels[row]}: {col}: must be a finite number >= 0"
                            + (f" (got {df[col].iloc[row]!r})" if col in df.columns else ""))
        cols.append(arr)
    x = np.column_stack(cols) if cols else np.empty((0, len(FEATURES)))
    problem = check_feature_rows(x)
    if problem is not None:
        row, msg = problem
        raise DataError(f"{prefix}row {labels[row]}: {msg}")
    return x


def check_feature_rows(x: np.ndarray) -> tuple[int, str] | None:
    """The first row of a feature matrix (n, len(FEATURES)) that no set of adapters has.

    Rules (population statistics of ``n = served_adapters`` adapters with integer ranks
    >= 1 and rates >= 0): ``served_adapters`` and ``max_loras`` integers >= 1; ``max_rank``
    an integer >= 1; ``1 <= mean_rank <= max_rank``; ``std_rank^2 <= (max_rank - mean_rank)
    (mean_rank - 1)`` (Bhatia-Davis bound on the variance of values in [1, max_rank]);
    ``std_rate <= sum_rate_req_s * sqrt(n - 1) / n`` (all the rate on one adapter);
    mean input and output tokens > 0. A relative tolerance of 1e-6 absorbs rounding.

    Returns
    -------
    tuple[int, str] | None
        ``(row index, message naming the feature)``, or ``None`` if every row is consistent.
    """
    f = {name: x[:, k] for k, name in enumerate(FEATURES)}
    tol = 1e-6
    n = f["served_adapters"]
    mean_r, max_r, std_r = f["mean_rank"], f["max_rank"], f["std_rank"]
    bd = np.sqrt(np.clip((max_r - mean_r) * (mean_r - 1.0), 0.0, None))
    rate_bound = f["sum_rate_req_s"] * np.sqrt(np.clip(n - 1.0, 0.0, None)) / np.maximum(n, 1)
    checks = (
        ((n < 1) | (n != np.round(n)), "served_adapters: must be an integer >= 1"),
        ((f["max_loras"] < 1) | (f["max_loras"] != np.round(f["max_loras"])),
         "max_loras: must be an integer >= 1"),
        ((max_r < 1) | (max_r != np.round(max_r)), "max_rank: must be an integer >= 1"),
        (mean_r > max_r * (1 + tol), "mean_rank: must be <= max_rank"),
        (mean_r < 1 - tol, "mean_rank: must be >= 1 (ranks are >= 1)"),
        (std_r > bd * (1 + tol) + tol, "std_rank: too large for ranks between 1 and max_rank "
         "with this mean_rank"),
        (f["std_rate_req_s"] > rate_bound * (1 + tol) + tol,
         "std_rate_req_s: too large for this sum_rate_req_s and served_adapters"),
        (f["mean_input_tokens"] <= 0, "mean_input_tokens: must be > 0"),
        (f["mean_output_tokens"] <= 0, "mean_output_tokens: must be > 0"),
    )
    for bad, msg in checks:
        if bad.any():
            return int(np.flatnonzero(bad)[0]), msg
    return None
