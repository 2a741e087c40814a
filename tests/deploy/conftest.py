"""One stand-in plan, emitted in every format once for all the deploy tests.

The plan comes from ``loratwin place --emit ... OUT --json`` on 20 adapters, one of them too
hot for one GPU (so that it is split into replicas), with the analytic stand-in surrogate
of the placement tests (not the real surrogate: these tests check the files, not the plan).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

import loratwin.placement.bounds as bounds
import loratwin.placement.predictor as predictor_mod
from loratwin.workload.adapters import save_adapters_csv
from loratwin.workload.types import Adapter
from tests.cli_run import run_cli
from tests.placement.conftest import AnalyticPredictor, make_adapters

FORMATS = ("vllm", "kubernetes", "kserve", "litellm", "router")


@pytest.fixture(scope="session")
def emitted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """{"plan": the --json document, "out": OUT folder, "claim": the adapters' PVC}."""
    tmp = tmp_path_factory.mktemp("emit")
    ads = make_adapters(19, 60.0, ranks=(8, 16, 64), seed=3)
    ads.append(Adapter("hot-one", 16, 55.0, 300.0, 100.0))  # ~22,000 tok/s: two GPUs at least
    workload = save_adapters_csv(ads, tmp / "adapters.csv")
    out, plan = tmp / "out", tmp / "plan.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(predictor_mod, "load_predictor",
                   lambda profile, surrogate=None: AnalyticPredictor())
        mp.setattr(bounds, "CAPACITY_WINDOW_S", 300.0)
        argv = ["place", str(workload), str(out), "--no-confirm", "--json", str(plan),
                "--adapter-uri-template", "pvc://team-loras/{adapter_id}"]
        for f in FORMATS:
            argv += ["--emit", f]
        assert run_cli(argv) == 0
    yield {"plan": json.loads(plan.read_text()), "out": out, "claim": "team-loras"}


def placed_on(plan: dict[str, Any]) -> dict[str, dict[str, float]]:
    """adapter id -> {server name: share} as the plan gives it."""
    out: dict[str, dict[str, float]] = {}
    for k, s in enumerate(plan["servers"]):
        for a, share in zip(s["adapters"], s["traffic_share"], strict=True):
            out.setdefault(a, {})[f"loratwin-gpu-{k:02d}"] = share
    return out


def plan_flags(server: dict[str, Any]) -> dict[str, str]:
    """The vLLM flags a plan server must be started with (``--max-lora-rank`` as vLLM takes
    it: the plan's rank rounded up to 8, 16, 32, 64, ...)."""
    rank = next(r for r in (8, 16, 32, 64, 128, 256, 320, 512) if r >= server["max_lora_rank"])
    return {"--max-loras": str(server["max_loras"]),
            "--max-cpu-loras": str(server["max_cpu_loras"]),
            "--max-lora-rank": str(rank),
            "--max-num-seqs": str(server["max_num_seqs"]),
            "--max-num-batched-tokens": str(max(2048, server["max_num_seqs"]))}


def flag_values(argv: list[str]) -> dict[str, str]:
    """``--flag value`` pairs of an argument list (flags followed by a non-flag)."""
    return {a: argv[i + 1] for i, a in enumerate(argv[:-1])
            if a.startswith("--") and not argv[i + 1].startswith("--")}
