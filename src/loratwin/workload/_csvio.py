"""CSV helpers shared by the workload readers: read as text, convert columns with row numbers.

Rows are numbered like the lines of the file, header = row 1 (as a spreadsheet shows
them); blank lines are skipped but still counted, so ``row N`` is line N of the file.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from loratwin.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

INT32_MAX = int(np.iinfo(np.int32).max)


def read_csv_checked(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """Read a CSV as stripped strings, indexed by row number, and check required columns.

    Returns
    -------
    pandas.DataFrame
        One string column per CSV column (missing cells are ``""``); the index is the row
        number of each record (header = 1); blank lines are dropped.

    Raises
    ------
    DataError
        Missing file, unreadable or ragged CSV (with pandas' line number), or a missing
        required column.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skip_blank_lines=False,
                         encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        detail = str(exc).strip().splitlines()[-1]
        raise DataError(f"{path}: malformed CSV: {detail}") from None
    df.columns = [str(c).strip() for c in df.columns]
    for col in required:
        if col not in df.columns:
            raise DataError(f"{path}: missing column {col!r} (header: {','.join(df.columns)})")
    df = df.fillna("").apply(lambda c: c.str.strip())
    df.index = np.arange(len(df), dtype=np.int64) + 2
    blank = (df == "").all(axis=1)
    return df.loc[~blank]


def float_column(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    """A column of :func:`read_csv_checked` as float64 (``inf`` allowed, ``nan`` not).

    Raises
    ------
    DataError
        ``path row N: col: missing value`` or ``... not a number (got 'x')``.
    """
    import pandas as pd

    raw = df[col]
    empty = (raw == "").to_numpy()
    if empty.any():
        raise DataError(f"{path} row {df.index[np.flatnonzero(empty)[0]]}: {col}: missing value")
    vals = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(vals)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(f"{path} row {df.index[r]}: {col}: not a number (got {raw.iloc[r]!r})")
    return vals


def int_column(df: pd.DataFrame, col: str, path: Path, min_value: int = 1) -> np.ndarray:
    """A column of :func:`read_csv_checked` as int64 integers in [``min_value``, int32 max].

    Raises
    ------
    DataError
        Missing value, not a number, not an integer, or out of range, with the row number.
    """
    vals = float_column(df, col, path)
    checks = (
        (~np.isfinite(vals) | (vals != np.round(vals)), "must be an integer"),
        (vals < min_value, f"must be >= {min_value}"),
        (vals > INT32_MAX, f"must be <= {INT32_MAX}"),
    )
    for bad, msg in checks:
        if bad.any():
            r = int(np.flatnonzero(bad)[0])
            raise DataError(f"{path} row {df.index[r]}: {col}: {msg} (got {df[col].iloc[r]})")
    return vals.astype(np.int64)


def check_fields(path: Path) -> None:
    """Every non-blank row of a CSV has as many fields as the header (pandas fills a short
    row with missing values without a word; this refuses it).

    Raises
    ------
    DataError
        ``runs.csv row 4: expected 13 fields, got 12``, or a file that is not UTF-8 text.
    """
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            width = None
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if width is None:
                    width = len(row)
                elif len(row) != width:
                    raise DataError(f"{path} row {reader.line_num}: expected {width} fields, "
                                    f"got {len(row)}")
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (UTF-8) file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
