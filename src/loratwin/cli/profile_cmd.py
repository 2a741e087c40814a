"""``loratwin profile fit`` and ``loratwin profile show``."""

from __future__ import annotations

from pathlib import Path

import typer

from loratwin.cli.app import app, command_group
from loratwin.errors import DataError

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

    from loratwin.cli.common import console
    from loratwin.profile.store import bundled_profiles, load_profile

    if name is None:
        console.print("bundled profiles: " + ", ".join(bundled_profiles()))
        return
    prof = load_profile(name)
    table = Table(title=f"{prof.name} on {prof.gpu}")
    table.add_column("coefficient")
    table.add_column("value", justify="right")
    for k, v in prof.step.model_dump().items():
        unit = "us" if v < 1e-3 else "ms"
        table.add_row(k, f"{v * (1e6 if unit == 'us' else 1e3):.4g} {unit}")
    table.add_row("frontend_latency_s", f"{prof.frontend_latency_s * 1e3:.3g} ms")
    table.add_row("max_model_len", str(prof.max_model_len))
    console.print(table)
    _print_report(prof.name, prof.fit_report)


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
