"""Surrogate answers remembered for the length of one placement: each feature row once.

``loratwin``'s searches score the same GPU configurations many times: a balance move
re-scores the receivers of the previous move, each GPU count's starts share most GPUs with
the count above, and the latency trade-off re-sizes layouts the search has seen. On 10,000
adapters about a third of the rows asked for are repeats of earlier calls.

:class:`PredictionMemo` wraps a :class:`~loratwin.placement.types.GpuPredictor` and predicts
only the rows it has not seen, in one batch call per request. It is an explicit object with
the lifetime of one ``place`` call (no global cache), created by
:meth:`PlacementProblem.with_memo <loratwin.placement.problem.PlacementProblem.with_memo>`.

Same answers as without it: the surrogate answers every row of a batch of two rows or more
on its own (the trees of :mod:`loratwin.surrogate.trees` add per row in a fixed order), so a
row's answer does not depend on the batch it came in. A batch of one row is summed in another
order (ulp changes): requests of one row are passed through unremembered, and a single new
row of a larger request is predicted in a batch of two (itself twice), as it would be in any
batch of two or more.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from loratwin.placement.types import GpuPredictor, Predictions

_FIELDS = tuple(f.name for f in fields(Predictions))


class PredictionMemo:
    """A :class:`GpuPredictor` that predicts each distinct feature row once.

    Parameters
    ----------
    predictor:
        The surrogate asked for rows not seen before.

    Attributes
    ----------
    asked, predicted:
        Rows requested and rows actually sent to ``predictor`` (counters).
    """

    def __init__(self, predictor: GpuPredictor) -> None:
        self.predictor = predictor
        self._index: dict[bytes, int] = {}
        self._store: dict[str, np.ndarray] = {}
        self._size = 0
        self.asked = 0
        self.predicted = 0

    def predict(self, features: np.ndarray) -> Predictions:
        """Predictions of (n, len(FEATURES)) rows, each distinct row predicted once."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        n = len(x)
        self.asked += n
        if n < 2:
            self.predicted += n
            return self.predictor.predict(x)
        width = x.shape[1] * 8
        raw = x.tobytes()
        index = self._index
        keys = [raw[i * width:(i + 1) * width] for i in range(n)]
        new: dict[bytes, int] = {}
        for k, key in enumerate(keys):
            if key not in index and key not in new:
                new[key] = k
        if new:
            rows = x[list(new.values())]
            batch = rows if len(rows) >= 2 else np.vstack([rows, rows])
            pred = self.predictor.predict(batch)
            self._append(pred, len(rows))
            base = self._size - len(rows)
            for j, key in enumerate(new):
                index[key] = base + j
            self.predicted += len(rows)
        idx = np.fromiter((index[key] for key in keys), np.int64, n)
        return Predictions(**{name: self._store[name][idx] for name in _FIELDS})

    def _append(self, pred: Predictions, count: int) -> None:
        """Store the first ``count`` answers of ``pred`` (capacity doubles as needed)."""
        need = self._size + count
        for name in _FIELDS:
            col = np.asarray(getattr(pred, name))[:count]
            have = self._store.get(name)
            if have is None or len(have) < need:
                grown = np.empty(max(need, 2 * (0 if have is None else len(have)), 1024),
                                 col.dtype)
                if have is not None:
                    grown[:self._size] = have[:self._size]
                self._store[name] = grown
            self._store[name][self._size:need] = col
        self._size = need
