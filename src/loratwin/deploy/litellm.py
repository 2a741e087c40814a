"""``litellm`` emitter: a LiteLLM proxy config routing each adapter to the servers holding it.

One ``model_list`` entry per (adapter, server): ``model_name`` is the adapter id (what clients
send as ``model``), ``litellm_params.model`` is ``hosted_vllm/<adapter id>`` (LiteLLM's
provider for vLLM's OpenAI-compatible server; vLLM serves each ``--lora-modules`` name as a
model) and ``litellm_params.api_base`` the server's address. A replicated adapter has several
entries with the same ``model_name`` and a ``weight`` each (its share of the traffic), which
LiteLLM's ``simple-shuffle`` routing strategy honours (LiteLLM docs, "Proxy: Load balancing",
weighted deployments).
"""

from __future__ import annotations

from typing import Any

import yaml

from loratwin.deploy.fleet import Fleet
from loratwin.deploy.options import EmitOptions

PROVIDER = "hosted_vllm"


def config(fleet: Fleet) -> dict[str, Any]:
    """The proxy config (``model_list`` and ``router_settings``)."""
    model_list = []
    for adapter_id, holders in fleet.replicas().items():
        for server, slot in holders:
            params: dict[str, Any] = {"model": f"{PROVIDER}/{adapter_id}",
                                      "api_base": server.api_base}
            if len(holders) > 1:
                params["weight"] = round(slot.share, 6)
            model_list.append({"model_name": adapter_id, "litellm_params": params})
    return {"model_list": model_list, "router_settings": {"routing_strategy": "simple-shuffle"}}


def render(fleet: Fleet, options: EmitOptions) -> dict[str, str]:
    """``config.yaml`` (start the proxy with ``litellm --config config.yaml``)."""
    head = (f"# LiteLLM proxy config from a loratwin placement ({fleet.algorithm}, "
            f"{len(fleet.servers)} GPU server(s), base model {fleet.hf_model})\n")
    return {"config.yaml": head + yaml.safe_dump(config(fleet), sort_keys=False, width=100)}
