"""``meta.json`` of a collected calibration folder (the facts ``profile fit`` reads).

Every value is measured on the server or read from the model's ``config.json``, except the
default request lengths of the profile (``workload_real_runs``), which are the means of the
bundled ShareGPT length table under vLLM's benchmark filter (the lengths ``loratwin simulate``
assumes when a configuration gives none), and, on a GPU without ``--gpu-memory-gib``, the
total GPU memory, estimated as the KV cache memory / ``gpu_memory_utilization`` and labelled
so.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from loratwin.calibrate.collect_model import model_shapes
from loratwin.calibrate.collect_plan import CampaignPlan

GIB = float(1 << 30)


def _sharegpt_means() -> tuple[float, float]:
    from loratwin.workload.bundled import sharegpt_lengths_path
    from loratwin.workload.lengths import VLLM_SHAREGPT_FILTER, EmpiricalLengths

    pool = EmpiricalLengths.from_csv(sharegpt_lengths_path(), VLLM_SHAREGPT_FILTER)
    return float(pool.mean_input), float(pool.mean_output)


def _first(servers: dict[str, dict[str, Any]], key: str) -> Any:
    return next((s[key] for s in servers.values() if s.get(key) is not None), None)


def build_meta(state: dict[str, Any], plan: CampaignPlan, opts: Any) -> dict[str, Any] | None:
    """The ``meta.json`` mapping, or ``None`` before any server reported its facts."""
    servers: dict[str, dict[str, Any]] = state.get("servers", {})
    block = _first(servers, "block_size")
    if block is None or not state.get("max_model_len"):
        return None
    shapes, kv_bytes = model_shapes(Path(state["config_json"]))
    device = state.get("device") or "cuda"
    no_lora = servers.get("nolora", {}).get("kv_cache_tokens")
    kv_ref = no_lora if no_lora is not None else _first(servers, "kv_cache_tokens")
    gmu = _first(servers, "gpu_memory_utilization") or 0.9
    kv_gib = (kv_ref or 0) * kv_bytes / GIB
    if device == "cpu":
        gpu = {"model": "CPU (vLLM CPU backend)", "reported_total_capacity_gib": kv_gib,
               "note": "KV cache memory set by VLLM_CPU_KVCACHE_SPACE"}
    elif opts.gpu_memory_gib:
        gpu = {"model": opts.gpu_name or "GPU", "reported_total_capacity_gib":
               float(opts.gpu_memory_gib)}
    else:
        gpu = {"model": opts.gpu_name or "GPU", "reported_total_capacity_gib": kv_gib / gmu,
               "inferred": True, "note": "estimated as KV memory / gpu_memory_utilization"}
    mean_in, mean_out = _sharegpt_means()
    version = state.get("vllm_version") or "unknown"
    seqs = int(state["max_num_seqs"])
    return {
        "model": state["model"],
        "hf_model_name": state.get("base_model") or state["model"],
        "profile_kind": "collected",
        "profile_source": (
            f"collected by `loratwin profile collect` ({state.get('target')}) from vLLM "
            f"{version} on {gpu['model']}, {time.strftime('%Y-%m-%d')}; fitted by "
            "`loratwin profile fit`"),
        "architecture_shapes": shapes,
        "serving_engine": {
            "vllm_version": version, "device": device, "block_size_tokens": int(block),
            "max_num_batched_tokens": int(state["max_num_batched_tokens"]),
            "max_num_seqs_serving_runs": seqs, "chunked_prefill": True,
            "enable_prefix_caching": _first(servers, "enable_prefix_caching"),
            "gpu_memory_utilization": float(gmu),
            "max_model_len": int(state["max_model_len"]),
        },
        "gpu": gpu,
        "memory": {
            "kv_bytes_per_token_from_architecture": kv_bytes,
            "kv_cache_tokens_lora_disabled_by_max_num_seqs": {str(seqs): int(kv_ref or 0)},
            "kv_cache_note": ("measured without LoRA" if no_lora is not None else
                              "no server without LoRA was measured: the LoRA server's size"),
        },
        "workload_real_runs": {
            "realized_mean_input_tokens_per_completed_request": mean_in,
            "realized_mean_output_tokens_per_completed_request": mean_out,
            "note": "not measured: ShareGPT means under vLLM's benchmark filter, the default "
                    "lengths of simulate",
        },
        "campaign": {
            "servers": [s.key for s in plan.servers], "points": len(plan.points),
            "point_s": opts.point_s, "budget_min": opts.budget_min,
        },
    }


def write_meta(out_dir: Path, state: dict[str, Any], plan: CampaignPlan, opts: Any) -> None:
    """Write ``meta.json`` (atomically) once some server reported its facts."""
    meta = build_meta(state, plan, opts)
    if meta is None:
        return
    path = out_dir / "meta.json"
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    os.replace(tmp, path)
