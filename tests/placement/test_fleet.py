"""Mixed GPU-type fleets (stand-in surrogates, no twin) and the capacity transfer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import loratwin.placement.predictor as predictor_mod
from loratwin.errors import ConfigError, DataError
from loratwin.placement.fleet import GpuType, parse_gpu_type, place_fleet
from loratwin.placement.problem import PlacementProblem
from loratwin.placement.transfer import CapacityTransferPredictor
from loratwin.profile.model import Profile
from loratwin.profile.store import save_profile
from loratwin.surrogate.features import FEATURES
from loratwin.workload.adapters import save_adapters_csv
from tests.cli_run import run_cli

from .conftest import AnalyticPredictor, make_adapters
from .helpers import check_valid


@pytest.fixture(scope="module")
def fast_profile(profile: Profile) -> Profile:
    """A derived profile of the same model on a made-up GPU about twice as fast."""
    step = profile.step.model_copy(update={k: v * 0.5 for k, v in profile.step.model_dump()
                                           .items() if k.endswith("_s")})
    return profile.model_copy(update={"name": "llama-3.1-8b-instruct-x2-test",
                                      "gpu": "Test X2", "step": step, "profile_kind": "prior"})


def _types(profile: Profile, fast: Profile, n: int, load: float, costs=(4.0, 7.0),
           counts=(None, None)) -> list[GpuType]:
    ads = make_adapters(n, load, ranks=(8, 16), seed=11)
    return [GpuType("H100", costs[0], counts[0], PlacementProblem(ads, profile,
                                                                  AnalyticPredictor(16000.0))),
            GpuType("X2", costs[1], counts[1], PlacementProblem(ads, fast,
                                                                AnalyticPredictor(30000.0)))]


def test_parse_gpu_type() -> None:
    assert parse_gpu_type("H100=4.5") == ("H100", 4.5, None)
    assert parse_gpu_type(" H200 =6:8") == ("H200", 6.0, 8)
    for bad in ("H100", "H100=", "=3", "H100=-1", "H100=3:0", "H100=x", "H100=3:y"):
        with pytest.raises(ConfigError, match="TYPE=COST_PER_HOUR"):
            parse_gpu_type(bad)


def test_fleet_is_never_dearer_than_one_type_and_mixes_when_it_pays(profile, fast_profile
                                                                    ) -> None:
    seen_mixed = False
    for load in (60.0, 110.0, 160.0):
        types = _types(profile, fast_profile, 48, load)
        fleet = place_fleet(types, confirm_borderline=False)
        singles = [v for k, v in fleet.candidates.items() if k.startswith("single:")]
        assert fleet.cost_per_hour <= min(singles)
        assert fleet.cost_per_hour == pytest.approx(
            sum({"H100": 4.0, "X2": 7.0}[t] for t in fleet.types))
        check_valid(types[0].problem, fleet.placement, may_split=True)
        by = {t.name: t for t in types}
        for t, g in zip(fleet.types, fleet.placement.servers, strict=True):
            assert g.max_loras <= by[t].problem.max_loras_limit(g.max_lora_rank)
            assert g.predicted["starvation_probability"] < 0.2
        if fleet.cost_per_hour < min(singles):
            seen_mixed = True
            assert fleet.chosen.startswith("mixed:") and set(fleet.types) == {"H100", "X2"}
    assert seen_mixed


def test_most_gpus_counts_are_honoured(profile, fast_profile) -> None:
    types = _types(profile, fast_profile, 48, 160.0, costs=(1.0, 7.0), counts=(2, None))
    fleet = place_fleet(types, confirm_borderline=False)
    assert fleet.counts().get("H100", 0) <= 2
    assert fleet.candidates["single:H100"] == float("inf")
    with pytest.raises(ConfigError, match="most-GPUs"):
        place_fleet(_types(profile, fast_profile, 48, 160.0, counts=(1, 1)),
                    confirm_borderline=False)


def test_capacity_transfer_scales_rates_and_times() -> None:
    ref = AnalyticPredictor(16000.0)
    half = CapacityTransferPredictor(ref, lambda *c: np.full(c[0].shape, 1e4),
                                     lambda *c: np.full(c[0].shape, 2e4))
    x = np.tile([4.0, 0.5, 16, 12, 4, 16, 32, 400.0, 150.0, 1.0], (3, 1))
    x[:, FEATURES.index("sum_rate_req_s")] = [10.0, 30.0, 60.0]
    got = half.predict(x)
    slow = x.copy()
    slow[:, FEATURES.index("sum_rate_req_s")] /= 2
    slow[:, FEATURES.index("std_rate_req_s")] /= 2
    want = ref.predict(slow)
    assert got.total_throughput_tok_s == pytest.approx(2 * want.total_throughput_tok_s)
    assert got.mean_itl_ms == pytest.approx(want.mean_itl_ms / 2)
    assert got.starvation_probability == pytest.approx(want.starvation_probability)
    assert half.ratio(x) == pytest.approx([2.0, 2.0, 2.0])


def test_place_gpu_types_cli(tmp_path: Path, fast_profile: Profile, monkeypatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    fast_path = save_profile(fast_profile, tmp_path / "x2.json") or tmp_path / "x2.json"

    def fake(profile: Profile, surrogate=None, **_):
        if profile.name == fast_profile.name and surrogate is None:
            raise DataError("no bundled surrogate")
        return AnalyticPredictor(30000.0 if profile.name == fast_profile.name else 16000.0)

    monkeypatch.setattr(predictor_mod, "load_predictor", fake)
    wl = save_adapters_csv(make_adapters(30, 110.0, seed=2), tmp_path / "w.csv")
    out = tmp_path / "fleet.json"
    base = ["place", str(wl), "--no-confirm", "--gpu-types", "H100=4", "--gpu-types", "X2=7"]
    code = run_cli([*base, "--gpu-profile", f"X2={fast_path}", "--gpu-surrogate",
                    "X2=any.npz", "--json", str(out)])
    assert code == 0, capsys.readouterr().err
    doc = json.loads(out.read_text())
    assert {s["gpu_type"] for s in doc["servers"]} <= {"H100", "X2"}
    assert doc["fleet"]["cost_per_hour"] == pytest.approx(
        sum(s["cost_per_hour"] for s in doc["servers"]))
    assert doc["fleet"]["types"]["X2"]["estimated"] is True  # a prior profile
    assert "estimated" in capsys.readouterr().out
    # bad inputs: one line each
    for args, msg in (([], "GPU type 'X2' has no profile"),
                      (["--gpu-profile", "X3=foo.json"], "not in --gpu-types"),
                      (["--gpu-profile", f"X2={fast_path}"], "no capacity table"),
                      (["--gpu-profile", "X2=qwen-2.5-7b-instruct"], "different models"),
                      (["--gpus", "3"], "gpus"),
                      (["--surrogate", "any.npz"], "--surrogate takes universal")):
        assert run_cli([*base, *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error:") and msg in err and err.count("\n") == 1, err
    # one type whose profile serves another model than --model's (found by the fuzz benchmark)
    assert run_cli(["place", str(wl), "--no-confirm", "--gpu-types", "X2=7",
                    "--gpu-profile", "X2=qwen-2.5-7b-instruct"]) == 2
    assert "different models" in capsys.readouterr().err


def test_mixed_packing_takes_the_batch_twin_confirmation(profile, fast_profile) -> None:
    """``pack_mixed`` calls the batch ``confirm`` of ``place`` (``twin_confirm``) with one GPU
    at a time; a GPU it rejects is shrunk, so fewer adapters go on the first GPU."""
    import dataclasses

    from loratwin.placement.fleet import pack_mixed
    from loratwin.placement.prefix_search import SearchOptions

    types = _types(profile, fast_profile, 48, 110.0)
    opts = dataclasses.replace(SearchOptions(), p_confirm=0.0)
    order = list(types[0].problem.adapters)
    seen: list[int] = []

    def accept(gpus):
        seen.append(len(gpus))
        return [True] * len(gpus)

    fleet, ok = pack_mixed(types, order, opts, {t.name: accept for t in types})
    assert ok and seen and set(seen) == {1}
    first = len(fleet[0][1].adapters)
    calls = {"n": 0}

    def reject_first(gpus):
        calls["n"] += 1
        return [calls["n"] > 1] * len(gpus)

    shrunk, ok2 = pack_mixed(types, order, opts, {t.name: reject_first for t in types})
    assert ok2 and len(shrunk[0][1].adapters) < first


def test_fleet_surrogate_choices_resolve_on_the_fly_per_type(profile, fast_profile,
                                                            monkeypatch) -> None:
    """``--surrogate on-the-fly`` applies to every type without a ``--gpu-surrogate``; each
    is resolved with its own profile (here a stand-in for the twin runs and training)."""
    from loratwin.cli.place_fleet import type_surrogates
    from loratwin.surrogate import on_the_fly

    asked: list[tuple[str, str]] = []

    def fake_resolve(prof, choice, *, max_num_seqs, on_runs):
        asked.append((prof.name, choice))
        on_runs(1, 1)
        return f"/cache/{prof.name}.npz"

    monkeypatch.setattr(on_the_fly, "resolve_choice", fake_resolve)
    profiles = {"H100": profile, "X2": fast_profile}
    got = type_surrogates(profiles, {"X2": "x2.npz", "X9": "y.npz"}, "on-the-fly", 256)
    assert got == {"H100": f"/cache/{profile.name}.npz", "X2": "x2.npz", "X9": "y.npz"}
    assert asked == [(profile.name, "on-the-fly")]
    assert type_surrogates(profiles, {}, None, 256) == {}
    assert type_surrogates(profiles, {}, "universal", 256) == {"H100": "universal",
                                                                "X2": "universal"}
