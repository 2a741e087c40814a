"""Derived model inputs: ratios the trees cannot form from the raw features by splitting.

A tree splits on one feature at a time, so a quantity like the offered load (a product of
three features) costs it many splits; giving it directly made the cross-validated SMAPE of
the throughput ~20 % smaller on a development data set (800 twin runs). The surrogate's
models see ``FEATURES`` followed by these eight columns; the training envelope and the user
only ever deal with the ten ``FEATURES``. The last two come from the profile's capacity
table (:class:`~loratwin.surrogate.capacity.CapacityTable`, stored in the surrogate file):
the offered load relative to the server's capacity is where starvation begins.

Both implementations (numpy for batches, plain Python for one row) do the same float64
operations in the same order; only numpy's and ``math``'s log/exp in the capacity column may
differ in the last bit. The trees compare float32 values, so the predictions are the same.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from loratwin.surrogate.capacity import CapacityTable
from loratwin.surrogate.features import FEATURES

DERIVED: tuple[str, ...] = (
    "offered_tok_s",  # sum_rate_req_s * (mean_input_tokens + mean_output_tokens), tok/s
    "rate_per_slot_req_s",  # sum_rate_req_s / max_loras
    "slot_fraction",  # max_loras / served_adapters
    "mean_rate_req_s",  # sum_rate_req_s / served_adapters
    "tokens_per_request",  # mean_input_tokens + mean_output_tokens
    "rate_cv",  # std_rate_req_s / max(mean rate, 1e-12)
    "capacity_tok_s",  # the profile's steady-state capacity estimate (surrogate/capacity.py)
    "load_ratio",  # offered_tok_s / capacity_tok_s
)
MODEL_INPUTS: tuple[str, ...] = FEATURES + DERIVED
"""Column order of the matrix the tree models see."""

_RATE, _STD, _LORAS, _SERVED = (FEATURES.index(c) for c in (
    "sum_rate_req_s", "std_rate_req_s", "max_loras", "served_adapters"))
_IN, _OUT = FEATURES.index("mean_input_tokens"), FEATURES.index("mean_output_tokens")
_RANK = FEATURES.index("max_rank")
_TINY = 1e-12


def augment(x: np.ndarray, capacity: CapacityTable) -> np.ndarray:
    """(n, 10) features -> (n, 18) model inputs (``MODEL_INPUTS`` order)."""
    rate, loras, served = x[:, _RATE], x[:, _LORAS], x[:, _SERVED]
    tokens = x[:, _IN] + x[:, _OUT]
    cap = capacity(loras, x[:, _RANK], x[:, _IN], x[:, _OUT])
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_rate = rate / served
        offered = rate * tokens
        cols = (offered, rate / loras, loras / served, mean_rate, tokens,
                x[:, _STD] / np.maximum(mean_rate, _TINY), cap, offered / cap)
    return np.column_stack((x, *cols))


def augment_row(x: Sequence[float], capacity: CapacityTable) -> list[float]:
    """One row of 10 features -> the 18 model inputs (plain Python)."""
    rate, loras, served = x[_RATE], x[_LORAS], x[_SERVED]
    tokens = x[_IN] + x[_OUT]
    cap = capacity.at(loras, x[_RANK], x[_IN], x[_OUT])
    mean_rate = rate / served
    offered = rate * tokens
    return [*x, offered, rate / loras, loras / served, mean_rate, tokens,
            x[_STD] / max(mean_rate, _TINY), cap, offered / cap]
