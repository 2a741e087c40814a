"""Request length distributions: (input_tokens, output_tokens) pairs as int32 arrays.

Three families share one small interface (:class:`LengthDistribution`):

:class:`FixedLengths`
    Every request has the same prompt and output length (vLLM's ``random``/fixed-length
    benchmarks, the calibration sweeps).
:class:`EmpiricalLengths`
    Pairs resampled with replacement from a table of real requests, which keeps the joint
    (prompt, output) distribution. Reads the column pairs ``input_tokens,output_tokens``,
    ``num_prefill_tokens,num_decode_tokens`` (sarathi-serve ShareGPT table) and
    ``ContextTokens,GeneratedTokens`` (Azure LLM inference trace). An optional
    :class:`~loratwin.workload.window.LengthFilter` applies vLLM's ShareGPT sampler filter.
:class:`BoundedHeavyTailed` (in :mod:`loratwin.workload.heavy_tailed`, re-exported here)
    The default stand-in for vLLM's ShareGPT benchmark sampler, whose per-request
    distribution is not published (only its realised means and the stds implied by the
    published twin's token totals, data README ``real_runs``): independent rounded
    log-normal prompt and output lengths, kept only inside vLLM's filter window, with the
    log-normal parameters solved so that the *realised* means (and stds) equal the targets.

Per-adapter means (:func:`sample_lengths`): an adapter with ``mean_input_tokens`` /
``mean_output_tokens`` draws from ``dist.with_means(...)``, the same family matched to its
means (see each class for how).

All randomness comes from the ``numpy.random.Generator`` passed in; nothing is cached
between calls.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import numpy as np

from loratwin.errors import ConfigError, DataError
from loratwin.workload._csvio import INT32_MAX, int_column, read_csv_checked
from loratwin.workload.heavy_tailed import (
    DEFAULT_CV,
    SIGMA_CAP,
    BoundedHeavyTailed,
    HeavyTailedFit,
    LengthFits,
)
from loratwin.workload.types import Adapter
from loratwin.workload.window import VLLM_SHAREGPT_FILTER, LengthFilter, check_sample_size

__all__ = [
    "DEFAULT_CV",
    "LENGTH_COLUMN_PAIRS",
    "SIGMA_CAP",
    "VLLM_SHAREGPT_FILTER",
    "BoundedHeavyTailed",
    "EmpiricalLengths",
    "FixedLengths",
    "HeavyTailedFit",
    "LengthDistribution",
    "LengthFilter",
    "LengthFits",
    "sample_lengths",
]

#: Column pairs accepted by :meth:`EmpiricalLengths.from_csv`, tried in this order.
LENGTH_COLUMN_PAIRS: tuple[tuple[str, str], ...] = (
    ("input_tokens", "output_tokens"),
    ("num_prefill_tokens", "num_decode_tokens"),  # sarathi-serve ShareGPT table
    ("ContextTokens", "GeneratedTokens"),  # Azure LLM inference trace 2023
)


@runtime_checkable
class LengthDistribution(Protocol):
    """What :func:`sample_lengths` and the request generator need from a length family."""

    @property
    def mean_input(self) -> float:
        """Expected prompt length in tokens."""
        ...

    @property
    def mean_output(self) -> float:
        """Expected output length in tokens."""
        ...

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw n pairs: (input_tokens int32 (n,), output_tokens int32 (n,)), all >= 1."""
        ...

    def with_means(self, mean_input: float, mean_output: float) -> LengthDistribution:
        """The same family matched to other mean prompt / output lengths (tokens)."""
        ...


# --------------------------------------------------------------------------- fixed lengths


@dataclass(frozen=True)
class FixedLengths:
    """Every request has ``input_tokens`` prompt tokens and ``output_tokens`` output tokens.

    ``with_means`` rounds the requested means to the nearest integer (at least 1).

    Raises
    ------
    ConfigError
        If a length is not an integer >= 1.
    """

    input_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        for name in ("input_tokens", "output_tokens"):
            v = getattr(self, name)
            if isinstance(v, bool) or int(v) != v or not 1 <= v <= INT32_MAX:
                raise ConfigError(f"must be an integer >= 1 (got {v})", field=name)
            object.__setattr__(self, name, int(v))

    @property
    def mean_input(self) -> float:
        return float(self.input_tokens)

    @property
    def mean_output(self) -> float:
        return float(self.output_tokens)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Two int32 (n,) arrays filled with the fixed lengths (``rng`` is not used)."""
        n = check_sample_size(n)
        return (np.full(n, self.input_tokens, np.int32), np.full(n, self.output_tokens, np.int32))

    def with_means(self, mean_input: float, mean_output: float) -> FixedLengths:
        return FixedLengths(max(1, round(mean_input)), max(1, round(mean_output)))


# --------------------------------------------------------------------- empirical lengths


def _tilt_weights(x: np.ndarray, y: np.ndarray, base: np.ndarray, target_x: float,
                  target_y: float) -> np.ndarray:
    """Exponential tilting: w_i ∝ base_i exp(a x_i + b y_i) with weighted means = targets.

    This is the reweighting of the pool closest to ``base`` in Kullback-Leibler divergence
    among those with the target means (the maximum-entropy / I-projection solution). The
    dual ``log sum base exp(a x + b y) - a tx - b ty`` is convex with gradient (weighted
    mean - target) and Hessian (weighted covariance); it is minimised by Newton's method
    with backtracking. x and y are scaled by their base means for conditioning.

    Raises
    ------
    ConfigError
        If the weighted means do not reach the targets to 1e-6 relative.
    """
    logb = np.log(base)
    mx = float(np.average(x, weights=base))
    my = float(np.average(y, weights=base))
    pts = np.stack([x / mx, y / my])  # (2, m)
    from scipy.special import logsumexp  # on first use: a trace replay never needs scipy

    t = np.array([target_x / mx, target_y / my])

    def state(ab: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        z = logb + ab @ pts
        lse = float(logsumexp(z))
        return lse - float(ab @ t), np.exp(z - lse), z

    ab = np.zeros(2)
    f, w, _ = state(ab)
    for _ in range(200):
        m = pts @ w
        grad = m - t
        if np.max(np.abs(grad)) < 1e-12:
            break
        hess = (pts * w) @ pts.T - np.outer(m, m)
        try:
            step = -np.linalg.solve(hess + 1e-14 * np.eye(2), grad)
        except np.linalg.LinAlgError:
            break
        lam = 1.0
        while lam > 1e-10:
            f_new, w_new, _ = state(ab + lam * step)
            # Armijo on f, or (near the optimum, where f is flat to rounding) a smaller
            # gradient.
            gmax = float(np.max(np.abs(grad)))
            if (f_new <= f + 1e-4 * lam * float(grad @ step)
                    or (gmax < 1e-8 and np.max(np.abs(pts @ w_new - t)) < 0.5 * gmax)):
                break
            lam *= 0.5
        else:
            break
        ab, f, w = ab + lam * step, f_new, w_new
    got_x, got_y = float(pts[0] @ w * mx), float(pts[1] @ w * my)
    if abs(got_x / target_x - 1) > 1e-6 or abs(got_y / target_y - 1) > 1e-6:
        raise ConfigError(
            f"cannot reweight the empirical lengths to mean_input={target_x:g}, "
            f"mean_output={target_y:g} (closest: {got_x:.4g}, {got_y:.4g}); the target must "
            "lie well inside the range of the table's pairs", field="mean_input_tokens")
    return w


@dataclass(frozen=True, eq=False)
class EmpiricalLengths:
    """Resample (prompt, output) pairs of real requests with replacement.

    Attributes
    ----------
    input_tokens, output_tokens:
        int (m,), the pool of pairs in tokens (>= 1), stored as int32.
    weights:
        float (m,) sampling probabilities, or ``None`` for uniform resampling.
    per_adapter:
        How :meth:`with_means` matches other means:

        - ``"tilt"`` (default): *pick* pairs of the same pool with exponentially tilted
          probabilities (w_i ∝ exp(a x_i + b y_i), solved so the expected means are exactly
          the targets). Lengths stay real pool values and inside any filter window; the
          shape changes smoothly. Fails if a target is outside the pool's range.
        - ``"scale"``: multiply every prompt by target/mean (and outputs likewise) and
          round to integers (>= 1). Means match up to rounding; the shape is kept but filter
          bounds may be exceeded.
    source:
        Where the pool came from (for messages).

    Raises
    ------
    ConfigError
        Empty pool, mismatched shapes, lengths < 1, bad weights or ``per_adapter``.
    """

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    weights: np.ndarray | None = None
    per_adapter: Literal["tilt", "scale"] = "tilt"
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        i = np.asarray(self.input_tokens)
        o = np.asarray(self.output_tokens)
        if i.ndim != 1 or i.shape != o.shape:
            raise ConfigError(f"input and output arrays must be 1-D of equal length "
                              f"(got {i.shape} and {o.shape})", field="lengths")
        if i.size == 0:
            raise ConfigError(f"no length pairs{' in ' + self.source if self.source else ''}",
                              field="lengths")
        for name, a in (("input_tokens", i), ("output_tokens", o)):
            if a.min() < 1 or a.max() > INT32_MAX:
                raise ConfigError(f"must be in [1, {INT32_MAX}] (got {a.min()}..{a.max()})",
                                  field=name)
        object.__setattr__(self, "input_tokens", i.astype(np.int32))
        object.__setattr__(self, "output_tokens", o.astype(np.int32))
        if self.weights is not None:
            w = np.asarray(self.weights, np.float64)
            if w.shape != i.shape or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
                raise ConfigError("must be finite, >= 0, not all 0, one per pair",
                                  field="weights")
            object.__setattr__(self, "weights", w / w.sum())
        if self.per_adapter not in ("tilt", "scale"):
            raise ConfigError(f"must be 'tilt' or 'scale' (got {self.per_adapter!r})",
                              field="per_adapter")

    @classmethod
    def from_csv(cls, path: str | Path, length_filter: LengthFilter | None = None,
                 per_adapter: Literal["tilt", "scale"] = "tilt") -> EmpiricalLengths:
        """Read the pool from a CSV with one of :data:`LENGTH_COLUMN_PAIRS`.

        Parameters
        ----------
        path:
            CSV file; other columns are ignored.
        length_filter:
            Keep only pairs inside this window (e.g. :data:`VLLM_SHAREGPT_FILTER`); ``None``
            keeps all rows.

        Raises
        ------
        DataError
            Missing file, no known column pair, a non-integer or negative value (with its
            row, header = row 1), a kept value < 1, or no pair left after filtering.
        """
        path = Path(path)
        df = read_csv_checked(path, ())
        header = list(df.columns)
        pair = next((p for p in LENGTH_COLUMN_PAIRS if p[0] in header and p[1] in header), None)
        if pair is None:
            known = "; ".join(",".join(p) for p in LENGTH_COLUMN_PAIRS)
            raise DataError(f"{path}: no length columns found (expected one of: {known}; "
                            f"header: {','.join(header)})")
        inp = int_column(df, pair[0], path, min_value=0)
        out = int_column(df, pair[1], path, min_value=0)
        rows = df.index.to_numpy()
        if length_filter is not None:
            keep = length_filter.mask(inp, out)
            inp, out, rows = inp[keep], out[keep], rows[keep]
        for col, a in ((pair[0], inp), (pair[1], out)):
            bad = np.flatnonzero(a < 1)
            if bad.size:
                raise DataError(f"{path} row {rows[bad[0]]}: {col}: must be >= 1 "
                                f"(got {a[bad[0]]}); drop the row or use a length filter")
        if inp.size == 0:
            raise DataError(f"{path}: no rows left after the length filter {length_filter}")
        return cls(inp, out, per_adapter=per_adapter, source=str(path))

    @property
    def mean_input(self) -> float:
        return float(np.average(self.input_tokens, weights=self.weights))

    @property
    def mean_output(self) -> float:
        return float(np.average(self.output_tokens, weights=self.weights))

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw n pool pairs with replacement (one ``rng`` draw per pair)."""
        n = check_sample_size(n)
        if self.weights is None:
            idx = rng.integers(0, self.input_tokens.size, size=n)
        else:
            cdf = np.cumsum(self.weights)
            idx = np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right")
            idx = np.minimum(idx, self.input_tokens.size - 1)
        return self.input_tokens[idx], self.output_tokens[idx]

    def with_means(self, mean_input: float, mean_output: float) -> EmpiricalLengths:
        """The pool matched to other means (``per_adapter`` says how).

        Raises
        ------
        ConfigError
            ``"tilt"`` with a target outside the pool's range (or too close to its edge).
        """
        for name, v in (("mean_input_tokens", mean_input), ("mean_output_tokens", mean_output)):
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"must be a finite number > 0 (got {v})", field=name)
        if self.per_adapter == "scale":
            fi, fo = mean_input / self.mean_input, mean_output / self.mean_output
            inp = np.maximum(1, np.rint(self.input_tokens * fi))
            out = np.maximum(1, np.rint(self.output_tokens * fo))
            return replace(self, input_tokens=inp, output_tokens=out)
        x = self.input_tokens.astype(np.float64)
        y = self.output_tokens.astype(np.float64)
        for name, a, t in (("mean_input_tokens", x, mean_input),
                           ("mean_output_tokens", y, mean_output)):
            if not a.min() < t < a.max():
                raise ConfigError(
                    f"{t:g} is outside the empirical lengths' range ({a.min():g}..{a.max():g}); "
                    "use per_adapter 'scale' or another length distribution", field=name)
        base = self.weights if self.weights is not None else np.full(x.size, 1.0 / x.size)
        return replace(self, weights=_tilt_weights(x, y, base, mean_input, mean_output))


# ------------------------------------------------------------------- per-adapter sampling


def sample_lengths(
    dist: LengthDistribution,
    adapter_idx: np.ndarray,
    adapters: Sequence[Adapter],
    rng: np.random.Generator,
    fits: LengthFits | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Lengths for requests of several adapters, honouring per-adapter mean lengths.

    Adapters without ``mean_input_tokens``/``mean_output_tokens`` draw from ``dist``; the
    others from ``dist.with_means(m_in, m_out)`` where a missing side takes ``dist``'s mean.
    Adapters with the same mean pair share one matched distribution, built (e.g. solved)
    once per call; nothing outlives the call. Groups are drawn in order of their first
    adapter in ``adapters``, so the result depends only on the inputs and ``rng``'s state.

    Parameters
    ----------
    dist:
        The workload's length family.
    adapter_idx:
        int (n,), adapter index of each request (into ``adapters``).
    adapters:
        The adapter list.
    rng:
        Source of all draws.
    fits:
        Optional memo of solved :class:`BoundedHeavyTailed` distributions shared by a batch
        of calls (filled as distributions are solved; the draws are the same without it).

    Returns
    -------
    tuple of numpy.ndarray
        input_tokens int32 (n,), output_tokens int32 (n,), aligned with ``adapter_idx``.

    Raises
    ------
    ConfigError
        An index out of range, or an adapter mean the family cannot match (the message
        names the adapter).
    """
    idx = np.asarray(adapter_idx)
    n = idx.size
    inp = np.empty(n, np.int32)
    out = np.empty(n, np.int32)
    if n == 0:
        return inp, out
    if idx.min() < 0 or idx.max() >= len(adapters):
        raise ConfigError(f"adapter index out of range [0, {len(adapters)})",
                          field="adapter_idx")
    keys: list[tuple[float, float] | None] = []
    group_of: dict[tuple[float, float] | None, int] = {}
    first_adapter: list[Adapter] = []
    adapter_group = np.empty(len(adapters), np.int64)
    for a_i, a in enumerate(adapters):
        key: tuple[float, float] | None = None
        if a.mean_input_tokens is not None or a.mean_output_tokens is not None:
            key = (float(a.mean_input_tokens if a.mean_input_tokens is not None
                         else dist.mean_input),
                   float(a.mean_output_tokens if a.mean_output_tokens is not None
                         else dist.mean_output))
        if key not in group_of:
            group_of[key] = len(keys)
            keys.append(key)
            first_adapter.append(a)
        adapter_group[a_i] = group_of[key]
    g = adapter_group[idx]
    order = np.argsort(g, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(np.bincount(g, minlength=len(keys)))))
    for gi, key in enumerate(keys):
        sel = order[bounds[gi]:bounds[gi + 1]]
        if sel.size == 0:
            continue
        try:
            d = dist if key is None else dist.with_means(*key)
            if isinstance(d, BoundedHeavyTailed):
                d = (d.solve() if fits is None  # type: ignore[assignment]
                     else fits.fit(d))
        except ConfigError as exc:
            if key is None:
                raise
            raise ConfigError(f"adapter {first_adapter[gi].id!r}: {exc}") from None
        i, o = d.sample(sel.size, rng)
        inp[sel] = i
        out[sel] = o
    return inp, out
