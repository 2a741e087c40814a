"""YAML configuration files and their validation, with one-line errors.

Every command that reads a YAML configuration (``simulate``, ``advise --twin``, ``dataset``)
goes through :func:`read_yaml_mapping` and :func:`validate`, so that a missing file, invalid
YAML or an invalid value is reported the same way: one line naming the file or the field.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from loratwin.errors import ConfigError, DataError

M = TypeVar("M", bound=BaseModel)


def read_yaml_mapping(path: Path, what: str = "config") -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file is ``{}``).

    Raises
    ------
    DataError
        Missing file, invalid YAML, or a top level that is not a mapping.
    """
    import yaml  # on use: ``simulate`` from flags alone reads no YAML

    if not path.is_file():
        raise DataError(f"{what} file not found: {path}" if not path.exists()
                        else f"{what} file {path} is not a file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path} line {mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise DataError(f"{where}: invalid YAML ({problem})") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a text (UTF-8) file") from None
    except RecursionError:
        raise DataError(f"{path}: invalid YAML (nested too deeply)") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level must be a mapping (got "
                        f"{type(data).__name__})")
    return data


def read_json_object(path: Path, what: str = "JSON", field: str | None = None
                     ) -> dict[str, Any]:
    """Read a JSON file whose top level is an object.

    Raises
    ------
    DataError
        Missing file, not UTF-8, invalid JSON, or a top level that is not an object; the
        message names the file (and ``field``, the flag that gave it, when known).
    """
    import json

    if not path.is_file():
        raise DataError(f"{what} file not found: {path}", field=field)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file", field=field) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON ({exc.msg}, line {exc.lineno})",
                        field=field) from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a JSON object", field=field)
    return data


def _non_finite(data: Any, loc: tuple[str, ...] = ()) -> tuple[str, ...] | None:
    """The location of the first NaN or infinity in a nested mapping/list, if any."""
    if isinstance(data, float) and not math.isfinite(data):
        return loc
    if isinstance(data, dict):
        items: Any = ((str(k), v) for k, v in data.items())
    elif isinstance(data, list | tuple):
        items = ((str(i), v) for i, v in enumerate(data))
    else:
        return None
    for key, value in items:
        found = _non_finite(value, (*loc, key))
        if found is not None:
            return found
    return None


def validate(model: type[M], data: Any, field: str | None = None) -> M:
    """``model.model_validate(data)`` with the first error as a one-line :class:`ConfigError`.

    The error names the offending field as a dotted path (prefixed by ``field`` if given). A
    validator whose message starts with ``name: `` names a sub-field (``served: ...``).

    Raises
    ------
    ConfigError
        Invalid value, unknown key, missing required key, or a NaN / infinity anywhere
        (YAML's ``.nan`` and ``.inf``: no configuration value is meant to be infinite).
    """
    bad = _non_finite(data)
    if bad is not None:
        loc = ".".join(([field] if field else []) + list(bad)) or None
        raise ConfigError("must be a finite number", field=loc)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [field] if field else []
        loc += [str(p) for p in err.get("loc", ())]
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        head, sep, rest = msg.partition(": ")
        if sep and head.isidentifier():
            loc, msg = [*loc, head], rest
        raise ConfigError(msg, field=".".join(loc) or None) from None
