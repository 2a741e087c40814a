"""Rows of a collected campaign, in the schema of ``../shared/data/profiles/<model>/``.

Every row carries ``point_id`` (the :class:`~loratwin.calibrate.collect_plan.SweepPoint`
it measured); a folder's CSVs are rewritten atomically after each point, so a campaign that
stops (budget, Ctrl-C, a failed server) keeps every finished point and never measures it
again when resumed. Columns the published sweeps have but a live campaign cannot measure
(``mean_sched_time_ms``, ``mean_unique_adapters_per_batch``, ``model_load_gib``) stay empty.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pandas as pd

from loratwin.calibrate.collect_plan import SWEEP_FILES, ServerSpec, SweepPoint
from loratwin.live.closed import BurstResult

#: Header of a sweep CSV the campaign measured no point of (``profile fit`` reads all three).
EMPTY_COLUMNS = ("model", "point_id", "run", "lora_enabled", "max_num_seqs", "input_len",
                 "output_len", "num_prompts", "status", "duration_s", "completed",
                 "input_tokens_per_req", "output_tokens_per_req", "mean_ttft_ms",
                 "mean_itl_ms", "n_sched_steps", "mean_step_interval_ms", "mean_sched_time_ms")


def done_points(out_dir: Path) -> set[str]:
    """``point_id`` s already in the folder's CSVs."""
    done: set[str] = set()
    for name in (*SWEEP_FILES.values(), "ttft_idle.csv"):
        path = out_dir / name
        if path.is_file() and path.stat().st_size > 0:
            df = pd.read_csv(path)
            if "point_id" in df.columns:
                done.update(str(p) for p in df["point_id"].dropna())
    return done


def append_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """Add rows to a CSV (created with their columns), atomically."""
    new = pd.DataFrame(rows)
    if path.is_file() and path.stat().st_size > 0:
        new = pd.concat([pd.read_csv(path), new], ignore_index=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    new.to_csv(tmp, index=False)
    os.replace(tmp, path)


def ensure_files(out_dir: Path, columns: dict[str, list[str]]) -> None:
    """Create the sweep CSVs a folder lacks, with a header only (``profile fit`` reads all)."""
    for name, cols in columns.items():
        path = out_dir / name
        if not path.is_file():
            pd.DataFrame(columns=cols).to_csv(path, index=False)


def burst_row(model: str, point: SweepPoint, server: ServerSpec, res: BurstResult,
              *, batch: int, output: int, max_num_seqs: int, kv_tokens: int | None
              ) -> dict[str, Any]:
    """One row of ``decode_sweep`` / ``prefill_sweep`` / ``lora_overhead_sweep``."""
    dur = res.duration_s
    lora = server.enable_lora
    return {
        "model": model, "point_id": point.point_id, "run": point.point_id,
        "sub_sweep": point.point_id.split("/", 1)[1] if lora else "",
        "lora_enabled": lora,
        "max_loras": server.max_loras if lora else math.nan,
        "max_lora_rank": server.max_lora_rank if lora else math.nan,
        "adapter_rank": point.adapter_rank if lora else math.nan,
        "restricted_adapters": point.adapters if lora else math.nan,
        "adapter_assignment": "round_robin",
        "max_num_seqs": max_num_seqs, "input_len": point.input, "output_len": output,
        "num_prompts": batch, "request_rate": "inf", "status": "ok", "status_detail": "",
        "duration_s": dur, "completed": res.completed,
        "total_input_tokens": res.mean_input_tokens * res.completed,
        "total_output_tokens": res.mean_output_tokens * res.completed,
        "input_tokens_per_req": res.mean_input_tokens,
        "output_tokens_per_req": res.mean_output_tokens,
        "request_throughput": res.completed / dur if dur > 0 else math.nan,
        "output_throughput": res.mean_output_tokens * res.completed / dur if dur > 0
        else math.nan,
        "mean_ttft_ms": res.mean_ttft_ms, "mean_tpot_ms": res.mean_tpot_ms,
        "mean_itl_ms": res.mean_itl_ms, "max_num_running": res.max_num_running,
        "num_preemptions_total": res.preemptions, "n_sched_steps": res.n_steps,
        "mean_step_interval_ms": dur / res.n_steps * 1e3 if res.n_steps and res.n_steps > 0
        else math.nan,
        "mean_sched_time_ms": math.nan, "kv_cache_tokens": kv_tokens,
        "server_log_present": False,
    }


def kv_row(model: str, point: SweepPoint, server: ServerSpec, kv_tokens: int | None,
           failure: str | None, max_model_len: int, kv_available_gib: float | None = None
           ) -> dict[str, Any]:
    """One row of ``kv_capacity.csv`` (a no-LoRA server's row goes to ``meta.json``)."""
    return {
        "model": model, "point_id": point.point_id, "max_loras": server.max_loras,
        "max_lora_rank": server.max_lora_rank, "kv_cache_tokens": kv_tokens,
        "failure": failure, "model_load_gib": math.nan, "cuda_graph_gib": math.nan,
        "kv_available_gib": kv_available_gib, "max_model_len": max_model_len,
        "server_log_present": False,
    }


def loading_row(model: str, point: SweepPoint, server: ServerSpec, rank: int,
                cpu_ms: list[float], disk_ms: list[float]) -> dict[str, Any]:
    """One row of ``adapter_loading.csv`` from the per-request load times (ms)."""
    s_cpu = pd.Series(cpu_ms, dtype=float)
    s_disk = pd.Series(disk_ms, dtype=float)
    return {
        "model": model, "point_id": point.point_id, "max_lora_rank": server.max_lora_rank,
        "adapter_rank": rank, "max_loras": server.max_loras,
        "max_cpu_loras": server.max_cpu_loras, "num_prompts": len(cpu_ms) + len(disk_ms),
        "n_loads": len(cpu_ms), "total_load_ms": float(s_cpu.sum()),
        "mean_load_ms": float(s_cpu.mean()), "median_load_ms": float(s_cpu.median()),
        "p90_load_ms": float(s_cpu.quantile(0.9)), "max_load_ms": float(s_cpu.max()),
        "n_disk_loads": len(disk_ms), "total_disk_load_ms": float(s_disk.sum()),
        "mean_disk_load_ms": float(s_disk.mean()),
        "median_disk_load_ms": float(s_disk.median()), "server_log_present": False,
    }


def idle_row(point: SweepPoint, server: ServerSpec, rank: int, input_tokens: int,
             ttft_ms: float) -> dict[str, Any]:
    """One row of ``ttft_idle.csv`` (:mod:`loratwin.calibrate.frontend`)."""
    return {"point_id": point.point_id, "input_tokens": input_tokens, "output_tokens": 1,
            "max_loras": server.max_loras, "max_lora_rank": server.max_lora_rank,
            "adapter_rank": rank, "ttft_ms": ttft_ms}
