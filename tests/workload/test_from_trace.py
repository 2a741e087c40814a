"""Adapters synthesised from a trace (Dirichlet popularity)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loratwin.errors import ConfigError
from loratwin.workload.from_trace import EMPTY_ADAPTER_REQUESTS, adapters_from_trace
from loratwin.workload.trace import load_azure_trace


@pytest.fixture(scope="module")
def conv() -> pd.DataFrame:
    return load_azure_trace("azure-conv")


def test_rates_ranks_and_means(conv: pd.DataFrame) -> None:
    adapters = adapters_from_trace(conv, 20, ranks=(8, 16, 32), seed=3)
    span = conv["arrival_s"].max()
    assert len(adapters) == 20
    assert [a.rank for a in adapters[:6]] == [8, 16, 32, 8, 16, 32]
    assert adapters[0].id == "adapter-00" and adapters[19].id == "adapter-19"
    counts = np.array([a.rate * span for a in adapters])
    assert np.allclose(counts, np.round(counts))  # rate = count / duration
    assert counts.sum() == pytest.approx(len(conv))
    # Request-weighted per-adapter means give back the trace means.
    mean_in = np.average([a.mean_input_tokens for a in adapters], weights=counts)
    assert mean_in == pytest.approx(conv["input_tokens"].mean(), rel=1e-9)


def test_deterministic_and_seeded(conv: pd.DataFrame) -> None:
    a = adapters_from_trace(conv, 50, seed=1)
    assert a == adapters_from_trace(conv, 50, seed=1)
    assert a != adapters_from_trace(conv, 50, seed=2)
    doubled = adapters_from_trace(conv, 50, seed=1, rate_multiplier=2.0)
    assert [d.rate for d in doubled] == pytest.approx([2 * x.rate for x in a])
    # Random ranks use their own stream: the assignment (rates) does not change.
    rnd = adapters_from_trace(conv, 50, seed=1, ranks=(8, 64), rank_order="random")
    assert [x.rate for x in rnd] == [x.rate for x in a]
    assert {x.rank for x in rnd} == {8, 64}


def test_alpha_controls_skew(conv: pd.DataFrame) -> None:
    def top_share(alpha: float) -> float:
        rates = np.sort([a.rate for a in adapters_from_trace(conv, 100, seed=0, alpha=alpha)])
        return rates[-10:].sum() / rates.sum()

    assert top_share(100.0) < 0.15 < top_share(0.5) < top_share(0.05)


def test_empty_adapters_kept_tiny_or_dropped(conv: pd.DataFrame) -> None:
    small = conv.iloc[:30]
    span = small["arrival_s"].max()
    kept = adapters_from_trace(small, 200, seed=0, alpha=0.1)
    assert len(kept) == 200
    empty = [a for a in kept if a.rate * span < 1 - 1e-9]
    assert empty and all(a.rate == pytest.approx(EMPTY_ADAPTER_REQUESTS / span) for a in empty)
    assert empty[0].mean_input_tokens == pytest.approx(small["input_tokens"].mean())
    dropped = adapters_from_trace(small, 200, seed=0, alpha=0.1, drop_empty=True)
    assert len(dropped) == 200 - len(empty)
    assert sum(a.rate for a in dropped) * span == pytest.approx(30)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_adapters": 0}, "adapters: must be an integer >= 1"),
    ({"ranks": ()}, "ranks: must be a non-empty list"),
    ({"ranks": (8, 0)}, "ranks: must be a non-empty list"),
    ({"rate_multiplier": 0.0}, "rate_multiplier: must be a finite number > 0"),
    ({"alpha": -1.0}, "alpha: must be a finite number > 0"),
    ({"seed": -3}, "seed: must be an integer >= 0"),
    ({"rank_order": "sorted"}, "rank_order: must be 'cycle' or 'random'"),
])
def test_bad_arguments(conv: pd.DataFrame, kwargs: dict, match: str) -> None:
    args = {"n_adapters": 4} | kwargs
    with pytest.raises(ConfigError, match=match):
        adapters_from_trace(conv, **args)


def test_degenerate_trace() -> None:
    one = pd.DataFrame({"arrival_s": [0.0], "input_tokens": [1], "output_tokens": [1]})
    with pytest.raises(ConfigError, match="trace: needs at least two requests"):
        adapters_from_trace(one, 3)
