"""Bounded heavy-tailed request lengths: windowed, rounded log-normals (moment-matched).

The default stand-in for vLLM's ShareGPT benchmark sampler (see
:class:`BoundedHeavyTailed`). Re-exported by :mod:`loratwin.workload.lengths`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from loratwin.errors import ConfigError
from loratwin.workload.window import LengthFilter, check_sample_size

#: Coefficient of variation (std / mean) of the realised lengths that
#: :class:`BoundedHeavyTailed` aims at when no std is given. It is a round value near the
#: ShareGPT figures of the data README (std about 245 / 206 for means 224 / 194 tokens, i.e.
#: CV 1.09 / 1.06). It is a soft target: means are always matched exactly, the std as
#: closely as the window allows.
DEFAULT_CV = 1.0

#: Largest log-normal sigma used when a soft std target is out of reach (at sigma = 4 the
#: windowed std is within a few % of its supremum, the sigma -> infinity power-law limit).
SIGMA_CAP = 4.0
#: Relative tolerance on the realised moments after solving.
_SOLVE_TOL = 1e-9


@dataclass(frozen=True, eq=False)
class _Tables:
    """Discrete model on the integer grid (see :class:`BoundedHeavyTailed`)."""

    xs: np.ndarray  # int64 (gx,), prompt lengths min_input..x_hi
    xf: np.ndarray  # the same as float64
    px: np.ndarray  # float64 (gx,), P(round(X) = x) before the window
    w: np.ndarray  # float64 (gx,), P(round(X) = x and the pair is in the window)
    y0: int  # smallest output length (min_output)
    cy: np.ndarray  # float64 (gy,), cumulative P(y0 <= Y <= y0 + j)
    cy1: np.ndarray  # cumulative sum of y P(Y = y)
    cy2: np.ndarray  # cumulative sum of y^2 P(Y = y)
    uidx: np.ndarray  # int64 (gx,), index into cy of the largest output allowed for each x


def _bin_probs(log_edges: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """P(round(L) = v) for L ~ LogNormal(mu, sigma) on a grid of consecutive integers v.

    ``log_edges`` (m + 1,) holds ln(v - 0.5) for every v and ln(v_last + 0.5). Masses are
    differences of the CDF left of the median and of the survival function right of it, so
    that tail masses keep their relative precision; one ``ndtr`` call per edge.
    """
    from scipy.special import ndtr  # on first use: a trace replay never needs scipy

    z = (log_edges - mu) / sigma
    q = ndtr(-np.abs(z))  # the smaller tail at each edge
    cdf = np.where(z <= 0, q, 1.0 - q)
    sf = np.where(z > 0, q, 1.0 - q)
    return np.where(z[:-1] > 0, sf[:-1] - sf[1:], cdf[1:] - cdf[:-1])


@dataclass(frozen=True, eq=False)
class _Grid:
    """The integer grid of a window, independent of the log-normal parameters."""

    xs: np.ndarray  # int64 (gx,), prompt lengths min_input..x_hi
    xf: np.ndarray  # the same as float64
    x_edges: np.ndarray  # float64 (gx + 1,), ln of the bin edges
    yf: np.ndarray  # float64 (gy,), output lengths min_output..max_total - min_input
    y_edges: np.ndarray  # float64 (gy + 1,)
    y0: int  # min_output
    uidx: np.ndarray  # int64 (gx,), index in the y grid of the largest output allowed for x


@dataclass(frozen=True, eq=False)
class HeavyTailedFit:
    """The solved :class:`BoundedHeavyTailed`: log-normal parameters and realised moments.

    Attributes
    ----------
    mu_input, sigma_input, mu_output, sigma_output:
        Parameters of the underlying log-normals (of ln tokens).
    acceptance:
        Probability that an unconstrained pair falls inside the window (the fraction kept
        by the equivalent rejection sampler).
    mean_input, std_input, mean_output, std_output:
        Exact moments of the sampled (windowed, integer) distribution, in tokens.
    """

    mu_input: float
    sigma_input: float
    mu_output: float
    sigma_output: float
    acceptance: float
    mean_input: float
    std_input: float
    mean_output: float
    std_output: float
    tables: _Tables = field(repr=False)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Draw n pairs exactly by inverse CDF: prompt from its windowed marginal, then the
        output given the prompt (two uniform draws per pair, prompts first).

        Returns
        -------
        tuple of numpy.ndarray
            input_tokens int32 (n,), output_tokens int32 (n,).
        """
        n = check_sample_size(n)
        t = self.tables
        u = rng.random(n)
        v = rng.random(n)
        wc = np.cumsum(t.w)
        ix = np.minimum(np.searchsorted(wc, u * wc[-1], side="right"), wc.size - 1)
        x = t.xs[ix]
        top = t.uidx[ix]
        iy = np.searchsorted(t.cy, v * t.cy[top], side="right")
        y = t.y0 + np.minimum(iy, top)
        return x.astype(np.int32), y.astype(np.int32)


@dataclass(frozen=True)
class BoundedHeavyTailed:
    """Bounded heavy-tailed prompt/output lengths: windowed, rounded log-normals.

    The model: X ~ LogNormal(mu_x, sigma_x) and Y ~ LogNormal(mu_y, sigma_y) independent,
    rounded to the nearest integer, and a pair is kept only inside vLLM's ShareGPT filter
    window ``min_input <= X <= max_input``, ``Y >= min_output``, ``X + Y <= max_total``
    (tokens). This is exactly what drawing pairs and rejecting those outside the window gives,
    but :meth:`HeavyTailedFit.sample` draws them directly by inverse CDF on the integer grid
    (no rejection loop). The joint window makes X and Y slightly dependent.

    The four parameters are solved numerically (``scipy.optimize.root`` on the exact
    moments of the discrete windowed model, computed on the integer grid) so that the
    **realised** means equal ``mean_input``/``mean_output`` and the realised stds equal
    ``std_input``/``std_output`` (to 1e-9 relative, i.e. up to sampling noise). A std left
    as ``None`` becomes the soft target ``cv_* x mean_*`` (:data:`DEFAULT_CV`): met when the
    window allows it, otherwise replaced by about the largest std the window allows at that
    mean (see :meth:`solve`); the means are always exact. An explicit std out of reach
    is an error. The realised moments are in the :class:`HeavyTailedFit`.

    Why: vLLM's ShareGPT sampler's per-request distribution is not published, only the
    realised means (e.g. 224 / 194 tokens for Llama-3.1, ``profiles/<model>/meta.json``)
    and stds (about 245 / 206, data README); callers pass those in. A log-normal has the
    right long right tail; a clipped normal would pile mass on the bounds and (as in the
    published twin) inflate the tokens.

    Attributes
    ----------
    mean_input, mean_output:
        Target realised means in tokens.
    std_input, std_output:
        Target realised standard deviations in tokens, or ``None``.
    min_input, max_input, min_output, max_total:
        The window in tokens (defaults: vLLM's ShareGPT filter).
    cv_input, cv_output:
        Soft target CVs used when the matching std is ``None``.

    Raises
    ------
    ConfigError
        Invalid bounds, a target mean outside the window, or (from :meth:`solve`) targets
        the family cannot reach.
    """

    mean_input: float
    mean_output: float
    std_input: float | None = None
    std_output: float | None = None
    min_input: int = 4
    max_input: int = 1024
    min_output: int = 4
    max_total: int = 2048
    cv_input: float = DEFAULT_CV
    cv_output: float = DEFAULT_CV

    def __post_init__(self) -> None:
        window = LengthFilter(self.min_input, self.max_input, self.min_output, self.max_total)
        x_hi = min(window.max_input, window.max_total - window.min_output)
        y_hi = window.max_total - window.min_input
        for name, lo, hi in (("mean_input", self.min_input, x_hi),
                             ("mean_output", self.min_output, y_hi)):
            v = getattr(self, name)
            if not (math.isfinite(v) and lo < v < hi):
                raise ConfigError(f"must lie strictly inside the window [{lo}, {hi}] tokens "
                                  f"(got {v})", field=name)
        if not self.mean_input + self.mean_output < self.max_total:
            raise ConfigError(
                f"mean_input + mean_output must be < max_total ({self.max_total}) "
                f"(got {self.mean_input + self.mean_output:g})", field="mean_output")
        for name in ("std_input", "std_output"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ConfigError(f"must be a finite number > 0 (got {v})", field=name)
        for name in ("cv_input", "cv_output"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"must be a finite number > 0 (got {v})", field=name)

    # -- the discrete model ----------------------------------------------------------------

    def _grid(self) -> _Grid:
        x_hi = min(self.max_input, self.max_total - self.min_output)
        xs = np.arange(self.min_input, x_hi + 1, dtype=np.int64)
        yf = np.arange(self.min_output, self.max_total - self.min_input + 1, dtype=np.float64)
        xf = xs.astype(np.float64)
        return _Grid(
            xs=xs, xf=xf, x_edges=np.log(np.append(xf - 0.5, xf[-1] + 0.5)),
            yf=yf, y_edges=np.log(np.append(yf - 0.5, yf[-1] + 0.5)), y0=self.min_output,
            uidx=self.max_total - xs - self.min_output)

    @staticmethod
    def _tables(theta: np.ndarray, g: _Grid) -> _Tables:
        px = _bin_probs(g.x_edges, theta[0], math.exp(theta[1]))
        py = _bin_probs(g.y_edges, theta[2], math.exp(theta[3]))
        cy, cy1, cy2 = np.cumsum(py), np.cumsum(py * g.yf), np.cumsum(py * g.yf * g.yf)
        return _Tables(g.xs, g.xf, px, px * cy[g.uidx], g.y0, cy, cy1, cy2, g.uidx)

    @staticmethod
    def _moments(t: _Tables) -> tuple[float, float, float, float, float]:
        """(acceptance, mean_x, std_x, mean_y, std_y) of the windowed model."""
        z = float(t.w.sum())
        if not z > 0:
            return 0.0, math.nan, math.nan, math.nan, math.nan
        mx = float(t.xf @ t.w) / z
        vx = float((t.xf * t.xf) @ t.w) / z - mx * mx
        my = float(t.px @ t.cy1[t.uidx]) / z
        vy = float(t.px @ t.cy2[t.uidx]) / z - my * my
        return z, mx, math.sqrt(max(vx, 0.0)), my, math.sqrt(max(vy, 0.0))

    def _targets(self) -> tuple[float, float]:
        sdx = self.std_input if self.std_input is not None else self.cv_input * self.mean_input
        sdy = (self.std_output if self.std_output is not None
               else self.cv_output * self.mean_output)
        return sdx, sdy

    def _residuals(self, theta: np.ndarray, g: _Grid, tm: np.ndarray, ts: np.ndarray
                   ) -> np.ndarray:
        """Relative errors (mean_x, mean_y, std_x, std_y) of the model at ``theta``."""
        z, mx, sx, my, sy = self._moments(self._tables(theta, g))
        if not (z > 0 and np.isfinite([mx, sx, my, sy]).all()):
            return np.full(4, 1e3)
        return np.array([mx, my, sx, sy]) / np.concatenate([tm, ts]) - 1.0

    def _root(self, theta0: np.ndarray, g: _Grid, tm: np.ndarray, ts: np.ndarray,
              fixed: np.ndarray) -> np.ndarray | None:
        """Solve the moment equations with sigma held at ``theta0`` on the ``fixed`` sides.

        Unknowns: both mu and the log-sigma of each free side; equations: both means and the
        std of each free side (MINPACK hybrid Powell). Returns theta (4,) or None.
        """
        free = np.flatnonzero(~fixed)
        eqs = np.concatenate([[0, 1], 2 + free])

        def err(u: np.ndarray) -> np.ndarray:
            theta = theta0.copy()
            theta[[0, 2]] = u[:2]
            theta[1 + 2 * free] = u[2:]
            return self._residuals(theta, g, tm, ts)[eqs]

        from scipy.optimize import root  # on first use: a trace replay never needs scipy

        u0 = np.concatenate([theta0[[0, 2]], theta0[1 + 2 * free]])
        res = root(err, u0, method="hybr", options={"xtol": 1e-12, "maxfev": 400})
        if not np.all(np.abs(err(res.x)) < _SOLVE_TOL):
            return None
        theta = theta0.copy()
        theta[[0, 2]] = res.x[:2]
        theta[1 + 2 * free] = res.x[2:]
        return theta

    def solve(self) -> HeavyTailedFit:
        """Solve the log-normal parameters for the targets (a few ms; no caching).

        The four moment equations (realised mean and std of each side) are solved with
        ``scipy.optimize.root`` (hybrid Powell) from the untruncated log-normal guess. If
        that fails and a std is a soft target (``std_* is None``), the soft sides' sigma is
        set to :data:`SIGMA_CAP` and the other equations are solved: at a fixed mean the
        realised std grows with sigma and saturates (the power-law limit of a log-normal
        seen through a window), so this gives about the largest std the window allows. Soft
        sides whose target is below that are then freed again and solved exactly.

        Returns
        -------
        HeavyTailedFit
            Parameters, realised moments and sampling tables.

        Raises
        ------
        ConfigError
            The means (or an explicit std) cannot be realised to 1e-9 relative.
        """
        return self.fit_at(self.solve_theta())

    def solve_theta(self) -> np.ndarray:
        """The solved parameters (mu_input, ln sigma_input, mu_output, ln sigma_output),
        float64 (4,), from which :meth:`fit_at` builds the fit (see :meth:`solve`).

        Raises
        ------
        ConfigError
            As :meth:`solve`.
        """
        g = self._grid()
        sdx, sdy = self._targets()
        tm = np.array([float(self.mean_input), float(self.mean_output)])
        ts = np.array([sdx, sdy])
        cv0 = np.clip(ts / tm, 0.05, 3.0)
        s0 = np.sqrt(np.log1p(cv0 * cv0))
        mu0 = np.log(tm) - s0 * s0 / 2
        theta0 = np.array([mu0[0], np.log(s0[0]), mu0[1], np.log(s0[1])])
        theta = self._root(theta0, g, tm, ts, np.zeros(2, bool))
        soft = np.array([self.std_input is None, self.std_output is None])
        if theta is None and soft.any():
            capped = theta0.copy()
            capped[[1, 3]] = np.where(soft, math.log(SIGMA_CAP), theta0[[1, 3]])
            theta = self._root(capped, g, tm, ts, soft)
            if theta is not None:
                _, _, sx, _, sy = self._moments(self._tables(theta, g))
                lowered = soft & (ts > np.array([sx, sy]))
                if (lowered != soft).any():
                    mixed = np.where(np.repeat(lowered, 2), theta, theta0)
                    better = self._root(mixed, g, tm, ts, lowered)
                    theta = better if better is not None else theta
        if theta is None:
            hard = [n for n, is_soft in (("std_input", soft[0]), ("std_output", soft[1]))
                    if not is_soft]
            raise ConfigError(
                f"cannot realise mean {tm[0]:g} / {tm[1]:g} and std {ts[0]:.4g} / {ts[1]:.4g} "
                f"tokens (input / output) with windowed log-normals (prompt in "
                f"[{self.min_input}, {self.max_input}], output >= {self.min_output}, "
                f"total <= {self.max_total})", field=hard[0] if hard else "mean_input")
        return theta

    def fit_at(self, theta: np.ndarray, grid: _Grid | None = None) -> HeavyTailedFit:
        """The fit at given parameters theta (4,) (see :meth:`solve_theta`): the tables and
        realised moments of the windowed model, one evaluation of it (no root finding)."""
        t = self._tables(np.asarray(theta, np.float64), grid or self._grid())
        z, mx, sx, my, sy = self._moments(t)
        return HeavyTailedFit(
            mu_input=float(theta[0]), sigma_input=math.exp(theta[1]),
            mu_output=float(theta[2]), sigma_output=math.exp(theta[3]),
            acceptance=z, mean_input=mx, std_input=sx, mean_output=my, std_output=sy,
            tables=t)

    def sample(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Solve (see :meth:`solve`) and draw n pairs; call ``solve()`` once and sample
        from the fit when sampling repeatedly."""
        return self.solve().sample(n, rng)

    def with_means(self, mean_input: float, mean_output: float) -> BoundedHeavyTailed:
        """The same window and CVs (std / mean) at other means; the stds become soft
        targets (``cv_* = std_* / mean_*`` of this distribution; a soft side keeps its
        ``cv_*`` exactly, so the same adapter means give the same distribution whatever the
        base means, e.g. one :class:`LengthFits` entry)."""
        cvx = self.cv_input if self.std_input is None else self.std_input / self.mean_input
        cvy = (self.cv_output if self.std_output is None
               else self.std_output / self.mean_output)
        return replace(self, mean_input=float(mean_input), mean_output=float(mean_output),
                       std_input=None, std_output=None, cv_input=cvx, cv_output=cvy)


class LengthFits:
    """Solved :class:`BoundedHeavyTailed` parameters of one caller's work, by distribution.

    An explicit memo, not a global cache: the caller creates one for a batch of related runs
    (e.g. the twin confirmations of one ``loratwin place``), passes it to
    :func:`~loratwin.workload.lengths.sample_lengths`, and drops it with the batch. Solving
    is the costly part of drawing lengths (about 0.1 s per distribution in the wide window:
    some 30 evaluations of the windowed model on a 16k x 20k-token grid); an adapter that
    appears in several runs is solved once. Only theta (4 floats per distribution) is kept, so
    the memo is cheap to send to worker processes; :meth:`fit` rebuilds the fit from it with
    one evaluation, identical to :meth:`BoundedHeavyTailed.solve`'s (the same theta through
    the same code), so runs with and without a memo draw the same lengths.
    """

    def __init__(self, thetas: dict[BoundedHeavyTailed, tuple[float, ...]] | None = None
                 ) -> None:
        self.thetas: dict[BoundedHeavyTailed, tuple[float, ...]] = dict(thetas or {})

    def __len__(self) -> int:
        return len(self.thetas)

    def fit(self, dist: BoundedHeavyTailed) -> HeavyTailedFit:
        """``dist.solve()``, solving only distributions not seen before.

        Raises
        ------
        ConfigError
            As :meth:`BoundedHeavyTailed.solve`.
        """
        theta = self.thetas.get(dist)
        if theta is None:
            theta = tuple(float(v) for v in dist.solve_theta())
            self.thetas[dist] = theta
        return dist.fit_at(np.array(theta))

    def update(self, other: LengthFits) -> None:
        """Add the distributions ``other`` solved (e.g. in a worker process)."""
        self.thetas.update(other.thetas)
