"""The sampling design: deterministic, covers the papers' grid, fits in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import ConfigError, DataError
from loratwin.profile.model import max_loras_that_fit
from loratwin.profile.store import load_profile
from loratwin.surrogate.design import (
    PAPER_RANKS,
    PAPER_RATES,
    PAPER_SIZES,
    DesignSpec,
    GridSpec,
    QmcSpec,
    build_design,
    capacity_tok_s,
    load_design_spec,
    parse_design_spec,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def profile():
    return load_profile("llama-3.1-8b-instruct")


SMALL = DesignSpec(duration_s=60, grid=GridSpec(points=80), qmc=QmcSpec(points=64))


def test_design_is_deterministic(profile) -> None:
    a = build_design(SMALL, profile)
    b = build_design(SMALL, profile)
    assert a == b
    other = build_design(SMALL.model_copy(update={"seed": 1}), profile)
    assert [p.point for p in other] != [p.point for p in a]
    ids = [p.point_id for p in a]
    assert len(set(ids)) == len(ids) == 144
    assert {p.point.seed for p in a} != {0}


def test_grid_covers_every_paper_value_and_fits_in_memory(profile) -> None:
    pts = [p.point for p in build_design(SMALL, profile) if p.point.origin == "grid"]
    limit = max_loras_that_fit(profile, min(PAPER_RANKS))
    assert {p.served_adapters for p in pts} == set(PAPER_SIZES)
    loras = {p.max_loras for p in pts}
    assert {v for v in PAPER_SIZES if v <= limit} <= loras
    assert max(loras) <= limit
    assert set(PAPER_RATES) <= {r for p in pts for r in p.rates}
    assert set(PAPER_RANKS) == {r for p in pts for r in p.ranks}
    for p in pts:
        assert p.max_loras <= min(p.served_adapters, max_loras_that_fit(profile, max(p.ranks)))
        assert p.rates[:3] == tuple(sorted(p.rates[:3], reverse=True))
        assert all(p.rates[i] == p.rates[i % 3] for i in range(p.served_adapters))
        assert p.mean_input_tokens == profile.sharegpt_mean_input_tokens
        assert p.arrival_cv == 1.0 and p.duration_s == 60


def test_qmc_points_stay_in_their_ranges(profile) -> None:
    q = SMALL.qmc
    pts = [p.point for p in build_design(SMALL, profile) if p.point.origin == "qmc"]
    assert len(pts) == q.points
    for p in pts:
        assert q.served[0] <= p.served_adapters <= q.served[1]
        assert 1 <= p.max_loras <= min(p.served_adapters,
                                       max_loras_that_fit(profile, max(p.ranks)))
        assert q.input_tokens[0] <= p.mean_input_tokens <= q.input_tokens[1]
        assert q.output_tokens[0] <= p.mean_output_tokens <= q.output_tokens[1]
        assert p.arrival_cv in q.arrival_cv
        assert set(p.ranks) <= set(q.ranks)
    # the load concentrates in the band but also covers the extremes
    rho = np.array([
        sum(p.rates) * (p.mean_input_tokens + p.mean_output_tokens)
        / capacity_tok_s(profile, p.max_loras, max(p.ranks), p.mean_input_tokens,
                         p.mean_output_tokens) for p in pts])
    inside = (rho >= 0.2 * 0.999) & (rho <= 3.0 * 1.001)
    assert 0.6 < inside.mean() < 0.95
    assert rho.min() < 0.2 and rho.max() > 3.0
    assert len({p.arrival_cv for p in pts}) == 4


def test_example_yaml_is_the_default_design() -> None:
    assert load_design_spec(ROOT / "examples" / "surrogate-grid.yaml") == DesignSpec()


def test_spec_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^grid\.pointz"):
        parse_design_spec({"grid": {"pointz": 3}})
    with pytest.raises(ConfigError, match=r"qmc\.input_tokens"):
        parse_design_spec({"qmc": {"input_tokens": [100, 50]}})
    with pytest.raises(DataError, match="not found"):
        load_design_spec(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("grid: [1, 2\n")
    with pytest.raises(DataError, match="invalid YAML"):
        load_design_spec(bad)


def test_capacity_estimate_is_plausible(profile) -> None:
    # a saturated twin run (256 adapters, 32 slots, rank 16) reaches ~12k tok/s
    cap = capacity_tok_s(profile, 32, 16, profile.sharegpt_mean_input_tokens,
                         profile.sharegpt_mean_output_tokens)
    assert 8_000 < cap < 25_000
    assert capacity_tok_s(profile, 128, 16, 224, 194) < cap  # more slots, slower steps


def test_latin_hypercube_alternative(profile) -> None:
    spec = DesignSpec(grid=GridSpec(points=0), qmc=QmcSpec(points=20, method="lhs"))
    a = build_design(spec, profile)
    assert a == build_design(spec, profile)
    assert len(a) == 20 and {p.point.origin for p in a} == {"qmc"}
    assert [p.chunk for p in a] == [i // 16 for i in range(20)]
