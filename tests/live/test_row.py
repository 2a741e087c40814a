"""The real-runs row of one benchmark, from hand-made records and /metrics samples."""

from __future__ import annotations

import math

import pytest

from loratwin.live.client import CANCELLED, NOT_SENT, OK, RequestRecord
from loratwin.live.metrics import MetricsSnapshot
from loratwin.live.row import records_frame, summarise_run
from loratwin.workload.types import Adapter

ADAPTERS = [Adapter("a0", 8, 0.5), Adapter("a1", 16, 0.5), Adapter("a2", 8, 0.25)]


def _rec(i: int, status: str, send: float, first: float, fin: float, out: int = 5,
         gaps: list[float] | None = None) -> RequestRecord:
    r = RequestRecord(i, send, f"a{i % 3}", 10, out, send_s=send, first_token_s=first,
                      finish_s=fin, status=status, prompt_tokens=10, completion_tokens=out)
    r.itl_s = gaps if gaps is not None else [(fin - first) / (out - 1)] * (out - 1)
    r.chunks = len(r.itl_s) + 1
    return r


def _snap(t: float, running: float, steps: float, pre: float = 0.0) -> MetricsSnapshot:
    return MetricsSnapshot(t, running, 1.0, 0.5, pre, steps, 0.0, 0.0)


def test_summary_definitions() -> None:
    recs = [
        _rec(0, OK, 0.0, 0.1, 0.5),
        _rec(1, OK, 1.0, 1.3, 2.1, gaps=[0.4, 0.4]),  # 5 tokens in 3 chunks
        _rec(2, CANCELLED, 2.0, 2.5, math.nan),
        RequestRecord(3, 9.0, "a0", 10, 5),  # never sent (NOT_SENT)
    ]
    snaps = [_snap(-0.1, 0, 100), _snap(1.0, 2, 120), _snap(2.0, 4, 140, 1), _snap(10.5, 0, 150, 1)]
    row = summarise_run(recs, snaps, duration_s=10.0, adapters=ADAPTERS, sum_rate_req_s=1.25,
                        planned_tokens=(40.0, 20.0, 4))
    assert row["completed"] == 2
    assert row["total_input_tokens"] == 20 and row["total_output_tokens"] == 10
    assert row["total_throughput"] == pytest.approx(3.0)  # 30 tokens / 10 s
    assert row["mean_ttft_ms"] == pytest.approx(200.0)
    # decode time per generated token: (0.4 + 0.8) / (4 + 4)
    assert row["mean_itl_ms"] == pytest.approx(150.0)
    assert row["mean_tpot_ms"] == pytest.approx(150.0)
    assert row["mean_num_running"] == pytest.approx(3.0)  # samples inside [0, 10] only
    assert row["n_series_samples"] == 2
    assert row["n_sched_steps"] == 50 and row["num_preemptions_total"] == 1
    assert row["any_preemption"] is True
    assert row["ideal_total_throughput_est"] == pytest.approx(6.0)
    assert row["starvation_est"] is True  # 3 < 0.9 x 6
    assert (row["n_cancelled"], row["n_not_sent"], row["n_sent"]) == (1, 1, 3)
    assert row["rank_set"] == "8,16" and row["served_adapters"] == 3
    assert row["rates"] == "0.5,0.25" and row["adapters_per_rate"] == "2,1"


def test_finished_after_the_window_is_not_completed() -> None:
    recs = [_rec(0, OK, 0.0, 0.1, 0.5), _rec(1, OK, 0.5, 0.6, 10.5)]
    row = summarise_run(recs, [], duration_s=10.0, adapters=ADAPTERS, sum_rate_req_s=0.2,
                        planned_tokens=(20.0, 10.0, 2))
    assert row["completed"] == 1 and row["n_cancelled"] == 1
    assert math.isnan(row["mean_num_running"])


def test_records_frame() -> None:
    recs = [_rec(0, OK, 0.0, 0.1, 0.5), RequestRecord(1, 2.0, "a1", 8, 3, status=NOT_SENT)]
    df = records_frame(recs, {"a0": 8, "a1": 16})
    assert list(df["adapter_rank"]) == [8, 16]
    assert df.loc[0, "ttft_ms"] == pytest.approx(100.0)
    assert df.loc[0, "tpot_ms"] == pytest.approx(100.0)
    assert len(df.loc[0, "itl_ms"]) == 4
    assert df.loc[1, "status"] == NOT_SENT


def test_server_side_ttft_and_send_lag() -> None:
    recs = [_rec(0, OK, 0.0, 0.1, 0.5), _rec(1, OK, 1.0, 1.3, 2.1)]
    recs[1].arrival_s = 0.75  # sent 250 ms after its arrival time
    snaps = [MetricsSnapshot(-0.1, 0, 0, 0, 0, 0, 0, 0, ttft_sum_s=1.0, ttft_count=10),
             MetricsSnapshot(10.5, 0, 0, 0, 0, 0, 0, 0, ttft_sum_s=1.3, ttft_count=12)]
    row = summarise_run(recs, snaps, duration_s=10.0, adapters=ADAPTERS, sum_rate_req_s=0.2,
                        planned_tokens=(20.0, 10.0, 2))
    assert row["server_mean_ttft_ms"] == pytest.approx(150.0)  # 0.3 s over 2 requests
    assert row["mean_send_lag_ms"] == pytest.approx(125.0)
    assert row["max_send_lag_ms"] == pytest.approx(250.0)
    assert math.isnan(summarise_run(recs, [], duration_s=10.0, adapters=ADAPTERS,
                                    sum_rate_req_s=0.2, planned_tokens=(20.0, 10.0, 2)
                                    )["server_mean_ttft_ms"])
