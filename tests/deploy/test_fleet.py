"""The fleet view of a plan: flags, shares and URIs, and the one-line refusals of bad plans
and options."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from loratwin.deploy import format_name, render
from loratwin.deploy.fleet import FleetOptions, fleet_from_plan, vllm_rank
from loratwin.errors import ConfigError, DataError

PLAN: dict[str, Any] = {
    "algorithm": "loratwin",
    "servers": [
        {"adapters": ["a", "hot"], "ranks": [8, 24], "max_loras": 2, "max_cpu_loras": 2,
         "max_lora_rank": 24, "max_num_seqs": 256, "rates_req_s": [0.5, 3.0],
         "traffic_share": [1.0, 0.75], "gpu_memory_utilization": 0.85},
        {"adapters": ["hot"], "ranks": [24], "max_loras": 1, "max_cpu_loras": 1,
         "max_lora_rank": 24, "max_num_seqs": 4096, "rates_req_s": [1.0],
         "traffic_share": [0.25], "max_num_batched_tokens": 8192},
    ],
    "profile": {"name": "p", "hf_model_name": "org/model", "profile_kind": "prior"},
}


def test_fleet_flags_shares_and_uris() -> None:
    fleet = fleet_from_plan(PLAN, FleetOptions(adapter_uri_template="hf://org/{adapter_id}-r{rank}"))
    s0, s1 = fleet.servers
    assert [vllm_rank(r) for r in (1, 8, 9, 24, 64, 300)] == [8, 8, 16, 32, 64, 320]
    assert s0.flags() == ["--enable-lora", "--max-loras", "2", "--max-cpu-loras", "2",
                          "--max-lora-rank", "32", "--max-num-seqs", "256",
                          "--max-num-batched-tokens", "2048", "--gpu-memory-utilization",
                          "0.85"]
    assert "--gpu-memory-utilization" not in s1.flags()
    assert s1.flags()[s1.flags().index("--max-num-batched-tokens") + 1] == "8192"
    assert s0.adapters[1].uri == "hf://org/hot-r24"
    assert [(s.name, a.share) for s, a in fleet.replicas()["hot"]] == [
        ("loratwin-gpu-00", 0.75), ("loratwin-gpu-01", 0.25)]
    assert s1.api_base == "http://loratwin-gpu-01:8000/v1"
    # an estimated profile says so in the scripts
    assert "(estimated profile)" in render("vllm", fleet)["gpu-00.sh"]


def _with(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PLAN)
    node: Any = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(("doc", "message"), [
    (_with(("servers",), []), "no servers"),
    (_with(("servers", 0), "x"), "must be a mapping"),
    (_with(("servers", 0, "adapters"), []), "non-empty list"),
    (_with(("servers", 0, "adapters"), ["a", "a"]), "listed twice"),
    (_with(("servers", 0, "adapters"), ["a=b", "hot"]), "contains '='"),
    (_with(("servers", 0, "ranks"), [8]), "list of 2"),
    (_with(("servers", 0, "ranks"), [8, 0]), "rank of 'hot'"),
    (_with(("servers", 0, "max_loras"), 0), "max_loras must be an integer"),
    (_with(("servers", 0, "max_cpu_loras"), 1), "vLLM refuses to start"),
    (_with(("servers", 0, "max_lora_rank"), 16), "exceeds max_lora_rank"),
    (_with(("servers", 0, "traffic_share"), [1.0, 1.5]), "traffic_share of 'hot'"),
    (_with(("servers", 0, "gpu_memory_utilization"), 1.2), "must be <= 1"),
    (_with(("servers", 0, "max_num_batched_tokens"), "many"), "max_num_batched_tokens"),
    (_with(("profile",), {}), "no base model"),
])
def test_bad_plans_are_refused(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(DataError, match=message):
        fleet_from_plan(doc)


@pytest.mark.parametrize(("opts", "field"), [
    (FleetOptions(prefix="Bad_Prefix"), "name-prefix"),
    (FleetOptions(adapter_uri_template="s3://b/{id}"), "adapter-uri-template"),
    (FleetOptions(api_base_template="http://{host}"), "api-base-template"),
])
def test_bad_options_are_refused(opts: FleetOptions, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        fleet_from_plan(PLAN, opts)


def test_format_names() -> None:
    assert format_name("router.json") == "router" and format_name("K8S") == "kubernetes"
    with pytest.raises(ConfigError, match="unknown format"):
        format_name("helm")


def test_max_lora_rank_follows_the_plans_vllm_release() -> None:
    """0.32 accepts rank 1 (0.8.5 does not); a rank no release accepts, or an unknown
    release, is a one-line DataError naming the server or field."""
    assert vllm_rank(1, "0.32") == 1 and vllm_rank(1, "0.8.5") == 8
    assert vllm_rank(200, "0.6.3") == 256
    with pytest.raises(DataError, match=r"vLLM 0\.6\.3 accepts \(256\)"):
        vllm_rank(300, "0.6.3")
    with pytest.raises(DataError, match="above the largest"):
        vllm_rank(1000)
    plan = copy.deepcopy(PLAN)
    plan["servers"][1]["ranks"] = [1]
    plan["servers"][1]["max_lora_rank"] = 1
    plan["profile"]["vllm_version"] = "0.32.0"
    fleet = fleet_from_plan(plan)
    assert fleet.vllm_version == "0.32"
    s1 = fleet.servers[1]
    assert s1.flags()[s1.flags().index("--max-lora-rank") + 1] == "1"
    plan["profile"]["vllm_version"] = "0.8.5"
    s1 = fleet_from_plan(plan).servers[1]
    assert s1.flags()[s1.flags().index("--max-lora-rank") + 1] == "8"
    plan["servers"][1]["ranks"] = [600]
    plan["servers"][1]["max_lora_rank"] = 600
    with pytest.raises(DataError, match=r"servers\[1\]: LoRA rank 600 is above"):
        fleet_from_plan(plan)
    plan["profile"]["vllm_version"] = "0.1"
    with pytest.raises(DataError, match=r"profile\.vllm_version: unknown vLLM version"):
        fleet_from_plan(plan)
