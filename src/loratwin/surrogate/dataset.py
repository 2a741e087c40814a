"""Data-set generation: the twin over a sampling design, in resumable Parquet chunks.

``generate_dataset(spec, out_dir)`` builds the design (:mod:`.design`), writes
``design.json`` (spec, fingerprint, summary) and runs every chunk of ``chunk_size`` points
that is not on disk yet, on local cores (joblib, ``jobs`` processes) or on a Ray cluster
(``ray_address``). Each finished chunk is written at once as ``chunk-00042.parquet``
(to a temporary name, then renamed, so a chunk file is always complete). Rerunning the same
command skips the chunks (and so the point ids) already on disk: an interrupted run
(Ctrl-C, kill, lost node) resumes without recomputing or losing finished points. A
directory holding another design (different spec or profile) is refused.

A point whose twin run raises is kept as a row with the message in ``error`` and NaN
targets (so one bad point does not stop a long run); training skips such rows.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loratwin.errors import ConfigError, DataError
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate.design import (
    DesignPoint,
    DesignSpec,
    build_design,
    design_json,
    spec_fingerprint,
)
from loratwin.surrogate.features import FEATURES
from loratwin.surrogate.point import evaluate_point
from loratwin.surrogate.targets import REGRESSION_TARGETS, REQUIRED_TARGETS

CHUNK_RE = re.compile(r"^chunk-(\d{5,})\.parquet$")
DESIGN_FILE = "design.json"


def chunk_path(out_dir: Path, chunk: int) -> Path:
    """Path of chunk number ``chunk`` (``chunk-00042.parquet``)."""
    return out_dir / f"chunk-{chunk:05d}.parquet"


@dataclass(frozen=True)
class ChunkDone:
    """Progress report after one chunk is on disk (passed to the ``on_chunk`` callback)."""

    chunk: int
    points: int
    errors: int
    wall_s: float


@dataclass(frozen=True)
class DatasetRun:
    """Summary of a :func:`generate_dataset` call.

    Attributes
    ----------
    out_dir:
        The data-set directory.
    total_points, total_chunks:
        Size of the design.
    skipped_points:
        Points already on disk before this call (not recomputed).
    computed_points:
        Points evaluated by this call.
    error_points:
        Points of this call whose twin run raised (rows with ``error`` set).
    remaining_chunks:
        Chunks still missing (``max_chunks`` reached); 0 when the data set is complete.
    wall_s:
        Wall time of the call, s.
    """

    out_dir: Path
    total_points: int
    total_chunks: int
    skipped_points: int
    computed_points: int
    error_points: int
    remaining_chunks: int
    wall_s: float


def evaluate_chunk(profile: Profile, points: Sequence[DesignPoint]) -> pd.DataFrame:
    """Run the twin on the points of one chunk; one row per point (see :func:`evaluate_point`).

    Adds ``point_id`` and ``chunk``; a point whose run raises gets ``error`` (the message)
    and NaN targets.
    """
    rows: list[dict[str, Any]] = []
    for dp in points:
        t0 = time.perf_counter()
        try:
            row = evaluate_point(profile, dp.point)
            row["error"] = ""
        except Exception as exc:  # keep the run going; the row records what failed
            msg = str(exc).splitlines()[0] if str(exc) else ""
            row = {f: float("nan") for f in FEATURES}
            row.update({t: float("nan") for t in REGRESSION_TARGETS})
            row.update(starvation=False, memory_error=False, origin=dp.point.origin,
                       point=dp.point.to_json(),
                       error=f"{type(exc).__name__}: {msg}",
                       wall_s=time.perf_counter() - t0)
        row["point_id"] = dp.point_id
        row["chunk"] = dp.chunk
        rows.append(row)
    return pd.DataFrame(rows)


def _write_chunk(out_dir: Path, chunk: int, df: pd.DataFrame) -> None:
    path = chunk_path(out_dir, chunk)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def _done_chunks(out_dir: Path, design: list[DesignPoint]) -> dict[int, int]:
    """Chunks on disk whose point ids are exactly the design's: {chunk: points}."""
    expected: dict[int, set[str]] = {}
    for dp in design:
        expected.setdefault(dp.chunk, set()).add(dp.point_id)
    done: dict[int, int] = {}
    for f in out_dir.iterdir():
        m = CHUNK_RE.match(f.name)
        if not m:
            continue
        chunk = int(m.group(1))
        try:
            ids = set(pd.read_parquet(f, columns=["point_id"])["point_id"])
        except Exception:  # a damaged file (e.g. disk full): recompute the chunk
            f.unlink()
            continue
        if ids != expected.get(chunk):
            raise DataError(f"{f}: holds points of another design; use another --out directory")
        done[chunk] = len(ids)
    return done


def _check_design_file(out_dir: Path, spec: DesignSpec, profile: Profile, text: str) -> None:
    path = out_dir / DESIGN_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text()).get("fingerprint")
        except (json.JSONDecodeError, AttributeError):
            raise DataError(f"{path}: not a loratwin design file") from None
        if old != spec_fingerprint(spec, profile):
            raise ConfigError(
                f"{out_dir} holds a data set of another design (spec or profile changed); "
                "use another --out directory", field="out"
            )
    else:
        path.write_text(text + "\n")


def _run_local(
    profile: Profile, todo: list[list[DesignPoint]], jobs: int
) -> Iterator[pd.DataFrame]:
    if jobs == 1 or len(todo) <= 1:
        for chunk in todo:
            yield evaluate_chunk(profile, chunk)
        return
    from joblib import Parallel, delayed

    par = Parallel(n_jobs=jobs, return_as="generator_unordered", batch_size=1)
    yield from par(delayed(evaluate_chunk)(profile, chunk) for chunk in todo)


def _run_ray(
    profile: Profile, todo: list[list[DesignPoint]], address: str, jobs: int
) -> Iterator[pd.DataFrame]:
    from loratwin.raysession import ray_session

    with ray_session(address, jobs) as (ray, pending):
        task = ray.remote(evaluate_chunk)
        prof = ray.put(profile)
        pending[:] = [task.remote(prof, chunk) for chunk in todo]
        while pending:
            ready, rest = ray.wait(pending, num_returns=1)
            pending[:] = rest
            yield ray.get(ready[0])


def generate_dataset(
    spec: DesignSpec,
    out_dir: Path,
    *,
    jobs: int = 1,
    ray_address: str | None = None,
    max_chunks: int | None = None,
    first_chunks: int | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_chunk: Callable[[ChunkDone], None] | None = None,
    profile: Profile | None = None,
) -> DatasetRun:
    """Run the twin over the design and write (or complete) the data set in ``out_dir``.

    Parameters
    ----------
    spec:
        The sampling design.
    out_dir:
        Data-set directory (created if needed); holds ``design.json`` and the chunks.
    jobs:
        Local worker processes (joblib; -1 = all cores); with Ray, the CPUs of a local
        Ray instance (``ray_address="local"``).
    ray_address:
        Address of a Ray cluster (``ray://host:10001``, ``auto``) or ``local`` to start
        one on this machine; ``None`` runs locally with joblib. loratwin must be installed
        on the cluster's workers.
    max_chunks:
        Stop after this many new chunks (smoke runs; the rest is done by a later call).
    first_chunks:
        Only the design's chunks 0 .. first_chunks - 1 (a reproducible share of the
        shuffled design; ``None``: all).
    on_start:
        Called once with (points to compute, chunks to compute).
    on_chunk:
        Called after each chunk is on disk.
    profile:
        The profile to run, named ``spec.model`` (default: ``load_profile(spec.model)``); for
        profiles that exist only in memory, such as the priors the universal surrogate is
        trained on.

    Returns
    -------
    DatasetRun
        What was skipped, computed and what remains.

    Raises
    ------
    ConfigError
        ``out_dir`` holds another design; ``jobs`` is 0; Ray asked for but not installed.
    DataError
        Unknown profile; a chunk of another design in ``out_dir``; ``profile`` not named
        ``spec.model``.
    KeyboardInterrupt
        Ctrl-C: the chunks written so far stay on disk; rerun to resume.
    """
    t0 = time.perf_counter()
    if jobs == 0 or jobs < -1:
        raise ConfigError("must be >= 1 or -1 (all cores)", field="jobs")
    if max_chunks is not None and max_chunks < 0:
        raise ConfigError("must be >= 0", field="max-chunks")
    if first_chunks is not None and first_chunks < 1:
        raise ConfigError("must be >= 1", field="chunks")
    if profile is None:
        profile = load_profile(spec.model)
    elif profile.name != spec.model:
        raise ConfigError(f"profile {profile.name!r} is not the design's {spec.model!r}",
                          field="model")
    design = build_design(spec, profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    if out_dir.is_file():
        raise DataError(f"{out_dir} is a file, not a directory")
    _check_design_file(out_dir, spec, profile, design_json(spec, profile, design))
    for stale in out_dir.glob(".chunk-*.tmp"):
        stale.unlink()
    done = _done_chunks(out_dir, design)
    by_chunk: dict[int, list[DesignPoint]] = {}
    for dp in design:
        if first_chunks is None or dp.chunk < first_chunks:
            by_chunk.setdefault(dp.chunk, []).append(dp)
    todo = [pts for c, pts in sorted(by_chunk.items()) if c not in done]
    remaining_after = 0
    if max_chunks is not None and len(todo) > max_chunks:
        remaining_after = len(todo) - max_chunks
        todo = todo[:max_chunks]
    if on_start is not None:
        on_start(sum(len(c) for c in todo), len(todo))
    computed = errors = 0
    stream = (_run_ray(profile, todo, ray_address, jobs) if ray_address
              else _run_local(profile, todo, jobs))
    for df in stream:
        chunk = int(df["chunk"].iloc[0])
        _write_chunk(out_dir, chunk, df)
        n_err = int((df["error"] != "").sum())
        computed += len(df)
        errors += n_err
        if on_chunk is not None:
            on_chunk(ChunkDone(chunk, len(df), n_err, float(df["wall_s"].sum())))
    return DatasetRun(
        out_dir=out_dir, total_points=len(design), total_chunks=len(by_chunk),
        skipped_points=sum(done.values()), computed_points=computed, error_points=errors,
        remaining_chunks=remaining_after, wall_s=time.perf_counter() - t0,
    )


@dataclass(frozen=True)
class Dataset:
    """A data set read from disk.

    Attributes
    ----------
    rows:
        Every row of every chunk (features, targets, diagnostics), sorted by ``point_id``.
    profile:
        Name of the profile the twin ran with.
    profile_sha256:
        Hash of that profile's JSON.
    spec:
        The design spec (as a dict), ``{}`` if ``design.json`` is missing.
    """

    rows: pd.DataFrame
    profile: str
    profile_sha256: str
    spec: dict[str, Any]

    @property
    def regression_targets(self) -> tuple[str, ...]:
        """The regression targets the rows record (data sets made before a target existed
        lack its column)."""
        return tuple(t for t in REGRESSION_TARGETS if t in self.rows.columns)

    def usable(self) -> pd.DataFrame:
        """Rows fit for training: no memory error, no failed run, finite features and targets."""
        df = self.rows
        ok = ~df["memory_error"].astype(bool)
        if "error" in df.columns:
            ok &= df["error"].fillna("") == ""
        cols = [*FEATURES, *self.regression_targets]
        ok &= np.isfinite(df[cols].to_numpy(float)).all(axis=1)
        return df.loc[ok].reset_index(drop=True)


def load_dataset(data_dir: Path, first_chunks: int | None = None) -> Dataset:
    """Read the chunks of a data-set directory (all, or those numbered below ``first_chunks``).

    Raises
    ------
    DataError
        Missing directory, no chunk, or chunks without the feature/target columns.
    ConfigError
        ``first_chunks`` below 1.
    """
    if first_chunks is not None and first_chunks < 1:
        raise ConfigError("must be >= 1", field="chunks")
    if not data_dir.is_dir():
        raise DataError(f"data-set directory not found: {data_dir}")
    numbered = ((f, CHUNK_RE.match(f.name)) for f in sorted(data_dir.iterdir()))
    files = [f for f, m in numbered
             if m and (first_chunks is None or int(m.group(1)) < first_chunks)]
    if not files:
        raise DataError(f"{data_dir}: no chunk-*.parquet files (run `loratwin dataset` first)")
    try:
        df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    except Exception as exc:
        raise DataError(f"{data_dir}: cannot read chunks ({type(exc).__name__})") from None
    missing = [c for c in (*FEATURES, *REQUIRED_TARGETS, "memory_error") if c not in df.columns]
    if missing:
        raise DataError(f"{data_dir}: chunks lack column {missing[0]!r}")
    df = df.sort_values("point_id", kind="stable").reset_index(drop=True)
    meta: dict[str, Any] = {}
    path = data_dir / DESIGN_FILE
    if path.is_file():
        try:
            meta = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise DataError(f"{path}: invalid JSON") from None
    return Dataset(
        rows=df, profile=str(meta.get("profile", "")),
        profile_sha256=str(meta.get("profile_sha256", "")), spec=dict(meta.get("spec", {})),
    )
