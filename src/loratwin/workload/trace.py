"""Request traces: loratwin's per-request CSV and the Azure LLM inference traces 2023.

Request trace CSV (:func:`load_trace_csv`, :func:`save_trace_csv`)
    Columns ``arrival_time_s,adapter_id,input_tokens,output_tokens`` (others ignored), one
    request per row: arrival in s since the start of the run (finite, >= 0), the adapter's
    id (any non-empty text), prompt and output length in tokens (integers >= 1).
Azure LLM inference trace 2023 (:func:`load_azure_trace`)
    Columns ``TIMESTAMP`` (``YYYY-MM-DD HH:MM:SS.fffffff``, 100 ns resolution, no time
    zone), ``ContextTokens`` (prompt tokens), ``GeneratedTokens`` (output tokens); no
    adapter ids. Bundled as ``azure-conv`` and ``azure-code`` (data README, ``workloads/``).

Rows are numbered like file lines, header = row 1. Errors name the file, row and column.
"""

from __future__ import annotations

import csv
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from loratwin.errors import DataError
from loratwin.workload._arrow import column_values
from loratwin.workload._csvio import INT32_MAX, float_column, int_column, read_csv_checked
from loratwin.workload.bundled import resolve_data_path
from loratwin.workload.types import Requests

if TYPE_CHECKING:
    import pandas as pd

TRACE_COLUMNS: tuple[str, ...] = ("arrival_time_s", "adapter_id", "input_tokens",
                                  "output_tokens")
AZURE_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_trace_csv(path: str | Path, adapter_ids: Collection[str] | None = None
                   ) -> tuple[Requests, list[str]]:
    """Read a request trace CSV and sort it by arrival time.

    Whole columns are parsed and checked at once (pyarrow, ids checked on their dictionary
    of distinct values, pandas not imported); a file that does not pass is read again row
    by row only to name the first bad row.

    Parameters
    ----------
    path:
        CSV with columns ``arrival_time_s,adapter_id,input_tokens,output_tokens``.
    adapter_ids:
        If given, the adapters the trace may use: a row naming another adapter is an error
        (the adapters of a ``--adapters`` file, so that a misspelt id is not replayed as a
        new adapter).

    Returns
    -------
    requests : Requests
        n requests in arrival order (stable sort: equal times keep file order);
        ``requests.adapter`` indexes ``adapter_ids``.
    adapter_ids : list[str]
        Adapter id of each index, in order of first appearance in time order.

    Raises
    ------
    DataError
        Missing file, missing column, or a malformed row: missing value, non-numeric,
        negative or non-finite time, tokens not an integer >= 1, an adapter not among
        ``adapter_ids`` (message names file, row and column, e.g.
        ``trace.csv row 7: input_tokens: must be >= 1 (got 0)``).
    """
    path = Path(path)
    cols = _read_trace_fast(path)
    if cols is None:
        cols = _read_trace_rows(path)
    t, codes, names, inp, out = cols
    if adapter_ids is not None:
        _check_known_ids(path, codes, names, adapter_ids)
    if t.size > 1 and not bool((t[1:] >= t[:-1]).all()):
        order = np.argsort(t, kind="stable")
        t, codes, inp, out = t[order], codes[order], inp[order], out[order]
    codes, names = _first_seen_order(codes, names)
    requests = Requests(arrival_s=t, adapter=codes.astype(np.int32),
                        input_tokens=inp.astype(np.int32), output_tokens=out.astype(np.int32))
    return requests, names


# (arrival s, adapter code per row, adapter id per code, input tokens, output tokens); codes
# number the ids in order of first appearance in the file
_TraceColumns = tuple[np.ndarray, np.ndarray, list[str], np.ndarray, np.ndarray]


def _first_seen_order(codes: np.ndarray, names: list[str]) -> tuple[np.ndarray, list[str]]:
    """Renumber ``codes`` (and reorder ``names``) by first appearance along ``codes``."""
    if codes.size == 0:
        return codes, []
    seen = np.maximum.accumulate(codes)
    if codes[0] == 0 and bool((codes[1:] <= seen[:-1] + 1).all()):
        return codes, names[:int(seen[-1]) + 1]
    used, first = np.unique(codes, return_index=True)
    ranked = used[np.argsort(first, kind="stable")]
    new = np.zeros(len(names), dtype=np.int64)
    new[ranked] = np.arange(ranked.size)
    return new[codes], [names[int(c)] for c in ranked]


def _adapter_codes(col: pa.ChunkedArray) -> tuple[np.ndarray, list[str]] | None:
    """An id column as (code per row, trimmed id per code), ids numbered by first
    appearance; ``None`` if an id is empty after trimming whitespace. The column is read as
    strings and encoded here: pyarrow 26 converts a dictionary-typed CSV column on one
    thread (0.11 s wall for this reader's 862k-row benchmark trace against 0.07 s)."""
    col = col.dictionary_encode().unify_dictionaries()
    if col.num_chunks == 0:
        return None
    raw = col.chunk(0).dictionary
    codes = column_values((c.indices for c in col.chunks), np.int32)
    trimmed = pc.utf8_trim_whitespace(raw).to_pylist()
    if any(not name for name in trimmed):
        return None
    # " a" and "a" are one adapter: map each dictionary entry to its trimmed id's first entry
    index: dict[str, int] = {}
    merged = np.array([index.setdefault(name, len(index)) for name in trimmed], dtype=np.int64)
    return merged[codes], list(index)


def _read_trace_fast(path: Path) -> _TraceColumns | None:
    """Typed columnar read and whole-column checks; ``None`` if anything is off."""
    if not path.is_file():
        return None
    # token counts read as float64 and checked integral, as the row reader does: pyarrow's
    # int64 parser takes hexadecimal ("0x10" = 16), which the row reader refuses
    types = {"arrival_time_s": pa.float64(), "adapter_id": pa.string(),
             "input_tokens": pa.float64(), "output_tokens": pa.float64()}
    # malloc rather than pyarrow's default mimalloc pool: the 862k-row benchmark trace's
    # read took 0.045 s of system time against 0.097 s (means of 8 fresh processes each,
    # pyarrow 26, loaded 2-core machine), mimalloc with spikes to 0.26 s
    try:
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            column_types=types, include_columns=list(TRACE_COLUMNS), null_values=[""]),
            memory_pool=pa.system_memory_pool())
    except (pa.ArrowException, OSError, ValueError):
        return None
    if table.num_rows == 0 or any(table.column(c).null_count for c in TRACE_COLUMNS):
        return None
    ids = _adapter_codes(table.column("adapter_id"))
    if ids is None:
        return None
    t = column_values(table.column("arrival_time_s").chunks, np.float64)
    inp = column_values(table.column("input_tokens").chunks, np.float64)
    out = column_values(table.column("output_tokens").chunks, np.float64)
    ok = (bool(np.isfinite(t).all()) and bool((t >= 0).all())
          and all(bool(np.isfinite(v).all()) and bool((v == np.floor(v)).all())
                  and v.min() >= 1 and v.max() <= INT32_MAX for v in (inp, out)))
    return (t, ids[0], ids[1], inp.astype(np.int64), out.astype(np.int64)) if ok else None


def _read_trace_rows(path: Path) -> _TraceColumns:
    """Text read with row numbers: raises the first error, or returns the columns."""
    df = read_csv_checked(path, TRACE_COLUMNS)
    t = float_column(df, "arrival_time_s", path)
    bad = ~np.isfinite(t) | (t < 0)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path} row {df.index[r]}: arrival_time_s: must be a finite number "
                        f">= 0 (got {df['arrival_time_s'].iloc[r]})")
    ids = df["adapter_id"].to_numpy(dtype=object)
    empty = ids == ""
    if empty.any():
        r = int(np.flatnonzero(empty)[0])
        raise DataError(f"{path} row {df.index[r]}: adapter_id: missing value")
    inp = int_column(df, "input_tokens", path, min_value=1)
    out = int_column(df, "output_tokens", path, min_value=1)
    index: dict[str, int] = {}
    codes = np.array([index.setdefault(str(i), len(index)) for i in ids], dtype=np.int64)
    return t.astype(np.float64), codes, list(index), inp, out


def _check_known_ids(path: Path, codes: np.ndarray, names: list[str],
                     known: Collection[str]) -> None:
    """Every trace adapter must be in ``known``; the error names the first row that is not."""
    allowed = set(known)
    unknown = [c for c, name in enumerate(names) if name not in allowed]
    if not unknown:
        return
    k = int(np.flatnonzero(np.isin(codes, unknown))[0])
    row = _file_row(path, k)
    raise DataError(f"{path} row {row}: adapter_id: {names[codes[k]]!r} is not among the "
                    f"{len(known)} adapters given (--adapters / `adapters`)")


def _file_row(path: Path, record: int) -> int:
    """The line number (header = 1) of the ``record``-th non-blank data row."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        seen = -2  # the header is not a record
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            seen += 1
            if seen == record:
                return reader.line_num
    return record + 2


def save_trace_csv(requests: Requests, adapter_ids: Sequence[str], path: str | Path) -> Path:
    """Write requests as a request trace CSV that :func:`load_trace_csv` reads back.

    Parameters
    ----------
    requests:
        The requests (n).
    adapter_ids:
        Id of each adapter index used in ``requests.adapter``.

    Returns
    -------
    Path
        The written path (parent directories are created).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(list(adapter_ids), dtype=object)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TRACE_COLUMNS)
        for t, a, i, o in zip(requests.arrival_s.tolist(), ids[requests.adapter].tolist(),
                              requests.input_tokens.tolist(), requests.output_tokens.tolist(),
                              strict=True):
            writer.writerow((repr(float(t)), a, i, o))
    return path


def load_azure_trace(path: str | Path | None = None) -> pd.DataFrame:
    """Read an Azure LLM inference trace (2023 format) as relative arrivals and lengths.

    Parameters
    ----------
    path:
        CSV path, or ``"azure-conv"`` / ``"azure-code"`` for the bundled traces; ``None``
        loads the bundled conversation trace.

    Returns
    -------
    pandas.DataFrame
        Sorted by arrival (stable), with columns ``arrival_s`` (float64 s since the first
        request, parsed from ``TIMESTAMP`` at 100 ns resolution), ``input_tokens``
        (int64, ``ContextTokens``) and ``output_tokens`` (int64, ``GeneratedTokens``).

    Raises
    ------
    DataError
        Missing file or column, an unparsable timestamp, or token counts that are not
        integers >= 1 (with row and column), or no rows.
    """
    import pandas as pd

    path = resolve_data_path("azure-conv" if path is None else path)
    df = read_csv_checked(path, AZURE_COLUMNS)
    if len(df) == 0:
        raise DataError(f"{path}: no requests")
    stamps = pd.to_datetime(df["TIMESTAMP"], format="%Y-%m-%d %H:%M:%S.%f", errors="coerce")
    bad = stamps.isna().to_numpy()
    if bad.any():
        # Whole seconds without a fraction are valid too.
        retry = pd.to_datetime(df["TIMESTAMP"][bad], format="%Y-%m-%d %H:%M:%S",
                               errors="coerce")
        stamps = stamps.where(~bad, retry)
        bad = stamps.isna().to_numpy()
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path} row {df.index[r]}: TIMESTAMP: expected "
                        f"'YYYY-MM-DD HH:MM:SS.fffffff' (got {df['TIMESTAMP'].iloc[r]!r})")
    ns = stamps.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    inp = int_column(df, "ContextTokens", path, min_value=1)
    out = int_column(df, "GeneratedTokens", path, min_value=1)
    order = np.argsort(ns, kind="stable")
    ns = ns[order]
    return pd.DataFrame({
        "arrival_s": (ns - ns[0]).astype(np.float64) / 1e9,
        "input_tokens": inp[order],
        "output_tokens": out[order],
    })
