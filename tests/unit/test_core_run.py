"""The resume key as README and ARCHITECTURE list it: its parts, written out by hand, and a key that changes
when any one input changes (one input at a time), with a DataSource stand-in (no model, no sweep).

EQUIVALENT_MUTANTS lists the surviving mutants of run/identity.py that cannot change behaviour.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from fsadbench.core.errors import DataError
from fsadbench.core.types import CategorySplit, Sample
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.protocol.sampler import content_fingerprint, sample_shots
from fsadbench.run import identity as idn
from fsadbench.run.config import PROTOCOL_VERSION, DatasetSpec, MethodSpec, Protocol, RunConfig, stable_hash
from fsadbench.run.plan import Job


def _png(path: Path, value: int, shape=(4, 4)) -> Path:
    Image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


class _Data:
    """DataSource stand-in: the splits by category, and the identity cache the real one carries."""

    def __init__(self, splits: dict):
        self.splits = splits
        self.identities: dict = {}

    def split(self, spec, category):
        assert isinstance(spec, DatasetSpec), spec  # the job's dataset, as the real DataSource needs
        s = self.splits[category]
        if isinstance(s, Exception):
            raise s
        return s


def _split(root: Path, n_train: int = 6) -> CategorySplit:
    train = [Sample(_png(root / f"tr{i}.png", 10 * i), 0, "good", None, f"train/good/{i}.png")
             for i in range(n_train)]
    mask = root / "m.png"
    Image.fromarray(np.eye(4, dtype=np.uint8) * 255).save(mask)
    test = [Sample(_png(root / "g.png", 200), 0, "good", None, "test/good/g.png"),
            Sample(_png(root / "b.png", 100), 1, "dent", mask, "test/dent/b.png")]
    return CategorySplit(SimpleNamespace(name="c1"), root, train, test)


def _cfg(**kw) -> RunConfig:
    base = dict(model="fsad-tiny-vit", pretrained="none", device="cpu", protocol=Protocol(eval_size=64))
    return RunConfig(**{**base, **kw})


def _job(**kw) -> Job:
    base = dict(method=MethodSpec("memory"), dataset=DatasetSpec("synthetic"), categories=["c1"], shots=2, seed=0)
    return Job(**{**base, **kw})


def test_identity_parts_are_the_documented_ones(tmp_path):
    from fsadbench.backbone.features import SPEC_VERSIONS

    split = _split(tmp_path)
    ident = idn.cell_identity(_cfg(), _Data({"c1": split}), _job())
    assert ident == {
        "method": {"name": "memory", "version": 1, "options": {"memory_layers": [3, 8]},
                   "feature_specs": {"tokens": SPEC_VERSIONS["tokens"]}},
        "dataset": {"name": "synthetic", "options": {},
                    "data": {"c1": content_fingerprint(split.test, sample_shots(split.train, 2, 0))}},
        "backbone": {"model": "fsad-tiny-vit", "pretrained": "none", "weights": "random-init:0", "precision": "fp32"},
        "protocol": {"eval_size": 64, "sigma": None, "max_test_images": None, "version": PROTOCOL_VERSION,
                     "sigma_used": 4.0},  # memory's paper sigma
        "metric_version": METRIC_VERSION,
    }
    assert idn.cell_hash(_cfg(), _Data({"c1": split}), _job()) == stable_hash(ident)


def test_static_identity_records_the_metric_version_it_is_given():
    assert idn.static_identity(_cfg(), _job(), "m-old")["metric_version"] == "m-old"


def _key(tmp_path, cfg=None, job=None, splits=None) -> str:
    return idn.cell_hash(cfg or _cfg(), _Data(splits or {"c1": _split(tmp_path)}), job or _job())


# one input at a time: every input README "Resume" and ARCHITECTURE "Resume key" list
ONE_CHANGE = {
    "resolved option": dict(job=dict(method=MethodSpec("memory", {"memory_layers": [2, 8]}))),
    "protocol eval size": dict(cfg=dict(protocol=Protocol(eval_size=32))),
    "protocol sigma": dict(cfg=dict(protocol=Protocol(eval_size=64, sigma=2.0))),
    "test image subset": dict(cfg=dict(protocol=Protocol(eval_size=64, max_test_images=1))),
    "backbone model": dict(cfg=dict(model="fsad-tiny-vit-2")),
    "weights tag": dict(cfg=dict(pretrained="laion400m_e32")),
    "precision": dict(cfg=dict(amp=True)),
    "dataset": dict(job=dict(dataset=DatasetSpec("synthetic2"))),
    "dataset option": dict(job=dict(dataset=DatasetSpec("synthetic", options={"size": 64}))),
    "shots": dict(job=dict(shots=3)),
    "seed": dict(job=dict(seed=1)),
}


@pytest.mark.parametrize("what", sorted(ONE_CHANGE))
def test_resume_key_changes_with_each_configured_input(tmp_path, what):
    base = _key(tmp_path)
    change = ONE_CHANGE[what]
    cfg = replace(_cfg(), **change.get("cfg", {}))
    job = replace(_job(), **change.get("job", {}))
    assert _key(tmp_path, cfg=cfg, job=job) != base, what


@pytest.mark.parametrize("what", ["test image", "mask", "shot", "unused train image", "label"])
def test_resume_key_follows_the_data_content(tmp_path, what):
    split = _split(tmp_path)
    base = _key(tmp_path, splits={"c1": split})
    used = {s.rel_path for s in sample_shots(split.train, 2, 0)}
    if what == "test image":
        _png(split.test[1].image_path, 101)
    elif what == "mask":
        Image.fromarray(np.fliplr(np.eye(4, dtype=np.uint8)) * 255).save(split.test[1].mask_path)
    elif what in ("shot", "unused train image"):
        s = next(s for s in split.train if (s.rel_path in used) == (what == "shot"))
        _png(s.image_path, 255, shape=(5, 5))
    else:
        split.test[0] = replace(split.test[0], label=1)
    changed = _key(tmp_path, splits={"c1": split})
    assert (changed != base) == (what != "unused train image"), what  # an unused normal changes no number


def test_resume_key_follows_the_method_version_and_its_encoder_paths(tmp_path, monkeypatch):
    from fsadbench.backbone import features
    from fsadbench.core.registry import METHODS

    cls = METHODS.get("memory")[0]
    base = _key(tmp_path)
    monkeypatch.setattr(cls, "version", 2)
    v2 = _key(tmp_path)
    monkeypatch.undo()
    monkeypatch.setitem(features.SPEC_VERSIONS, "tokens", features.SPEC_VERSIONS["tokens"] + 1)
    spec = _key(tmp_path)
    assert len({base, v2, spec}) == 3


def test_weights_identity_names_random_init_a_checkpoint_digest_or_a_tag(tmp_path):
    for pre in ("none", "None", "RANDOM", ""):
        assert idn.weights_identity(_cfg(pretrained=pre)) == "random-init:0"
    ckpt = tmp_path / "w.pt"
    ckpt.write_bytes(b"weights")
    assert idn.weights_identity(_cfg(pretrained=str(ckpt))) == f"file-sha1:{hashlib.sha1(b'weights').hexdigest()}"
    assert idn.weights_identity(_cfg(pretrained="openai")) == "open_clip-tag:openai"
    assert idn.weights_identity(_cfg(pretrained=str(tmp_path / "missing.pt"))) == \
        f"open_clip-tag:{tmp_path / 'missing.pt'}"


def test_precision_is_fp32_without_amp_or_without_cuda(monkeypatch):
    import torch

    from fsadbench.backbone import clip

    assert idn.precision(_cfg(amp=False)) == "fp32" and idn.precision(_cfg(amp=True, device="cpu")) == "fp32"
    seen = []
    monkeypatch.setattr(clip, "resolve_device", lambda d: seen.append(d) or torch.device("cuda"))
    assert idn.precision(_cfg(amp=True, device="cuda:1")) == "bf16-autocast" and seen == ["cuda:1"]
    assert idn.precision(_cfg(amp=False, device="cuda:1")) == "fp32"
    assert idn.static_identity(_cfg(amp=True), _job())["backbone"]["precision"] == "bf16"


def test_sigma_is_the_protocols_else_the_methods_paper_value():
    cls = SimpleNamespace(default_sigma=4.0)
    assert idn.sigma_for(Protocol(sigma=2.5), cls) == 2.5 and idn.sigma_for(Protocol(), cls) == 4.0
    assert idn.sigma_for(Protocol(sigma=0.0), cls) == 0.0  # an explicit 0 (no smoothing) is kept


def test_an_unreadable_category_is_keyed_by_its_error_and_the_others_by_content(tmp_path):
    split = _split(tmp_path)
    data = _Data({"c1": split, "c2": DataError("no such folder")})
    ident = idn.cell_identity(_cfg(), data, _job(categories=["c1", "c2"]))
    assert ident["dataset"]["data"] == {"c1": content_fingerprint(split.test, sample_shots(split.train, 2, 0)),
                                        "c2": "unreadable (DataError)"}


def test_shots_the_pool_cannot_give_leave_the_fingerprint_of_the_test_images_only(tmp_path):
    split = _split(tmp_path, n_train=2)
    for k, shots in ((0, []), (1, sample_shots(split.train, 1, 0)), (2, split.train), (3, [])):
        ident = idn.cell_identity(_cfg(), _Data({"c1": split}), _job(shots=k))
        assert ident["dataset"]["data"]["c1"] == content_fingerprint(split.test, shots), k


def test_identity_is_cached_per_job_in_the_data_source(tmp_path):
    data = _Data({"c1": _split(tmp_path)})
    a = idn.cell_identity(_cfg(), data, _job())
    assert idn.cell_identity(_cfg(), data, _job()) is a
    # one entry per job (no auxiliary set: None), plus the parts shared across jobs: the test images' hash
    # per category, the static part per method and dataset
    assert set(data.identities) == {("memory", "synthetic", ("c1",), 2, 0, None), ("test", "synthetic", "c1"),
                                    ("static", "memory", "synthetic")}
    b = idn.cell_identity(_cfg(), data, _job(seed=1))  # another seed reuses the shared parts
    assert b is not a and len(data.identities) == 4


def test_the_test_images_are_hashed_once_per_category_for_every_seed(tmp_path, monkeypatch):
    from fsadbench.protocol import sampler

    calls = []
    real = sampler.test_hasher

    def counted(test):
        calls.append(len(test))
        return real(test)

    monkeypatch.setattr(sampler, "test_hasher", counted)  # what content_fingerprint calls without a base
    monkeypatch.setattr(idn, "test_hasher", counted)
    split = _split(tmp_path)
    data = _Data({"c1": split})
    for seed in (0, 1, 2):
        ident = idn.cell_identity(_cfg(), data, _job(seed=seed))
        assert ident["dataset"]["data"]["c1"] == content_fingerprint(split.test, sample_shots(split.train, 2, seed))
    assert len(calls) == 1 + 3  # once for the three seeds, plus the three content_fingerprint calls just above


def test_backbone_identity_names_a_non_clip_family_and_a_set_input_size():
    from fsadbench.backbone.spec import BackboneSpec, parse_backbone

    want = {"model": "resnet18-tiny", "pretrained": "none", "weights": "random-init:0", "precision": "fp32",
            "family": "torchvision"}
    assert idn.backbone_identity(_cfg(), parse_backbone("torchvision:resnet18-tiny", "none")) == want
    assert idn.backbone_identity(_cfg(), parse_backbone("torchvision:resnet18-tiny@96", "none")) == \
        {**want, "image_size": 96}
    assert idn.backbone_identity(_cfg(amp=True), BackboneSpec("fsad-tiny-vit", "none", image_size=64)) == {
        "model": "fsad-tiny-vit", "pretrained": "none", "weights": "random-init:0", "precision": "bf16",
        "image_size": 64}


def test_dataset_options_that_are_not_json_are_keyed_as_text(tmp_path):
    job = _job(dataset=DatasetSpec("synthetic", options={"where": Path("/data/x"), "size": 64}))
    ident = idn.cell_identity(_cfg(), _Data({"c1": _split(tmp_path)}), job)
    assert ident["dataset"]["options"] == {"where": "/data/x", "size": 64}


def test_resolved_options_are_json_data_with_defaults():
    assert idn.resolved_options(MethodSpec("memory")) == {"memory_layers": [3, 8]}
    assert idn.resolved_options(MethodSpec("memory", {"memory_layers": (2, 8)})) == {"memory_layers": [2, 8]}


def test_resolved_options_write_a_non_json_value_as_text(monkeypatch):
    from fsadbench.core.registry import METHODS

    cls = METHODS.get("memory")[0]
    monkeypatch.setattr(cls, "option_dict", classmethod(lambda c, o: {"root": Path("/data/x"), "k": 2}))
    assert idn.resolved_options(MethodSpec("memory")) == {"root": "/data/x", "k": 2}


EQUIVALENT_MUTANTS = {
    "fsadbench.run.identity.x_static_identity__mutmut_12": "the Method base class defines version (1), so the "
                                                           "getattr default is never used",
    "fsadbench.run.identity.x_static_identity__mutmut_15": "as _12",
    "fsadbench.run.identity.x_static_identity__mutmut_18": "as _12",
    "fsadbench.run.identity.x_static_identity__mutmut_27": "the Method base class defines feature_specs (()), so "
                                                           "the getattr default is never used",
    "fsadbench.run.identity.x_static_identity__mutmut_30": "as _27",
    "fsadbench.run.identity.x_cell_identity__mutmut_33": "0 <= job.shots: sample_shots(train, 0, seed) is [] like "
                                                         "the else branch",
    "fsadbench.run.identity.x_cell_identity__mutmut_42": "content_fingerprint(None, ..., base=...) never reads the "
                                                         "test list when a base hash is given",
}
