"""vLLM's ``/metrics``: parse the Prometheus text and keep what the benchmark needs.

The text is parsed with ``prometheus_client``'s own parser
(:func:`prometheus_client.parser.text_string_to_metric_families`). Names differ between
releases, so every quantity lists the sample names it may appear under:

=========================  ==============================================================
quantity                   sample names (vLLM 0.32 first, then 0.8.5)
=========================  ==============================================================
running requests           ``vllm:num_requests_running``
waiting requests           ``vllm:num_requests_waiting``
KV cache usage (0-1)       ``vllm:kv_cache_usage_perc``, ``vllm:gpu_cache_usage_perc``
preemptions (cumulative)   ``vllm:num_preemptions_total``
engine steps (cumulative)  ``vllm:iteration_tokens_total_count``
prompt / output tokens     ``vllm:prompt_tokens_total`` / ``vllm:generation_tokens_total``
server-side TTFT           ``vllm:time_to_first_token_seconds_sum`` / ``_count``
=========================  ==============================================================

The server-side TTFT is vLLM's own histogram (both releases): from the API server's arrival
stamp of a request to its output processor handling the first token, i.e. without the
HTTP streaming of that token to the client.

Gauges and counters are summed over the ``engine`` label (data-parallel engines), the KV
usage is averaged. Two info-style series describe the server (``vllm/v1/metrics/loggers.py``
of both releases): ``vllm:cache_config_info`` (value 1; labels ``block_size``,
``num_gpu_blocks``, ``gpu_memory_utilization`` and, in 0.32, ``kv_cache_size_tokens``) and
``vllm:lora_requests_info`` (labels ``max_lora``, ``running_lora_adapters``,
``waiting_lora_adapters``; the value is a timestamp and the newest series is the current
one; it only appears once a request was served).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from loratwin.errors import DataError

RUNNING = ("vllm:num_requests_running",)
WAITING = ("vllm:num_requests_waiting",)
KV_USAGE = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
PREEMPTIONS = ("vllm:num_preemptions_total",)
STEPS = ("vllm:iteration_tokens_total_count",)
PROMPT_TOKENS = ("vllm:prompt_tokens_total",)
GENERATION_TOKENS = ("vllm:generation_tokens_total",)
TTFT_SUM = ("vllm:time_to_first_token_seconds_sum",)
TTFT_COUNT = ("vllm:time_to_first_token_seconds_count",)
CACHE_CONFIG = "vllm:cache_config_info"
LORA_INFO = "vllm:lora_requests_info"


@dataclass(frozen=True)
class Sample:
    """One labelled sample of the exposition: name, labels, value."""

    name: str
    labels: dict[str, str]
    value: float


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition.

    Raises
    ------
    DataError
        The text is not valid Prometheus exposition format.
    """
    try:
        return [
            Sample(s.name, dict(s.labels), float(s.value))
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        ]
    except (ValueError, TypeError, IndexError) as exc:
        raise DataError(f"/metrics: not Prometheus text ({exc})") from None


def _values(samples: Iterable[Sample], names: tuple[str, ...]) -> list[float]:
    """Values of the first of ``names`` that occurs (one per engine)."""
    by_name: dict[str, list[float]] = {}
    for s in samples:
        if s.name in names:
            by_name.setdefault(s.name, []).append(s.value)
    for n in names:
        if n in by_name:
            return by_name[n]
    return []


def _sum(samples: list[Sample], names: tuple[str, ...]) -> float:
    v = _values(samples, names)
    return float(sum(v)) if v else math.nan


def _mean(samples: list[Sample], names: tuple[str, ...]) -> float:
    v = _values(samples, names)
    return float(sum(v) / len(v)) if v else math.nan


@dataclass(frozen=True)
class MetricsSnapshot:
    """The benchmark's quantities at one scrape (NaN when the server does not export one).

    Attributes
    ----------
    t_s:
        Client time of the scrape, s since the benchmark start.
    num_requests_running, num_requests_waiting:
        Gauges, requests.
    kv_cache_usage:
        Fraction of KV cache blocks in use, 0-1.
    num_preemptions_total, num_steps_total, prompt_tokens_total, generation_tokens_total:
        Cumulative counters since the server started (preemptions, engine steps, tokens).
    ttft_sum_s, ttft_count:
        Sum (s) and count of vLLM's server-side TTFT histogram since the server started.
    """

    t_s: float
    num_requests_running: float
    num_requests_waiting: float
    kv_cache_usage: float
    num_preemptions_total: float
    num_steps_total: float
    prompt_tokens_total: float
    generation_tokens_total: float
    ttft_sum_s: float = math.nan
    ttft_count: float = math.nan


def snapshot(samples: list[Sample], t_s: float) -> MetricsSnapshot:
    """The :class:`MetricsSnapshot` of one parsed scrape taken at ``t_s``."""
    return MetricsSnapshot(
        t_s=t_s,
        num_requests_running=_sum(samples, RUNNING),
        num_requests_waiting=_sum(samples, WAITING),
        kv_cache_usage=_mean(samples, KV_USAGE),
        num_preemptions_total=_sum(samples, PREEMPTIONS),
        num_steps_total=_sum(samples, STEPS),
        prompt_tokens_total=_sum(samples, PROMPT_TOKENS),
        generation_tokens_total=_sum(samples, GENERATION_TOKENS),
        ttft_sum_s=_sum(samples, TTFT_SUM),
        ttft_count=_sum(samples, TTFT_COUNT),
    )


@dataclass(frozen=True)
class ServerFacts:
    """What a vLLM server says about its own configuration in ``/metrics``.

    ``None`` means "not exported" (e.g. ``max_loras`` before the first LoRA request, or
    ``kv_cache_tokens`` in 0.8.5, where it is ``num_gpu_blocks * block_size``).

    Attributes
    ----------
    block_size:
        KV cache block size in tokens (16 on CUDA, 128 on vLLM's CPU backend).
    num_gpu_blocks:
        KV cache blocks (on the CPU backend: blocks in host memory).
    kv_cache_tokens:
        KV cache size in tokens.
    gpu_memory_utilization:
        ``--gpu-memory-utilization`` (the CPU backend sizes its cache from
        ``VLLM_CPU_KVCACHE_SPACE`` instead and reports the default).
    enable_prefix_caching:
        Whether automatic prefix caching is on.
    max_loras:
        ``--max-loras`` (label ``max_lora`` of ``vllm:lora_requests_info``).
    running_lora_adapters:
        Adapters of the newest ``vllm:lora_requests_info`` series.
    """

    block_size: int | None = None
    num_gpu_blocks: int | None = None
    kv_cache_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    enable_prefix_caching: bool | None = None
    max_loras: int | None = None
    running_lora_adapters: tuple[str, ...] = ()


def _int(v: str | None) -> int | None:
    try:
        return int(float(v)) if v not in (None, "", "None") else None
    except ValueError:
        return None


def _float(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "", "None") else None
    except ValueError:
        return None


def server_facts(samples: list[Sample]) -> ServerFacts:
    """Read :class:`ServerFacts` from the info series of one scrape."""
    cache = next((s.labels for s in samples if s.name == CACHE_CONFIG), {})
    lora = [s for s in samples if s.name == LORA_INFO]
    newest = max(lora, key=lambda s: s.value).labels if lora else {}
    block = _int(cache.get("block_size"))
    blocks = _int(cache.get("num_gpu_blocks"))
    tokens = _int(cache.get("kv_cache_size_tokens"))
    if tokens is None and block is not None and blocks is not None:
        tokens = block * blocks
    apc = cache.get("enable_prefix_caching")
    running = newest.get("running_lora_adapters", "")
    return ServerFacts(
        block_size=block,
        num_gpu_blocks=blocks,
        kv_cache_tokens=tokens,
        gpu_memory_utilization=_float(cache.get("gpu_memory_utilization")),
        enable_prefix_caching=None if apc is None else apc == "True",
        max_loras=_int(newest.get("max_lora")),
        running_lora_adapters=tuple(a for a in running.split(",") if a),
    )


def merge_facts(old: ServerFacts, new: ServerFacts) -> ServerFacts:
    """``new`` with every field it lacks taken from ``old`` (facts seen at any scrape)."""
    return ServerFacts(**{
        k: (getattr(new, k) if getattr(new, k) not in (None, ()) else getattr(old, k))
        for k in ServerFacts.__dataclass_fields__
    })
