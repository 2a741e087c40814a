"""A profile's physical scales, tabulated: what makes twin runs of two profiles comparable.

Two servers behave alike when their configurations are alike *relative to their own
hardware*: the same offered load over capacity, the same adapter load time over step time,
the same KV cache in requests. The universal surrogate (:mod:`.universal`) sees only such
ratios, so one model serves every profile; this module gives it the profile's side of them.

For each cell of the capacity grid (:mod:`.capacity`: ``max_loras``, ``max_lora_rank``, mean
input and output tokens) the table holds, from the profile's step-cost model
(:func:`~loratwin.surrogate.design.saturated_step`, vLLM 0.8.5's V1 engine step as the twin
prices it):

- ``capacity``: tokens per second of the saturated server, tok/s;
- ``step``: the time of one saturated step, s;
- ``idle``: the time of a step decoding one request with one adapter, s (weights read once:
  the floor of the ITL);
- ``kv``: the KV cache size, tokens (``kv_capacity``, vLLM's memory arithmetic);
- ``load``: the CPU -> GPU load of an adapter of the slot rank into a slot, s
  (``profile.model.cpu_load_s``, ``LoRAModelManager.activate_adapter``).

Each is a :class:`~loratwin.surrogate.capacity.CapacityTable` (multilinear in log space);
servers that do not start hold the values of the largest ``max_loras`` that starts. Building
all five takes about as long as the capacity table alone (~1-2 s): the step-cost tables of
each (``max_loras``, rank) pair are built once.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from loratwin.profile.model import Profile, cpu_load_s, kv_capacity
from loratwin.surrogate.capacity import (
    FLOOR_TOK_S,
    INPUT_AXIS,
    LORAS_AXIS,
    OUTPUT_AXIS,
    RANK_AXIS,
    CapacityTable,
)
from loratwin.twin.config import ServerConfig
from loratwin.twin.cost import StepCost

#: Names of the tabulated scales, in storage order.
SCALES: tuple[str, ...] = ("capacity", "step", "idle", "kv", "load")


@dataclass(frozen=True)
class ProfileScales:
    """The tabulated scales of one profile (see the module docstring for units).

    Attributes
    ----------
    tables:
        One :class:`CapacityTable` per name of :data:`SCALES`.
    """

    tables: dict[str, CapacityTable]
    profile: Profile
    max_num_seqs: int = 2048

    @staticmethod
    def build(profile: Profile, max_num_seqs: int = 2048) -> ProfileScales:
        """Tabulate the scales of ``profile`` at ``max_num_seqs`` (a token budget of
        ``max(2048, max_num_seqs)``, as the data sets use)."""
        from loratwin.surrogate.design import saturated_step

        budget = max(2048, max_num_seqs)
        shape = (len(LORAS_AXIS), len(RANK_AXIS), len(INPUT_AXIS), len(OUTPUT_AXIS))
        vals = {k: np.full(shape, np.nan) for k in SCALES}
        for (i, m), (j, r) in itertools.product(enumerate(LORAS_AXIS), enumerate(RANK_AXIS)):
            cost = StepCost(profile, ServerConfig(
                max_loras=m, max_cpu_loras=m, max_lora_rank=r, max_num_seqs=max_num_seqs,
                max_num_batched_tokens=budget))
            idle = cost.exec_s(1, 1, 0, 0, 1) + cost.sched_s(1, 0)
            load = max(cpu_load_s(profile, r, r), 1e-6)
            for (k, a), (l_, b) in itertools.product(enumerate(INPUT_AXIS),
                                                     enumerate(OUTPUT_AXIS)):
                sat = saturated_step(profile, m, r, a, b, max_num_seqs=max_num_seqs,
                                     max_num_batched_tokens=budget, step_cost=cost)
                if sat.step_s <= 0:
                    continue  # does not start: filled below
                cell = (i, j, k, l_)
                vals["capacity"][cell] = sat.capacity_tok_s
                vals["step"][cell] = sat.step_s
                vals["idle"][cell] = idle
                vals["kv"][cell] = sat.kv_tokens
                vals["load"][cell] = load
        axes = tuple(np.log(np.asarray(a, float))
                     for a in (LORAS_AXIS, RANK_AXIS, INPUT_AXIS, OUTPUT_AXIS))
        tables = {}
        for name, v in vals.items():
            logv = np.log(np.maximum(v, 1e-12))
            logv[np.isnan(v)] = np.nan
            # beyond the memory limit: the last value that starts along the slots axis
            for i in range(1, len(LORAS_AXIS)):
                gap = np.isnan(logv[i])
                logv[i][gap] = logv[i - 1][gap]
            logv = np.nan_to_num(logv, nan=np.log(FLOOR_TOK_S))
            tables[name] = CapacityTable(axes, logv)  # type: ignore[arg-type]
        return ProfileScales(tables, profile, max_num_seqs)

    def at(self, max_loras: np.ndarray, max_rank: np.ndarray, mean_input: np.ndarray,
           mean_output: np.ndarray) -> dict[str, np.ndarray]:
        """Every scale, (n,) arrays, for (n,) configurations (values clamped to the grid);
        ``kv`` is exact (:meth:`kv_tokens`), ``kv_table`` the grid's interpolation (which the
        capacity and step scales saw)."""
        out = {k: t(max_loras, max_rank, mean_input, mean_output)
               for k, t in self.tables.items()}
        out["kv_table"] = out["kv"]
        out["kv"] = self.kv_tokens(max_loras, max_rank)
        return out

    def kv_tokens(self, max_loras: np.ndarray, max_rank: np.ndarray) -> np.ndarray:
        """KV cache tokens (n,) of each (``max_loras``, slot rank) pair, from
        :func:`~loratwin.profile.model.kv_capacity` (~6 us per distinct pair): next to the
        memory limit the cache shrinks too fast for the grid (Qwen2.5-7B, rank 32: 139k
        tokens at 200 slots, 35k at 237, none at 256). Servers that do not start get 1."""
        m = np.maximum(np.rint(np.asarray(max_loras, float)), 1).astype(np.int64)
        r = np.maximum(np.rint(np.asarray(max_rank, float)), 1).astype(np.int64)
        pairs, inverse = np.unique(np.stack([m, r]), axis=1, return_inverse=True)
        vals = np.array([max(kv_capacity(self.profile, int(a), int(b),
                                         max_num_seqs=self.max_num_seqs).tokens, 1)
                         for a, b in pairs.T], float)
        return vals[np.asarray(inverse).ravel()]
