"""The "estimated" label every output made from a prior profile carries (no heavy imports)."""

from __future__ import annotations

from loratwin.profile.model import Profile

#: What every prior profile and every output made from one is called.
ESTIMATED = "estimated"


def is_estimated(profile: Profile) -> bool:
    """Whether outputs made from ``profile`` must say "estimated" (``profile_kind`` prior)."""
    return profile.profile_kind == "prior"


def estimated_prefix(profile: Profile) -> str:
    """``"estimated: "`` for a prior profile (table titles), else ``""``."""
    return f"{ESTIMATED}: " if is_estimated(profile) else ""


def estimated_note(profile: Profile) -> str:
    """One line saying that every figure made from ``profile`` is estimated."""
    calibrated = profile.fit_report.get("prior", {}).get("calibrated_on", "")
    return (f"{ESTIMATED}: {profile.name} is a physics prior (no measurement of this model "
            f"on this GPU; efficiency factors fitted on {calibrated}); all figures are "
            f"{ESTIMATED}")


__all__ = ["ESTIMATED", "estimated_note", "estimated_prefix", "is_estimated"]
