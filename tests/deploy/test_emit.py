"""Every emitted file loads back, passes its schema, and carries exactly the plan's adapters
(on the plan's servers, with the plan's shares) and flags.

Schemas: Kubernetes objects against Kubernetes' OpenAPI schemas (``kubernetes-validate``,
strict: unknown fields fail); the PodSpec of the KServe objects likewise; the rest of the
``LLMInferenceService`` against the fields KServe v0.15's API types define
(``pkg/apis/serving/v1alpha1/llm_inference_service_types.go``: ``LLMInferenceServiceSpec``,
``LLMModelSpec``, ``LoRASpec``, ``RouterSpec``); the LiteLLM config by ``litellm.Router``.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import FORMATS, flag_values, placed_on, plan_flags

K8S_VERSION = "1.30"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def test_every_format_writes_its_files(emitted: dict[str, Any]) -> None:
    out, plan = emitted["out"], emitted["plan"]
    assert sorted(p.name for p in out.iterdir()) == sorted(FORMATS)
    n = plan["gpus"]
    assert n >= 2 and plan["profile"]["hf_model_name"] == "meta-llama/Llama-3.1-8B-Instruct"
    names = [f"loratwin-gpu-{k:02d}.yaml" for k in range(n)]
    assert sorted(p.name for p in (out / "kubernetes").iterdir()) == names
    assert sorted(p.name for p in (out / "kserve").iterdir()) == names
    assert len(list((out / "vllm").glob("gpu-*.sh"))) == n
    # the hot adapter is split: the test must see replicas
    assert len(placed_on(plan)["hot-one"]) >= 2


def test_kubernetes_objects_match_schema_and_plan(emitted: dict[str, Any]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    out, plan = emitted["out"], emitted["plan"]
    seen: dict[str, set[str]] = {}
    for k, server in enumerate(plan["servers"]):
        name = f"loratwin-gpu-{k:02d}"
        text = (out / "kubernetes" / f"{name}.yaml").read_text()
        assert "&id" not in text and "*id" not in text  # no YAML aliases
        dep, svc = _docs(out / "kubernetes" / f"{name}.yaml")
        for obj in (dep, svc):
            kv.validate(obj, K8S_VERSION, strict=True)
        assert (dep["kind"], svc["kind"]) == ("Deployment", "Service")
        assert dep["metadata"]["name"] == svc["metadata"]["name"] == name
        pod = dep["spec"]["template"]
        assert svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
        (c,) = pod["spec"]["containers"]
        assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert c["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        assert c["command"] == ["vllm", "serve"]
        args = c["args"]
        assert args[0] == plan["profile"]["hf_model_name"] and "--enable-lora" in args
        assert plan_flags(server).items() <= flag_values(args).items()
        mods = args[args.index("--lora-modules") + 1:]
        claim = emitted["claim"]
        assert mods == [f"{a}=/mnt/adapters/{claim}/{a}" for a in server["adapters"]]
        claims = [v["persistentVolumeClaim"]["claimName"] for v in pod["spec"]["volumes"]
                  if "persistentVolumeClaim" in v]
        assert claims == [claim]
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert f"/mnt/adapters/{claim}" in mounts
        for a in server["adapters"]:
            seen.setdefault(a, set()).add(name)
    assert seen == {a: set(s) for a, s in placed_on(plan).items()}


# KServe v0.15 API types (see the module docstring): the fields each struct defines.
LLMISVC_SPEC = {"model", "replicas", "parallelism", "template", "worker", "router", "prefill",
                "baseRefs"}
LLM_MODEL_SPEC = {"uri", "name", "criticality", "lora", "storage"}
LORA_SPEC = {"adapters"}
ROUTER_SPEC = {"route", "gateway", "ingress", "scheduler"}


def test_kserve_objects_match_fields_and_plan(emitted: dict[str, Any]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed")
    out, plan = emitted["out"], emitted["plan"]
    seen: dict[str, set[str]] = {}
    for k, server in enumerate(plan["servers"]):
        name = f"loratwin-gpu-{k:02d}"
        (obj,) = _docs(out / "kserve" / f"{name}.yaml")
        assert obj["apiVersion"] == "serving.kserve.io/v1alpha1"
        assert obj["kind"] == "LLMInferenceService" and obj["metadata"]["name"] == name
        spec = obj["spec"]
        assert set(spec) <= LLMISVC_SPEC and set(spec["model"]) <= LLM_MODEL_SPEC
        assert set(spec["model"]["lora"]) <= LORA_SPEC and set(spec["router"]) <= ROUTER_SPEC
        assert spec["model"]["uri"] == "hf://" + plan["profile"]["hf_model_name"]
        adapters = spec["model"]["lora"]["adapters"]
        for a in adapters:
            assert set(a) <= LLM_MODEL_SPEC and {"name", "uri"} <= set(a)
            assert a["uri"] == f"pvc://{emitted['claim']}/{a['name']}"
        assert [a["name"] for a in adapters] == server["adapters"]
        assert spec["replicas"] == 1
        kv.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                     "spec": spec["template"]}, K8S_VERSION, strict=True)
        (c,) = spec["template"]["containers"]
        assert c["name"] == "main" and c["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert plan_flags(server).items() <= flag_values(c["args"]).items()
        for a in server["adapters"]:
            seen.setdefault(a, set()).add(name)
    assert seen == {a: set(s) for a, s in placed_on(plan).items()}


def test_router_table_has_every_replica_and_share(emitted: dict[str, Any]) -> None:
    table = json.loads((emitted["out"] / "router" / "router.json").read_text())
    assert table["format"] == "loratwin-router/1"
    expected = placed_on(emitted["plan"])
    got = {a: {r["server"]: r["share"] for r in reps} for a, reps in table["adapters"].items()}
    assert got.keys() == expected.keys()
    for a, reps in expected.items():
        assert got[a].keys() == reps.keys()
        assert all(math.isclose(got[a][s], v, abs_tol=1e-6) for s, v in reps.items())
        assert math.isclose(sum(got[a].values()), 1.0, abs_tol=1e-4)
    bases = {s["name"]: s["api_base"] for s in table["servers"]}
    assert bases["loratwin-gpu-00"] == "http://loratwin-gpu-00:8000/v1"


def test_litellm_config_loads_in_litellm(emitted: dict[str, Any],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = yaml.safe_load((emitted["out"] / "litellm" / "config.yaml").read_text())
    expected = placed_on(emitted["plan"])
    entries: dict[str, dict[str, float]] = {}
    for e in cfg["model_list"]:
        assert set(e) == {"model_name", "litellm_params"}
        p = e["litellm_params"]
        assert p["model"] == f"hosted_vllm/{e['model_name']}"
        server = p["api_base"].removeprefix("http://").split(":")[0]
        entries.setdefault(e["model_name"], {})[server] = p.get("weight", 1.0)
    assert entries.keys() == expected.keys()
    for a, reps in expected.items():
        assert entries[a].keys() == reps.keys()
        assert entries[a] == pytest.approx(reps, abs=1e-6)
    # LiteLLM's own router takes the config (no network: local model cost map)
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    litellm = pytest.importorskip("litellm", reason="litellm not installed (the deploy-check "
                                                    "extra)")
    router = litellm.Router(model_list=cfg["model_list"], **cfg["router_settings"])
    for a, reps in expected.items():
        deployments = [d for d in router.model_list if d["model_name"] == a]
        assert {d["litellm_params"]["api_base"] for d in deployments} == {
            f"http://{s}:8000/v1" for s in reps}


def test_vllm_scripts_start_the_plans_servers(emitted: dict[str, Any]) -> None:
    out, plan = emitted["out"], emitted["plan"]
    for k, server in enumerate(plan["servers"]):
        text = (out / "vllm" / f"gpu-{k:02d}.sh").read_text()
        assert subprocess.run(["bash", "-n", "-c", text], check=False).returncode == 0
        body = text[text.index("exec "):].replace("\\\n", " ")
        argv = shlex.split(body.replace('"${PORT:-8000}"', "8000"))
        assert argv[:4] == ["exec", "vllm", "serve", plan["profile"]["hf_model_name"]]
        assert plan_flags(server).items() <= flag_values(argv).items()
        mods = argv[argv.index("--lora-modules") + 1:]
        assert mods == [f"{a}=./adapters/{a}" for a in server["adapters"]]
        split = [a for a, s in zip(server["adapters"], server["traffic_share"], strict=True)
                 if s < 1]
        if split:
            line = next(x for x in text.splitlines() if x.startswith("# split adapters"))
            assert all(f"{a} " in line for a in split)
