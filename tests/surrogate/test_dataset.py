"""Data-set generation: chunks on disk, resumption without recomputation, parallel runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from loratwin.errors import ConfigError
from loratwin.profile.store import load_profile
from loratwin.surrogate.dataset import generate_dataset, load_dataset
from loratwin.surrogate.design import DesignSpec, GridSpec, QmcSpec, build_design

TINY = DesignSpec(duration_s=30, chunk_size=3, grid=GridSpec(points=8),
                  qmc=QmcSpec(points=4, served=(8, 40), extreme_load=(0.01, 2.0)))


def _ids(out: Path) -> list[str]:
    return sorted(pd.concat([pd.read_parquet(f, columns=["point_id"])
                             for f in out.glob("chunk-*.parquet")])["point_id"])


def test_resume_after_interruption_recomputes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    first = generate_dataset(TINY, out, max_chunks=2)
    assert first.computed_points == 6 and first.remaining_chunks == 2
    done = {f.name: f.stat().st_mtime_ns for f in out.glob("chunk-*.parquet")}
    assert len(done) == 2
    (out / ".chunk-00003.parquet.999.tmp").write_text("half-written")  # a killed write
    seen: list[int] = []
    second = generate_dataset(TINY, out, on_chunk=lambda c: seen.append(c.chunk))
    assert second.skipped_points == 6
    assert second.computed_points == second.total_points - 6 == 6
    assert sorted(seen) == [2, 3]  # only the missing chunks ran
    for name, mtime in done.items():
        assert (out / name).stat().st_mtime_ns == mtime  # finished chunks untouched
    design = build_design(TINY, load_profile(TINY.model))
    assert _ids(out) == sorted(p.point_id for p in design)  # complete, no duplicates
    assert not list(out.glob(".*.tmp"))
    third = generate_dataset(TINY, out)
    assert third.computed_points == 0 and third.skipped_points == 12
    ds = load_dataset(out)
    assert ds.profile == TINY.model and len(ds.rows) == 12
    assert (ds.rows["error"] == "").all() and not ds.rows["memory_error"].any()
    assert len(ds.usable()) == 12
    assert set(ds.rows["origin"]) == {"grid", "qmc"}
    # every metric the twin reports is in the rows, not only the targets
    from dataclasses import fields

    from loratwin.twin.metrics import SimMetrics

    assert {f.name for f in fields(SimMetrics)} <= set(ds.rows.columns)
    assert ds.regression_targets == ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms",
                                     "p99_ttft_ms")
    assert (ds.rows["p99_ttft_ms"] >= ds.rows["mean_ttft_ms"] * 0.999).all()


def test_other_design_in_same_directory_is_refused(tmp_path: Path) -> None:
    generate_dataset(TINY, tmp_path, max_chunks=1)
    with pytest.raises(ConfigError, match="another design"):
        generate_dataset(TINY.model_copy(update={"seed": 5}), tmp_path, max_chunks=1)
    with pytest.raises(ConfigError, match="jobs"):
        generate_dataset(TINY, tmp_path, jobs=0)


def test_joblib_workers_give_the_same_rows(tmp_path: Path) -> None:
    spec = TINY.model_copy(update={"grid": GridSpec(points=4), "qmc": QmcSpec(points=0)})
    generate_dataset(spec, tmp_path / "a", jobs=1)
    generate_dataset(spec, tmp_path / "b", jobs=2)
    cols = ["point_id", "total_throughput_tok_s", "mean_ttft_ms", "starvation"]
    a = load_dataset(tmp_path / "a").rows[cols]
    b = load_dataset(tmp_path / "b").rows[cols]
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray is not installed")
def test_ray_local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    spec = TINY.model_copy(update={"grid": GridSpec(points=4), "qmc": QmcSpec(points=0)})
    run = generate_dataset(spec, tmp_path, jobs=1, ray_address="local")
    assert run.computed_points == 4
    assert len(load_dataset(tmp_path).rows) == 4


def test_first_chunks_is_a_reproducible_share_of_the_design(tmp_path: Path) -> None:
    run = generate_dataset(TINY, tmp_path, first_chunks=2)
    assert run.total_chunks == 2 and run.computed_points == 6 and run.remaining_chunks == 0
    design = build_design(TINY, load_profile(TINY.model))
    assert _ids(tmp_path) == sorted(p.point_id for p in design if p.chunk < 2)
    generate_dataset(TINY, tmp_path)  # the rest of the design
    assert len(load_dataset(tmp_path).rows) == 12
    first = sorted(load_dataset(tmp_path, first_chunks=2).rows["point_id"])
    assert first == sorted(p.point_id for p in design if p.chunk < 2)
    with pytest.raises(ConfigError, match="chunks"):
        load_dataset(tmp_path, first_chunks=0)
