"""The leave-one-out auxiliary mode (fit_scope "leave_one_out", fsadbench.run.transfer): the training set
never holds the target category, jobs per category, the resume key and the records name the held-out
category, rows read "trained on NAME without CATEGORY", one training shared per (held-out, seed, shots)."""

from __future__ import annotations

import pytest

from fixtures_transfer import SYN, transfer_config
from fsadbench.core.errors import ConfigError
from fsadbench.results.records import Record
from fsadbench.run.config import DatasetSpec, MethodSpec
from fsadbench.run.identity import cell_hash, cell_identity
from fsadbench.run.plan import DATASET_SCOPE, PER_CATEGORY, Job, job_groups, plan_jobs
from fsadbench.run.resources import DataSource
from fsadbench.run.transfer import (LEAVE_ONE_OUT_SCOPE, auxiliary_identity, auxiliary_label, held_out_category,
                                    held_out_set, held_out_spec)

CATS = ["stripes", "disc", "pill"]


def loo_config(tmp_path, **kw):
    base = dict(methods=[MethodSpec("regad", {"epochs": 1, "batch_size": 2})],
                datasets=[DatasetSpec("synthetic", categories=list(CATS), options=dict(SYN))], shots=[1])
    base.update(kw)
    return transfer_config(tmp_path, **base)


def test_held_out_spec_never_holds_the_target():
    target = DatasetSpec("mvtec", root="/data/mvtec", options={"a": 1})
    for c in CATS:
        spec = held_out_spec(target, c, CATS)
        assert c not in spec.categories and sorted(spec.categories + [c]) == sorted(CATS)
        assert (spec.name, spec.root, spec.options) == ("mvtec", "/data/mvtec", {"a": 1})
        assert spec.options is not target.options
        assert held_out_category(spec, target, CATS) == c
    with pytest.raises(ConfigError, match="needs a category besides 'bottle'.*--categories"):
        held_out_spec(target, "bottle", ["bottle"])
    assert held_out_category(DatasetSpec("visa", categories=["x"]), target, CATS) is None
    assert held_out_category(DatasetSpec("mvtec"), target, CATS) is None
    assert held_out_category(DatasetSpec("mvtec", categories=["disc"]), target, CATS) is None  # two left out
    assert LEAVE_ONE_OUT_SCOPE == "leave_one_out" and PER_CATEGORY == ("category", "leave_one_out")


def test_labels():
    mv = DatasetSpec("mvtec")
    assert auxiliary_label(mv, mv, "bottle") == "trained on mvtec without bottle"
    assert auxiliary_label(mv, mv) == "trained on mvtec (its own test split)"


def test_plan_makes_one_job_per_category_holding_it_out(tmp_path):
    cfg = loo_config(tmp_path)
    data = DataSource(cfg)
    jobs = plan_jobs(cfg, data)
    assert [j.categories for j in jobs] == [[c] for c in CATS]
    for j in jobs:
        assert j.scope == LEAVE_ONE_OUT_SCOPE and j.auxiliary.name == "synthetic"
        assert j.categories[0] not in j.auxiliary.categories and len(j.auxiliary.categories) == 2
        assert j.claim_relpath().parts[-2] != DATASET_SCOPE  # claimed as its one cell
    assert [len(g) for g in job_groups(jobs)] == [1, 1, 1]  # grouped per (dataset, category)


def test_the_training_set_is_the_other_categories_normal_train_images(tmp_path):
    cfg = loo_config(tmp_path)
    data = DataSource(cfg)
    target = cfg.datasets[0]
    aux = held_out_set(data, held_out_spec(target, "disc", CATS))
    want = [s.image_path for c in ("stripes", "pill") for s in data.split(target, c).train]
    assert [r.path for r in aux.images] == want and len(want) == 2 * SYN["n_train"]
    assert aux.labels == (0,) * len(want) and aux.masks == (None,) * len(want)
    assert aux.image_categories == ("stripes",) * SYN["n_train"] + ("pill",) * SYN["n_train"]
    assert aux.categories == ("stripes", "pill")
    assert all("disc" not in str(p) for p in want)
    with pytest.raises(ValueError, match="one per image or none"):
        type(aux)("x", aux.images, aux.labels, aux.masks, (), ("a",))


def test_resume_key_names_the_held_out_category_and_its_training_data(tmp_path):
    cfg = loo_config(tmp_path)
    data = DataSource(cfg)
    jobs = plan_jobs(cfg, data)
    idents = [cell_identity(cfg, data, j) for j in jobs]
    for j, ident in zip(jobs, idents):
        aux = ident["auxiliary"]
        assert aux["held_out"] == j.categories[0] and j.categories[0] not in aux["categories"]
        assert set(aux["data"]) == set(aux["categories"])
    assert len({cell_hash(cfg, data, j) for j in jobs}) == 3
    target = cfg.datasets[0]
    spec = held_out_spec(target, "disc", CATS)
    train = auxiliary_identity(data, spec, "disc")
    test = auxiliary_identity(data, spec)
    assert "held_out" not in test and train["data"] != test["data"]  # train images, not the test split
    assert train == {"name": "synthetic", "options": SYN, "categories": ["stripes", "pill"], "held_out": "disc",
                     "data": train["data"]}
    assert list(train["data"]) == ["stripes", "pill"] and train["data"]["stripes"] != train["data"]["pill"]
    # another held-out category set (a different category list) changes the key
    other = loo_config(tmp_path, datasets=[DatasetSpec("synthetic", categories=["stripes", "disc"], options=dict(SYN))])
    j2 = plan_jobs(other, DataSource(other))[1]
    assert j2.categories == ["disc"] and cell_hash(other, DataSource(other), j2) != cell_hash(cfg, data, jobs[1])


def test_record_facts_and_row_label(tmp_path):
    from fsadbench.reports.tables import auxiliary_note, method_label
    from fsadbench.run.cellrecord import auxiliary_facts

    cfg = loo_config(tmp_path)
    jobs = plan_jobs(cfg, DataSource(cfg))
    facts = auxiliary_facts(jobs[1])["auxiliary"]
    assert facts == {"name": "synthetic", "options": SYN, "label": "trained on synthetic without disc",
                     "same_as_target": False, "held_out": "disc", "categories": ["stripes", "pill"]}

    def rec(cat, aux):
        return Record(key={"method": "regad", "dataset": "mvtec", "category": cat, "shots": 1, "seed": 0},
                      status="ok", config_hash="h", method={"label": "regad", "auxiliary": aux})

    one = [rec("bottle", {"name": "mvtec", "held_out": "bottle"})]
    assert method_label(one, "regad") == "regad (trained on mvtec without bottle)"
    both = one + [rec("cable", {"name": "mvtec", "held_out": "cable"})]
    assert auxiliary_note(both, "regad") == "trained on mvtec without the target category"
    assert auxiliary_note(both, "regad", str.upper) == "trained on MVTEC without the target category"


def test_one_training_per_held_out_category_seed_and_shots(tmp_path, monkeypatch):
    from fsadbench.methods.regad.model import RegAD
    from fsadbench.run.fit import fit_job
    from fsadbench.run.identity import resolve_method
    from fsadbench.run.resources import Resources

    trained = []
    orig = RegAD.fit_auxiliary

    def spy(self, aux, shots):
        trained.append((aux.categories, shots))
        return orig(self, aux, shots)

    monkeypatch.setattr(RegAD, "fit_auxiliary", spy)
    cfg = loo_config(tmp_path, shots=[1, 2])
    res = Resources(cfg)
    cls, options = resolve_method(cfg.methods[0])
    jobs = plan_jobs(cfg, res)
    fitted = {}
    for j in jobs:
        splits = {c: res.split(j.dataset, c) for c in j.categories}
        fitted[(j.categories[0], j.shots)] = fit_job(res, j, cls, options, splits, 8, 8)[0]
    # a training per (held-out category, shot count): the official trains one model per --shot
    assert sorted(trained) == sorted((tuple(c for c in CATS if c != h), k) for h in CATS for k in (1, 2))
    again = fit_job(res, jobs[0], cls, options, {jobs[0].categories[0]: res.split(jobs[0].dataset, jobs[0].categories[0])}, 8, 8)
    assert len(trained) == 6 and again[0] is fitted[(jobs[0].categories[0], jobs[0].shots)]
    assert again[0].gaussian is not None
