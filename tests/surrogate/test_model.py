"""Training, the safe file format, exact predictions, envelope flags, explanations."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from loratwin.errors import DataError
from loratwin.surrogate.dataset import Dataset
from loratwin.surrogate.derived import augment
from loratwin.surrogate.features import FEATURES
from loratwin.surrogate.model import Surrogate, bundled_surrogates
from loratwin.surrogate.train import evaluate_surrogate, smape, train_surrogate

from .conftest import FAST


def _x(ds: Dataset) -> np.ndarray:
    return ds.rows[list(FEATURES)].to_numpy(float)


def test_training_reports_cv_and_holdout(trained) -> None:
    meta = trained.surrogate.meta
    for t in ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms", "starvation"):
        block = meta["cv"][t]
        assert block["chosen"]["estimator"] in ("gb", "rf")
        assert len(block["candidates"]) == (6 if t == "total_throughput_tok_s"
                                            else 4 if t != "starvation" else 2)
        assert t in meta["holdout"]
    assert meta["holdout"]["rows"] == 60
    assert meta["holdout"]["total_throughput_tok_s"]["smape"] < 10
    assert meta["holdout"]["starvation"]["f1"] > 0.8
    assert meta["dataset"]["used"] == 240
    assert meta["profile"] == "llama-3.1-8b-instruct" and len(meta["profile_sha256"]) == 64
    assert {"scikit-learn", "numpy", "loratwin"} <= set(meta["versions"])


def test_predictions_equal_sklearn_exactly(trained, synthetic_dataset, tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    trained.surrogate.save(path)
    s = Surrogate.load(path)
    x = _x(synthetic_dataset)
    xa = augment(x, trained.surrogate.capacity)
    assert np.array_equal(xa, trained.inputs)
    p = s.predict(x)
    for t in ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms"):
        m = s.models[t]
        raw = trained.estimators[t].predict(xa)
        assert np.array_equal(m.compiled.predict(xa), raw)
        from loratwin.surrogate.model import inverse_transform

        assert np.array_equal(getattr(p, t), inverse_transform(m.transform, raw, x))
    clf = trained.estimators["starvation"]
    assert np.array_equal(p.starvation_probability, clf.predict_proba(xa)[:, 1])
    assert np.array_equal(p.starvation, clf.predict(xa).astype(bool))
    for t, ex in trained.explainers.items():
        ref = ex.predict_proba(xa)[:, 1] if t == "starvation" else ex.predict(xa)
        assert np.array_equal(s.explain[t].compiled.predict(xa), ref)
    # single rows give the same numbers
    for i in range(0, len(x), 17):
        one = s.predict_one(x[i].tolist())
        assert one.total_throughput_tok_s == p.total_throughput_tok_s[i]
        assert one.mean_itl_ms == p.mean_itl_ms[i] and one.mean_ttft_ms == p.mean_ttft_ms[i]
        assert one.starvation == p.starvation[i]
        assert one.starvation_probability == p.starvation_probability[i]
        assert one.out_of_envelope == p.out_of_envelope[i]


def test_file_is_safe_npz_with_json_metadata(trained, tmp_path: Path) -> None:
    path = tmp_path / "s.npz"
    trained.surrogate.save(path)
    with np.load(path, allow_pickle=False) as z:  # no object arrays anywhere
        assert all(z[k].dtype != object for k in z.files)
        meta = json.loads(z["meta_json"].tobytes())
        assert "starvation__threshold" in z.files and "explain_mean_itl_ms__value" in z.files
    assert meta["features"] == list(FEATURES)
    assert len(meta["envelope"]["min"]) == 10
    assert meta["models"]["mean_ttft_ms"]["transform"] in ("identity", "log")
    assert path.stat().st_size < 1e6
    # garbage and foreign files are one-line data errors
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a loratwin surrogate"):
        Surrogate.load(tmp_path / "bad.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(DataError, match="not a loratwin surrogate"):
        Surrogate.load(tmp_path / "other.npz")
    with pytest.raises(DataError, match="not found"):
        Surrogate.load(tmp_path / "missing.npz")
    with pytest.raises(DataError, match="no surrogate for 'nope'"):
        Surrogate.load("nope")
    with zipfile.ZipFile(path) as zf:
        assert not [n for n in zf.namelist() if n.endswith(".pkl")]


def test_envelope_flags(trained, synthetic_dataset) -> None:
    s = trained.surrogate
    x = _x(synthetic_dataset)[:4].copy()
    assert not s.predict(x).out_of_envelope.any()
    x[1, FEATURES.index("served_adapters")] = 5000
    x[2, FEATURES.index("arrival_cv")] = 0.5
    p = s.predict(x)
    assert p.out_of_envelope.tolist() == [False, True, True, False]
    assert s.envelope_violations(x)[1] == ["served_adapters"]
    assert s.predict_one(x[1].tolist()).out_of_envelope
    with pytest.raises(DataError):
        s.predict(np.zeros((2, 3)))
    with pytest.raises(DataError, match="finite"):
        s.predict_one([float("nan")] * 10)
    with pytest.raises(DataError, match=">= 1"):
        s.predict(np.zeros((1, 10)))


def test_predict_frame_defaults(trained, synthetic_dataset) -> None:
    s = trained.surrogate
    df = synthetic_dataset.rows[list(FEATURES[:7])]
    df = df[df["max_rank"] >= 32].head(5)  # the synthetic rows have mean_rank 16, std_rank 4
    p = s.predict_frame(df)
    x = df.to_numpy(float)
    full = np.column_stack([x, np.full(5, s.default_input_tokens),
                            np.full(5, s.default_output_tokens), np.ones(5)])
    assert np.array_equal(p.total_throughput_tok_s, s.predict(full).total_throughput_tok_s)
    assert len(p.rows()) == 5 and set(p.rows()[0]) == set(p.to_frame().columns)


def test_explain_rules(trained) -> None:
    text = trained.surrogate.explain_text()
    for t in ("total_throughput_tok_s", "mean_itl_ms", "mean_ttft_ms", "starvation"):
        assert f"{t} (" in text
    for m in trained.surrogate.explain.values():
        assert int((m.ensemble.left < 0).sum()) <= 40
    assert text.count("IF ") == sum(int((m.ensemble.left < 0).sum())
                                    for m in trained.surrogate.explain.values())
    assert "starved (p = " in text


def test_evaluate_and_errors(trained, synthetic_dataset) -> None:
    sc = evaluate_surrogate(trained.surrogate, synthetic_dataset)
    assert sc["rows"] == 240 and sc["starvation"]["f1"] > 0.8
    assert smape(np.array([1.0, 0.0]), np.array([3.0, 0.0])) == pytest.approx(25.0)
    tiny = Dataset(synthetic_dataset.rows.head(4), "llama-3.1-8b-instruct", "", {})
    with pytest.raises(DataError, match="usable rows"):
        train_surrogate(tiny, FAST)
    from loratwin.errors import ConfigError

    with pytest.raises(ConfigError, match="made with"):
        train_surrogate(synthetic_dataset, FAST, model="qwen-2.5-7b-instruct")


@pytest.mark.parametrize("name", bundled_surrogates())
def test_bundled_surrogates_load_and_predict(name: str) -> None:
    s = Surrogate.load(name)
    assert s.profile == name
    x = (s.envelope_min + s.envelope_max) / 2
    p = s.predict(x[None, :])
    assert p.total_throughput_tok_s[0] > 0 and 0 <= p.starvation_probability[0] <= 1


def _with_blend(s: Surrogate, blend: dict) -> Surrogate:
    """The surrogate with a served-fraction model (here: its ITL ensemble) and a blend."""
    models = {k: (m.ensemble, m.transform) for k, m in s.models.items()}
    models["served_fraction"] = (s.models["mean_itl_ms"].ensemble, "identity")
    explain = {k: (m.ensemble, m.transform) for k, m in s.explain.items()}
    return Surrogate.from_parts({**s.meta, "starvation_blend": blend}, models, explain,
                                s.capacity)


def test_blended_starvation_probability(trained, synthetic_dataset, tmp_path: Path) -> None:
    base = trained.surrogate
    blend = {"weight": 0.3, "scale": 5.0, "threshold": 40.0}
    s = _with_blend(base, blend)
    path = tmp_path / "b.npz"
    s.save(path)
    s = Surrogate.load(path)
    x = _x(synthetic_dataset)
    xa = augment(x, s.capacity)
    p_clf = s.models["starvation"].compiled.predict(xa)
    f = s.models["served_fraction"].compiled.predict(xa)
    want = 0.3 * p_clf + 0.7 / (1.0 + np.exp((f - 40.0) / 5.0))
    p = s.predict(x)
    assert np.allclose(p.starvation_probability, want, rtol=0, atol=1e-12)
    assert np.array_equal(p.starvation, p.starvation_probability >= 0.5)
    # the blend changes some verdicts of the classifier alone on these rows
    assert (p.starvation != base.predict(x).starvation).any()
    for i in range(0, len(x), 13):
        one = s.predict_one(x[i].tolist())
        assert one.starvation == p.starvation[i]
        assert one.starvation_probability == pytest.approx(p.starvation_probability[i],
                                                           abs=1e-12)


@pytest.mark.parametrize("blend", [{"weight": 1.5, "scale": 0.02, "threshold": 0.9},
                                   {"weight": 0.5, "scale": 0.0, "threshold": 0.9},
                                   {"weight": 0.5}])
def test_malformed_blend_is_refused(trained, blend: dict) -> None:
    with pytest.raises(DataError, match="starvation_blend"):
        _with_blend(trained.surrogate, blend)
    s = trained.surrogate
    models = {k: (m.ensemble, m.transform) for k, m in s.models.items()}
    with pytest.raises(DataError, match="served_fraction"):
        Surrogate.from_parts({**s.meta, "starvation_blend": {"weight": 0.5, "scale": 0.02,
                                                             "threshold": 0.9}},
                             models, {}, s.capacity)


def test_training_with_offered_load_scores_the_blend(synthetic_dataset) -> None:
    rows = synthetic_dataset.rows.copy()
    rng = np.random.default_rng(3)
    rows["offered_throughput_tok_s"] = (rows["sum_rate_req_s"] * (
        rows["mean_input_tokens"] + rows["mean_output_tokens"])) * rng.normal(1, 0.01, len(rows))
    rows["starvation"] = rows["total_throughput_tok_s"] < 0.9 * rows["offered_throughput_tok_s"]
    ds = Dataset(rows=rows, profile=synthetic_dataset.profile, profile_sha256="", spec={})
    res = train_surrogate(ds, FAST)
    meta = res.surrogate.meta
    assert len(meta["cv"]["served_fraction"]["candidates"]) == 2
    modes = [c["transform"] for c in meta["cv"]["starvation"]["candidates"]]
    assert modes.count("blend") == 2 and modes.count("identity") == 2
    blended = meta["cv"]["starvation"]["chosen"]["transform"] == "blend"
    assert blended == ("starvation_blend" in meta) == ("served_fraction" in res.surrogate.models)
    if blended:
        f = res.surrogate.models["served_fraction"].compiled.predict(res.inputs)
        assert np.array_equal(f, res.estimators["served_fraction"].predict(res.inputs))
    assert meta["holdout"]["starvation"]["f1"] > 0.8

