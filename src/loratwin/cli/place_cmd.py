"""``loratwin place`` and ``loratwin compare``: adapters on the fewest GPUs.

Examples
--------
::

    loratwin place adapters.csv --model llama-3.1-8b-instruct
    loratwin place adapters.csv --algorithm loraserve --gpus 8 --json placement.json
    loratwin place adapters.csv --emit-vllm serve/ --lora-dir /models/loras --verify --jobs 2
    loratwin place adapters.csv --max-ttft-ms 2000 --advise
    loratwin compare adapters.csv --json compare.json --plot compare.png

``WORKLOAD`` is an adapters CSV (``id,rank,rate[,mean_input_tokens,mean_output_tokens]``,
rate in req/s) or YAML; ``loratwin workload from-trace`` makes one from the Azure traces.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from loratwin.cli import names
from loratwin.cli.app import app
from loratwin.errors import ConfigError

if TYPE_CHECKING:
    from rich.table import Table

    from loratwin.advisor.gpu import GpuAdvice
    from loratwin.placement.problem import PlacementProblem

DEFAULT_MODEL = names.DEFAULT_MODEL
ALGORITHMS = names.ALGORITHMS


def _problem(workload: Path, model: str, surrogate: str | None, max_num_seqs: int,
             arrival_cv: float) -> PlacementProblem:
    from loratwin.placement import predictor

    # through the module attribute, so that tests can swap the surrogate for a stand-in
    return predictor.make_problem(workload, model, surrogate=surrogate,
                                  max_num_seqs=max_num_seqs, arrival_cv=arrival_cv)


def _rates(problem: PlacementProblem) -> dict[str, float]:
    return {a.id: a.rate for a in problem.adapters}


def _check_jobs(jobs: int) -> None:
    if jobs < 1:
        raise ConfigError(f"must be >= 1 (got {jobs})", field="jobs")


def _check_common(jobs: int, duration: float, seed: int, max_num_seqs: int,
                  arrival_cv: float) -> None:
    from loratwin.cli.common import check_number

    _check_jobs(jobs)
    check_number(duration, "--duration", gt=0)
    check_number(seed, "--seed", ge=0)
    check_number(max_num_seqs, "--max-num-seqs", ge=1)
    check_number(arrival_cv, "--arrival-cv", ge=0)


@app.command("place")
def place_cmd(
    workload: Path = typer.Argument(..., help="Adapters CSV (id,rank,rate[,mean_input_tokens,"
                                              "mean_output_tokens]) or YAML"),
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name or JSON path"),
    algorithm: str = typer.Option("loratwin", help=f"One of {', '.join(ALGORITHMS)}"),
    gpus: int | None = typer.Option(None, help="GPUs available (error if more are needed)"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the placement as JSON"),
    emit_vllm: Path | None = typer.Option(None, "--emit-vllm",
                                          help="Write one vllm serve script per GPU here"),
    lora_dir: str = typer.Option("./adapters", help="Adapter path prefix: <lora-dir>/<id>"),
    verify: bool = typer.Option(False, "--verify", help="Simulate every GPU in the twin"),
    jobs: int = typer.Option(1, help="Parallel twin runs (joblib)"),
    duration: float = typer.Option(3600.0, help="Twin benchmark window per GPU, s"),
    seed: int = typer.Option(0, help="Seed of randomised algorithms and twin runs"),
    surrogate: str | None = typer.Option(None, help="Surrogate .npz (default: the bundled "
                                                    "one of the model)"),
    max_num_seqs: int = typer.Option(2048, help="--max-num-seqs of every server"),
    arrival_cv: float = typer.Option(1.0, help="Burstiness of arrivals (1 = Poisson)"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm",
                                 help="Let loratwin check borderline GPUs in the twin"),
    max_ttft_ms: float | None = typer.Option(None, help="SLO: predicted mean TTFT of every "
                                                        "GPU at most this, ms (loratwin)"),
    max_itl_ms: float | None = typer.Option(None, help="SLO: predicted mean ITL of every GPU "
                                                       "at most this, ms (loratwin)"),
    advise: bool = typer.Option(False, "--advise", help="Batching advisor on every GPU: "
                                "max_num_seqs where throughput plateaus, freed memory as "
                                "KV or adapter slots (twin-verified)"),
) -> None:
    """Place the adapters on the fewest GPUs; print each GPU's adapters and vLLM flags."""
    from loratwin.cli.common import atomic_files, check_output_dir, check_output_file

    _check_common(jobs, duration, seed, max_num_seqs, arrival_cv)
    check_output_file(json_out, "--json")
    check_output_dir(emit_vllm, "--emit-vllm")
    from loratwin.advisor.gpu import advise_placement
    from loratwin.cli.common import console, write_json
    from loratwin.placement import api, report
    from loratwin.placement.bounds import lower_bound
    from loratwin.placement.prefix_search import SearchOptions
    from loratwin.placement.verify import verify_placement

    for name, slo in (("max_ttft_ms", max_ttft_ms), ("max_itl_ms", max_itl_ms)):
        if slo is not None and not slo > 0:
            raise ConfigError(f"must be > 0 (got {slo})", field=name)
    if (max_ttft_ms is not None or max_itl_ms is not None) and algorithm != "loratwin":
        raise ConfigError("latency SLOs are honoured by the loratwin algorithm only",
                          field="algorithm")
    if gpus is not None and gpus < 1:
        raise ConfigError(f"must be >= 1 (got {gpus})", field="gpus")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algorithm!r} (one of "
                          f"{', '.join(ALGORITHMS)})", field="algorithm")
    problem = _problem(workload, model, surrogate, max_num_seqs, arrival_cv)
    lb = lower_bound(problem, seed=seed)
    if gpus is not None and lb.gpus > gpus:
        raise ConfigError(f"the workload needs at least {lb.gpus} GPUs (lower bound), only "
                          f"{gpus} available", field="gpus")
    with console.status(f"placing {len(problem.adapters):,} adapters with {algorithm}"):
        placement = api.place(problem, algorithm, seed=seed, n_gpus=gpus,
                              options=SearchOptions(itl_slo_ms=max_itl_ms,
                                                    ttft_slo_ms=max_ttft_ms),
                              confirm_borderline=confirm)
    advice = None
    if advise:
        with console.status(f"batching advisor on {placement.gpus} GPU(s) (twin sweeps)"):
            placement, advice = advise_placement(problem, placement, duration_s=duration,
                                                 seed=seed, n_jobs=jobs)
    if verify and advice is None:
        with console.status(f"verifying {placement.gpus} GPU(s) in the twin"):
            placement = verify_placement(problem, placement, duration_s=duration, seed=seed,
                                         n_jobs=jobs)
    rates = _rates(problem)
    console.print(report.placement_table(placement, rates))
    if advice is not None:
        console.print(_advice_table(advice))
    if verify or advice is not None:
        console.print(report.verified_table(placement))
    console.print(lb.describe())
    for note in placement.notes:
        console.print(f"note: {note}")
    if verify or advice is not None:
        bad = [k for k, g in enumerate(placement.servers)
               if g.verified and (g.verified["starvation"] or g.verified["memory_error"])]
        console.print("twin: every GPU keeps up" if not bad else
                      f"[red]twin: GPU(s) {', '.join(map(str, bad))} starve or fail to start[/red]")
    if json_out is not None:
        doc = report.placement_dict(placement, rates, lb.gpus)
        for server, adv in zip(doc["servers"], advice or [], strict=False):
            server["advice"] = adv.to_dict()
        write_json(json_out, doc)
        console.print(f"wrote {json_out}")
    if emit_vllm is not None:
        with atomic_files(emit_vllm) as tmp_dir:
            paths = report.write_vllm_scripts(placement, problem.profile, tmp_dir, lora_dir,
                                              rates)
        console.print(f"wrote {len(paths)} vllm serve script(s) to {emit_vllm}")


def _advice_table(advice: list[GpuAdvice]) -> Table:
    from rich.table import Table

    table = Table(title="batching advisor (Mind the Memory Gap), verified in the twin",
                  header_style="bold")
    for c in ("GPU", "B_opt", "freed\nGiB", "chosen", "max_num\n_seqs", "max_\nloras",
              "e2e ms\ncurrent", "e2e ms\nchosen"):
        table.add_column(c, justify="left" if c == "chosen" else "right", no_wrap=True)
    for k, a in enumerate(advice):
        flags = a.candidates[a.chosen][0]
        table.add_row(str(k), str(a.b_opt), f"{a.freed_gib:.1f}", a.chosen,
                      str(flags["max_num_seqs"]), str(flags["max_loras"]),
                      f"{a.e2e_ms('current'):,.0f}", f"{a.e2e_ms(a.chosen):,.0f}")
    return table


@app.command("compare")
def compare_cmd(
    workload: Path = typer.Argument(..., help="Adapters CSV or YAML"),
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name or JSON path"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the comparison as JSON"),
    plot: Path | None = typer.Option(None, help="Write a bar chart (PNG)"),
    algorithms: str | None = typer.Option(None, help="Comma-separated subset of "
                                                     f"{', '.join(ALGORITHMS)}"),
    optimum: bool = typer.Option(True, "--optimum/--no-optimum",
                                 help=f"Exact optimum (HiGHS) for <= {names.EXACT_MAX_ADAPTERS} "
                                 "adapters"),
    jobs: int = typer.Option(1, help="Parallel twin runs (joblib)"),
    duration: float = typer.Option(3600.0, help="Twin benchmark window per GPU, s"),
    seed: int = typer.Option(0, help="Seed of randomised algorithms and twin runs"),
    surrogate: str | None = typer.Option(None, help="Surrogate .npz (default: bundled)"),
    max_num_seqs: int = typer.Option(2048, help="--max-num-seqs of every server"),
    arrival_cv: float = typer.Option(1.0, help="Burstiness of arrivals (1 = Poisson)"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm",
                                 help="Let loratwin check borderline GPUs in the twin"),
) -> None:
    """Run every placement algorithm, verify each in the twin, and compare them."""
    from loratwin.cli.common import atomic_output, check_output_file

    _check_common(jobs, duration, seed, max_num_seqs, arrival_cv)
    check_output_file(json_out, "--json")
    check_output_file(plot, "--plot", suffixes=(".png", ".pdf", ".svg"))
    from loratwin.cli.common import console, err_console, write_json
    from loratwin.placement import api, report
    from loratwin.placement.bounds import lower_bound
    from loratwin.placement.exact import MAX_ADAPTERS, solve_exact
    from loratwin.placement.types import Placement
    from loratwin.placement.verify import verify_placement

    names = list(ALGORITHMS)
    if algorithms:
        names = [a.strip() for a in algorithms.split(",") if a.strip()]
        unknown = [a for a in names if a not in ALGORITHMS]
        if unknown or not names:
            raise ConfigError(f"unknown algorithm {unknown[0] if unknown else '(none)'!r} "
                              f"(one of {', '.join(ALGORITHMS)})", field="algorithms")
    problem = _problem(workload, model, surrogate, max_num_seqs, arrival_cv)
    lb = lower_bound(problem, seed=seed)
    placements: list[Placement] = []
    for name in names:
        with console.status(f"placing with {name}"):
            placements.append(api.place(problem, name, seed=seed, confirm_borderline=confirm))
    opt = None
    if optimum and len(problem.adapters) <= MAX_ADAPTERS:
        with console.status("exact optimum (HiGHS)"):
            opt = solve_exact(problem, placements, seed=seed, lower=lb.gpus)
    elif optimum:
        err_console.print(f"note: no exact optimum above {names.EXACT_MAX_ADAPTERS} adapters")
    verified = []
    for p in placements:
        with console.status(f"verifying {p.algorithm}: {p.gpus} GPU(s) in the twin"):
            verified.append(verify_placement(problem, p, duration_s=duration, seed=seed,
                                             n_jobs=jobs))
    rows = [report.summarize(p) for p in verified]
    opt_gpus = opt.gpus if opt is not None else None
    console.print(report.compare_table(rows, lb.gpus, opt_gpus))
    console.print(lb.describe())
    if opt is not None:
        console.print(opt.describe())
    if json_out is not None:
        write_json(json_out, report.compare_dict(rows, lb.gpus, opt_gpus,
                                                 opt.describe() if opt else None))
        console.print(f"wrote {json_out}")
    if plot is not None:
        with atomic_output(plot) as tmp:
            report.plot_compare(rows, lb.gpus, opt_gpus, tmp, title=f"{workload.name}: GPUs "
                                "per placement algorithm")
        console.print(f"wrote {plot}")
