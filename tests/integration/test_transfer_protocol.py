"""The zero-shot transfer protocol end to end on the tiny model: pairing, what the method is handed,
one fit per (method, auxiliary set, seed), records, table labels, resume and recompute."""

from __future__ import annotations

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.reports.tables import method_label
from fsadbench.results.records import RecordStore
from fsadbench.protocol.sampler import image_ref
from fsadbench.run import sweep
from fsadbench.run.config import PIPELINE_CHECK, DatasetSpec, MethodSpec, Protocol, RunConfig, build_config
from fsadbench.run.config_cli import config_from_cli
from fsadbench.run.plan import Plan
from fsadbench.run.resources import DataSource
from fsadbench.run.transfer import PIPELINE_AUXILIARY, auxiliary_for, auxiliary_label, auxiliary_set

SYN = {"size": 48, "n_train": 2, "n_test_good": 2, "n_test_bad": 2}
FAST = {"epochs": 1}


def _cfg(tmp_path, **kw) -> RunConfig:
    base = dict(methods=[MethodSpec("anomalyclip", dict(FAST))],
                datasets=[DatasetSpec("synthetic", categories=["stripes"], options=dict(SYN))],
                shots=[0], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=32),
                results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu", batch_size=8,
                preset=PIPELINE_CHECK)
    base.update(kw)
    return RunConfig(**base)


# -- pairing ------------------------------------------------------------------------------------------
def test_pairing_rules(tmp_path):
    target = DatasetSpec("mvtec")
    visa = DatasetSpec("visa", root="/data/visa", options={"a": 1})
    cfg = _cfg(tmp_path, datasets=[target, visa], train_on={"mvtec": "visa", "visa": "mvtec"}, preset=None)
    assert auxiliary_for(cfg, target) is visa  # the sweep's own entry (root, options) is reused
    assert auxiliary_for(cfg, visa) is target
    cfg.train_on = {"*": "mpdd"}
    assert auxiliary_for(cfg, target) == DatasetSpec("mpdd")
    cfg.train_on = {"*": "mvtec", "visa": "mpdd"}
    assert auxiliary_for(cfg, visa).name == "mpdd"  # a target's own pair wins over "*"
    with pytest.raises(ConfigError, match="the dataset it is evaluated on"):
        auxiliary_for(cfg, target)
    cfg.train_on_target = True
    assert auxiliary_for(cfg, target) is target
    assert auxiliary_label(target, target) == "trained on mvtec (its own test split)"
    assert auxiliary_label(visa, target) == "trained on visa"
    cfg.train_on = {}
    with pytest.raises(ConfigError, match="--train-on NAME"):
        auxiliary_for(cfg, target, "anomalyclip")


def test_pipeline_check_gets_the_second_synthetic_set(tmp_path):
    target = DatasetSpec("synthetic", categories=["stripes"], options={**SYN, "seed": 3})
    aux = auxiliary_for(_cfg(tmp_path), target)
    assert aux == DatasetSpec(PIPELINE_AUXILIARY, categories=["stripes"], options=SYN)  # the registered seed 1
    data = DataSource(_cfg(tmp_path))
    assert data.dataset(aux).params["seed"] == 1 and data.dataset(target).params["seed"] == 3


def test_config_and_cli_name_the_pairing(tmp_path):
    assert build_config(overrides={"train_on": "visa"}).train_on == {"*": "visa"}
    assert build_config(overrides={"train_on": {"mvtec": "visa"}}).train_on == {"mvtec": "visa"}
    assert build_config(overrides={"train_on_target": True}).train_on_target is True
    for bad in (3, "", {"mvtec": 2}):
        with pytest.raises(ConfigError, match="train_on"):
            build_config(overrides={"train_on": bad})
    cfg = config_from_cli({"methods": "anomalyclip", "shots": "0", "seeds": "0"})
    assert cfg.preset == PIPELINE_CHECK and cfg.train_on == {}
    assert config_from_cli({"methods": "anomalyclip", "train_on": "synthetic-aux"}).train_on == {"*": "synthetic-aux"}


def test_the_method_gets_refs_labels_and_masks(tmp_path):
    cfg = _cfg(tmp_path)
    data = DataSource(cfg)
    aux = auxiliary_for(cfg, cfg.datasets[0])
    s = auxiliary_set(data, aux)
    split = data.split(aux, "stripes")
    assert s.dataset == PIPELINE_AUXILIARY and s.categories == ("stripes",)
    assert list(s.labels) == [x.label for x in split.test] and sum(s.labels) == 2
    assert [m is None for m in s.masks] == [x.mask_path is None for x in split.test]
    assert all(m.path == x.mask_path and len(m.digest) == 40 for m, x in zip(s.masks, split.test) if m)
    assert [r.digest for r in s.images] == [r.digest for r in data.test_refs(aux, "stripes")]


# -- the sweep ------------------------------------------------------------------------------------------
def test_sweep_trains_once_records_the_auxiliary_and_resumes(tmp_path, monkeypatch):
    from fsadbench.methods.anomalyclip.model import AnomalyCLIP

    fits = []
    real = AnomalyCLIP.fit_auxiliary
    monkeypatch.setattr(AnomalyCLIP, "fit_auxiliary", lambda self, aux: (fits.append(aux.dataset), real(self, aux)))
    cfg = _cfg(tmp_path, datasets=[DatasetSpec("synthetic", categories=["stripes", "disc"], options=dict(SYN))])
    plan = Plan.build(cfg, DataSource(cfg), RecordStore(cfg.results_dir))
    assert [(j.scope, j.categories, j.auxiliary.name) for j in plan.jobs] == \
        [("auxiliary", ["stripes", "disc"], PIPELINE_AUXILIARY)]
    s = sweep(cfg)
    assert (s.computed, s.failed) == (2, 0) and fits == [PIPELINE_AUXILIARY]
    recs = list(RecordStore(cfg.results_dir))
    for r in recs:
        assert r.method["auxiliary"]["name"] == PIPELINE_AUXILIARY and not r.method["auxiliary"]["same_as_target"]
        assert r.identity["auxiliary"]["name"] == PIPELINE_AUXILIARY and r.identity["auxiliary"]["data"]
        assert r.method["describe"]["trained_on"] == PIPELINE_AUXILIARY and r.method["fit_scope"] == "auxiliary"
    assert method_label(recs, recs[0].key["method"]) == "anomalyclip[epochs=1] (trained on synthetic-aux)"
    again = sweep(cfg)
    assert (again.computed, again.skipped) == (0, 2) and len(fits) == 1
    # another auxiliary set (its categories) changes the resume key: the cells are recomputed
    other = _cfg(tmp_path, datasets=cfg.datasets + [DatasetSpec(PIPELINE_AUXILIARY, categories=["disc"],
                                                                options=dict(SYN))],
                 train_on={"synthetic": PIPELINE_AUXILIARY, PIPELINE_AUXILIARY: "synthetic"})
    s3 = sweep(other)
    assert s3.computed == 3 and len(RecordStore(cfg.results_dir).superseded()) == 2
    labels = method_label(list(RecordStore(cfg.results_dir)), recs[0].key["method"])
    assert labels == "anomalyclip[epochs=1] (trained on synthetic for synthetic-aux; trained on synthetic-aux for synthetic)"


def test_one_fit_per_auxiliary_set_across_targets_and_shots_not_applicable(tmp_path, monkeypatch):
    from fsadbench.methods.anomalyclip.model import AnomalyCLIP

    fits = []
    real = AnomalyCLIP.fit_auxiliary
    monkeypatch.setattr(AnomalyCLIP, "fit_auxiliary", lambda self, aux: (fits.append(aux.dataset), real(self, aux)))
    two = [DatasetSpec("synthetic", categories=["stripes"], options=dict(SYN)),
           DatasetSpec("folderless", categories=["disc"], options=dict(SYN))]
    from fsadbench.core.registry import DATASETS

    DATASETS.names()  # plugins loaded before the table is copied
    monkeypatch.setattr(DATASETS, "_entries", dict(DATASETS._entries))  # the registration ends with the test
    DATASETS.add("folderless", "fsadbench.datasets.synthetic:SyntheticDataset", options={"seed": 5})
    cfg = _cfg(tmp_path, datasets=two, train_on={"*": PIPELINE_AUXILIARY}, shots=[0, 1])
    s = sweep(cfg)
    assert fits == [PIPELINE_AUXILIARY]  # one training for both targets (same method, seed, auxiliary data)
    recs = {(r.key["dataset"], r.key["shots"]): r for r in RecordStore(cfg.results_dir)}
    assert recs[("synthetic", 0)].status == recs[("folderless", 0)].status == "ok"
    assert recs[("synthetic", 1)].status == "not_applicable" and "zero-shot" in recs[("synthetic", 1)].error
    assert s.failed == 0


def test_fitted_method_trains_on_the_auxiliary_set(tmp_path):
    from fsadbench.run.fit import fitted_method
    from fsadbench.run.resources import Resources

    cfg = _cfg(tmp_path)
    m, split = fitted_method(Resources(cfg), cfg.methods[0], cfg.datasets[0], "stripes", 0, 0)
    assert m.trained_on == PIPELINE_AUXILIARY and split.info.name == "stripes"
    assert m.predict([image_ref(split.test[0])])["w/o VG"].maps.shape == (1, 15, 15)


def test_plan_line_names_the_pairing_and_counts_the_auxiliary_images(tmp_path):
    from fsadbench.run.preview import encoder_passes, plan_text

    cfg = _cfg(tmp_path)
    data = DataSource(cfg)
    plan = Plan.build(cfg, data, RecordStore(cfg.results_dir))
    assert "  zero-shot transfer: anomalyclip[epochs=1] on synthetic trained on synthetic-aux" in \
        plan_text(cfg, plan, data).splitlines()
    assert encoder_passes(cfg, plan, data) == 4 + 4  # the target's test images (one path) + the auxiliary's
