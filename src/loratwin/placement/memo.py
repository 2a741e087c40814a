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

from collections.abc import Collection
from dataclasses import fields

import numpy as np

from loratwin.placement.types import GpuPredictor, Predictions

_FIELDS = tuple(f.name for f in fields(Predictions))
#: Computed with any field (a range check, no model).
_ALWAYS = "out_of_envelope"


class PredictionMemo:
    """A :class:`GpuPredictor` that predicts each distinct feature row once (each field of
    it once: a request for some fields leaves the others to a later request).

    Parameters
    ----------
    predictor:
        The surrogate asked for rows not seen before.

    Attributes
    ----------
    asked, predicted:
        Rows requested and rows actually sent to ``predictor`` (counters; a row sent twice
        for different fields counts twice).
    """

    def __init__(self, predictor: GpuPredictor) -> None:
        self.predictor = predictor
        self._index: dict[bytes, int] = {}
        self._store: dict[str, np.ndarray] = {}
        self._known: dict[str, np.ndarray] = {}
        self._size = 0
        self.asked = 0
        self.predicted = 0

    def predict(self, features: np.ndarray,
                fields: Collection[str] | None = None) -> Predictions:
        """Predictions of (n, len(FEATURES)) rows, each distinct row and field predicted
        once; ``fields`` as in :meth:`GpuPredictor.predict` (the others may be NaN)."""
        x = np.ascontiguousarray(features, dtype=np.float64)
        n = len(x)
        self.asked += n
        if n < 2:
            self.predicted += n
            return self.predictor.predict(x, fields)
        wanted = [f for f in _FIELDS if fields is None or f in fields or f == _ALWAYS]
        width = x.shape[1] * 8
        raw = x.tobytes()
        index = self._index
        keys = [raw[i * width:(i + 1) * width] for i in range(n)]
        fresh = 0
        for key in keys:
            if key not in index:
                index[key] = self._size + fresh
                fresh += 1
        if fresh:
            self._grow(self._size + fresh)
        idx = np.fromiter((index[key] for key in keys), np.int64, n)
        missing = np.stack([~self._known[f][idx] for f in wanted], axis=1)
        if missing.any():
            self._fill(x, idx, missing, wanted)
        return Predictions(**{name: self._store[name][idx] for name in _FIELDS})

    def _fill(self, x: np.ndarray, idx: np.ndarray, missing: np.ndarray,
              wanted: list[str]) -> None:
        """Predict the missing fields of the rows ``idx`` (one call per distinct set of
        missing fields), each distinct row once."""
        rows = np.flatnonzero(missing.any(axis=1))
        store_rows, first = np.unique(idx[rows], return_index=True)
        at = rows[first]  # a position in x of each distinct store row
        bits = missing[at] @ (1 << np.arange(len(wanted), dtype=np.int64))
        for sig in np.unique(bits).tolist():
            sel = bits == sig
            names = [f for j, f in enumerate(wanted) if sig >> j & 1]
            batch = x[at[sel]]
            if len(batch) < 2:
                batch = np.vstack([batch, batch])
            pred = self.predictor.predict(batch, names)
            self.predicted += int(sel.sum())
            target = store_rows[sel]
            for name in {*names, _ALWAYS}:
                self._store[name][target] = np.asarray(getattr(pred, name))[:len(target)]
                self._known[name][target] = True

    def _grow(self, need: int) -> None:
        """Room for ``need`` rows (capacity doubles); new rows are unknown."""
        have = len(self._store[_FIELDS[0]]) if self._store else 0
        if need > have:
            cap = max(need, 2 * have, 1024)
            for name in _FIELDS:
                old = self._store.get(name)
                dtype = bool if name == _ALWAYS else float
                grown = np.zeros(cap, dtype) if dtype is bool else np.full(cap, np.nan)
                known = np.zeros(cap, bool)
                if old is not None:
                    grown[:self._size] = old[:self._size]
                    known[:self._size] = self._known[name][:self._size]
                self._store[name] = grown
                self._known[name] = known
        self._size = need
