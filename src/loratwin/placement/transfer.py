"""A surrogate carried over to another GPU by the ratio of the two profiles' capacities.

Placement needs a surrogate per profile, and a profile of a new GPU type (a prior one, say)
may have none yet. :class:`CapacityTransferPredictor` answers for the target profile with
the surrogate of a reference profile of the same model, by time scaling: if every engine
step on the target took the reference's time divided by ``c``, the target at arrival rates
``lambda`` would behave as the reference at ``lambda / c`` with all durations divided by
``c``. ``c`` is taken per configuration as the ratio of the two profiles' steady-state
capacities (:class:`~loratwin.surrogate.capacity.CapacityTable`, the step-cost model at the
largest batch the token budget and the KV cache allow), which also carries the target's
different KV memory into the rate scale. So a row is predicted as the reference row with
``sum_rate_req_s`` and ``std_rate_req_s`` divided by ``c``; throughput is multiplied by
``c``, ITL and TTFT divided by it, the starvation probability kept.

This is an estimate (step costs do not all scale by one factor, and swapping and memory
effects at a given ``max_loras`` differ): use it with twin confirmations of every GPU (the
twin runs the target profile itself), as ``place --gpu-types`` does.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from loratwin.placement.types import GpuPredictor, Predictions
from loratwin.surrogate.capacity import CapacityTable
from loratwin.surrogate.features import FEATURES

_I = {f: FEATURES.index(f) for f in ("sum_rate_req_s", "std_rate_req_s", "max_loras",
                                     "max_rank", "mean_input_tokens", "mean_output_tokens")}


class CapacityTransferPredictor:
    """The reference surrogate's predictions time-scaled to a target profile (module
    docstring).

    Parameters
    ----------
    reference:
        Predictor of the reference profile.
    reference_capacity, target_capacity:
        Capacity tables of the reference and the target profile (tok/s).
    """

    def __init__(self, reference: GpuPredictor, reference_capacity: CapacityTable,
                 target_capacity: CapacityTable) -> None:
        self.reference = reference
        self.reference_capacity = reference_capacity
        self.target_capacity = target_capacity

    def ratio(self, features: np.ndarray) -> np.ndarray:
        """(n,) target / reference capacity of each feature row."""
        x = np.asarray(features, float)
        cols = (x[:, _I["max_loras"]], x[:, _I["max_rank"]], x[:, _I["mean_input_tokens"]],
                x[:, _I["mean_output_tokens"]])
        return self.target_capacity(*cols) / self.reference_capacity(*cols)

    def predict(self, features: np.ndarray,
                fields: Collection[str] | None = None) -> Predictions:
        """Predictions for (n, 10) feature rows on the target profile (``fields`` as in
        :class:`GpuPredictor`)."""
        x = np.array(features, float)
        c = self.ratio(x)
        x[:, _I["sum_rate_req_s"]] /= c
        x[:, _I["std_rate_req_s"]] /= c
        p = self.reference.predict(x, fields)
        return Predictions(
            total_throughput_tok_s=np.asarray(p.total_throughput_tok_s) * c,
            mean_itl_ms=np.asarray(p.mean_itl_ms) / c,
            mean_ttft_ms=np.asarray(p.mean_ttft_ms) / c,
            p99_ttft_ms=np.asarray(p.p99_ttft_ms) / c,
            starvation_probability=np.asarray(p.starvation_probability),
            out_of_envelope=np.asarray(p.out_of_envelope),
        )
