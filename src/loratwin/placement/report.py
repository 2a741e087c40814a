"""Reporting of placements: Rich tables, JSON documents and the algorithm comparison (table,
JSON, plot); the ``vllm serve`` scripts and other deployable files are in :mod:`loratwin.deploy`.

Aggregates of :func:`summarize` (``loratwin compare``): throughput is summed over GPUs; mean
ITL and mean TTFT are averaged over GPUs weighted by each GPU's total throughput (tok/s), a
proxy for its share of the tokens (the twin's per-GPU verification reports no request
counts); GPUs with a memory error (no throughput) carry no weight. Without verification the
surrogate's predictions are used instead and ``verified`` is False.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from loratwin.placement.types import GpuAssignment, Placement

# ----------------------------------------------------------------------------- one placement


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "-" if not math.isfinite(v) else f"{v:,.{digits}f}"
    return str(v)


def adapter_shares(problem_rates: dict[str, float], gpu: GpuAssignment) -> list[tuple[str, float]]:
    """(id, share of the adapter's traffic on this GPU) per served adapter or piece."""
    out = []
    for a in gpu.adapters:
        total = problem_rates.get(a.id, a.rate)
        out.append((a.id, a.rate / total if total > 0 else 1.0))
    return out


def placement_table(placement: Placement, rates: dict[str, float] | None = None) -> Table:
    """One row per GPU: adapter count, ranks, load, vLLM flags and the surrogate's predictions
    (TTFT in s so that the table fits 80 columns; the ids are in ``--json``)."""
    table = Table(title=f"{placement.algorithm}: {placement.gpus} GPU(s), placed in "
                        f"{placement.placement_s:.2f} s", header_style="bold",
                  box=None, padding=(0, 1), pad_edge=False)
    for c in ("GPU", "\nadap-\nters", "\n\nranks", "\n\nreq/s", "\nmax_\nloras",
              "max_\ncpu_\nloras", "max_\nlora_\nrank", "\nthr.\ntok/s", "\nITL\nms",
              "\nTTFT\ns", "\np(st-\narve)", "\nhead-\nroom"):
        table.add_column(c, justify="left" if c.endswith("ranks") else "right", no_wrap=True)
    split = {i for g in placement.servers for i, s in adapter_shares(rates or {}, g)
             if s < 1 - 1e-9}
    for k, g in enumerate(placement.servers):
        ranks = sorted({a.rank for a in g.adapters})
        p = g.predicted
        n_split = sum(a.id in split for a in g.adapters)
        table.add_row(
            str(k), f"{len(g.adapters)}" + ("*" if n_split else ""),
            ",".join(map(str, ranks)), _fmt(g.total_rate, 2), str(g.max_loras),
            str(g.max_cpu_loras), str(g.max_lora_rank),
            _fmt(p.get("total_throughput_tok_s"), 0), _fmt(p.get("mean_itl_ms")),
            _fmt(p.get("mean_ttft_ms", math.nan) / 1e3, 1),
            _fmt(p.get("starvation_probability"), 2), _fmt(p.get("headroom"), 2),
        )
    if split:
        table.caption = f"* serves a share of {len(split)} split adapter(s) (see --json)"
    return table


def verified_table(placement: Placement) -> Table:
    """One row per GPU: the twin's verification (throughput, latencies, starvation, memory)."""
    table = Table(title=f"{placement.algorithm}: twin verification", header_style="bold")
    for c in ("GPU", "offered\ntok/s", "thr.\ntok/s", "mean ITL\nms", "p99 ITL\nms",
              "mean TTFT\nms", "p99 TTFT\nms", "starved", "memory\nerror"):
        table.add_column(c, justify="right", no_wrap=True)
    for k, g in enumerate(placement.servers):
        v = g.verified or {}
        starved, mem = v.get("starvation"), v.get("memory_error")
        table.add_row(
            str(k), _fmt(v.get("offered_throughput_tok_s"), 0),
            _fmt(v.get("total_throughput_tok_s"), 0), _fmt(v.get("mean_itl_ms")),
            _fmt(v.get("p99_itl_ms")), _fmt(v.get("mean_ttft_ms")), _fmt(v.get("p99_ttft_ms")),
            "[red]yes[/red]" if starved else _fmt(starved),
            ("[red]" + str(v.get("memory_error_reason") or "yes") + "[/red]") if mem
            else _fmt(mem),
        )
    return table


def placement_dict(placement: Placement, rates: dict[str, float] | None = None,
                   lower_bound: int | None = None) -> dict[str, Any]:
    """The ``--json`` document of ``loratwin place``: :meth:`Placement.to_dict` plus, per GPU,
    ``rates_req_s`` (the rate served there, req/s) and ``traffic_share`` (fraction of each
    adapter's traffic, < 1 for split adapters), and the lower bound when known."""
    doc = placement.to_dict()
    for s, g in zip(doc["servers"], placement.servers, strict=True):
        s["rates_req_s"] = [a.rate for a in g.adapters]
        s["traffic_share"] = [share for _, share in adapter_shares(rates or {}, g)]
    if lower_bound is not None:
        doc["lower_bound"] = lower_bound
    return doc


# ----------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class CompareRow:
    """One algorithm in ``loratwin compare`` (units in the names; see the module docstring).

    ``starved_gpus`` / ``memory_errors`` count GPUs the twin saw starving / failing to start
    (``predicted_starving_gpus``: the surrogate's p >= 0.5); ``verified`` tells whether the
    metrics come from the twin.
    """

    algorithm: str
    gpus: int
    starved_gpus: int
    memory_errors: int
    total_throughput_tok_s: float
    mean_itl_ms: float
    mean_ttft_ms: float
    placement_s: float
    predicted_starving_gpus: int
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _weighted(values: Sequence[float], weights: Sequence[float]) -> float:
    pairs = [(v, w) for v, w in zip(values, weights, strict=True)
             if v is not None and math.isfinite(v) and w > 0]
    total = sum(w for _, w in pairs)
    return sum(v * w for v, w in pairs) / total if total > 0 else math.nan


def summarize(placement: Placement) -> CompareRow:
    """Aggregate a (verified) placement into one comparison row."""
    servers = placement.servers
    verified = bool(servers) and all(g.verified for g in servers)
    src = [g.verified if verified else g.predicted for g in servers]
    thr = [float(s.get("total_throughput_tok_s") or 0.0) if s else 0.0 for s in src]
    thr = [t if math.isfinite(t) else 0.0 for t in thr]
    return CompareRow(
        algorithm=placement.algorithm,
        gpus=placement.gpus,
        starved_gpus=sum(bool(g.verified and g.verified.get("starvation")) for g in servers),
        memory_errors=sum(bool(g.verified and g.verified.get("memory_error")) for g in servers),
        total_throughput_tok_s=float(sum(thr)),
        mean_itl_ms=_weighted([s.get("mean_itl_ms", math.nan) for s in src], thr),
        mean_ttft_ms=_weighted([s.get("mean_ttft_ms", math.nan) for s in src], thr),
        placement_s=placement.placement_s,
        predicted_starving_gpus=sum(g.predicted.get("starvation_probability", 0.0) >= 0.5
                                    for g in servers),
        verified=verified,
    )


def compare_dict(rows: Sequence[CompareRow], lower_bound: int,
                 optimum: int | None, optimum_note: str | None = None) -> dict[str, Any]:
    """The ``--json`` document of ``loratwin compare``."""
    doc: dict[str, Any] = {
        "lower_bound": lower_bound,
        "optimum": optimum,
        "results": [r.to_dict() for r in rows],
    }
    if optimum_note:
        doc["optimum_note"] = optimum_note
    return doc


def compare_table(rows: Sequence[CompareRow], lower_bound: int, optimum: int | None) -> Table:
    """The comparison as a Rich table."""
    opt = "-" if optimum is None else str(optimum)
    table = Table(title=f"Placement comparison (lower bound {lower_bound}, optimum {opt})",
                  header_style="bold")
    for c in ("algorithm", "GPUs", "starved\n(twin)", "memory\nerrors", "p>=0.5\n(surrogate)",
              "throughput\n(tok/s)", "mean ITL\n(ms)", "mean TTFT\n(ms)", "placement\n(s)"):
        table.add_column(c, justify="left" if c == "algorithm" else "right")
    for r in rows:
        table.add_row(
            r.algorithm, str(r.gpus),
            f"[red]{r.starved_gpus}[/red]" if r.starved_gpus else "0",
            f"[red]{r.memory_errors}[/red]" if r.memory_errors else "0",
            str(r.predicted_starving_gpus), _fmt(r.total_throughput_tok_s, 0),
            _fmt(r.mean_itl_ms), _fmt(r.mean_ttft_ms), f"{r.placement_s:.3f}",
        )
    return table


def plot_compare(rows: Sequence[CompareRow], lower_bound: int, optimum: int | None,
                 path: Path, title: str = "GPUs per placement algorithm") -> Path:
    """Bar chart: GPUs per algorithm (starved GPUs in red), lower bound and optimum lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.algorithm for r in rows]
    ok = [r.gpus - r.starved_gpus for r in rows]
    bad = [r.starved_gpus for r in rows]
    fig, ax = plt.subplots(figsize=(1.1 * len(rows) + 3, 4))
    ax.bar(names, ok, color="#4C72B0", label="GPUs (healthy in the twin)")
    ax.bar(names, bad, bottom=ok, color="#C44E52", label="starved GPUs (twin)")
    ax.axhline(lower_bound, color="black", linestyle="--", label=f"lower bound ({lower_bound})")
    if optimum is not None:
        ax.axhline(optimum, color="#55A868", linestyle=":", label=f"optimum ({optimum})")
    ax.set_ylabel("GPUs")
    ax.set_title(title)
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
