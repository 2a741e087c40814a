"""Loading and listing profiles: bundled JSON files or a user-given path."""

from __future__ import annotations

import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

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
            raise DataError(f"profile file not found: {path}" if not path.exists()
                            else f"profile {path} is not a file")
        text = path.read_bytes()
    else:
        res = resources.files(_BUNDLED) / f"{name_or_path}.json"
        if not res.is_file():
            known = ", ".join(bundled_profiles()) or "none"
            raise DataError(f"unknown profile {str(name_or_path)!r} (bundled: {known})",
                            field="model")
        text = res.read_bytes()
    try:
        profile = Profile.model_validate_json(text)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err.get("loc", ()))
        raise DataError(f"{name_or_path}: not a valid profile ({loc + ': ' if loc else ''}"
                        f"{err['msg']})") from None
    problem = _unknown_key(Profile, json.loads(text)) or check_profile(profile)
    if problem:
        raise DataError(f"{name_or_path}: not a valid profile ({problem})")
    return profile


def _unknown_key(model: type[BaseModel], data: Any, loc: str = "") -> str | None:
    """``step.bogus: unknown field`` for the first key no (nested) model field has: a
    misspelt coefficient would otherwise silently take its default."""
    if not isinstance(data, dict):
        return None
    for key, value in data.items():
        field = model.model_fields.get(key)
        where = f"{loc}{key}"
        if field is None:
            return f"{where}: unknown field"
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            found = _unknown_key(sub, value, where + ".")
            if found:
                return found
    return None


_NON_NEGATIVE = ("frontend_latency_s", "sharegpt_std_input_tokens", "sharegpt_std_output_tokens")
_POSITIVE = ("gpu_total_memory_gib", "sharegpt_mean_input_tokens", "sharegpt_mean_output_tokens")


def check_profile(profile: Profile) -> str | None:
    """The first value of a profile that no GPU has, as ``field: rule``, or ``None``.

    Rules: every number finite; step-cost coefficients (s) and the frontend latency >= 0
    (the fit is non-negative least squares); ``split_k_fixed_fraction`` and
    ``gpu_memory_utilization_measured`` in [0, 1]; sizes (``max_model_len``, ``block_size``,
    architecture shapes), GPU memory and mean lengths > 0.
    """
    bad = _non_finite(profile.model_dump())
    if bad:
        return f"{bad}: must be a finite number"
    for name, value in profile.step.model_dump().items():
        if value < 0:
            return f"step.{name}: must be >= 0 (got {value})"
    if profile.step.split_k_fixed_fraction > 1:
        return "step.split_k_fixed_fraction: must be <= 1"
    if not 0 < profile.gpu_memory_utilization_measured <= 1:
        return "gpu_memory_utilization_measured: must be in (0, 1]"
    for name in _NON_NEGATIVE:
        if getattr(profile, name) < 0:
            return f"{name}: must be >= 0 (got {getattr(profile, name)})"
    for name in _POSITIVE:
        if not getattr(profile, name) > 0:
            return f"{name}: must be > 0 (got {getattr(profile, name)})"
    sizes = {"max_model_len": profile.max_model_len, "block_size": profile.block_size,
             **{f"arch.{k}": v for k, v in profile.arch.model_dump().items()}}
    for name, value in sizes.items():
        if value < 1:
            return f"{name}: must be >= 1 (got {value})"
    return None


def _non_finite(data: Any, loc: str = "") -> str | None:
    if isinstance(data, float):
        return None if math.isfinite(data) else loc.rstrip(".")
    items = data.items() if isinstance(data, dict) else (
        enumerate(data) if isinstance(data, list | tuple) else ())
    for key, value in items:
        found = _non_finite(value, f"{loc}{key}.")
        if found:
            return found
    return None


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
