"""PredictionMemo: the same answers as the surrogate, each distinct row predicted once."""

from __future__ import annotations

from collections.abc import Collection
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


def test_fields_asked_for_equal_the_full_answer_and_are_predicted_once() -> None:
    """``fields``: the surrogate runs only what is asked; answers equal the full ones; a
    later request of other fields predicts only those rows' missing fields."""
    pred = SurrogatePredictor.load("llama-3.1-8b-instruct")
    rng = np.random.default_rng(5)
    x = _rows(rng, 40)
    full = pred.predict(x)
    part = pred.predict(x, ("starvation_probability",))
    np.testing.assert_array_equal(part.starvation_probability, full.starvation_probability)
    assert np.isnan(part.mean_ttft_ms).all() and np.isnan(part.total_throughput_tok_s).all()
    np.testing.assert_array_equal(part.out_of_envelope, full.out_of_envelope)

    calls: list[tuple[int, tuple[str, ...] | None]] = []

    class Counting:
        def predict(self, features: np.ndarray, fields: Collection[str] | None = None):
            calls.append((len(features), None if fields is None else tuple(sorted(fields))))
            return pred.predict(features, fields)

    memo = PredictionMemo(Counting())
    got = memo.predict(x, ("starvation_probability",))
    np.testing.assert_array_equal(got.starvation_probability, full.starvation_probability)
    got = memo.predict(x[:10], ("mean_ttft_ms",))  # the ttft of 10 known rows
    np.testing.assert_array_equal(got.mean_ttft_ms, full.mean_ttft_ms[:10])
    got = memo.predict(x)  # everything: 10 rows miss 4 fields, 30 rows miss 5
    for f in fields(full):
        np.testing.assert_array_equal(getattr(got, f.name), getattr(full, f.name))
    assert sorted(n for n, _ in calls[2:]) == [10, 30] and calls[:2] == [
        (40, ("out_of_envelope", "starvation_probability")),
        (10, ("mean_ttft_ms",))]
    assert memo.predicted == 40 + 10 + 40
    assert len(memo.predict(x).mean_itl_ms) == 40 and len(calls) == 4  # all known now
