"""``loratwin surrogate universal``: rebuild the universal (profile-normalised) surrogate.

One command runs (or resumes) the twin runs of every training profile into
``surrogate-data/universal/<profile>`` and trains into the package's
``surrogate/bundled/universal.npz``, with leave-one-profile-out scores on the two measured
profiles::

    loratwin surrogate universal --jobs 2
"""

from __future__ import annotations

from pathlib import Path

import typer

from loratwin.cli.surrogate_cmd import surrogate_app


@surrogate_app.command("universal")
def universal_cmd(
    data: Path = typer.Option(Path("surrogate-data/universal"),
                              help="Folder of the training data sets (one per profile)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Surrogate file (default: the "
                                                               "package's bundled one)"),
    jobs: int = typer.Option(1, help="Worker processes for the twin runs"),
    seed: int = typer.Option(0, help="Seed of the model fits"),
) -> None:
    """Generate (or resume) the training runs and train the universal surrogate."""
    from loratwin.cli.common import atomic_output, check_output_dir, check_output_file, console
    from loratwin.cli.progress import progress_bar
    from loratwin.errors import ConfigError
    from loratwin.surrogate.dataset import load_dataset
    from loratwin.surrogate.universal import UNIVERSAL_NAME, UniversalSurrogate
    from loratwin.surrogate.universal_build import (
        DESIGN,
        MEASURED,
        chunks_of,
        generate_training_data,
        training_profiles,
    )
    from loratwin.surrogate.universal_train import prepare_rows, train_universal

    if jobs == 0 or jobs < -1:
        raise ConfigError("must be >= 1 or -1 (all cores)", field="jobs")
    if seed < 0:
        raise ConfigError(f"must be >= 0 (got {seed})", field="seed")
    check_output_file(out, "--out", (".npz",))
    check_output_dir(data, "--data")
    with console.status("building the training profiles (priors)"):
        profiles = training_profiles()
    size = DESIGN.chunk_size
    n_points = {p.name: min(DESIGN.grid.points + DESIGN.qmc.points,
                            (chunks_of(p) or 10**9) * size) for p in profiles}
    todo_of: list[str] = []
    with progress_bar("twin runs", sum(n_points.values()), "runs") as advance:
        generate_training_data(
            data, profiles, jobs=jobs, on_chunk=lambda done: advance(done.points),
            on_profile=lambda name, _k, _n: todo_of.append(name),
            on_start=lambda todo, _chunks: advance(n_points[todo_of[-1]] - todo))
    with console.status("normalising the data sets"):
        parts = [prepare_rows(load_dataset(data / p.name, chunks_of(p)), p) for p in profiles]
    sur = train_universal(parts, profiles, held_out=MEASURED, seed=seed,
                          on_progress=lambda m: console.print(m))
    target = out or _bundled_path(UNIVERSAL_NAME)
    with atomic_output(target) as tmp:
        sur.save(tmp)
    UniversalSurrogate.load(target)  # what was written reads back
    console.print(loo_table(sur.meta["leave_one_out"]))
    console.print(f"wrote {target} ({sum(map(len, parts)):,} twin runs of {len(parts)} "
                  "profiles)")


def _bundled_path(name: str) -> Path:
    from importlib import resources

    return Path(str(resources.files("loratwin.surrogate").joinpath("bundled", f"{name}.npz")))


def loo_table(loo: dict) -> object:
    """Leave-one-profile-out scores as a table (one row per held-out profile)."""
    from rich.table import Table

    table = Table(title="universal surrogate, leave one profile out (held-out profile's "
                        "twin runs)")
    for c in ("held out", "rows", "trained on", "throughput\nSMAPE %", "ITL\nSMAPE %",
              "TTFT\nSMAPE %", "starvation\nF1"):
        table.add_column(c, justify="left" if c in ("held out", "trained on") else "right")
    for name, sc in loo.items():
        table.add_row(name, str(sc["rows"]), f"{len(sc['trained_on'])} profiles",
                      *(f"{sc[t]['smape']:.2f}" if t in sc else "-"
                        for t in ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms")),
                      f"{sc['starvation']['f1']:.3f}")
    return table
