"""Hypothesis strategies that turn a valid input into a malformed one.

Each strategy returns something that is invalid *by construction* (a value known to break a
rule, a missing required column, a file that is not text, ...), so that any exit code but 2
is a bug. Commands combine them in ``tests/fuzz/registry.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml
from hypothesis import strategies as st

# Values that are not a finite number / not a positive integer / not a number >= 0.
NOT_A_NUMBER = ("abc", "", "nan", "inf", "-inf", "1,5", "0x10", "--1", "1e999", "None")
NOT_A_POSITIVE_INT = (*NOT_A_NUMBER, "0", "-1", "2.5", "-8", "99999999999999999999")
NEGATIVE = ("-1", "-0.5", "-1e-9", "-inf")
BINARY = (b"\xff\xfe\x00\x01\x89PNG\r\n", b"\x00" * 64, b"PK\x03\x04garbage-zip")


def _is_finite_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def junk_text() -> st.SearchStrategy[str]:
    """Short text that is not a finite number and holds no CSV/YAML structure characters."""
    alphabet = st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=',"\'\n\r')
    return st.text(alphabet, min_size=1, max_size=12).filter(
        lambda s: s.strip() != "" and not _is_finite_number(s))


# ----------------------------------------------------------------------------- tables (CSV)


@dataclass(frozen=True)
class TableSpec:
    """A valid CSV and what breaks it.

    Attributes
    ----------
    header, rows:
        A valid table (cells as text).
    bad_cells:
        Column -> cell values that are invalid in that column.
    numeric:
        Columns where any non-number is invalid (junk text is generated for them).
    required:
        Columns whose removal is invalid.
    header_only_bad:
        Whether a file with a header and no rows is invalid.
    bad_tables:
        Whole tables (header + rows) that are invalid for a cross-field reason.
    """

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    bad_cells: Mapping[str, Sequence[str]] = field(default_factory=dict)
    numeric: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    header_only_bad: bool = True
    bad_tables: tuple[tuple[tuple[str, ...], ...], ...] = ()


def render_csv(rows: Sequence[Sequence[str]]) -> bytes:
    return "".join(",".join(r) + "\n" for r in rows).encode()


def bad_table(spec: TableSpec) -> st.SearchStrategy[tuple[bytes, str]]:
    """``(CSV bytes, what is wrong)`` for a table that breaks ``spec``."""
    n_rows = len(spec.rows)
    options: list[st.SearchStrategy[tuple[bytes, str]]] = []

    def with_cell(col: str, row: int, value: str) -> tuple[bytes, str]:
        k = spec.header.index(col)
        rows = [list(r) for r in spec.rows]
        rows[row][k] = value
        return render_csv([spec.header, *rows]), f"{col} = {value!r} in data row {row + 1}"

    cells = [(c, v) for c, vals in spec.bad_cells.items() for v in vals]
    if cells:
        options.append(st.builds(lambda cv, r: with_cell(cv[0], r, cv[1]),
                                 st.sampled_from(cells), st.integers(0, n_rows - 1)))
    if spec.numeric:
        options.append(st.builds(with_cell, st.sampled_from(spec.numeric),
                                 st.integers(0, n_rows - 1), junk_text()))
    if spec.required:
        def drop(col: str) -> tuple[bytes, str]:
            k = spec.header.index(col)
            rows = [[c for j, c in enumerate(r) if j != k] for r in (spec.header, *spec.rows)]
            return render_csv(rows), f"no column {col!r}"
        options.append(st.builds(drop, st.sampled_from(spec.required)))

    def ragged(row: int, extra: bool) -> tuple[bytes, str]:
        rows = [list(r) for r in spec.rows]
        rows[row] = [*rows[row], "7"] if extra else rows[row][:-1]
        return render_csv([spec.header, *rows]), f"data row {row + 1} {'+' if extra else '-'}1 cell"
    options.append(st.builds(ragged, st.integers(0, n_rows - 1), st.booleans()))
    whole = [(b"", "empty file"), *((b, "binary file") for b in BINARY)]
    if spec.header_only_bad:
        whole.append((render_csv([spec.header]), "header only"))
    whole += [(render_csv(t), "inconsistent rows") for t in spec.bad_tables]
    options.append(st.sampled_from(whole))
    return st.one_of(options)


# ----------------------------------------------------------------------------- YAML / JSON


@dataclass(frozen=True)
class MappingSpec:
    """A valid mapping (YAML or JSON) and what breaks it.

    ``bad_values``: dotted key path -> values invalid there (a path may name a key the base
    lacks). ``unknown_key_bad``: whether an unknown top-level key is an error.
    """

    base: Mapping[str, Any]
    bad_values: Mapping[str, Sequence[Any]]
    unknown_key_bad: bool = True


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    node = out
    keys = path.split(".")
    for k in keys[:-1]:
        if not isinstance(node.get(k), dict):
            node[k] = {}
        node = node[k]
    node[keys[-1]] = value
    return out


def bad_mapping(spec: MappingSpec, fmt: str = "yaml") -> st.SearchStrategy[tuple[bytes, str]]:
    """``(file bytes, what is wrong)`` for a YAML (``fmt="yaml"``) or JSON mapping."""
    def dump(data: Any) -> bytes:
        if fmt == "json":
            return json.dumps(data, allow_nan=True).encode()
        return yaml.safe_dump(data, sort_keys=False).encode()

    pairs = [(p, v) for p, vals in spec.bad_values.items() for v in vals]
    options: list[st.SearchStrategy[tuple[bytes, str]]] = [
        st.builds(lambda pv: (dump(_set(dict(spec.base), pv[0], pv[1])), f"{pv[0]} = {pv[1]!r}"),
                  st.sampled_from(pairs)),
    ]
    whole = [(dump([1, 2]), "top level a list"), (dump("text"), "top level a string"),
             (b"{unclosed: [1, 2\n" if fmt == "yaml" else b'{"unclosed": [1,', "syntax error"),
             *((b, "binary file") for b in BINARY)]
    if spec.unknown_key_bad:
        whole.append((dump({**spec.base, "bogus_key": 1}), "unknown key"))
    options.append(st.sampled_from(whole))
    return st.one_of(options)


# ----------------------------------------------------------------------------- flags, paths


def bad_flag(flags: Mapping[str, Sequence[str]]) -> st.SearchStrategy[tuple[tuple[str, ...], str]]:
    """``(argv fragment, what is wrong)``: a flag with an invalid value, or an unknown flag."""
    pairs = [(f, v) for f, vals in flags.items() for v in vals]
    known = st.sampled_from(pairs).map(lambda fv: ((fv[0], fv[1]), f"{fv[0]} {fv[1]!r}"))
    unknown = st.sampled_from(("--bogus", "--max-lora", "-z", "--jsn")).map(
        lambda f: ((f,), f"unknown flag {f}"))
    return st.one_of(known, unknown)


def bad_output(flag: str, name: str) -> st.SearchStrategy[tuple[tuple[str, ...],
                                                             tuple[tuple[str, bytes], ...],
                                                             str, str]]:
    """``(argv fragment, files, output path, what is wrong)`` for an unwritable output
    file: under a file, or an existing folder."""
    return st.sampled_from((
        ((flag, f"blocker/{name}"), (("blocker", b"a file\n"),), f"blocker/{name}",
         f"{flag} under a file"),
        ((flag, "somedir"), (("somedir/", b""),), "somedir", f"{flag} is a folder"),
    ))
