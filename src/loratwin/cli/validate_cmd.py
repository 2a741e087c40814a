"""``loratwin validate``: the twin against real serving runs."""

from __future__ import annotations

from pathlib import Path

import typer

from loratwin.cli.app import app
from loratwin.errors import DataError


@app.command("validate")
def validate_cmd(
    real_runs: Path = typer.Argument(..., help="CSV in the schema of real_runs/<model>.csv"),
    model: str = typer.Option(..., help="Profile name or JSON path"),
    json_out: Path | None = typer.Option(None, "--json", help="Write runs + summary as JSON"),
    seed: int = typer.Option(0, help="Seed of the rebuilt workloads"),
    jobs: int = typer.Option(-1, help="Worker processes (-1: all cores)"),
    quiet: bool = typer.Option(False, help="Only print the summary"),
    vllm_version: str | None = typer.Option(
        None, "--vllm-version", help="Replay under this vLLM release's rules (default: the "
        "profile's)"),
) -> None:
    """Simulate every run of the CSV and compare throughput, ITL, TTFT and starvation."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
    from rich.table import Table

    from loratwin.calibrate.prior_label import estimated_prefix
    from loratwin.cli.common import check_number, check_output_file, console, fmt, write_json
    from loratwin.profile.store import load_profile
    from loratwin.twin.release import normalise_version
    from loratwin.twin.validate import read_real_runs, summarise, validate_runs

    check_output_file(json_out, "--json")
    check_number(seed, "--seed", ge=0)
    if jobs == 0 or jobs < -1:
        raise DataError(f"must be >= 1 or -1 for all cores (got {jobs})", field="--jobs")
    profile = load_profile(model)
    if vllm_version is not None:
        normalise_version(vllm_version)  # an unknown release is a one-line error up front
    df = read_real_runs(real_runs)
    n = int((df["status"].astype(str) != "failed").sum())
    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=console) as prog:
        task = prog.add_task("simulating runs", total=n)
        res = validate_runs(df, profile, seed=seed, n_jobs=jobs,
                            on_done=lambda k: prog.update(task, completed=k),
                            vllm_version=vllm_version)
    summary = summarise(res)
    if not quiet:
        table = Table(title=f"{estimated_prefix(profile)}{profile.name}: twin vs real runs")
        for col in ("row", "max_loras", "served", "req/s", "status", "thr real", "thr twin",
                    "ITL real", "ITL twin", "TTFT real", "TTFT twin", "starved r/t"):
            table.add_column(col, justify="right")
        for _, r in res.iterrows():
            table.add_row(
                str(r["row"]), str(r["max_loras"]), str(r["served_adapters"]),
                fmt(r["sum_rate_req_s"], 2),
                "mem err" if r["memory_error"] else r["status"],
                fmt(r["real_total_throughput"], 0), fmt(r["twin_total_throughput_tok_s"], 0),
                fmt(r["real_mean_itl_ms"]), fmt(r["twin_mean_itl_ms"]),
                fmt(r["real_mean_ttft_ms"], 0), fmt(r["twin_mean_ttft_ms"], 0),
                f"{fmt(r['real_starvation'])}/{fmt(r['twin_starvation'])}",
            )
        console.print(table)
    st = Table(title=f"{estimated_prefix(profile)}summary")
    st.add_column("measure")
    st.add_column("value", justify="right")
    for k, v in summary.items():
        st.add_row(k, fmt(v, 2))
    console.print(st)
    if json_out:
        write_json(json_out, {"summary": summary, "profile_kind": profile.profile_kind,
                              "runs": res.to_dict(orient="records")})
        console.print(f"wrote {json_out}")
