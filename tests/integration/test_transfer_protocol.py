"""The zero-shot transfer protocol end to end on the tiny model: one fit per (method, auxiliary set, seed),
records, table labels, the plan line, resume and recompute (the pairing rules: tests/unit/test_transfer.py)."""

from __future__ import annotations

from fixtures_transfer import SYN, transfer_config
from fsadbench.reports.tables import method_label
from fsadbench.results.records import RecordStore
from fsadbench.protocol.sampler import image_ref
from fsadbench.run import sweep
from fsadbench.run.config import DatasetSpec
from fsadbench.run.plan import Plan
from fsadbench.run.resources import DataSource
from fsadbench.run.transfer import PIPELINE_AUXILIARY


# -- the sweep ------------------------------------------------------------------------------------------
def test_sweep_trains_once_records_the_auxiliary_and_resumes(tmp_path, monkeypatch):
    from fsadbench.methods.anomalyclip.model import AnomalyCLIP

    fits = []
    real = AnomalyCLIP.fit_auxiliary
    monkeypatch.setattr(AnomalyCLIP, "fit_auxiliary", lambda self, aux: (fits.append(aux.dataset), real(self, aux)))
    cfg = transfer_config(tmp_path, datasets=[DatasetSpec("synthetic", categories=["stripes", "disc"],
                                                          options=dict(SYN))])
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
    other = transfer_config(tmp_path, datasets=cfg.datasets + [DatasetSpec(PIPELINE_AUXILIARY, categories=["disc"],
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
    cfg = transfer_config(tmp_path, datasets=two, train_on={"*": PIPELINE_AUXILIARY}, shots=[0, 1])
    s = sweep(cfg)
    assert fits == [PIPELINE_AUXILIARY]  # one training for both targets (same method, seed, auxiliary data)
    recs = {(r.key["dataset"], r.key["shots"]): r for r in RecordStore(cfg.results_dir)}
    assert recs[("synthetic", 0)].status == recs[("folderless", 0)].status == "ok"
    assert recs[("synthetic", 1)].status == "not_applicable" and "zero-shot" in recs[("synthetic", 1)].error
    assert s.failed == 0


def test_fitted_method_trains_on_the_auxiliary_set(tmp_path):
    from fsadbench.run.fit import fitted_method
    from fsadbench.run.resources import Resources

    cfg = transfer_config(tmp_path)
    m, split = fitted_method(Resources(cfg), cfg.methods[0], cfg.datasets[0], "stripes", 0, 0)
    assert m.trained_on == PIPELINE_AUXILIARY and split.info.name == "stripes"
    assert m.predict([image_ref(split.test[0])])["w/o VG"].maps.shape == (1, 15, 15)


def test_plan_line_names_the_pairing_and_counts_the_auxiliary_images(tmp_path):
    from fsadbench.run.preview import encoder_passes, plan_text

    cfg = transfer_config(tmp_path)
    data = DataSource(cfg)
    plan = Plan.build(cfg, data, RecordStore(cfg.results_dir))
    assert "  zero-shot transfer: anomalyclip[epochs=1] on synthetic trained on synthetic-aux" in \
        plan_text(cfg, plan, data).splitlines()
    assert encoder_passes(cfg, plan, data) == 4 + 4  # the target's test images (one path) + the auxiliary's
