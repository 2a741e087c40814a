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


#: Fields added after the bundled profiles were written, omitted from the JSON while they
#: hold their default, so that refitting a bundled profile rewrites the same file.
OMIT_WHEN_DEFAULT: dict[str, tuple[str, ...]] = {
    "": ("vllm_version", "profile_kind", "device", "frontend_per_request_s"),
    "step": ("lora_step_s", "lora_token_rank_s"),
}


def _defaults_to_omit(profile: Profile) -> dict[str, object]:
    exclude: dict[str, object] = {}
    for part, names in OMIT_WHEN_DEFAULT.items():
        obj = getattr(profile, part) if part else profile
        fields = type(obj).model_fields
        same = {n for n in names if getattr(obj, n) == fields[n].default}
        if part and same:
            exclude[part] = same
        elif not part:
            exclude.update(dict.fromkeys(same, True))
    return exclude


def save_profile(profile: Profile, path: Path) -> None:
    """Write a profile as indented JSON (fields of :data:`OMIT_WHEN_DEFAULT` that hold their
    default are left out; reading the file gives them back)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = profile.model_dump_json(indent=1, exclude=_defaults_to_omit(profile))
    path.write_text(text + "\n")
