"""``loratwin simulate``: one vLLM server in the digital twin."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from loratwin.cli.app import app
from loratwin.errors import ConfigError


@app.command("simulate")
def simulate_cmd(
    config: Path | None = typer.Argument(None, help="YAML configuration (flags override it)"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the metrics as JSON"),
    model: str | None = typer.Option(None, help="Profile name or JSON path"),
    adapters: Path | None = typer.Option(None, help="Adapters CSV (id,rank,rate) or YAML"),
    trace: Path | None = typer.Option(
        None, help="Trace CSV: arrival_time_s,adapter_id,input_tokens,output_tokens"
    ),
    max_loras: int | None = typer.Option(None, help="--max-loras of vLLM"),
    max_cpu_loras: int | None = typer.Option(None, help="--max-cpu-loras of vLLM"),
    max_lora_rank: int | None = typer.Option(None, help="--max-lora-rank of vLLM"),
    max_num_seqs: int | None = typer.Option(None, help="--max-num-seqs of vLLM"),
    max_num_batched_tokens: int | None = typer.Option(None, help="token budget per step"),
    vllm_version: str | None = typer.Option(
        None, "--vllm-version", help="vLLM release to follow (0.6.3 V0, 0.8.5, 0.32, 0.33; "
        "default: the profile's)"),
    duration: float | None = typer.Option(None, help="Benchmark window in s"),
    seed: int | None = typer.Option(None, help="Seed of every random draw"),
    requests_parquet: Path | None = typer.Option(None, help="Per-request records (Parquet)"),
    timeseries_parquet: Path | None = typer.Option(None, help="Per-step time series (Parquet)"),
    per_adapter_csv: Path | None = typer.Option(None, help="Per-adapter metrics (CSV)"),
) -> None:
    """Simulate one server over a benchmark window and print its metrics."""
    # The twin does no linear algebra: one BLAS thread spares OpenBLAS's thread start-up
    # when numpy is first imported below (0.06 s wall of a 0.13 s numpy import, 2 cores);
    # a value the user set is kept.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from rich.table import Table

    from loratwin.calibrate.prior_label import estimated_note as prior_note
    from loratwin.calibrate.prior_label import estimated_prefix, is_estimated
    from loratwin.cli.common import atomic_output, check_output_file, console, fmt, write_json
    from loratwin.configfile import read_yaml_mapping
    from loratwin.twin.runconfig import parse_config, resolve_inputs
    from loratwin.twin.simulate import estimated_note, simulate

    outputs = ((json_out, "--json", ()), (requests_parquet, "--requests-parquet", (".parquet",)),
               (timeseries_parquet, "--timeseries-parquet", (".parquet",)),
               (per_adapter_csv, "--per-adapter-csv", (".csv",)))
    for out_path, flag, suffixes in outputs:
        check_output_file(out_path, flag, suffixes)
    data: dict[str, Any] = read_yaml_mapping(config) if config else {}
    base = config.parent if config else Path.cwd()
    server = data.get("server") or {}
    if not isinstance(server, dict):
        raise ConfigError(f"expected a mapping of vLLM flags (got {server!r})", field="server")
    server = dict(server)
    for key, val in (("max_loras", max_loras), ("max_cpu_loras", max_cpu_loras),
                     ("max_lora_rank", max_lora_rank), ("max_num_seqs", max_num_seqs),
                     ("max_num_batched_tokens", max_num_batched_tokens),
                     ("vllm_version", vllm_version)):
        if val is not None:
            server[key] = val
    data["server"] = server
    for key, val in (("model", model), ("duration_s", duration), ("seed", seed)):
        if val is not None:
            data[key] = val
    if adapters is not None:
        data["adapters"] = str(adapters.resolve())
    if trace is not None:
        data["trace"] = str(trace.resolve())
    cfg = parse_config(data)
    inp = resolve_inputs(cfg, base)
    with console.status(f"simulating {len(inp.requests):,} requests over {cfg.duration_s:g} s"):
        res = simulate(
            inp.profile, inp.server, inp.adapters, inp.requests, inp.client,
            record_requests=requests_parquet is not None,
            record_timeseries=timeseries_parquet is not None,
        )
    m = res.metrics
    srv = inp.server.resolved(inp.profile)
    table = Table(title=f"{estimated_prefix(inp.profile)}{inp.profile.name}: "
                        f"{len(inp.adapters)} adapters, "
                        f"max_loras={srv.max_loras}, max_lora_rank={srv.max_lora_rank}, "
                        f"vLLM {srv.vllm_version}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if m.memory_error:
        table.add_row("memory error", m.memory_error_reason or "yes")
    rows = [
        ("total throughput (tok/s)", m.total_throughput_tok_s),
        ("offered load (tok/s)", m.offered_throughput_tok_s),
        ("request throughput (req/s)", m.request_throughput_req_s),
        ("mean / p99 TTFT (ms)", f"{fmt(m.mean_ttft_ms)} / {fmt(m.p99_ttft_ms)}"),
        ("mean / p99 ITL (ms)", f"{fmt(m.mean_itl_ms, 2)} / {fmt(m.p99_itl_ms, 2)}"),
        ("mean TPOT (ms)", m.mean_tpot_ms),
        ("completed / arrivals", f"{m.completed:,} / {m.arrivals:,}"),
        ("preemptions", m.preemptions),
        ("adapter loads (disk)", f"{m.adapter_loads:,} ({m.disk_loads:,})"),
        ("mean running / waiting", f"{fmt(m.mean_num_running)} / {fmt(m.mean_num_waiting)}"),
        ("KV cache (tokens)", f"{m.kv_cache_tokens:,}"),
        ("starvation", m.starvation),
        ("simulation wall time (s)", f"{m.wall_s:.2f}"),
    ]
    for name, val in rows:
        table.add_row(name, val if isinstance(val, str) else fmt(val))
    console.print(table)
    notes = [n for n in (estimated_note(inp.profile, srv),
                         prior_note(inp.profile) if is_estimated(inp.profile) else None) if n]
    for note in notes:
        console.print(f"note: {note}")
    if json_out:
        write_json(json_out, {**res.to_dict(), "profile": inp.profile.name,
                              "profile_kind": inp.profile.profile_kind,
                              "vllm_version": srv.vllm_version,
                              **({"note": "; ".join(notes)} if notes else {})})
        console.print(f"wrote {json_out}")
    if requests_parquet and res.requests is not None:
        with atomic_output(requests_parquet) as tmp:
            res.requests.to_parquet(tmp, index=False)
        console.print(f"wrote {requests_parquet}")
    if timeseries_parquet and res.timeseries is not None:
        with atomic_output(timeseries_parquet) as tmp:
            res.timeseries.to_parquet(tmp, index=False)
        console.print(f"wrote {timeseries_parquet}")
    if per_adapter_csv:
        with atomic_output(per_adapter_csv) as tmp:
            res.per_adapter.to_csv(tmp, index=False)
        console.print(f"wrote {per_adapter_csv}")
