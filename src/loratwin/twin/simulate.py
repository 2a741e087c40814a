"""Public entry point of the digital twin: :func:`simulate`."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from loratwin.errors import ConfigError
from loratwin.profile.model import Profile, kv_capacity
from loratwin.twin.config import ClientConfig, ServerConfig
from loratwin.twin.cost import StepCost
from loratwin.twin.engine import run_engine
from loratwin.twin.frontend import through_frontend
from loratwin.twin.metrics import SimResult, build_result, memory_error_result
from loratwin.twin.release import normalise_version
from loratwin.workload.types import Adapter, Requests


def estimated_note(profile: Profile, server: ServerConfig) -> str | None:
    """A note for outputs whose timings are estimates: the step costs were measured on
    another vLLM release than the one simulated (``None`` when they agree).
    """
    version = server.resolved(profile).vllm_version
    if version == normalise_version(profile.vllm_version):
        return None
    return (f"timings estimated: profile {profile.name} was measured on vLLM "
            f"{profile.vllm_version}, the scheduling rules are vLLM {version}'s")


def check_server(profile: Profile, server: ServerConfig, adapters: Sequence[Adapter]) -> None:
    """Reject configurations vLLM itself rejects, with a one-line :class:`ConfigError`.

    Raises
    ------
    ConfigError
        An adapter's rank exceeds ``max_lora_rank`` (vLLM refuses to load it), or LoRA is
        disabled while adapters are given.
    """
    for a in adapters:
        if a.rank > server.max_lora_rank:
            raise ConfigError(
                f"adapter {a.id!r} has rank {a.rank} > max_lora_rank {server.max_lora_rank}",
                field="max_lora_rank",
            )
        if a.rank < 1:
            raise ConfigError(f"adapter {a.id!r} has rank {a.rank} < 1", field="rank")
        if not (a.rate >= 0 and np.isfinite(a.rate)):
            raise ConfigError(f"adapter {a.id!r} has rate {a.rate}; must be >= 0", field="rate")


def simulate(
    profile: Profile,
    server: ServerConfig,
    adapters: Sequence[Adapter],
    requests: Requests,
    client: ClientConfig | None = None,
    *,
    record_requests: bool = False,
    record_timeseries: bool = False,
) -> SimResult:
    """Simulate one vLLM V1 server serving LoRA adapters over a benchmark window.

    Parameters
    ----------
    profile:
        Performance profile of the model on the GPU (see :mod:`loratwin.profile`).
    server:
        vLLM flags (``max_loras``, ``max_cpu_loras``, ``max_lora_rank``, ``max_num_seqs``,
        ``max_num_batched_tokens``, ``gpu_memory_utilization``) and the release whose rules
        apply (``vllm_version``, default the profile's); unset flags take that release's
        defaults (:meth:`ServerConfig.resolved`).
    adapters:
        The served adapters; ``requests.adapter`` indexes into this sequence.
    requests:
        Arrival-ordered requests with their prompt and output lengths in tokens.
    client:
        Benchmark window (default 3600 s) and client port limit.
    record_requests, record_timeseries:
        Also return per-request records / a per-step time series (DataFrames).

    Returns
    -------
    SimResult
        Metrics (throughput in tokens/s, latencies in ms), per-adapter table, optional
        records. A server that cannot start returns ``memory_error=True`` with vLLM's reason.

    Raises
    ------
    ConfigError
        For configurations vLLM rejects (see :func:`check_server`).
    """
    client = client or ClientConfig()
    server = server.resolved(profile)
    check_server(profile, server, adapters)
    ids = [a.id for a in adapters]
    ranks = [a.rank for a in adapters]
    if len(requests) and (requests.adapter.min() < 0 or requests.adapter.max() >= len(adapters)):
        raise ConfigError("request refers to an adapter index out of range", field="adapter")
    cap = kv_capacity(
        profile, server.max_loras, server.max_lora_rank, enable_lora=server.enable_lora,
        max_num_seqs=server.max_num_seqs, gpu_memory_utilization=server.gpu_memory_utilization,
        max_model_len=server.max_model_len,
    )
    if cap.failure is not None:
        return memory_error_result(cap.failure, ids, ranks, requests, client.duration_s)
    raw = run_engine(
        profile, server, ranks, through_frontend(requests, profile.frontend_per_request_s),
        client, cost=StepCost(profile, server), record_timeseries=record_timeseries,
    )
    result = build_result(
        raw, requests, ids, ranks, client.duration_s, profile.frontend_latency_s,
        record_requests=record_requests,
    )
    return dataclasses.replace(
        result, metrics=dataclasses.replace(result.metrics, kv_cache_tokens=cap.tokens)
    )
