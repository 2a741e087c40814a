"""Adapters synthesised from a request trace without adapter ids.

The Azure LLM inference traces have no adapter (or model) id (data README,
``workloads/``), so a multi-LoRA workload must be synthesised. We follow the construction
Agullo et al. use for their multi-adapter workloads (arXiv 2602.24044), as specified for this
project:

1. Adapter popularity p ~ Dirichlet(alpha, ..., alpha) over N adapters (alpha = 0.5 by
   default: a few adapters get most of the traffic).
2. Each request of the trace is assigned to one adapter, independently, with probability p.
3. Ranks come from the given set, either cyclically (adapter i gets ``ranks[i % len]``, as
   the measured runs dealt their dummy adapters, ``meta.json`` ``adapter_rank_assignment``)
   or uniformly at random. Popularity is independent of the adapter index, so with either
   choice rank and rate are independent.
4. Rate of an adapter = (its request count / trace duration) x ``rate_multiplier``, where
   the trace duration is the time from the first to the last request.
5. Mean prompt / output tokens of an adapter = means over its assigned requests.

Adapters that receive no request (likely for large N and small alpha) are by default kept
with a tiny rate of 0.5 requests per trace duration (x multiplier, below any adapter that
got a request, which has at least 1) and the trace's overall mean lengths, so that exactly N
adapters are served; ``drop_empty=True`` removes them instead.

Randomness: ``SeedSequence(seed)`` is split into two children, one for popularity and
assignment, one for random ranks, so the rank choice does not change the assignment.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import pandas as pd

from loratwin.errors import ConfigError
from loratwin.workload.types import Adapter

#: Rate given to an adapter without any request, in requests per trace duration.
EMPTY_ADAPTER_REQUESTS = 0.5


def assign_requests(n_requests: int, n_adapters: int, alpha: float,
                    rng: np.random.Generator) -> np.ndarray:
    """Deal requests to adapters with Dirichlet(alpha) popularity.

    Returns
    -------
    numpy.ndarray
        int64 (n_requests,), adapter index of each request, in [0, n_adapters).
    """
    popularity = rng.dirichlet(np.full(n_adapters, alpha))
    cdf = np.cumsum(popularity)
    idx = np.searchsorted(cdf, rng.random(n_requests) * cdf[-1], side="right")
    return np.minimum(idx, n_adapters - 1)


def adapters_from_trace(
    trace_df: pd.DataFrame,
    n_adapters: int,
    ranks: Sequence[int] = (8, 16),
    rate_multiplier: float = 1.0,
    seed: int = 0,
    *,
    alpha: float = 0.5,
    rank_order: Literal["cycle", "random"] = "cycle",
    drop_empty: bool = False,
    id_prefix: str = "adapter-",
) -> list[Adapter]:
    """Build N adapters whose rates and mean lengths come from a trace (module docstring).

    Parameters
    ----------
    trace_df:
        Columns ``arrival_s`` (s), ``input_tokens``, ``output_tokens`` (tokens), e.g. from
        :func:`~loratwin.workload.trace.load_azure_trace`; at least two requests at
        different times.
    n_adapters:
        N >= 1.
    ranks:
        LoRA ranks to deal (positive integers).
    rate_multiplier:
        Factor on every rate (> 0), e.g. to load a server harder than the trace did.
    seed:
        Non-negative integer seed.
    alpha:
        Dirichlet concentration (> 0); small values make popularity more skewed.
    rank_order:
        ``cycle`` or ``random`` (see the module docstring).
    drop_empty:
        Remove adapters with no request instead of giving them a tiny rate.
    id_prefix:
        Ids are ``f"{id_prefix}{i:0{w}d}"`` with w the digits of N - 1.

    Returns
    -------
    list[Adapter]
        N adapters (fewer with ``drop_empty``), in index order, with ``rate`` (req/s),
        ``rank``, ``mean_input_tokens`` and ``mean_output_tokens`` set.

    Raises
    ------
    ConfigError
        Invalid N, ranks, multiplier, alpha, seed or rank order, or a trace without the
        columns or with zero duration.
    """
    if isinstance(n_adapters, bool) or int(n_adapters) != n_adapters or n_adapters < 1:
        raise ConfigError(f"must be an integer >= 1 (got {n_adapters})", field="adapters")
    n_adapters = int(n_adapters)
    rank_list = list(ranks)
    if not rank_list or any(isinstance(r, bool) or int(r) != r or r < 1 for r in rank_list):
        raise ConfigError(f"must be a non-empty list of positive integers (got {ranks})",
                          field="ranks")
    if not (np.isfinite(rate_multiplier) and rate_multiplier > 0):
        raise ConfigError(f"must be a finite number > 0 (got {rate_multiplier})",
                          field="rate_multiplier")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ConfigError(f"must be a finite number > 0 (got {alpha})", field="alpha")
    if rank_order not in ("cycle", "random"):
        raise ConfigError(f"must be 'cycle' or 'random' (got {rank_order!r})",
                          field="rank_order")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"must be an integer >= 0 (got {seed!r})", field="seed")
    for col in ("arrival_s", "input_tokens", "output_tokens"):
        if col not in trace_df.columns:
            raise ConfigError(f"trace lacks column {col!r}", field="trace")
    t = trace_df["arrival_s"].to_numpy(np.float64)
    span = float(t.max() - t.min()) if t.size else 0.0
    if not span > 0:
        raise ConfigError("needs at least two requests at different times (duration 0)",
                          field="trace")
    inp = trace_df["input_tokens"].to_numpy(np.float64)
    out = trace_df["output_tokens"].to_numpy(np.float64)

    assign_ss, rank_ss = np.random.SeedSequence(int(seed)).spawn(2)
    owner = assign_requests(t.size, n_adapters, alpha, np.random.default_rng(assign_ss))
    counts = np.bincount(owner, minlength=n_adapters)
    sum_in = np.bincount(owner, weights=inp, minlength=n_adapters)
    sum_out = np.bincount(owner, weights=out, minlength=n_adapters)
    if rank_order == "cycle":
        rank_of = [int(rank_list[i % len(rank_list)]) for i in range(n_adapters)]
    else:
        picks = np.random.default_rng(rank_ss).integers(0, len(rank_list), size=n_adapters)
        rank_of = [int(rank_list[k]) for k in picks]

    width = len(str(n_adapters - 1))
    adapters: list[Adapter] = []
    for i in range(n_adapters):
        c = int(counts[i])
        if c == 0 and drop_empty:
            continue
        if c == 0:
            rate, m_in, m_out = EMPTY_ADAPTER_REQUESTS / span, inp.mean(), out.mean()
        else:
            rate, m_in, m_out = c / span, sum_in[i] / c, sum_out[i] / c
        adapters.append(Adapter(
            id=f"{id_prefix}{i:0{width}d}", rank=rank_of[i],
            rate=float(rate * rate_multiplier),
            mean_input_tokens=float(m_in), mean_output_tokens=float(m_out)))
    return adapters
