"""CLI: dataset, train, predict and surrogate show/evaluate; one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import loratwin.cli.surrogate_cmd  # noqa: F401  (registers the commands)
from tests.cli_run import run_cli

HEADER = "sum_rate_req_s,std_rate_req_s,max_rank,mean_rank,std_rank,max_loras,served_adapters"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory, trained) -> Path:
    path = tmp_path_factory.mktemp("m") / "s.npz"
    trained.surrogate.save(path)
    return path


def test_predict_csv_and_json(tmp_path: Path, model_file: Path, capsys) -> None:
    csv = tmp_path / "f.csv"
    csv.write_text(f"{HEADER},arrival_cv\n6.4,0.04,32,16,4,32,128,\n0.5,0.005,32,16,4,8,64,1.5\n"
                   f"900,0,64,64,0,1,5000,1\n")
    out = tmp_path / "p.json"
    assert run_cli(["predict", str(csv), "--model", str(model_file), "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 3
    assert set(rows[0]) == {"total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms",
                            "starvation", "starvation_probability", "out_of_envelope"}
    assert [r["out_of_envelope"] for r in rows] == [False, False, True]
    assert isinstance(rows[0]["starvation"], bool)
    text = capsys.readouterr().out
    assert "throughput" in text and "outside the training envelope" in text


@pytest.mark.parametrize(("content", "model", "message"), [
    ("sum_rate_req_s,max_rank\n1,8\n", None, "f.csv: missing column 'std_rate_req_s'"),
    (f"{HEADER}\n1,0,8,8,0,1,4\n", "nope", "error: model: no surrogate for 'nope'"),
    (None, None, "error: file not found"),
    (f"{HEADER}\n1,0,8,8,0,abc,4\n", None, "f.csv row 2: max_loras: must be a finite number"),
    (f"{HEADER}\n1,0,8,9,0,2,4\n", None, "f.csv row 2: mean_rank: must be <= max_rank"),
    (f"{HEADER}\n1,0.9,8,8,0,2,4\n", None, "f.csv row 2: std_rate_req_s: too large"),
    (f"{HEADER}\n\n1,0,8,8,0,2,4.5\n", None, "f.csv row 3: served_adapters: must be an int"),
])
def test_predict_errors(tmp_path: Path, model_file: Path, capsys, content, model,
                        message) -> None:
    csv = tmp_path / "f.csv"
    if content is not None:
        csv.write_text(content)
    rc = run_cli(["predict", str(csv), "--model", model or str(model_file)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_dataset_train_show_evaluate(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({
        "duration_s": 30, "chunk_size": 8,
        "grid": {"points": 12}, "qmc": {"points": 12, "served": [8, 40]},
    }))
    data = tmp_path / "ds"
    assert run_cli(["dataset", str(grid), "--out", str(data), "--max-chunks", "1"]) == 0
    assert "2 chunks still to run" in capsys.readouterr().out
    assert run_cli(["dataset", str(grid), "--out", str(data)]) == 0
    assert "computed 16, already there 8" in capsys.readouterr().out
    model = tmp_path / "s.npz"
    assert run_cli(["train", str(data), "--model", "llama-3.1-8b-instruct", "-o", str(model),
                  "--explain", "--folds", "2", "--holdout", "0"]) == 0
    out = capsys.readouterr().out
    assert "cross-validation" in out and "chosen" in out and "IF " in out
    assert model.stat().st_size > 0
    assert run_cli(["surrogate", "show", "--model", str(model)]) == 0
    assert "envelope served_adapters" in capsys.readouterr().out
    ev = tmp_path / "ev.json"
    assert run_cli(["surrogate", "evaluate", str(data), "--model", str(model),
                  "--json", str(ev)]) == 0
    assert json.loads(ev.read_text())["rows"] == 24
    # errors: wrong profile, bad output name, missing data set
    assert run_cli(["train", str(data), "--model", "qwen-2.5-7b-instruct", "-o",
                  str(model)]) == 2
    assert run_cli(["train", str(data), "-o", str(tmp_path / "s.bin")]) == 2
    assert run_cli(["train", str(tmp_path / "none"), "-o", str(model)]) == 2
    assert run_cli(["dataset", str(tmp_path / "none.yaml"), "--out", str(data)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 4 and all(e.startswith("error: ") for e in err)
