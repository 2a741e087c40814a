"""Loading, validating and grouping batch sweeps.

A *batch sweep* is a table with one row per (model, ``max_num_seqs``[, ``output_len``]): one
saturation run of a vLLM server at a configured maximum batch ``B = max_num_seqs``. The schema is
the one of the measured sweeps bundled in ``loratwin/data/bca/`` (see its ``README.md``), so that
a sweep produced by the digital twin can be passed to the same functions.

Minimal columns
---------------
Always required (:data:`BASE_COLUMNS`):

- ``model`` (str) and ``max_num_seqs`` (configured batch B, sequences);
- ``total_token_throughput_tok_s``: (input + output tokens) / duration, tokens/s;
- ``num_preemptions_total``: preemptions during the run (runs with any are excluded by default);
- memory (:data:`MEMORY_COLUMNS`): ``kv_usage_peak_frac`` (peak KV-cache use, fraction 0-1),
  ``kv_cache_size_gib`` (KV pool, GiB), ``peak_torch_memory_gib`` (weights + activations of the
  profiling pass, GiB), ``non_torch_memory_gib`` (GiB), ``total_gpu_memory_gib`` (GiB) and
  ``gpu_memory_utilization`` (fraction) of the run.

Required by the rules (see :func:`loratwin.advisor.rules.required_columns`):

- the batch axis: ``running_max`` (realised batch, the default of rules (b) and (c)) or
  ``max_num_seqs`` (configured batch, the default of rule (a));
- the latency: ``mean_tpot_ms`` (rules (b), (c)) or ``mean_itl_ms`` (rule (a)), ms;
- rule (a) only: ``request_throughput_rps`` (requests/s).

Optional setting column: ``output_len`` (tokens). When present, each (model, output_len) is
advised separately; runs of different settings are never mixed in one curve.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from loratwin.errors import DataError

BUNDLED_PREFIX = "bundled:"
"""Prefix of the names of bundled data files accepted by :func:`read_sweep`."""

BUNDLED_SWEEPS: dict[str, str] = {
    "fixed-length": "batch_sweep_fixed_length.csv",
    "sharegpt": "batch_sweep_sharegpt.csv",
}
"""Bundled sweep names and their files in ``loratwin/data/bca/``."""

BUNDLED_REPLICATION = "replication.csv"
"""Bundled replication measurements (file name in ``loratwin/data/bca/``)."""

MODEL_COLUMN = "model"
CONFIGURED_BATCH_COLUMN = "max_num_seqs"
REALISED_BATCH_COLUMN = "running_max"
SETTING_COLUMNS: tuple[str, ...] = ("output_len",)
THROUGHPUT_COLUMN = "total_token_throughput_tok_s"
PREEMPTION_COLUMN = "num_preemptions_total"
MEMORY_COLUMNS: tuple[str, ...] = (
    "kv_usage_peak_frac",
    "kv_cache_size_gib",
    "peak_torch_memory_gib",
    "non_torch_memory_gib",
    "total_gpu_memory_gib",
    "gpu_memory_utilization",
)
BASE_COLUMNS: tuple[str, ...] = (
    MODEL_COLUMN,
    CONFIGURED_BATCH_COLUMN,
    THROUGHPUT_COLUMN,
    PREEMPTION_COLUMN,
    *MEMORY_COLUMNS,
)


@dataclass(frozen=True)
class SweepKey:
    """The identity of one curve of a sweep: a model under one setting.

    Parameters
    ----------
    model:
        Model name as written in the sweep.
    output_len:
        Fixed output length of the runs (tokens), or ``None`` when the sweep has no
        ``output_len`` column (e.g. the ShareGPT sweep).
    """

    model: str
    output_len: int | None = None

    def label(self) -> str:
        """Short human-readable label, e.g. ``opt-1.3b, output_len 390``."""
        if self.output_len is None:
            return self.model
        return f"{self.model}, output_len {self.output_len}"


def bundled_data_file(name: str) -> Path:
    """Path of a file bundled in ``loratwin/data/bca/``.

    Parameters
    ----------
    name:
        File name, e.g. ``"replication.csv"``.

    Raises
    ------
    DataError
        If the file is not part of the installed package.
    """
    path = Path(str(resources.files("loratwin") / "data" / "bca" / name))
    if not path.is_file():
        raise DataError(f"bundled data file is missing from the installation: {path}", field=name)
    return path


def resolve_sweep_source(source: str | Path) -> Path:
    """Turn a sweep argument into a file path.

    Parameters
    ----------
    source:
        A CSV path, or ``bundled:<name>`` with ``<name>`` one of :data:`BUNDLED_SWEEPS`
        (``bundled:fixed-length``, ``bundled:sharegpt``).

    Raises
    ------
    DataError
        For an unknown bundled name or a path that is not an existing file.
    """
    text = str(source)
    if text.startswith(BUNDLED_PREFIX):
        name = text[len(BUNDLED_PREFIX):]
        if name not in BUNDLED_SWEEPS:
            known = ", ".join(BUNDLED_PREFIX + k for k in BUNDLED_SWEEPS)
            raise DataError(f"unknown bundled sweep {text!r} (known: {known})", field="SWEEP")
        return bundled_data_file(BUNDLED_SWEEPS[name])
    path = Path(text)
    if not path.exists():
        raise DataError(f"file not found: {path}", field="SWEEP")
    if not path.is_file():
        raise DataError(f"not a file: {path}", field="SWEEP")
    return path


def read_sweep(source: str | Path) -> pd.DataFrame:
    """Read a batch sweep CSV (or a bundled sweep) into a DataFrame, unvalidated.

    Parameters
    ----------
    source:
        See :func:`resolve_sweep_source`.

    Returns
    -------
    pandas.DataFrame
        The rows as read; validate with :func:`validate_sweep` before use.

    Raises
    ------
    DataError
        Missing file, unknown bundled name, or a file that is not a readable CSV.
    """
    path = resolve_sweep_source(source)
    return read_csv(path, field="SWEEP")


def read_csv(path: Path, field: str) -> pd.DataFrame:
    """Read a CSV file, turning parser failures into :class:`DataError`.

    Raises
    ------
    DataError
        If the file is empty or is not parseable as CSV.
    """
    from loratwin.workload._csvio import check_fields

    check_fields(path)
    try:
        return pd.read_csv(path, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read {path} as CSV: {first}", field=field) from None


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str = "sweep") -> None:
    """Check that ``df`` has every column in ``columns``.

    Raises
    ------
    DataError
        Naming the first missing column (``field`` is the column name).
    """
    for column in columns:
        if column not in df.columns:
            raise DataError(f"missing column in the {what}", field=column)


def validate_sweep(df: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Validate a sweep for the given required columns and return a clean copy.

    Parameters
    ----------
    df:
        The sweep, one row per (model, max_num_seqs[, output_len]).
    columns:
        The columns the caller needs, in addition to :data:`BASE_COLUMNS`.

    Returns
    -------
    pandas.DataFrame
        A copy with a fresh integer index.

    Raises
    ------
    DataError
        If the sweep is empty, a required column is missing, non-numeric or has an empty cell,
        or a (model, max_num_seqs[, output_len]) appears twice.
    """
    needed = list(dict.fromkeys([*BASE_COLUMNS, *columns]))
    require_columns(df, needed)
    if df.empty:
        raise DataError("the sweep has no rows", field="SWEEP")
    out = df.reset_index(drop=True).copy()
    for column in needed:
        if column == MODEL_COLUMN:
            continue
        if not pd.api.types.is_numeric_dtype(out[column]):
            raise DataError("column must be numeric", field=column)
    for column in needed:
        missing = out[column].isna()
        if missing.any():
            row = out.loc[missing.idxmax()]
            raise DataError(
                f"empty cell for model {row[MODEL_COLUMN]!r}, "
                f"max_num_seqs {row[CONFIGURED_BATCH_COLUMN]}",
                field=column,
            )
    _check_ranges(out, needed)
    keys = [MODEL_COLUMN, CONFIGURED_BATCH_COLUMN, *present_setting_columns(out)]
    duplicated = out.duplicated(subset=keys)
    if duplicated.any():
        row = out.loc[duplicated.idxmax()]
        ident = ", ".join(f"{k}={row[k]}" for k in keys)
        raise DataError(f"duplicate run ({ident}); keep one row per run", field="SWEEP")
    return out


#: (column, lowest allowed, highest allowed, must be an integer); checked when present.
_RANGES: tuple[tuple[str, float, float, bool], ...] = (
    (CONFIGURED_BATCH_COLUMN, 1, math.inf, True),
    (REALISED_BATCH_COLUMN, 0, math.inf, False),
    (THROUGHPUT_COLUMN, 0, math.inf, False),
    (PREEMPTION_COLUMN, 0, math.inf, True),
    ("kv_usage_peak_frac", 0, 1, False),
    ("gpu_memory_utilization", 1e-9, 1, False),
    ("kv_cache_size_gib", 0, math.inf, False),
    ("peak_torch_memory_gib", 0, math.inf, False),
    ("non_torch_memory_gib", 0, math.inf, False),
    ("total_gpu_memory_gib", 1e-9, math.inf, False),
)


def _check_ranges(df: pd.DataFrame, needed: Iterable[str]) -> None:
    """Every needed numeric column finite and in its range (a run cannot have 0 sequences,
    negative throughput or a KV usage above 100 %)."""
    needed = set(needed)
    for column, lo, hi, integer in _RANGES:
        if column not in df.columns or (column not in needed and column != REALISED_BATCH_COLUMN):
            continue
        values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
        present = df[column].notna().to_numpy()
        bad = present & ~(np.isfinite(values) & (values >= lo) & (values <= hi))
        if integer:
            bad |= present & np.isfinite(values) & (values != np.round(values))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            span = f">= {lo:g}" if hi == math.inf else f"in [{lo:g}, {hi:g}]"
            raise DataError(f"data row {k + 1} (model {df[MODEL_COLUMN].iloc[k]!r}): must be "
                            f"{'an integer ' if integer else ''}{span} (got "
                            f"{df[column].iloc[k]!r})", field=column)


def present_setting_columns(df: pd.DataFrame) -> tuple[str, ...]:
    """The setting columns (e.g. ``output_len``) present in ``df``."""
    return tuple(c for c in SETTING_COLUMNS if c in df.columns)


def split_sweep(df: pd.DataFrame) -> list[tuple[SweepKey, pd.DataFrame]]:
    """Split a validated sweep into one frame per (model, setting), in order of appearance.

    Returns
    -------
    list of (SweepKey, pandas.DataFrame)
        Each frame holds the runs of one curve, sorted by ``max_num_seqs``.
    """
    settings = present_setting_columns(df)
    keys = [MODEL_COLUMN, *settings]
    groups: list[tuple[SweepKey, pd.DataFrame]] = []
    for values, frame in df.groupby(keys, sort=False, dropna=False):
        vals = values if isinstance(values, tuple) else (values,)
        output_len = None
        if settings and not pd.isna(vals[1]):
            output_len = int(vals[1])
        key = SweepKey(model=str(vals[0]), output_len=output_len)
        groups.append((key, frame.sort_values(CONFIGURED_BATCH_COLUMN, kind="stable")))
    return groups
