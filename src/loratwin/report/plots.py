"""The report's figures as inline SVG (matplotlib, Agg backend; no network at view time).

Each function takes the per-GPU rows of :func:`loratwin.report.view.gpu_rows` and returns an
``<svg>`` element as a string (text kept as text, ``svg.hashsalt`` fixed so that the same
plan gives the same file).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

PREDICTED, VERIFIED, OFFERED, SLO = "#4C72B0", "#DD8452", "#8C8C8C", "#C44E52"


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "loratwin",
                         "font.size": 9, "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _svg(fig: Any) -> str:
    plt = _plt()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _vals(rows: Sequence[dict[str, Any]], key: str) -> list[float]:
    out = []
    for r in rows:
        v = r.get(key)
        out.append(float(v) if isinstance(v, int | float) and math.isfinite(v) else math.nan)
    return out


def _width(n: int) -> float:
    return min(max(7.0, 0.45 * n + 2.0), 14.0)


def _headroom(ax: Any, top: float) -> None:
    """Room above the bars for a legend on one row."""
    if math.isfinite(top) and top > 0:
        ax.set_ylim(0, top * 1.3)


def throughput(rows: Sequence[dict[str, Any]], estimated: bool) -> str:
    """Offered load vs predicted (and verified) throughput per GPU, tok/s."""
    plt = _plt()
    n = len(rows)
    x = list(range(n))
    has_v = any(math.isfinite(v) for v in _vals(rows, "verified_thr"))
    k = 3 if has_v else 2
    w = 0.8 / k
    fig, ax = plt.subplots(figsize=(_width(n), 3.2))
    ax.bar([i - 0.4 + w / 2 for i in x], _vals(rows, "offered"), w, color=OFFERED,
           label="offered")
    ax.bar([i - 0.4 + 1.5 * w for i in x], _vals(rows, "predicted_thr"), w, color=PREDICTED,
           label="predicted (surrogate" + (", estimated profile)" if estimated else ")"))
    if has_v:
        ax.bar([i - 0.4 + 2.5 * w for i in x], _vals(rows, "verified_thr"), w, color=VERIFIED,
               label="verified (twin)")
    ax.set_xticks(x, [str(r["gpu"]) for r in rows])
    ax.set_xlabel("GPU")
    ax.set_ylabel("tok/s")
    ax.set_title("Throughput per GPU: offered vs served")
    _headroom(ax, max((v for k in ("offered", "predicted_thr", "verified_thr")
                       for v in _vals(rows, k) if math.isfinite(v)), default=math.nan))
    ax.legend(fontsize=8, ncols=3, loc="upper center", frameon=False)
    return _svg(fig)


def latency(rows: Sequence[dict[str, Any]], slo_ttft_ms: float | None,
            slo_itl_ms: float | None) -> str:
    """Mean TTFT (log scale) and mean ITL per GPU, predicted and verified, with the SLOs."""
    plt = _plt()
    n = len(rows)
    x = list(range(n))
    fig, axes = plt.subplots(1, 2, figsize=(min(2 * _width(n), 14.0), 3.2))
    for ax, key, unit, slo, title in (
            (axes[0], "ttft", "ms", slo_ttft_ms, "Mean TTFT per GPU"),
            (axes[1], "itl", "ms", slo_itl_ms, "Mean ITL per GPU")):
        pv, vv = _vals(rows, f"predicted_{key}"), _vals(rows, f"verified_{key}")
        ax.plot(x, pv, "o", color=PREDICTED, label="predicted")
        if any(math.isfinite(v) for v in vv):
            ax.plot(x, vv, "s", color=VERIFIED, label="verified (twin)")
            p99 = _vals(rows, f"verified_p99_{key}")
            if any(math.isfinite(v) for v in p99):
                ax.plot(x, p99, "v", color=VERIFIED, alpha=0.5, label="p99 (twin)")
        if slo is not None:
            ax.axhline(slo, color=SLO, linestyle="--", label=f"SLO {slo:g} {unit}")
        if key == "ttft":
            finite = [v for v in pv + vv if math.isfinite(v) and v > 0]
            if finite and max(finite) / min(finite) > 50:
                ax.set_yscale("log")
        ax.set_xticks(x, [str(r["gpu"]) for r in rows])
        ax.set_xlabel("GPU")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return _svg(fig)


def ranks(rows: Sequence[dict[str, Any]]) -> str:
    """Adapters per GPU, stacked by LoRA rank, with each GPU's ``max_loras``."""
    plt = _plt()
    n = len(rows)
    x = list(range(n))
    all_ranks = sorted({r for row in rows for r in row["rank_counts"]})
    cmap = plt.get_cmap("viridis", max(len(all_ranks), 2))
    fig, ax = plt.subplots(figsize=(_width(n), 3.2))
    bottom = [0.0] * n
    for j, rank in enumerate(all_ranks):
        h = [float(row["rank_counts"].get(rank, 0)) for row in rows]
        ax.bar(x, h, 0.7, bottom=bottom, color=cmap(j), label=f"rank {rank}")
        bottom = [b + v for b, v in zip(bottom, h, strict=True)]
    ax.plot(x, [row["max_loras"] for row in rows], "_", color="black", markersize=18,
            markeredgewidth=2, label="max_loras")
    ax.set_xticks(x, [str(r["gpu"]) for r in rows])
    ax.set_xlabel("GPU")
    ax.set_ylabel("adapters")
    ax.set_title("Adapters per GPU by rank")
    _headroom(ax, max(max(bottom, default=0.0),
                      max((float(r["max_loras"] or 0) for r in rows), default=0.0)))
    ax.legend(fontsize=8, ncols=min(len(all_ranks) + 1, 6), loc="upper center", frameon=False)
    return _svg(fig)


def timeseries(rows: Sequence[dict[str, Any]]) -> str | None:
    """The twin's running / waiting requests and KV cache use over the window, one line per
    GPU (``None`` when no GPU carries a time series)."""
    series = [(r["gpu"], r["timeseries"]) for r in rows if r.get("timeseries")]
    if not series:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14.0, 3.4))
    cmap = plt.get_cmap("tab10" if len(series) <= 10 else "tab20")
    for k, (gpu, ts) in enumerate(series):
        t = [v / 60.0 for v in ts["t_s"]]
        for ax, key in zip(axes, ("running", "waiting", "kv_used_fraction"), strict=True):
            scale = 100.0 if key == "kv_used_fraction" else 1.0
            ax.plot(t, [v * scale for v in ts[key]], color=cmap(k % cmap.N), lw=1.2,
                    label=f"GPU {gpu}")
    for ax, title, unit in zip(axes, ("running requests", "waiting requests",
                                      "KV cache in use"), ("requests", "requests", "%"),
                               strict=True):
        ax.set_title(title)
        ax.set_xlabel("time (min)")
        ax.set_ylabel(unit)
    axes[2].set_ylim(0, 105)
    axes[0].legend(fontsize=7, ncols=2)
    fig.tight_layout()
    return _svg(fig)


def gpus_per_algorithm(results: Sequence[dict[str, Any]], lower_bound: int,
                       optimum: int | None) -> str:
    """``loratwin compare``: GPUs per algorithm, starved GPUs (twin) in red."""
    plt = _plt()
    names = [r["algorithm"] for r in results]
    ok = [r["gpus"] - r["starved_gpus"] for r in results]
    bad = [r["starved_gpus"] for r in results]
    fig, ax = plt.subplots(figsize=(1.1 * len(results) + 3, 3.4))
    ax.bar(names, ok, color=PREDICTED, label="GPUs (healthy in the twin)")
    ax.bar(names, bad, bottom=ok, color=SLO, label="starved GPUs (twin)")
    ax.axhline(lower_bound, color="black", linestyle="--", label=f"lower bound ({lower_bound})")
    if optimum is not None:
        ax.axhline(optimum, color="#55A868", linestyle=":", label=f"optimum ({optimum})")
    ax.set_ylabel("GPUs")
    ax.set_title("GPUs per placement algorithm")
    ax.legend(fontsize=8)
    plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
    return _svg(fig)
