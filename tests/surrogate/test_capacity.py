"""The capacity table behind the ``load_ratio`` input: accuracy, storage, batch = one row."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.profile.model import kv_capacity
from loratwin.profile.store import load_profile
from loratwin.surrogate.capacity import LORAS_AXIS, CapacityTable
from loratwin.surrogate.design import capacity_tok_s


@pytest.fixture(scope="module")
def table() -> CapacityTable:
    return CapacityTable.build(load_profile("llama-3.1-8b-instruct"))


def test_table_interpolates_the_capacity_model(table: CapacityTable) -> None:
    profile = load_profile("llama-3.1-8b-instruct")
    rng = np.random.default_rng(3)
    m = rng.integers(1, 128, 120)
    r = rng.choice([8, 16, 32], 120)
    i = np.exp(rng.uniform(np.log(50), np.log(2000), 120))
    o = np.exp(rng.uniform(np.log(30), np.log(600), 120))
    exact = np.array([capacity_tok_s(profile, int(a), int(b), c, d)
                      for a, b, c, d in zip(m, r, i, o, strict=True)])
    err = np.abs(table(m, r, i, o) / exact - 1)
    assert np.median(err) < 0.02 and err.max() < 0.15
    # on a grid node the table is the model itself
    m0 = LORAS_AXIS[10]
    node = table(np.array([float(m0)]), np.array([16.0]), np.array([256.0]), np.array([128.0]))
    assert node[0] == pytest.approx(capacity_tok_s(profile, m0, 16, 256.0, 128.0), rel=1e-9)


def test_more_slots_cost_capacity_and_the_memory_limit_is_continued(
    table: CapacityTable
) -> None:
    profile = load_profile("llama-3.1-8b-instruct")
    m = np.array([1.0, 8.0, 64.0, 512.0])
    cap = table(m, np.full(4, 32.0), np.full(4, 224.0), np.full(4, 194.0))
    assert (np.diff(cap) < 0).all()
    assert kv_capacity(profile, 1536, 64).failure is not None  # beyond the limit ...
    beyond = table(np.array([1536.0]), np.array([64.0]), np.array([224.0]), np.array([194.0]))
    assert np.isfinite(beyond).all() and beyond[0] > 1.0  # ... the last capacity, not 0


def test_round_trip_and_one_row_matches_a_batch_row(table: CapacityTable) -> None:
    back = CapacityTable.from_arrays(table.arrays("c__"), "c__")
    assert np.array_equal(back.log_capacity, table.log_capacity)
    rng = np.random.default_rng(0)
    cols = [rng.uniform(1, 400, 300), rng.choice([8.0, 16.0, 32.0, 24.0], 300),
            rng.uniform(20, 3000, 300), rng.uniform(10, 900, 300)]
    batch = back(*cols)
    one = np.array([back(*(c[k:k + 1] for c in cols))[0] for k in range(300)])
    np.testing.assert_allclose(one, batch, rtol=1e-10)
    plain = np.array([back.at(*(float(c[k]) for c in cols)) for k in range(300)])
    np.testing.assert_allclose(plain, batch, rtol=1e-14)  # math vs numpy log/exp: last bit
    with pytest.raises(ValueError):
        CapacityTable.from_arrays({**table.arrays("c__"), "c__axis0": np.array([1.0])}, "c__")
