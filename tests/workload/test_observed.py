"""Adapter rates from observed traffic: request logs and vLLM Prometheus scrapes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from loratwin.errors import ConfigError, DataError
from loratwin.workload.observed import (
    ServerTraffic,
    active_sets,
    apply_observed,
    estimate_rates,
    observe_rates,
    parse_scrape,
    rates_from_request_log,
    server_traffic,
)
from loratwin.workload.types import Adapter


def _requests(rates: dict[str, float], span: float, seed: int) -> list[tuple[float, float, str]]:
    """(arrival, departure, adapter) of Poisson arrivals with sojourns of 1 s + Exp(2 s)."""
    rng = np.random.default_rng(seed)
    out = []
    for a, lam in rates.items():
        n = rng.poisson(lam * span)
        t = np.sort(rng.uniform(0, span, n))
        out += [(float(x), float(x + 1.0 + rng.exponential(2.0)), a) for x in t]
    return sorted(out)


def test_request_log_gives_exact_rates_and_lengths(tmp_path: Path) -> None:
    rows = [(0.0, "a", 100, 10), (5.0, "a", 300, 30), (10.0, "b", 50, 5), (20.0, "a", 200, 20)]
    path = tmp_path / "log.csv"
    pd.DataFrame(rows, columns=["arrival_time_s", "adapter_id", "input_tokens",
                                "output_tokens"]).to_csv(path, index=False)
    obs = rates_from_request_log(path)
    assert obs.rates_req_s == pytest.approx({"a": 3 / 20, "b": 1 / 20})
    assert obs.mean_input_tokens == pytest.approx({"a": 200.0, "b": 50.0})
    assert obs.mean_output_tokens["a"] == pytest.approx(20.0)
    ads = [Adapter("a", 8, 9.0), Adapter("b", 8, 9.0), Adapter("c", 16, 0.5)]
    new, notes = apply_observed(ads, observe_rates([str(path)]))
    assert [x.rate for x in new] == pytest.approx([0.15, 0.05, 0.5])
    assert new[0].mean_input_tokens == pytest.approx(200.0)
    assert any("1 adapter(s) not in the observed traffic" in n for n in notes)
    with pytest.raises(ConfigError, match="not in the workload: a, b"):
        apply_observed([Adapter("c", 8, 1.0)], obs)
    bad = tmp_path / "bad.csv"
    bad.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n0,a,-1,3\n")
    with pytest.raises(DataError, match="row 2: input_tokens"):
        rates_from_request_log(bad)
    # token counts follow the trace rules: integers >= 1 (the fuzz benchmark found 0 accepted)
    bad.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n0,a,5,3\n1,b,5,0\n")
    with pytest.raises(DataError, match=r"row 3: output_tokens: must be an integer >= 1 \(got 0\)"):
        rates_from_request_log(bad)
    bad.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n0,a,5.5,3\n1,b,5,2\n")
    with pytest.raises(DataError, match="row 2: input_tokens: must be an integer"):
        rates_from_request_log(bad)
    bad.write_text("arrival_time_s,adapter_id\n0,a\n")
    with pytest.raises(DataError, match="missing column 'input_tokens'"):
        rates_from_request_log(bad)


def _active(reqs: list[tuple[float, float, str]], dt: float, n: int) -> list[set[str]]:
    """Per interval [i dt, (i + 1) dt), the adapters with a request overlapping it."""
    out: list[set[str]] = [set() for _ in range(n)]
    for s, e, a in reqs:
        for i in range(int(s // dt), min(n, int(np.ceil(e / dt)))):
            out[i].add(a)
    return out


def test_presence_inversion_recovers_poisson_rates() -> None:
    """M/G/inf: requests overlapping a window of length dt are Poisson with mean
    lambda (dt + E[S]), so the inversion is unbiased when every adapter has the same E[S]."""
    names = [f"a{i:02d}" for i in range(30)]
    true = dict(zip(names, np.geomspace(0.01, 0.4, 30), strict=True))
    span, dt = 4 * 3600.0, 10.0
    reqs = _requests(true, span, seed=2)
    n = int(span / dt)
    x = len(reqs) / span
    mean_sojourn = float(np.mean([e - s for s, e, _ in reqs]))
    est = estimate_rates(_active(reqs, dt, n), ServerTraffic(x, mean_sojourn, dt, n))
    assert sum(est.values()) == pytest.approx(x, rel=1e-9)  # the measured total is kept
    rel = np.array([est[a] / true[a] - 1 for a in names])
    assert np.abs(rel[:25]).max() < 0.2      # resolvable rates within 20%
    assert np.abs(rel).mean() < 0.1


def _scrape_texts(reqs: list[tuple[float, float, str]], times: list[float], step: float
                  ) -> list[str]:
    """What vLLM's PrometheusStatLogger would export at ``times`` (one record per step)."""
    reg = CollectorRegistry()
    info = Gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                 ["max_lora", "waiting_lora_adapters", "running_lora_adapters"], registry=reg)
    done = Counter("vllm:request_success", "Finished requests.", ["finished_reason"],
                   registry=reg)
    running = Gauge("vllm:num_requests_running", "Running.", registry=reg)
    Gauge("vllm:num_requests_waiting", "Waiting.", registry=reg).set(0)
    texts, t = [], 0.0
    for when in times:
        while t <= when:
            present = sorted({a for s, e, a in reqs if s <= t < e})
            if present:
                info.labels(max_lora="8", waiting_lora_adapters="",
                            running_lora_adapters=",".join(present)).set(t)
            t += step
        finished = sum(1 for _, e, _ in reqs if e <= when)
        done.labels(finished_reason="stop").inc(finished - done.labels(
            finished_reason="stop")._value.get())
        running.set(sum(1 for s, e, _ in reqs if s <= when < e))
        texts.append(f"# scrape_time_s {when}\n" + generate_latest(reg).decode())
    return texts


def test_prometheus_scrapes_round_trip(tmp_path: Path) -> None:
    true = {"hot": 0.5, "warm": 0.1, "cold": 0.01}
    reqs = _requests(true, 400.0, seed=4)
    texts = _scrape_texts(reqs, [float(t) for t in range(100, 401, 20)], step=0.25)
    path = tmp_path / "gpu-0.prom"
    path.write_text("".join(texts))
    scrapes = [parse_scrape(x.split("\n", 1)[1], float(x.split()[2])) for x in texts]
    sets = active_sets(scrapes)
    assert len(sets) == len(texts) - 1
    assert all(s <= set(true) for s in sets)
    traffic = server_traffic(scrapes, 20.0)
    assert traffic.mean_interval_s == pytest.approx(20.0)
    obs = observe_rates([str(path)])
    assert sum(obs.rates_req_s.values()) == pytest.approx(traffic.arrival_rate_req_s)
    assert obs.rates_req_s["hot"] > obs.rates_req_s["warm"] > obs.rates_req_s.get("cold", 0)
    assert "lora_requests_info" in obs.notes[0]
    # one scrape gives no rate; a counter that goes down is a restart
    one = tmp_path / "one.prom"
    one.write_text(texts[0].split("\n", 1)[1])
    with pytest.raises(DataError, match="at least two scrapes"):
        observe_rates([str(one)])
    with pytest.raises(DataError, match="went down"):
        server_traffic([scrapes[3], dataclasses.replace(scrapes[1], time_s=1e9)], 20.0)
    with pytest.raises(DataError, match="not the /metrics of a vLLM server"):
        parse_scrape("# TYPE x counter\nx_total 3\n")
    with pytest.raises(DataError, match="not found"):
        observe_rates([str(tmp_path / "missing.prom")])


def test_binary_metrics_file_is_a_data_error(tmp_path: Path) -> None:
    # found by benchmarks/fuzz_cli.py (replan --rates-from-metrics): was UnicodeDecodeError
    bad = tmp_path / "log.csv"
    bad.write_bytes(b"\xff\xfe\x00\x01\x89PNG\r\n")
    with pytest.raises(DataError, match="not UTF-8"):
        observe_rates([str(bad)])
