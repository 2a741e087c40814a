"""Vectorised ingest (issue 16): the whole-column readers give exactly what the row-by-row
readers give on valid files, and the row-by-row readers still name the bad row."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loratwin.errors import DataError
from loratwin.workload import adapters as adapters_mod
from loratwin.workload import trace as trace_mod

_ids = st.text(st.characters(whitelist_categories=("L", "N"), whitelist_characters="-_."),
               min_size=1, max_size=8)
_pos = st.integers(1, 2**31 - 1)
_rate = st.floats(0, 1e6, allow_nan=False, allow_infinity=False)


@st.composite
def adapter_tables(draw: st.DrawFn) -> str:
    ids = draw(st.lists(_ids, min_size=1, max_size=20, unique=True))
    means = draw(st.booleans())
    lines = ["id,rank,rate" + (",mean_input_tokens,mean_output_tokens" if means else "")]
    for i in ids:
        cells = [f" {i} " if draw(st.booleans()) else i, str(draw(_pos)), repr(draw(_rate))]
        if means:
            cells += [draw(st.sampled_from(["", "12.5", "300", "1e3"])) for _ in range(2)]
        lines.append(",".join(cells))
        if draw(st.integers(0, 5)) == 0:
            lines.append("")  # blank lines are skipped
    return "\n".join(lines) + "\n"


@st.composite
def trace_tables(draw: st.DrawFn) -> str:
    n = draw(st.integers(1, 30))
    ids = draw(st.lists(_ids, min_size=1, max_size=5, unique=True))
    rows = ["arrival_time_s,adapter_id,input_tokens,output_tokens,extra"]
    for _ in range(n):
        t = draw(st.floats(0, 1e5, allow_nan=False, allow_infinity=False))
        rows.append(f"{t!r},{draw(st.sampled_from(ids))},{draw(_pos)},{draw(_pos)},x")
    return "\n".join(rows) + "\n"


def _write(text: str) -> Path:
    path = Path(tempfile.mkdtemp()) / "t.csv"
    path.write_text(text)
    return path


@settings(max_examples=60, deadline=None)
@given(adapter_tables())
def test_adapters_fast_path_equals_row_by_row(text: str) -> None:
    path = _write(text)
    fast = adapters_mod._read_csv_fast(path)
    slow = adapters_mod._build(adapters_mod._read_csv(path), DataError)
    assert fast is not None and fast == slow


@settings(max_examples=60, deadline=None)
@given(trace_tables())
def test_trace_fast_path_equals_row_by_row(text: str) -> None:
    path = _write(text)
    fast = trace_mod._read_trace_fast(path)
    slow = trace_mod._read_trace_rows(path)
    assert fast is not None
    for a, b in zip(fast, slow, strict=True):
        a_np = a.to_pylist() if hasattr(a, "to_pylist") else a
        b_np = b.to_pylist() if hasattr(b, "to_pylist") else b
        assert np.array_equal(np.asarray(a_np, dtype=object), np.asarray(b_np, dtype=object))


@pytest.mark.parametrize(("text", "message"), [
    ("0.5,a,100,20\n\n-1,b,5,5\n", "row 4: arrival_time_s: must be a finite number >= 0"),
    ("0.5,a,100,20\n1,b,5.5,5\n", "row 3: input_tokens: must be an integer"),
    ("0.5,a,100,20\nnan,b,5,5\n", "row 3: arrival_time_s"),
    ("0.5, ,100,20\n", "row 2: adapter_id: missing value"),
])
def test_trace_errors_name_the_row(text: str, message: str) -> None:
    path = _write("arrival_time_s,adapter_id,input_tokens,output_tokens\n" + text)
    with pytest.raises(DataError, match=message):
        trace_mod.load_trace_csv(path)


def test_trace_adapter_not_among_the_adapters() -> None:
    path = _write("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                  "0.5,a,100,20\n\n1.0,typo,5,5\n")
    with pytest.raises(DataError, match=r"row 4: adapter_id: 'typo' is not among the 2 adapters"):
        trace_mod.load_trace_csv(path, adapter_ids=["a", "b"])
    req, ids = trace_mod.load_trace_csv(path, adapter_ids=["a", "typo"])
    assert ids == ["a", "typo"] and req.adapter.tolist() == [0, 1]


@settings(max_examples=40, deadline=None)
@given(st.lists(_ids, min_size=0, max_size=30))
def test_duplicate_check_matches_a_set(ids: list[str]) -> None:
    import pyarrow as pa

    assert adapters_mod._has_duplicates(pa.array(ids, pa.string())) == (len(set(ids)) < len(ids))


def test_hexadecimal_integers_are_refused_naming_the_row(tmp_path: Path) -> None:
    # pyarrow's int64 parser reads "0x10" as 16; the readers refuse it as the row reader does
    # (found by benchmarks/fuzz_cli.py through `workload drift`)
    ad = tmp_path / "ad.csv"
    ad.write_text("id,rank,rate\na,8,0.5\nb,0x10,0.2\n")
    with pytest.raises(Exception, match="row 3: rank"):
        adapters_mod.load_adapters(ad)
    tr = tmp_path / "tr.csv"
    tr.write_text("arrival_time_s,adapter_id,input_tokens,output_tokens\n0,a,5,5\n1,a,0x10,5\n")
    with pytest.raises(DataError, match="row 3: input_tokens"):
        trace_mod.load_trace_csv(tr)


def test_column_values_reads_chunks_offsets_and_nulls() -> None:
    import pyarrow as pa

    from loratwin.workload._arrow import column_values

    a = pa.array([1.0, None, 3.0, 4.0, None], pa.float64())
    got = column_values([a.slice(1, 3), a.slice(3)], np.float64)
    assert np.array_equal(got, [np.nan, 3.0, 4.0, 4.0, np.nan], equal_nan=True)
    idx = pa.array([5, 6, 7, 8], pa.int32()).slice(2)
    assert column_values([idx], np.int32).tolist() == [7, 8]


def test_trace_ids_differing_by_whitespace_are_one_adapter_in_time_order() -> None:
    path = _write("arrival_time_s,adapter_id,input_tokens,output_tokens\n"
                  "2.0, b,5,5\n0.5,a ,100,20\n1.0,b,7,7\n0.7,a,3,3\n")
    req, ids = trace_mod.load_trace_csv(path)
    assert ids == ["a", "b"]
    assert req.adapter.tolist() == [0, 0, 1, 1]
    assert req.arrival_s.tolist() == [0.5, 0.7, 1.0, 2.0]
    assert req.input_tokens.tolist() == [100, 3, 7, 5]
    slow = trace_mod._read_trace_rows(path)
    fast = trace_mod._read_trace_fast(path)
    assert fast is not None and fast[2] == slow[2] == ["b", "a"]
    assert fast[1].tolist() == slow[1].tolist() == [0, 1, 0, 1]
