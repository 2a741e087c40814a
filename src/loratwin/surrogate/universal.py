"""One surrogate for every profile: tree models on profile-normalised inputs.

A per-profile surrogate (:mod:`.model`) learns a profile's twin runs in absolute units (req/s,
tok/s, ms), so a profile nobody trained one for (a physics prior, a collected profile) had
none. The universal surrogate instead sees each configuration through the profile's own
scales (:class:`~loratwin.surrogate.scales.ProfileScales`), as dimensionless ratios
(:data:`UNIVERSAL_INPUTS`):

- the offered load over the server's steady-state capacity (``load_ratio``);
- the requests in flight, per adapter, per slot and over the KV cache in requests (Little's
  law with the saturated step time: rate x output tokens x step time);
- the adapter load time in steps and the arrivals per slot during one load (swap cost);
- the one-request step over the saturated step (how much of a step is fixed cost), the
  benchmark window in steps, the exact KV cache over the grid's interpolation (next to the
  memory limit), the share of time spent loading adapters;
- the swap cycle (with fewer slots than adapters, the time until an adapter's next turn on
  a slot: adapters per slot x (load + its decode steps)) over the window and in steps, and
  the requests of one adapter that arrive meanwhile;
- the operating point: the batch that Little's law gives with a step time linear between
  the one-request and the saturated step, over the saturated batch and per slot;
- and the quantities that mean the same on every GPU (slots per adapter, ranks, token
  lengths, arrival and rate burstiness). The raw counts of adapters and slots are left out
  on purpose: trees split on them (one slot: starved) where the physics is in the ratios
  above, and a GPU serving one adapter on one slot, outside the designs' 8 ... 1,200
  adapters, was then predicted to starve at 0.002 req/s.

Its targets are normalised the same way: throughput as a fraction of the smaller of the
offered load and the capacity, ITL and mean / p99 TTFT in saturated steps (log), and the
starvation label (a classifier; a file may also hold a served-fraction blend as
:mod:`.model` does, ``meta["blend"]``). Trained
on the twin runs of several profiles (priors of different models and GPUs and the measured
ones), it answers for any profile once the profile's scales are tabulated (``bind``,
~1-2 s), with no twin run.

The figures are estimates for profiles it was not trained on: leave-one-profile-out scores
are in the file's metadata (``meta["leave_one_out"]``; ``loratwin surrogate universal``
prints them) and in ``docs/prior.md``. Placement uses the profile's bundled per-profile
surrogate when it has one and this one otherwise
(:func:`loratwin.placement.predictor.load_predictor`), and says which.

**File format** (``.npz`` read with ``allow_pickle=False``): per target ``<t>`` the tree
arrays of :class:`~loratwin.surrogate.trees.TreeEnsemble` under ``<t>__``, and ``meta_json``
(format ``loratwin-universal-surrogate``, the input names, the envelope of the inputs, the
benchmark window of the training runs, the profiles trained on with their hashes, the
leave-one-profile-out scores, the blend of the starvation probability).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from loratwin.errors import DataError
from loratwin.profile.model import Profile
from loratwin.surrogate.features import FEATURES, feature_frame
from loratwin.surrogate.model import (
    Predictions,
    Surrogate,
    blend_probability,
    bundled_surrogates,
    models_for,
    wanted_fields,
)
from loratwin.surrogate.scales import ProfileScales
from loratwin.surrogate.targets import CLASS_TARGET, REGRESSION_TARGETS
from loratwin.surrogate.trees import (
    CompiledEnsemble,
    EnsembleGroup,
    TreeEnsemble,
    compile_ensemble,
    compile_group,
)

FORMAT = "loratwin-universal-surrogate"
FORMAT_VERSION = 2  # 2: the swap-cycle and operating-point inputs
#: Name of the bundled universal surrogate (``surrogate/bundled/universal.npz``).
UNIVERSAL_NAME = "universal"
SERVED_FRACTION = "served_fraction"

UNIVERSAL_INPUTS: tuple[str, ...] = (
    "load_ratio",  # offered tok/s / capacity tok/s
    "slot_fraction",  # max_loras / served_adapters
    "max_rank",
    "mean_rank",
    "std_rank",
    "mean_input_tokens",
    "mean_output_tokens",
    "input_share",  # in / (in + out)
    "arrival_cv",
    "rate_cv",  # std / mean of the adapters' rates
    "inflight_per_adapter",  # mean rate x out tokens x saturated step, requests
    "inflight_per_slot",  # sum rate x out x step / max_loras
    "inflight_over_kv",  # sum rate x out x step / kv_requests
    "kv_requests",  # KV tokens / (in + out / 2)
    "load_steps",  # adapter load time / saturated step
    "load_arrivals_per_slot",  # sum rate / max_loras x load time
    "idle_ratio",  # one-request step / saturated step
    "window_steps",  # benchmark window / saturated step
    "kv_shrink",  # exact KV cache / the grid's interpolation (< 1 next to the memory limit)
    "swap_busy",  # sum rate x (1 - max_loras / served) x load time: share of time loading
    "cycle_over_window",  # swap cycle (below) / benchmark window
    "cycle_steps",  # log(1 + swap cycle / saturated step)
    "batch_fill",  # operating-point batch / saturated batch
    "batch_per_slot",  # operating-point batch / max_loras (swapping) or / served adapters
    "visit_requests",  # requests of one adapter arriving during a swap cycle
)
"""Column order of the universal surrogate's model inputs."""

#: Target transforms: throughput as a fraction of the smaller of the offered load and the
#: capacity (1 for a server that keeps up, the share of its capacity it reaches when
#: overloaded), latencies in saturated steps (log).
TRANSFORMS: dict[str, str] = {
    "total_throughput_tok_s": "fraction", "mean_itl_ms": "log_steps",
    "mean_ttft_ms": "log_steps", "p99_ttft_ms": "log_steps", SERVED_FRACTION: "identity",
    CLASS_TARGET: "identity",
}

_F = {f: FEATURES.index(f) for f in FEATURES}
_TINY = 1e-12


def profile_scales_at(x: np.ndarray, scales: ProfileScales) -> dict[str, np.ndarray]:
    """The profile's scales (n,) at feature rows x (n, 10) (slots, slot rank, lengths)."""
    return scales.at(x[:, _F["max_loras"]], x[:, _F["max_rank"]],
                     x[:, _F["mean_input_tokens"]], x[:, _F["mean_output_tokens"]])


def universal_inputs(x: np.ndarray, s: dict[str, np.ndarray], window_s: float) -> np.ndarray:
    """(n, 10) features -> (n, len(UNIVERSAL_INPUTS)) inputs, given the scales ``s`` of the
    rows (:func:`profile_scales_at`) and the benchmark window in s."""
    rate, std = x[:, _F["sum_rate_req_s"]], x[:, _F["std_rate_req_s"]]
    loras, served = x[:, _F["max_loras"]], x[:, _F["served_adapters"]]
    inp, out = x[:, _F["mean_input_tokens"]], x[:, _F["mean_output_tokens"]]
    step = np.maximum(s["step"], _TINY)
    mean_rate = rate / served
    inflight = rate * out * step
    kv_req = s["kv"] / np.maximum(inp + out / 2.0, 1.0)
    cols = (
        rate * (inp + out) / np.maximum(s["capacity"], _TINY), loras / served,
        x[:, _F["max_rank"]], x[:, _F["mean_rank"]], x[:, _F["std_rank"]], inp, out,
        inp / np.maximum(inp + out, _TINY), x[:, _F["arrival_cv"]],
        std / np.maximum(mean_rate, _TINY), mean_rate * out * step, inflight / loras,
        inflight / np.maximum(kv_req, _TINY), kv_req, s["load"] / step,
        rate / loras * s["load"], s["idle"] / step, window_s / step,
        s["kv"] / np.maximum(s["kv_table"], 1.0),
        rate * np.maximum(1.0 - loras / served, 0.0) * s["load"],
    )
    cycle, b_op, b_sat = _swap_cycle(x, s), *_operating_batch(x, s)
    swapping = loras < served
    more = (cycle / window_s, np.log1p(cycle / step), b_op / b_sat,
            b_op / np.where(swapping, loras, served), mean_rate * cycle)
    return np.column_stack((*cols, *more))


def _swap_cycle(x: np.ndarray, s: dict[str, np.ndarray]) -> np.ndarray:
    """Swap cycle, s (n,): with fewer slots than adapters (``max_loras`` < served), each
    slot serves ``served / max_loras`` adapters in turn, each visit an adapter load plus
    its requests' decode steps (at least ``out`` one-request steps), so an adapter waits
    about this long for its next turn (0 without swaps). vLLM 0.8.5 V1 admits a waiting
    request only if its adapter is already among the running batch's adapters or the batch
    holds fewer than ``max_loras`` of them (``vllm/v1/core/sched/scheduler.py``,
    ``schedule``); a queue still waiting at the end of the window is what the papers'
    starvation rule counts."""
    loras, served = x[:, _F["max_loras"]], x[:, _F["served_adapters"]]
    out = x[:, _F["mean_output_tokens"]]
    return np.where(loras < served, served / loras * (s["load"] + out * s["idle"]), 0.0)


def _operating_batch(x: np.ndarray, s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(operating-point batch, saturated batch), requests (n,) each.

    The saturated batch is the running requests of the saturated step (its tokens per step,
    capacity x step, over 1 + input / output tokens per request). The operating point is
    Little's law with a step time linear in the batch between the one-request step and the
    saturated one: ``b = rate x out x (idle + slope x b)``, i.e. ``b = rate x out x idle /
    (1 - rate x out x slope)``, capped at the saturated batch (where the server cannot keep
    up the denominator reaches 0)."""
    rate, out = x[:, _F["sum_rate_req_s"]], x[:, _F["mean_output_tokens"]]
    inp = x[:, _F["mean_input_tokens"]]
    step = np.maximum(s["step"], _TINY)
    b_sat = np.maximum(s["capacity"] * step / (1.0 + inp / np.maximum(out, 1.0)), 1.0)
    slope = np.maximum(step - s["idle"], 0.0) / b_sat
    arrivals = rate * out
    den = 1.0 - arrivals * slope
    b_op = np.where(den > 1e-3, arrivals * s["idle"] / np.maximum(den, 1e-3), b_sat)
    return np.minimum(b_op, b_sat), b_sat


def forward_target(name: str, y: np.ndarray, x: np.ndarray,
                   s: dict[str, np.ndarray]) -> np.ndarray:
    """Target (n,) in its unit -> what the model learns (:data:`TRANSFORMS`), with the
    rows' scales ``s`` (:func:`profile_scales_at`)."""
    kind = TRANSFORMS[name]
    if kind == "fraction":
        return y / _served_scale(x, s)
    if kind == "log_steps":
        return np.log(np.maximum(y, 1e-6) / 1e3 / np.maximum(s["step"], _TINY))
    return np.asarray(y, float)


def inverse_target(name: str, z: np.ndarray, x: np.ndarray,
                   s: dict[str, np.ndarray]) -> np.ndarray:
    """Model output (n,) -> target (n,) in its unit (tok/s, ms)."""
    kind = TRANSFORMS[name]
    if kind == "fraction":
        return z * _served_scale(x, s)
    if kind == "log_steps":
        return np.exp(z) * s["step"] * 1e3
    return z


def _served_scale(x: np.ndarray, s: dict[str, np.ndarray]) -> np.ndarray:
    """min(offered, capacity), tok/s (> 0)."""
    return np.maximum(np.minimum(_offered(x), s["capacity"]), 1e-9)


def _offered(x: np.ndarray) -> np.ndarray:
    return x[:, _F["sum_rate_req_s"]] * (x[:, _F["mean_input_tokens"]]
                                         + x[:, _F["mean_output_tokens"]])


@dataclass(frozen=True)
class UniversalSurrogate:
    """The trained universal surrogate (see the module docstring); :meth:`bind` it to a
    profile to predict.

    Attributes
    ----------
    meta:
        The JSON metadata block.
    models:
        Per target: its tree ensemble.
    envelope_min, envelope_max:
        (len(UNIVERSAL_INPUTS),) range of the training inputs.
    """

    meta: dict[str, Any]
    models: dict[str, TreeEnsemble]
    envelope_min: np.ndarray
    envelope_max: np.ndarray
    compiled: dict[str, CompiledEnsemble] = field(repr=False)
    group: EnsembleGroup = field(repr=False)

    @staticmethod
    def from_parts(meta: dict[str, Any], models: dict[str, TreeEnsemble]) -> UniversalSurrogate:
        """Assemble and compile.

        Raises
        ------
        DataError
            A required model is missing, or the inputs or envelope do not match.
        """
        for t in ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms", CLASS_TARGET):
            if t not in models:
                raise DataError(f"universal surrogate: no model for {t}")
        if list(meta.get("inputs", ())) != list(UNIVERSAL_INPUTS):
            raise DataError("universal surrogate: its inputs differ from this loratwin's "
                            "(retrain it)")
        env = meta.get("envelope", {})
        lo, hi = (np.asarray(env.get(k, []), float) for k in ("min", "max"))
        if lo.shape != (len(UNIVERSAL_INPUTS),) or hi.shape != lo.shape:
            raise DataError("universal surrogate: malformed envelope")
        if "blend" in meta and SERVED_FRACTION not in models:
            raise DataError(f"universal surrogate: blend without a {SERVED_FRACTION} model")
        compiled = {k: compile_ensemble(e, len(UNIVERSAL_INPUTS)) for k, e in models.items()}
        return UniversalSurrogate(meta, dict(models), lo, hi, compiled, compile_group(compiled))

    @property
    def window_s(self) -> float:
        """Benchmark window of the training runs, s (the window predictions are for)."""
        return float(self.meta["window_s"])

    @property
    def trained_on(self) -> list[str]:
        """Names of the profiles whose twin runs it was trained on."""
        return [str(p["name"]) for p in self.meta.get("profiles", [])]

    def save(self, path: Path) -> None:
        """Write the compressed ``.npz`` (tree arrays + ``meta_json``)."""
        meta = dict(self.meta)
        meta["models"] = {k: e.header() for k, e in self.models.items()}
        arrays: dict[str, np.ndarray] = {}
        for k, e in self.models.items():
            arrays.update(e.arrays(f"{k}__"))
        arrays["meta_json"] = np.frombuffer(
            json.dumps(meta, indent=1, sort_keys=True).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @staticmethod
    def load(path: str | Path | None = None) -> UniversalSurrogate:
        """The bundled universal surrogate, or a ``.npz`` file of one.

        Raises
        ------
        DataError
            Missing or invalid file.
        """
        if path is None:
            res = resources.files("loratwin.surrogate").joinpath("bundled",
                                                                 f"{UNIVERSAL_NAME}.npz")
            if not res.is_file():
                raise DataError("no bundled universal surrogate (see loratwin.surrogate."
                                "universal_train to build one)")
            return _read(res.read_bytes(), UNIVERSAL_NAME)
        p = Path(path)
        if not p.is_file():
            raise DataError(f"surrogate file not found: {p}")
        return _read(p.read_bytes(), str(p))

    def predict_raw(self, x: np.ndarray, scales: ProfileScales,
                    fields: Collection[str] | None = None) -> dict[str, np.ndarray]:
        """Per target (n,) predictions in their units, plus ``starvation_probability`` and
        ``out_of_envelope``, for feature rows x (n, 10) of the profile with ``scales``.

        ``fields``: the targets (and ``starvation_probability``) the caller reads (None: all);
        the others are NaN. A row's answers do not depend on the fields asked for.
        """
        s = profile_scales_at(x, scales)
        u = universal_inputs(x, s, self.window_s)
        blend = self.meta.get("blend")
        got = self.group.predict(u, models_for(wanted_fields(fields), self.compiled,
                                                bool(blend)))
        out: dict[str, np.ndarray] = {
            t: (inverse_target(t, got[t], x, s) if t in got else np.full(len(x), np.nan))
            for t in REGRESSION_TARGETS}
        p = np.full(len(x), np.nan)
        if CLASS_TARGET in got:
            p = got[CLASS_TARGET]
            if blend:
                p = blend_probability(p, got[SERVED_FRACTION], float(blend["weight"]),
                                      float(blend["scale"]), float(blend["threshold"]))
        out["starvation_probability"] = np.asarray(p, float)
        out["out_of_envelope"] = ((u < self.envelope_min) | (u > self.envelope_max)).any(axis=1)
        return out

    def bind(self, profile: Profile, max_num_seqs: int = 2048) -> BoundSurrogate:
        """This surrogate for ``profile``: its scales tabulated (~1-2 s)."""
        return BoundSurrogate(self, profile, ProfileScales.build(profile, max_num_seqs))


@dataclass(frozen=True)
class BoundSurrogate:
    """The universal surrogate for one profile, with the interface placement and
    ``loratwin predict`` use from :class:`~loratwin.surrogate.model.Surrogate` (``predict``,
    ``predict_frame``, ``has_target``, ``profile``, ``meta``)."""

    universal: UniversalSurrogate
    bound_profile: Profile
    scales: ProfileScales

    @property
    def profile(self) -> str:
        """Name of the profile it predicts for."""
        return self.bound_profile.name

    @property
    def meta(self) -> dict[str, Any]:
        """The universal surrogate's metadata, with this profile's name and kind."""
        return {**self.universal.meta, "profile": self.profile,
                "profile_kind": self.bound_profile.profile_kind}

    @property
    def kind(self) -> str:
        """``universal`` (per-profile surrogates have no such attribute)."""
        return UNIVERSAL_NAME

    @property
    def default_input_tokens(self) -> float:
        return float(self.bound_profile.sharegpt_mean_input_tokens)

    @property
    def default_output_tokens(self) -> float:
        return float(self.bound_profile.sharegpt_mean_output_tokens)

    def has_target(self, target: str) -> bool:
        """Whether the universal surrogate has a model for ``target``."""
        return target in self.universal.models

    def predict(self, features: np.ndarray,
                fields: Collection[str] | None = None) -> Predictions:
        """Predictions for (n, 10) feature rows (units as :class:`Predictions`); ``fields``
        as in :meth:`Surrogate.predict <loratwin.surrogate.model.Surrogate.predict>`.

        Raises
        ------
        DataError
            Not an (n, 10) array of finite numbers, or no slot / adapter.
        """
        x = np.asarray(features, float)
        if x.ndim == 1 and x.shape[0] == len(FEATURES):
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(FEATURES):
            raise DataError(f"features must be an (n, {len(FEATURES)}) array, got shape "
                            f"{x.shape}")
        if not np.isfinite(x).all():
            raise DataError("features must be finite numbers")
        if (x[:, _F["max_loras"]] < 1).any() or (x[:, _F["served_adapters"]] < 1).any():
            raise DataError("served_adapters and max_loras must be >= 1")
        r = self.universal.predict_raw(x, self.scales, fields)
        p = r["starvation_probability"]
        return Predictions(**{t: r[t] for t in REGRESSION_TARGETS}, starvation=p >= 0.5,
                           starvation_probability=p, out_of_envelope=r["out_of_envelope"])

    def predict_frame(self, df: pd.DataFrame, source: str | None = None) -> Predictions:
        """Predict the rows of a feature table (see :func:`feature_frame`)."""
        x = feature_frame(df, default_input_tokens=self.default_input_tokens,
                          default_output_tokens=self.default_output_tokens, source=source)
        return self.predict(x)

    def describe(self) -> str:
        """One line naming the surrogate and what it was trained on."""
        names = self.universal.trained_on
        seen = "among them" if self.profile in names else "not among them"
        return (f"surrogate: universal (profile-normalised, trained on the twin runs of "
                f"{len(names)} profiles, {self.profile} {seen}; {self.universal.window_s:,.0f}"
                " s windows): estimated")


def _read(data: bytes, label: str) -> UniversalSurrogate:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(arrays.pop("meta_json").tobytes().decode())
    except (ValueError, OSError, KeyError, zipfile.BadZipFile, EOFError,
            UnicodeDecodeError):
        raise DataError(f"{label}: not a loratwin universal surrogate (.npz)") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{label}: not a loratwin universal surrogate")
    if int(meta.get("format_version", 0)) != FORMAT_VERSION:
        raise DataError(f"{label}: universal surrogate format version "
                        f"{meta.get('format_version')}, this loratwin reads {FORMAT_VERSION}")
    try:
        models = {k: TreeEnsemble.from_arrays(h, arrays, f"{k}__")
                  for k, h in meta["models"].items()}
    except (KeyError, TypeError, AttributeError, ValueError):
        raise DataError(f"{label}: incomplete universal surrogate") from None
    return UniversalSurrogate.from_parts(meta, models)


def surrogate_for(model: str | Path) -> Surrogate | BoundSurrogate:
    """The surrogate ``loratwin predict --model`` means: a ``.npz`` file, a bundled
    per-profile surrogate by profile name, else the universal surrogate bound to the profile
    of that name or JSON path (a prior, say).

    Raises
    ------
    DataError
        Neither a surrogate file, a bundled surrogate nor a loadable profile (the message of
        the missing surrogate), or an invalid file.
    """
    from loratwin.profile.store import load_profile

    path = Path(model)
    if path.suffix == ".npz" or str(model) in bundled_surrogates():
        return Surrogate.load(model)
    try:
        profile = load_profile(model)
    except DataError:
        return Surrogate.load(model)  # raises "no surrogate for ..." for an unknown name
    if profile.name in bundled_surrogates():
        return Surrogate.load(profile.name)
    return UniversalSurrogate.load().bind(profile)
