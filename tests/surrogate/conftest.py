"""Shared fixtures of the surrogate tests: a small synthetic data set (no twin runs)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loratwin.surrogate.dataset import Dataset
from loratwin.surrogate.features import FEATURES
from loratwin.surrogate.train import Candidate, TrainConfig

PROFILE = "llama-3.1-8b-instruct"


def synthetic_rows(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Rows shaped like a data set: features, targets with a saturating throughput."""
    rng = np.random.default_rng(seed)
    served = rng.integers(8, 600, n)
    loras = np.maximum(1, (served * rng.uniform(0.02, 1.0, n)).astype(int))
    rate = np.exp(rng.uniform(np.log(0.05), np.log(60), n))
    inp = rng.uniform(50, 2000, n)
    out = rng.uniform(30, 600, n)
    offered = rate * (inp + out)
    capacity = 12000 * (1 - 0.5 * loras / 600)
    thr = np.minimum(offered, capacity) * rng.normal(1, 0.01, n)
    df = pd.DataFrame({
        "sum_rate_req_s": rate, "std_rate_req_s": rate / served * rng.uniform(0, 1, n),
        "max_rank": rng.choice([8, 16, 32, 64], n), "mean_rank": 16.0, "std_rank": 4.0,
        "max_loras": loras.astype(float), "served_adapters": served.astype(float),
        "mean_input_tokens": inp, "mean_output_tokens": out,
        "arrival_cv": rng.choice([1.0, 1.5, 2.0, 3.0], n),
    })
    df["total_throughput_tok_s"] = thr
    df["mean_itl_ms"] = 10 + 50 * np.minimum(offered / capacity, 3)
    df["mean_ttft_ms"] = 30 + 1e4 * np.maximum(offered / capacity - 0.9, 0)
    df["p99_ttft_ms"] = 4 * df["mean_ttft_ms"] * rng.normal(1, 0.02, n)
    df["starvation"] = thr < 0.9 * offered
    df["memory_error"] = False
    df["error"] = ""
    df["point_id"] = [f"q{i:06d}" for i in range(n)]
    assert list(df.columns[: len(FEATURES)]) == list(FEATURES)
    return df


@pytest.fixture(scope="session")
def synthetic_dataset() -> Dataset:
    return Dataset(rows=synthetic_rows(), profile=PROFILE, profile_sha256="", spec={})


#: Small and fast training settings for the tests.
FAST = TrainConfig(
    folds=2, holdout_fraction=0.25,
    regressors=(
        Candidate(name="gb", family="gb", params={"n_estimators": 15, "max_depth": 3}),
        Candidate(name="rf", family="rf", params={"n_estimators": 8, "max_leaf_nodes": 32}),
    ),
    classifiers=(
        Candidate(name="gb", family="gb", params={"n_estimators": 15, "max_depth": 3}),
        Candidate(name="rf", family="rf", params={"n_estimators": 8, "max_leaf_nodes": 32}),
    ),
)


@pytest.fixture(scope="session")
def trained(synthetic_dataset: Dataset):
    from loratwin.surrogate.train import train_surrogate

    return train_surrogate(synthetic_dataset, FAST)
