"""User-facing errors.

Every error a user can cause (bad config, missing file, malformed row) is raised as a
:class:`LoraTwinError`. The CLI renders it as a single line on stderr and exits with code 2;
library callers can catch it like any ``ValueError``.
"""

from __future__ import annotations


class LoraTwinError(ValueError):
    """A problem with the user's input, reported as one line.

    Parameters
    ----------
    message:
        What is wrong, phrased for the user.
    field:
        The name of the offending field, flag or column, if there is one. It is prefixed to
        the message so that the user knows what to fix.
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class ConfigError(LoraTwinError):
    """An invalid configuration value (negative rate, rank above ``max_lora_rank``, ...)."""


class DataError(LoraTwinError):
    """A missing or malformed input file (CSV, YAML, JSON, Parquet)."""
