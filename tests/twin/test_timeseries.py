"""The twin's time series on a regular grid: exact time means, and agreement with the run's
own time integrals."""

from __future__ import annotations

import numpy as np
import pytest

from loratwin.profile.store import load_profile
from loratwin.twin import ClientConfig, ServerConfig, simulate
from loratwin.twin.runconfig import default_lengths
from loratwin.twin.timeseries import resample
from loratwin.workload.spec import ArrivalSpec, generate_requests
from loratwin.workload.types import Adapter


def test_bins_are_time_weighted_means() -> None:
    # 2 running over [0, 5), 4 over [5, 10), idle [10, 12), 1 over [12, 20)
    ts = {"t_s": np.array([0.0, 5.0, 12.0]), "dt_s": np.array([5.0, 5.0, 8.0]),
          "running": np.array([2, 4, 1]), "waiting": np.array([0, 6, 0]),
          "kv_used_blocks": np.array([10, 30, 5])}
    out = resample(ts, 20.0, 4, kv_blocks=50)
    assert out["t_s"] == [2.5, 7.5, 12.5, 17.5]
    assert out["running"] == pytest.approx([2.0, 4.0, 0.6, 1.0])
    assert out["waiting"] == pytest.approx([0.0, 6.0, 0.0, 0.0])
    assert out["kv_used_fraction"] == pytest.approx([0.2, 0.6, 0.06, 0.1])
    empty = resample({k: np.array([]) for k in ts}, 20.0, 2, kv_blocks=50)
    assert empty["running"] == [0.0, 0.0]
    with pytest.raises(ValueError):
        resample(ts, 0.0, 4, kv_blocks=50)


def test_resampled_means_match_the_run_integrals() -> None:
    profile = load_profile("llama-3.1-8b-instruct")
    adapters = [Adapter(f"a{i}", 8, 1.5) for i in range(8)]
    duration = 300.0
    req = generate_requests(adapters, duration, ArrivalSpec(), default_lengths(profile), 0)
    server = ServerConfig(max_loras=4, max_cpu_loras=8, max_lora_rank=8, max_num_seqs=256)
    res = simulate(profile, server, adapters, req, ClientConfig(duration_s=duration),
                   record_timeseries=True)
    m = res.metrics
    ts = {c: res.timeseries[c].to_numpy() for c in res.timeseries.columns}
    out = resample(ts, duration, 50, kv_blocks=m.kv_cache_tokens // server.block_size)
    # the run's integrals also count the part of the last step past the window: < 0.1%
    assert np.mean(out["running"]) == pytest.approx(m.mean_num_running, rel=1e-3)
    assert np.mean(out["waiting"]) == pytest.approx(m.mean_num_waiting, rel=1e-3)
    assert np.mean(out["kv_used_fraction"]) == pytest.approx(m.mean_kv_usage, rel=1e-3)
    assert max(out["kv_used_fraction"]) <= 1.0 and min(out["running"]) >= 0.0
