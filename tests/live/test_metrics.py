"""The /metrics parser: vLLM 0.32 (a real capture) and 0.8.5 names, server facts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loratwin.errors import DataError
from loratwin.live.metrics import ServerFacts, merge_facts, parse_samples, server_facts, snapshot

DATA = Path(__file__).parent / "data"


def test_real_vllm_032_capture() -> None:
    samples = parse_samples((DATA / "metrics-vllm-0.32.0.txt").read_text())
    snap = snapshot(samples, 1.5)
    assert snap.t_s == 1.5
    assert (snap.num_requests_running, snap.num_requests_waiting) == (0.0, 0.0)
    assert snap.kv_cache_usage == 0.0
    assert snap.num_steps_total == 5.0  # vllm:iteration_tokens_total_count
    assert (snap.prompt_tokens_total, snap.generation_tokens_total) == (8.0, 5.0)
    facts = server_facts(samples)
    assert facts.block_size == 128 and facts.num_gpu_blocks == 16384
    assert facts.kv_cache_tokens == 2_097_152
    assert facts.max_loras == 2
    assert facts.enable_prefix_caching is True
    # the newest lora_requests_info series is the current one: no adapter running
    assert facts.running_lora_adapters == ()


V085 = """\
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 3.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 7.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.42
# TYPE vllm:num_preemptions counter
vllm:num_preemptions_total{engine="0",model_name="m"} 11.0
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",gpu_memory_utilization="0.9",num_gpu_blocks="20934"} 1.0
# TYPE vllm:lora_requests_info gauge
vllm:lora_requests_info{max_lora="32",running_lora_adapters="x",waiting_lora_adapters=""} 10.0
vllm:lora_requests_info{max_lora="32",running_lora_adapters="b,c",waiting_lora_adapters="d"} 20.0
"""


def test_vllm_085_names() -> None:
    samples = parse_samples(V085)
    snap = snapshot(samples, 0.0)
    assert snap.kv_cache_usage == pytest.approx(0.42)  # gpu_cache_usage_perc
    assert snap.num_preemptions_total == 11.0
    assert snap.num_requests_running == 3.0 and snap.num_requests_waiting == 7.0
    facts = server_facts(samples)
    assert facts.kv_cache_tokens == 16 * 20934  # no kv_cache_size_tokens label in 0.8.5
    assert facts.gpu_memory_utilization == pytest.approx(0.9)
    assert facts.running_lora_adapters == ("b", "c")  # the newer series
    assert facts.max_loras == 32


def test_engines_are_summed_and_usage_averaged() -> None:
    text = "\n".join([
        "# TYPE vllm:num_requests_running gauge",
        'vllm:num_requests_running{engine="0"} 2.0',
        'vllm:num_requests_running{engine="1"} 5.0',
        "# TYPE vllm:kv_cache_usage_perc gauge",
        'vllm:kv_cache_usage_perc{engine="0"} 0.2',
        'vllm:kv_cache_usage_perc{engine="1"} 0.6',
        "",
    ])
    snap = snapshot(parse_samples(text), 0.0)
    assert snap.num_requests_running == 7.0
    assert snap.kv_cache_usage == pytest.approx(0.4)


def test_missing_quantities_are_nan_and_facts_none() -> None:
    samples = parse_samples("# TYPE other gauge\nother 1.0\n")
    snap = snapshot(samples, 0.0)
    assert snap.num_requests_running != snap.num_requests_running  # NaN
    assert server_facts(samples) == ServerFacts()


def test_not_prometheus_text() -> None:
    with pytest.raises(DataError, match="/metrics"):
        parse_samples("vllm:num_requests_running{engine=0 1.0\n")


def test_merge_keeps_facts_seen_earlier() -> None:
    early = ServerFacts(block_size=16, max_loras=4)
    late = ServerFacts(block_size=16, num_gpu_blocks=100)
    merged = merge_facts(early, late)
    assert merged.max_loras == 4 and merged.num_gpu_blocks == 100


def test_server_side_ttft_histogram_is_summed_over_engines() -> None:
    text = """\
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{engine="0",le="+Inf",model_name="m"} 3.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="m"} 3.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="m"} 0.25
vllm:time_to_first_token_seconds_bucket{engine="1",le="+Inf",model_name="m"} 1.0
vllm:time_to_first_token_seconds_count{engine="1",model_name="m"} 1.0
vllm:time_to_first_token_seconds_sum{engine="1",model_name="m"} 0.15
"""
    snap = snapshot(parse_samples(text), 0.0)
    assert (snap.ttft_count, snap.ttft_sum_s) == (4.0, pytest.approx(0.4))
    bare = snapshot(parse_samples(V085), 0.0)
    assert math.isnan(bare.ttft_count) and math.isnan(bare.ttft_sum_s)
