"""``loratwin advise``: the batching configuration advisor on a batch sweep.

Examples
--------
::

    loratwin advise bundled:fixed-length                 # rule (b), L = 3 (paper's memory figure)
    loratwin advise bundled:sharegpt --rule a --eps 0.1 -L 2
    loratwin advise sweep.csv --rule c --slo-ms 25 --json advice.json --plot advice.png

``SWEEP`` is a CSV in the schema of the bundled sweeps (see :mod:`loratwin.advisor.sweep`) or
one of the bundled names ``bundled:fixed-length`` and ``bundled:sharegpt`` (Mind the Memory Gap
measurements, shipped with the package). ``--twin CONFIG.yaml`` will produce the sweep with the
digital twin instead (not available yet).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loratwin.cli.app import app
from loratwin.cli.names import BUNDLED_SWEEP_NAMES
from loratwin.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from loratwin.advisor.advice import Advice, AdvisorOptions
    from loratwin.advisor.replication import ReplicationModel

_BUNDLED = ", ".join(BUNDLED_SWEEP_NAMES)


def _jsonable(value: object) -> object:
    """Replace NaN/inf by None so that the document is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _replication_cell(advice: Advice) -> str:
    rep = advice.replication
    if rep is None or rep.replicas_fit < 2:
        return "1 fits" if rep is not None else "-"
    cells = []
    for mps, label in ((True, "MPS"), (False, "no MPS")):
        best = rep.best(mps)
        if best is not None:
            style = "red" if best.loses else "green"
            cells.append(f"[{style}]{best.replicas}x {label} {best.gain_pct:+.1f}%[/{style}]")
    return "\n".join(cells)


def _table(advices: tuple[Advice, ...]) -> Table:
    from rich.table import Table

    rule = advices[0].rule
    lat = rule.latency.upper()
    table = Table(title="Batching configuration advice", header_style="bold")
    for name, justify in (
        ("model", "left"), ("output_len", "right"), (f"B_opt\n({rule.batch_axis})", "right"),
        ("max_num_seqs", "right"), (f"{lat} / limit\n(ms)", "right"),
        ("gpu_memory_\nutilization", "right"), ("KV used\n(GiB)", "right"),
        ("freed\n(GiB)", "right"), ("freed\n(% GPU)", "right"), ("throughput\nkept (%)", "right"),
        ("replication\n(best, vs max)", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for a in advices:
        mem = a.memory
        table.add_row(
            a.key.model,
            "-" if a.key.output_len is None else str(a.key.output_len),
            "-" if a.b_opt is None else f"{a.b_opt:g}",
            "-" if a.max_num_seqs is None else str(a.max_num_seqs),
            "-" if a.latency_ms is None
            else f"{a.latency_ms:.1f} / {a.latency_limit_ms:.1f}",
            _fmt(None if mem is None else mem.gpu_memory_utilization),
            _fmt(None if mem is None else mem.kv_used_gib),
            _fmt(None if mem is None else mem.freed_gib),
            _fmt(None if mem is None else mem.freed_pct_of_gpu_memory),
            _fmt(a.throughput_kept_pct, 1),
            _replication_cell(a) if a.feasible else f"[yellow]{a.note}[/yellow]",
        )
    return table


def _render(console: Console, advices: tuple[Advice, ...], options: AdvisorOptions,
            model: ReplicationModel) -> None:
    console.print(_table(advices))
    console.print(f"rule: {advices[0].rule.describe()}")
    console.print(
        f"freed % is of {options.gpu_memory_gib:g} GiB (--gpu-memory-gib); "
        "gpu_memory_utilization = (KV used at B_opt x (1 + --kv-headroom) + weights and "
        "activations + non-torch memory) / total GPU memory, rounded up to 0.01."
    )
    console.print(f"replication model: {model.summary()}")
    for a in advices:
        if a.replication is None or a.replication.replicas_fit < 2:
            continue
        style = "bold red" if a.replication.loses_without_mps else "default"
        console.print(f"  {a.key.label()}: {a.replication.verdict()}", style=style,
                      markup=False, highlight=False)


@app.command("advise")
def advise(
    sweep: Annotated[str | None, typer.Argument(
        metavar="SWEEP",
        help=f"Batch sweep CSV, or a bundled sweep: {_BUNDLED}.", show_default=False)] = None,
    twin: Annotated[Path | None, typer.Option(
        "--twin", help="Produce the sweep with the digital twin from CONFIG.yaml "
        "(not available yet).", show_default=False)] = None,
    vllm_version: Annotated[str | None, typer.Option(
        "--vllm-version", help="With --twin: the vLLM release to follow (0.6.3 V0, 0.8.5, "
        "0.32, 0.33; default: the profile's)")] = None,
    rule: Annotated[str, typer.Option(
        "--rule", help="a = batching efficiency > eps and ITL <= L x ITL(32); "
        "b = TPOT <= L x TPOT(32) (paper's memory figure); c = absolute SLO.")] = "b",
    eps: Annotated[float | None, typer.Option(
        "--eps", help="Rule a: minimum batching efficiency eta (default: 0.1).",
        show_default=False)] = None,
    latency_factor: Annotated[float | None, typer.Option(
        "--latency-factor", "-L", help="Rules a, b: latency bound as a multiple of the latency "
        "at the batch nearest --ref-batch (default: 2 for a, 3 for b).",
        show_default=False)] = None,
    slo_ms: Annotated[float | None, typer.Option(
        "--slo-ms", help="Rule c: latency objective in ms.", show_default=False)] = None,
    latency: Annotated[str | None, typer.Option(
        "--latency", help="tpot or itl (default: itl for a, tpot for b and c).",
        show_default=False)] = None,
    batch_axis: Annotated[str | None, typer.Option(
        "--batch-axis", help="realised (running_max) or configured (max_num_seqs) "
        "(default: configured for a, realised for b and c).", show_default=False)] = None,
    ref_batch: Annotated[float | None, typer.Option(
        "--ref-batch", help="Rules a, b: reference batch (default: 32).",
        show_default=False)] = None,
    include_preempted: Annotated[bool, typer.Option(
        "--include-preempted", help="Keep runs with preemptions as candidates (the authors' "
        "figure scripts did).")] = False,
    gpu_memory_gib: Annotated[float, typer.Option(
        "--gpu-memory-gib", help="Denominator of the freed-memory percentage, GiB (64 = the "
        "paper's nominal H100 64 GB).")] = 64.0,
    kv_headroom: Annotated[float, typer.Option(
        "--kv-headroom", help="Extra KV above the measured peak when recommending "
        "gpu_memory_utilization and sizing replicas (0.1 = 10 %).")] = 0.0,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the advice as JSON to FILE.", metavar="FILE",
        show_default=False)] = None,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Save throughput and latency against batch, B_opt marked, to FILE.png.",
        metavar="FILE", show_default=False)] = None,
) -> None:
    """Recommend max_num_seqs and gpu_memory_utilization from a batch sweep (BCA)."""
    from rich.console import Console

    from loratwin.advisor.advice import AdvisorOptions, advice_report, advise_sweep
    from loratwin.advisor.replication import bundled_replication_model
    from loratwin.advisor.rules import make_rule
    from loratwin.advisor.sweep import read_sweep
    from loratwin.advisor.twin_sweep import sweep_from_twin_config
    from loratwin.cli.common import atomic_output, check_number, check_output_file, write_json

    check_output_file(json_out, "--json")
    check_output_file(plot, "--plot", (".png", ".pdf", ".svg"))
    check_number(gpu_memory_gib, "--gpu-memory-gib", gt=0)
    check_number(kv_headroom, "--kv-headroom", ge=0)
    if (sweep is None) == (twin is None):
        raise ConfigError("give either a SWEEP file/bundled name or --twin CONFIG.yaml",
                          field="SWEEP")
    chosen = make_rule(rule, eps=eps, latency_factor=latency_factor, slo_ms=slo_ms,
                       latency=latency, batch_axis=batch_axis, ref_batch=ref_batch,
                       include_preempted=include_preempted)
    options = AdvisorOptions(gpu_memory_gib=gpu_memory_gib, kv_headroom=kv_headroom)
    frame = (sweep_from_twin_config(twin, vllm_version) if twin is not None
             else read_sweep(str(sweep)))
    model = bundled_replication_model()
    advices = advise_sweep(frame, chosen, options=options, replication_model=model)
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    _render(console, advices, options, model)
    if json_out is not None:
        write_json(json_out, _jsonable(advice_report(advices, chosen, options, model)))
        console.print(f"wrote {json_out}")
    if plot is not None:
        from loratwin.advisor.plot import plot_advice

        with atomic_output(plot) as tmp:
            plot_advice(frame, advices, chosen, tmp)
        console.print(f"wrote {plot}")
