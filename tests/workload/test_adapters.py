"""Adapter list reading, validation and writing."""

from __future__ import annotations

from pathlib import Path

import pytest

from loratwin.errors import ConfigError, DataError
from loratwin.workload.adapters import check_adapters, load_adapters, save_adapters_csv
from loratwin.workload.types import Adapter


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_with_and_without_means(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv",
                 "id,rank,rate,mean_input_tokens,mean_output_tokens\n"
                 "a,8,0.5,100,50\n"
                 "b,16,0,,\n")
    adapters = load_adapters(path)
    assert adapters == [Adapter("a", 8, 0.5, 100.0, 50.0), Adapter("b", 16, 0.0, None, None)]
    assert isinstance(adapters[0].rank, int)


def test_yaml_list_and_mapping(tmp_path: Path) -> None:
    listed = write(tmp_path, "a.yaml",
                   "- {id: a, rank: 8, rate: 1.5}\n- {id: 7, rank: 16, rate: 2}\n")
    mapped = write(tmp_path, "b.yml",
                   "duration_s: 10\nadapters:\n  - id: a\n    rank: 8\n    rate: 1.5\n"
                   "    mean_input_tokens: 300\n")
    assert load_adapters(listed) == [Adapter("a", 8, 1.5), Adapter("7", 16, 2.0)]
    assert load_adapters(mapped) == [Adapter("a", 8, 1.5, 300.0, None)]


def test_round_trip(tmp_path: Path) -> None:
    adapters = [Adapter("x,1", 8, 1 / 3, 123.456, None), Adapter("y", 64, 1e-9)]
    back = load_adapters(save_adapters_csv(adapters, tmp_path / "sub" / "out.csv"))
    assert back == adapters
    plain = [Adapter("p", 8, 0.25)]
    path = save_adapters_csv(plain, tmp_path / "plain.csv")
    assert path.read_text().splitlines()[0] == "id,rank,rate"
    assert load_adapters(path) == plain


def test_negative_rate_message_names_file_row_field(tmp_path: Path) -> None:
    path = write(tmp_path, "adapters.csv", "id,rank,rate\na,8,1\nb,8,-1\n")
    with pytest.raises(DataError) as exc:
        load_adapters(path)
    assert str(exc.value) == f"{path} row 3: rate: must be >= 0 (got -1)"


@pytest.mark.parametrize(("body", "expected"), [
    ("a,8,1\na,16,2\n", "row 3: id: duplicate id 'a' (first at "),
    ("a,8.5,1\n", "row 2: rank: must be a positive integer (got 8.5)"),
    ("a,0,1\n", "row 2: rank: must be a positive integer (got 0)"),
    ("a,8,fast\n", "row 2: rate: must be a number (got 'fast')"),
    ("a,8,nan\n", "row 2: rate: must be finite (got nan)"),
    ("a,8,inf\n", "row 2: rate: must be finite (got inf)"),
    ("a,8,\n", "row 2: rate: missing value"),
    ("a,8,1,2\n", "row 2: expected 3 fields, got 4"),
    (" ,8,1\n", "row 2: id: missing value"),
])
def test_csv_errors(tmp_path: Path, body: str, expected: str) -> None:
    path = write(tmp_path, "adapters.csv", "id,rank,rate\n" + body)
    with pytest.raises(DataError, match="row") as exc:
        load_adapters(path)
    assert str(exc.value).startswith(f"{path} ")
    assert expected in str(exc.value)


def test_blank_lines_keep_file_row_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "adapters.csv", "id,rank,rate\n\na,8,1\n\nb,8,-2\n")
    with pytest.raises(DataError, match=r"row 5: rate: must be >= 0 \(got -2\)"):
        load_adapters(path)


def test_file_level_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_adapters(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="missing column 'rate'"):
        load_adapters(write(tmp_path, "a.csv", "id,rank\na,8\n"))
    with pytest.raises(DataError, match="unknown column 'mean_input_token'"):
        load_adapters(write(tmp_path, "b.csv", "id,rank,rate,mean_input_token\na,8,1,3\n"))
    with pytest.raises(DataError, match="no adapters"):
        load_adapters(write(tmp_path, "c.csv", "id,rank,rate\n"))
    with pytest.raises(DataError, match="empty file"):
        load_adapters(write(tmp_path, "d.csv", ""))
    with pytest.raises(DataError, match=r"unsupported adapter file type '\.json'"):
        load_adapters(write(tmp_path, "e.json", "[]"))


def test_yaml_errors_name_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml",
                 "adapters:\n  - {id: a, rank: 8, rate: 1}\n  - id: b\n    rank: 8\n    rate: -3\n")
    with pytest.raises(DataError) as exc:
        load_adapters(path)
    assert str(exc.value) == f"{path} line 3: rate: must be >= 0 (got -3)"
    with pytest.raises(DataError, match=r"line 2: rnak: unknown field"):
        load_adapters(write(tmp_path, "b.yaml", "- {id: a, rank: 8, rate: 1}\n"
                                                "- {id: b, rnak: 8, rate: 1}\n"))
    with pytest.raises(DataError, match=r"line 1: rank: must be a positive integer \(got True\)"):
        load_adapters(write(tmp_path, "c.yaml", "- {id: a, rank: true, rate: 1}\n"))
    with pytest.raises(DataError, match="expected a list of adapters or a mapping"):
        load_adapters(write(tmp_path, "d.yaml", "servers: []\n"))
    with pytest.raises(DataError, match="invalid YAML"):
        load_adapters(write(tmp_path, "e.yaml", "- {id: a, rank: 8\n"))


def test_check_adapters() -> None:
    check_adapters([Adapter("a", 8, 1.0)])
    with pytest.raises(ConfigError, match=r"adapters\[1\]: rate: must be >= 0 \(got -0.5\)"):
        check_adapters([Adapter("a", 8, 1.0), Adapter("b", 8, -0.5)])
    with pytest.raises(ConfigError, match=r"adapters\[1\]: id: duplicate id 'a'"):
        check_adapters([Adapter("a", 8, 1.0), Adapter("a", 8, 1.0)])
    with pytest.raises(ConfigError, match="at least one adapter"):
        check_adapters([])


def test_yaml_empty(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty file"):
        load_adapters(write(tmp_path, "a.yaml", "# nothing\n"))
    with pytest.raises(DataError, match="adapters: expected a list of mappings"):
        load_adapters(write(tmp_path, "b.yaml", "adapters:\n"))
