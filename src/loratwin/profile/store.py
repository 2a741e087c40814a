"""Loading and listing profiles: bundled JSON files or a user-given path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from loratwin.errors import DataError
from loratwin.profile.model import Profile

_BUNDLED = "loratwin.profile.bundled"


def bundled_profiles() -> list[str]:
    """Names of the profiles shipped with the package (``<name>.json`` in ``bundled/``; the
    serving constants stored next to them are not a profile)."""
    files = resources.files(_BUNDLED)
    return sorted(p.name.removesuffix(".json") for p in files.iterdir()
                  if p.name.endswith(".json") and p.name != "serving_constants.json")


def load_profile(name_or_path: str | Path) -> Profile:
    """A bundled profile by name (e.g. ``llama-3.1-8b-instruct``) or a profile JSON file.

    Raises
    ------
    DataError
        Unknown profile name, missing file or invalid JSON.
    """
    path = Path(name_or_path)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise DataError(f"profile file not found: {path}")
        text = path.read_text()
    else:
        res = resources.files(_BUNDLED) / f"{name_or_path}.json"
        if not res.is_file():
            known = ", ".join(bundled_profiles()) or "none"
            raise DataError(f"unknown profile {str(name_or_path)!r} (bundled: {known})",
                            field="model")
        text = res.read_text()
    try:
        return Profile.model_validate_json(text)
    except ValidationError as exc:
        raise DataError(f"{name_or_path}: not a valid profile ({exc.errors()[0]['msg']})") from None


def save_profile(profile: Profile, path: Path) -> None:
    """Write a profile as indented JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(profile.model_dump_json(indent=1) + "\n")
