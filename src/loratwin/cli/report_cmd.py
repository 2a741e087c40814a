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


def check_html_out(path: Path) -> None:
    """Raise ``ConfigError`` unless ``path`` can be written as an HTML file (checked before
    long work)."""
    from loratwin.errors import ConfigError

    if path.is_dir():
        raise ConfigError(f"{path} is a directory", field="html")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise ConfigError(f"{parent} is not a directory", field="html")


def read_plan(path: Path) -> dict[str, object]:
    """The JSON document in ``path`` (``DataError`` if missing or not JSON)."""
    from loratwin.errors import DataError

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
    from loratwin.cli.common import console
    from loratwin.report.html import placement_report

    check_html_out(out)
    html = placement_report(read_plan(plan), title)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html)
    console.print(f"wrote {out} ({len(html) / 1e3:,.0f} kB)")
