"""Figure of the advice: throughput and latency against batch, with B_opt marked.

One panel per (model, setting), laid out in a grid. Each panel shows the total token
throughput (tokens/s, left axis, solid) and the rule's latency (mean TPOT or ITL, ms, right
axis, dashed) against the rule's batch axis (log2 scale), a vertical line at B_opt and a
horizontal line at the latency bound. Runs with preemptions are drawn with hollow markers.

Uses matplotlib's object API with the Agg canvas, so it never touches the global backend.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from loratwin.advisor.advice import Advice
from loratwin.advisor.rules import AXIS_COLUMNS, LATENCY_COLUMNS, Rule
from loratwin.advisor.sweep import (
    PREEMPTION_COLUMN,
    THROUGHPUT_COLUMN,
    split_sweep,
    validate_sweep,
)
from loratwin.errors import DataError

MAX_COLUMNS = 4
THROUGHPUT_COLOR = "tab:blue"
LATENCY_COLOR = "tab:red"
BOPT_COLOR = "tab:green"


def plot_advice(sweep: pd.DataFrame, advices: tuple[Advice, ...], rule: Rule,
                path: str | Path) -> Path:
    """Draw the advice of every curve of a sweep and save it as an image.

    Parameters
    ----------
    sweep:
        The sweep the advice was computed from.
    advices:
        The advisor's output for ``sweep`` (same order as :func:`split_sweep`).
    rule:
        The rule used (gives the batch axis and the latency metric).
    path:
        Output file; the format follows the suffix (``.png`` recommended).

    Returns
    -------
    pathlib.Path
        The path written.

    Raises
    ------
    DataError
        If the output directory does not exist, or ``advices`` does not match ``sweep``.
    """
    out = Path(path)
    if not out.parent.exists():
        raise DataError(f"directory does not exist: {out.parent}", field="--plot")
    groups = split_sweep(validate_sweep(sweep, ()))
    if [k for k, _ in groups] != [a.key for a in advices]:
        raise DataError("the advice does not match the sweep's curves", field="advices")
    n = len(groups)
    ncols = min(MAX_COLUMNS, n)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.3 * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    axis_col = AXIS_COLUMNS[rule.batch_axis]
    lat_col = LATENCY_COLUMNS[rule.latency]
    lat_name = f"mean {rule.latency.upper()} (ms)"
    for i, ((key, frame), advice) in enumerate(zip(groups, advices, strict=True)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        runs = frame.sort_values([axis_col, "max_num_seqs"])
        preempted = runs[PREEMPTION_COLUMN] > 0
        x = runs[axis_col].to_numpy(dtype=float)
        ax.plot(x, runs[THROUGHPUT_COLUMN], color=THROUGHPUT_COLOR, marker="o", ms=3, lw=1.2)
        ax.plot(x[preempted.to_numpy()], runs.loc[preempted, THROUGHPUT_COLUMN], ls="none",
                marker="o", ms=7, mfc="none", mec="black")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{rule.batch_axis} batch ({axis_col})")
        ax.set_ylabel("throughput (tok/s)", color=THROUGHPUT_COLOR)
        ax.tick_params(axis="y", colors=THROUGHPUT_COLOR)
        lat_ax = ax.twinx()
        lat_ax.plot(x, runs[lat_col], color=LATENCY_COLOR, marker="s", ms=3, lw=1.2, ls="--")
        lat_ax.set_ylabel(lat_name, color=LATENCY_COLOR)
        lat_ax.tick_params(axis="y", colors=LATENCY_COLOR)
        if advice.b_opt is not None and advice.latency_limit_ms is not None:
            ax.axvline(advice.b_opt, color=BOPT_COLOR, lw=1.5)
            lat_ax.axhline(advice.latency_limit_ms, color=LATENCY_COLOR, lw=0.8, ls=":")
            kept = advice.throughput_kept_pct or 0.0
            title = f"{key.label()}\nB_opt = {advice.b_opt:g} ({kept:.0f} % of max tok/s)"
        else:
            title = f"{key.label()}\nno B_opt"
        ax.set_title(title, fontsize=9)
    legend = (f"{rule.describe()}. Throughput (blue, solid), latency (red, dashed), "
              "B_opt (green), latency bound (red, dotted), preempted runs (circled).")
    # wrap to the figure's width (about 14 characters per inch at 9 pt)
    fig.suptitle(textwrap.fill(legend, width=int(4.2 * ncols * 14)), fontsize=9)
    fig.savefig(out, dpi=110)
    return out
