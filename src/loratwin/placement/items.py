"""Adapters as rows of sums: surrogate features of any GPU after any move, in one batch.

Placement moves adapters between GPUs thousands of times; rebuilding a GPU's feature row
from its adapter list each time would cost O(adapters). Instead every item (an adapter, or
one replica of a split adapter) is a vector of additive quantities (count, rate, rate^2,
rank, rank^2, rate x mean input / output tokens, mean input / output tokens) plus a one-hot
of its rank; a GPU is the sum of its items' vectors, and a move is a difference of sums. The
feature rows follow exactly the definitions of :func:`loratwin.placement.problem.group_rows`
(population standard deviations, rate-weighted mean lengths, or plain means when every rate
is 0), so a row computed here equals the row of the GPU's adapter list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from loratwin.placement.problem import PlacementProblem
from loratwin.surrogate.features import FEATURES
from loratwin.workload.types import Adapter

#: Columns of an item's sum vector.
N, RATE, RATE2, RANK, RANK2, WIN, WOUT, LIN, LOUT = range(9)
SUM_COLUMNS = 9


@dataclass(frozen=True)
class Items:
    """The items of a placement problem as arrays.

    Attributes
    ----------
    adapters:
        The items (split adapters appear once per replica, with the replica's rate).
    sums:
        (I, 9) additive vector of each item (columns :data:`N` ... :data:`LOUT`).
    hist:
        (I, R) one-hot of each item's rank among :attr:`rank_values`.
    rank_values:
        (R,) the distinct ranks, ascending.
    load:
        (I,) offered load of each item, tok/s (rate x (mean input + mean output tokens)).
    ident:
        (I,) integer id of each item's adapter (replicas of one adapter share it).
    replicas:
        Whether some adapter has several items (replicas of a split adapter).
    arrival_cv:
        Burstiness of the arrivals (the last feature).
    """

    adapters: tuple[Adapter, ...]
    sums: np.ndarray
    hist: np.ndarray
    rank_values: np.ndarray
    load: np.ndarray
    ident: np.ndarray
    replicas: bool
    arrival_cv: float

    @staticmethod
    def build(problem: PlacementProblem, adapters: Sequence[Adapter]) -> Items:
        """Arrays of ``adapters`` (lengths defaulted by the problem's profile)."""
        ads = tuple(adapters)
        rate = np.fromiter((a.rate for a in ads), float, len(ads))
        rank = np.fromiter((a.rank for a in ads), float, len(ads))
        lengths = np.array([problem.mean_lengths(a) for a in ads], float).reshape(-1, 2)
        sums = np.column_stack([
            np.ones(len(ads)), rate, rate * rate, rank, rank * rank,
            rate * lengths[:, 0], rate * lengths[:, 1], lengths[:, 0], lengths[:, 1],
        ])
        values = np.unique(rank)
        hist = (rank[:, None] == values[None, :]).astype(float)
        names: dict[str, int] = {}
        ident = np.array([names.setdefault(a.id, len(names)) for a in ads], np.int64)
        return Items(ads, sums, hist, values, rate * lengths.sum(axis=1), ident,
                     len(names) < len(ads), problem.arrival_cv)

    def __len__(self) -> int:
        return len(self.adapters)

    def gpu_sums(self, owner: np.ndarray, gpus: int) -> tuple[np.ndarray, np.ndarray]:
        """(G, 9) sums and (G, R) rank counts of every GPU, ``owner[i]`` = GPU of item i."""
        s = np.zeros((gpus, SUM_COLUMNS))
        h = np.zeros((gpus, len(self.rank_values)))
        np.add.at(s, owner, self.sums)
        np.add.at(h, owner, self.hist)
        return s, h

    def max_rank(self, hist: np.ndarray) -> np.ndarray:
        """(m,) largest rank with a positive count in each row of ``hist`` (m, R)."""
        present = hist > 0.5
        idx = len(self.rank_values) - 1 - np.argmax(present[:, ::-1], axis=1)
        return np.where(present.any(axis=1), self.rank_values[idx], 0.0)

    def rows(self, sums: np.ndarray, hist: np.ndarray, loras: np.ndarray) -> np.ndarray:
        """Feature rows (m, len(FEATURES)) of GPUs given by their sums and rank counts.

        Every row needs at least one item (``sums[:, N] >= 1``).
        """
        n = np.maximum(sums[:, N], 1.0)
        s = sums[:, RATE]
        mean_r = s / n
        std_r = np.sqrt(np.maximum(sums[:, RATE2] / n - mean_r * mean_r, 0.0))
        mean_k = sums[:, RANK] / n
        std_k = np.sqrt(np.maximum(sums[:, RANK2] / n - mean_k * mean_k, 0.0))
        pos = s > 1e-12
        safe_s = np.where(pos, s, 1.0)
        mi = np.where(pos, sums[:, WIN] / safe_s, sums[:, LIN] / n)
        mo = np.where(pos, sums[:, WOUT] / safe_s, sums[:, LOUT] / n)
        out = np.column_stack([
            np.maximum(s, 0.0), std_r, self.max_rank(hist), mean_k, std_k,
            np.asarray(loras, float), n, mi, mo, np.full(len(n), self.arrival_cv),
        ])
        assert out.shape[1] == len(FEATURES)
        return out
