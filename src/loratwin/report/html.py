"""The self-contained HTML reports of ``loratwin report`` and ``loratwin compare --html``.

One file: inline CSS, figures as inline SVG (:mod:`loratwin.report.plots`), no script, no
external resource, so it opens offline. Templates (Jinja2, autoescaped) are in
``loratwin/report/templates/``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loratwin.errors import DataError
from loratwin.report import plots
from loratwin.report.view import gpu_rows, summary


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:,.{digits}f}"
    return str(v)


def _env() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(loader=PackageLoader("loratwin.report", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt
    return env


def _safe(svg: str | None) -> Any:
    from markupsafe import Markup

    return Markup(svg) if svg else None


def plan_section(doc: Mapping[str, Any]) -> dict[str, Any]:
    """Template context of one plan: summary, per-GPU rows and figures."""
    if not isinstance(doc, Mapping):
        raise DataError("the plan must be a JSON object")
    rows = gpu_rows(doc)
    s = summary(doc, rows)
    return {
        "summary": s, "rows": rows,
        "fig_throughput": _safe(plots.throughput(rows, s["estimated"])),
        "fig_latency": _safe(plots.latency(rows, s["slo_ttft_ms"], s["slo_itl_ms"])),
        "fig_ranks": _safe(plots.ranks(rows)),
        "fig_timeseries": _safe(plots.timeseries(rows)),
    }


def placement_report(doc: Mapping[str, Any], title: str | None = None) -> str:
    """HTML of one plan (``loratwin place --json`` document).

    Raises
    ------
    DataError
        The document is not a plan (see :func:`loratwin.report.view.gpu_rows`).
    """
    sec = plan_section(doc)
    s = sec["summary"]
    return _env().get_template("placement.html.j2").render(
        title=title or f"loratwin placement: {s['gpus']} GPU(s), {s['algorithm']}", plan=sec)


def compare_report(compare_doc: Mapping[str, Any], plans: Sequence[Mapping[str, Any]],
                   title: str | None = None) -> str:
    """HTML of ``loratwin compare``: the comparison table and chart, then every algorithm's
    plan as in :func:`placement_report`.

    Raises
    ------
    DataError
        Malformed comparison or plan documents.
    """
    results = compare_doc.get("results")
    if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
        raise DataError("the comparison has no results list")
    lb = compare_doc.get("lower_bound")
    opt = compare_doc.get("optimum")
    sections = [plan_section(p) for p in plans]
    estimated = any(sec["summary"]["estimated"] for sec in sections)
    return _env().get_template("compare.html.j2").render(
        title=title or "loratwin: placement algorithms compared", results=results,
        lower_bound=lb, optimum=opt, optimum_note=compare_doc.get("optimum_note"),
        fig_gpus=_safe(plots.gpus_per_algorithm(results, int(lb or 0), opt)),
        plans=sections, estimated=estimated)
