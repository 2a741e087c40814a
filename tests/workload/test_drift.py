"""Workload drift: the difference of two adapter lists, simulated daily drift, the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import ConfigError
from loratwin.workload.adapters import save_adapters_csv
from loratwin.workload.drift import DriftSpec, drift_day, workload_drift
from loratwin.workload.types import Adapter
from tests.cli_run import run_cli


def _ads(n: int) -> list[Adapter]:
    return [Adapter(f"a{i:03d}", (8, 16)[i % 2], 0.1 + 0.01 * i, 500.0, 100.0)
            for i in range(n)]


def test_workload_drift_counts_every_kind_of_change() -> None:
    old = _ads(10)
    new = [dataclasses.replace(old[0], rate=old[0].rate * 2),      # re-rated
           dataclasses.replace(old[1], rank=32),                   # re-ranked
           dataclasses.replace(old[2], mean_input_tokens=900.0),   # new lengths
           dataclasses.replace(old[3], rate=old[3].rate * 1.001),  # within the tolerance
           *old[4:8], Adapter("b", 8, 1.0)]                        # a8, a9 removed
    d = workload_drift(old, new)
    assert [a.id for a in d.added] == ["b"]
    assert [a.id for a in d.removed] == ["a008", "a009"]
    assert [a.id for a, _ in d.rerated] == ["a000"]
    assert [a.id for a, _ in d.reranked] == ["a001"]
    assert [a.id for a, _ in d.relengthened] == ["a002"]
    assert d.unchanged == 5
    assert (d.old_count, d.new_count) == (10, 9)
    assert d.new_rate_req_s == pytest.approx(sum(a.rate for a in new))
    assert d.old_offered_tok_s == pytest.approx(sum(a.rate * 600 for a in old))
    assert d.rate_factors() == pytest.approx([2.0])
    with pytest.raises(ConfigError, match="duplicate"):
        workload_drift([*old, old[0]], new)


def test_drift_day_is_seeded_and_keeps_the_fractions() -> None:
    ads = _ads(400)
    spec = DriftSpec(add_fraction=0.05, remove_fraction=0.05, sigma=0.2)
    a = drift_day(ads, spec, np.random.default_rng(1), 3)
    b = drift_day(ads, spec, np.random.default_rng(1), 3)
    assert a == b
    d = workload_drift(ads, a)
    assert len(d.added) == len(d.removed) == 20
    assert all(x.id.startswith("new-003-") for x in d.added)
    old_rates = {x.rate for x in ads}
    assert all(x.rate in old_rates for x in d.added)  # copies of drawn adapters
    f = np.log(d.rate_factors())
    assert f.std() == pytest.approx(0.2, rel=0.15)
    assert np.exp(f).mean() == pytest.approx(1.0, abs=0.03)  # mean-one factors
    with pytest.raises(ConfigError, match="sigma"):
        DriftSpec(sigma=-1)
    with pytest.raises(ConfigError, match="add_fraction"):
        DriftSpec(add_fraction=1.5)


def test_workload_drift_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = _ads(20)
    new = drift_day(old, DriftSpec(), np.random.default_rng(0), 1)
    po = save_adapters_csv(old, tmp_path / "old.csv")
    pn = save_adapters_csv(new, tmp_path / "new.csv")
    out = tmp_path / "drift.json"
    assert run_cli(["workload", "drift", str(po), str(pn), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "added / removed" in text and "1 / 1" in text
    doc = json.loads(out.read_text())
    assert len(doc["added"]) == len(doc["removed"]) == 1
    assert run_cli(["workload", "drift", str(po), str(tmp_path / "nope.csv")]) == 2
    assert "error:" in capsys.readouterr().err


def test_help_constant_matches_the_library() -> None:
    from loratwin.cli import replan_cmd
    from loratwin.workload import drift

    assert replan_cmd.RATE_TOLERANCE == drift.RATE_TOLERANCE
