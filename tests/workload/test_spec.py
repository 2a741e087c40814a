"""Config models, request generation and trace replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError

from loratwin.errors import ConfigError, DataError
from loratwin.workload.lengths import BoundedHeavyTailed, EmpiricalLengths, FixedLengths
from loratwin.workload.spec import (
    ArrivalSpec,
    LengthSpec,
    build_lengths,
    generate_requests,
    requests_from_trace,
)
from loratwin.workload.trace import load_azure_trace, load_trace_csv
from loratwin.workload.types import Adapter, Requests

ADAPTERS = [Adapter("a", 8, 2.0), Adapter("b", 16, 0.5), Adapter("c", 8, 0.0)]
HEAVY = LengthSpec(kind="heavy-tailed", mean_input=224, mean_output=194, std_input=245,
                   std_output=206)


def same(x: Requests, y: Requests) -> bool:
    return all(np.array_equal(getattr(x, f), getattr(y, f))
               for f in ("arrival_s", "adapter", "input_tokens", "output_tokens"))


def test_arrival_spec() -> None:
    assert ArrivalSpec() == ArrivalSpec(process="poisson", cv=1.0)
    assert ArrivalSpec(process="gamma", cv=3.0).cv == 3.0
    with pytest.raises(ValidationError, match="needs process 'gamma'"):
        ArrivalSpec(cv=2.0)
    with pytest.raises(ValidationError, match="greater than 0"):
        ArrivalSpec(process="gamma", cv=0)
    with pytest.raises(ValidationError, match="Extra inputs"):
        ArrivalSpec.model_validate({"proces": "gamma"})


def test_length_spec_from_yaml_and_kind_rules() -> None:
    spec = LengthSpec.model_validate(yaml.safe_load(
        "{kind: heavy-tailed, mean_input: 224, mean_output: 194, max_total: 4096}"))
    dist = build_lengths(spec)
    assert isinstance(dist, BoundedHeavyTailed) and dist.max_total == 4096
    assert build_lengths(LengthSpec(kind="fixed", input_tokens=5, output_tokens=6)) \
        == FixedLengths(5, 6)
    with pytest.raises(ValidationError, match="kind 'fixed' needs input_tokens"):
        LengthSpec(kind="fixed", output_tokens=6)
    with pytest.raises(ValidationError, match="mean_input does not apply to kind 'fixed'"):
        LengthSpec(kind="fixed", input_tokens=5, output_tokens=6, mean_input=3)
    with pytest.raises(ValidationError, match="max_input applies to kind 'empirical' only"):
        LengthSpec(kind="empirical", csv="x.csv", max_input=10)
    with pytest.raises(ValidationError, match="kind 'trace' needs trace"):
        LengthSpec(kind="trace")
    with pytest.raises(ValidationError):
        LengthSpec(kind="normal")


def test_build_empirical_and_trace_lengths(tmp_path: Path) -> None:
    pool = build_lengths(LengthSpec(kind="empirical", csv="sharegpt-llama2", filter=True))
    assert isinstance(pool, EmpiricalLengths) and pool.input_tokens.size == 11_035
    trace_pool = build_lengths(LengthSpec(kind="trace", trace="azure-conv"))
    assert trace_pool.input_tokens.size == 19_366
    (tmp_path / "l.csv").write_text("input_tokens,output_tokens\n3,4\n")
    rel = build_lengths(LengthSpec(kind="empirical", csv="l.csv"), base_dir=tmp_path)
    assert rel.input_tokens.tolist() == [3]
    with pytest.raises(DataError, match="file not found"):
        build_lengths(LengthSpec(kind="empirical", csv="l.csv"), base_dir=tmp_path / "other")


def test_generate_requests_deterministic_and_seed_sensitive() -> None:
    r1 = generate_requests(ADAPTERS, 200.0, ArrivalSpec(), HEAVY, seed=1)
    r2 = generate_requests(ADAPTERS, 200.0, ArrivalSpec(), HEAVY, seed=1)
    r3 = generate_requests(ADAPTERS, 200.0, ArrivalSpec(), HEAVY, seed=2)
    assert same(r1, r2)
    assert not same(r1, r3)
    assert r1.arrival_s.dtype == np.float64 and r1.input_tokens.dtype == np.int32
    assert np.all(np.diff(r1.arrival_s) >= 0) and r1.arrival_s.max() < 200.0
    assert 2 not in set(r1.adapter.tolist())  # rate 0


def test_changing_lengths_keeps_arrivals() -> None:
    fixed = LengthSpec(kind="fixed", input_tokens=10, output_tokens=10)
    r1 = generate_requests(ADAPTERS, 100.0, ArrivalSpec(), HEAVY, seed=4)
    r2 = generate_requests(ADAPTERS, 100.0, ArrivalSpec(), fixed, seed=4)
    assert np.array_equal(r1.arrival_s, r2.arrival_s)
    assert np.array_equal(r1.adapter, r2.adapter)
    assert set(r2.input_tokens.tolist()) == {10}


def test_generate_requests_rates_and_lengths_realised() -> None:
    adapters = [Adapter(f"a{i}", 8, r) for i, r in enumerate([5.0, 1.0, 0.25])]
    req = generate_requests(adapters, 4000.0, ArrivalSpec(process="gamma", cv=1.5),
                            BoundedHeavyTailed(224, 194, 245, 206), seed=0)
    counts = np.bincount(req.adapter, minlength=3)
    expected = np.array([5.0, 1.0, 0.25]) * 4000.0
    assert np.all(np.abs(counts - expected) <= 4.5 * 1.5 * np.sqrt(expected))
    assert req.input_tokens.mean() == pytest.approx(224, rel=0.02)


def test_generate_requests_errors() -> None:
    with pytest.raises(ConfigError, match=r"adapters\[1\]: rate: must be >= 0"):
        generate_requests([Adapter("a", 8, 1), Adapter("b", 8, -1)], 10.0, ArrivalSpec(),
                          HEAVY, seed=0)
    with pytest.raises(ConfigError, match="seed: must be an integer >= 0"):
        generate_requests(ADAPTERS, 10.0, ArrivalSpec(), HEAVY, seed=-1)
    with pytest.raises(ConfigError, match="duration_s"):
        generate_requests(ADAPTERS, -5.0, ArrivalSpec(), HEAVY, seed=0)


def test_requests_from_azure_frame() -> None:
    trace = load_azure_trace("azure-code")
    adapters = [Adapter("hot", 8, 3.0), Adapter("cold", 8, 1.0)]
    r1 = requests_from_trace(trace, adapters, seed=5)
    r2 = requests_from_trace(trace, adapters, seed=5)
    assert same(r1, r2)
    assert np.array_equal(r1.arrival_s, trace["arrival_s"].to_numpy())  # own timing
    assert np.array_equal(r1.input_tokens, trace["input_tokens"].to_numpy())  # own lengths
    assert np.mean(r1.adapter == 0) == pytest.approx(0.75, abs=0.02)  # dealt by rate
    fast = requests_from_trace(trace, adapters, seed=5, rate_multiplier=2.0, duration_s=600.0)
    assert fast.arrival_s.max() < 600.0
    assert np.array_equal(fast.arrival_s, r1.arrival_s[r1.arrival_s < 1200.0] / 2.0)


def test_requests_from_trace_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                    "1,b,5,6\n0,a,7,8\n")
    adapters = [Adapter("a", 8, 1.0), Adapter("b", 8, 1.0)]
    req = requests_from_trace(load_trace_csv(path), adapters)
    assert req.adapter.tolist() == [0, 1] and req.input_tokens.tolist() == [7, 5]
    with pytest.raises(ConfigError, match="adapter_id: trace adapter 'b' is not among"):
        requests_from_trace(load_trace_csv(path), [Adapter("a", 8, 1.0)])


def test_requests_from_trace_needs_positive_rates() -> None:
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [1, 2],
                          "output_tokens": [3, 4]})
    with pytest.raises(ConfigError, match="all adapter rates are 0"):
        requests_from_trace(frame, [Adapter("a", 8, 0.0)])


def test_requests_from_trace_checks_frame_values() -> None:
    frame = pd.DataFrame({"arrival_s": [0.0, 1.0], "input_tokens": [1, 0],
                          "output_tokens": [3, 4]})
    with pytest.raises(ConfigError, match="trace: input_tokens must be integers"):
        requests_from_trace(frame, [Adapter("a", 8, 1.0)])
