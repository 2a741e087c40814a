"""``kserve`` emitter: one ``LLMInferenceService`` (``serving.kserve.io/v1alpha1``) per GPU server.

Fields as KServe v0.15 names them in its API types
(``pkg/apis/serving/v1alpha1/llm_inference_service_types.go``, ``LLMInferenceServiceSpec``):
``spec.model.uri`` and ``spec.model.name`` (the base model), ``spec.model.lora.adapters[]``
(each an ``LLMModelSpec``: ``name``, ``uri``; KServe's storage initializer fetches
``hf://``, ``s3://``, ``gs://``, ``pvc://``, ``https://`` URIs), ``spec.replicas`` (1: one
GPU server), ``spec.template`` (a core/v1 PodSpec merged with KServe's vLLM template; its
container ``main`` carries the server's vLLM flags as ``args`` and one ``nvidia.com/gpu``), and
``spec.router`` with ``route`` and ``gateway`` (KServe makes an HTTPRoute on the default
Gateway). The LoRA limits of each server are vLLM flags there (``--max-loras``,
``--max-cpu-loras``, ``--max-lora-rank``). docs/deploy.md says what was and was not checked.
"""

from __future__ import annotations

from typing import Any

from loratwin.deploy.fleet import Fleet, ServerSpec
from loratwin.deploy.kubernetes import GPU_RESOURCE, annotations, dump, labels
from loratwin.deploy.options import EmitOptions

API_VERSION = "serving.kserve.io/v1alpha1"
KIND = "LLMInferenceService"


def llm_inference_service(fleet: Fleet, server: ServerSpec, options: EmitOptions
                          ) -> dict[str, Any]:
    """The ``LLMInferenceService`` of one server."""
    model_uri = options.model_uri or f"hf://{fleet.hf_model}"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": server.name, "labels": labels(fleet, server),
                     "annotations": annotations(fleet, server)},
        "spec": {
            "model": {
                "uri": model_uri,
                "name": fleet.hf_model,
                "lora": {"adapters": [{"name": a.id, "uri": a.uri} for a in server.adapters]},
            },
            "replicas": 1,
            "template": {"containers": [{
                "name": "main",
                "args": server.flags(),
                "resources": {"requests": {GPU_RESOURCE: "1"}, "limits": {GPU_RESOURCE: "1"}},
            }]},
            "router": {"route": {}, "gateway": {}},
        },
    }


def render(fleet: Fleet, options: EmitOptions) -> dict[str, str]:
    """``<server>.yaml`` per server."""
    return {f"{s.name}.yaml": dump([llm_inference_service(fleet, s, options)])
            for s in fleet.servers}
