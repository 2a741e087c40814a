"""Adapter lists: read them from CSV or YAML, validate them, write them as CSV.

File formats
------------
CSV
    A header line, then one adapter per row. Columns ``id,rank,rate`` are required;
    ``mean_input_tokens`` and ``mean_output_tokens`` are optional (an empty cell means "use
    the workload's length distribution as it is"). Unknown columns are an error, so that a
    misspelt optional column is not silently ignored. Blank lines are skipped.
YAML
    Either a list of mappings with the same keys, or a mapping whose ``adapters`` key holds
    that list (other keys of the mapping, e.g. the rest of a run config, are ignored).

Validation rules (:class:`AdapterSpec`): ``id`` a non-empty string (YAML numbers are turned
into strings), unique in the list; ``rank`` a positive integer (LoRA rank r); ``rate`` a
finite number >= 0 in req/s; mean token counts, when given, finite and > 0 tokens; at least
one adapter.

Error messages name the place first and then the field, e.g.
``adapters.csv row 3: rate: must be >= 0 (got -1)``. CSV rows are numbered like the lines
of the file, header = row 1 (as a spreadsheet shows them); YAML entries are located by the
line their mapping starts on.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from loratwin.errors import ConfigError, DataError
from loratwin.workload.types import Adapter

REQUIRED_COLUMNS: tuple[str, ...] = ("id", "rank", "rate")
OPTIONAL_COLUMNS: tuple[str, ...] = ("mean_input_tokens", "mean_output_tokens")
_ALL_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


def _show(value: Any) -> str:
    """A value as the user wrote it: bare for numbers and CSV cells, quoted otherwise."""
    if isinstance(value, str):
        return value if value.strip() else repr(value)
    return repr(value) if not isinstance(value, int | float) else str(value)


def _as_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"must be a number (got {_show(value)})")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            raise ValueError(f"must be a number (got {value!r})") from None
    raise ValueError(f"must be a number (got {_show(value)})")


class AdapterSpec(BaseModel):
    """One adapter as written in a file, validated (see the module docstring for the rules).

    Attributes
    ----------
    id:
        Adapter name, non-empty.
    rank:
        LoRA rank r, a positive integer.
    rate:
        Mean arrival rate in req/s, finite and >= 0.
    mean_input_tokens, mean_output_tokens:
        Optional per-adapter mean prompt / output length in tokens, finite and > 0.

    Raises
    ------
    pydantic.ValidationError
        On a rule violation; :func:`load_adapters` turns it into a one-line error.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    rank: int
    rate: float
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, str | int):
            raise ValueError(f"must be a string (got {_show(v)})")
        text = str(v).strip()
        if not text:
            raise ValueError("must not be empty")
        return text

    @field_validator("rank", mode="before")
    @classmethod
    def _rank(cls, v: Any) -> int:
        try:
            x = _as_float(v)
        except ValueError:
            raise ValueError(f"must be a positive integer (got {_show(v)})") from None
        if not math.isfinite(x) or x != int(x) or x < 1:
            raise ValueError(f"must be a positive integer (got {_show(v)})")
        return int(x)

    @field_validator("rate", mode="before")
    @classmethod
    def _rate(cls, v: Any) -> float:
        x = _as_float(v)
        if not math.isfinite(x):
            raise ValueError(f"must be finite (got {_show(v)})")
        if x < 0:
            raise ValueError(f"must be >= 0 (got {_show(v)})")
        return x

    @field_validator("mean_input_tokens", "mean_output_tokens", mode="before")
    @classmethod
    def _mean_tokens(cls, v: Any) -> float | None:
        if v is None or (isinstance(v, str) and not v.strip()):
            return None
        x = _as_float(v)
        if not math.isfinite(x) or x <= 0:
            raise ValueError(f"must be a finite number > 0 (got {_show(v)})")
        return x

    def to_adapter(self) -> Adapter:
        """The plain :class:`~loratwin.workload.types.Adapter` value."""
        return Adapter(
            id=self.id,
            rank=self.rank,
            rate=self.rate,
            mean_input_tokens=self.mean_input_tokens,
            mean_output_tokens=self.mean_output_tokens,
        )


def _first_error(exc: ValidationError) -> str:
    """``field: message`` of the first pydantic error, without pydantic's prefixes.

    An unknown field is reported first: it is usually a misspelt required field.
    """
    errors = exc.errors()
    err = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])
    field = ".".join(str(p) for p in err.get("loc", ())) or "adapter"
    msg = str(err.get("msg", ""))
    msg = msg.removeprefix("Value error, ")
    if err.get("type") == "extra_forbidden":
        msg = f"unknown field (known: {', '.join(_ALL_COLUMNS)})"
    elif err.get("type") == "missing":
        msg = "missing value"
    return f"{field}: {msg}"


def _build(records: list[tuple[str, dict[str, Any]]], error: type[ConfigError | DataError]
           ) -> list[Adapter]:
    """Validate ``(where, mapping)`` records and check ids are unique and the list non-empty."""
    adapters: list[Adapter] = []
    first_seen: dict[str, str] = {}
    for where, record in records:
        try:
            spec = AdapterSpec.model_validate(record)
        except ValidationError as exc:
            raise error(f"{where}: {_first_error(exc)}") from None
        if spec.id in first_seen:
            raise error(f"{where}: id: duplicate id {spec.id!r} (first at {first_seen[spec.id]})")
        first_seen[spec.id] = where
        adapters.append(spec.to_adapter())
    return adapters


def _read_csv_fast(path: Path) -> list[Adapter] | None:
    """Whole-column read and checks (pyarrow); ``None`` if anything is off, so that
    :func:`_read_csv` reads the file again row by row to name the first bad row."""
    cols = _csv_columns(path)
    if cols is None:
        return None
    ids, rank, rate, mi, mo = cols
    n = len(rank)
    mi_l, mo_l = (m.tolist() if m is not None else [None] * n for m in (mi, mo))
    return [Adapter(i, r, x, a if a == a else None, b if b == b else None)
            for i, r, x, a, b in zip(ids.to_pylist(), rank.tolist(), rate.tolist(), mi_l, mo_l,
                                     strict=True)]


def _csv_columns(path: Path) -> tuple[Any, ...] | None:
    """The checked columns of an adapters CSV: ids (pyarrow strings), rank (int64), rate
    (float64) and the two mean-token columns (float64, NaN = empty cell; ``None`` if the
    column is absent); ``None`` if any check fails."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pa_csv

    from loratwin.workload._arrow import column_values

    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            header = next(csv.reader(fh))
    except (StopIteration, UnicodeDecodeError, csv.Error):
        return None
    if (sorted(set(header)) != sorted(header) or not set(REQUIRED_COLUMNS) <= set(header)
            or not set(header) <= set(_ALL_COLUMNS)):
        return None
    # rank read as float64 and checked integral, as the row reader does: pyarrow's int64
    # parser takes hexadecimal ("0x10" = 16), which the row reader refuses
    types = {"id": pa.string(), "rank": pa.float64(), "rate": pa.float64(),
             "mean_input_tokens": pa.float64(), "mean_output_tokens": pa.float64()}
    try:
        table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(
            column_types={c: types[c] for c in header}, null_values=[""]))
    except (pa.ArrowException, OSError, ValueError):
        return None
    if table.num_rows == 0 or any(table.column(c).null_count for c in REQUIRED_COLUMNS):
        return None
    ids = pc.utf8_trim_whitespace(table.column("id").combine_chunks())
    rank_f = column_values(table.column("rank").chunks, np.float64)
    if not (bool(np.isfinite(rank_f).all()) and bool((rank_f == np.floor(rank_f)).all())):
        return None
    rank = rank_f.astype(np.int64)
    rate = column_values(table.column("rate").chunks, np.float64)
    means = {c: column_values(table.column(c).chunks, np.float64)
             if c in header else None for c in OPTIONAL_COLUMNS}
    ok = (pc.min(pc.utf8_length(ids)).as_py() > 0
          and not _has_duplicates(ids)
          and int(rank.min()) >= 1 and int(rank.max()) <= np.iinfo(np.int32).max
          and bool(np.isfinite(rate).all()) and bool((rate >= 0).all())
          and all(m is None or bool(((m > 0) & np.isfinite(m) | np.isnan(m)).all())
                  for m in means.values()))
    if not ok:
        return None
    # a cell that is NaN in a mean column came from an empty cell (a literal "nan" also reads
    # as NaN: the row-by-row reader refuses it, so only take the fast path without them)
    for c, m in means.items():
        if m is not None and int(np.isnan(m).sum()) != table.column(c).null_count:
            return None
    return (ids, rank, rate, *(means[c] for c in OPTIONAL_COLUMNS))


def _has_duplicates(values: Any) -> bool:
    """Whether a pyarrow string array holds a value twice: sort, compare neighbours (2.5x
    cheaper in CPU than ``pyarrow.compute.unique``'s hash table on 1M ids, pyarrow 26)."""
    import pyarrow.compute as pc

    if len(values) < 2:
        return False
    ordered = values.take(pc.array_sort_indices(values))
    return bool(pc.any(pc.equal(ordered[1:], ordered[:-1])).as_py())


def _read_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        records: list[tuple[str, dict[str, Any]]] = []
        for row in reader:
            if not row or all(not cell.strip() for cell in row):
                continue
            if header is None:
                header = [c.strip() for c in row]
                missing = [c for c in REQUIRED_COLUMNS if c not in header]
                if missing:
                    raise DataError(
                        f"{path} row {reader.line_num}: missing column {missing[0]!r} "
                        f"(header: {','.join(header)})"
                    )
                unknown = [c for c in header if c not in _ALL_COLUMNS]
                if unknown:
                    raise DataError(
                        f"{path} row {reader.line_num}: unknown column {unknown[0]!r} "
                        f"(known: {', '.join(_ALL_COLUMNS)})"
                    )
                if len(set(header)) != len(header):
                    dup = next(c for c in header if header.count(c) > 1)
                    raise DataError(f"{path} row {reader.line_num}: duplicate column {dup!r}")
                continue
            where = f"{path} row {reader.line_num}"
            if len(row) != len(header):
                raise DataError(f"{where}: expected {len(header)} fields, got {len(row)}")
            record: dict[str, Any] = {}
            for name, cell in zip(header, row, strict=True):
                if not cell.strip():
                    if name in REQUIRED_COLUMNS:
                        raise DataError(f"{where}: {name}: missing value")
                    continue
                record[name] = cell
            records.append((where, record))
    if header is None:
        raise DataError(f"{path}: empty file (expected a header line id,rank,rate)")
    return records


def _read_yaml(path: Path) -> list[tuple[str, dict[str, Any]]]:
    import yaml  # on use: a CSV adapters file needs none of it

    text = path.read_text(encoding="utf-8")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "syntax error"
        raise DataError(f"{where}: invalid YAML: {problem}") from None
    if data is None:
        raise DataError(f"{path}: empty file (expected a list of adapters)")
    if isinstance(data, dict):
        if "adapters" not in data:
            raise DataError(f"{path}: expected a list of adapters or a mapping with key "
                            "'adapters'")
        data = data["adapters"]
        assert isinstance(node, yaml.MappingNode)
        node = next(v for k, v in node.value if k.value == "adapters")
    if not isinstance(data, list):
        got = "nothing" if data is None else type(data).__name__
        raise DataError(f"{path}: adapters: expected a list of mappings (got {got})")
    assert isinstance(node, yaml.SequenceNode)
    records: list[tuple[str, dict[str, Any]]] = []
    for item, item_node in zip(data, node.value, strict=True):
        where = f"{path} line {item_node.start_mark.line + 1}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected a mapping with keys id, rank, rate "
                            f"(got {type(item).__name__})")
        records.append((where, {str(k): v for k, v in item.items()}))
    return records


def load_adapters(path: str | Path) -> list[Adapter]:
    """Read and validate an adapter list from a CSV or YAML file.

    Parameters
    ----------
    path:
        ``.csv``, ``.yaml`` or ``.yml`` file (formats in the module docstring).

    Returns
    -------
    list[Adapter]
        In file order; at least one adapter, ids unique.

    Raises
    ------
    DataError
        Missing file, unsupported extension, malformed CSV/YAML, or a rule violation, with
        the path, the row/line and the field, e.g.
        ``adapters.csv row 3: rate: must be >= 0 (got -1)``.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".yaml", ".yml"):
        raise DataError(f"{path}: unsupported adapter file type {suffix!r} "
                        "(expected .csv, .yaml or .yml)")
    if suffix == ".csv":
        fast = _read_csv_fast(path)
        if fast is not None:
            return fast
    try:
        records = _read_csv(path) if suffix == ".csv" else _read_yaml(path)
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (UTF-8) file") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed CSV ({exc})") from None
    except RecursionError:
        raise DataError(f"{path}: invalid YAML (nested too deeply)") from None
    adapters = _build(records, DataError)
    if not adapters:
        raise DataError(f"{path}: no adapters")
    return adapters


def check_adapters(adapters: Sequence[Adapter]) -> None:
    """Validate an in-memory adapter list with the same rules as :func:`load_adapters`.

    Raises
    ------
    ConfigError
        ``adapters[i]: field: message`` for the first violation, or an empty list.
    """
    if len(adapters) == 0:
        raise ConfigError("must contain at least one adapter", field="adapters")
    records = [
        (f"adapters[{i}]", {
            "id": a.id, "rank": a.rank, "rate": a.rate,
            "mean_input_tokens": a.mean_input_tokens,
            "mean_output_tokens": a.mean_output_tokens,
        })
        for i, a in enumerate(adapters)
    ]
    _build(records, ConfigError)


def save_adapters_csv(adapters: Sequence[Adapter], path: str | Path) -> Path:
    """Write adapters as a CSV that :func:`load_adapters` reads back unchanged.

    The ``mean_*_tokens`` columns are written only if some adapter has a value (an empty
    cell for the others). Floats are written with Python's shortest round-trip repr.
    Parent directories are created.

    Returns
    -------
    Path
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with_means = any(
        a.mean_input_tokens is not None or a.mean_output_tokens is not None for a in adapters
    )
    columns = _ALL_COLUMNS if with_means else REQUIRED_COLUMNS

    def num(x: float | None) -> str:
        return "" if x is None else repr(float(x))

    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for a in adapters:
            row = [a.id, str(int(a.rank)), num(a.rate)]
            if with_means:
                row += [num(a.mean_input_tokens), num(a.mean_output_tokens)]
            writer.writerow(row)
    return path
