"""PredictionMemo: the same answers as the surrogate, each distinct row predicted once."""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from loratwin.placement.memo import PredictionMemo
from loratwin.placement.predictor import SurrogatePredictor
from loratwin.surrogate.features import FEATURES


def _rows(rng: np.random.Generator, n: int) -> np.ndarray:
    x = np.column_stack([
        rng.uniform(0.5, 20.0, n), rng.uniform(0.0, 0.5, n), rng.choice([8, 16, 32], n),
        rng.uniform(8, 32, n), rng.uniform(0, 8, n), rng.integers(1, 64, n),
        rng.integers(64, 300, n), rng.uniform(500, 1500, n), rng.uniform(100, 400, n),
        np.ones(n),
    ])
    assert x.shape[1] == len(FEATURES)
    return x


def test_memo_answers_equal_the_surrogate_and_repeats_are_not_predicted() -> None:
    pred = SurrogatePredictor.load("llama-3.1-8b-instruct")
    memo = PredictionMemo(pred)
    rng = np.random.default_rng(3)
    a = _rows(rng, 300)  # more than one block of the tree evaluator
    b = np.vstack([a[10:40], _rows(rng, 1), a[:5], a[7:8]])  # one new row among repeats
    for x in (a, b, a[::-1], b[:1]):
        got, want = memo.predict(x), pred.predict(x)
        for f in fields(want):
            np.testing.assert_array_equal(getattr(got, f.name), getattr(want, f.name))
    assert memo.asked == 300 + 37 + 300 + 1
    assert memo.predicted == 300 + 1 + 1  # a, the new row of b, b[:1] (passed through)
