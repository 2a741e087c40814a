"""Sensitivity of the adapter-load model to the adapters' target modules (not logged).

``loratwin.calibrate.prior_loads`` assumes every adapter adapts all seven linear layers. This
script re-fits its constants (``_nonneg_lstsq`` on the same operation, tensor and byte counts)
leave-one-model-out under the alternative that the Qwen2.5-7B dummy adapters adapt only
``q_proj`` and ``v_proj`` (PEFT's default targets for Qwen2) while Llama-3.1-8B's adapt all
seven, and prints every measured point's error. It is a check of a hypothesis, not a figure of
the shipped model.

Usage::

    python benchmarks/prior_load_targets.py
"""

from __future__ import annotations

import numpy as np

from loratwin.calibrate import prior_loads as pl
from loratwin.calibrate.prior_model import Shard, load_model_spec
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile

#: Embedding-wrapper fills of activate_adapter (Llama/Mistral), see prior_loads.
EMB_FILLS = 2 * pl.EMBEDDING_WRAPPER_FILLS


def counts(shard: Shard, rank: int, max_rank: int, qv_only: bool
           ) -> tuple[int, int, int, int]:
    """(operations, strided copies, file tensors, bytes) of one adapter load."""
    layers, slices = shard.spec.num_layers, pl.slices_per_layer(shard)
    if qv_only:
        h, q, kv = shard.spec.hidden_size, shard.q_size, shard.kv_size
        nbytes, adapted = rank * (h + q + h + kv) * layers * shard.spec.dtype_bytes, 2
    else:
        nbytes, adapted = pl.adapter_bytes(shard, rank), slices
    ops = (2 * slices + 2 * adapted) * layers + (EMB_FILLS if shard.spec.lora_embeddings else 0)
    return ops, adapted * layers if rank < max_rank else 0, 2 * adapted * layers, nbytes


def fit(shard: Shard, prof: Profile, qv_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """(op ms, strided ms) and (tensor ms, ms per MB) fitted on one profile's loads."""
    xc, yc, xd, yd = [], [], [], []
    for p in prof.loads.points:
        o, st, t, b = counts(shard, p.adapter_rank, p.max_lora_rank, qv_only)
        xc.append([o, st])
        yc.append(p.cpu_ms)
        xd.append([t, b / 1e6])
        yd.append(p.disk_ms)
    return (pl._nonneg_lstsq(np.array(xc, float), np.array(yc)),
            pl._nonneg_lstsq(np.array(xd, float), np.array(yd)))


def main() -> None:
    llama = (Shard.of(load_model_spec("llama-3.1-8b"), 1), load_profile("llama-3.1-8b-instruct"),
             False)
    qwen = (Shard.of(load_model_spec("qwen2.5-7b"), 1), load_profile("qwen-2.5-7b-instruct"),
            True)
    for (cs, cp, cq), (hs, hp, hq) in ((llama, qwen), (qwen, llama)):
        (op, strided), (tensor, ms_mb) = fit(cs, cp, cq)
        gbs = 1 / ms_mb if ms_mb else float("inf")
        print(f"calibrated on {cp.name}: op {op * 1e3:.2f} us, strided {strided * 1e3:.2f} us, "
              f"tensor {tensor * 1e3:.1f} us, {gbs:.2f} GB/s")
        for p in hp.loads.points:
            o, st, t, b = counts(hs, p.adapter_rank, p.max_lora_rank, hq)
            cpu, disk = op * o + strided * st, tensor * t + ms_mb * b / 1e6
            print(f"  {hp.name} ({p.max_lora_rank}, {p.adapter_rank}): CPU->GPU {cpu:.2f} vs "
                  f"{p.cpu_ms:.2f} ms ({100 * (cpu / p.cpu_ms - 1):+.0f} %), disk {disk:.1f} vs "
                  f"{p.disk_ms:.1f} ms ({100 * (disk / p.disk_ms - 1):+.0f} %)")


if __name__ == "__main__":
    main()
