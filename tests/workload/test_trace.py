"""Request trace CSVs and the Azure LLM inference traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import DataError
from loratwin.workload.bundled import azure_code_path
from loratwin.workload.trace import load_azure_trace, load_trace_csv, save_trace_csv
from loratwin.workload.types import Requests

HEADER = "arrival_time_s,adapter_id,input_tokens,output_tokens\n"


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_load_sorts_and_maps_ids(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "2.5,b,10,20\n0.5,a,11,21\n1.0,007,12,22\n2.5,a,13,23\n")
    req, ids = load_trace_csv(path)
    assert req.arrival_s.tolist() == [0.5, 1.0, 2.5, 2.5]
    assert ids == ["a", "007", "b"]  # first appearance in time order, ids kept as text
    assert [ids[k] for k in req.adapter] == ["a", "007", "b", "a"]  # tie keeps file order
    assert req.input_tokens.tolist() == [11, 12, 10, 13]
    assert req.output_tokens.tolist() == [21, 22, 20, 23]
    assert req.arrival_s.dtype == np.float64
    assert req.adapter.dtype == req.input_tokens.dtype == req.output_tokens.dtype == np.int32


def test_round_trip(tmp_path: Path) -> None:
    req = Requests(np.array([0.0, 1 / 3, 2.0]), np.array([1, 0, 1], np.int32),
                   np.array([5, 6, 7], np.int32), np.array([8, 9, 10], np.int32))
    back, ids = load_trace_csv(save_trace_csv(req, ["x", "y"], tmp_path / "t.csv"))
    assert back.arrival_s.tolist() == req.arrival_s.tolist()
    assert [ids[k] for k in back.adapter] == ["y", "x", "y"]
    assert back.input_tokens.tolist() == [5, 6, 7]


@pytest.mark.parametrize(("rows", "expected"), [
    ("0,a,1,1\nsoon,a,1,1\n", "row 3: arrival_time_s: not a number (got 'soon')"),
    ("0,a,1,1\n-1,a,1,1\n", "row 3: arrival_time_s: must be a finite number >= 0 (got -1)"),
    ("0,a,1,1\ninf,a,1,1\n", "row 3: arrival_time_s: must be a finite number >= 0"),
    ("0,a,1,1\n1,a,0,5\n", "row 3: input_tokens: must be >= 1 (got 0)"),
    ("0,a,1,1\n1,a,4,2.5\n", "row 3: output_tokens: must be an integer (got 2.5)"),
    ("0,a,1,1\n1,,4,2\n", "row 3: adapter_id: missing value"),
    ("0,a,1,1\n1,a,4\n", "row 3: output_tokens: missing value"),
    ("0,a,1,1\n\n\n1,a,x,2\n", "row 5: input_tokens: not a number (got 'x')"),
])
def test_malformed_rows_name_file_row_and_column(tmp_path: Path, rows: str,
                                                 expected: str) -> None:
    path = write(tmp_path, HEADER + rows)
    with pytest.raises(DataError) as exc:
        load_trace_csv(path)
    assert str(exc.value).startswith(f"{path} row")
    assert expected in str(exc.value)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"missing\.csv: file not found"):
        load_trace_csv(tmp_path / "missing.csv")
    with pytest.raises(DataError, match="missing column 'adapter_id'"):
        load_trace_csv(write(tmp_path, "arrival_time_s,input_tokens,output_tokens\n0,1,1\n"))
    with pytest.raises(DataError, match="empty file"):
        load_trace_csv(write(tmp_path, ""))
    with pytest.raises(DataError, match="malformed CSV"):
        load_trace_csv(write(tmp_path, HEADER + "0,a,1,1\n1,a,1,1,9,9\n"))


def test_empty_trace_is_valid(tmp_path: Path) -> None:
    req, ids = load_trace_csv(write(tmp_path, HEADER))
    assert len(req) == 0 and ids == []


def test_bundled_azure_traces_match_published_statistics() -> None:
    conv = load_azure_trace()  # default: bundled conversation trace
    assert list(conv.columns) == ["arrival_s", "input_tokens", "output_tokens"]
    assert len(conv) == 19_366
    assert conv["arrival_s"].iloc[0] == 0.0
    assert conv["arrival_s"].iloc[-1] == pytest.approx(3501.721937, abs=1e-6)
    assert np.all(np.diff(conv["arrival_s"].to_numpy()) >= 0)
    assert conv["input_tokens"].mean() == pytest.approx(1154.6974, abs=1e-3)
    assert conv["output_tokens"].mean() == pytest.approx(211.1259, abs=1e-3)
    gaps = np.diff(conv["arrival_s"].to_numpy())
    assert gaps.std(ddof=1) / gaps.mean() == pytest.approx(1.0942, abs=1e-3)
    code = load_azure_trace("azure-code")
    assert len(code) == 8_819
    assert code["arrival_s"].iloc[-1] == pytest.approx(3435.948056, abs=1e-6)
    assert load_azure_trace(azure_code_path()).equals(code)


def test_azure_bad_timestamp_and_tokens(tmp_path: Path) -> None:
    head = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
    ok = write(tmp_path, head + "2023-11-16 18:15:47,3,4\n2023-11-16 18:15:46.5000000,1,2\n",
               "ok.csv")
    df = load_azure_trace(ok)
    assert df["arrival_s"].tolist() == [0.0, 0.5]  # sorted, relative to the first request
    assert df["input_tokens"].tolist() == [1, 3]
    bad = write(tmp_path, head + "2023-11-16 18:15:46.5,1,2\nyesterday,1,2\n", "bad.csv")
    with pytest.raises(DataError, match=r"bad.csv row 3: TIMESTAMP: expected"):
        load_azure_trace(bad)
    zero = write(tmp_path, head + "2023-11-16 18:15:46.5,1,0\n", "zero.csv")
    with pytest.raises(DataError, match=r"row 2: GeneratedTokens: must be >= 1 \(got 0\)"):
        load_azure_trace(zero)
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_azure_trace(tmp_path / "nope.csv")
