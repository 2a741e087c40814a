"""``loratwin workload ...``: build workload inputs (adapter lists) from traces.

Importing this module attaches the ``workload`` group to the main app.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from loratwin.cli.app import app, command_group
from loratwin.errors import ConfigError

workload_app = command_group("Build workloads: adapter lists from request traces.")


def parse_ranks(text: str) -> tuple[int, ...]:
    """``"8,16"`` -> ``(8, 16)``.

    Raises
    ------
    ConfigError
        If an item is not a positive integer.
    """
    items = [s.strip() for s in text.split(",") if s.strip()]
    try:
        ranks = tuple(int(s) for s in items)
    except ValueError:
        raise ConfigError(f"expected comma-separated positive integers (got {text!r})",
                          field="--ranks") from None
    if not ranks or min(ranks) < 1:
        raise ConfigError(f"expected comma-separated positive integers (got {text!r})",
                          field="--ranks")
    return ranks


@workload_app.command("from-trace")
def from_trace(
    trace: Annotated[str, typer.Argument(
        help="Azure-format trace CSV (TIMESTAMP,ContextTokens,GeneratedTokens), or "
             "azure-conv / azure-code for the bundled traces.")],
    adapters: Annotated[int, typer.Option("--adapters", "-n", help="Number of adapters N.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Adapter CSV to write.")],
    seed: Annotated[int, typer.Option(help="Random seed (>= 0).")] = 0,
    ranks: Annotated[str, typer.Option(help="Comma-separated LoRA ranks to deal.")] = "8,16",
    rate_multiplier: Annotated[float, typer.Option(
        help="Factor on every adapter rate.")] = 1.0,
    alpha: Annotated[float, typer.Option(
        help="Dirichlet concentration of adapter popularity.")] = 0.5,
    rank_order: Annotated[str, typer.Option(
        help="Deal ranks 'cycle' (adapter i gets rank number i mod len(ranks)) or "
             "'random' (uniform).")] = "cycle",
    drop_empty: Annotated[bool, typer.Option(
        help="Drop adapters that get no request (default: keep them with a tiny rate).")
    ] = False,
) -> None:
    """Synthesise N adapters from a trace: Dirichlet(alpha) popularity over the trace's
    requests; each adapter's rate and mean lengths come from its requests."""
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    from loratwin.cli.common import atomic_output, check_number, check_output_file
    from loratwin.workload.adapters import save_adapters_csv
    from loratwin.workload.from_trace import adapters_from_trace
    from loratwin.workload.trace import load_azure_trace

    if rank_order not in ("cycle", "random"):
        raise ConfigError(f"must be 'cycle' or 'random' (got {rank_order!r})",
                          field="--rank-order")
    check_output_file(output, "--output", (".csv",))
    check_number(adapters, "--adapters", ge=1)
    check_number(seed, "--seed", ge=0)
    check_number(rate_multiplier, "--rate-multiplier", gt=0)
    check_number(alpha, "--alpha", gt=0)
    rank_values = parse_ranks(ranks)
    df = load_azure_trace(trace)
    result = adapters_from_trace(
        df, adapters, ranks=rank_values, rate_multiplier=rate_multiplier, seed=seed,
        alpha=alpha, rank_order=rank_order,  # type: ignore[arg-type]
        drop_empty=drop_empty)
    with atomic_output(output) as tmp:
        save_adapters_csv(result, tmp)

    rates = np.array([a.rate for a in result])
    span = float(df["arrival_s"].max())
    table = Table(title=f"{len(result)} adapters from {trace} -> {output}", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    table.add_row("trace requests / duration", f"{len(df)} / {span:.1f} s")
    table.add_row("total rate (req/s)", f"{rates.sum():.4g}")
    table.add_row("rate min / median / max (req/s)",
                  f"{rates.min():.3g} / {np.median(rates):.3g} / {rates.max():.3g}")
    table.add_row("top 10% of adapters' share of requests",
                  f"{np.sort(rates)[::-1][:max(1, len(rates) // 10)].sum() / rates.sum():.1%}")
    counts = {r: sum(a.rank == r for a in result) for r in sorted({a.rank for a in result})}
    table.add_row("ranks (count)", ", ".join(f"{r}: {c}" for r, c in counts.items()))
    mean_in = np.average([a.mean_input_tokens for a in result], weights=rates)
    mean_out = np.average([a.mean_output_tokens for a in result], weights=rates)
    table.add_row("mean input / output tokens", f"{mean_in:.1f} / {mean_out:.1f}")
    Console().print(table)


app.add_typer(workload_app, name="workload")
