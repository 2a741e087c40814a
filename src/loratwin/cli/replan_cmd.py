"""``loratwin replan`` and ``loratwin workload drift``: a changed workload on a running fleet.

Examples
--------
::

    loratwin place day0.csv --json current.json
    loratwin workload drift day0.csv day1.csv
    loratwin replan current.json day1.csv -o next.json
    loratwin replan current.json day1.csv --max-moves 20 --extra-gpus 1 -o next.json
    loratwin replan current.json day0.csv --rates-from-metrics requests.csv -o next.json
    loratwin replan current.json day0.csv --rates-from-metrics http://gpu-0:8000/metrics \\
        --rates-from-metrics http://gpu-1:8000/metrics --scrapes 13 --scrape-interval 10
"""

from __future__ import annotations

from pathlib import Path

import typer

from loratwin.cli import names
from loratwin.cli.app import app
from loratwin.cli.workload_cmd import workload_app
from loratwin.errors import ConfigError

#: = :data:`loratwin.workload.drift.RATE_TOLERANCE` (help texts must not import the library)
RATE_TOLERANCE = 0.01


@app.command("replan")
def replan_cmd(
    current: Path = typer.Argument(..., help="The deployed placement (place --json / replan "
                                             "-o output)"),
    workload: Path = typer.Argument(..., help="The new workload: adapters CSV or YAML"),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the new placement as JSON"),
    model: str | None = typer.Option(None, help="Profile name or JSON path (default: the "
                                                "placement's model, else " + names.DEFAULT_MODEL),
    surrogate: str | None = typer.Option(None, help="Surrogate .npz (default: bundled)"),
    extra_gpus: int = typer.Option(0, help="GPUs allowed above a fresh placement's count"),
    max_moves: int | None = typer.Option(None, help="Most adapter moves allowed"),
    move_cost: float | None = typer.Option(None, help="Cost of one adapter move in GPUs: "
                                           "GPUs are drained while that saves cost"),
    rates_from_metrics: list[str] | None = typer.Option(
        None, help="Observed traffic: a request log CSV (arrival_time_s,adapter_id,"
        "input_tokens,output_tokens), a Prometheus text dump, or a vLLM /metrics URL; "
        "repeat for several servers"),
    scrapes: int = typer.Option(7, help="Scrapes of each /metrics URL"),
    scrape_interval: float = typer.Option(10.0, help="Seconds between scrapes"),
    seed: int = typer.Option(0, help="Seed of the twin runs"),
    max_num_seqs: int = typer.Option(2048, help="--max-num-seqs of every server"),
    arrival_cv: float = typer.Option(1.0, help="Burstiness of arrivals (1 = Poisson)"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm",
                                 help="Check borderline GPUs in the twin (as place does)"),
    max_ttft_ms: float | None = typer.Option(None, help="SLO: predicted mean TTFT, ms"),
    max_itl_ms: float | None = typer.Option(None, help="SLO: predicted mean ITL, ms"),
    verify: bool = typer.Option(False, "--verify", help="Simulate every new GPU in the twin"),
    duration: float = typer.Option(3600.0, help="Twin window of --verify, s"),
    jobs: int = typer.Option(1, help="Parallel twin runs of --verify"),
) -> None:
    """Re-plan a deployed placement for a changed workload with as few adapter moves as
    possible, on no more GPUs than a fresh placement needs plus --extra-gpus."""
    from loratwin.cli.common import check_number, check_output_file

    check_output_file(output, "--output")
    if jobs < 1:
        raise ConfigError(f"must be >= 1 (got {jobs})", field="jobs")
    if max_moves is not None and move_cost is not None:
        raise ConfigError("give --max-moves or --move-cost, not both", field="move_cost")
    for name, value, ok in (("extra_gpus", extra_gpus, extra_gpus >= 0),
                            ("max_moves", max_moves, max_moves is None or max_moves >= 0),
                            ("move_cost", move_cost, move_cost is None or move_cost > 0)):
        if not ok:
            raise ConfigError(f"must be {'> 0' if name == 'move_cost' else '>= 0'} "
                              f"(got {value})", field=name)
    check_number(seed, "--seed", ge=0)
    check_number(duration, "--duration", gt=0)
    check_number(max_num_seqs, "--max-num-seqs", ge=1)
    check_number(arrival_cv, "--arrival-cv", gt=0)
    check_number(scrapes, "--scrapes", ge=2)
    check_number(scrape_interval, "--scrape-interval", gt=0)
    for name, slo in (("max_ttft_ms", max_ttft_ms), ("max_itl_ms", max_itl_ms)):
        if slo is not None and not slo > 0:
            raise ConfigError(f"must be > 0 (got {slo})", field=name)
    from loratwin.cli.common import console, write_json
    from loratwin.cli.replan_render import replan_doc, replan_table, summary_line
    from loratwin.placement import api, predictor
    from loratwin.placement.deployed import check_model, load_deployed
    from loratwin.placement.prefix_search import SearchOptions
    from loratwin.placement.replan import replan
    from loratwin.placement.verify import verify_placement
    from loratwin.profile.store import load_profile
    from loratwin.workload.adapters import load_adapters
    from loratwin.workload.observed import apply_observed, observe_rates

    deployed = load_deployed(current)
    if any(s.gpu_type for s in deployed.servers):
        raise ConfigError(f"{current} is a mixed-type fleet (place --gpu-types): replan "
                          "handles single-type fleets", field="current")
    profile = load_profile(model or deployed.model or names.DEFAULT_MODEL)
    check_model(deployed, profile)
    adapters = load_adapters(workload)
    if rates_from_metrics:
        with console.status("reading observed traffic"):
            obs = observe_rates(rates_from_metrics, scrapes=scrapes, interval_s=scrape_interval)
        adapters, obs_notes = apply_observed(adapters, obs)
        for note in obs_notes:
            console.print(f"note: {note}")
    problem = predictor.make_problem(adapters, profile, surrogate=surrogate,
                                     max_num_seqs=max_num_seqs, arrival_cv=arrival_cv)
    options = SearchOptions(itl_slo_ms=max_itl_ms, ttft_slo_ms=max_ttft_ms)
    with console.status(f"fresh placement of {len(adapters):,} adapters (the GPU cap)"):
        fresh = api.place(problem, "loratwin", seed=seed, options=options,
                          confirm_borderline=confirm)
    check = (api.twin_confirm(problem, api.CONFIRM_DURATION_S, seed, options.twin_margin)
             if confirm else None)
    with console.status(f"re-planning {len(deployed.servers)} GPU(s)"):
        result = replan(problem, deployed, fresh, options=options, confirm=check,
                        extra_gpus=extra_gpus, max_moves=max_moves, move_cost=move_cost)
    placement = result.placement
    if verify:
        with console.status(f"verifying {placement.gpus} GPU(s) in the twin"):
            placement = verify_placement(problem, placement, duration_s=duration, seed=seed,
                                         n_jobs=jobs)
    console.print(replan_table(result))
    console.print(summary_line(result, len(deployed.servers)))
    for note in result.notes:
        console.print(f"note: {note}")
    if verify:
        bad = [n for n, g in zip(result.names, placement.servers, strict=True)
               if g.verified and (g.verified["starvation"] or g.verified["memory_error"])]
        console.print("twin: every GPU keeps up" if not bad else
                      f"[red]twin: {', '.join(bad)} starve or fail to start[/red]")
    if output is not None:
        from loratwin.deploy.fleet import plan_context

        context = plan_context(profile.name, profile.hf_model_name, profile.profile_kind,
                               profile.vllm_version, workload.name,
                               {"max_ttft_ms": max_ttft_ms, "max_itl_ms": max_itl_ms})
        write_json(output, replan_doc(result, placement, context,
                                      {a.id: a.rate for a in adapters}))
        console.print(f"wrote {output}")


# ----------------------------------------------------------------------------- drift


@workload_app.command("drift")
def drift_cmd(
    old: Path = typer.Argument(..., help="The old adapters CSV or YAML"),
    new: Path = typer.Argument(..., help="The new adapters CSV or YAML"),
    tolerance: float = typer.Option(RATE_TOLERANCE, help="Relative rate change counted as "
                                                         "unchanged"),
    top: int = typer.Option(10, help="Largest rate changes to list"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the summary as JSON"),
) -> None:
    """Summarise what changed between two workloads: adapters added, removed, re-rated,
    re-ranked, and the total load."""
    from loratwin.cli.common import check_output_file, console, write_json
    from loratwin.cli.replan_render import drift_doc, drift_table
    from loratwin.workload.adapters import load_adapters
    from loratwin.workload.drift import workload_drift

    check_output_file(json_out, "--json")
    d = workload_drift(load_adapters(old), load_adapters(new), rate_tolerance=tolerance)
    console.print(drift_table(d, top))
    if json_out is not None:
        write_json(json_out, drift_doc(d))
        console.print(f"wrote {json_out}")
