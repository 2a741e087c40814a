"""Batch sweeps produced by the digital twin (``loratwin advise --twin CONFIG.yaml``).

The twin reproduces the measurement protocol of "Mind the Memory Gap" (Recasens, Agullo et
al., arXiv 2503.08311, Sec. 3): ``num_prompts`` requests sent at once (``request_rate = inf``)
to a server with ``max_num_seqs = B``, for each B of the sweep; throughput is the total tokens
over the time to finish them all. Each run gives one row in the sweep schema of
:mod:`loratwin.advisor.sweep`.

Configuration (YAML)::

    model: llama-3.1-8b-instruct
    server: {max_loras: 8, max_lora_rank: 16, enable_lora: true}   # other flags as in simulate
    adapters: 8                # number of rank-max_lora_rank adapters the prompts cycle over
    max_num_seqs: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    num_prompts: 2000
    lengths: {kind: fixed, input_tokens: 250, output_tokens: 390}   # any LengthSpec
    output_lens: [130, 260, 390, 520]   # optional: one curve per output length (fixed prompt)
    seed: 0

Memory columns: ``kv_cache_size_gib`` is the twin's KV pool (tokens x bytes per token) at that
``max_num_seqs``; the rest of the budget ``gpu_memory_utilization x total`` is reported as
``peak_torch_memory_gib`` (weights, LoRA slots and activations) with ``non_torch_memory_gib``
0, so that the advisor's memory identity holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from loratwin.configfile import read_yaml_mapping, validate
from loratwin.errors import ConfigError
from loratwin.profile.model import GIB, Profile, kv_capacity
from loratwin.profile.store import load_profile
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.engine import run_engine
from loratwin.twin.runconfig import default_lengths
from loratwin.workload.spec import LengthSpec, build_lengths
from loratwin.workload.types import Requests


class TwinSweepConfig(BaseModel):
    """The YAML of ``loratwin advise --twin`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    model: str = "llama-3.1-8b-instruct"
    server: dict[str, Any] = Field(default_factory=dict)
    adapters: int = Field(8, ge=1)
    max_num_seqs: list[int] = Field(
        default_factory=lambda: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    )
    num_prompts: int = Field(2000, ge=1)
    lengths: LengthSpec | None = None
    output_lens: list[int] | None = None
    seed: int = Field(0, ge=0)


def _closed_requests(n: int, n_adapters: int, lengths: Any, seed: int) -> Requests:
    rng = np.random.default_rng(seed)
    pin, pout = lengths.sample(n, rng)
    return Requests(
        np.zeros(n), (np.arange(n) % n_adapters).astype(np.int32),
        np.asarray(pin, np.int32), np.asarray(pout, np.int32),
    )


def sweep_row(profile: Profile, server: ServerConfig, n_adapters: int, req: Requests
              ) -> dict[str, float]:
    """One closed (all-at-once) run of the twin as a sweep-schema row."""
    raw = run_engine(
        profile, server, [server.max_lora_rank] * n_adapters, req,
        ClientConfig(duration_s=1e9, max_ports=None), record_timeseries=True,
    )
    ts = raw.timeseries or {}
    makespan = float(np.nanmax(raw.finish_s))
    tokens = float(req.input_tokens.sum() + req.output_tokens.sum())
    multi = req.output_tokens > 1
    dec = (raw.finish_s - raw.first_token_s)[multi]
    gaps = (req.output_tokens[multi] - 1).astype(float)
    cap = kv_capacity(profile, server.max_loras, server.max_lora_rank,
                      enable_lora=server.enable_lora, max_num_seqs=server.max_num_seqs,
                      gpu_memory_utilization=server.gpu_memory_utilization,
                      max_model_len=server.max_model_len)
    kv_gib = cap.tokens * profile.arch.kv_bytes_per_token / GIB
    budget = server.gpu_memory_utilization * profile.gpu_total_memory_gib
    return {
        "max_num_seqs": server.max_num_seqs,
        "num_prompts": len(req),
        "completed": int(np.isfinite(raw.finish_s).sum()),
        "duration_s": makespan,
        "total_token_throughput_tok_s": tokens / makespan,
        "output_throughput_tok_s": float(req.output_tokens.sum()) / makespan,
        "request_throughput_rps": len(req) / makespan,
        "mean_ttft_ms": float(np.mean(raw.first_token_s)) * 1e3,
        "mean_tpot_ms": float(np.mean(dec / gaps)) * 1e3 if gaps.size else float("nan"),
        "mean_itl_ms": float(dec.sum() / gaps.sum()) * 1e3 if gaps.size else float("nan"),
        "running_max": float(np.max(ts["running"])) if len(ts.get("running", [])) else 0.0,
        "kv_usage_peak_frac": (float(np.max(ts["kv_used_blocks"])) / max(cap.blocks, 1)
                               if len(ts.get("kv_used_blocks", [])) else 0.0),
        "num_preemptions_total": raw.preemptions,
        "kv_cache_size_gib": kv_gib,
        "peak_torch_memory_gib": budget - kv_gib,
        "non_torch_memory_gib": 0.0,
        "total_gpu_memory_gib": profile.gpu_total_memory_gib,
        "gpu_memory_utilization": server.gpu_memory_utilization,
    }


def sweep_from_twin_config(path: str | Path, vllm_version: str | None = None) -> pd.DataFrame:
    """Simulate a ``max_num_seqs`` sweep with the digital twin.

    Parameters
    ----------
    path:
        Twin configuration (YAML, see the module docstring).
    vllm_version:
        vLLM release whose rules apply; overrides ``server.vllm_version`` of the YAML
        (default: the profile's release).

    Returns
    -------
    pandas.DataFrame
        One row per (model, max_num_seqs[, output_len]) in the sweep schema of
        :mod:`loratwin.advisor.sweep`.

    Raises
    ------
    ConfigError, DataError
        Missing file, invalid YAML or values, a ``max_num_seqs`` whose server cannot start.
    """
    p = Path(path)
    cfg = validate(TwinSweepConfig, read_yaml_mapping(p, "config"))
    if vllm_version is not None:
        cfg = cfg.model_copy(update={"server": {**cfg.server, "vllm_version": vllm_version}})
    profile = load_profile(cfg.model)
    base = build_lengths(cfg.lengths, p.parent) if cfg.lengths else default_lengths(profile)
    settings: list[int | None] = list(cfg.output_lens) if cfg.output_lens else [None]
    rows = []
    for out_len in settings:
        lengths = base
        if out_len is not None:
            lengths = base.with_means(base.mean_input, float(out_len))
        req = _closed_requests(cfg.num_prompts, cfg.adapters, lengths, cfg.seed)
        if out_len is not None:
            req = Requests(req.arrival_s, req.adapter, req.input_tokens,
                           np.full(len(req), out_len, np.int32))
        for b in sorted(set(cfg.max_num_seqs)):
            server = validate(ServerConfig, {
                "max_num_batched_tokens": max(2048, b),
                **cfg.server, "max_num_seqs": b,
                "max_cpu_loras": max(cfg.server.get("max_loras", 1), cfg.adapters),
            }, field="server").resolved(profile)
            cap = kv_capacity(profile, server.max_loras, server.max_lora_rank,
                              enable_lora=server.enable_lora, max_num_seqs=b,
                              gpu_memory_utilization=server.gpu_memory_utilization,
                              max_model_len=server.max_model_len)
            if cap.failure is not None:
                raise ConfigError(f"max_num_seqs {b}: the server does not start ({cap.failure})",
                                  field="max_num_seqs")
            row = sweep_row(profile, server, cfg.adapters, req)
            row["model"] = profile.name
            if out_len is not None:
                row["output_len"] = out_len
            rows.append(row)
    return pd.DataFrame(rows)
