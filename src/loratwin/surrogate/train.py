"""Training: tree ensembles chosen by cross-validation, plus one small interpretable tree.

For each regression target the data set records (throughput, ITL, mean and p99 TTFT: the
list of :mod:`.targets`) every (candidate estimator, target
transform) pair is scored by k-fold cross-validation on the training split with the SMAPE
of the back-transformed predictions, ``100/n sum |F - A| / (|A| + |F|)`` (the issue's
definition, 0 ... 50 %); the starvation classifier candidates are scored by F1 (starved =
positive class). The best pair is refit on the training split and measured on the hold-out
split (rows the models never saw), then refit on all rows for the saved model. The hold-out
figures are therefore those of a model trained on ``1 - holdout_fraction`` of the data.

Candidates (``TrainConfig``): scikit-learn gradient boosting and random forests with at most
64 leaves per tree, so the batch evaluator uses its fast bitmask path (see
:mod:`.trees`), and at most 200 trees, which keeps a surrogate file well under a few MB and
a prediction of all four targets near 10 us per configuration in batches.

Transforms (see :mod:`.model`): ``identity``, ``log`` (log1p) and, for the throughput,
``fraction`` of the nominal offered load; the choice is per target by CV and recorded.

Starvation: the twin's label is ``served / offered < 0.9`` over the window, so besides the
classifiers a regressor of that served fraction (clipped to [0, 1.2]) is cross-validated,
and every classifier is also scored *blended* with it (transform ``blend``: probability
``w * p_classifier + (1 - w) * expit((0.9 - fraction) / s)``, ``w`` = 0.5 and ``s`` = 0.02,
from the out-of-fold predictions of both). The blend wins when it has the higher CV F1; for
the bundled surrogates (3,200 training rows, 5-fold CV, ``loratwin surrogate show``) it raised
F1 from 0.970 to 0.973 (Qwen) and from 0.971 to 0.975 (Llama). Data sets without the
realised offered load train the classifiers alone.

Rows with a memory error, a failed run or a non-finite target are excluded.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from loratwin import __version__
from loratwin.errors import ConfigError, DataError
from loratwin.profile.model import Profile
from loratwin.profile.store import load_profile
from loratwin.surrogate.capacity import CapacityTable
from loratwin.surrogate.dataset import Dataset
from loratwin.surrogate.derived import DERIVED, MODEL_INPUTS, augment
from loratwin.surrogate.design import profile_hash
from loratwin.surrogate.features import FEATURES
from loratwin.surrogate.model import (
    FORMAT,
    FORMAT_VERSION,
    SERVED_FRACTION,
    SERVED_FRACTION_CAP,
    Surrogate,
    blend_probability,
    forward_transform,
    inverse_transform,
)
from loratwin.surrogate.targets import CLASS_TARGET, REGRESSION_TARGETS
from loratwin.surrogate.trees import TreeEnsemble, from_sklearn
from loratwin.twin.metrics import STARVATION_FRACTION


class Candidate(BaseModel):
    """One estimator configuration (``family`` gb = gradient boosting, rf = random forest)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    family: Literal["gb", "rf"]
    params: dict[str, float | int | str | None] = Field(default_factory=dict)


DEFAULT_REGRESSORS: tuple[Candidate, ...] = (
    Candidate(name="gb-d5", family="gb", params={
        "n_estimators": 200, "learning_rate": 0.08, "max_depth": 5, "subsample": 0.8,
        "min_samples_leaf": 3}),
    Candidate(name="gb-d6", family="gb", params={
        "n_estimators": 150, "learning_rate": 0.1, "max_depth": 6, "subsample": 0.8,
        "min_samples_leaf": 3}),
    Candidate(name="rf-64", family="rf", params={
        "n_estimators": 100, "max_leaf_nodes": 64, "max_features": 0.6}),
)
DEFAULT_CLASSIFIERS: tuple[Candidate, ...] = (
    Candidate(name="gb-d4", family="gb", params={
        "n_estimators": 200, "learning_rate": 0.08, "max_depth": 4, "subsample": 0.8}),
    Candidate(name="rf-64", family="rf", params={
        "n_estimators": 100, "max_leaf_nodes": 64, "max_features": 0.6}),
)


class TrainConfig(BaseModel):
    """How to train (defaults are the documented choices).

    Attributes
    ----------
    folds:
        Cross-validation folds (on the training split).
    holdout_fraction:
        Share of the rows kept out of training and model selection for the reported
        hold-out figures (stratified by starvation); 0 skips the hold-out.
    seed:
        Seed of the splits and of the estimators.
    jobs:
        Parallel fits (joblib processes; -1 = all cores).
    explain_leaves:
        Leaves of each interpretable tree (at most 40).
    throughput_transforms, latency_transforms:
        Transforms tried for the throughput and for ITL / TTFT.
    regressors, classifiers:
        Candidate estimators.
    blend_weight, blend_scale:
        ``w`` and ``s`` of the blended starvation probability (see the module docstring).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    folds: int = Field(5, ge=2)
    holdout_fraction: float = Field(0.2, ge=0.0, lt=0.9)
    seed: int = Field(0, ge=0)
    jobs: int = 1
    explain_leaves: int = Field(40, ge=2, le=40)
    throughput_transforms: tuple[Literal["identity", "log", "fraction"], ...] = (
        "identity", "log", "fraction")
    latency_transforms: tuple[Literal["identity", "log", "fraction"], ...] = ("identity", "log")
    regressors: tuple[Candidate, ...] = DEFAULT_REGRESSORS
    classifiers: tuple[Candidate, ...] = DEFAULT_CLASSIFIERS
    blend_weight: float = Field(0.5, ge=0.0, le=1.0)
    blend_scale: float = Field(0.02, gt=0.0)


# ----------------------------------------------------------------------------- metrics


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """SMAPE in % as the issue defines it: ``100/n sum |F - A| / (|A| + |F|)`` (0/0 = 0)."""
    a = np.asarray(actual, float)
    f = np.asarray(forecast, float)
    den = np.abs(a) + np.abs(f)
    term = np.divide(np.abs(f - a), den, out=np.zeros_like(den), where=den > 0)
    return float(100.0 * term.mean()) if len(a) else float("nan")


def f1(actual: np.ndarray, predicted: np.ndarray) -> float:
    """F1 score of the positive class (1.0 when there are no positives at all)."""
    a = np.asarray(actual, bool)
    p = np.asarray(predicted, bool)
    tp = int((a & p).sum())
    fp = int((~a & p).sum())
    fn = int((a & ~p).sum())
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def r2(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Coefficient of determination."""
    a = np.asarray(actual, float)
    ss = float(((a - a.mean()) ** 2).sum())
    return 1.0 - float(((a - forecast) ** 2).sum()) / ss if ss > 0 else float("nan")


def classification_scores(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """F1, accuracy, precision and recall of the positive class."""
    a = np.asarray(actual, bool)
    p = np.asarray(predicted, bool)
    tp = int((a & p).sum())
    return {
        "f1": f1(a, p),
        "accuracy": float((a == p).mean()) if len(a) else float("nan"),
        "precision": tp / max(int(p.sum()), 1),
        "recall": tp / max(int(a.sum()), 1),
    }


def regression_scores(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """SMAPE (%), R^2 and median absolute percentage error (%)."""
    a = np.asarray(actual, float)
    f = np.asarray(forecast, float)
    ape = np.abs(f - a) / np.maximum(np.abs(a), 1e-12)
    return {"smape": smape(a, f), "r2": r2(a, f),
            "median_ape": float(100 * np.median(ape)) if len(a) else float("nan")}


# ----------------------------------------------------------------------------- fitting


def _estimator(c: Candidate, classifier: bool, seed: int) -> Any:
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )

    cls = {("gb", False): GradientBoostingRegressor, ("gb", True): GradientBoostingClassifier,
           ("rf", False): RandomForestRegressor, ("rf", True): RandomForestClassifier}
    try:
        return cls[(c.family, classifier)](random_state=seed, **c.params)
    except TypeError as exc:
        raise ConfigError(f"candidate {c.name}: {exc}") from None


def _fit(c: Candidate, classifier: bool, seed: int, x: np.ndarray, z: np.ndarray) -> Any:
    est = _estimator(c, classifier, seed)
    if classifier and len(np.unique(z)) < 2:
        from sklearn.tree import DecisionTreeClassifier  # one class only: a constant tree

        est = DecisionTreeClassifier(max_depth=1, random_state=seed)
    return est.fit(x, z)


def _fold_task(c: Candidate, classifier: bool, seed: int, transform: str, xa: np.ndarray,
               x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray
               ) -> tuple[float, np.ndarray]:
    """Score of one (candidate, transform) on one fold, and its predictions on the fold.

    The predictions are the starvation probability for a classifier and the back-transformed
    target for a regressor, in the order of ``te``.
    """
    if classifier:
        est = _fit(c, True, seed, xa[tr], y[tr].astype(bool))
        return (f1(y[te].astype(bool), est.predict(xa[te]).astype(bool)),
                _probability(est, xa[te]))
    z = forward_transform(transform, y[tr], x[tr])
    est = _fit(c, False, seed, xa[tr], z)
    pred = inverse_transform(transform, est.predict(xa[te]), x[te])
    return smape(y[te], pred), pred


def _probability(est: Any, xa: np.ndarray) -> np.ndarray:
    """P(starved) of a fitted classifier (a one-class constant tree gives 0 or 1)."""
    classes = list(est.classes_)
    if True not in classes:
        return np.zeros(len(xa))
    return est.predict_proba(xa)[:, classes.index(True)]


def _blend(p_classifier: np.ndarray, served_fraction: np.ndarray, cfg: TrainConfig
           ) -> np.ndarray:
    return blend_probability(p_classifier, served_fraction, cfg.blend_weight, cfg.blend_scale,
                             STARVATION_FRACTION)


def _splits(y_class: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(y_class.astype(int), minlength=2)
    if counts.min() >= folds:
        cv: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
        return list(cv.split(np.zeros(len(y_class)), y_class))
    cv = KFold(folds, shuffle=True, random_state=seed)
    return list(cv.split(np.zeros(len(y_class))))


def _explain_estimator(classifier: bool, leaves: int, n: int, seed: int) -> Any:
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    cls = DecisionTreeClassifier if classifier else DecisionTreeRegressor
    return cls(max_leaf_nodes=leaves, min_samples_leaf=max(3, n // 200), random_state=seed)


def _served_fraction(rows: Any) -> np.ndarray | None:
    """Served / offered tokens of each run, clipped to [0, cap]; None if not recorded."""
    if "offered_throughput_tok_s" not in rows.columns:
        return None
    offered = rows["offered_throughput_tok_s"].to_numpy(float)
    if not (np.isfinite(offered).all() and (offered > 0).all()):
        return None
    return np.clip(rows["total_throughput_tok_s"].to_numpy(float) / offered, 0.0,
                   SERVED_FRACTION_CAP)


def _add_candidate(cv: dict[str, Any], target: str, name: str, transform: str,
                   vals: list[float]) -> None:
    cv.setdefault(target, {"metric": "f1" if target == CLASS_TARGET else "smape",
                           "candidates": []})
    cv[target]["candidates"].append({"estimator": name, "transform": transform,
                                     "mean": float(np.mean(vals)), "std": float(np.std(vals))})


def _choose(cv: dict[str, Any], cfg: TrainConfig) -> dict[str, tuple[Candidate, str]]:
    """Best (candidate, transform) per target: lowest SMAPE, highest F1 for starvation."""
    chosen: dict[str, tuple[Candidate, str]] = {}
    for t, block in cv.items():
        sign = -1.0 if t == CLASS_TARGET else 1.0
        best = min(block["candidates"], key=lambda r, s=sign: s * r["mean"])
        block["chosen"] = {"estimator": best["estimator"], "transform": best["transform"],
                           "score": best["mean"]}
        pool = cfg.classifiers if t == CLASS_TARGET else cfg.regressors
        chosen[t] = (next(c for c in pool if c.name == best["estimator"]), best["transform"])
    return chosen


@dataclass
class _Ticks:
    """Fits done of all the fits expected, reported through ``on_fit`` after each fit."""

    report: Callable[[int, int], None]
    total: int
    done: int = 0

    def tick(self) -> None:
        self.done += 1
        self.report(self.done, self.total)


@dataclass(frozen=True)
class _Rows:
    """A data set's usable rows as training arrays.

    ``x`` (n, 10) features, ``xa`` (n, k) model inputs, ``ys`` every target (n,) (the
    starvation label as 0/1, the served fraction when recorded), ``starved`` (n,) labels,
    ``test`` (n,) the hold-out mask, ``splits`` the CV folds of the training rows.
    """

    x: np.ndarray
    xa: np.ndarray
    ys: dict[str, np.ndarray]
    starved: np.ndarray
    targets: tuple[str, ...]
    test: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]

    @property
    def train(self) -> np.ndarray:
        return ~self.test

    @property
    def has_fraction(self) -> bool:
        return SERVED_FRACTION in self.ys


def _training_profile(dataset: Dataset, model: str | None, profile: Profile | None) -> Profile:
    """The profile the data set was made with (see :func:`train_surrogate`'s errors)."""
    name = model or dataset.profile
    if not name:
        raise DataError("the data set does not name its profile; pass --model")
    if model and dataset.profile and model != dataset.profile:
        raise ConfigError(f"the data set was made with {dataset.profile!r}, not {model!r}",
                          field="model")
    if profile is None:
        return load_profile(name)
    if profile.name != name:
        raise ConfigError(f"profile {profile.name!r} is not the data set's {name!r}",
                          field="model")
    return profile


def _training_rows(rows: Any, capacity: CapacityTable, targets: tuple[str, ...],
                   cfg: TrainConfig) -> _Rows:
    """Arrays, the hold-out split (stratified by starvation) and the CV folds."""
    n = len(rows)
    if n < 3 * cfg.folds:
        raise DataError(f"only {n} usable rows (need at least {3 * cfg.folds}); "
                        "generate a bigger data set")
    x = rows[list(FEATURES)].to_numpy(float)
    ys = {t: rows[t].to_numpy(float) for t in targets}
    starved = rows[CLASS_TARGET].to_numpy(bool)
    ys[CLASS_TARGET] = starved.astype(float)
    rng = np.random.default_rng(cfg.seed)
    test = np.zeros(n, bool)
    if cfg.holdout_fraction > 0:
        for cls in (False, True):
            idx = np.flatnonzero(starved == cls)
            k = round(len(idx) * cfg.holdout_fraction)
            test[rng.choice(idx, size=k, replace=False)] = True
    if (~test).sum() < 3 * cfg.folds:
        raise DataError(f"only {int((~test).sum())} training rows after the hold-out")
    fraction = _served_fraction(rows)
    if fraction is not None:
        ys[SERVED_FRACTION] = fraction
    return _Rows(x, augment(x, capacity), ys, starved, targets, test,
                 _splits(starved[~test], cfg.folds, cfg.seed))


def _cv_tasks(rows: _Rows, cfg: TrainConfig) -> list[tuple[str, Candidate, str]]:
    """Every (target, candidate, transform) that cross-validation scores."""
    tasks: list[tuple[str, Candidate, str]] = []
    for t in rows.targets:
        trs = (cfg.throughput_transforms if t == "total_throughput_tok_s"
               else cfg.latency_transforms)
        tasks += [(t, c, tr) for c in cfg.regressors for tr in trs]
    if rows.has_fraction:
        tasks += [(SERVED_FRACTION, c, "identity") for c in cfg.regressors]
    tasks += [(CLASS_TARGET, c, "identity") for c in cfg.classifiers]
    return tasks


def _cross_validate(rows: _Rows, tasks: list[tuple[str, Candidate, str]], cfg: TrainConfig,
                    ticks: _Ticks) -> tuple[dict[str, Any], dict[tuple[str, str, str],
                                                                 list[np.ndarray]]]:
    """CV scores per target (``meta["cv"]``) and the out-of-fold predictions of every task,
    fold by fold."""
    from joblib import Parallel, delayed

    tr_ = rows.train
    xa_tr, x_tr = rows.xa[tr_], rows.x[tr_]
    jobs = [(t, c, tr, fold) for (t, c, tr) in tasks for fold in range(cfg.folds)]
    scores = []
    for score in Parallel(n_jobs=cfg.jobs, return_as="generator")(
        delayed(_fold_task)(c, t == CLASS_TARGET, cfg.seed, tr, xa_tr, x_tr, rows.ys[t][tr_],
                            *rows.splits[fold])
        for (t, c, tr, fold) in jobs
    ):
        scores.append(score)
        ticks.tick()
    cv: dict[str, Any] = {}
    oof: dict[tuple[str, str, str], list[np.ndarray]] = {}
    for t, c, tr in tasks:
        got = [(fold, s) for (t2, c2, tr2, fold), s in zip(jobs, scores, strict=True)
               if (t2, c2.name, tr2) == (t, c.name, tr)]
        oof[(t, c.name, tr)] = [s[1] for _, s in sorted(got, key=lambda g: g[0])]
        _add_candidate(cv, t, c.name, tr, [s[0] for _, s in got])
    return cv, oof


def _choose_blended(cv: dict[str, Any], oof: dict[tuple[str, str, str], list[np.ndarray]],
                    rows: _Rows, cfg: TrainConfig) -> dict[str, tuple[Candidate, str]]:
    """The chosen (candidate, transform) per target, the classifiers' blends with the chosen
    served-fraction regressor scored too (on the out-of-fold predictions of both, no refit);
    the served fraction is kept only where a blend wins."""
    chosen = _choose(cv, cfg)
    if rows.has_fraction:
        fc, ftr = chosen[SERVED_FRACTION]
        y_tr = rows.starved[rows.train]
        for c in cfg.classifiers:
            vals = [f1(y_tr[te], _blend(oof[(CLASS_TARGET, c.name, "identity")][k],
                                        oof[(SERVED_FRACTION, fc.name, ftr)][k], cfg) >= 0.5)
                    for k, (_, te) in enumerate(rows.splits)]
            _add_candidate(cv, CLASS_TARGET, c.name, "blend", vals)
        chosen = _choose(cv, cfg)
    if chosen[CLASS_TARGET][1] != "blend":
        chosen.pop(SERVED_FRACTION, None)
    return chosen


def _holdout_scores(rows: _Rows, chosen: dict[str, tuple[Candidate, str]], cfg: TrainConfig,
                    ticks: _Ticks) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Scores on the hold-out rows of models (and interpretable trees) fitted on the
    training rows: ``meta["holdout"]`` and the trees' figures."""
    test, train = rows.test, rows.train
    holdout: dict[str, Any] = {"rows": int(test.sum())}
    explain_holdout: dict[str, dict[str, float]] = {}
    if not test.any():
        return holdout, explain_holdout
    xa_tr, x_tr = rows.xa[train], rows.x[train]
    f_test = None
    if SERVED_FRACTION in chosen:
        c, _ = chosen[SERVED_FRACTION]
        f_test = _fit(c, False, cfg.seed, xa_tr, rows.ys[SERVED_FRACTION][train]).predict(
            rows.xa[test])
        ticks.tick()
    for t, (c, tr) in chosen.items():
        if t == SERVED_FRACTION:
            continue
        clf = t == CLASS_TARGET
        z_tr = (rows.ys[t][train].astype(bool) if clf
                else forward_transform(tr, rows.ys[t][train], x_tr))
        est = _fit(c, clf, cfg.seed, xa_tr, z_tr)
        ticks.tick()
        ex = _explain_estimator(clf, cfg.explain_leaves, int(train.sum()), cfg.seed)
        ex.fit(xa_tr, z_tr)
        if clf:
            pred = est.predict(rows.xa[test]).astype(bool)
            if f_test is not None:
                pred = _blend(_probability(est, rows.xa[test]), f_test, cfg) >= 0.5
            holdout[t] = classification_scores(rows.starved[test], pred)
            explain_holdout[t] = {"f1": classification_scores(
                rows.starved[test], ex.predict(rows.xa[test]))["f1"]}
        else:
            y_test = rows.ys[t][test]
            holdout[t] = regression_scores(
                y_test, inverse_transform(tr, est.predict(rows.xa[test]), rows.x[test]))
            explain_holdout[t] = {"smape": regression_scores(
                y_test, inverse_transform(tr, ex.predict(rows.xa[test]), rows.x[test]))["smape"]}
    return holdout, explain_holdout


@dataclass(frozen=True)
class _Final:
    """The models fitted on all rows: surrogate arrays, fitted estimators, metadata."""

    models: dict[str, tuple[TreeEnsemble, str]]
    explain: dict[str, tuple[TreeEnsemble, str]]
    fitted: dict[str, Any]
    fitted_explain: dict[str, Any]
    meta_models: dict[str, Any]
    meta_explain: dict[str, Any]


def _final_models(rows: _Rows, chosen: dict[str, tuple[Candidate, str]], cfg: TrainConfig,
                  explain_holdout: dict[str, dict[str, float]], ticks: _Ticks) -> _Final:
    """Every chosen model, and one interpretable tree per target, fitted on all rows."""
    out = _Final({}, {}, {}, {}, {}, {})
    n = len(rows.x)
    for t, (c, tr) in chosen.items():
        clf = t == CLASS_TARGET
        tr = "identity" if tr == "blend" else tr
        z = rows.starved if clf else forward_transform(tr, rows.ys[t], rows.x)
        est = _fit(c, clf, cfg.seed, rows.xa, z)
        ticks.tick()
        out.fitted[t] = est
        out.models[t] = (from_sklearn(est), tr)
        out.meta_models[t] = {"estimator": c.name, "family": c.family,
                              "params": dict(c.params), "sklearn_class": type(est).__name__}
        if t == SERVED_FRACTION:
            continue  # internal target: no interpretable tree
        ex = _explain_estimator(clf, cfg.explain_leaves, n, cfg.seed).fit(rows.xa, z)
        out.fitted_explain[t] = ex
        out.explain[t] = (from_sklearn(ex), tr)
        out.meta_explain[t] = {"max_leaf_nodes": cfg.explain_leaves,
                               "holdout": explain_holdout.get(t, {})}
    return out


def _training_meta(dataset: Dataset, profile: Profile, rows: _Rows, cfg: TrainConfig,
                   cv: dict[str, Any], holdout: dict[str, Any], final: _Final,
                   blended: bool) -> dict[str, Any]:
    """The surrogate file's ``meta``: format, inputs, envelope, provenance and scores."""
    import scipy
    import sklearn

    x = rows.x
    meta: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "features": list(FEATURES),
        "derived_features": list(DERIVED),
        "model_inputs": list(MODEL_INPUTS),
        "targets": [*rows.targets, CLASS_TARGET],
        "profile": profile.name,
        "profile_kind": profile.profile_kind,
        "profile_sha256": dataset.profile_sha256 or profile_hash(profile),
        "profile_sha256_at_training": profile_hash(profile),
        "default_input_tokens": profile.sharegpt_mean_input_tokens,
        "default_output_tokens": profile.sharegpt_mean_output_tokens,
        "envelope": {"min": x.min(axis=0).tolist(), "max": x.max(axis=0).tolist()},
        "dataset": {
            "rows": len(dataset.rows), "used": len(x),
            "memory_errors": int(dataset.rows["memory_error"].astype(bool).sum()),
            "starved_share": float(rows.starved.mean()),
            "duration_s": dataset.spec.get("duration_s"),
            "seed": dataset.spec.get("seed"),
            "design": dataset.spec,
        },
        "training": {"folds": cfg.folds, "holdout_fraction": cfg.holdout_fraction,
                     "seed": cfg.seed},
        "cv": cv,
        "holdout": holdout,
        "models": final.meta_models,
        "explain": final.meta_explain,
        "versions": {"loratwin": __version__, "scikit-learn": sklearn.__version__,
                     "numpy": np.__version__, "scipy": scipy.__version__,
                     "python": platform.python_version()},
    }
    if blended:
        meta["starvation_blend"] = {"weight": cfg.blend_weight, "scale": cfg.blend_scale,
                                    "threshold": STARVATION_FRACTION}
    return meta


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_surrogate` returns.

    Attributes
    ----------
    surrogate:
        The trained surrogate (scores in ``meta["cv"]`` and ``meta["holdout"]``).
    estimators, explainers:
        The fitted scikit-learn models per target (final fit on all rows), from which the
        surrogate's arrays were taken: its predictions equal theirs exactly.
    inputs:
        (n, 16) model inputs of the rows they were fitted on.
    """

    surrogate: Surrogate
    estimators: dict[str, Any]
    explainers: dict[str, Any]
    inputs: np.ndarray


def train_surrogate(
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    model: str | None = None,
    on_progress: Callable[[str], None] | None = None,
    on_fit: Callable[[int, int], None] | None = None,
    profile: Profile | None = None,
) -> TrainResult:
    """Train a surrogate on a data set (see the module docstring for the procedure).

    Parameters
    ----------
    dataset:
        Rows from :func:`~loratwin.surrogate.dataset.load_dataset`.
    config:
        Training settings (defaults: :class:`TrainConfig`).
    model:
        Profile name; must match the data set's profile when both are known.
    on_progress:
        Called with a short message before each stage.
    on_fit:
        Called with (fits done, fits in all) after each model fit: the cross-validation
        folds, then the hold-out and final fits (the total is exact once CV has chosen).
    profile:
        The profile itself, named as the data set's (default: ``load_profile(name)``); for
        profiles that exist only in memory, such as a prior built on the fly.

    Returns
    -------
    TrainResult
        The surrogate (CV and hold-out scores in ``meta["cv"]`` / ``meta["holdout"]``) and
        the scikit-learn models it was converted from.

    Raises
    ------
    ConfigError
        ``model`` differs from the data set's profile; bad candidate parameters.
    DataError
        Too few usable rows (fewer than ``3 x folds``), or no profile known.
    """
    cfg = config or TrainConfig()
    say = on_progress or (lambda _m: None)
    profile = _training_profile(dataset, model, profile)
    capacity = CapacityTable.build(profile)
    rows = _training_rows(dataset.usable(), capacity, tuple(dataset.regression_targets), cfg)
    tasks = _cv_tasks(rows, cfg)
    say(f"cross-validating {len(tasks)} configurations x {cfg.folds} folds on "
        f"{int(rows.train.sum())} rows")
    n_cv = len(tasks) * cfg.folds
    n_targets = len(REGRESSION_TARGETS) + 1 + rows.has_fraction
    ticks = _Ticks(on_fit or (lambda _done, _total: None),
                   n_cv + (2 if cfg.holdout_fraction > 0 else 1) * n_targets)
    cv, oof = _cross_validate(rows, tasks, cfg, ticks)
    chosen = _choose_blended(cv, oof, rows, cfg)
    ticks.total = n_cv + (len(chosen) if rows.test.any() else 0) + len(chosen)
    if rows.test.any():
        say(f"measuring on {int(rows.test.sum())} hold-out rows")
    holdout, explain_holdout = _holdout_scores(rows, chosen, cfg, ticks)
    say(f"fitting the final models on {len(rows.x)} rows")
    final = _final_models(rows, chosen, cfg, explain_holdout, ticks)
    meta = _training_meta(dataset, profile, rows, cfg, cv, holdout, final,
                          blended=chosen[CLASS_TARGET][1] == "blend")
    return TrainResult(Surrogate.from_parts(meta, final.models, final.explain, capacity),
                       final.fitted, final.fitted_explain, rows.xa)


def evaluate_surrogate(surrogate: Surrogate, dataset: Dataset) -> dict[str, Any]:
    """Scores of a surrogate against the twin runs of a (held-out) data set.

    Returns
    -------
    dict
        ``rows``, ``out_of_envelope`` (count), per regression target (that both the
        surrogate and the data set have) SMAPE (%), R^2 and median APE (%), and for
        starvation F1, accuracy, precision and recall.

    Raises
    ------
    DataError
        No usable rows.
    """
    rows = dataset.usable()
    if rows.empty:
        raise DataError("the data set has no usable rows")
    x = rows[list(FEATURES)].to_numpy(float)
    pred = surrogate.predict(x)
    out: dict[str, Any] = {"rows": len(rows), "out_of_envelope": int(pred.out_of_envelope.sum())}
    for t in REGRESSION_TARGETS:
        if surrogate.has_target(t) and t in dataset.regression_targets:
            out[t] = regression_scores(rows[t].to_numpy(float), getattr(pred, t))
    out[CLASS_TARGET] = classification_scores(rows[CLASS_TARGET].to_numpy(bool),
                                              pred.starvation)
    return out
