"""The on-the-fly per-profile surrogate (issue 13's fallback): made from twin runs of a tiny
design, cached by the profile's content, chosen by ``--surrogate`` and named in outputs;
and ``loratwin surrogate show`` on the universal surrogate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratwin.placement.predictor import load_predictor, predictor_note
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate import on_the_fly as otf
from loratwin.surrogate.dataset import Dataset
from loratwin.surrogate.design import DesignSpec, GridSpec, QmcSpec
from loratwin.surrogate.model import Surrogate
from loratwin.surrogate.train import Candidate, TrainConfig
from loratwin.workload.adapters import save_adapters_csv
from tests.cli_run import run_cli

from ..placement.conftest import make_adapters

#: 12 twin runs of 120 s: a few seconds.
TINY = DesignSpec(seed=3, duration_s=120.0, chunk_size=4, grid=GridSpec(points=4),
                  qmc=QmcSpec(points=8))
_SMALL = {"n_estimators": 20, "learning_rate": 0.3, "max_depth": 3}
TINY_TRAINING = otf.QUICK_TRAINING.model_copy(update={
    "folds": 2, "holdout_fraction": 0.0,
    "regressors": (Candidate(name="gb-small", family="gb", params=_SMALL),),
    "classifiers": (Candidate(name="gb-small", family="gb", params=_SMALL),)})


@pytest.fixture(scope="module")
def renamed() -> Profile:
    """A profile nobody bundled a surrogate for (in memory only)."""
    return load_profile("qwen-2.5-7b-instruct").model_copy(update={"name": "qwen-elsewhere"})


@pytest.fixture(scope="module")
def made(renamed: Profile, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    cache = tmp_path_factory.mktemp("cache")
    calls: list[tuple[int, int]] = []
    path = otf.ensure_on_the_fly(renamed, cache_dir=cache, spec=TINY, training=TINY_TRAINING,
                                 on_runs=lambda d, t: calls.append((d, t)))
    return path, calls


def test_made_from_twin_runs_with_progress(made: tuple[Path, list], renamed: Profile) -> None:
    path, calls = made
    assert path.is_file() and path.parent.name.startswith("qwen-elsewhere-")
    assert calls[0] == (0, 12) and calls[-1] == (12, 12)
    sur = Surrogate.load(path)
    assert sur.profile == "qwen-elsewhere" and sur.meta["on_the_fly"]["runs"] == 12
    assert otf.surrogate_kind(sur) == "on-the-fly"
    pred = sur.predict_one([0.5, 0.01, 16, 16, 0, 8, 16, 300, 150, 1.0])
    assert pred.total_throughput_tok_s > 0


def test_cached_by_content(made: tuple[Path, list], renamed: Profile,
                           monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = made
    cache = path.parent.parent

    def no_runs(*_a: object, **_k: object) -> None:
        raise AssertionError("the cached surrogate should have been used")

    monkeypatch.setattr(otf, "_run", no_runs)
    assert otf.ensure_on_the_fly(renamed, cache_dir=cache, spec=TINY) == path
    edited = renamed.model_copy(update={"sharegpt_mean_input_tokens":
                                        renamed.sharegpt_mean_input_tokens + 1})
    other = otf.cached_path(edited, cache_dir=cache, spec=TINY)
    assert other != path and not other.is_file()
    assert otf.cached_path(renamed, cache_dir=cache, spec=TINY, max_num_seqs=256) != path


def test_universal_sufficient() -> None:
    good = {"total_throughput_tok_s": {"smape": 3.9}, "starvation": {"f1": 0.961}}
    bad_f1 = {"total_throughput_tok_s": {"smape": 3.75}, "starvation": {"f1": 0.939}}
    bad_thr = {"total_throughput_tok_s": {"smape": 4.1}, "starvation": {"f1": 0.99}}
    assert otf.universal_sufficient({"leave_one_out": {"a": good, "b": good}})
    assert not otf.universal_sufficient({"leave_one_out": {"a": good, "b": bad_f1}})
    assert not otf.universal_sufficient({"leave_one_out": {"a": bad_thr}})
    assert not otf.universal_sufficient({})
    assert not otf.universal_sufficient({"leave_one_out": {"a": {"starvation": {}}}})


def test_choice(made: tuple[Path, list], renamed: Profile,
                monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path, _ = made
    monkeypatch.setattr(otf, "QUICK_DESIGN", TINY)
    monkeypatch.setenv("LORATWIN_SURROGATE_CACHE", str(path.parent.parent))
    llama = load_profile("llama-3.1-8b-instruct")
    assert otf.resolve_choice(llama, None) == llama.name
    assert otf.resolve_choice(llama, "x.npz") == "x.npz"
    monkeypatch.setattr(otf, "universal_sufficient", lambda _m: True)
    assert otf.resolve_choice(renamed, otf.AUTO) == otf.UNIVERSAL
    assert otf.resolve_choice(renamed, None) == otf.UNIVERSAL
    monkeypatch.setattr(otf, "universal_sufficient", lambda _m: False)
    # insufficient: the default takes a cached on-the-fly surrogate, never starts runs
    assert otf.resolve_choice(renamed, None) == str(path)
    assert otf.resolve_choice(renamed, otf.AUTO) == str(path)
    monkeypatch.setenv("LORATWIN_SURROGATE_CACHE", str(tmp_path / "empty"))
    assert otf.resolve_choice(renamed, None) == otf.UNIVERSAL
    pred = load_predictor(renamed, str(path))
    assert "surrogate: on-the-fly" in predictor_note(pred)
    assert "12 twin runs of qwen-elsewhere" in predictor_note(pred)


def test_cli_place_and_predict_on_the_fly(made: tuple[Path, list], renamed: Profile,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = made
    monkeypatch.setattr(otf, "QUICK_DESIGN", TINY)
    monkeypatch.setattr(otf, "QUICK_TRAINING", TINY_TRAINING)
    # the same profile content: the surrogate made above answers from the cache
    monkeypatch.setenv("LORATWIN_SURROGATE_CACHE", str(path.parent.parent))
    prof = tmp_path / "p.json"
    prof.write_text(renamed.model_dump_json())
    wl = save_adapters_csv(make_adapters(12, 10.0, ranks=(8, 16), seed=1), tmp_path / "w.csv")
    out = tmp_path / "plan.json"
    assert run_cli(["place", str(wl), "--model", str(prof), "--surrogate", "on-the-fly",
                    "--no-confirm", "--json", str(out)]) == 0
    assert "surrogate: on-the-fly" in capsys.readouterr().out
    assert json.loads(out.read_text())["surrogate"]["kind"] == "on-the-fly"
    csv = tmp_path / "f.csv"
    csv.write_text("sum_rate_req_s,std_rate_req_s,max_rank,mean_rank,std_rank,max_loras,"
                   "served_adapters\n2,0.1,16,12,4,8,16\n")
    pj = tmp_path / "pred.json"
    assert run_cli(["predict", str(csv), "--model", str(prof), "--surrogate", "on-the-fly",
                    "--json", str(pj)]) == 0
    assert "(on-the-fly)" in capsys.readouterr().out
    assert json.loads(pj.read_text())["surrogate"] == "on-the-fly"
    assert run_cli(["predict", str(csv), "--model", str(prof), "--surrogate", "bogus"]) != 0


def test_show_reads_the_universal_surrogate(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib import resources

    assert run_cli(["surrogate", "show", "--model", "universal"]) == 0
    text = capsys.readouterr().out
    assert "universal surrogate" in text and "leave one profile out" in text
    path = resources.files("loratwin.surrogate").joinpath("bundled", "universal.npz")
    assert run_cli(["surrogate", "show", "--model", str(path)]) == 0
    assert "envelope load_ratio" in capsys.readouterr().out
    assert run_cli(["surrogate", "show", "--model", "universal", "--explain"]) != 0


def test_train_surrogate_takes_a_profile_in_memory(renamed: Profile) -> None:
    from loratwin.errors import ConfigError
    from loratwin.surrogate.train import train_surrogate

    from .conftest import synthetic_rows

    ds = Dataset(synthetic_rows(30), "qwen-elsewhere", "", {})
    cfg = TrainConfig(folds=2, holdout_fraction=0.0, regressors=TINY_TRAINING.regressors,
                      classifiers=TINY_TRAINING.classifiers,
                      throughput_transforms=("fraction",), latency_transforms=("log",))
    res = train_surrogate(ds, cfg, profile=renamed)
    assert res.surrogate.profile == "qwen-elsewhere"
    with pytest.raises(ConfigError):
        train_surrogate(ds, cfg, profile=load_profile("llama-3.1-8b-instruct"))
