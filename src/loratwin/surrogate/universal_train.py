"""Training the universal surrogate on the twin runs of many profiles, with
leave-one-profile-out scores.

Each profile's data set (``loratwin dataset``, :mod:`.universal_build`) is turned into
profile-normalised inputs and targets (:mod:`.universal`) with the profile's own scales;
the rows of all profiles are pooled and one model per target is fitted: scikit-learn
gradient boosting (200 trees of depth 5 for the regressions, the ``gb-d5`` candidate of
:mod:`.train`; 200 of depth 4 for the starvation classifier, ``gb-d4``). No per-target model
selection: the inputs do the work. The starvation probability is the classifier's alone:
the blend with a served-fraction regressor of :mod:`.train` scored the same
leave-one-profile-out F1 with the inputs of file format 1 (Llama / Qwen held out: 0.969 /
0.940, the classifier 0.976 /
0.939) but extrapolated badly to a
GPU of one idle adapter (served fraction 0.87, P(starved) 0.43 at 0.002 req/s, where the
classifier says 0.00), because windows of a handful of requests make that target noisy.

Leave-one-profile-out (:func:`leave_one_out`): for each held-out profile the models are
fitted on the profiles of :func:`~loratwin.surrogate.universal_build.loo_training_names`
(without the held-out profile and the priors calibrated on it) and scored on every usable
row of the held-out profile: throughput / ITL / TTFT SMAPE (%) and starvation F1. The saved
model is then fitted on all rows; the scores go into its metadata.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from loratwin import __version__
from loratwin.errors import DataError
from loratwin.profile.model import Profile
from loratwin.surrogate.dataset import Dataset
from loratwin.surrogate.design import profile_hash
from loratwin.surrogate.features import FEATURES
from loratwin.surrogate.model import SERVED_FRACTION_CAP
from loratwin.surrogate.scales import ProfileScales
from loratwin.surrogate.targets import CLASS_TARGET, REGRESSION_TARGETS
from loratwin.surrogate.train import (
    DEFAULT_CLASSIFIERS,
    DEFAULT_REGRESSORS,
    _fit,
    classification_scores,
    regression_scores,
)
from loratwin.surrogate.trees import TreeEnsemble, from_sklearn
from loratwin.surrogate.universal import (
    FORMAT,
    FORMAT_VERSION,
    SERVED_FRACTION,
    UNIVERSAL_INPUTS,
    UniversalSurrogate,
    forward_target,
    inverse_target,
    profile_scales_at,
    universal_inputs,
)

REGRESSOR = next(c for c in DEFAULT_REGRESSORS if c.name == "gb-d5")
CLASSIFIER = next(c for c in DEFAULT_CLASSIFIERS if c.name == "gb-d4")


@dataclass(frozen=True)
class ProfileRows:
    """One profile's usable twin runs, normalised.

    Attributes
    ----------
    name:
        Profile name.
    x:
        (n, 10) features.
    inputs:
        (n, len(UNIVERSAL_INPUTS)) universal inputs.
    scales:
        The profile's scales at each row (:func:`profile_scales_at`), (n,) arrays.
    targets:
        Per regression target (n,) values in their units; ``served_fraction`` (n,);
        ``starvation`` (n,) as 0/1.
    """

    name: str
    x: np.ndarray
    inputs: np.ndarray
    scales: dict[str, np.ndarray]
    targets: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.x)


def prepare_rows(dataset: Dataset, profile: Profile) -> ProfileRows:
    """Normalise a data set made with ``profile`` (window from the data set's spec).

    Raises
    ------
    DataError
        The data set was made with another profile, has no usable rows, or lacks the
        realised offered load.
    """
    if dataset.profile and dataset.profile != profile.name:
        raise DataError(f"data set of {dataset.profile!r}, not {profile.name!r}")
    rows = dataset.usable()
    if rows.empty:
        raise DataError(f"{profile.name}: no usable rows")
    if "offered_throughput_tok_s" not in rows.columns:
        raise DataError(f"{profile.name}: the data set lacks offered_throughput_tok_s")
    window = float(dataset.spec.get("duration_s") or 3600.0)
    x = rows[list(FEATURES)].to_numpy(float)
    s = profile_scales_at(x, ProfileScales.build(profile))
    targets = {t: rows[t].to_numpy(float) for t in dataset.regression_targets}
    offered = rows["offered_throughput_tok_s"].to_numpy(float)
    targets[SERVED_FRACTION] = np.clip(
        rows["total_throughput_tok_s"].to_numpy(float) / np.maximum(offered, 1e-9), 0.0,
        SERVED_FRACTION_CAP)  # kept for analysis; not fitted (see the module docstring)
    targets[CLASS_TARGET] = rows[CLASS_TARGET].to_numpy(bool).astype(float)
    return ProfileRows(profile.name, x, universal_inputs(x, s, window), s, targets)


def _pool(parts: Sequence[ProfileRows]) -> ProfileRows:
    return ProfileRows(
        "+".join(p.name for p in parts), np.concatenate([p.x for p in parts]),
        np.concatenate([p.inputs for p in parts]),
        {k: np.concatenate([p.scales[k] for p in parts]) for k in parts[0].scales},
        {t: np.concatenate([p.targets[t] for p in parts])
         for t in parts[0].targets if all(t in p.targets for p in parts)})


def fit_models(rows: ProfileRows, seed: int = 0,
               on_fit: Callable[[str], None] | None = None) -> dict[str, TreeEnsemble]:
    """One tree ensemble per target on pooled rows (see the module docstring)."""
    models: dict[str, TreeEnsemble] = {}
    for t, y in rows.targets.items():
        if t == SERVED_FRACTION:
            continue
        clf = t == CLASS_TARGET
        z = y.astype(bool) if clf else forward_target(t, y, rows.x, rows.scales)
        ok = np.isfinite(z) if not clf else np.ones(len(z), bool)
        est = _fit(CLASSIFIER if clf else REGRESSOR, clf, seed, rows.inputs[ok], z[ok])
        models[t] = from_sklearn(est)
        if on_fit is not None:
            on_fit(t)
    return models


def _surrogate(models: dict[str, TreeEnsemble], rows: ProfileRows,
               meta: dict[str, Any]) -> UniversalSurrogate:
    u = rows.inputs
    return UniversalSurrogate.from_parts(
        {**meta, "format": FORMAT, "format_version": FORMAT_VERSION,
         "inputs": list(UNIVERSAL_INPUTS),
         "envelope": {"min": u.min(axis=0).tolist(), "max": u.max(axis=0).tolist()}},
        models)


def score_rows(universal: UniversalSurrogate, rows: ProfileRows) -> dict[str, Any]:
    """Scores of a universal surrogate on a profile's normalised rows: per regression
    target SMAPE (%), R^2, median APE (%); for starvation F1, accuracy, precision, recall."""
    out: dict[str, Any] = {"rows": len(rows)}
    for t in REGRESSION_TARGETS:
        if t in rows.targets and t in universal.compiled:
            z = universal.compiled[t].predict(rows.inputs)
            out[t] = regression_scores(rows.targets[t], inverse_target(t, z, rows.x,
                                                                       rows.scales))
    p = universal.compiled[CLASS_TARGET].predict(rows.inputs)
    out[CLASS_TARGET] = classification_scores(rows.targets[CLASS_TARGET].astype(bool),
                                              p >= 0.5)
    return out


def leave_one_out(parts: Sequence[ProfileRows], profiles: Sequence[Profile],
                  held_out: Sequence[str], seed: int = 0,
                  on_progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Leave-one-profile-out scores (see the module docstring), per held-out profile.

    Raises
    ------
    DataError
        A held-out profile without rows, or nothing left to train on.
    """
    from loratwin.surrogate.universal_build import loo_training_names

    by_name = {p.name: p for p in parts}
    out: dict[str, Any] = {}
    for h in held_out:
        if h not in by_name:
            raise DataError(f"no data set of the held-out profile {h!r}")
        train_names = [n for n in loo_training_names(list(profiles), h) if n in by_name]
        if not train_names:
            raise DataError(f"nothing to train on without {h!r}")
        if on_progress is not None:
            on_progress(f"leave-one-out: {h} held out, training on {len(train_names)} "
                        "profiles")
        pooled = _pool([by_name[n] for n in train_names])
        sur = _surrogate(fit_models(pooled, seed), pooled, {"window_s": _window(pooled)})
        out[h] = {"trained_on": train_names, **score_rows(sur, by_name[h])}
    return out


def _window(rows: ProfileRows) -> float:
    # window_steps x step_s is the window of every row
    k = UNIVERSAL_INPUTS.index("window_steps")
    return float(np.median(rows.inputs[:, k] * rows.scales["step"]))


def train_universal(parts: Sequence[ProfileRows], profiles: Sequence[Profile], *,
                    held_out: Sequence[str] = (), seed: int = 0,
                    on_progress: Callable[[str], None] | None = None) -> UniversalSurrogate:
    """The universal surrogate on every profile's rows, with leave-one-profile-out scores
    for ``held_out`` in ``meta["leave_one_out"]``.

    Raises
    ------
    DataError
        No rows, or data sets of different windows.
    """
    if not parts:
        raise DataError("no data set to train on")
    windows = {round(_window(p), 6) for p in parts}
    if len(windows) > 1:
        raise DataError(f"data sets of different windows ({sorted(windows)} s)")
    loo = leave_one_out(parts, profiles, held_out, seed, on_progress) if held_out else {}
    if on_progress is not None:
        on_progress(f"fitting the final models on {sum(map(len, parts)):,} rows of "
                    f"{len(parts)} profiles")
    pooled = _pool(parts)
    by_name = {p.name: p for p in profiles}
    import scipy
    import sklearn

    meta = {
        "window_s": windows.pop(),
        "profiles": [{"name": p.name, "rows": len(p),
                      "profile_kind": by_name[p.name].profile_kind if p.name in by_name else "",
                      "profile_sha256": profile_hash(by_name[p.name]) if p.name in by_name
                      else ""} for p in parts],
        "estimators": {"regression": {"estimator": REGRESSOR.name, **REGRESSOR.params},
                       "classifier": {"estimator": CLASSIFIER.name, **CLASSIFIER.params}},
        "leave_one_out": loo,
        "seed": seed,
        "versions": {"loratwin": __version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__,
                     "python": platform.python_version()},
    }
    return _surrogate(fit_models(pooled, seed), pooled, meta)
