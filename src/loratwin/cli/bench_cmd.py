"""``loratwin bench``: benchmark a live vLLM server with a multi-LoRA workload."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from loratwin.cli.app import app
from loratwin.errors import ConfigError


def parse_env(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` words as a dict.

    Raises
    ------
    ConfigError
        A word without ``=`` or with an empty key.
    """
    env: dict[str, str] = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"must be KEY=VALUE (got {p!r})", field="env")
        env[key.strip()] = value
    return env


def _summary_table(row: dict[str, Any]) -> Any:
    from rich.table import Table

    from loratwin.cli.common import fmt

    table = Table(title=f"{row['model']}: {row['served_adapters']} adapters, "
                        f"max_loras={row['max_loras']}, window {row['duration_s']:g} s")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, val in (
        ("status", row["status"]),
        ("completed / sent / planned", f"{row['completed']} / {row['n_sent']} / "
                                       f"{row['n_planned']}"),
        ("total throughput (tok/s)", fmt(row["total_throughput"])),
        ("offered load (tok/s)", fmt(row["ideal_total_throughput_est"])),
        ("mean / p99 TTFT (ms)", f"{fmt(row['mean_ttft_ms'])} / {fmt(row['p99_ttft_ms'])}"),
        ("mean ITL (ms)", fmt(row["mean_itl_ms"], 2)),
        ("mean running / waiting", f"{fmt(row['mean_num_running'])} / "
                                   f"{fmt(row['mean_num_waiting'])}"),
        ("starvation", fmt(row["starvation_est"])),
        ("flags", row["flags_source"]),
    ):
        table.add_row(name, str(val))
    return table


@app.command("bench")
def bench_cmd(
    workload: Path = typer.Argument(
        ..., help="YAML run config (simulate schema), adapters CSV (id,rank,rate) or trace CSV"
    ),
    url: str | None = typer.Option(None, help="http://HOST:PORT of a running vLLM server"),
    launch: str | None = typer.Option(
        None, help='Start this server command instead, e.g. "vllm serve MODEL --enable-lora ..."'
    ),
    env: list[str] = typer.Option([], help="KEY=VALUE for the launched server (repeatable)"),
    duration: float | None = typer.Option(None, help="Benchmark window in s"),
    seed: int | None = typer.Option(None, help="Seed of arrivals, lengths and prompts"),
    out: Path | None = typer.Option(None, help="Output folder (default bench/<time>)"),
    model: str | None = typer.Option(
        None, help="Profile whose ShareGPT length model is the default lengths"
    ),
    arrivals: str | None = typer.Option(None, help="poisson or gamma (CSV workloads)"),
    cv: float | None = typer.Option(None, help="Gap CV of gamma arrivals"),
    max_loras: int | None = typer.Option(None, help="--max-loras of the server"),
    max_cpu_loras: int | None = typer.Option(None, help="--max-cpu-loras of the server"),
    max_lora_rank: int | None = typer.Option(None, help="--max-lora-rank of the server"),
    max_num_seqs: int | None = typer.Option(None, help="--max-num-seqs of the server"),
    max_num_batched_tokens: int | None = typer.Option(
        None, help="--max-num-batched-tokens of the server"
    ),
    max_concurrency: int = typer.Option(1024, help="Most requests in flight at once"),
    max_requests: int = typer.Option(200_000, help="Refuse workloads with more requests"),
    scrape_interval: float = typer.Option(1.0, help="Period of the /metrics samples, s"),
    device: str = typer.Option(
        "auto", help="auto, cpu or cuda: whose vLLM defaults fill unstated flags (with --url, "
                     "auto means cuda)"),
) -> None:
    """Replay a workload against a live vLLM server and write a row for `loratwin validate`.

    Requests are streamed to /v1/completions with model = the adapter's name, max_tokens =
    the output length and ignore_eos; the window closes after --duration s and cancels what
    is still open. Writes run.csv (real-runs schema), requests.parquet, timeseries.parquet,
    trace.csv and adapters.csv to --out. Ctrl-C keeps what was measured.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from loratwin.cli.common import check_number, check_output_dir, console
    from loratwin.live.bench import BenchOptions, run_bench
    from loratwin.live.bench import Progress as BenchProgress
    from loratwin.live.client import base_url
    from loratwin.live.launcher import split_command
    from loratwin.live.workload import load_workload

    if (url is None) == (launch is None):
        raise ConfigError("give exactly one of --url and --launch", field="--url")
    check_number(duration, "--duration", gt=0)
    check_number(seed, "--seed", ge=0)
    check_number(max_concurrency, "--max-concurrency", ge=1)
    check_number(max_requests, "--max-requests", ge=1)
    check_number(scrape_interval, "--scrape-interval", gt=0)
    check_number(cv, "--cv", gt=0)
    for name, value in (("--max-loras", max_loras), ("--max-cpu-loras", max_cpu_loras),
                        ("--max-lora-rank", max_lora_rank), ("--max-num-seqs", max_num_seqs),
                        ("--max-num-batched-tokens", max_num_batched_tokens)):
        check_number(value, name, ge=1)
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"must be auto, cpu or cuda (got {device!r})", field="--device")
    check_output_dir(out, "--out")
    argv = split_command(launch) if launch is not None else None
    launch_env = parse_env(env)
    server_url = base_url(url) if url is not None else None
    overrides: dict[str, Any] = {}
    if model is not None:
        overrides["model"] = model
    if arrivals is not None or cv is not None:
        overrides["arrivals"] = {"process": arrivals or "gamma", **({"cv": cv} if cv else {})}
    wl = load_workload(workload, duration_s=duration, seed=seed, overrides=overrides)
    out_dir = out or Path("bench") / time.strftime("%Y%m%d-%H%M%S")
    opts = BenchOptions(
        out_dir=out_dir, url=server_url, launch=argv, launch_env=launch_env,
        flags={"max_loras": max_loras, "max_cpu_loras": max_cpu_loras,
               "max_lora_rank": max_lora_rank, "max_num_seqs": max_num_seqs,
               "max_num_batched_tokens": max_num_batched_tokens},
        max_concurrency=max_concurrency, max_requests=max_requests,
        scrape_interval_s=scrape_interval, device=device,
    )
    with Progress(TextColumn("{task.description}"), BarColumn(),
                  TextColumn("{task.fields[counts]}"), TimeElapsedColumn(),
                  console=console) as prog:
        task = prog.add_task("starting", total=wl.duration_s, counts="")

        def report(p: BenchProgress) -> None:
            prog.update(task, description=p.phase, completed=min(p.elapsed_s, p.duration_s),
                        counts=f"sent {p.sent}/{p.planned}, finished {p.finished}")

        result = run_bench(wl, opts, report)
    console.print(_summary_table(result.row))
    defaulted = result.flags.defaulted() if result.flags else []
    if defaulted:
        console.print(f"note: {', '.join(defaulted)}: not reported by the server nor given, "
                      "vLLM's defaults assumed (flags_source in run.csv; state them, or "
                      "--device cpu for a CPU server)")
    console.print(f"wrote {out_dir}/run.csv (and requests.parquet, timeseries.parquet, "
                  "trace.csv, adapters.csv)")
