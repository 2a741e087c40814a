"""The trained surrogate: safe file format, batch and single-configuration prediction.

A surrogate predicts, for one GPU's configuration (the ten features of
:data:`~loratwin.surrogate.features.FEATURES`), what the twin would measure over a benchmark
window: total throughput (tok/s), mean ITL (ms), mean and p99 TTFT (ms) and starvation
(total throughput below 0.9 x the offered load, the papers' rule) with its probability (the
list of targets is :mod:`loratwin.surrogate.targets`; a file trained before p99 TTFT was a
target predicts NaN for it, see :meth:`Surrogate.has_target`).

**File format** (``.npz``, read with ``allow_pickle=False``; no pickles anywhere): for each
target ``<t>`` the arrays ``<t>__offsets, <t>__feature, <t>__threshold, <t>__left,
<t>__right, <t>__value`` of its tree ensemble (:class:`~loratwin.surrogate.trees.TreeEnsemble`),
the same under ``explain_<t>__`` for the small interpretable tree, and ``meta_json``: the
UTF-8 bytes of a JSON block with the feature names, the training envelope (min / max per
feature), the profile name and the SHA-256 of its JSON, the library versions, the data-set
size, the cross-validation and hold-out scores, and per target the estimator, its
parameters and the target transform:

- ``identity``: the model predicts the target itself;
- ``log``: it predicts ``log(1 + y)`` (ITL / TTFT span four orders of magnitude);
- ``fraction``: it predicts ``y / offered`` with ``offered = sum_rate_req_s x
  (mean_input_tokens + mean_output_tokens)`` tok/s, the nominal offered load (throughput).

**Starvation probability.** When training chose it by cross-validation, the file also holds
a ``served_fraction`` regressor (the twin's served / offered tokens of the window, the very
quantity the starvation rule thresholds at 0.9) and ``meta["starvation_blend"]`` =
``{"weight": w, "scale": s, "threshold": 0.9}``; the probability is then
``w * p_classifier + (1 - w) * expit((0.9 - served_fraction) / s)``. The two models err on
different rows near the threshold, so their average classifies better than either (see
:mod:`loratwin.surrogate.train`). Outside the training envelope it is conservative where
the classifier alone was not: for one adapter per GPU (the designs start at 8 served
adapters) the blend predicts starvation from about 18 req/s, where it predicts none up to
26 req/s for 30 adapters on 30 slots.

Bundled surrogates (``loratwin/surrogate/bundled/<profile>.npz``) are found by profile
name; see :mod:`loratwin.surrogate` for how to rebuild them.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from loratwin.errors import DataError
from loratwin.surrogate.capacity import CapacityTable
from loratwin.surrogate.derived import MODEL_INPUTS, augment, augment_row
from loratwin.surrogate.features import FEATURES, feature_frame, gpu_features
from loratwin.surrogate.targets import CLASS_TARGET, REGRESSION_TARGETS, REQUIRED_TARGETS
from loratwin.surrogate.trees import (
    CompiledEnsemble,
    EnsembleGroup,
    TreeEnsemble,
    compile_ensemble,
    compile_group,
)
from loratwin.workload.types import Adapter

FORMAT = "loratwin-surrogate"
FORMAT_VERSION = 3
#: Internal regression target behind the blended starvation probability (served / offered
#: tokens of the window, clipped to [0, SERVED_FRACTION_CAP]).
SERVED_FRACTION = "served_fraction"
SERVED_FRACTION_CAP = 1.2
Transform = Literal["identity", "log", "fraction"]
TRANSFORMS: tuple[str, ...] = ("identity", "log", "fraction")

_I_RATE = FEATURES.index("sum_rate_req_s")
_I_IN = FEATURES.index("mean_input_tokens")
_I_OUT = FEATURES.index("mean_output_tokens")
_I_LORAS = FEATURES.index("max_loras")
_I_SERVED = FEATURES.index("served_adapters")
_BUNDLED = "loratwin.surrogate"


# ----------------------------------------------------------------------------- transforms


def offered_tok_s(x: np.ndarray) -> np.ndarray:
    """Nominal offered load (n,) in tok/s of feature rows x (n, 10): rate x (in + out)."""
    return x[:, _I_RATE] * (x[:, _I_IN] + x[:, _I_OUT])


def forward_transform(name: str, y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Target y (n,) -> what the model learns (see the module docstring)."""
    if name == "identity":
        return np.asarray(y, float)
    if name == "log":
        return np.log1p(np.maximum(y, 0.0))
    if name == "fraction":
        return y / np.maximum(offered_tok_s(x), 1e-9)
    raise ValueError(f"unknown transform {name!r}")


def inverse_transform(name: str, z: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Model output z (n,) -> target (n,) in the target's unit."""
    if name == "identity":
        return z
    if name == "log":
        return np.expm1(z)
    if name == "fraction":
        return z * np.maximum(offered_tok_s(x), 1e-9)
    raise ValueError(f"unknown transform {name!r}")


def _inverse_row(name: str, z: float, x: Sequence[float]) -> float:
    if name == "identity":
        return z
    if name == "log":
        return float(np.expm1(z))  # numpy's, as the batch path (math.expm1 may differ by 1 ulp)
    return z * max(x[_I_RATE] * (x[_I_IN] + x[_I_OUT]), 1e-9)


def blend_probability(p_classifier: np.ndarray, served_fraction: np.ndarray, weight: float,
                      scale: float, threshold: float) -> np.ndarray:
    """Blended P(starved) (n,): ``w p + (1 - w) expit((threshold - fraction) / s)``.

    See "Starvation probability" in the module docstring; ``predict_one`` computes the same
    in plain Python.
    """
    z = np.clip((np.asarray(served_fraction, float) - threshold) / scale, -700.0, 700.0)
    return weight * np.asarray(p_classifier, float) + (1.0 - weight) / (1.0 + np.exp(z))


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Predictions:
    """Predictions for a batch of n configurations (arrays of shape (n,)).

    Attributes
    ----------
    total_throughput_tok_s:
        Total (input + output) throughput, tok/s.
    mean_itl_ms, mean_ttft_ms:
        Mean inter-token latency and time to first token, ms.
    p99_ttft_ms:
        99th percentile of the time to first token, ms (NaN if the surrogate has no model).
    starvation:
        Predicted starvation (bool).
    starvation_probability:
        Probability of starvation in [0, 1].
    out_of_envelope:
        True where some feature lies outside the training envelope (bool).
    """

    total_throughput_tok_s: np.ndarray
    mean_itl_ms: np.ndarray
    mean_ttft_ms: np.ndarray
    p99_ttft_ms: np.ndarray
    starvation: np.ndarray
    starvation_probability: np.ndarray
    out_of_envelope: np.ndarray

    def __len__(self) -> int:
        return len(self.total_throughput_tok_s)

    def to_frame(self) -> pd.DataFrame:
        """One row per configuration, one column per field."""
        return pd.DataFrame({k: getattr(self, k) for k in PREDICTION_FIELDS})

    def rows(self) -> list[dict[str, Any]]:
        """JSON-ready records (Python floats and bools), in input order."""
        cols = [getattr(self, k).tolist() for k in PREDICTION_FIELDS]
        return [dict(zip(PREDICTION_FIELDS, vals, strict=True)) for vals in zip(*cols,
                                                                                 strict=True)]


PREDICTION_FIELDS: tuple[str, ...] = (
    *REGRESSION_TARGETS, "starvation", "starvation_probability", "out_of_envelope",
)


def wanted_fields(fields: Collection[str] | None) -> frozenset[str]:
    """The fields of a ``predict(..., fields)`` call (all for None).

    Raises
    ------
    DataError
        An unknown field.
    """
    if fields is None:
        return frozenset(PREDICTION_FIELDS)
    wanted = frozenset(fields)
    unknown = sorted(wanted - set(PREDICTION_FIELDS))
    if unknown:
        raise DataError(f"unknown prediction field(s): {', '.join(unknown)}")
    return wanted


def models_for(wanted: frozenset[str], available: Collection[str], blend: bool) -> list[str]:
    """The ensembles a prediction of the ``wanted`` fields runs: the regression targets
    among them that the surrogate has (``available``), then, for ``starvation`` or
    ``starvation_probability``, the starvation classifier and (``blend``) the
    served-fraction model of the blended probability."""
    names = [t for t in REGRESSION_TARGETS if t in wanted and t in available]
    if wanted & {"starvation", "starvation_probability"}:
        names += [CLASS_TARGET, *([SERVED_FRACTION] if blend else [])]
    return names


@dataclass(frozen=True, slots=True)
class PointPrediction:
    """Prediction for one configuration (units as in :class:`Predictions`)."""

    total_throughput_tok_s: float
    mean_itl_ms: float
    mean_ttft_ms: float
    p99_ttft_ms: float
    starvation: bool
    starvation_probability: float
    out_of_envelope: bool


# ----------------------------------------------------------------------------- surrogate


@dataclass(frozen=True)
class TargetModel:
    """One target's ensemble, its transform and its compiled evaluator."""

    name: str
    ensemble: TreeEnsemble
    transform: str
    compiled: CompiledEnsemble = field(repr=False)

    @staticmethod
    def build(name: str, ensemble: TreeEnsemble, transform: str) -> TargetModel:
        if transform not in TRANSFORMS:
            raise DataError(f"surrogate file: unknown transform {transform!r} for {name}")
        return TargetModel(name, ensemble, transform,
                           compile_ensemble(ensemble, len(MODEL_INPUTS)))


def _starved(kind: str, p: np.ndarray | float) -> np.ndarray | bool:
    # boosting: sklearn predicts class 1 when raw >= 0, i.e. expit(raw) >= 0.5;
    # forests: argmax of the mean class probabilities, ties to class 0
    return p >= 0.5 if kind == "sum" else p > 0.5


@dataclass(frozen=True)
class Surrogate:
    """A trained surrogate of the twin for one profile.

    Build one with :func:`loratwin.surrogate.train.train_surrogate` or load one with
    :meth:`load`; predict whole batches with :meth:`predict` (numpy, vectorised) and single
    configurations with :meth:`predict_one` (plain Python, for placement's inner loops).

    Attributes
    ----------
    meta:
        The JSON metadata block (see the module docstring).
    models:
        Per target (``REGRESSION_TARGETS`` and ``starvation``) the ensemble and transform.
    explain:
        Per target the small interpretable tree (at most 40 leaves).
    envelope_min, envelope_max:
        (10,) per-feature range of the training rows.
    capacity:
        The profile's capacity table behind the ``capacity_tok_s`` / ``load_ratio`` inputs.
    """

    meta: dict[str, Any]
    models: dict[str, TargetModel]
    explain: dict[str, TargetModel]
    envelope_min: np.ndarray
    envelope_max: np.ndarray
    capacity: CapacityTable
    _group: EnsembleGroup = field(repr=False)
    _env_lo: tuple[float, ...] = field(repr=False, default=())
    _env_hi: tuple[float, ...] = field(repr=False, default=())
    _blend: tuple[float, float, float] | None = field(repr=False, default=None)

    # -------------------------------------------------------------- construction and files

    @staticmethod
    def from_parts(meta: dict[str, Any], models: dict[str, tuple[TreeEnsemble, str]],
                   explain: dict[str, tuple[TreeEnsemble, str]],
                   capacity: CapacityTable) -> Surrogate:
        """Assemble (and compile) a surrogate; ``meta`` must hold ``envelope``.

        Raises
        ------
        DataError
            A target is missing or the envelope is malformed.
        """
        for t in REQUIRED_TARGETS:
            if t not in models:
                raise DataError(f"surrogate file: no model for {t}")
        blend = _parse_blend(meta.get("starvation_blend"), SERVED_FRACTION in models)
        env = meta.get("envelope", {})
        lo = np.asarray(env.get("min", []), float)
        hi = np.asarray(env.get("max", []), float)
        if lo.shape != (len(FEATURES),) or hi.shape != (len(FEATURES),):
            raise DataError("surrogate file: envelope must give min and max of 10 features")
        if list(meta.get("features", ())) != list(FEATURES):
            raise DataError("surrogate file: its features differ from this loratwin's")
        if list(meta.get("model_inputs", ())) != list(MODEL_INPUTS):
            raise DataError("surrogate file: its derived inputs differ from this loratwin's "
                            "(retrain it)")
        built = {k: TargetModel.build(k, e, tr) for k, (e, tr) in models.items()}
        return Surrogate(
            meta=meta, models=built,
            explain={k: TargetModel.build(k, e, tr) for k, (e, tr) in explain.items()},
            envelope_min=lo, envelope_max=hi, capacity=capacity,
            _env_lo=tuple(lo.tolist()), _env_hi=tuple(hi.tolist()), _blend=blend,
            _group=compile_group({k: m.compiled for k, m in built.items()}),
        )

    def save(self, path: Path) -> None:
        """Write the surrogate as a compressed ``.npz`` (arrays + ``meta_json``)."""
        arrays: dict[str, np.ndarray] = {}
        meta = dict(self.meta)
        meta["models"] = {k: {**meta.get("models", {}).get(k, {}),
                              "ensemble": m.ensemble.header(), "transform": m.transform}
                          for k, m in self.models.items()}
        meta["explain"] = {k: {**meta.get("explain", {}).get(k, {}),
                               "ensemble": m.ensemble.header(), "transform": m.transform}
                           for k, m in self.explain.items()}
        for k, m in self.models.items():
            arrays.update(m.ensemble.arrays(f"{k}__"))
        for k, m in self.explain.items():
            arrays.update(m.ensemble.arrays(f"explain_{k}__"))
        arrays.update(self.capacity.arrays("capacity__"))
        text = json.dumps(meta, indent=1, sort_keys=True)
        arrays["meta_json"] = np.frombuffer(text.encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    @staticmethod
    def load(name_or_path: str | Path) -> Surrogate:
        """A bundled surrogate by profile name, or a ``.npz`` file.

        Raises
        ------
        DataError
            Unknown name, missing file, or a file that is not a loratwin surrogate.
        """
        path = Path(name_or_path)
        if path.suffix == ".npz" or path.exists():
            if not path.is_file():
                raise DataError(f"surrogate file not found: {path}")
            return _read(path.read_bytes(), str(path))
        res = resources.files(_BUNDLED).joinpath("bundled", f"{name_or_path}.npz")
        if not res.is_file():
            known = ", ".join(bundled_surrogates()) or "none"
            raise DataError(f"no surrogate for {str(name_or_path)!r} (bundled: {known})",
                            field="model")
        return _read(res.read_bytes(), str(name_or_path))

    # -------------------------------------------------------------- prediction

    @property
    def profile(self) -> str:
        """Name of the profile the surrogate was trained for."""
        return str(self.meta.get("profile", ""))

    def has_target(self, target: str) -> bool:
        """Whether the file has a model for ``target`` (one of
        :data:`~loratwin.surrogate.targets.REGRESSION_TARGETS` or ``starvation``)."""
        return target in self.models

    @property
    def default_input_tokens(self) -> float:
        """The profile's ShareGPT mean input length (default of ``mean_input_tokens``)."""
        return float(self.meta["default_input_tokens"])

    @property
    def default_output_tokens(self) -> float:
        """The profile's ShareGPT mean output length (default of ``mean_output_tokens``)."""
        return float(self.meta["default_output_tokens"])

    def out_of_envelope(self, x: np.ndarray) -> np.ndarray:
        """(n,) bool: rows of x (n, 10) with a feature outside the training range."""
        x = np.asarray(x, float)
        return ((x < self.envelope_min) | (x > self.envelope_max)).any(axis=1)

    def envelope_violations(self, x: np.ndarray) -> list[list[str]]:
        """Per row, the names of the features outside the training range."""
        x = np.asarray(x, float)
        bad = (x < self.envelope_min) | (x > self.envelope_max)
        return [[FEATURES[j] for j in np.flatnonzero(r)] for r in bad]

    def predict(self, features: np.ndarray,
                fields: Collection[str] | None = None) -> Predictions:
        """Predict a batch in one call.

        Parameters
        ----------
        features:
            (n, 10) array, columns in :data:`~loratwin.surrogate.features.FEATURES` order
            (req/s, ranks, counts, tokens, CV).
        fields:
            The :data:`PREDICTION_FIELDS` the caller reads (None: all). Only the models
            they need are run (``starvation`` and ``starvation_probability`` share the
            starvation models); the others are NaN (``starvation``: False). A row's
            answers do not depend on the other fields asked for.

        Returns
        -------
        Predictions
            Arrays of shape (n,).

        Raises
        ------
        DataError
            Not an (n, 10) array of finite numbers, or an unknown field.
        """
        x = _check_matrix(features)
        wanted = wanted_fields(fields)
        xa = augment(x, self.capacity)
        got = self._group.predict(xa, models_for(wanted, self.models, bool(self._blend)))
        out = {t: (inverse_transform(self.models[t].transform, got[t], x) if t in got
                   else np.full(len(x), np.nan)) for t in REGRESSION_TARGETS}
        p, starved = np.full(len(x), np.nan), np.zeros(len(x), bool)
        if CLASS_TARGET in got:
            p = got[CLASS_TARGET]
            if self._blend:
                p = blend_probability(p, got[SERVED_FRACTION], *self._blend)
                starved = p >= 0.5
            else:
                starved = np.asarray(_starved(self.models[CLASS_TARGET].ensemble.kind, p),
                                     bool)
        return Predictions(
            **out, starvation=starved, starvation_probability=p,
            out_of_envelope=self.out_of_envelope(x),
        )

    def predict_frame(self, df: pd.DataFrame, source: str | None = None) -> Predictions:
        """Predict the rows of a table with the feature columns (optional ones defaulted).

        ``source``: the file the table came from, its index holding file line numbers
        (errors then name the file and line, see :func:`feature_frame`).

        Raises
        ------
        DataError
            A required column is missing, or a value is invalid or inconsistent.
        """
        x = feature_frame(df, default_input_tokens=self.default_input_tokens,
                          default_output_tokens=self.default_output_tokens, source=source)
        return self.predict(x)

    def predict_one(self, features: Sequence[float]) -> PointPrediction:
        """Predict one configuration (plain Python: ~0.1 ms, no numpy call per tree).

        Parameters
        ----------
        features:
            The 10 features in :data:`FEATURES` order.

        Raises
        ------
        DataError
            Not 10 finite numbers.
        """
        if len(features) != len(FEATURES):
            raise DataError(f"expected {len(FEATURES)} features, got {len(features)}")
        x = array("d", features)
        if not all(math.isfinite(v) for v in x):
            raise DataError("features must be finite numbers")
        if x[_I_LORAS] < 1 or x[_I_SERVED] < 1:
            raise DataError("served_adapters and max_loras must be >= 1")
        xa = augment_row(x, self.capacity)
        m = self.models
        values = [_inverse_row(r.transform, r.compiled.raw_row(xa), x) if r else math.nan
                  for r in (m.get(t) for t in REGRESSION_TARGETS)]
        cm = m[CLASS_TARGET]
        p = cm.compiled.predict_row(xa)
        out = False
        for v, lo, hi in zip(x, self._env_lo, self._env_hi, strict=True):
            if v < lo or v > hi:
                out = True
                break
        if self._blend:
            f = m[SERVED_FRACTION].compiled.predict_row(xa)
            w, sc, th = self._blend
            p = w * p + (1.0 - w) / (1.0 + math.exp(min(max((f - th) / sc, -700.0), 700.0)))
            starved = p >= 0.5
        else:
            starved = bool(_starved(cm.ensemble.kind, p))
        return PointPrediction(*values, starved, p, out)

    def predict_gpu(self, adapters: Sequence[Adapter], max_loras: int, *,
                    arrival_cv: float = 1.0) -> PointPrediction:
        """Predict the GPU serving ``adapters`` with ``max_loras`` slots (features computed
        by :func:`~loratwin.surrogate.features.gpu_features` with the profile's defaults)."""
        x = gpu_features(adapters, max_loras, default_input_tokens=self.default_input_tokens,
                         default_output_tokens=self.default_output_tokens,
                         arrival_cv=arrival_cv)
        return self.predict_one(x.tolist())

    def explain_text(self) -> str:
        """The interpretable trees as readable rules (see :mod:`loratwin.surrogate.explain`)."""
        from loratwin.surrogate.explain import format_rules

        return format_rules(self)


def _parse_blend(blend: Any, has_fraction_model: bool) -> tuple[float, float, float] | None:
    """``meta["starvation_blend"]`` as (weight, scale, threshold), None when absent.

    Raises
    ------
    DataError
        No ``served_fraction`` model, or a weight outside [0, 1] / a scale <= 0 / a missing
        or non-numeric field.
    """
    if blend is None:
        return None
    if not has_fraction_model:
        raise DataError(f"surrogate file: starvation blend without a {SERVED_FRACTION} model")
    try:
        w, sc, th = (float(blend[k]) for k in ("weight", "scale", "threshold"))
    except (KeyError, TypeError, ValueError):
        raise DataError("surrogate file: malformed starvation_blend") from None
    if not (0.0 <= w <= 1.0 and sc > 0.0):
        raise DataError("surrogate file: malformed starvation_blend")
    return w, sc, th


def _check_matrix(features: np.ndarray) -> np.ndarray:
    x = np.asarray(features, dtype=float)
    if x.ndim == 1 and x.shape[0] == len(FEATURES):
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != len(FEATURES):
        raise DataError(f"features must be an (n, {len(FEATURES)}) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("features must be finite numbers")
    if (x[:, _I_LORAS] < 1).any() or (x[:, _I_SERVED] < 1).any():
        raise DataError("served_adapters and max_loras must be >= 1")
    return x


def bundled_surrogates() -> list[str]:
    """Profile names with a bundled per-profile surrogate (not the universal one,
    :mod:`loratwin.surrogate.universal`)."""
    d = resources.files(_BUNDLED).joinpath("bundled")
    if not d.is_dir():
        return []
    return sorted(p.name.removesuffix(".npz") for p in d.iterdir()
                  if p.name.endswith(".npz") and p.name != "universal.npz")


def bundled_path(profile: str) -> Path:
    """Where the bundled surrogate of ``profile`` lives (in the installed package)."""
    return Path(str(resources.files(_BUNDLED).joinpath("bundled", f"{profile}.npz")))


def _read(data: bytes, label: str) -> Surrogate:
    import io
    import zipfile

    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError):
        raise DataError(f"{label}: not a loratwin surrogate (.npz) file") from None
    if "meta_json" not in arrays:
        raise DataError(f"{label}: not a loratwin surrogate (no meta_json)")
    try:
        meta = json.loads(arrays.pop("meta_json").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise DataError(f"{label}: corrupt metadata") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{label}: not a loratwin surrogate")
    if int(meta.get("format_version", 0)) < FORMAT_VERSION:
        raise DataError(f"{label}: made by an older loratwin (format version "
                        f"{meta.get('format_version')}, this one reads {FORMAT_VERSION}); "
                        "retrain it with `loratwin train`")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise DataError(f"{label}: format version {meta.get('format_version')} is newer "
                        f"than this loratwin reads ({FORMAT_VERSION})")
    try:
        models = {k: (TreeEnsemble.from_arrays(v["ensemble"], arrays, f"{k}__"), v["transform"])
                  for k, v in meta["models"].items()}
        explain = {k: (TreeEnsemble.from_arrays(v["ensemble"], arrays, f"explain_{k}__"),
                       v["transform"]) for k, v in meta.get("explain", {}).items()}
        capacity = CapacityTable.from_arrays(arrays, "capacity__")
    except (KeyError, TypeError, AttributeError, ValueError):
        raise DataError(f"{label}: incomplete model metadata") from None
    return Surrogate.from_parts(meta, models, explain, capacity)
