"""B_opt rules against the headline numbers of bca/expected_results.md (bundled sweeps)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loratwin.advisor import (
    EfficiencyRule,
    LatencyGrowthRule,
    SloRule,
    advise_max_num_seqs,
    advise_sweep,
    batching_efficiency,
    make_rule,
    read_sweep,
)
from loratwin.errors import ConfigError

REL = 1e-6


def _fixed(output_len: int = 390) -> pd.DataFrame:
    df = read_sweep("bundled:fixed-length")
    return df[df["output_len"] == output_len]


def _by_model(advices):
    return {a.key.model: a for a in advices}


# expected_results.md, section 1 (full precision from expected_results.json):
# model: (ref TPOT ms, limit ms, B_opt realised, max_num_seqs, u, pool GiB, freed GiB, freed %,
#         throughput at B_opt / max)
MEMORY_390 = {
    "opt-1.3b": (6.585235231, 19.755705693, 128, 128, 0.2572060887, 54.48,
                 40.46741228762399, 63.23033169941249, 0.8996471283328821),
    "opt-2.7b": (10.33447161, 31.00341483, 128, 128, 0.4451990191, 51.97,
                 28.833006977373003, 45.051573402145316, 0.9339923602593032),
    "llama-2-7b": (17.09854683, 51.29564049, 128, 128, 0.8483403955, 44.36,
                   6.727620055620002, 10.511906336906254, 0.9626018278571756),
    "llama-2-13b": (28.99134498, 86.97403494, 138, 256, 0.9996229261, 32.61,
                    0.012296379878998988, 0.01921309356093592, 0.9874743716789468),
}


@pytest.mark.parametrize("model", ["opt-1.3b", "opt-2.7b", "llama-2-7b"])
def test_memory_rule_headline_freed_memory_default_rule(model: str) -> None:
    ref, limit, b_opt, mns, u, pool, freed, pct, ratio = MEMORY_390[model]
    advice = _by_model(advise_sweep(_fixed(390)))[model]  # default: rule (b), L = 3
    assert advice.reference_batch == 32
    assert limit == pytest.approx(3 * ref, rel=REL)
    assert advice.latency_limit_ms == pytest.approx(limit, rel=REL)
    assert advice.b_opt == b_opt and advice.max_num_seqs == b_opt
    assert advice.source_max_num_seqs == mns
    assert advice.memory.kv_usage_peak_frac == pytest.approx(u, rel=REL)
    assert advice.memory.kv_pool_gib == pytest.approx(pool, rel=REL)
    assert advice.memory.freed_gib == pytest.approx(freed, rel=REL)
    assert advice.memory.freed_pct_of_gpu_memory == pytest.approx(pct, rel=REL)
    assert advice.memory.kv_used_gib == pytest.approx(pool * u, rel=REL)
    assert advice.throughput_kept_pct == pytest.approx(ratio * 100, rel=REL)


def test_memory_rule_headline_rounded() -> None:
    pct = {m: round(a.memory.freed_pct_of_gpu_memory, 2)
           for m, a in _by_model(advise_sweep(_fixed(390))).items()}
    assert pct["opt-1.3b"] == 63.23
    assert pct["opt-2.7b"] == 45.05
    assert pct["llama-2-7b"] == 10.51


def test_memory_rule_with_preempted_runs_reproduces_llama_13b() -> None:
    _ref, limit, b_opt, mns, u, pool, freed, pct, ratio = MEMORY_390["llama-2-13b"]
    rule = LatencyGrowthRule(include_preempted=True)
    advice = _by_model(advise_sweep(_fixed(390), rule))["llama-2-13b"]
    assert advice.latency_limit_ms == pytest.approx(limit, rel=REL)
    assert advice.b_opt == b_opt
    assert advice.memory.kv_usage_peak_frac == pytest.approx(u, rel=REL)
    assert advice.memory.kv_pool_gib == pytest.approx(pool, rel=REL)
    assert advice.memory.freed_gib == pytest.approx(freed, rel=REL)
    assert advice.source_max_num_seqs == mns
    assert advice.memory.freed_pct_of_gpu_memory == pytest.approx(pct, rel=REL)
    assert advice.throughput_kept_pct == pytest.approx(ratio * 100, rel=REL)


def test_memory_rule_excludes_preempted_runs_by_default() -> None:
    advice = _by_model(advise_sweep(_fixed(390)))["llama-2-13b"]
    # B = 128, 256, 512 preempted (931, 926, 942); the largest clean run is B = 64.
    assert advice.b_opt == 64
    assert advice.memory.kv_usage_peak_frac == pytest.approx(0.939655, rel=1e-5)
    assert advice.memory.freed_gib == pytest.approx(32.61 * (1 - 0.939655), rel=1e-4)


# expected_results.md, section 1, other output lengths (authors' convention: preempted kept).
OTHER_LENS = [
    ("opt-1.3b", 130, 181, 512, 68.600707922925),
    ("opt-1.3b", 260, 128, 128, 68.06875472403749),
    ("opt-1.3b", 520, 128, 128, 58.414883137649994),
    ("opt-2.7b", 130, 214, 512, 48.037291210175),
    ("opt-2.7b", 260, 128, 128, 52.12869918117813),
    ("opt-2.7b", 520, 128, 128, 36.925133525460936),
    ("llama-2-7b", 130, 204, 256, 18.475967496268748),
    ("llama-2-7b", 260, 253, 512, 0.012359576268750977),
    ("llama-2-7b", 520, 128, 128, 0.036712128062497164),
    ("llama-2-13b", 130, 139, 256, 0.038426187121877495),
    ("llama-2-13b", 260, 136, 256, 0.0),
    ("llama-2-13b", 520, 137, 256, 0.0),
]


def test_memory_rule_other_output_lengths() -> None:
    advices = advise_sweep(read_sweep("bundled:fixed-length"),
                           LatencyGrowthRule(include_preempted=True))
    got = {(a.key.model, a.key.output_len): a for a in advices}
    assert len(got) == 16
    for model, out_len, b_opt, mns, pct in OTHER_LENS:
        a = got[(model, out_len)]
        assert (a.b_opt, a.source_max_num_seqs) == (b_opt, mns), (model, out_len)
        assert a.memory.freed_pct_of_gpu_memory == pytest.approx(pct, rel=REL, abs=1e-9)


# expected_results.md, section 2: model -> (ITL(32) ms, limit ms, B_opt, eta, ITL(B_opt), ratio)
EFFICIENCY = {
    "opt-1.3b": (7.509587048, 15.019174096, 96, 0.24649469089035123, 13.8938057,
                 0.7994740231350977),
    "opt-2.7b": (11.08566739, 22.17133478, 96, 0.2868576856459603, 20.37748412,
                 0.755783537673457),
    "llama-2-7b": (17.64365545, 35.2873109, 96, 0.3318346574550023, 31.18556433,
                   0.7351684078141715),
    "llama-2-13b": (29.4621357, 58.9242714, 256, 0.1593122103744516, 55.9923535, 1.0),
}


def test_efficiency_rule_opt_1_3b_headline() -> None:
    sweep = read_sweep("bundled:sharegpt")
    opt = sweep[sweep["model"] == "opt-1.3b"]
    advice = advise_max_num_seqs(opt, EfficiencyRule(eps=0.1, latency_factor=2.0))
    ref, limit, b_opt, eta, itl, ratio = EFFICIENCY["opt-1.3b"]
    assert limit == pytest.approx(2 * ref, rel=REL)
    assert advice.b_opt == b_opt == 96 and advice.max_num_seqs == 96
    assert advice.eta == pytest.approx(eta, rel=REL)
    assert advice.latency_ms == pytest.approx(itl, rel=REL)
    assert advice.latency_limit_ms == pytest.approx(limit, rel=REL)
    assert advice.throughput_kept_pct == pytest.approx(ratio * 100, rel=REL)


@pytest.mark.parametrize("model", list(EFFICIENCY))
def test_efficiency_rule_all_models_as_authors(model: str) -> None:
    rule = make_rule("a", eps=0.1, latency_factor=2, include_preempted=True)
    advice = _by_model(advise_sweep(read_sweep("bundled:sharegpt"), rule))[model]
    _ref, limit, b_opt, eta, itl, ratio = EFFICIENCY[model]
    assert advice.b_opt == b_opt
    assert advice.latency_ms == pytest.approx(itl, rel=REL)
    assert advice.eta == pytest.approx(eta, rel=REL)
    assert advice.latency_limit_ms == pytest.approx(limit, rel=REL)
    assert advice.throughput_kept_pct == pytest.approx(ratio * 100, rel=REL)


# expected_results.md, section 2, B_opt grid: (model, eps) -> L=2,3,5 kept / no-preempt
GRID = {
    ("opt-1.3b", 0.1): (96, 128, 256, 96, 128, 256),
    ("opt-1.3b", 0.2): (96, 96, 96, 96, 96, 96),
    ("opt-1.3b", 0.3): (64, 64, 64, 64, 64, 64),
    ("opt-2.7b", 0.1): (96, 128, 256, 96, 128, 256),
    ("opt-2.7b", 0.2): (96, 128, 128, 96, 128, 128),
    ("opt-2.7b", 0.3): (64, 64, 64, 64, 64, 64),
    ("llama-2-7b", 0.1): (96, 192, 256, 96, 192, 192),
    ("llama-2-7b", 0.2): (96, 192, 192, 96, 192, 192),
    ("llama-2-7b", 0.3): (96, 96, 96, 96, 96, 96),
    ("llama-2-13b", 0.1): (256, 256, 256, 80, 80, 80),
    ("llama-2-13b", 0.2): (192, 192, 192, 80, 80, 80),
    ("llama-2-13b", 0.3): (128, 128, 128, 80, 80, 80),
}


def test_efficiency_rule_grid() -> None:
    sweep = read_sweep("bundled:sharegpt")
    for i, (include, factor) in enumerate(
        (inc, f) for inc in (True, False) for f in (2.0, 3.0, 5.0)
    ):
        for eps in (0.1, 0.2, 0.3):
            rule = EfficiencyRule(eps=eps, latency_factor=factor, include_preempted=include)
            got = _by_model(advise_sweep(sweep, rule))
            for (model, e), row in GRID.items():
                if e == eps:
                    assert got[model].b_opt == row[i], (model, eps, factor, include)


def test_batching_efficiency_matches_eta_table_and_uses_smallest_batch() -> None:
    sweep = read_sweep("bundled:sharegpt")
    opt = sweep[sweep["model"] == "opt-1.3b"]
    eta = batching_efficiency(opt["max_num_seqs"].to_numpy(),
                              opt["request_throughput_rps"].to_numpy())
    table = dict(zip(opt["max_num_seqs"], eta, strict=True))
    assert table[1] == 1.0
    assert table[2] == pytest.approx(0.9580766320926262, rel=REL)
    assert table[768] == pytest.approx(0.037683605841270784, rel=REL)
    # Without a B = 1 run, T(1) is T(B0)/B0 of the smallest batch B0.
    eta2 = batching_efficiency(np.array([4.0, 2.0, 8.0]), np.array([6.0, 4.0, 8.0]))
    np.testing.assert_allclose(eta2, [0.75, 1.0, 0.5])


def test_slo_rule_picks_largest_batch_within_slo() -> None:
    sweep = _fixed(390)
    opt = sweep[sweep["model"] == "opt-1.3b"]
    advice = advise_max_num_seqs(opt, SloRule(slo_ms=20.0))
    assert advice.b_opt == 128  # TPOT 15.70 ms; 256 has 27.38 ms
    assert advice.latency_limit_ms == 20.0
    advice = advise_max_num_seqs(opt, make_rule("c", slo_ms=30.0))
    assert advice.b_opt == 256
    advice = advise_max_num_seqs(opt, SloRule(slo_ms=6.0, latency="itl"))
    assert advice.b_opt == 16  # ITL 5.03 ms; 32 has 6.58 ms


def test_slo_rule_infeasible_is_reported_not_raised() -> None:
    sweep = _fixed(390)
    advice = advise_max_num_seqs(sweep[sweep["model"] == "opt-1.3b"], SloRule(slo_ms=1.0))
    assert not advice.feasible
    assert advice.b_opt is None and advice.memory is None
    assert "no run meets the rule" in advice.note
    assert advice.to_dict()["b_opt"] is None


def test_configured_axis_changes_b_opt_for_capped_batches() -> None:
    sweep = _fixed(130)
    opt = sweep[sweep["model"] == "opt-1.3b"]
    realised = advise_max_num_seqs(opt)
    configured = advise_max_num_seqs(opt, LatencyGrowthRule(batch_axis="configured"))
    assert realised.b_opt == 181 and realised.source_max_num_seqs == 512
    assert configured.b_opt == 512 and configured.max_num_seqs == 512


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": "d"}, "rule"),
        ({"name": "b", "eps": 0.1}, "eps"),
        ({"name": "a", "eps": 1.5}, "eps"),
        ({"name": "b", "latency_factor": 0.5}, "latency_factor"),
        ({"name": "c"}, "slo_ms"),
        ({"name": "c", "slo_ms": -1.0}, "slo_ms"),
        ({"name": "c", "slo_ms": 10.0, "latency_factor": 2.0}, "latency_factor"),
        ({"name": "b", "slo_ms": 10.0}, "slo_ms"),
        ({"name": "b", "latency": "ttft"}, "latency"),
        ({"name": "a", "batch_axis": "mean"}, "batch_axis"),
        ({"name": "b", "ref_batch": 0.0}, "ref_batch"),
    ],
)
def test_bad_rule_parameters_raise_config_error(kwargs: dict, field: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_rule(**kwargs)
    assert info.value.field == field
    assert "\n" not in str(info.value)


def test_unknown_rule_letter_in_advise_sweep() -> None:
    with pytest.raises(ConfigError, match="unknown rule"):
        advise_sweep(_fixed(390), "z")
