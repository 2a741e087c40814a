"""``loratwin profile fit``, ``profile prior`` and ``profile show``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from loratwin.cli.app import app, command_group
from loratwin.errors import ConfigError, DataError

if TYPE_CHECKING:
    from loratwin.calibrate.collect import CollectOptions
    from loratwin.calibrate.prior_model import ModelSpec
    from loratwin.calibrate.prior_targets import AdapterTargets

profile_app = command_group("Fit and inspect performance profiles.")
app.add_typer(profile_app, name="profile")


@profile_app.command("fit")
def fit_cmd(
    model_dirs: list[Path] = typer.Argument(
        ..., help="Calibration folders, e.g. ../shared/data/profiles/llama-3.1-8b-instruct"
    ),
    out_dir: Path = typer.Option(..., "--out-dir", "-o", help="Where to write <model>.json"),
    reference: str | None = typer.Option(
        None, help="Profile to transfer prefill costs from (default: the first folder fitted)"
    ),
    jobs: int = typer.Option(-1, help="Worker processes for the replays (-1: all cores)"),
) -> None:
    """Fit profiles from calibration sweeps, in the order given.

    A folder without a full prefill sweep borrows the prefill costs of ``--reference`` or of
    the first profile fitted in this call. Rebuild the bundled profiles with::

        loratwin profile fit ../shared/data/profiles/llama-3.1-8b-instruct \\
            ../shared/data/profiles/qwen-2.5-7b-instruct -o src/loratwin/profile/bundled
    """
    from loratwin.calibrate.fit import fit_profile
    from loratwin.cli.common import atomic_output, check_output_dir, console
    from loratwin.profile.store import load_profile, save_profile

    check_output_dir(out_dir, "--out-dir")
    _check_jobs(jobs)
    for d in model_dirs:
        if not d.is_dir():
            raise DataError(f"calibration folder not found: {d}" if not d.exists()
                            else f"{d} is not a folder")
    ref = load_profile(reference) if reference else None
    for d in model_dirs:
        with console.status(f"fitting {d.name} (replaying calibration runs)"):
            prof = fit_profile(d, reference=ref, n_jobs=jobs)
        path = out_dir / f"{prof.name}.json"
        with atomic_output(path) as tmp:
            save_profile(prof, tmp)
        console.print(f"wrote {path}")
        _print_report(prof.name, prof.fit_report)
        ref = ref or prof


def _check_jobs(jobs: int) -> None:
    if jobs == 0 or jobs < -1:
        raise DataError(f"must be >= 1 or -1 for all cores (got {jobs})", field="--jobs")


def _print_report(name: str, report: dict) -> None:
    from rich.table import Table

    from loratwin.cli.common import console, fmt

    table = Table(title=f"fit report: {name}")
    table.add_column("component")
    table.add_column("figures")
    for comp, figs in report.items():
        table.add_row(comp, ", ".join(f"{k}={fmt(v, 3)}" for k, v in figs.items()))
    console.print(table)


@profile_app.command("show")
def show_cmd(name: str = typer.Argument(None, help="Bundled name or JSON path")) -> None:
    """Show a profile's coefficients and the fit error of each component."""
    from rich.table import Table

    from loratwin.calibrate.prior_label import estimated_note, estimated_prefix, is_estimated
    from loratwin.cli.common import console
    from loratwin.profile.store import bundled_profiles, load_profile

    if name is None:
        console.print("bundled profiles: " + ", ".join(bundled_profiles()))
        return
    prof = load_profile(name)
    table = Table(title=f"{estimated_prefix(prof)}{prof.name} on {prof.gpu}")
    table.add_column("coefficient")
    table.add_column("value", justify="right")
    for k, v in prof.step.model_dump().items():
        if not k.endswith("_s"):  # dimensionless (split_k_fixed_fraction)
            table.add_row(k, f"{v:.4g}")
            continue
        unit = "us" if v < 1e-3 else "ms"
        table.add_row(k, f"{v * (1e6 if unit == 'us' else 1e3):.4g} {unit}")
    table.add_row("frontend_latency_s", f"{prof.frontend_latency_s * 1e3:.3g} ms")
    table.add_row("max_model_len", str(prof.max_model_len))
    console.print(table)
    _print_report(prof.name, prof.fit_report)
    if is_estimated(prof):
        console.print(estimated_note(prof))


@profile_app.command("calibrate-serving")
def calibrate_serving_cmd(
    real_runs: Path = typer.Argument(..., help="Development real runs (real_runs/<model>.csv)"),
    calibration: Path = typer.Option(
        ..., help="Calibration folder of the same model, e.g. ../shared/data/profiles/<model>"
    ),
    out: Path = typer.Option(..., "--out", "-o", help="serving_constants.json to write"),
    eager_grid_us: str = typer.Option(
        "0,150,250,350,450", help="Candidate eager launch costs, us per layer"
    ),
    fraction_grid: str = typer.Option("0.25,0.5,0.75,1.0", help="Candidate split-K fractions"),
    jobs: int = typer.Option(-1, help="Worker processes (-1: all cores)"),
) -> None:
    """Fit the serving constants no calibration sweep identifies (see profile/serving.py).

    Afterwards refit the profiles (``loratwin profile fit``) so that their other coefficients
    are solved with the new constants held fixed.
    """
    from rich.progress import Progress

    from loratwin.calibrate.fit import finish_fit, prepare_fit
    from loratwin.cli.common import atomic_output, check_output_file, console
    from loratwin.profile.serving import (
        ServingConstants,
        calibrate_serving,
        save_serving_constants,
    )
    from loratwin.twin.validate import read_real_runs

    check_output_file(out, "--out", (".json",))
    _check_jobs(jobs)
    eager = [x * 1e-6 for x in _grid(eager_grid_us, "--eager-grid-us", 0.0, None)]
    fractions = _grid(fraction_grid, "--fraction-grid", 0.0, 1.0)
    if not calibration.is_dir():
        raise DataError(f"calibration folder not found: {calibration}", field="--calibration")
    runs = read_real_runs(real_runs)
    with console.status("replaying the calibration runs"):
        ctx = prepare_fit(calibration, n_jobs=jobs)

    def profile_for(e: float, f: float, fe: float) -> object:
        return finish_fit(ctx, ServingConstants(
            lora_eager_layer_s=e, split_k_fixed_fraction=f, frontend_latency_s=fe
        ), validate=False)

    with Progress(console=console) as prog:
        task = prog.add_task("grid points (each validates every run)",
                             total=len(eager) * len(fractions))
        constants = calibrate_serving(
            profile_for, runs, eager_grid=eager, fraction_grid=fractions, n_jobs=jobs,
            on_point=lambda k, n: prog.update(task, completed=k),
        )
    with atomic_output(out) as tmp:
        save_serving_constants(constants, tmp)
    console.print(f"wrote {out}")
    _print_report("serving constants", {"constants": {
        "lora_eager_layer_us": constants.lora_eager_layer_s * 1e6,
        "split_k_fixed_fraction": constants.split_k_fixed_fraction,
        "frontend_latency_ms": constants.frontend_latency_s * 1e3,
    }, "fit": constants.report})


def _grid(text: str, flag: str, lo: float, hi: float | None) -> list[float]:
    """``"0,150,250"`` -> ``[0.0, 150.0, 250.0]``, each finite and in [lo, hi].

    Raises
    ------
    DataError
        An item that is not a number, or out of range, or no item.
    """
    import math

    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        values = [float(x) for x in items]
    except ValueError:
        raise DataError(f"expected comma-separated numbers (got {text!r})", field=flag) from None
    bad = [v for v in values if not math.isfinite(v) or v < lo or (hi is not None and v > hi)]
    if not values or bad:
        span = f">= {lo:g}" if hi is None else f"in [{lo:g}, {hi:g}]"
        raise DataError(f"expected comma-separated numbers {span} (got {text!r})", field=flag)
    return values


def _adapter_targets(spec: ModelSpec, target_modules: str | None,
                     adapter_config: Path | None) -> AdapterTargets | None:
    """The adapters' targets from ``--target-modules`` or ``--adapter-config`` (not both)."""
    from loratwin.calibrate.prior_targets import ALL_LINEAR, read_adapter_config, resolve_targets

    if target_modules is not None and adapter_config is not None:
        raise ConfigError("give --target-modules or --adapter-config, not both",
                          field="--target-modules")
    if adapter_config is not None:
        return read_adapter_config(adapter_config, spec)
    if target_modules is None:
        return None
    names = [t.strip() for t in target_modules.split(",") if t.strip()]
    if not names:
        raise ConfigError("no module named", field="--target-modules")
    return resolve_targets(spec, ALL_LINEAR if names == [ALL_LINEAR] else names)


@profile_app.command("prior")
def prior_cmd(
    hf_config: str = typer.Option(..., "--hf-config", help="config.json of the model, or a "
                                  "bundled name (llama-3.1-8b, qwen2.5-7b, qwen3-8b, "
                                  "mistral-7b, gemma-2-9b, llama-3.1-70b, ...)"),
    gpu: str = typer.Option(..., help="GPU of the table (h100-sxm-80gb, h100-64gb, h200, "
                            "a100-80gb, l40s, b200)"),
    out: Path = typer.Option(..., "--out", "-o", help="Profile JSON to write"),
    tp: int = typer.Option(1, "--tp", help="Tensor-parallel size (--tensor-parallel-size)"),
    dtype: str | None = typer.Option(None, help="bf16 or fp16 (default: the config's)"),
    vllm_version: str | None = typer.Option(None, help="vLLM version recorded in the profile "
                                            "(default: the calibration profiles')"),
    calibrate_on: list[str] | None = typer.Option(
        None, "--calibrate-on", help="Measured profiles the efficiency factors are fitted on "
        "(repeat the flag or separate by commas; default: every bundled measured profile)"),
    name: str | None = typer.Option(None, help="Profile name (default <model>-<gpu>-prior)"),
    generation_config: Path | None = typer.Option(
        None, help="The model's generation_config.json: its repetition/frequency/presence "
        "penalties cost every step (default: the bundled copy, none for a user's config)"),
    target_modules: str | None = typer.Option(
        None, help="Modules your adapters adapt, comma-separated as PEFT's target_modules "
        "(e.g. q_proj,v_proj; or all-linear); they set the adapter load times "
        "(default: every linear layer)"),
    adapter_config: Path | None = typer.Option(
        None, help="A PEFT adapter_config.json of your adapters: its target_modules (names "
        "or a regular expression) and layers_to_transform set the adapter load times"),
) -> None:
    """Estimate a profile for a model and GPU nobody measured (a physics prior).

    Step costs are a roofline of each step (weights and KV bytes read, FLOPs, LoRA kernel
    shapes) with efficiency factors fitted here on the --calibrate-on profiles and shared by
    all models; KV capacity and start-up failures come from vLLM's memory arithmetic; load
    times from the operations vLLM enqueues per adapted module and the adapter file's tensors
    and bytes (--target-modules or --adapter-config: the modules your adapters adapt).
    Everything made from it says "estimated".
    Leave-one-model-out in one command::

        loratwin profile prior --hf-config qwen2.5-7b --gpu h100-64gb \\
            --calibrate-on llama-3.1-8b-instruct -o qwen-prior.json
    """
    from loratwin.calibrate.prior import build_prior, calibrate, default_calibration_profiles
    from loratwin.calibrate.prior_gpu import load_gpu
    from loratwin.calibrate.prior_label import ESTIMATED
    from loratwin.calibrate.prior_model import Shard, load_model_spec
    from loratwin.calibrate.prior_report import prior_summary_table
    from loratwin.cli.common import atomic_output, check_output_file, console
    from loratwin.profile.store import load_profile, save_profile

    check_output_file(out, "--out", (".json",))
    spec = load_model_spec(hf_config, dtype=dtype, generation_config=generation_config)
    gpu_spec = load_gpu(gpu)
    Shard.of(spec, tp)  # reject a tp that does not split the model before the fit
    targets = _adapter_targets(spec, target_modules, adapter_config)
    names = [n.strip() for item in (calibrate_on or []) for n in item.split(",") if n.strip()]
    if calibrate_on and not names:
        raise ConfigError("no profile named", field="--calibrate-on")
    profiles = [load_profile(n) for n in names] if names else default_calibration_profiles()
    with console.status("fitting the efficiency factors on "
                        + ", ".join(p.name for p in profiles)):
        calib = calibrate(profiles)
    prof = build_prior(spec, gpu_spec, calib, tp=tp, vllm_version=vllm_version, name=name,
                       targets=targets)
    with atomic_output(out) as tmp:
        save_profile(prof, tmp)
    console.print(prior_summary_table(prof))
    console.print(f"wrote {out} ({ESTIMATED}: profile_kind prior, calibrated on "
                  f"{', '.join(calib.calibrated_on)})")


@profile_app.command("collect")
def collect_cmd(
    out: Path = typer.Option(..., "--out", "-o", help="Calibration folder to write (or resume)"),
    launch: str | None = typer.Option(
        None, help='Server command to start and vary, e.g. "vllm serve MODEL --lora-modules '
                   'a=PATH"'),
    url: str | None = typer.Option(None, help="http://HOST:PORT of a running server (no "
                                              "restarts: its own configuration only)"),
    env: list[str] = typer.Option([], help="KEY=VALUE for the launched servers (repeatable)"),
    budget: float = typer.Option(60.0, help="Campaign budget, minutes"),
    point_seconds: float = typer.Option(10.0, help="Target duration of one burst, s"),
    seed: int = typer.Option(0, help="Seed of the prompts"),
    model_name: str | None = typer.Option(None, help="Profile name (default: model folder)"),
    hf_config: Path | None = typer.Option(None, help="The model's config.json"),
    device: str = typer.Option("auto", help="auto, cpu or cuda"),
    max_num_seqs: int | None = typer.Option(None, help="--max-num-seqs of the server"),
    max_num_batched_tokens: int | None = typer.Option(
        None, help="--max-num-batched-tokens of the server"),
    max_cpu_loras: int | None = typer.Option(None, help="--max-cpu-loras (with --url)"),
    max_lora_rank: int | None = typer.Option(None, help="--max-lora-rank (with --url)"),
    max_loras_grid: str = typer.Option("4,1", help="max_loras of the LoRA servers (--launch)"),
    quick: bool = typer.Option(False, help="The reduced plan (CI)"),
    gpu_name: str | None = typer.Option(None, help="GPU model, for the profile"),
    gpu_memory_gib: float | None = typer.Option(None, help="Total GPU memory, GiB"),
    startup_timeout: float = typer.Option(900.0, help="Seconds to wait for a server start"),
) -> None:
    """Measure the calibration sweeps of a live deployment for `loratwin profile fit`.

    With --launch loratwin starts and stops the server itself (no LoRA, then one server per
    max_loras of --max-loras-grid, then extra start-ups for the KV table); with --url it
    measures the running server only. Resumable: rerun the same command to continue.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from loratwin.calibrate.collect import CollectOptions, CollectProgress, run_campaign
    from loratwin.calibrate.collect_plan import PlanOptions
    from loratwin.cli.common import check_number, check_output_dir, console
    from loratwin.errors import ConfigError

    if (launch is None) == (url is None):
        raise ConfigError("give exactly one of --launch and --url", field="--launch")
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"must be auto, cpu or cuda (got {device!r})", field="--device")
    check_number(budget, "--budget", gt=0)
    check_number(point_seconds, "--point-seconds", gt=0)
    check_number(seed, "--seed", ge=0)
    check_number(startup_timeout, "--startup-timeout", gt=0)
    check_number(gpu_memory_gib, "--gpu-memory-gib", gt=0)
    for name, value in (("--max-num-seqs", max_num_seqs), ("--max-cpu-loras", max_cpu_loras),
                        ("--max-num-batched-tokens", max_num_batched_tokens),
                        ("--max-lora-rank", max_lora_rank)):
        check_number(value, name, ge=1)
    grid = tuple(int(v) for v in _grid(max_loras_grid, "--max-loras-grid", 1, None))
    if hf_config is not None and not hf_config.is_file():
        raise ConfigError(f"no such file: {hf_config}", field="--hf-config")
    check_output_dir(out, "--out")
    flags = {"max_num_seqs": max_num_seqs, "max_num_batched_tokens": max_num_batched_tokens,
             "max_cpu_loras": max_cpu_loras, "max_lora_rank": max_lora_rank}
    plan = PlanOptions(max_loras_grid=grid, quick=quick,
                       **({"decode_batches": (1, 8, 32)} if quick else {}))
    opts = CollectOptions(out_dir=out, budget_min=budget, point_s=point_seconds, seed=seed,
                          model_name=model_name, hf_config=hf_config, flags=flags,
                          device=device, plan=plan, startup_timeout_s=startup_timeout,
                          gpu_name=gpu_name, gpu_memory_gib=gpu_memory_gib)
    kwargs = _collect_target(launch, url, env, opts)
    from loratwin.calibrate.collect import RESIZE_BELOW
    from loratwin.calibrate.fit import MIN_ENGINE_BOUND_DURATION_S

    if point_seconds * RESIZE_BELOW < MIN_ENGINE_BOUND_DURATION_S:
        console.print(f"[yellow]note: bursts may last {point_seconds * RESIZE_BELOW:g} s; "
                      f"profile fit uses those of >= {MIN_ENGINE_BOUND_DURATION_S:g} s only "
                      f"(--point-seconds >= "
                      f"{MIN_ENGINE_BOUND_DURATION_S / RESIZE_BELOW:.3g})[/yellow]")
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[clock]}"), console=console) as prog:
        task = prog.add_task("starting", total=None, clock="")

        def report(p: CollectProgress) -> None:
            prog.update(task, description=str(p.phase), completed=p.done, total=p.total,
                        clock=f"{p.elapsed_s / 60:.1f} of {p.budget_s / 60:.0f} min")

        summary = run_campaign(opts, report=report, **kwargs)
    note = " (budget reached: rerun to continue)" if summary.stopped_by_budget else ""
    skipped = (f", {summary.skipped} skipped (server did not start)" if summary.skipped
               else "")
    console.print(f"measured {summary.measured} point(s), {summary.pending} pending{note}"
                  f"{skipped}; "
                  f"wrote {out} (fit it with: loratwin profile fit {out} -o DIR)")


def _collect_target(launch: str | None, url: str | None, env: list[str],
                    opts: CollectOptions) -> dict[str, Any]:
    """``run_campaign`` keyword arguments of --launch or --url."""
    from loratwin.cli.bench_cmd import parse_env
    from loratwin.live.client import base_url
    from loratwin.live.launcher import split_command

    if launch is not None:
        return {"launch": split_command(launch), "env": parse_env(env)}
    from loratwin.calibrate.collect_url import url_server_spec

    assert url is not None
    server = base_url(url)
    spec, config = url_server_spec(server, opts.flags, opts.hf_config, opts.seed)
    return {"url": server, "url_server": spec, "config_json": config}
