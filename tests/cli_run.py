"""Run the ``loratwin`` command line in-process and return its exit code (tests only)."""

from __future__ import annotations

from loratwin.cli.app import main


def run_cli(argv: list[str]) -> int:
    """Exit code of ``loratwin ARGV`` (0 when the command returns normally)."""
    try:
        main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0
