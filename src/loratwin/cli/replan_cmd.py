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

import math
from pathlib import Path

import numpy as np
import typer
from rich.table import Table

from loratwin.cli.app import app
from loratwin.cli.common import console, fmt, write_json
from loratwin.cli.place_cmd import DEFAULT_MODEL
from loratwin.cli.workload_cmd import workload_app
from loratwin.errors import ConfigError
from loratwin.placement import api, predictor
from loratwin.placement.deployed import check_model, load_deployed
from loratwin.placement.prefix_search import SearchOptions
from loratwin.placement.replan import ReplanResult, replan
from loratwin.placement.report import placement_dict
from loratwin.placement.verify import verify_placement
from loratwin.profile.store import load_profile
from loratwin.workload.adapters import load_adapters
from loratwin.workload.drift import RATE_TOLERANCE, WorkloadDrift, workload_drift
from loratwin.workload.observed import apply_observed, observe_rates


def check_output(path: Path | None) -> None:
    """Fail before any long work when ``path`` cannot be written.

    Raises
    ------
    ConfigError
        ``path`` is a directory or its parent is a file.
    """
    if path is None:
        return
    if path.is_dir():
        raise ConfigError(f"{path} is a directory", field="output")
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create {path}: {parent} is not a directory", field="output")


@app.command("replan")
def replan_cmd(
    current: Path = typer.Argument(..., help="The deployed placement (place --json / replan "
                                             "-o output)"),
    workload: Path = typer.Argument(..., help="The new workload: adapters CSV or YAML"),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Write the new placement as JSON"),
    model: str | None = typer.Option(None, help="Profile name or JSON path (default: the "
                                                "placement's model, else " + DEFAULT_MODEL),
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
    check_output(output)
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
    deployed = load_deployed(current)
    if any(s.gpu_type for s in deployed.servers):
        raise ConfigError(f"{current} is a mixed-type fleet (place --gpu-types): replan "
                          "handles single-type fleets", field="current")
    profile = load_profile(model or deployed.model or DEFAULT_MODEL)
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
    check = api.twin_confirm(problem, 1800.0, seed, options.twin_margin) if confirm else None
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
        write_json(output, replan_doc(result, placement, profile.name,
                                      {a.id: a.rate for a in adapters}))
        console.print(f"wrote {output}")


def summary_line(r: ReplanResult, deployed_gpus: int) -> str:
    """One line: strategy, moves, adds, removals, GPUs before/after and the cap."""
    return (f"replan ({r.strategy}): {len(r.moves)} move(s), {len(r.added)} added, "
            f"{len(r.removed)} removed; {deployed_gpus} -> {r.placement.gpus} GPU(s) "
            f"({len(r.new_gpus)} new, {len(r.freed_gpus)} freed, {len(r.restarted_gpus)} "
            f"restarted with new flags); a fresh placement needs {r.fresh_gpus}, cap {r.cap}")


def replan_table(r: ReplanResult) -> Table:
    """Per GPU: status, adapters, moves in/out, predicted starvation/ITL/TTFT before (the
    deployed GPU at the new rates) and after."""
    table = Table(title="replan: per GPU, before (deployed, new rates) -> after",
                  header_style="bold", box=None, padding=(0, 1), pad_edge=False)
    for c in ("GPU", "status", "adapters", "in", "out", "max_loras", "p(starve)", "ITL ms",
              "TTFT s"):
        table.add_column(c, justify="left" if c in ("GPU", "status") else "right",
                         no_wrap=True)
    moved_in: dict[str, int] = {}
    moved_out: dict[str, int] = {}
    for m in r.moves:
        moved_in[m.target] = moved_in.get(m.target, 0) + 1
        for s in m.source:
            moved_out[s] = moved_out.get(s, 0) + 1
    after = dict(zip(r.names, r.placement.servers, strict=True))
    for name in [*r.before, *(n for n in r.names if n not in r.before)]:
        b = r.before.get(name, {})
        g = after.get(name)
        a = g.predicted if g is not None else {}
        status = ("new" if name in r.new_gpus else "freed" if g is None else
                  "restarted" if name in r.restarted_gpus else "kept")

        def pair(key: str, digits: int, scale: float = 1.0, bb: dict = b, aa: dict = a) -> str:
            x, y = bb.get(key), aa.get(key)
            return (f"{fmt(None if x is None else x / scale, digits)} -> "
                    f"{fmt(None if y is None else y / scale, digits)}")

        table.add_row(
            name, status,
            f"{fmt(int(b['adapters']) if b else None)} -> "
            f"{fmt(len(g.adapters) if g is not None else None)}",
            str(moved_in.get(name, 0)), str(moved_out.get(name, 0)),
            fmt(g.max_loras if g is not None else None),
            pair("starvation_probability", 2), pair("mean_itl_ms", 1),
            pair("mean_ttft_ms", 1, 1e3))
    return table


def replan_doc(r: ReplanResult, placement, model: str, rates: dict[str, float]) -> dict:
    """The ``-o`` document: the ``place --json`` schema with GPU names, plus ``replan``."""
    doc = {"model": model, **placement_dict(placement, rates)}
    for s, name in zip(doc["servers"], r.names, strict=True):
        s["name"] = name
    doc["replan"] = {
        "strategy": r.strategy, "fresh_gpus": r.fresh_gpus, "cap": r.cap,
        "moves": [{"adapter": m.adapter, "from": list(m.source), "to": m.target}
                  for m in r.moves],
        "added": list(r.added), "removed": list(r.removed), "new_gpus": list(r.new_gpus),
        "freed_gpus": list(r.freed_gpus), "restarted_gpus": list(r.restarted_gpus),
        "before": r.before,
    }
    return doc


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
    check_output(json_out)
    d = workload_drift(load_adapters(old), load_adapters(new), rate_tolerance=tolerance)
    console.print(drift_table(d, top))
    if json_out is not None:
        write_json(json_out, drift_doc(d))
        console.print(f"wrote {json_out}")


def _pct(new: float, old: float) -> str:
    return "-" if not old > 0 else f"{(new / old - 1):+.1%}"


def drift_table(d: WorkloadDrift, top: int) -> Table:
    """The drift summary as a two-column table, then the largest rate changes."""
    table = Table(title="workload drift", show_header=False, box=None, padding=(0, 1))
    table.add_column("quantity")
    table.add_column("value", justify="right")
    f = d.rate_factors()
    table.add_row("adapters old -> new", f"{d.old_count:,} -> {d.new_count:,}")
    table.add_row("added / removed", f"{len(d.added):,} / {len(d.removed):,}")
    table.add_row("re-rated (up / down)", f"{len(d.rerated):,} ({int((f > 1).sum()):,} / "
                                          f"{int((f < 1).sum()):,})")
    if f.size:
        q = np.quantile(f, [0.1, 0.5, 0.9])
        table.add_row("rate factor p10 / median / p90", " / ".join(f"{v:.3g}" for v in q))
    table.add_row("re-ranked / new mean lengths", f"{len(d.reranked):,} / "
                                                  f"{len(d.relengthened):,}")
    table.add_row("unchanged", f"{d.unchanged:,}")
    table.add_row("total rate req/s", f"{d.old_rate_req_s:.4g} -> {d.new_rate_req_s:.4g} "
                                      f"({_pct(d.new_rate_req_s, d.old_rate_req_s)})")
    if d.old_offered_tok_s > 0:
        table.add_row("offered tok/s (given lengths)",
                      f"{d.old_offered_tok_s:,.0f} -> {d.new_offered_tok_s:,.0f} "
                      f"({_pct(d.new_offered_tok_s, d.old_offered_tok_s)})")
    changes = sorted(d.rerated, key=lambda p: -abs(p[1].rate - p[0].rate))[:max(top, 0)]
    for a, b in changes:
        table.add_row(f"  {a.id}", f"{a.rate:.4g} -> {b.rate:.4g} req/s")
    return table


def drift_doc(d: WorkloadDrift) -> dict:
    """JSON form of the drift summary."""
    return {
        "added": [a.id for a in d.added], "removed": [a.id for a in d.removed],
        "rerated": [{"id": a.id, "old_rate_req_s": a.rate, "new_rate_req_s": b.rate}
                    for a, b in d.rerated],
        "reranked": [{"id": a.id, "old_rank": a.rank, "new_rank": b.rank}
                     for a, b in d.reranked],
        "relengthened": [a.id for a, _ in d.relengthened], "unchanged": d.unchanged,
        "old_rate_req_s": d.old_rate_req_s, "new_rate_req_s": d.new_rate_req_s,
        "old_offered_tok_s": d.old_offered_tok_s if math.isfinite(d.old_offered_tok_s)
        else None,
        "new_offered_tok_s": d.new_offered_tok_s,
    }
