"""Rendering of ``loratwin replan`` and ``loratwin workload drift``: Rich tables and JSON
documents (imported by the command functions, not at the command modules' top)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from rich.table import Table

from loratwin.cli.common import fmt
from loratwin.placement.replan import ReplanResult
from loratwin.placement.report import placement_dict
from loratwin.placement.types import Placement
from loratwin.workload.drift import WorkloadDrift


def summary_line(r: ReplanResult, deployed_gpus: int) -> str:
    """One line: strategy, moves, adds, removals, GPUs before/after and the cap."""
    return (f"replan ({r.strategy}): {len(r.moves)} move(s), {len(r.added)} added, "
            f"{len(r.removed)} removed; {deployed_gpus} -> {r.placement.gpus} GPU(s) "
            f"({len(r.new_gpus)} new, {len(r.freed_gpus)} freed, {len(r.restarted_gpus)} "
            f"restarted with new flags); a fresh placement needs {r.fresh_gpus}, cap {r.cap}")


def replan_table(r: ReplanResult) -> Table:
    """Per GPU: status, adapters, moves in/out, and the surrogate's starvation probability,
    mean ITL and mean TTFT before (the deployed GPU at the new rates) and after (80 columns;
    flags and the full predictions are in ``-o``)."""
    table = Table(title="replan: per GPU, before (deployed, new rates) and after; ITL ms, "
                        "TTFT s",
                  header_style="bold", box=None, padding=(0, 1), pad_edge=False)
    for c in ("GPU", "status", "adap.\nbef.", "adap.\naft.", "moves\nin/out", "p(st)\nbef.",
              "p(st)\naft.", "ITL\nbef.", "ITL\naft.", "TTFT\nbef.", "TTFT\naft."):
        table.add_column(c, justify="left" if c in ("GPU", "status") else "right",
                         no_wrap=True)
    moved_in: dict[str, int] = {}
    moved_out: dict[str, int] = {}
    for m in r.moves:
        moved_in[m.target] = moved_in.get(m.target, 0) + 1
        for s in m.source:
            moved_out[s] = moved_out.get(s, 0) + 1
    after = dict(zip(r.names, r.placement.servers, strict=True))
    for name in [*r.before, *(n for n in r.names if n not in r.before)]:
        b = r.before.get(name, {})
        g = after.get(name)
        a = g.predicted if g is not None else {}
        status = ("new" if name in r.new_gpus else "freed" if g is None else
                  "restart" if name in r.restarted_gpus else "kept")

        def cell(d: dict, key: str, digits: int, scale: float = 1.0) -> str:
            v = d.get(key)
            return fmt(None if v is None else v / scale, digits)

        table.add_row(
            name, status, fmt(int(b["adapters"]) if b else None),
            fmt(len(g.adapters) if g is not None else None),
            f"{moved_in.get(name, 0)}/{moved_out.get(name, 0)}",
            cell(b, "starvation_probability", 2), cell(a, "starvation_probability", 2),
            cell(b, "mean_itl_ms", 1), cell(a, "mean_itl_ms", 1),
            cell(b, "mean_ttft_ms", 1, 1e3), cell(a, "mean_ttft_ms", 1, 1e3))
    return table


def replan_doc(r: ReplanResult, placement: Placement, context: dict[str, Any],
               rates: dict[str, float]) -> dict[str, Any]:
    """The ``-o`` document: the ``place --json`` schema (with ``context``, the keys of
    :func:`loratwin.deploy.fleet.plan_context`) and GPU names, plus a ``replan`` block."""
    doc = {**placement_dict(placement, rates), **context}
    for s, name in zip(doc["servers"], r.names, strict=True):
        s["name"] = name
    doc["replan"] = {
        "strategy": r.strategy, "fresh_gpus": r.fresh_gpus, "cap": r.cap,
        "moves": [{"adapter": m.adapter, "from": list(m.source), "to": m.target}
                  for m in r.moves],
        "added": list(r.added), "removed": list(r.removed), "new_gpus": list(r.new_gpus),
        "freed_gpus": list(r.freed_gpus), "restarted_gpus": list(r.restarted_gpus),
        "before": r.before,
    }
    return doc


def _pct(new: float, old: float) -> str:
    return "-" if not old > 0 else f"{(new / old - 1):+.1%}"


def drift_table(d: WorkloadDrift, top: int) -> Table:
    """The drift summary as a two-column table, then the largest rate changes."""
    table = Table(title="workload drift", show_header=False, box=None, padding=(0, 1))
    table.add_column("quantity")
    table.add_column("value", justify="right")
    f = d.rate_factors()
    table.add_row("adapters old -> new", f"{d.old_count:,} -> {d.new_count:,}")
    table.add_row("added / removed", f"{len(d.added):,} / {len(d.removed):,}")
    table.add_row("re-rated (up / down)", f"{len(d.rerated):,} ({int((f > 1).sum()):,} / "
                                          f"{int((f < 1).sum()):,})")
    if f.size:
        q = np.quantile(f, [0.1, 0.5, 0.9])
        table.add_row("rate factor p10 / median / p90", " / ".join(f"{v:.3g}" for v in q))
    table.add_row("re-ranked / new mean lengths", f"{len(d.reranked):,} / "
                                                  f"{len(d.relengthened):,}")
    table.add_row("unchanged", f"{d.unchanged:,}")
    table.add_row("total rate req/s", f"{d.old_rate_req_s:.4g} -> {d.new_rate_req_s:.4g} "
                                      f"({_pct(d.new_rate_req_s, d.old_rate_req_s)})")
    if d.old_offered_tok_s > 0:
        table.add_row("offered tok/s (given lengths)",
                      f"{d.old_offered_tok_s:,.0f} -> {d.new_offered_tok_s:,.0f} "
                      f"({_pct(d.new_offered_tok_s, d.old_offered_tok_s)})")
    changes = sorted(d.rerated, key=lambda p: -abs(p[1].rate - p[0].rate))[:max(top, 0)]
    for a, b in changes:
        table.add_row(f"  {a.id}", f"{a.rate:.4g} -> {b.rate:.4g} req/s")
    return table


def drift_doc(d: WorkloadDrift) -> dict[str, Any]:
    """JSON form of the drift summary."""
    return {
        "added": [a.id for a in d.added], "removed": [a.id for a in d.removed],
        "rerated": [{"id": a.id, "old_rate_req_s": a.rate, "new_rate_req_s": b.rate}
                    for a, b in d.rerated],
        "reranked": [{"id": a.id, "old_rank": a.rank, "new_rank": b.rank}
                     for a, b in d.reranked],
        "relengthened": [a.id for a, _ in d.relengthened], "unchanged": d.unchanged,
        "old_rate_req_s": d.old_rate_req_s, "new_rate_req_s": d.new_rate_req_s,
        "old_offered_tok_s": d.old_offered_tok_s if math.isfinite(d.old_offered_tok_s)
        else None,
        "new_offered_tok_s": d.new_offered_tok_s,
    }
