"""The surrogate against real serving runs: scores by hand, and ``surrogate evaluate-real``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

import loratwin.cli.surrogate_cmd  # noqa: F401  (registers the commands)
from loratwin.surrogate.real import score_real_runs
from tests.cli_run import run_cli

REAL_RUNS = Path(__file__).parents[2] / ".." / "shared" / "data" / "real_runs" / \
    "llama-3.1-8b-instruct.csv"


def test_scores_by_hand() -> None:
    pred = pd.DataFrame({
        "real_total_throughput_tok_s": [100.0, 300.0],
        "pred_total_throughput_tok_s": [100.0, 100.0],
        "real_mean_itl_ms": [10.0, 10.0], "pred_mean_itl_ms": [10.0, 30.0],
        "real_mean_ttft_ms": [50.0, 50.0], "pred_mean_ttft_ms": [50.0, 50.0],
        "real_p99_ttft_ms": [100.0, float("nan")], "pred_p99_ttft_ms": [300.0, 80.0],
        "real_starvation": [True, None], "pred_starvation": [False, True],
        "out_of_envelope": [False, True],
    })
    sc = score_real_runs(pred)
    assert sc["throughput_smape_pct"] == pytest.approx(100 / 2 * 200 / 400)
    assert sc["itl_smape_pct"] == pytest.approx(100 / 2 * 20 / 40)
    assert sc["ttft_smape_pct"] == 0.0
    assert sc["p99_ttft_smape_pct"] == pytest.approx(100 * 200 / 400)  # the known row only
    assert (sc["runs"], sc["starvation_runs"], sc["out_of_envelope"]) == (2, 1, 1)
    assert sc["starvation_accuracy"] == 0.0 and sc["starvation_f1"] == 0.0


@pytest.mark.skipif(not REAL_RUNS.is_file(), reason="needs ../shared/data")
def test_evaluate_real_cli(tmp_path: Path) -> None:
    runs = tmp_path / "runs.csv"
    df = pd.read_csv(REAL_RUNS).head(40)
    df.to_csv(runs, index=False)
    out = tmp_path / "r.json"
    assert run_cli(["surrogate", "evaluate-real", str(runs), "--json", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["summary"]["runs"] == int((df["status"] == "ok").sum()) == len(doc["runs"])
    assert 0 <= doc["summary"]["throughput_smape_pct"] < 20
    assert 0.5 <= doc["summary"]["starvation_accuracy"] <= 1


def test_evaluate_real_bad_input_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    assert run_cli(["surrogate", "evaluate-real", str(bad)]) == 2
    assert run_cli(["surrogate", "evaluate-real", str(tmp_path / "none.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("error:") for line in err)
