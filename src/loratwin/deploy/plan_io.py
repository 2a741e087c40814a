"""Writing the emitters' files for one plan (``loratwin place --emit FORMAT OUT``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loratwin.deploy import check_out_dir, format_name, render, write
from loratwin.deploy.fleet import FleetOptions, fleet_from_plan
from loratwin.deploy.options import EmitOptions
from loratwin.errors import ConfigError


def check_emit(formats: Sequence[str], out: Path | None, emit_vllm: Path | None,
               fleet_options: FleetOptions) -> list[str]:
    """Canonical format names, after checking the options and output folders (before any
    long work).

    Raises
    ------
    ConfigError
        Unknown format, formats without an output folder or the reverse, an output path that
        is a file, a bad name prefix or template.
    """
    names = list(dict.fromkeys(format_name(f) for f in formats))
    if names and out is None:
        raise ConfigError("--emit needs an output folder (loratwin place WORKLOAD --emit "
                          "FORMAT OUT)", field="emit")
    if out is not None and not names:
        raise ConfigError(f"output folder {out} given without --emit FORMAT", field="emit")
    for d in (out, emit_vllm):
        if d is not None:
            check_out_dir(d)
    fleet_options.check()
    return names


def emit_plan(doc: Mapping[str, Any], formats: Sequence[str], out: Path | None,
              emit_vllm: Path | None, fleet_options: FleetOptions,
              emit_options: EmitOptions) -> list[str]:
    """Write ``out/<format>/...`` for each format and the ``--emit-vllm`` scripts; returns
    one line per folder written."""
    fleet = fleet_from_plan(doc, fleet_options)
    jobs = [(f, out / f) for f in formats if out is not None]
    if emit_vllm is not None:
        jobs.append(("vllm", emit_vllm))
    rendered = [(f, d, render(f, fleet, emit_options)) for f, d in jobs]  # fail before writing
    lines = []
    for f, d, files in rendered:
        paths = write(files, d)
        lines.append(f"wrote {len(paths)} {f} file(s) to {d}")
    return lines
