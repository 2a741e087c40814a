"""``loratwin dataset``, ``train``, ``predict`` and ``loratwin surrogate ...``: the surrogates.

Rebuild a bundled surrogate (data set, then training) with::

    loratwin surrogate rebuild --model llama-3.1-8b-instruct --jobs -1

or the equivalent pair::

    loratwin dataset examples/surrogate-grid.yaml --model llama-3.1-8b-instruct \\
        --out surrogate-data/llama-3.1-8b-instruct --jobs -1
    loratwin train surrogate-data/llama-3.1-8b-instruct --model llama-3.1-8b-instruct \\
        -o src/loratwin/surrogate/bundled/llama-3.1-8b-instruct.npz
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from loratwin.cli.app import app, command_group
from loratwin.cli.names import DEFAULT_MODEL
from loratwin.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from loratwin.surrogate.dataset import DatasetRun
    from loratwin.surrogate.design import DesignSpec
    from loratwin.surrogate.model import Surrogate

surrogate_app = command_group("Rebuild, inspect and evaluate surrogates.")
app.add_typer(surrogate_app, name="surrogate")

# table labels of the targets (as loratwin.surrogate.targets.SHORT_NAMES; not imported here:
# cli modules import typer and the standard library only)
_SHORT = {"total_throughput_tok_s": "throughput", "mean_itl_ms": "ITL", "mean_ttft_ms": "TTFT",
          "p99_ttft_ms": "p99 TTFT", "starvation": "starvation",
          "served_fraction": "served fraction"}


# ----------------------------------------------------------------------------- dataset


def _run_dataset(spec: DesignSpec, out: Path, jobs: int, ray_address: str | None,
                 max_chunks: int | None, first_chunks: int | None = None) -> DatasetRun:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from loratwin.cli.common import console
    from loratwin.surrogate.dataset import ChunkDone, generate_dataset

    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("points"), TimeElapsedColumn(), TimeRemainingColumn(), console=console,
    ) as progress:
        task: list[Any] = []

        def on_start(points: int, chunks: int) -> None:
            task.append(progress.add_task(f"twin runs ({chunks} chunks)", total=points))

        def on_chunk(done: ChunkDone) -> None:
            progress.advance(task[0], done.points)

        try:
            run = generate_dataset(spec, out, jobs=jobs, ray_address=ray_address,
                                   max_chunks=max_chunks, first_chunks=first_chunks,
                                   on_start=on_start, on_chunk=on_chunk)
        except KeyboardInterrupt:
            progress.stop()
            raise _interrupted(out) from None
    console.print(
        f"{out}: {run.total_points:,} points in {run.total_chunks} chunks; computed "
        f"{run.computed_points:,}, already there {run.skipped_points:,}, failed runs "
        f"{run.error_points}" + (f"; {run.remaining_chunks} chunks still to run"
                                 if run.remaining_chunks else "")
        + f" ({run.wall_s:.0f} s)"
    )
    return run


@app.command("dataset")
def dataset_cmd(
    grid: Path = typer.Argument(..., help="Design YAML (see examples/surrogate-grid.yaml)"),
    out: Path = typer.Option(..., "--out", "-o", help="Data-set directory (chunk-*.parquet)"),
    model: str | None = typer.Option(None, help="Profile (overrides the YAML's model)"),
    jobs: int = typer.Option(1, help="Local worker processes (-1: all cores)"),
    ray_address: str | None = typer.Option(
        None, help="Run on a Ray cluster (address, 'auto', or 'local' to start one here)"
    ),
    max_chunks: int | None = typer.Option(None, help="Stop after this many new chunks"),
    chunks: int | None = typer.Option(None, help="Only the design's first N chunks"),
    vllm_version: str | None = typer.Option(
        None, "--vllm-version", help="vLLM release the twin runs follow (overrides the "
        "YAML's vllm_version; default: the profile's)"),
) -> None:
    """Run the twin over a sampling design; resumable (rerun the same command)."""
    from loratwin.cli.common import check_output_dir
    from loratwin.surrogate.design import load_design_spec, parse_design_spec

    check_output_dir(out, "--out")
    _check_counts(jobs=jobs, max_chunks=max_chunks, chunks=chunks)
    spec = load_design_spec(grid)
    if model:
        spec = spec.model_copy(update={"model": model})
    if vllm_version:
        spec = parse_design_spec({**spec.model_dump(), "vllm_version": vllm_version})
    _run_dataset(spec, out, jobs, ray_address, max_chunks, chunks)


def _check_counts(jobs: int | None = None, **counts: int | None) -> None:
    """``--jobs`` >= 1 or -1; every other count, when given, >= 1."""
    if jobs is not None and (jobs == 0 or jobs < -1):
        raise DataError(f"must be >= 1 or -1 for all cores (got {jobs})", field="--jobs")
    for name, value in counts.items():
        if value is not None and value < 1:
            raise DataError(f"must be >= 1 (got {value})", field=f"--{name.replace('_', '-')}")


def _interrupted(out: Path) -> SystemExit:
    """Ctrl-C: one line on stderr, exit code 130 (raised as SystemExit, which Typer passes
    through; its own KeyboardInterrupt handling would return 130 to the caller instead)."""
    n = sum(1 for f in out.glob("chunk-*.parquet")) if out.is_dir() else 0
    print(f"interrupted: {n} finished chunks kept in {out}; rerun the same command to resume",
          file=sys.stderr)
    return SystemExit(130)


# ----------------------------------------------------------------------------- train


def _print_scores(s: Surrogate) -> None:
    from rich.table import Table

    from loratwin.cli.common import console
    from loratwin.surrogate.model import CLASS_TARGET, REGRESSION_TARGETS, SERVED_FRACTION

    cv = s.meta.get("cv", {})
    table = Table(title=f"cross-validation ({s.meta.get('training', {}).get('folds', '?')} "
                        "folds; SMAPE % lower is better, F1 higher is better)")
    for col in ("target", "estimator", "transform", "score", "std", ""):
        table.add_column(col, justify="right" if col in ("score", "std") else "left")
    for t in (*REGRESSION_TARGETS, SERVED_FRACTION, CLASS_TARGET):
        block = cv.get(t, {})
        ch = block.get("chosen", {})
        for c in block.get("candidates", []):
            mark = "chosen" if (c["estimator"], c["transform"]) == (
                ch.get("estimator"), ch.get("transform")) else ""
            table.add_row(_SHORT.get(t, t), c["estimator"], c["transform"],
                          f"{c['mean']:.3f}", f"{c['std']:.3f}", mark)
    console.print(table)
    ho = s.meta.get("holdout", {})
    if ho.get("rows"):
        table = Table(title=f"hold-out: {ho['rows']} twin runs never used in training")
        table.add_column("target")
        table.add_column("figures")
        for t in (*REGRESSION_TARGETS, CLASS_TARGET):
            if t in ho:
                table.add_row(_SHORT[t], ", ".join(f"{k} {v:.3f}" for k, v in ho[t].items()))
        console.print(table)


@app.command("train")
def train_cmd(
    data: Path = typer.Argument(..., help="Data-set directory from `loratwin dataset`"),
    model: str | None = typer.Option(None, help="Profile (checked against the data set's)"),
    out: Path = typer.Option(..., "--out", "-o", help="Surrogate file to write (.npz)"),
    explain: bool = typer.Option(False, "--explain", help="Print the interpretable rules"),
    jobs: int = typer.Option(1, help="Parallel fits (-1: all cores)"),
    folds: int = typer.Option(5, help="Cross-validation folds"),
    holdout: float = typer.Option(0.2, help="Share of rows held out for the reported figures"),
    seed: int = typer.Option(0, help="Seed of the splits and estimators"),
    chunks: int | None = typer.Option(None, help="Train on the design's first N chunks only"),
) -> None:
    """Train the surrogate models (chosen by cross-validation) and save them."""
    from loratwin.cli.common import atomic_output, check_number, check_output_file, console
    from loratwin.surrogate.dataset import load_dataset
    from loratwin.surrogate.explain import format_rules
    from loratwin.surrogate.train import TrainConfig, train_surrogate

    if out.suffix != ".npz":
        raise DataError("the surrogate file must end in .npz", field="out")
    check_output_file(out, "--out", (".npz",))
    _check_counts(jobs=jobs, chunks=chunks)
    check_number(folds, "--folds", ge=2)
    check_number(holdout, "--holdout", ge=0, le=0.9)
    check_number(seed, "--seed", ge=0)
    ds = load_dataset(data, chunks)
    cfg = TrainConfig(folds=folds, holdout_fraction=holdout, seed=seed, jobs=jobs)
    from loratwin.cli.progress import progress_bar

    with progress_bar("training", None, "fits") as advance:
        res = train_surrogate(ds, cfg, model=model,
                              on_progress=lambda m: advance(0, description=f"training: {m}"),
                              on_fit=lambda done, total: advance(0, completed=done,
                                                                 total=total))
    s = res.surrogate
    with atomic_output(out) as tmp:
        s.save(tmp)
    d = s.meta["dataset"]
    console.print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): {s.profile}, "
                  f"{d['used']:,} of {d['rows']:,} rows used")
    _print_scores(s)
    if explain:
        console.print(format_rules(s), markup=False, highlight=False, soft_wrap=True)


# ----------------------------------------------------------------------------- predict


def _read_csv(path: Path) -> pd.DataFrame:
    """A CSV indexed by file line number (header = 1), blank lines skipped."""
    import numpy as np
    import pandas as pd

    if not path.is_file():
        raise DataError(f"file not found: {path}" if not path.exists()
                        else f"{path}: not a file")
    from loratwin.workload._csvio import check_fields

    check_fields(path)
    try:
        df = pd.read_csv(path, skip_blank_lines=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({str(exc).strip().splitlines()[-1]})"
                        ) from None
    df.columns = [str(c).strip() for c in df.columns]
    df.index = np.arange(len(df)) + 2
    df = df.loc[~df.isna().all(axis=1)]
    if df.empty:
        raise DataError(f"{path}: no rows")
    return df


@app.command("predict")
def predict_cmd(
    features: Path = typer.Argument(..., help="CSV with the feature columns, one row per GPU"),
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name or JSON path (its bundled "
                              "surrogate, else the universal one), or a .npz file"),
    json_out: Path | None = typer.Option(None, "--json", help="Write {'rows': [...]} as JSON"),
    max_rows: int = typer.Option(50, help="Rows shown in the terminal table"),
    surrogate: str | None = typer.Option(
        None, help="'universal', 'on-the-fly' (a per-profile surrogate of --model trained now "
        "on a quick design and cached) or 'auto' (on the fly when the universal one's "
        "held-out accuracy is insufficient); default: as --model says"),
) -> None:
    """Predict throughput, ITL, mean and p99 TTFT and starvation of GPU configurations."""
    from rich.table import Table

    from loratwin.cli.common import check_output_file, console, fmt, write_json

    check_output_file(json_out, "--json")
    if max_rows < 0:
        raise DataError(f"must be >= 0 (got {max_rows})", field="--max-rows")
    df = _read_csv(features)
    from loratwin.surrogate.on_the_fly import surrogate_kind

    s = _predict_surrogate(model, surrogate)
    pred = s.predict_frame(df, source=str(features))
    kind = str(s.meta.get("profile_kind", "measured"))
    which = surrogate_kind(s)
    universal = which == "universal"
    label = ("estimated (prior profile): " if kind == "prior"
             else "estimated (universal surrogate): " if universal else "")
    tag = f" ({which})" if which != "per-profile" else ""
    table = Table(title=f"{label}surrogate {s.profile}{tag}: {len(pred)} configurations "
                        "(throughput in tok/s, latencies in ms)")
    for col, just in (("row", "right"), ("throughput", "right"), ("ITL", "right"),
                      ("TTFT", "right"), ("p99 TTFT", "right"), ("starved", "left"),
                      ("p(starved)", "right"), ("in envelope", "left")):
        table.add_column(col, justify=just)
    for i, r in enumerate(pred.rows()[:max_rows]):
        table.add_row(str(i + 1), fmt(r["total_throughput_tok_s"]), fmt(r["mean_itl_ms"], 2),
                      fmt(r["mean_ttft_ms"]), fmt(r["p99_ttft_ms"]), fmt(r["starvation"]),
                      f"{r['starvation_probability']:.2f}",
                      "no" if r["out_of_envelope"] else "yes")
    console.print(table)
    if len(pred) > max_rows:
        console.print(f"... {len(pred) - max_rows} more rows (use --json)")
    n_out = int(pred.out_of_envelope.sum())
    if n_out:
        console.print(f"{n_out} row(s) outside the training envelope: predictions there are "
                      "extrapolations")
    if which != "per-profile":
        from loratwin.placement.predictor import SurrogatePredictor, predictor_note

        console.print(predictor_note(SurrogatePredictor(s)), markup=False, highlight=False)
    if json_out:
        write_json(json_out, {"profile_kind": kind, "surrogate": which, "rows": pred.rows()})
        console.print(f"wrote {json_out}")


def _predict_surrogate(model: str, surrogate: str | None) -> Any:
    """The surrogate ``predict`` uses: as ``--model`` says
    (:func:`~loratwin.surrogate.universal.surrogate_for`), or ``--surrogate`` for the
    profile ``--model`` names.

    Raises
    ------
    ConfigError
        ``--surrogate`` is not one of universal / on-the-fly / auto.
    """
    from loratwin.errors import ConfigError
    from loratwin.surrogate.model import Surrogate
    from loratwin.surrogate.on_the_fly import CHOICES, UNIVERSAL
    from loratwin.surrogate.universal import UniversalSurrogate, surrogate_for

    if surrogate is None:
        return surrogate_for(model)
    if surrogate not in CHOICES:
        raise ConfigError(f"must be one of {', '.join(CHOICES)} (got {surrogate!r}; give a "
                          ".npz file as --model)", field="surrogate")
    from loratwin.cli.place_cmd import on_the_fly_choice
    from loratwin.profile.store import load_profile

    profile = load_profile(model)
    choice = on_the_fly_choice(model, surrogate, 2048)
    if choice == UNIVERSAL:
        return UniversalSurrogate.load().bind(profile)
    return Surrogate.load(str(choice))


# ----------------------------------------------------------------------------- surrogate ...


@surrogate_app.command("rebuild")
def rebuild_cmd(
    model: str = typer.Option(..., help="Profile to rebuild the bundled surrogate of"),
    grid: Path | None = typer.Option(
        None, help="Design YAML (default: the built-in design, as examples/surrogate-grid.yaml)"
    ),
    data: Path | None = typer.Option(None, help="Data-set directory (default: "
                                                "surrogate-data/<model>)"),
    out: Path | None = typer.Option(None, "--out", "-o", help="Surrogate file (default: the "
                                                               "package's bundled one)"),
    jobs: int = typer.Option(-1, help="Worker processes for the twin runs and the fits"),
    ray_address: str | None = typer.Option(None, help="Run the twin on a Ray cluster"),
    chunks: int | None = typer.Option(None, help="Only the design's first N chunks (the "
                                                 "bundled surrogates: see the package docs)"),
) -> None:
    """Generate (or resume) the data set and retrain a bundled surrogate in one go."""
    from loratwin.cli.common import check_output_dir, check_output_file
    from loratwin.profile.store import load_profile
    from loratwin.surrogate.design import DesignSpec, load_design_spec
    from loratwin.surrogate.model import bundled_path

    load_profile(model)
    _check_counts(jobs=jobs, chunks=chunks)
    check_output_file(out, "--out", (".npz",))
    check_output_dir(data, "--data")
    spec = load_design_spec(grid) if grid else DesignSpec()
    spec = spec.model_copy(update={"model": model})
    data_dir = data or Path("surrogate-data") / model
    run = _run_dataset(spec, data_dir, jobs, ray_address, None, chunks)
    if run.remaining_chunks:
        raise DataError("the data set is incomplete")
    target = out or bundled_path(model)
    train_cmd(data_dir, model=model, out=target, explain=False, jobs=jobs, folds=5,
              holdout=0.2, seed=0, chunks=chunks)


@surrogate_app.command("evaluate")
def evaluate_cmd(
    data: Path = typer.Argument(..., help="Data-set directory of held-out twin runs"),
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name or .npz file"),
    json_out: Path | None = typer.Option(None, "--json", help="Write the scores as JSON"),
) -> None:
    """Score a surrogate against twin runs it was not trained on (SMAPE, F1)."""
    from rich.table import Table

    from loratwin.cli.common import check_output_file, console, write_json
    from loratwin.surrogate.dataset import load_dataset
    from loratwin.surrogate.model import CLASS_TARGET, REGRESSION_TARGETS, Surrogate
    from loratwin.surrogate.train import evaluate_surrogate

    check_output_file(json_out, "--json")
    s = Surrogate.load(model)
    ds = load_dataset(data)
    if ds.profile and s.profile and ds.profile != s.profile:
        raise DataError(f"the data set was made with {ds.profile!r}, the surrogate is for "
                        f"{s.profile!r}")
    sc = evaluate_surrogate(s, ds)
    table = Table(title=f"surrogate {s.profile} vs {sc['rows']} twin runs of {data} "
                        f"({sc['out_of_envelope']} outside the envelope)")
    table.add_column("target")
    table.add_column("figures")
    for t in (*REGRESSION_TARGETS, CLASS_TARGET):
        if t in sc:
            table.add_row(_SHORT[t], ", ".join(f"{k} {v:.3f}" for k, v in sc[t].items()))
    console.print(table)
    if json_out:
        write_json(json_out, sc)
        console.print(f"wrote {json_out}")


@surrogate_app.command("evaluate-real")
def evaluate_real_cmd(
    runs: Path = typer.Argument(..., help="Real serving runs CSV (real_runs/<model>.csv)"),
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name"),
    surrogate: str | None = typer.Option(None, help="Surrogate .npz (default: bundled)"),
    json_out: Path | None = typer.Option(None, "--json", help="Write rows + scores as JSON"),
) -> None:
    """Score a surrogate against real serving runs (throughput SMAPE, starvation accuracy)."""
    from rich.table import Table

    from loratwin.cli.common import check_output_file, console, write_json
    from loratwin.profile.store import load_profile
    from loratwin.surrogate.model import Surrogate
    from loratwin.surrogate.real import predict_real_runs, score_real_runs
    from loratwin.twin.validate import read_real_runs

    check_output_file(json_out, "--json")
    profile = load_profile(model)
    s = Surrogate.load(surrogate or profile.name)
    df = read_real_runs(runs)
    pred = predict_real_runs(s, df, profile)
    sc = score_real_runs(pred)
    table = Table(title=f"surrogate {s.profile} vs {sc['runs']} real runs of {runs.name} "
                        f"({sc['out_of_envelope']} outside the envelope)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in sc.items():
        table.add_row(k, f"{v:.3f}" if isinstance(v, float) else str(v))
    console.print(table)
    if json_out:
        write_json(json_out, {"summary": sc, "runs": pred.to_dict(orient="records")})
        console.print(f"wrote {json_out}")


@surrogate_app.command("show")
def show_cmd(
    model: str = typer.Option(DEFAULT_MODEL, help="Profile name or .npz file"),
    explain: bool = typer.Option(False, "--explain", help="Print the interpretable rules"),
) -> None:
    """Show a surrogate's provenance, envelope and scores."""
    from rich.table import Table

    from loratwin.cli.common import console, fmt
    from loratwin.surrogate.explain import format_rules
    from loratwin.surrogate.model import (
        CLASS_TARGET,
        REGRESSION_TARGETS,
        SERVED_FRACTION,
        Surrogate,
    )

    universal = _universal_or_none(model)
    if universal is not None:
        if explain:
            raise DataError("the universal surrogate has no interpretable rules",
                            field="explain")
        console.print(universal_table(universal))
        from loratwin.cli.universal_cmd import loo_table

        console.print(loo_table(universal.meta.get("leave_one_out", {})))
        return
    s = Surrogate.load(model)
    m = s.meta
    table = Table(title=f"surrogate {s.profile}")
    table.add_column("field")
    table.add_column("value")
    table.add_row("profile sha256", str(m.get("profile_sha256", ""))[:16])
    table.add_row("data set", ", ".join(f"{k} {fmt(v, 3)}" for k, v in
                                        m.get("dataset", {}).items() if k != "design"))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    for t in (*REGRESSION_TARGETS, SERVED_FRACTION, CLASS_TARGET):
        if t not in s.models:
            continue
        info = m.get("models", {}).get(t, {})
        mm = s.models[t]
        table.add_row(_SHORT.get(t, t), f"{info.get('estimator')} ({info.get('sklearn_class')}), "
                      f"{mm.ensemble.n_trees} trees, {mm.ensemble.n_nodes:,} nodes, "
                      f"transform {mm.transform}")
    if m.get("starvation_blend"):
        b = m["starvation_blend"]
        table.add_row("starvation probability",
                      f"{b['weight']:g} x classifier + {1 - b['weight']:g} x "
                      f"expit(({b['threshold']:g} - served fraction) / {b['scale']:g})")
    for f, lo, hi in zip(m["features"], s.envelope_min, s.envelope_max, strict=True):
        table.add_row(f"envelope {f}", f"{lo:.4g} ... {hi:.4g}")
    console.print(table)
    _print_scores(s)
    if explain:
        console.print(format_rules(s), markup=False, highlight=False, soft_wrap=True)


def _universal_or_none(model: str) -> Any:
    """The universal surrogate when ``model`` names it (``universal``) or is a ``.npz`` of
    one; ``None`` otherwise (a per-profile surrogate, or not a surrogate at all)."""
    import json
    import zipfile

    import numpy as np

    from loratwin.surrogate.universal import FORMAT, UNIVERSAL_NAME, UniversalSurrogate

    if model == UNIVERSAL_NAME:
        return UniversalSurrogate.load()
    path = Path(model)
    if path.suffix != ".npz" or not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            fmt = json.loads(npz["meta_json"].tobytes().decode()).get("format")
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError):
        return None  # Surrogate.load reports what is wrong with it
    return UniversalSurrogate.load(path) if fmt == FORMAT else None


def universal_table(u: Any) -> Any:
    """Provenance, models and input envelope of a universal surrogate, as a table."""
    from rich.table import Table

    from loratwin.surrogate.universal import UNIVERSAL_INPUTS

    m = u.meta
    table = Table(title="universal surrogate (profile-normalised)")
    table.add_column("field")
    table.add_column("value")
    table.add_row("benchmark window", f"{u.window_s:,.0f} s")
    for p in m.get("profiles", []):
        table.add_row(f"trained on {p['name']}", f"{p.get('rows', '?')} twin runs, "
                      f"{p.get('profile_kind', '') or 'profile'}, sha256 "
                      f"{str(p.get('profile_sha256', ''))[:16]}")
    table.add_row("estimators", ", ".join(f"{k} {v.get('estimator')}" for k, v in
                                          m.get("estimators", {}).items()))
    table.add_row("versions", ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items()))
    for t, e in u.models.items():
        table.add_row(_SHORT.get(t, t), f"{e.n_trees} trees, {e.n_nodes:,} nodes")
    for f, lo, hi in zip(UNIVERSAL_INPUTS, u.envelope_min, u.envelope_max, strict=True):
        table.add_row(f"envelope {f}", f"{lo:.4g} ... {hi:.4g}")
    return table
