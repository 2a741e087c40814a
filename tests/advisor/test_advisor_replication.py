"""Replication: measured gains (bca/expected_results.md, section 3) and the fitted model."""

from __future__ import annotations

import pandas as pd
import pytest

from loratwin.advisor import (
    advise_max_num_seqs,
    bundled_replication_model,
    fit_replication_model,
    measured_replication_gains,
    read_sweep,
)
from loratwin.advisor.replication import ThroughputCurve, read_bundled_replication
from loratwin.errors import DataError

REL = 1e-6


def _gain(model: str, replicas: int, per_replica: int, mps: bool, chunked: bool = False):
    gains = [g for g in measured_replication_gains(read_bundled_replication())
             if (g.model, g.replicas, g.max_num_seqs_per_replica, g.mps, g.chunked_prefill)
             == (model, replicas, per_replica, mps, chunked)]
    assert len(gains) == 1
    return gains[0]


def test_measured_replication_headline_gains() -> None:
    g = _gain("opt-1.3b", 2, 256, True)
    assert g.throughput_tok_s == pytest.approx(14669.48815, rel=REL)
    assert (g.baseline_max_num_seqs, g.baseline_tok_s) == (768, pytest.approx(10967.5557))
    assert g.gain_pct == pytest.approx(33.75348665883682, rel=REL)
    assert g.gain_vs_chunked_pct == pytest.approx(23.638585167570735, rel=REL)
    g = _gain("opt-2.7b", 2, 128, True)
    assert g.baseline_max_num_seqs == 384
    assert g.gain_pct == pytest.approx(12.778843295286023, rel=REL)
    assert g.gain_vs_chunked_pct == pytest.approx(0.681354183957783, rel=REL)


@pytest.mark.parametrize(
    ("model", "replicas", "without", "with_"),
    [
        ("opt-1.3b", 2, -4.318585498498995, 12.276079527911566),
        ("opt-1.3b", 4, -10.09504534360377, 20.10358944427333),
        ("opt-2.7b", 2, -14.59489105356877, 4.0086675817273765),
    ],
)
def test_sign_reversal_without_mps(model: str, replicas: int, without: float,
                                   with_: float) -> None:
    assert _gain(model, replicas, 96, False).gain_pct == pytest.approx(without, rel=REL)
    assert _gain(model, replicas, 96, True).gain_pct == pytest.approx(with_, rel=REL)
    assert without < 0 < with_


def test_fitted_model_factors_and_fit_error() -> None:
    model = bundled_replication_model()
    assert model.phi_mps == pytest.approx(1.178656360296706, rel=REL)
    assert model.phi_no_mps == pytest.approx(0.9326698741961804, rel=REL)
    assert model.phi_no_mps < 1.0 < model.phi_mps  # the sign reversal, as a model property
    assert model.max_replicas == 4
    # Fitted on 8 runs: R >= 2, no chunked prefill, no preemption (5 with MPS, 3 without).
    assert len(model.points) == 8
    assert sum(p.mps for p in model.points) == 5
    assert model.rms_error_pct() == pytest.approx(6.0326, abs=1e-3)
    assert model.rms_error_pct(mps=True) == pytest.approx(6.0176, abs=1e-3)
    assert model.rms_error_pct(mps=False) == pytest.approx(6.0576, abs=1e-3)
    assert model.max_abs_error_pct() == pytest.approx(9.9816, abs=1e-3)
    assert model.loo_rms_error_pct() == pytest.approx(8.0966, abs=1e-3)
    assert "6.0 % RMS" in model.summary()


def test_fitted_model_predicts_the_sign_of_every_measured_gain() -> None:
    model = bundled_replication_model()
    sweep = read_sweep("bundled:sharegpt")
    gains = {(g.model, g.replicas, g.max_num_seqs_per_replica, g.mps): g
             for g in measured_replication_gains(read_bundled_replication())
             if not g.chunked_prefill}
    for p in model.points:
        curve = ThroughputCurve.from_frame(
            sweep[(sweep["model"] == p.model) & (sweep["num_preemptions_total"] == 0)],
            "max_num_seqs")
        predicted = model.predict(curve, p.max_num_seqs_per_replica, p.replicas, p.mps)
        assert predicted == pytest.approx(p.predicted_tok_s, rel=REL)
        measured = gains[(p.model, p.replicas, p.max_num_seqs_per_replica, p.mps)]
        predicted_gain = predicted / measured.baseline_tok_s - 1
        assert (predicted_gain > 0) == (measured.gain_pct > 0), p


def test_throughput_curve_interpolates_and_holds_flat() -> None:
    curve = ThroughputCurve.from_frame(
        pd.DataFrame({"b": [1, 4, 2, 4], "total_token_throughput_tok_s": [10.0, 30.0, 20.0, 50.0]}),
        "b")
    assert curve.batch == (1.0, 2.0, 4.0)
    assert curve.throughput_tok_s == (10.0, 20.0, 40.0)
    assert curve.at(3.0) == 30.0
    assert curve.at(100.0) == 40.0 and curve.at(0.5) == 10.0


def test_advice_flags_replication_losing_without_mps() -> None:
    sweep = read_sweep("bundled:fixed-length")
    opt = sweep[(sweep["model"] == "opt-1.3b") & (sweep["output_len"] == 390)]
    model = bundled_replication_model()
    rep = advise_max_num_seqs(opt, replication_model=model).replication
    # footprint 2.81 + 14.01 GiB in the 0.9 x 63.43 = 57.09 GiB budget -> 3 replicas
    assert rep.footprint_gib == pytest.approx(16.822587712376, rel=REL)
    assert rep.budget_gib == pytest.approx(57.087, rel=REL)
    assert rep.replicas_fit == 3
    assert rep.per_replica_gpu_memory_utilization == 0.27
    assert [(o.replicas, o.mps) for o in rep.options] == [(2, True), (2, False), (3, True),
                                                          (3, False)]
    # 2 x 128: phi x T_1(256) = phi x the best single-instance throughput of the sweep
    best = rep.best(True)
    assert best.replicas == 2
    assert best.gain_pct == pytest.approx((model.phi_mps - 1) * 100, rel=REL)
    assert rep.loses_without_mps
    assert all(o.loses for o in rep.options if not o.mps)
    assert "WITHOUT MPS replication is expected to LOSE" in rep.verdict()
    doc = rep.to_dict()
    assert doc["loses_without_mps"] is True and doc["replicas_fit"] == 3


def test_no_replication_when_one_replica_fills_the_gpu() -> None:
    sweep = read_sweep("bundled:fixed-length")
    llama = sweep[(sweep["model"] == "llama-2-7b") & (sweep["output_len"] == 390)]
    rep = advise_max_num_seqs(llama, replication_model=bundled_replication_model()).replication
    assert rep.replicas_fit == 1 and rep.options == ()
    assert not rep.loses_without_mps
    assert rep.verdict().startswith("no replication")


def test_replication_table_errors() -> None:
    table = read_bundled_replication()
    single = read_sweep("bundled:sharegpt")
    with pytest.raises(DataError) as info:
        fit_replication_model(table.drop(columns=["mps"]), single)
    assert info.value.field == "mps"
    with pytest.raises(DataError, match="without MPS"):
        fit_replication_model(table[table["mps"]], single)
    with pytest.raises(DataError, match="no single-instance runs"):
        fit_replication_model(table, single[single["model"] != "opt-2.7b"])
