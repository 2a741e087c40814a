"""Placement and prediction for a profile without a surrogate of its own (issue 13): the
bundled universal surrogate answers, and every output says so and says "estimated"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loratwin.placement.predictor import SurrogatePredictor, load_predictor, predictor_note
from loratwin.profile.store import load_profile
from loratwin.surrogate.model import Surrogate, bundled_surrogates
from loratwin.surrogate.universal import BoundSurrogate
from loratwin.workload.adapters import save_adapters_csv
from tests.cli_run import run_cli

from .conftest import make_adapters


@pytest.fixture(scope="module")
def prior(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prior") / "q3.json"
    assert run_cli(["profile", "prior", "--hf-config", "qwen3-8b", "--gpu", "h200",
                    "-o", str(path)]) == 0
    return path


def test_the_universal_surrogate_is_not_a_profile_surrogate() -> None:
    assert "universal" not in bundled_surrogates()
    assert "llama-3.1-8b-instruct" in bundled_surrogates()


def test_predictor_choice(prior: Path) -> None:
    own = load_predictor(load_profile("llama-3.1-8b-instruct"))
    assert isinstance(own.surrogate, Surrogate)
    assert "llama-3.1-8b-instruct's own" in predictor_note(own)
    uni = load_predictor(load_profile(prior))
    assert isinstance(uni, SurrogatePredictor) and isinstance(uni.surrogate, BoundSurrogate)
    note = predictor_note(uni)
    assert "universal" in note and "estimated" in note and "not among them" in note


def test_place_with_a_prior_profile(prior: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    wl = save_adapters_csv(make_adapters(60, 40.0, ranks=(8, 16, 32), seed=3),
                           tmp_path / "w.csv")
    out = tmp_path / "p.json"
    code = run_cli(["place", str(wl), "--model", str(prior), "--no-confirm", "--json",
                    str(out)])
    text = capsys.readouterr().out
    assert code == 0
    assert "all figures are estimated" in text and "surrogate: universal" in text
    doc = json.loads(out.read_text())
    assert doc["surrogate"]["kind"] == "universal" and doc["surrogate"]["estimated"] is True
    assert doc["profile"]["profile_kind"] == "prior"
    assert sum(len(s["adapters"]) for s in doc["servers"]) == 60


def test_predict_with_a_prior_profile(prior: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text("sum_rate_req_s,std_rate_req_s,max_rank,mean_rank,std_rank,max_loras,"
                   "served_adapters\n2,0.1,16,12,4,8,16\n200,1,16,12,4,8,16\n")
    out = tmp_path / "p.json"
    assert run_cli(["predict", str(csv), "--model", str(prior), "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "estimated" in text and "universal" in text
    doc = json.loads(out.read_text())
    assert doc["surrogate"] == "universal" and doc["profile_kind"] == "prior"
    low, high = doc["rows"]
    assert low["starvation"] is False and high["starvation"] is True  # 2 vs 200 req/s
    assert high["total_throughput_tok_s"] > low["total_throughput_tok_s"]
