"""Planning a sweep: which jobs, in which order, which are still to do, how they group, and which folders a
run refuses. The data source is a stand-in (categories only) and the resume key a stand-in hash per job
(the key itself is pinned in test_core_run.py), so these run without a model or a dataset on disk.

EQUIVALENT_MUTANTS lists the surviving mutants of run/plan.py that cannot change behaviour.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.results.records import CellKey, Record, RecordStore
from fsadbench.run import plan as planning
from fsadbench.run.config import PROTOCOL_VERSION, DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.plan import DATASET_SCOPE, Job, Plan, check_folder, job_claim_relpath, job_groups, pending, plan_jobs


class _Data:
    """DataSource stand-in: the categories of each dataset, and which datasets were resolved."""

    def __init__(self, cats: dict[str, list[str]]):
        self.cats = cats
        self.resolved: list[str] = []

    def dataset(self, spec):
        self.resolved.append(spec.name)

    def categories(self, spec):
        return list(self.cats[spec.name])

    def split(self, spec, category):  # an auxiliary set with a masked anomaly per category (check_auxiliary)
        from types import SimpleNamespace

        return SimpleNamespace(test=[SimpleNamespace(label=1, mask_path="mask.png")])


def _cfg(**kw) -> RunConfig:
    base = dict(model="fsad-tiny-vit", pretrained="none", device="cpu", protocol=Protocol(eval_size=64),
                datasets=[DatasetSpec("visa"), DatasetSpec("mvtec")], methods=[MethodSpec("memory")],
                shots=[1, 2], seeds=[0, 1])
    return RunConfig(**{**base, **kw})


DATA = {"visa": ["candle", "pcb1"], "mvtec": ["bottle"]}


def _desc(jobs):
    return [(j.method.name, j.dataset.name, tuple(j.categories), j.shots, j.seed, j.scope) for j in jobs]


def test_per_category_jobs_come_in_dataset_then_category_order():
    cfg = _cfg(methods=[MethodSpec("memory"), MethodSpec("patchcore")])
    data = _Data(DATA)
    jobs = plan_jobs(cfg, data)
    assert data.resolved == ["visa", "mvtec"]
    want = [(m, d, (c,), k, s, "category") for d in ("visa", "mvtec") for c in DATA[d]
            for m in ("memory", "patchcore") for k in (1, 2) for s in (0, 1)]
    assert _desc(jobs) == want
    assert all(j.auxiliary is None for j in jobs)


def test_multi_class_and_transfer_jobs_come_last_one_per_dataset_shot_and_seed():
    cfg = _cfg(methods=[MethodSpec("anople"), MethodSpec("anomalyclip"), MethodSpec("memory")], shots=[0],
               seeds=[3], train_on={"visa": "mvtec", "mvtec": "visa"})
    jobs = plan_jobs(cfg, _Data(DATA))
    assert _desc(jobs) == [("memory", "visa", ("candle",), 0, 3, "category"),
                           ("memory", "visa", ("pcb1",), 0, 3, "category"),
                           ("memory", "mvtec", ("bottle",), 0, 3, "category"),
                           ("anople", "visa", ("candle", "pcb1"), 0, 3, "dataset"),
                           ("anomalyclip", "visa", ("candle", "pcb1"), 0, 3, "auxiliary"),
                           ("anople", "mvtec", ("bottle",), 0, 3, "dataset"),
                           ("anomalyclip", "mvtec", ("bottle",), 0, 3, "auxiliary")]
    assert [j.auxiliary.name if j.auxiliary else None for j in jobs[3:]] == [None, "mvtec", None, "visa"]
    # anople fitted per category when asked
    per_cat = plan_jobs(_cfg(methods=[MethodSpec("anople", {"multi_class": False})], shots=[1], seeds=[0]),
                        _Data(DATA))
    assert [j.scope for j in per_cat] == ["category"] * 3


def test_a_job_names_its_cells_and_its_claim():
    j = Job(MethodSpec("memory", {"k": 2}), DatasetSpec("visa"), ["candle"], 4, 1)
    assert j.keys() == [CellKey("memory[k=2]", "visa", "candle", 4, 1)]
    assert j.claim_relpath() == Path("memory[k=2]/visa/candle/k4_s1.json") == job_claim_relpath(j)
    multi = Job(MethodSpec("anople"), DatasetSpec("visa"), ["candle", "pcb1"], 1, 0, "dataset")
    assert multi.keys() == [CellKey("anople", "visa", c, 1, 0) for c in ("candle", "pcb1")]
    assert multi.claim_relpath() == Path("anople/visa") / DATASET_SCOPE / "k1_s0.json"
    assert DATASET_SCOPE == "_dataset"
    aux = Job(MethodSpec("anomalyclip"), DatasetSpec("visa"), ["candle", "pcb1"], 0, 0, "auxiliary")
    assert aux.claim_relpath() == Path("anomalyclip/visa/_dataset/k0_s0.json")


def test_groups_hold_the_jobs_of_one_category_and_each_multi_class_job_alone():
    cfg = _cfg(methods=[MethodSpec("memory"), MethodSpec("anople")], shots=[1], seeds=[0, 1])
    jobs = plan_jobs(cfg, _Data(DATA))
    groups = job_groups(jobs)
    assert [[(j.dataset.name, tuple(j.categories), j.seed) for j in g] for g in groups] == [
        [("visa", ("candle",), 0), ("visa", ("candle",), 1)], [("visa", ("pcb1",), 0), ("visa", ("pcb1",), 1)],
        [("mvtec", ("bottle",), 0), ("mvtec", ("bottle",), 1)],
        [("visa", ("candle", "pcb1"), 0)], [("visa", ("candle", "pcb1"), 1)],
        [("mvtec", ("bottle",), 0)], [("mvtec", ("bottle",), 1)]]
    assert job_groups([]) == []


def _ok(key: CellKey, config_hash: str, **kw) -> Record:
    base = dict(key=key.__dict__, status="ok", config_hash=config_hash, metric_version=METRIC_VERSION,
                protocol={"version": PROTOCOL_VERSION, "eval_size": 64, "sigma": None, "max_test_images": None},
                backbone={"family": "open_clip", "model": "fsad-tiny-vit", "pretrained": "none", "precision": "fp32"})
    base.update(kw)
    return Record(**base)


@pytest.fixture
def keyed(monkeypatch):
    """The resume key of a job: a stand-in that differs per seed."""
    def key(cfg, data, job):  # reads the run's config and data source, as the real key does
        assert isinstance(cfg, RunConfig) and isinstance(data, _Data), (cfg, data)
        return f"h{job.seed}"

    monkeypatch.setattr(planning, "cell_hash", key)


def test_pending_drops_jobs_whose_cells_are_all_done_with_the_current_key(tmp_path, keyed):
    cfg = _cfg(methods=[MethodSpec("memory"), MethodSpec("anople")], datasets=[DatasetSpec("visa")], shots=[1],
               seeds=[0, 1])
    data = _Data(DATA)
    store = RecordStore(tmp_path)
    jobs = plan_jobs(cfg, data)  # memory: candle s0, candle s1, pcb1 s0, pcb1 s1; anople: s0, s1
    store.write(_ok(CellKey("memory", "visa", "candle", 1, 0), "h0"))  # done
    store.write(_ok(CellKey("memory", "visa", "candle", 1, 1), "h0"))  # another key: to do
    store.write(_ok(CellKey("memory", "visa", "pcb1", 1, 0), "h0", status="failed"))  # failed: to do
    store.write(_ok(CellKey("anople", "visa", "candle", 1, 0), "h0"))  # one of two cells: the job is to do
    for c in ("candle", "pcb1"):
        store.write(_ok(CellKey("anople", "visa", c, 1, 1), "h1"))  # both cells done
    todo, skipped = pending(cfg, data, jobs, store)
    assert _desc(todo) == [("memory", "visa", ("candle",), 1, 1, "category"),
                           ("memory", "visa", ("pcb1",), 1, 0, "category"),
                           ("memory", "visa", ("pcb1",), 1, 1, "category"),
                           ("anople", "visa", ("candle", "pcb1"), 1, 0, "dataset")]
    assert skipped == 3
    plan = Plan.build(cfg, data, store)
    assert _desc(plan.todo) == _desc(todo) and plan.skipped == 3 and _desc(plan.jobs) == _desc(jobs)
    assert plan.n_todo_cells == 5
    forced = Plan.build(cfg, data, store, force=True)
    assert _desc(forced.todo) == _desc(jobs) and forced.skipped == 0 and forced.n_todo_cells == 8


def test_a_folder_of_another_run_is_refused_naming_what_differs(tmp_path, keyed):
    cfg = _cfg(datasets=[DatasetSpec("visa")], shots=[1], seeds=[0])
    store = RecordStore(tmp_path)
    store.write(_ok(CellKey("memory", "visa", "candle", 1, 0), "h0"))
    store.write(_ok(CellKey("other", "visa", "candle", 1, 0), "h0", backbone={"model": "its own"}))
    store.write(_ok(CellKey("memory", "visa", "pcb1", 1, 0), "h0", status="failed", metric_version="old"))
    check_folder(cfg, store)  # the same run: nothing to say; failed records and other methods' backbones pass
    store.write(_ok(CellKey("memory", "visa", "pcb1", 1, 1), "h1", metric_version="old",
                    backbone={"family": "open_clip", "model": "ViT-B-16", "pretrained": "none", "precision": "fp32"}))
    store.write(_ok(CellKey("memory", "visa", "pcb1", 2, 0), "h0",
                    protocol={"version": PROTOCOL_VERSION, "eval_size": 400, "sigma": None, "max_test_images": None}))
    with pytest.raises(ConfigError) as err:
        pending(cfg, _Data(DATA), plan_jobs(cfg, _Data(DATA)), store)
    assert str(err.value) == (
        f"--results-dir {tmp_path} holds 2 record(s) of another run: memory backbone.model: folder has 'ViT-B-16', "
        f"this run 'fsad-tiny-vit'; metric_version: folder has 'old', this run {METRIC_VERSION!r}; "
        f"protocol.eval_size: folder has 400, this run 64. A results folder holds one comparable run (one backbone "
        f"per method): use another --results-dir, or --force to move those records to {tmp_path / 'superseded'} "
        f"and run here")
    said = []
    store.log = said.append
    check_folder(cfg, store, force=True)
    assert len(said) == 2 and said[1].endswith("(protocol.eval_size: folder has 400, this run 64)")
    assert said[0].startswith("kept aside records/memory/visa/pcb1/k1_s1.json -> superseded/memory/visa/pcb1/"
                              "k1_s1.h1.json (metric_version: folder has 'old', this run ")
    assert said[0].endswith("; memory backbone.model: folder has 'ViT-B-16', this run 'fsad-tiny-vit')")
    check_folder(cfg, store)  # set aside: the folder is one run again
    assert sorted(r.key["method"] for r in store.superseded()) == ["memory", "memory"]


def test_force_plans_over_a_folder_of_another_run_and_the_message_lists_six_differences(tmp_path, keyed):
    cfg = _cfg(datasets=[DatasetSpec("visa")], shots=[1], seeds=[0])
    store = RecordStore(tmp_path)
    for i in range(7):
        store.write(_ok(CellKey("memory", "visa", "candle", 1, 10 + i), "h0",
                        protocol={"version": PROTOCOL_VERSION, "eval_size": 100 + i, "sigma": None,
                                  "max_test_images": None}))
    with pytest.raises(ConfigError) as err:
        Plan.build(cfg, _Data(DATA), store)
    assert "holds 7 record(s) of another run" in str(err.value) and str(err.value).count("protocol.eval_size") == 6
    plan = Plan.build(cfg, _Data(DATA), store, force=True)
    assert len(store.superseded()) == 7 and plan.n_todo_cells == 2


def test_a_transfer_method_without_a_pairing_is_refused_by_name():
    cfg = _cfg(methods=[MethodSpec("anomalyclip")], shots=[0], seeds=[0])
    with pytest.raises(ConfigError, match="method 'anomalyclip' trains on an auxiliary dataset: name it with "
                                          "--train-on NAME"):
        plan_jobs(cfg, _Data(DATA))


def test_the_run_expects_its_own_protocol_and_precision(tmp_path):
    cfg = _cfg(datasets=[DatasetSpec("visa")], protocol=Protocol(eval_size=64, sigma=2.0, max_test_images=5))
    store = RecordStore(tmp_path)
    store.write(_ok(CellKey("memory", "visa", "candle", 1, 0), "h0",
                    protocol={"version": PROTOCOL_VERSION, "eval_size": 64, "sigma": 2.0, "max_test_images": 5}))
    check_folder(cfg, store)
    store.write(_ok(CellKey("memory", "visa", "pcb1", 1, 0), "h0",
                    protocol={"version": PROTOCOL_VERSION, "eval_size": 64, "sigma": 2.0, "max_test_images": 5},
                    backbone={"family": "open_clip", "model": "fsad-tiny-vit", "pretrained": "none",
                              "precision": "bf16-autocast"}))
    with pytest.raises(ConfigError, match="memory backbone.precision: folder has 'bf16-autocast', this run 'fp32'"):
        check_folder(cfg, store)
    with pytest.raises(ConfigError, match="protocol.version: folder has 0"):
        store.write(_ok(CellKey("memory", "visa", "pcb1", 1, 0), "h0",
                        protocol={"version": 0, "eval_size": 64, "sigma": 2.0, "max_test_images": 5}))
        check_folder(cfg, store)


EQUIVALENT_MUTANTS = {
    "plan.plan_jobs: Job(m, ds, [c], k, s) without scope for a per-category job":
        "the branch is reached only when the scope is 'category', Job's default",
}
