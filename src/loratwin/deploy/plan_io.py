"""Writing the emitters' files for one plan (``loratwin place --emit FORMAT OUT``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from loratwin.deploy import format_name, render
from loratwin.deploy.fleet import FleetOptions, fleet_from_plan
from loratwin.deploy.options import EmitOptions
from loratwin.errors import ConfigError


def check_emit(formats: Sequence[str], out: Path | None, emit_vllm: Path | None,
               fleet_options: FleetOptions) -> list[str]:
    """Canonical format names, after checking the options (before any long work).

    Raises
    ------
    ConfigError
        Unknown format, formats without an output folder or the reverse, a bad name prefix or
        template.
    """
    names = list(dict.fromkeys(format_name(f) for f in formats))
    if names and out is None:
        raise ConfigError("--emit needs an output folder (loratwin place WORKLOAD --emit "
                          "FORMAT OUT)", field="emit")
    if out is not None and not names:
        raise ConfigError(f"output folder {out} given without --emit FORMAT", field="emit")
    fleet_options.check()
    if "kubernetes" in names:  # the scheme of the adapter locations, before the placement
        from loratwin.deploy.kubernetes import adapter_path

        adapter_path(fleet_options.adapter_uri_template.format(adapter_id="a", rank=8))
    return names


def render_plan(doc: Mapping[str, Any], formats: Sequence[str], out: Path | None,
                emit_vllm: Path | None, fleet_options: FleetOptions,
                emit_options: EmitOptions) -> list[tuple[str, Path, dict[str, str]]]:
    """(format, folder, {file name: text}) for each format (into ``out/<format>``) and for the
    ``--emit-vllm`` scripts; everything is rendered before anything is written.

    Raises
    ------
    DataError, ConfigError
        See :func:`~loratwin.deploy.fleet.fleet_from_plan` and the emitters.
    """
    fleet = fleet_from_plan(doc, fleet_options)
    jobs = [(f, out / f) for f in formats if out is not None]
    if emit_vllm is not None:
        jobs.append(("vllm", emit_vllm))
    return [(f, d, render(f, fleet, emit_options)) for f, d in jobs]
