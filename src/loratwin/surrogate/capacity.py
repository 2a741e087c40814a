"""The server's steady-state capacity as a surrogate input: a table built from the profile.

Whether a GPU starves depends on its offered load relative to what it can serve, and that
capacity is a non-linear function of ``max_loras`` (empty LoRA thread blocks, KV memory taken
by the slots), the slot rank and the prompt/output mix (prefill- or decode-bound steps). Trees
split one feature at a time, so they need many splits to find that boundary; given the ratio
offered load / capacity estimate, the boundary is nearly one split. On the Llama data set of
the default design this raised the 5-fold cross-validated starvation F1 from 0.955 to 0.968.

The estimate is :func:`loratwin.surrogate.design.capacity_tok_s` (the profile's step-cost
model at the largest batch the token budget, ``max_num_seqs`` and the KV cache allow; adapter
swapping ignored). It costs ~0.1 ms per configuration, too slow for batches of 10,000, so it
is tabulated once per profile on a grid of (``max_loras``, ``max_lora_rank``, mean input,
mean output tokens) and interpolated multilinearly in log space. The table is stored in the
surrogate file, so a surrogate does not need its profile at prediction time.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from loratwin.profile.model import Profile
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost

#: Grid axes (values, not logs): slots, slot rank, mean input and output tokens.
LORAS_AXIS: tuple[int, ...] = tuple(sorted({round(float(v)) for v in np.geomspace(1, 1536, 26)}))
RANK_AXIS: tuple[int, ...] = (8, 16, 32, 64)
INPUT_AXIS: tuple[float, ...] = tuple(float(v) for v in np.geomspace(16, 4096, 13))
OUTPUT_AXIS: tuple[float, ...] = tuple(float(v) for v in np.geomspace(8, 2048, 13))
#: The 16 corners of a 4-d grid cell, (16, 4) of 0/1.
_CORNERS = np.array(list(itertools.product((0, 1), repeat=4)), dtype=np.int64)
_CORNERS_PY: tuple[tuple[int, ...], ...] = tuple(itertools.product((0, 1), repeat=4))
#: Capacity floor (tok/s) of servers that do not start, so that logs stay finite.
FLOOR_TOK_S = 1.0


@dataclass(frozen=True)
class CapacityTable:
    """Tabulated capacity (tok/s) of a saturated server for one profile.

    Attributes
    ----------
    axes:
        Four increasing log-value axes: ``max_loras``, ``max_lora_rank``, mean input tokens,
        mean output tokens.
    log_capacity:
        log(capacity tok/s) on the grid, shape ``tuple(len(a) for a in axes)``; a server
        that does not start (too many slots for the KV memory) holds the value of the largest
        ``max_loras`` that starts (placement never proposes it; the memory check is separate).
    """

    axes: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
    log_capacity: np.ndarray
    _axes_py: tuple[list[float], ...] = field(init=False, repr=False, compare=False)
    _table_py: list = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # plain-Python copies for :meth:`at` (one configuration without numpy overhead)
        object.__setattr__(self, "_axes_py", tuple(a.tolist() for a in self.axes))
        object.__setattr__(self, "_table_py", self.log_capacity.tolist())

    @staticmethod
    def build(profile: Profile, max_num_seqs: int = 2048) -> CapacityTable:
        """Tabulate :func:`~loratwin.surrogate.design.capacity_tok_s` (a few seconds)."""
        from loratwin.surrogate.design import capacity_tok_s

        budget = max(2048, max_num_seqs)
        table = np.empty((len(LORAS_AXIS), len(RANK_AXIS), len(INPUT_AXIS), len(OUTPUT_AXIS)))
        for (i, m), (j, r) in itertools.product(enumerate(LORAS_AXIS), enumerate(RANK_AXIS)):
            cost = StepCost(profile, ServerConfig(
                max_loras=m, max_cpu_loras=m, max_lora_rank=r, max_num_seqs=max_num_seqs,
                max_num_batched_tokens=budget))
            for (k, a), (l_, b) in itertools.product(enumerate(INPUT_AXIS),
                                                     enumerate(OUTPUT_AXIS)):
                c = capacity_tok_s(profile, m, r, a, b, max_num_seqs=max_num_seqs,
                                   max_num_batched_tokens=budget, step_cost=cost)
                table[i, j, k, l_] = np.log(c) if c > 0 else np.nan
        # beyond the memory limit the server does not start: continue the last capacity along
        # the slots axis so that interpolation next to the limit is not dragged to zero
        for i in range(1, len(LORAS_AXIS)):
            gap = np.isnan(table[i])
            table[i][gap] = table[i - 1][gap]
        table = np.nan_to_num(table, nan=np.log(FLOOR_TOK_S))
        axes = tuple(np.log(np.asarray(a, float))
                     for a in (LORAS_AXIS, RANK_AXIS, INPUT_AXIS, OUTPUT_AXIS))
        return CapacityTable(axes, table)  # type: ignore[arg-type]

    def __call__(self, max_loras: np.ndarray, max_rank: np.ndarray, mean_input: np.ndarray,
                 mean_output: np.ndarray) -> np.ndarray:
        """Capacity in tok/s, shape (n,), for (n,) arrays; values beyond an axis are clamped
        to its ends (the table covers the surrogate's training envelope)."""
        pts = [np.log(np.maximum(np.asarray(v, float), 1e-9))
               for v in (max_loras, max_rank, mean_input, mean_output)]
        lo_idx, frac = [], []
        for ax, p in zip(self.axes, pts, strict=True):
            p = np.clip(p, ax[0], ax[-1])
            i = np.clip(np.searchsorted(ax, p, side="right") - 1, 0, len(ax) - 2)
            lo_idx.append(i)
            frac.append((p - ax[i]) / (ax[i + 1] - ax[i]))
        idx = np.stack(lo_idx)[:, None, :] + _CORNERS.T[:, :, None]  # (4, 16, n)
        f = np.stack(frac)[:, None, :]  # (4, 1, n)
        w = np.where(_CORNERS.T[:, :, None] == 1, f, 1.0 - f).prod(axis=0)  # (16, n)
        return np.exp((w * self.log_capacity[idx[0], idx[1], idx[2], idx[3]]).sum(axis=0))

    def at(self, max_loras: float, max_rank: float, mean_input: float,
           mean_output: float) -> float:
        """Capacity in tok/s of one configuration: :meth:`__call__` in plain Python (~20 us
        instead of ~150 us), with the same operations in the same order; only ``math.log`` /
        ``math.exp`` may differ from numpy's in the last bit."""
        lo: list[int] = []
        fr: list[float] = []
        for ax, v in zip(self._axes_py, (max_loras, max_rank, mean_input, mean_output),
                         strict=True):
            p = min(max(math.log(max(float(v), 1e-9)), ax[0]), ax[-1])
            i = min(max(bisect.bisect_right(ax, p) - 1, 0), len(ax) - 2)
            lo.append(i)
            fr.append((p - ax[i]) / (ax[i + 1] - ax[i]))
        total = 0.0
        t = self._table_py
        for c0, c1, c2, c3 in _CORNERS_PY:
            w = ((fr[0] if c0 else 1.0 - fr[0]) * (fr[1] if c1 else 1.0 - fr[1])
                 * (fr[2] if c2 else 1.0 - fr[2]) * (fr[3] if c3 else 1.0 - fr[3]))
            total += w * t[lo[0] + c0][lo[1] + c1][lo[2] + c2][lo[3] + c3]
        return math.exp(total)

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The table as named arrays (for the surrogate ``.npz``)."""
        out = {f"{prefix}axis{d}": a for d, a in enumerate(self.axes)}
        out[f"{prefix}log_capacity"] = self.log_capacity
        return out

    @staticmethod
    def from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> CapacityTable:
        """Inverse of :meth:`arrays`.

        Raises
        ------
        KeyError, ValueError
            Missing arrays or inconsistent shapes.
        """
        axes = tuple(np.asarray(arrays[f"{prefix}axis{d}"], float) for d in range(4))
        table = np.asarray(arrays[f"{prefix}log_capacity"], float)
        if table.shape != tuple(len(a) for a in axes) or any(len(a) < 2 for a in axes):
            raise ValueError("capacity table shape does not match its axes")
        return CapacityTable(axes, table)  # type: ignore[arg-type]
