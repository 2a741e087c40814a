"""``loratwin place`` and ``loratwin compare``: adapters on the fewest GPUs.

Examples
--------
::

    loratwin place adapters.csv --model llama-3.1-8b-instruct
    loratwin place adapters.csv --algorithm loraserve --gpus 8 --json placement.json
    loratwin place adapters.csv --emit-vllm serve/ --lora-dir /models/loras --verify --jobs 2
    loratwin place adapters.csv --max-ttft-ms 2000 --advise
    loratwin place adapters.csv --emit kubernetes --emit litellm --emit router out/
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
SURROGATE_HELP = ("Surrogate .npz, 'universal', 'on-the-fly' (a per-profile surrogate trained "
                  "now on a quick design and cached, ~minutes) or 'auto' (on the fly when the "
                  "universal one's held-out accuracy is insufficient); default: the "
                  "profile's bundled one, else the universal one")
#: Bins of the twin's running/waiting/KV time series kept per verified GPU (report plots).
TIMESERIES_BINS = 120


def _problem(workload: Path, model: str, surrogate: str | None, max_num_seqs: int,
             arrival_cv: float, vllm_version: str | None = None) -> PlacementProblem:
    """The placement problem; the workload file is read and checked first."""
    from loratwin.workload.adapters import load_adapters

    # the workload is checked before the placement library (scipy, scikit-learn) is imported
    adapters = load_adapters(workload) if workload.suffix.lower() in (".csv", ".yaml",
                                                                      ".yml") else workload
    from loratwin.placement import predictor

    surrogate = on_the_fly_choice(model, surrogate, max_num_seqs)
    # through the module attribute, so that tests can swap the surrogate for a stand-in
    kw = {} if vllm_version is None else {"vllm_version": vllm_version}
    return predictor.make_problem(adapters, model, surrogate=surrogate,
                                  max_num_seqs=max_num_seqs, arrival_cv=arrival_cv, **kw)


def on_the_fly_choice(model: str, surrogate: str | None, max_num_seqs: int) -> str | None:
    """``--surrogate on-the-fly`` / ``auto`` resolved to a surrogate file (made with a
    progress bar of its twin runs when not cached) or ``universal``; other values as given."""
    from loratwin.surrogate.on_the_fly import AUTO, ON_THE_FLY, resolve_choice

    if surrogate not in (ON_THE_FLY, AUTO):
        return surrogate
    from loratwin.cli.progress import lazy_progress
    from loratwin.profile.store import load_profile

    profile = load_profile(model)
    with lazy_progress(f"on-the-fly surrogate of {profile.name}: twin runs", "runs") as bar:
        return resolve_choice(profile, surrogate, max_num_seqs=max_num_seqs, on_runs=bar)


def _version_note(problem: PlacementProblem) -> str | None:
    """The surrogate learnt the profile's release; twin runs follow the problem's."""
    if problem.vllm_version is None or problem.vllm_version == problem.profile.vllm_version:
        return None
    return (f"surrogate predictions are for vLLM {problem.profile.vllm_version} (the twin runs "
            f"it learnt from); twin runs follow vLLM {problem.vllm_version}")


def _rates(problem: PlacementProblem) -> dict[str, float]:
    return {a.id: a.rate for a in problem.adapters}


def _predicts_p99(problem: PlacementProblem) -> bool:
    sur = getattr(problem.predictor, "surrogate", None)
    return sur is None or sur.has_target("p99_ttft_ms")


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
    out: Path | None = typer.Argument(None, help="Folder for --emit: OUT/<format>/..."),
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name or JSON path"),
    algorithm: str = typer.Option("loratwin", help=f"One of {', '.join(ALGORITHMS)}"),
    gpus: int | None = typer.Option(None, help="GPUs available (error if more are needed)"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the placement as JSON"),
    emit_vllm: Path | None = typer.Option(None, "--emit-vllm",
                                          help="Write one vllm serve script per GPU here"),
    emit: list[str] = typer.Option([], "--emit", help="Write deployable files into OUT/<format>"
                                   ": vllm, kubernetes, kserve, litellm, router (repeatable)"),
    lora_dir: str = typer.Option("./adapters", help="Adapter path prefix: <lora-dir>/<id>"),
    adapter_uri_template: str = typer.Option(
        "pvc://loratwin-adapters/{adapter_id}",
        help="Adapter location for kubernetes/kserve; fields {adapter_id}, {rank}"),
    api_base_template: str = typer.Option(
        "http://{server}:8000/v1", help="Server address for litellm/router; fields {server} "
                                        "(object name), {index}"),
    name_prefix: str = typer.Option("loratwin", help="Object names: <prefix>-gpu-00, ..."),
    image: str | None = typer.Option(None, help="kubernetes image (default vllm/vllm-openai:"
                                                "v<profile's vLLM version>)"),
    verify: bool = typer.Option(False, "--verify", help="Simulate every GPU in the twin"),
    jobs: int = typer.Option(1, help="Parallel twin runs (joblib)"),
    duration: float = typer.Option(3600.0, help="Twin benchmark window per GPU, s"),
    seed: int = typer.Option(0, help="Seed of randomised algorithms and twin runs"),
    surrogate: str | None = typer.Option(None, help=SURROGATE_HELP),
    max_num_seqs: int = typer.Option(2048, help="--max-num-seqs of every server"),
    vllm_version: str | None = typer.Option(
        None, "--vllm-version", help="vLLM release of the servers (0.8.5, 0.32, 0.33; "
        "default: the profile's)"),
    arrival_cv: float = typer.Option(1.0, help="Burstiness of arrivals (1 = Poisson)"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm",
                                 help="Let loratwin check borderline GPUs, and the "
                                 "placements on one GPU fewer, in the twin"),
    twin_search: bool = typer.Option(
        False, "--twin-search/--no-twin-search",
        help="loratwin: let the twin choose among its placement and balanced spreads on one "
        "GPU fewer and as many, and repair the worst GPU's TTFT (about 30-90 twin runs)"),
    max_ttft_ms: float | None = typer.Option(None, help="SLO: predicted mean TTFT of every "
                                                        "GPU at most this, ms (loratwin)"),
    max_itl_ms: float | None = typer.Option(None, help="SLO: predicted mean ITL of every GPU "
                                                       "at most this, ms (loratwin)"),
    max_p99_ttft_ms: float | None = typer.Option(None, help="SLO: predicted p99 TTFT of every "
                                                            "GPU at most this, ms (loratwin)"),
    objective: str = typer.Option("latency", help="loratwin: 'latency' (fewest GPUs, balanced, "
                                  "with the GPUs the latency target needs) or 'throughput' "
                                  "(the papers' starvation rule alone)"),
    target_ttft_ms: float = typer.Option(2000.0, help="Latency target: mean TTFT per GPU, ms"),
    target_p99_ttft_ms: float = typer.Option(10000.0, help="Latency target: p99 TTFT per GPU, "
                                                           "ms"),
    ray_address: str | None = typer.Option(None, help="Run twin confirmations and --verify on "
                                                      "a Ray cluster ('auto', 'local', ...)"),
    advise: bool = typer.Option(False, "--advise", help="Batching advisor on every GPU: "
                                "max_num_seqs where throughput plateaus, freed memory as "
                                "KV or adapter slots (twin-verified)"),
    gpu_types: list[str] | None = typer.Option(
        None, help="TYPE=COST_PER_HOUR[:MAX_COUNT], repeated: the fleet of least cost over "
        "these GPU types (see docs/replan.md)"),
    gpu_profile: list[str] | None = typer.Option(None, help="TYPE=PROFILE of a --gpu-types "
                                                 "type (name or JSON path)"),
    gpu_surrogate: list[str] | None = typer.Option(
        None, help="TYPE=S of a --gpu-types type: S.npz, 'universal', 'on-the-fly' or 'auto'"),
) -> None:
    """Place the adapters on the fewest GPUs; print each GPU's adapters and vLLM flags."""
    from loratwin.cli.common import atomic_files, check_output_dir, check_output_file

    _check_common(jobs, duration, seed, max_num_seqs, arrival_cv)
    check_output_file(json_out, "--json")
    check_output_dir(emit_vllm, "--emit-vllm")

    if gpu_types:
        from loratwin.cli.place_fleet import check_fleet_flags, run_fleet
        from loratwin.placement.prefix_search import SearchOptions

        check_fleet_flags(algorithm, gpus, emit_vllm, advise)
        run_fleet(workload=workload, model=model, gpu_types=gpu_types, gpu_profile=gpu_profile,
                  gpu_surrogate=gpu_surrogate, surrogate=surrogate, json_out=json_out,
                  seed=seed, max_num_seqs=max_num_seqs, arrival_cv=arrival_cv,
                  confirm=confirm,
                  options=SearchOptions(itl_slo_ms=max_itl_ms, ttft_slo_ms=max_ttft_ms,
                                        p99_ttft_slo_ms=max_p99_ttft_ms),
                  verify=verify, duration=duration, jobs=jobs)
        return
    for name, slo in (("max_ttft_ms", max_ttft_ms), ("max_itl_ms", max_itl_ms),
                      ("max_p99_ttft_ms", max_p99_ttft_ms), ("target_ttft_ms", target_ttft_ms),
                      ("target_p99_ttft_ms", target_p99_ttft_ms)):
        if slo is not None and not slo > 0:
            raise ConfigError(f"must be > 0 (got {slo})", field=name)
    if objective not in ("latency", "throughput"):
        raise ConfigError(f"unknown objective {objective!r} (one of latency, throughput)",
                          field="objective")
    if (max_ttft_ms is not None or max_itl_ms is not None or max_p99_ttft_ms is not None
            ) and algorithm != "loratwin":
        raise ConfigError("latency SLOs are honoured by the loratwin algorithm only",
                          field="algorithm")
    if gpus is not None and gpus < 1:
        raise ConfigError(f"must be >= 1 (got {gpus})", field="gpus")
    if algorithm not in ALGORITHMS:
        raise ConfigError(f"unknown algorithm {algorithm!r} (one of "
                          f"{', '.join(ALGORITHMS)})", field="algorithm")
    from loratwin.deploy.fleet import FleetOptions
    from loratwin.deploy.plan_io import check_emit

    fleet_opts = FleetOptions(name_prefix, adapter_uri_template, api_base_template)
    formats = check_emit(emit, out, emit_vllm, fleet_opts)
    check_output_dir(out, "out")
    problem = _problem(workload, model, surrogate, max_num_seqs, arrival_cv, vllm_version)
    from loratwin.advisor.gpu import advise_placement
    from loratwin.cli.common import console, write_json
    from loratwin.placement import api, report
    from loratwin.placement.balance import LatencyTarget
    from loratwin.placement.bounds import lower_bound
    from loratwin.placement.prefix_search import SearchOptions
    from loratwin.placement.verify import verify_placement

    if max_p99_ttft_ms is not None and not _predicts_p99(problem):
        raise ConfigError("the surrogate has no p99 TTFT model (retrain it)",
                          field="max_p99_ttft_ms")
    lb = lower_bound(problem, seed=seed)
    if gpus is not None and lb.gpus > gpus:
        raise ConfigError(f"the workload needs at least {lb.gpus} GPUs (lower bound), only "
                          f"{gpus} available", field="gpus")
    with console.status(f"placing {len(problem.adapters):,} adapters with {algorithm}"):
        placement = api.place(
            problem, algorithm, seed=seed, n_gpus=gpus,
            options=SearchOptions(itl_slo_ms=max_itl_ms, ttft_slo_ms=max_ttft_ms,
                                  p99_ttft_slo_ms=max_p99_ttft_ms),
            target=LatencyTarget(target_ttft_ms, target_p99_ttft_ms),
            objective=objective,  # type: ignore[arg-type]
            confirm_borderline=confirm, twin_search=twin_search, jobs=jobs,
            ray_address=ray_address)
    advice = None
    if advise:
        with console.status(f"batching advisor on {placement.gpus} GPU(s) (twin sweeps)"):
            placement, advice = advise_placement(problem, placement, duration_s=duration,
                                                 seed=seed, n_jobs=jobs)
    if verify and advice is None:
        from loratwin.cli.progress import progress_bar

        with progress_bar("twin verification", placement.gpus, "GPUs") as advance:
            placement = verify_placement(problem, placement, duration_s=duration, seed=seed,
                                         n_jobs=jobs, timeseries_bins=TIMESERIES_BINS,
                                         on_done=advance, ray_address=ray_address)
    rates = _rates(problem)
    console.print(report.placement_table(placement, rates))
    _print_provenance(problem)
    if advice is not None:
        console.print(_advice_table(advice))
    if verify or advice is not None:
        console.print(report.verified_table(placement))
    console.print(lb.describe())
    if placement.tradeoff is not None:
        console.print(placement.tradeoff.describe())
    version_note = _version_note(problem)
    for note in (*placement.notes, *([version_note] if version_note else [])):
        console.print(f"note: {note}")
    if verify or advice is not None:
        bad = [k for k, g in enumerate(placement.servers)
               if g.verified and (g.verified["starvation"] or g.verified["memory_error"])]
        console.print("twin: every GPU keeps up" if not bad else
                      f"[red]twin: GPU(s) {', '.join(map(str, bad))} starve or fail to start[/red]")
    from loratwin.placement.twin_latency import twin_latency

    twin_slo = (twin_latency(placement, placement.tradeoff)
                if placement.tradeoff is not None else None)
    if twin_slo is not None:
        console.print(twin_slo.describe() if twin_slo.met else f"[red]{twin_slo.describe()}[/red]")
    doc = report.placement_dict(placement, rates, lb.gpus)
    if twin_slo is not None and isinstance(doc.get("tradeoff"), dict):
        doc["tradeoff"]["twin"] = twin_slo.to_dict()
    for server, adv in zip(doc["servers"], advice or [], strict=False):
        server["advice"] = adv.to_dict()
    doc.update(_plan_context(problem, workload, max_ttft_ms, max_itl_ms))
    doc["surrogate"] = _surrogate_doc(problem)
    if json_out is not None:
        write_json(json_out, doc)
        console.print(f"wrote {json_out}")
    if formats or emit_vllm is not None:
        from loratwin.deploy import write
        from loratwin.deploy.options import EmitOptions
        from loratwin.deploy.plan_io import render_plan

        opts = EmitOptions(lora_dir=lora_dir, image=image,
                           vllm_version=problem.vllm_version or problem.profile.vllm_version)
        for fmt, folder, files in render_plan(doc, formats, out, emit_vllm, fleet_opts, opts):
            with atomic_files(folder) as tmp_dir:
                write(files, tmp_dir)
            console.print(f"wrote {len(files)} {fmt} file(s) to {folder}")


def _print_provenance(problem: PlacementProblem) -> None:
    """The "estimated" line of a prior profile and the line naming the surrogate."""
    from loratwin.calibrate.prior_label import estimated_note, is_estimated
    from loratwin.cli.common import console
    from loratwin.placement.predictor import predictor_note

    if is_estimated(problem.profile):
        console.print(f"[yellow]{estimated_note(problem.profile)}[/yellow]")
    console.print(predictor_note(problem.predictor), markup=False, highlight=False)


def _surrogate_doc(problem: PlacementProblem) -> dict[str, object]:
    """The surrogate behind the predictions, for the JSON outputs."""
    from loratwin.placement.predictor import predictor_note
    from loratwin.surrogate.on_the_fly import surrogate_kind

    sur = getattr(problem.predictor, "surrogate", None)
    kind = surrogate_kind(sur) if sur is not None else "other"
    return {"kind": kind, "note": predictor_note(problem.predictor),
            "estimated": kind == "universal" or problem.profile.profile_kind == "prior"}


def _plan_context(problem: PlacementProblem, workload: Path, max_ttft_ms: float | None,
                  max_itl_ms: float | None) -> dict[str, object]:
    from loratwin.deploy.fleet import plan_context

    p = problem.profile
    return plan_context(p.name, p.hf_model_name, p.profile_kind,
                        problem.vllm_version or p.vllm_version, workload.name,
                        {"max_ttft_ms": max_ttft_ms, "max_itl_ms": max_itl_ms})


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
    html: Path | None = typer.Option(None, "--html", help="Write a self-contained HTML report"),
    algorithms: str | None = typer.Option(None, help="Comma-separated subset of "
                                                     f"{', '.join(ALGORITHMS)}"),
    optimum: bool = typer.Option(True, "--optimum/--no-optimum",
                                 help=f"Exact optimum (HiGHS) for <= {names.EXACT_MAX_ADAPTERS} "
                                 "adapters"),
    jobs: int = typer.Option(1, help="Parallel twin runs (joblib)"),
    duration: float = typer.Option(3600.0, help="Twin benchmark window per GPU, s"),
    seed: int = typer.Option(0, help="Seed of randomised algorithms and twin runs"),
    surrogate: str | None = typer.Option(None, help=SURROGATE_HELP),
    max_num_seqs: int = typer.Option(2048, help="--max-num-seqs of every server"),
    vllm_version: str | None = typer.Option(
        None, "--vllm-version", help="vLLM release of the servers (0.8.5, 0.32, 0.33; "
        "default: the profile's)"),
    arrival_cv: float = typer.Option(1.0, help="Burstiness of arrivals (1 = Poisson)"),
    confirm: bool = typer.Option(True, "--confirm/--no-confirm",
                                 help="Let loratwin check borderline GPUs, and the "
                                 "placements on one GPU fewer, in the twin"),
    twin_search: bool = typer.Option(
        False, "--twin-search/--no-twin-search",
        help="loratwin: let the twin choose among its placement and balanced spreads on one "
        "GPU fewer and as many, and repair the worst GPU's TTFT (about 30-90 twin runs)"),
    ray_address: str | None = typer.Option(None, help="Run the twin runs on a Ray cluster"),
) -> None:
    """Run every placement algorithm, verify each in the twin, and compare them."""
    from loratwin.cli.common import atomic_output, check_output_file

    _check_common(jobs, duration, seed, max_num_seqs, arrival_cv)
    check_output_file(json_out, "--json")
    check_output_file(plot, "--plot", suffixes=(".png", ".pdf", ".svg"))

    names = list(ALGORITHMS)
    if algorithms:
        names = [a.strip() for a in algorithms.split(",") if a.strip()]
        unknown = [a for a in names if a not in ALGORITHMS]
        if unknown or not names:
            raise ConfigError(f"unknown algorithm {unknown[0] if unknown else '(none)'!r} "
                              f"(one of {', '.join(ALGORITHMS)})", field="algorithms")
    check_output_file(html, "--html", suffixes=(".html", ".htm"))
    from loratwin.cli.progress import progress_bar

    problem = _problem(workload, model, surrogate, max_num_seqs, arrival_cv, vllm_version)
    from loratwin.cli.common import console, err_console, write_json
    from loratwin.placement import api, report
    from loratwin.placement.bounds import lower_bound
    from loratwin.placement.exact import MAX_ADAPTERS, solve_exact
    from loratwin.placement.lp_bound import lp_lower_bound
    from loratwin.placement.types import Placement
    from loratwin.placement.verify import verify_placement

    lb = lower_bound(problem, seed=seed)
    with console.status("LP lower bound (surrogate scan, HiGHS)"):
        lp = lp_lower_bound(problem)
    placements: list[Placement] = []
    with progress_bar("placing", len(names), "algorithms") as advance:
        for name in names:
            advance(0, description=f"placing: {name}")
            placements.append(api.place(problem, name, seed=seed, confirm_borderline=confirm,
                                        twin_search=twin_search, jobs=jobs,
                                        ray_address=ray_address))
            advance()
    opt = None
    if optimum and len(problem.adapters) <= MAX_ADAPTERS:
        with console.status("exact optimum (HiGHS)"):
            opt = solve_exact(problem, placements, seed=seed, lower=lb.gpus)
    elif optimum:
        err_console.print(f"note: no exact optimum above {MAX_ADAPTERS} adapters")
    verified = []
    with progress_bar("twin verification", sum(p.gpus for p in placements), "GPUs") as advance:
        for p in placements:
            advance(0, description=f"twin verification: {p.algorithm}")
            verified.append(verify_placement(
                problem, p, duration_s=duration, seed=seed, n_jobs=jobs, on_done=advance,
                ray_address=ray_address,
                timeseries_bins=TIMESERIES_BINS if html is not None else 0))
    rows = [report.summarize(p) for p in verified]
    opt_gpus = opt.gpus if opt is not None else None
    best_lb = max(lb.gpus, lp.gpus)
    console.print(report.compare_table(rows, best_lb, opt_gpus))
    _print_provenance(problem)
    console.print(lb.describe())
    console.print(lp.describe())
    if opt is not None:
        console.print(opt.describe())
    if json_out is not None:
        doc = report.compare_dict(rows, best_lb, opt_gpus, opt.describe() if opt else None)
        doc.update(throughput_lower_bound=lb.gpus, lp_lower_bound=lp.gpus,
                   lp_lower_bound_value=lp.value, surrogate=_surrogate_doc(problem),
                   profile_kind=problem.profile.profile_kind)
        write_json(json_out, doc)
        console.print(f"wrote {json_out}")
    if html is not None:
        from loratwin.report.html import compare_report

        ctx = _plan_context(problem, workload, None, None)
        plans = [{**report.placement_dict(p, _rates(problem), lb.gpus), **ctx}
                 for p in verified]
        doc = report.compare_dict(rows, lb.gpus, opt_gpus, opt.describe() if opt else None)
        page = compare_report(doc, plans, f"{workload.name}: placement algorithms compared")
        with atomic_output(html) as tmp:
            tmp.write_text(page)
        console.print(f"wrote {html}")
    if plot is not None:
        with atomic_output(plot) as tmp:
            report.plot_compare(rows, best_lb, opt_gpus, tmp, title=f"{workload.name}: GPUs "
                                "per placement algorithm")
        console.print(f"wrote {plot}")
