"""Resume recomputes whenever a number could differ, keeps the old record aside, and one folder holds one run.

Synthetic data, tiny random backbone, the memory baseline (seconds per run).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from fsadbench.core.errors import ConfigError
from fsadbench.results.records import RecordStore
from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run import sweep
from fsadbench.run.resources import Resources

SYN = {"size": 120, "n_train": 6, "n_test_good": 3, "n_test_bad": 4}
CATS = ["stripes", "disc"]


def _cfg(tmp_path, **kw) -> RunConfig:
    base = dict(methods=[MethodSpec("memory")],
                datasets=[DatasetSpec("synthetic", categories=CATS, options=dict(SYN))],
                shots=[1], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=64),
                results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu", batch_size=8)
    base.update(kw)
    return RunConfig(**base)


def _run(tmp_path, log=None, **kw):
    return sweep(_cfg(tmp_path, **kw), log=log)


@pytest.fixture
def memory_cls():
    from fsadbench.core.registry import METHODS

    return METHODS.get("memory")[0]


def test_records_store_resolved_options_and_the_key_parts(tmp_path):
    _run(tmp_path)
    r = RecordStore(tmp_path / "res").records()[0]
    assert r.method["options"] == {"memory_layers": [3, 8]}  # the default, not {}
    assert r.method["version"] == 1 and r.identity["method"]["options"] == {"memory_layers": [3, 8]}
    assert set(r.identity) == {"method", "dataset", "backbone", "protocol", "metric_version"}
    assert r.identity["backbone"]["weights"] == "random-init:0"
    assert r.dataset["fingerprint"] == r.identity["dataset"]["data"][r.key["category"]]
    assert r.plan == {"categories": CATS, "shots": [1], "seeds": [0]}
    assert _run(tmp_path).skipped == 2  # nothing changed: nothing recomputed


def test_a_changed_default_recomputes_and_keeps_the_old_record(tmp_path, monkeypatch, memory_cls):
    _run(tmp_path)

    @dataclass
    class Options:
        memory_layers: tuple[int, ...] = (2, 8)

    monkeypatch.setattr(memory_cls, "Options", Options)
    said = []
    s = _run(tmp_path, log=said.append)
    assert s.computed == 2 and s.skipped == 0
    store = RecordStore(tmp_path / "res")
    assert {tuple(r.method["options"]["memory_layers"]) for r in store.records()} == {(2, 8)}
    assert len(store.superseded()) == 2 and {tuple(r.method["options"]["memory_layers"]) for r in store.superseded()} \
        == {(3, 8)}
    assert any("method.options.memory_layers: [3, 8] -> [2, 8]" in m for m in said)


def test_a_changed_method_version_or_feature_spec_version_recomputes(tmp_path, monkeypatch, memory_cls):
    from fsadbench.backbone import features

    _run(tmp_path)
    monkeypatch.setattr(memory_cls, "version", 2)
    assert _run(tmp_path).computed == 2
    monkeypatch.setattr(memory_cls, "feature_specs", ("tokens", "vv"))  # declares one more encoder path
    assert _run(tmp_path).computed == 2
    assert _run(tmp_path).skipped == 2
    monkeypatch.setitem(features.SPEC_VERSIONS, "tokens", features.SPEC_VERSIONS["tokens"] + 1)
    said = []
    assert _run(tmp_path, log=said.append).computed == 2
    assert any("method.feature_specs.tokens" in m for m in said)


def test_a_changed_mask_recomputes_that_category_only(tmp_path):
    cfg = _cfg(tmp_path)
    sweep(cfg)
    split = Resources(cfg).split(cfg.datasets[0], "disc")
    mask_path = next(s.mask_path for s in split.test if s.mask_path is not None)
    m = np.array(Image.open(mask_path))
    m[:4, :4] = 255 - m[:4, :4]
    Image.fromarray(m).save(mask_path)
    said = []
    s = _run(tmp_path, log=said.append)
    assert s.computed == 1 and s.skipped == 1
    assert any("dataset.data.disc" in m for m in said)


def test_a_second_backbone_or_metric_version_in_one_folder_is_refused(tmp_path, monkeypatch):
    from fsadbench.run import plan as plan_mod

    _run(tmp_path)
    with pytest.raises(ConfigError, match=r"backbone.model: folder has 'fsad-tiny-vit', this run 'ViT-B-32'.*"
                                          r"another --results-dir, or --force"):
        _run(tmp_path, model="ViT-B-32")
    monkeypatch.setattr(plan_mod, "METRIC_VERSION", plan_mod.METRIC_VERSION + "-changed")
    with pytest.raises(ConfigError, match="metric_version: folder has"):
        _run(tmp_path)
