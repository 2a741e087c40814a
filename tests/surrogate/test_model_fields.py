"""Surrogate.predict(..., fields): only the models asked for run; same answers."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.errors import DataError
from loratwin.surrogate.model import PREDICTION_FIELDS, Surrogate


def test_each_field_alone_equals_the_full_prediction() -> None:
    s = Surrogate.load("llama-3.1-8b-instruct")
    rng = np.random.default_rng(2)
    lo, hi = s.envelope_min, s.envelope_max
    x = lo + (hi - lo) * rng.random((300, len(lo)))
    full = s.predict(x)
    for f in PREDICTION_FIELDS:
        alone = s.predict(x, [f])
        assert np.array_equal(getattr(alone, f), getattr(full, f)), f
        others = [g for g in ("mean_itl_ms", "mean_ttft_ms", "total_throughput_tok_s")
                  if g != f]
        if f in ("mean_itl_ms", "mean_ttft_ms", "total_throughput_tok_s"):
            assert all(np.isnan(getattr(alone, g)).all() for g in others)
    with pytest.raises(DataError, match="unknown prediction field"):
        s.predict(x, ["ttft"])
