"""The workload part of a run config (pydantic) and the request generator.

YAML example::

    arrivals: {process: gamma, cv: 2.0}
    lengths: {kind: heavy-tailed, mean_input: 224, mean_output: 194,
              std_input: 245, std_output: 206}

``lengths.kind``:

``heavy-tailed``
    :class:`~loratwin.workload.lengths.BoundedHeavyTailed` with ``mean_input``,
    ``mean_output`` (required), ``std_input``, ``std_output`` and the window ``min_input``,
    ``max_input``, ``min_output``, ``max_total`` (defaults: vLLM's ShareGPT filter).
``fixed``
    :class:`~loratwin.workload.lengths.FixedLengths` with ``input_tokens``, ``output_tokens``.
``empirical``
    :class:`~loratwin.workload.lengths.EmpiricalLengths` resampled from ``csv`` (a path, or
    ``sharegpt-llama2`` for the bundled ShareGPT table). ``filter: true`` keeps only pairs in
    the window fields (defaults: vLLM's ShareGPT filter). ``per_adapter`` is ``tilt`` or
    ``scale`` (see ``EmpiricalLengths``).
``trace``
    The (prompt, output) pairs of the request trace ``trace`` (a path, ``azure-conv`` or
    ``azure-code``), resampled like ``empirical``; the trace's timing is not used (replay a
    trace with :func:`requests_from_trace`).

Relative paths are resolved against ``base_dir`` (pass the config file's directory).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from loratwin.errors import ConfigError
from loratwin.workload.adapters import check_adapters
from loratwin.workload.arrivals import arrival_times
from loratwin.workload.bundled import BUNDLED_FILES, resolve_data_path
from loratwin.workload.lengths import (
    BoundedHeavyTailed,
    EmpiricalLengths,
    FixedLengths,
    LengthDistribution,
    LengthFilter,
    LengthFits,
    sample_lengths,
)
from loratwin.workload.types import Adapter, Requests

if TYPE_CHECKING:
    import pandas as pd

LengthKind = Literal["heavy-tailed", "empirical", "fixed", "trace"]


class ArrivalSpec(BaseModel):
    """How each adapter's requests arrive (see :mod:`loratwin.workload.arrivals`).

    Attributes
    ----------
    process:
        ``poisson`` (exponential gaps, vLLM's benchmark client) or ``gamma`` (gamma gaps).
    cv:
        Coefficient of variation of the gaps (> 0); only ``gamma`` may set it (Poisson is 1).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    process: Literal["poisson", "gamma"] = "poisson"
    cv: float = Field(1.0, gt=0.0, allow_inf_nan=False)

    @model_validator(mode="after")
    def _check(self) -> ArrivalSpec:
        if self.process == "poisson" and self.cv != 1.0:
            raise ValueError(f"cv {self.cv} needs process 'gamma' (Poisson gaps have cv 1)")
        return self


_KIND_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required, allowed besides "kind")
    "heavy-tailed": ({"mean_input", "mean_output"},
                     {"mean_input", "mean_output", "std_input", "std_output", "min_input",
                      "max_input", "min_output", "max_total"}),
    "fixed": ({"input_tokens", "output_tokens"}, {"input_tokens", "output_tokens"}),
    "empirical": ({"csv"}, {"csv", "filter", "per_adapter", "min_input", "max_input",
                            "min_output", "max_total"}),
    "trace": ({"trace"}, {"trace", "filter", "per_adapter", "min_input", "max_input",
                          "min_output", "max_total"}),
}
_WINDOW = ("min_input", "max_input", "min_output", "max_total")


class LengthSpec(BaseModel):
    """Request length distribution of a workload (kinds in the module docstring).

    Only the fields of the chosen ``kind`` may be set; all lengths are in tokens.

    Raises
    ------
    pydantic.ValidationError
        A required field of the kind is missing, a field of another kind is set, or a value
        is out of range.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: LengthKind
    # heavy-tailed
    mean_input: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    mean_output: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    std_input: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    std_output: float | None = Field(None, gt=0.0, allow_inf_nan=False)
    # window: heavy-tailed, and empirical / trace with filter: true
    min_input: int = Field(4, ge=1)
    max_input: int = Field(1024, ge=1)
    min_output: int = Field(4, ge=1)
    max_total: int = Field(2048, ge=2)
    # fixed
    input_tokens: int | None = Field(None, ge=1)
    output_tokens: int | None = Field(None, ge=1)
    # empirical / trace
    csv: str | None = None
    trace: str | None = None
    filter: bool = False
    per_adapter: Literal["tilt", "scale"] = "tilt"

    @model_validator(mode="after")
    def _check_kind(self) -> LengthSpec:
        required, allowed = _KIND_FIELDS[self.kind]
        given = self.model_fields_set - {"kind"}
        for name in sorted(required):
            if getattr(self, name) is None:
                raise ValueError(f"kind '{self.kind}' needs {name}")
        for name in sorted(given - allowed):
            raise ValueError(f"{name} does not apply to kind '{self.kind}'")
        if self.kind in ("empirical", "trace") and not self.filter:
            for name in _WINDOW:
                if name in given:
                    raise ValueError(f"{name} applies to kind '{self.kind}' only with "
                                     "filter: true")
        return self


def _resolve(name_or_path: str, base_dir: str | Path | None) -> Path:
    if name_or_path in BUNDLED_FILES:
        return resolve_data_path(name_or_path)
    path = Path(name_or_path).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return path


def build_lengths(spec: LengthSpec, base_dir: str | Path | None = None) -> LengthDistribution:
    """The length distribution a :class:`LengthSpec` describes.

    Raises
    ------
    ConfigError
        Invalid window or means (from the distribution classes).
    DataError
        A missing or malformed CSV for ``empirical`` / ``trace``.
    """
    if spec.kind == "fixed":
        assert spec.input_tokens is not None and spec.output_tokens is not None
        return FixedLengths(spec.input_tokens, spec.output_tokens)
    if spec.kind == "heavy-tailed":
        assert spec.mean_input is not None and spec.mean_output is not None
        return BoundedHeavyTailed(
            mean_input=spec.mean_input, mean_output=spec.mean_output,
            std_input=spec.std_input, std_output=spec.std_output,
            min_input=spec.min_input, max_input=spec.max_input,
            min_output=spec.min_output, max_total=spec.max_total)
    source = spec.csv if spec.kind == "empirical" else spec.trace
    assert source is not None
    window = (LengthFilter(spec.min_input, spec.max_input, spec.min_output, spec.max_total)
              if spec.filter else None)
    return EmpiricalLengths.from_csv(_resolve(source, base_dir), window,
                                     per_adapter=spec.per_adapter)


def _rngs(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"must be an integer >= 0 (got {seed!r})", field="seed")
    arrivals_ss, lengths_ss = np.random.SeedSequence(int(seed)).spawn(2)
    return np.random.default_rng(arrivals_ss), np.random.default_rng(lengths_ss)


def generate_requests(
    adapters: Sequence[Adapter],
    duration_s: float,
    arrivals: ArrivalSpec,
    lengths: LengthSpec | LengthDistribution,
    seed: int,
    *,
    base_dir: str | Path | None = None,
    fits: LengthFits | None = None,
) -> Requests:
    """Synthesise the requests of one run.

    Arrival times come from :func:`~loratwin.workload.arrivals.arrival_times` with each
    adapter's ``rate``; lengths from :func:`~loratwin.workload.lengths.sample_lengths`
    (honouring per-adapter means). Randomness: ``SeedSequence(seed)`` is split into two
    children, one for the arrivals and one for the lengths, so the same seed gives identical
    arrays, and changing only the length distribution keeps the arrival times.

    Parameters
    ----------
    adapters:
        The served adapters (validated: ids unique, rates finite >= 0, ranks >= 1).
    duration_s:
        Window length in s.
    arrivals:
        The arrival process.
    lengths:
        A :class:`LengthSpec` or a ready length distribution object.
    seed:
        Non-negative integer seed.
    base_dir:
        Directory for relative CSV paths of ``lengths``.
    fits:
        Optional memo of solved length distributions shared by a batch of runs
        (:class:`~loratwin.workload.lengths.LengthFits`; same requests without it).

    Returns
    -------
    Requests
        In arrival order; ``adapter`` indexes ``adapters``.

    Raises
    ------
    ConfigError
        Invalid adapters, duration, seed, or lengths that cannot be matched.
    DataError
        A missing or malformed length CSV.
    """
    check_adapters(adapters)
    arrival_rng, length_rng = _rngs(seed)
    dist = build_lengths(lengths, base_dir) if isinstance(lengths, LengthSpec) else lengths
    rates = np.array([a.rate for a in adapters], dtype=np.float64)
    times, adapter = arrival_times(rates, duration_s, arrivals.process, arrivals.cv,
                                   rng=arrival_rng)
    inp, out = sample_lengths(dist, adapter, adapters, length_rng, fits)
    return Requests(times, adapter, inp, out)


def requests_from_trace(
    trace: pd.DataFrame | tuple[Requests, Sequence[str]],
    adapters: Sequence[Adapter],
    *,
    seed: int = 0,
    duration_s: float | None = None,
    rate_multiplier: float = 1.0,
) -> Requests:
    """Replay a trace: keep its arrival times and its own per-request lengths.

    Parameters
    ----------
    trace:
        Either a frame as returned by :func:`~loratwin.workload.trace.load_azure_trace`
        (columns ``arrival_s``, ``input_tokens``, ``output_tokens``; no adapter ids), whose
        requests are dealt to ``adapters`` at random with probability proportional to each
        adapter's ``rate`` (the seed's only use), or the ``(requests, adapter_ids)`` pair of
        :func:`~loratwin.workload.trace.load_trace_csv`, whose ids are matched to
        ``adapters`` by id.
    adapters:
        The served adapters; ``adapter`` of the result indexes this list.
    seed:
        Non-negative integer seed for the random dealing.
    duration_s:
        Keep only requests arriving before this time (after scaling), in s; ``None`` keeps
        all.
    rate_multiplier:
        Compress time by this factor (arrival / multiplier), multiplying every rate by it,
        as :func:`~loratwin.workload.from_trace.adapters_from_trace` does.

    Returns
    -------
    Requests
        In arrival order.

    Raises
    ------
    ConfigError
        A trace adapter id missing from ``adapters``, all rates 0 for random dealing, a
        bad multiplier, duration or seed.
    """
    check_adapters(adapters)
    if not (np.isfinite(rate_multiplier) and rate_multiplier > 0):
        raise ConfigError(f"must be a finite number > 0 (got {rate_multiplier})",
                          field="rate_multiplier")
    if duration_s is not None and not (np.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"must be a finite number > 0 (got {duration_s})", field="duration_s")
    rng, _ = _rngs(seed)
    if not isinstance(trace, tuple):  # an Azure trace frame
        missing = [c for c in ("arrival_s", "input_tokens", "output_tokens")
                   if c not in trace.columns]
        if missing:
            raise ConfigError(f"trace frame lacks column {missing[0]!r}", field="trace")
        order = np.argsort(trace["arrival_s"].to_numpy(np.float64), kind="stable")
        t = trace["arrival_s"].to_numpy(np.float64)[order]
        inp = trace["input_tokens"].to_numpy()[order]
        out = trace["output_tokens"].to_numpy()[order]
        if t.size and not (np.all(np.isfinite(t)) and t.min() >= 0):
            raise ConfigError("arrival_s must be finite and >= 0", field="trace")
        for name, col in (("input_tokens", inp), ("output_tokens", out)):
            if col.size and not (col.min() >= 1 and col.max() <= np.iinfo(np.int32).max):
                raise ConfigError(f"{name} must be integers in [1, 2^31 - 1]", field="trace")
        rates = np.array([a.rate for a in adapters], dtype=np.float64)
        if rates.sum() <= 0:
            raise ConfigError("all adapter rates are 0; cannot deal trace requests",
                              field="rate")
        cdf = np.cumsum(rates / rates.sum())
        adapter = np.searchsorted(cdf, rng.random(t.size) * cdf[-1], side="right")
        adapter = np.minimum(adapter, len(adapters) - 1)
    else:
        requests, ids = trace
        index = {a.id: i for i, a in enumerate(adapters)}
        unknown = [i for i in ids if i not in index]
        if unknown:
            raise ConfigError(f"trace adapter {unknown[0]!r} is not among the adapters",
                              field="adapter_id")
        mapping = np.array([index[i] for i in ids], dtype=np.int64)
        t, inp, out = requests.arrival_s, requests.input_tokens, requests.output_tokens
        adapter = mapping[requests.adapter] if len(requests) else requests.adapter
    t = np.asarray(t, np.float64) / rate_multiplier
    keep = np.ones(t.size, bool) if duration_s is None else t < duration_s
    return Requests(
        arrival_s=t[keep],
        adapter=np.asarray(adapter)[keep].astype(np.int32),
        input_tokens=np.asarray(inp)[keep].astype(np.int32),
        output_tokens=np.asarray(out)[keep].astype(np.int32),
    )
