"""A cell's record, section by section, from a job, a category and a cell result (no model, no sweep: a
stand-in for the run's resources holds two tiny categories on disk).

EQUIVALENT_MUTANTS lists the surviving mutants of run/cellrecord.py that cannot change behaviour.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fsadbench.core.errors import DataError
from fsadbench.core.types import CategorySplit, Sample
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.protocol.sampler import file_digest
from fsadbench.run import identity as idn
from fsadbench.run.cellrecord import CellResult, auxiliary_facts, build_record, dataset_facts
from fsadbench.run.config import PROTOCOL_VERSION, DatasetSpec, MethodSpec, Protocol, RunConfig
from fsadbench.run.plan import Job


def _png(path: Path, value: int) -> Path:
    Image.fromarray(np.full((4, 4), value, np.uint8)).save(path)
    return path


def _split(root: Path, name: str, unmasked: int = 0) -> CategorySplit:
    root.mkdir()
    train = [Sample(_png(root / f"tr{i}.png", 10 * i), 0, "good", None, f"train/good/{i}.png") for i in range(4)]
    mask = root / "m.png"
    Image.fromarray(np.eye(4, dtype=np.uint8) * 255).save(mask)
    test = [Sample(_png(root / "g.png", 200), 0, "good", None, "test/good/g.png"),
            Sample(_png(root / "b.png", 100), 1, "dent", mask, "test/dent/b.png")]
    test += [Sample(_png(root / f"u{i}.png", 50 + i), 1, "dent", None, f"test/dent/u{i}.png") for i in range(unmasked)]
    return CategorySplit(SimpleNamespace(name=name), root, train, test, {"normals": "from train"})


class _Res:
    """The run's resources as build_record reads them: config, splits read so far, backbone facts."""

    def __init__(self, cfg: RunConfig, splits: dict):
        self.cfg, self.splits, self.identities, self.device = cfg, splits, {}, "cpu"
        self.read: set[str] = set(splits)

    def split(self, spec, category):
        s = self.splits[category]
        if isinstance(s, Exception):
            raise s
        return s

    def loaded_split(self, dataset, category):
        assert dataset == "synthetic", dataset  # by the dataset's name
        return self.splits.get(category) if category in self.read else None

    def categories(self, spec):
        return list(self.splits) if spec.name == "synthetic" else []  # (an auxiliary set: none on disk)

    def backbone_facts(self, spec):
        return {"family": spec.family, "model": spec.model, "facts_of": "the method's backbone"}


def _cfg(**kw) -> RunConfig:
    base = dict(model="fsad-tiny-vit", pretrained="none", device="cpu", protocol=Protocol(eval_size=64),
                datasets=[DatasetSpec("synthetic")], shots=[2, 4], seeds=[0, 7])
    return RunConfig(**{**base, **kw})


@pytest.fixture
def res(tmp_path):
    return _Res(_cfg(), {"c1": _split(tmp_path / "c1", "c1"), "c2": _split(tmp_path / "c2", "c2", unmasked=2)})


class _Fitted:
    def describe(self):
        return {"fidelity_notes": ["a note"]}


def test_an_ok_record_section_by_section(res):
    job = Job(MethodSpec("memory", {"memory_layers": [2]}, label="Memory bank"), DatasetSpec("synthetic"), ["c2"], 2, 7)
    shots = res.splits["c2"].train[:2]
    result = CellResult("ok", metrics={"w/ VG": {"pixel_auroc": 0.9}}, undefined={"w/ VG": {"aupro": "why"}},
                        shots=shots, encoder={"encoded": 5}, timings={"total_s": 1.5}, n_anomalous=3, method=_Fitted())
    r = build_record(res, job, "c2", "hash1", result, batch_size=8)
    assert r.key == {"method": "memory[memory_layers=2]", "dataset": "synthetic", "category": "c2", "shots": 2, "seed": 7}
    assert (r.status, r.config_hash, r.error) == ("ok", "hash1", None)
    assert r.identity == idn.cell_identity(res.cfg, res, job)
    assert r.plan == {"categories": ["c1", "c2"], "shots": [2, 4], "seeds": [0, 7]}
    assert r.method == {"name": "memory", "id": "memory[memory_layers=2]", "label": "Memory bank", "version": 1,
                        "options": idn.resolved_options(job.method), "variants": ["w/ VG"], "fit_scope": "category",
                        "uses_feature_cache": True, "describe": {"fidelity_notes": ["a note"]}}
    assert r.method["options"] == {"memory_layers": [2]}
    assert r.metrics == {"w/ VG": {"pixel_auroc": 0.9}} and r.undefined == {"w/ VG": {"aupro": "why"}}
    assert (r.n_test, r.n_test_anomalous) == (4, 3)
    assert r.timings == {"total_s": 1.5} and r.encoder == {"encoded": 5}
    assert r.manifest == [{"rel_path": s.rel_path, "sha1": file_digest(s.image_path)} for s in shots]
    assert r.protocol == {"eval_size": 64, "sigma": None, "max_test_images": None, "version": PROTOCOL_VERSION,
                          "sigma_used": 4.0}
    assert r.backbone == {"family": "open_clip", "model": "fsad-tiny-vit", "facts_of": "the method's backbone"}
    assert r.dataset == {"name": "synthetic", "category": "c2", "root": str(res.splits["c2"].root),
                         "meta": {"normals": "from train"}, "fingerprint": r.identity["dataset"]["data"]["c2"],
                         "anomalous_without_mask": 2}
    assert r.config == {**res.cfg.to_dict(), "batch_size": 8}
    assert r.metric_version == METRIC_VERSION and set(r.provenance) >= {"git", "packages", "device", "time_utc"}
    assert r.provenance["device"]["device"] == "cpu"


def test_the_method_version_is_the_class_one(res):
    job = Job(MethodSpec("promptad"), DatasetSpec("synthetic"), ["c1"], 2, 0)
    assert build_record(res, job, "c1", "h", CellResult("ok")).method["version"] == 2  # PromptAD bumped it


def test_a_failed_record_counts_no_test_images_and_keeps_the_error(res):
    job = Job(MethodSpec("memory"), DatasetSpec("synthetic"), ["c1"], 4, 0)
    try:
        raise DataError("c1: the folder is empty")
    except DataError as exc:
        t0 = time.perf_counter()
        result = CellResult.failure(exc, t0)
    assert result.status == "failed" and 0 <= result.timings["total_s"] < 60
    assert result.error.splitlines()[0] == "c1: the folder is empty"
    assert "Traceback" in result.error
    r = build_record(res, job, "c1", "hash2", result)
    assert (r.status, r.n_test, r.manifest, r.metrics) == ("failed", 0, [], {})
    assert r.error == result.error and r.method["describe"] == {} and r.method["label"] == "memory"
    assert r.config == res.cfg.to_dict()  # no method batch given: the configured one stays
    assert r.dataset == {"name": "synthetic", "category": "c1", "root": str(res.splits["c1"].root),
                         "meta": {"normals": "from train"}, "fingerprint": r.identity["dataset"]["data"]["c1"]}


def test_a_category_whose_split_was_not_read_names_only_itself(res):
    res.read = set()
    job = Job(MethodSpec("memory"), DatasetSpec("synthetic"), ["c1"], 2, 0)
    ident = idn.cell_identity(res.cfg, res, job)
    assert dataset_facts(res, job, "c1", ident) == {"name": "synthetic", "category": "c1"}
    r = build_record(res, job, "c1", "h", CellResult("ok", metrics={"w/ VG": {}}))
    assert r.n_test == 0 and r.dataset == {"name": "synthetic", "category": "c1"}


def test_a_transfer_method_records_the_dataset_it_trained_on(res):
    target = DatasetSpec("synthetic")
    other = Job(MethodSpec("anomalyclip"), target, ["c1", "c2"], 0, 0, "auxiliary",
                DatasetSpec("visa", options={"x": 1}))
    assert auxiliary_facts(other) == {"auxiliary": {"name": "visa", "options": {"x": 1}, "label": "trained on visa",
                                                    "same_as_target": False}}
    own = Job(MethodSpec("anomalyclip"), target, ["c1"], 0, 0, "auxiliary", DatasetSpec("synthetic"))
    assert auxiliary_facts(own)["auxiliary"] == {"name": "synthetic", "options": {},
                                                 "label": "trained on synthetic (its own test split)",
                                                 "same_as_target": True}
    assert auxiliary_facts(Job(MethodSpec("memory"), target, ["c1"], 1, 0)) == {}
    r = build_record(res, other, "c1", "h", CellResult("ok"))
    assert r.method["auxiliary"]["name"] == "visa" and r.method["fit_scope"] == "auxiliary"
    assert r.method["variants"] == ["w/o VG"] and r.identity["auxiliary"]["name"] == "visa"


def test_a_cell_result_defaults_to_nothing_measured():
    c = CellResult("ok")
    assert asdict(c) == {"status": "ok", "metrics": {}, "undefined": {}, "shots": (), "encoder": {}, "timings": {},
                         "n_anomalous": 0, "method": None, "error": None,
                         "sigma_applied": None}


EQUIVALENT_MUTANTS: dict[str, str] = {
}
