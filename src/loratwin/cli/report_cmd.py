"""``loratwin report``: a placement plan as one self-contained HTML file.

Example::

    loratwin place examples/azure-conv-512.csv --verify --json placement.json
    loratwin report placement.json -o report.html
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from loratwin.cli.app import app
from loratwin.errors import DataError


def read_plan(path: Path) -> dict[str, object]:
    """The JSON document in ``path`` (``DataError`` if missing or not a JSON object)."""
    if not path.is_file():
        raise DataError(f"file not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path}: not a placement plan (a JSON object)")
    return doc


@app.command("report")
def report_cmd(
    plan: Path = typer.Argument(..., help="Plan from `loratwin place --json` (with --verify "
                                          "for the twin's time series)"),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write"),
    title: str | None = typer.Option(None, help="Page title"),
) -> None:
    """Write a placement plan as one self-contained HTML report (tables and figures inline)."""
    from loratwin.cli.common import atomic_output, check_output_file, console

    check_output_file(out, "--out", suffixes=(".html", ".htm"))
    from loratwin.report.html import placement_report

    html = placement_report(read_plan(plan), title)
    with atomic_output(out) as tmp:
        tmp.write_text(html)
    console.print(f"wrote {out} ({len(html) / 1e3:,.0f} kB)")
