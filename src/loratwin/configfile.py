"""YAML configuration files and their validation, with one-line errors.

Every command that reads a YAML configuration (``simulate``, ``advise --twin``, ``dataset``)
goes through :func:`read_yaml_mapping` and :func:`validate`, so that a missing file, invalid
YAML or an invalid value is reported the same way: one line naming the file or the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
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
    if not path.is_file():
        raise DataError(f"{what} file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: the top level must be a mapping")
    return data


def validate(model: type[M], data: Any, field: str | None = None) -> M:
    """``model.model_validate(data)`` with the first error as a one-line :class:`ConfigError`.

    The error names the offending field as a dotted path (prefixed by ``field`` if given). A
    validator whose message starts with ``name: `` names a sub-field (``served: ...``).

    Raises
    ------
    ConfigError
        Invalid value, unknown key, or missing required key.
    """
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
