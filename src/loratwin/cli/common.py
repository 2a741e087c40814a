"""Helpers shared by the command modules: output paths, atomic writes, JSON, Rich consoles.

Only the standard library is imported at module level (Rich and numpy on first use), so that a
command module may import these helpers at its top without slowing ``loratwin --help``.

Output files are checked before any long work (:func:`check_output_file`,
:func:`check_output_dir`) and written through a temporary file in the same folder that is
renamed into place when complete (:func:`atomic_output`), so that an interrupted or failed
command never leaves a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loratwin.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

@functools.cache
def _consoles() -> tuple[Console, Console]:
    from rich.console import Console

    return Console(), Console(stderr=True)


def __getattr__(name: str) -> Any:
    """``console`` (stdout) and ``err_console`` (stderr): Rich consoles made on first use."""
    if name == "console":
        return _consoles()[0]
    if name == "err_console":
        return _consoles()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _flag(field: str) -> str:
    return field if field.startswith("-") or field.isupper() else f"--{field}"


def _writable_parent(path: Path, field: str) -> None:
    """The nearest existing ancestor of ``path`` must be a writable folder."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot write {path}: {parent} is not a folder", field=_flag(field))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot write {path}: {parent} is not writable", field=_flag(field))


def check_output_file(path: Path | None, field: str, suffixes: tuple[str, ...] = ()) -> None:
    """Refuse an output file that cannot be written, before any work starts.

    Parameters
    ----------
    path:
        The file to be written (``None``: no output asked, nothing checked).
    field:
        The flag or argument naming it (``json`` or ``--json``), for the message.
    suffixes:
        Accepted suffixes (lower case, with the dot), if restricted.

    Raises
    ------
    ConfigError
        ``--json: cannot write a/b.json: a is not a folder``; the path is a folder; the
        existing file is not writable; or a wrong suffix.
    """
    if path is None:
        return
    if str(path) == "" or path.name in ("", ".", ".."):
        raise ConfigError(f"not a file name: {str(path)!r}", field=_flag(field))
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, expected a file name", field=_flag(field))
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{path} is not writable", field=_flag(field))
    if suffixes and path.suffix.lower() not in suffixes:
        raise ConfigError(f"{path}: expected a file ending in {' or '.join(suffixes)}",
                          field=_flag(field))
    _writable_parent(path, field)


def check_output_dir(path: Path | None, field: str) -> None:
    """Refuse an output folder that cannot be created or written, before any work starts.

    Raises
    ------
    ConfigError
        The path is an existing file, or neither it nor its nearest existing ancestor is a
        writable folder.
    """
    if path is None:
        return
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{path} is a file, expected a folder", field=_flag(field))
    if path.is_dir():
        if not os.access(path, os.W_OK | os.X_OK):
            raise ConfigError(f"{path} is not writable", field=_flag(field))
        return
    _writable_parent(path, field)


@contextlib.contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds.

    The temporary name keeps the suffix (``.o.json.tmp-123.json``), so that writers which
    add a missing suffix (``numpy.savez``) write where expected. On an exception (Ctrl-C
    included) the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


@contextlib.contextmanager
def atomic_files(out_dir: Path) -> Iterator[Path]:
    """Yield a temporary folder; move its files into ``out_dir`` if the block succeeds.

    For commands that write several files (``--emit-vllm``): either all of them appear or,
    on an exception, none (existing files in ``out_dir`` are only replaced on success).
    """
    import shutil
    import tempfile

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        yield tmp
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def check_number(value: float | int | None, field: str, *, gt: float | None = None,
                 ge: float | None = None, le: float | None = None) -> None:
    """Refuse a numeric flag that is not finite or out of range (``None`` passes).

    Raises
    ------
    ConfigError
        ``--duration: must be > 0 (got -1.0)`` or ``... must be a finite number (got nan)``.
    """
    if value is None:
        return
    if not math.isfinite(float(value)):
        raise ConfigError(f"must be a finite number (got {value})", field=_flag(field))
    for bound, ok, op in ((gt, gt is None or value > gt, ">"), (ge, ge is None or value >= ge,
                                                                ">="),
                          (le, le is None or value <= le, "<=")):
        if not ok:
            raise ConfigError(f"must be {op} {bound:g} (got {value})", field=_flag(field))


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if type(obj).__module__ == "numpy" and getattr(obj, "ndim", 1) == 0:  # numpy scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically (NaN and infinities become ``null``)."""
    text = json.dumps(_clean(data), indent=2) + "\n"
    with atomic_output(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def fmt(v: Any, digits: int = 1) -> str:
    """Format a number for a table cell ('-' for missing, yes/no for booleans)."""
    if v is None:
        return "-"
    if isinstance(v, bool) or type(v).__name__ == "bool_":
        return "yes" if v else "no"
    if isinstance(v, float) or (type(v).__module__ == "numpy" and "float" in type(v).__name__):
        return "-" if not math.isfinite(float(v)) else f"{float(v):,.{digits}f}"
    return str(v)
