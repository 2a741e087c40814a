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
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from loratwin.errors import DataError
from loratwin.workload._csvio import float_column, int_column, read_csv_checked
from loratwin.workload.bundled import resolve_data_path
from loratwin.workload.types import Requests

TRACE_COLUMNS: tuple[str, ...] = ("arrival_time_s", "adapter_id", "input_tokens",
                                  "output_tokens")
AZURE_COLUMNS: tuple[str, ...] = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")


def load_trace_csv(path: str | Path) -> tuple[Requests, list[str]]:
    """Read a request trace CSV and sort it by arrival time.

    Parameters
    ----------
    path:
        CSV with columns ``arrival_time_s,adapter_id,input_tokens,output_tokens``.

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
        negative or non-finite time, tokens not an integer >= 1 (message names file, row
        and column, e.g. ``trace.csv row 7: input_tokens: must be >= 1 (got 0)``).
    """
    path = Path(path)
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
    order = np.argsort(t, kind="stable")
    codes, uniques = pd.factorize(ids[order])
    requests = Requests(
        arrival_s=t[order].astype(np.float64),
        adapter=codes.astype(np.int32),
        input_tokens=inp[order].astype(np.int32),
        output_tokens=out[order].astype(np.int32),
    )
    return requests, [str(u) for u in uniques]


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
