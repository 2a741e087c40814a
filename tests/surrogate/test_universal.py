"""The universal (profile-normalised) surrogate: scales, inputs, file, binding, choice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import DataError
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate.capacity import CapacityTable
from loratwin.surrogate.features import FEATURES
from loratwin.surrogate.scales import ProfileScales
from loratwin.surrogate.universal import (
    UNIVERSAL_INPUTS,
    BoundSurrogate,
    UniversalSurrogate,
    profile_scales_at,
    universal_inputs,
)
from loratwin.surrogate.universal_build import calibrated_on, loo_training_names
from loratwin.surrogate.universal_train import (
    ProfileRows,
    _surrogate,
    fit_models,
    score_rows,
)

from .conftest import synthetic_rows


def _faster(profile: Profile, k: float) -> Profile:
    """``profile`` with every step cost and load time divided by ``k`` (same memory)."""
    step = profile.step.model_copy(update={
        f: getattr(profile.step, f) / k for f in type(profile.step).model_fields
        if f.endswith("_s")})
    loads = profile.loads.model_copy(update={
        "cpu_coef": tuple(c / k for c in profile.loads.cpu_coef),
        "disk_coef": tuple(c / k for c in profile.loads.disk_coef),
        "points": tuple(p.model_copy(update={"cpu_ms": p.cpu_ms / k, "disk_ms": p.disk_ms / k})
                        for p in profile.loads.points)})
    return profile.model_copy(update={"name": f"{profile.name}-x{k:g}", "step": step,
                                      "loads": loads})


@pytest.fixture(scope="module")
def llama() -> Profile:
    return load_profile("llama-3.1-8b-instruct")


@pytest.fixture(scope="module")
def scales(llama: Profile) -> ProfileScales:
    return ProfileScales.build(llama)


def _x(n: int = 40, seed: int = 0) -> np.ndarray:
    return synthetic_rows(n, seed)[list(FEATURES)].to_numpy(float)


def test_capacity_scale_is_the_capacity_table(llama: Profile, scales: ProfileScales) -> None:
    cap = CapacityTable.build(llama)
    np.testing.assert_array_equal(scales.tables["capacity"].log_capacity, cap.log_capacity)
    x = _x()
    s = profile_scales_at(x, scales)
    assert (s["step"] > 1e-3).all() and (s["step"] < 1.0).all()  # a step: ms to 100s of ms
    assert (s["idle"] <= s["step"] * (1 + 1e-9)).all()  # one request is the cheapest step
    assert (s["load"] > 0).all()
    # exact KV cache; 1 token for servers that do not start (too many slots)
    from loratwin.profile.model import kv_capacity

    for m, r, kv in zip(x[:, 5], x[:, 2], s["kv"], strict=True):
        assert kv == max(kv_capacity(llama, int(m), int(r), max_num_seqs=2048).tokens, 1)
    assert (s["kv"] > 1e4).mean() > 0.5


def test_inputs_are_invariant_to_time_scaling(llama: Profile, scales: ProfileScales) -> None:
    """A GPU k times faster at k times the rates looks the same to the model (module
    docstring of loratwin.surrogate.universal), but for the window measured in steps and
    the swap cycle measured in windows (the window is the same number of seconds)."""
    k = 2.0
    fast = ProfileScales.build(_faster(llama, k))
    x = _x()
    xk = x.copy()
    for col in ("sum_rate_req_s", "std_rate_req_s"):
        xk[:, FEATURES.index(col)] *= k
    u = universal_inputs(x, profile_scales_at(x, scales), 1800.0)
    uk = universal_inputs(xk, profile_scales_at(xk, fast), 1800.0)
    w = UNIVERSAL_INPUTS.index("window_steps")
    c = UNIVERSAL_INPUTS.index("cycle_over_window")
    np.testing.assert_allclose(np.delete(uk, [w, c], axis=1), np.delete(u, [w, c], axis=1),
                               rtol=1e-6)
    np.testing.assert_allclose(uk[:, w], k * u[:, w], rtol=1e-6)
    np.testing.assert_allclose(uk[:, c], u[:, c] / k, rtol=1e-6)
    assert (u[:, c] > 0).any()  # some rows swap adapters
    # a profile with more KV memory is not the same server
    assert not np.allclose(u[:, UNIVERSAL_INPUTS.index("load_ratio")],
                           universal_inputs(xk, profile_scales_at(xk, scales), 1800.0)[:, 0])


def _rows(profile: Profile, scales: ProfileScales, n: int, seed: int) -> ProfileRows:
    df = synthetic_rows(n, seed)
    x = df[list(FEATURES)].to_numpy(float)
    s = profile_scales_at(x, scales)
    targets = {t: df[t].to_numpy(float) for t in ("total_throughput_tok_s", "mean_itl_ms",
                                                  "mean_ttft_ms", "p99_ttft_ms")}
    offered = x[:, 0] * (x[:, 7] + x[:, 8])
    targets["served_fraction"] = np.clip(targets["total_throughput_tok_s"] / offered, 0, 1.2)
    targets["starvation"] = df["starvation"].to_numpy(float)
    return ProfileRows(profile.name, x, universal_inputs(x, s, 1800.0), s, targets)


@pytest.fixture(scope="module")
def tiny(llama: Profile, scales: ProfileScales) -> UniversalSurrogate:
    rows = _rows(llama, scales, 160, 1)
    sur = _surrogate(fit_models(rows), rows, {"window_s": 1800.0, "profiles": [
        {"name": llama.name, "rows": len(rows)}]})
    return sur


def test_file_round_trip_predicts_the_same(tiny: UniversalSurrogate, llama: Profile,
                                           scales: ProfileScales, tmp_path: Path) -> None:
    path = tmp_path / "u.npz"
    tiny.save(path)
    back = UniversalSurrogate.load(path)
    x = _x(30, 5)
    a, b = tiny.predict_raw(x, scales), back.predict_raw(x, scales)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert back.trained_on == [llama.name]
    assert np.isfinite(a["total_throughput_tok_s"]).all()
    assert ((a["starvation_probability"] >= 0) & (a["starvation_probability"] <= 1)).all()


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    junk = tmp_path / "j.npz"
    junk.write_bytes(b"junk")
    with pytest.raises(DataError, match="not a loratwin universal surrogate"):
        UniversalSurrogate.load(junk)
    with pytest.raises(DataError, match="not found"):
        UniversalSurrogate.load(tmp_path / "missing.npz")


def test_bound_surrogate_scores_and_names_itself(tiny: UniversalSurrogate, llama: Profile,
                                                 scales: ProfileScales) -> None:
    bound = BoundSurrogate(tiny, llama, scales)
    p = bound.predict(_x(12, 3))
    assert len(p) == 12 and p.starvation.dtype == bool
    assert "universal" in bound.describe() and "estimated" in bound.describe()
    assert "among them" in bound.describe()
    with pytest.raises(DataError):
        bound.predict(np.ones((2, 3)))
    sc = score_rows(tiny, _rows(llama, scales, 60, 9))
    assert 0 <= sc["total_throughput_tok_s"]["smape"] <= 50
    assert 0 <= sc["starvation"]["f1"] <= 1


def test_leave_one_out_drops_the_priors_calibrated_on_the_held_out(llama: Profile) -> None:
    qwen = load_profile("qwen-2.5-7b-instruct")
    fit = {"prior": {"calibrated_on": "llama-3.1-8b-instruct"}}
    prior_l = llama.model_copy(update={"name": "p-on-llama", "profile_kind": "prior",
                                       "fit_report": fit})
    assert calibrated_on(prior_l) == {"llama-3.1-8b-instruct"} and calibrated_on(llama) == set()
    names = loo_training_names([llama, qwen, prior_l], "llama-3.1-8b-instruct")
    assert names == ["qwen-2.5-7b-instruct"]
    assert loo_training_names([llama, qwen, prior_l], "qwen-2.5-7b-instruct") == [
        "llama-3.1-8b-instruct", "p-on-llama"]
