"""AnoPLe end to end on the synthetic set with the tiny random backbone (methods/anople.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.methods.anople.model import AnoPLe
from fsadbench.core.types import CategoryInfo, ImageRef

SYN = {"size": 120, "n_train": 4, "n_test_good": 2, "n_test_bad": 3}
CATS = ("stripes", "disc")


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    from fsadbench.datasets.synthetic import SyntheticDataset

    ds = SyntheticDataset(root=tmp_path_factory.mktemp("syn"), **SYN)
    return {c: ds.load(c) for c in CATS}


def _refs(samples):
    from fsadbench.protocol.sampler import file_digest

    return [ImageRef(s.image_path, file_digest(s.image_path), s.rel_path) for s in samples]


def test_scope_options_and_errors(method_ctx):
    assert AnoPLe.fit_scope_for({"multi_class": True}) == "dataset"
    assert AnoPLe.fit_scope_for({"multi_class": False}) == "category"
    assert AnoPLe(method_ctx, multi_class=False).fit_scope == "category"
    m = AnoPLe(method_ctx)
    assert m.fit_scope == "dataset" and not m.uses_feature_cache
    assert "not used" in m.describe()["feature_cache"]
    for bad in ({"texture": "dtd"}, {"depth": 13}, {"epochs": 0}, {"class_text": "mine"}, {"mem_layers": (7, 40)}):
        with pytest.raises(ConfigError):
            AnoPLe(method_ctx, **bad)
    with pytest.raises(ConfigError, match="unknown option"):
        AnoPLe(method_ctx, lr=1.0)
    info = CategoryInfo("synthetic", "disc", "disc")
    with pytest.raises(NotApplicable):
        m.fit([], info)
    with pytest.raises(MethodError):
        m.predict([])


def test_multi_class_training_lowers_loss_and_predicts(method_ctx, synthetic):
    m = AnoPLe(method_ctx, epochs=4, crop_grid=1, depth=4)
    m.fit_dataset({c: _refs(synthetic[c].train[:2]) for c in CATS}, {c: synthetic[c].info for c in CATS})
    assert len(m.history) == 4
    assert m.history[-1]["total"] < m.history[0]["total"]
    assert set(m.memories) == set(CATS)
    with pytest.raises(MethodError, match="not among the trained"):
        m.set_category(CategoryInfo("synthetic", "pill", "pill"))
    for c in CATS:
        m.set_category(synthetic[c].info)
        test = synthetic[c].test
        pred = m.predict(_refs(test))
        assert set(pred) == {"w/o VG", "w/ VG"}
        dec, fused = pred["w/o VG"], pred["w/ VG"]
        assert dec.maps.shape == (len(test), 30, 30)  # decoder grid: 2 x the 15 x 15 patch grid
        assert np.isfinite(dec.maps).all() and np.isfinite(fused.maps).all()
        assert (dec.maps >= 0).all() and (dec.maps <= 1).all()
        assert (fused.maps <= dec.maps + 1e-6).all()  # a harmonic mean is at most either input
        assert (fused.scores <= fused.maps.reshape(len(test), -1).max(axis=1) + 1e-6).all()
    d = m.describe()
    assert d["context_lengths"] == {"text": 3, "visual": 3} and d["memory_layers"] == [7, 8, 9, 10]


def test_one_class_multi_view_is_deterministic(method_ctx, synthetic):
    info = synthetic["disc"].info
    shots = _refs(synthetic["disc"].train[:1])
    test = _refs(synthetic["disc"].test[:3])
    out = []
    for _ in range(2):
        m = AnoPLe(method_ctx, multi_class=False, epochs=1, texture="normal", n_ctx_text=2, n_ctx_visual=1)
        m.fit(shots, info)
        out.append((m.history, m.predict(test)))
    assert m.n_views == 5 and m.learner.signal.shape[0] == 5
    assert out[0][0] == out[1][0]
    for v in ("w/o VG", "w/ VG"):
        assert np.array_equal(out[0][1][v].maps, out[1][1][v].maps)
        assert np.array_equal(out[0][1][v].scores, out[1][1][v].scores)
    other = AnoPLe(method_ctx.__class__(**{**method_ctx.__dict__, "seed": 1}), multi_class=False, epochs=1,
                   texture="normal", n_ctx_text=2, n_ctx_visual=1)
    other.fit(shots, info)
    assert not np.array_equal(other.predict(test)["w/o VG"].maps, out[0][1]["w/o VG"].maps)


def test_both_variants_through_the_runner(tmp_path):
    from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
    from fsadbench.run import sweep

    opts = {"epochs": 1, "depth": 3}
    cfg = RunConfig(methods=[MethodSpec("anople", dict(opts)), MethodSpec("anople-oc", dict(opts))],
                    datasets=[DatasetSpec("synthetic", categories=list(CATS), options=dict(SYN))],
                    shots=[1], seeds=[0], model="fsad-tiny-vit", pretrained="none",
                    protocol=Protocol(eval_size=60), results_dir=str(tmp_path / "res"),
                    cache_dir=str(tmp_path / "cache"), device="cpu", batch_size=8)
    s = sweep(cfg)
    assert (s.computed, s.failed) == (4, 0), s.failures
    recs = [json.loads(p.read_text()) for p in (tmp_path / "res" / "records").rglob("*.json")]
    scopes = {r["method"]["name"]: r["method"]["fit_scope"] for r in recs}
    assert scopes == {"anople": "dataset", "anople-oc": "category"}
    for r in recs:
        assert r["status"] == "ok" and set(r["metrics"]) == {"w/o VG", "w/ VG"}
        assert r["method"]["uses_feature_cache"] is False
        assert 0.0 <= r["metrics"]["w/ VG"]["pixel_auroc"] <= 1.0
        assert r["encoder"]["encoded"] == 0  # pixels only: nothing went through the feature cache
