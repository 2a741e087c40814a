"""Tree arrays and their evaluators reproduce scikit-learn exactly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from loratwin.errors import DataError
from loratwin.surrogate.trees import TreeEnsemble, compile_ensemble, from_sklearn

RNG = np.random.default_rng(0)
X = RNG.lognormal(size=(400, 6))
X[:, 2] = np.round(X[:, 2] * 4)  # ties on an integer feature
Y = np.log(X[:, 0] * X[:, 1] + X[:, 2]) + RNG.normal(0, 0.1, 400)
XT = np.vstack([X[:50], RNG.lognormal(size=(300, 6)), X[:20] * (1 + 1e-9)])

MODELS = [
    (RandomForestRegressor(12, random_state=0), False),  # deep trees: walk evaluator
    (RandomForestRegressor(12, max_leaf_nodes=64, random_state=0), False),
    (GradientBoostingRegressor(n_estimators=40, max_depth=5, random_state=0), False),
    (DecisionTreeRegressor(max_leaf_nodes=40, random_state=0), False),
    (RandomForestClassifier(12, random_state=0), True),
    (GradientBoostingClassifier(n_estimators=40, max_depth=3, random_state=0), True),
    (DecisionTreeClassifier(max_leaf_nodes=40, random_state=0), True),
]


@pytest.mark.parametrize(("model", "clf"), MODELS,
                         ids=[f"{type(m).__name__}-{i}" for i, (m, _) in enumerate(MODELS)])
def test_batch_and_row_match_sklearn_exactly(model, clf: bool) -> None:
    median = float(np.median(Y))
    model.fit(X, (median < Y) if clf else Y)
    ce = compile_ensemble(from_sklearn(model), X.shape[1])
    ref = model.predict_proba(XT)[:, 1] if clf else model.predict(XT)
    got = ce.predict(XT)
    assert np.array_equal(got, ref)
    assert [ce.predict_row(list(r)) for r in XT] == ref.tolist()
    if clf:
        kind = ce.ensemble.kind
        cls = (ce.raw(XT) >= 0) if kind == "sum" else got > 0.5
        assert np.array_equal(cls, model.predict(XT).astype(bool))
    if isinstance(model, GradientBoostingClassifier):
        assert np.array_equal(ce.raw(XT), model.decision_function(XT))


def test_both_batch_methods_agree() -> None:
    model = RandomForestRegressor(6, max_leaf_nodes=50, random_state=0).fit(X, Y)
    ce = compile_ensemble(from_sklearn(model), X.shape[1])
    assert ce.method == "bitmask"
    walk = compile_ensemble(from_sklearn(RandomForestRegressor(6, random_state=0).fit(X, Y)),
                            X.shape[1])
    assert walk.method == "walk"
    # force the walk on the small trees: same results
    from dataclasses import replace

    assert np.array_equal(replace(ce, method="walk").predict(XT), ce.predict(XT))
    # and the single-row walk over node lists equals the generated function
    assert ce.row_fn is not None
    rows = [list(r) for r in XT[:40]]
    assert [replace(ce, row_fn=None).raw_row(r) for r in rows] == [ce.raw_row(r) for r in rows]


def test_single_class_classifier() -> None:
    m = DecisionTreeClassifier().fit(X, np.ones(len(X), bool))
    assert compile_ensemble(from_sklearn(m), 6).predict(XT[:3]).tolist() == [1.0, 1.0, 1.0]


def test_array_round_trip_and_validation() -> None:
    ens = from_sklearn(GradientBoostingRegressor(n_estimators=5, random_state=0).fit(X, Y))
    back = TreeEnsemble.from_arrays(ens.header(), ens.arrays("t__"), "t__")
    assert np.array_equal(compile_ensemble(back, 6).predict(XT),
                          compile_ensemble(ens, 6).predict(XT))
    bad = ens.arrays("t__")
    bad["t__left"] = bad["t__left"].copy()
    bad["t__left"][0] = 10_000  # child out of range
    with pytest.raises(DataError, match="inconsistent"):
        TreeEnsemble.from_arrays(ens.header(), bad, "t__")
    cyc = ens.arrays("t__")
    cyc["t__right"] = cyc["t__right"].copy()
    cyc["t__right"][1] = 0  # a cycle back to the root: refused, never walked
    with pytest.raises(DataError, match="inconsistent"):
        TreeEnsemble.from_arrays(ens.header(), cyc, "t__")
    with pytest.raises(DataError, match="incomplete"):
        TreeEnsemble.from_arrays(ens.header(), {}, "t__")
    with pytest.raises(DataError, match="unknown feature"):
        compile_ensemble(ens, 2)


def test_a_group_scores_its_members_exactly_as_each_alone() -> None:
    """Shared threshold search (EnsembleGroup): bit-identical to every member on its own,
    for bitmask and walk members, rows on thresholds, below and above all of them."""
    from loratwin.surrogate.trees import compile_group

    median = float(np.median(Y))
    members = {
        "rf": compile_ensemble(from_sklearn(
            RandomForestRegressor(8, max_leaf_nodes=60, random_state=1).fit(X, Y)), 6),
        "gb": compile_ensemble(from_sklearn(
            GradientBoostingClassifier(n_estimators=30, max_depth=4, random_state=0)
            .fit(X, median < Y)), 6),
        "deep": compile_ensemble(from_sklearn(RandomForestRegressor(4, random_state=2)
                                              .fit(X, Y)), 6),
        "stump": compile_ensemble(from_sklearn(DecisionTreeRegressor(max_depth=1)
                                               .fit(X[:, :1] * 0 + 1, Y)), 6),
    }
    assert members["deep"].method == "walk" and members["rf"].method == "bitmask"
    group = compile_group(members)
    on_thr = XT.copy()
    ens = members["rf"].ensemble
    split = np.flatnonzero(ens.feature >= 0)[:40]
    on_thr[:40, :] = X[:40]
    on_thr[np.arange(40), ens.feature[split]] = ens.threshold[split]  # exactly a threshold
    extremes = np.vstack([XT.min(axis=0) - 5.0, XT.max(axis=0) * 10.0])
    rows = np.vstack([on_thr, extremes])
    got = group.predict(rows, list(members))
    for name, c in members.items():
        assert np.array_equal(got[name], c.predict(rows)), name
    assert np.array_equal(group.predict(rows, ["gb"])["gb"], members["gb"].predict(rows))
    assert group.predict(rows[:0], ["rf"])["rf"].shape == (0,)
    with pytest.raises(ValueError):
        group.predict(rows[:, :5], ["rf"])
