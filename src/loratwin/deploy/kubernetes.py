"""``kubernetes`` emitter: a Deployment and a Service per GPU server (``apps/v1``, ``v1``).

Each Deployment runs one pod with one container ``vllm`` (``vllm serve <model> --port 8000``
plus the server's flags and ``--lora-modules``), requests and limits one ``nvidia.com/gpu``
(the NVIDIA device plugin's extended resource), and is ready when ``GET /health`` answers
(vLLM's OpenAI server returns 200 there once the engine is up). A startup probe gives the
model and the adapters up to 15 minutes to load. The strategy is ``Recreate``: a rolling
update would need a second GPU.

Adapter locations (``--adapter-uri-template``):

* ``pvc://<claim>/<path>``: the PersistentVolumeClaim is mounted read-only at
  ``/mnt/adapters/<claim>`` and the module path is ``/mnt/adapters/<claim>/<path>``;
* ``hf://<org>/<repo>``: the repository id is passed to vLLM, which downloads it from the
  Hugging Face Hub (``vllm/lora/utils.py``, ``get_adapter_absolute_path``);
* an absolute path (``/...`` or ``file:///...``): used as it is (a path in the image or in a
  volume you add).

Other schemes (``s3://``, ``gs://``, ...) raise :class:`ConfigError`: ``--emit kserve`` fetches
those with KServe's storage initializer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import yaml

from loratwin.deploy.fleet import VLLM_PORT, Fleet, ServerSpec
from loratwin.deploy.options import EmitOptions
from loratwin.errors import ConfigError

ADAPTER_MOUNT = "/mnt/adapters"
GPU_RESOURCE = "nvidia.com/gpu"


def adapter_path(uri: str) -> tuple[str, str | None]:
    """(path or repo id given to ``--lora-modules``, PVC claim to mount or ``None``)."""
    parts = urlsplit(uri)
    if parts.scheme == "pvc":
        claim, path = parts.netloc, parts.path.strip("/")
        if not claim or not path:
            raise ConfigError(f"{uri!r}: expected pvc://<claim>/<path>",
                              field="adapter-uri-template")
        return f"{ADAPTER_MOUNT}/{claim}/{path}", claim
    if parts.scheme == "hf":
        repo = (parts.netloc + parts.path).strip("/")
        if repo.count("/") != 1:
            raise ConfigError(f"{uri!r}: expected hf://<org>/<repo>",
                              field="adapter-uri-template")
        return repo, None
    if parts.scheme == "file" or (not parts.scheme and uri.startswith("/")):
        return parts.path, None
    raise ConfigError(f"{uri!r}: the kubernetes emitter takes pvc://, hf:// or absolute "
                      "paths (use --emit kserve for other storage)", field="adapter-uri-template")


def labels(fleet: Fleet, server: ServerSpec) -> dict[str, str]:
    """Recommended labels (``app.kubernetes.io/*``) of one server's objects."""
    return {"app.kubernetes.io/name": server.name, "app.kubernetes.io/part-of": fleet.prefix,
            "app.kubernetes.io/component": "vllm-server",
            "app.kubernetes.io/managed-by": "loratwin"}


def annotations(fleet: Fleet, server: ServerSpec) -> dict[str, str]:
    """What the plan says about the server (strings, as annotations must be)."""
    p = server.predicted
    out = {"loratwin/algorithm": fleet.algorithm, "loratwin/gpu-index": str(server.index),
           "loratwin/adapters": str(len(server.adapters))}
    kind = " (estimated)" if fleet.profile_kind == "prior" else ""
    if "total_throughput_tok_s" in p and p["total_throughput_tok_s"] is not None:
        out["loratwin/predicted-throughput-tok-s"] = f"{p['total_throughput_tok_s']:.0f}{kind}"
    return out


def container_args(fleet: Fleet, server: ServerSpec) -> tuple[list[str], list[str]]:
    """(``vllm serve`` args, PVC claims to mount) of one server."""
    modules, claims = [], []
    for a in server.adapters:
        path, claim = adapter_path(a.uri)
        if "=" in path:
            raise ConfigError(f"{a.uri!r}: '=' is not allowed in a --lora-modules path",
                              field="adapter-uri-template")
        modules.append(f"{a.id}={path}")
        if claim is not None and claim not in claims:
            claims.append(claim)
    args = [fleet.hf_model, "--port", str(VLLM_PORT), *server.flags(), "--lora-modules",
            *modules]
    return args, claims


def _probe(path: str, period_s: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period_s,
            "failureThreshold": failures}


def deployment(fleet: Fleet, server: ServerSpec, options: EmitOptions) -> dict[str, Any]:
    """The ``apps/v1`` Deployment of one server."""
    args, claims = container_args(fleet, server)
    lab = labels(fleet, server)
    mounts = [{"name": f"adapters-{k}", "mountPath": f"{ADAPTER_MOUNT}/{c}", "readOnly": True}
              for k, c in enumerate(claims)]
    mounts += [{"name": "hf-cache", "mountPath": "/root/.cache/huggingface"},
               {"name": "dshm", "mountPath": "/dev/shm"}]
    volumes = [{"name": f"adapters-{k}",
                "persistentVolumeClaim": {"claimName": c, "readOnly": True}}
               for k, c in enumerate(claims)]
    volumes += [{"name": "hf-cache", "emptyDir": {}},
                {"name": "dshm", "emptyDir": {"medium": "Memory"}}]
    container = {
        "name": "vllm",
        "image": options.container_image(),
        "command": ["vllm", "serve"],
        "args": args,
        "ports": [{"name": "http", "containerPort": VLLM_PORT, "protocol": "TCP"}],
        "env": [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {
            "name": options.hf_token_secret, "key": "token", "optional": True}}}],
        "resources": {"requests": {GPU_RESOURCE: "1"}, "limits": {GPU_RESOURCE: "1"}},
        "readinessProbe": _probe("/health", 10, 3),
        "startupProbe": _probe("/health", 10, 90),
        "volumeMounts": mounts,
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": server.name, "labels": lab,
                     "annotations": annotations(fleet, server)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": {"app.kubernetes.io/name": server.name}},
            "template": {"metadata": {"labels": lab},
                         "spec": {"containers": [container], "volumes": volumes}},
        },
    }


def service(fleet: Fleet, server: ServerSpec) -> dict[str, Any]:
    """The ``v1`` Service (ClusterIP, port 8000) in front of one server."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": server.name, "labels": labels(fleet, server)},
        "spec": {"selector": {"app.kubernetes.io/name": server.name},
                 "ports": [{"name": "http", "port": VLLM_PORT, "targetPort": "http",
                            "protocol": "TCP"}]},
    }


class _PlainDumper(yaml.SafeDumper):
    """Safe YAML without anchors and aliases (a shared dict is written out each time)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(objects: list[dict[str, Any]]) -> str:
    """Objects as one multi-document YAML stream (keys in the order written, no aliases)."""
    return yaml.dump_all(objects, Dumper=_PlainDumper, sort_keys=False,
                         default_flow_style=False, width=100)


def render(fleet: Fleet, options: EmitOptions) -> dict[str, str]:
    """``<server>.yaml`` per server: its Deployment and Service."""
    return {f"{s.name}.yaml": dump([deployment(fleet, s, options), service(fleet, s)])
            for s in fleet.servers}
