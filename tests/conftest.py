"""Shared fixtures. Tests run on CPU, one torch thread, offline."""

from __future__ import annotations

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))  # tests/fixtures_layouts.py for unit/ and integration/

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# The standard weight caches (searched before the harness's own) point at an empty folder of this run: a test
# never reads the user's real caches, and one that follows a remedy's "put it here" never writes into them.
_CACHES = tempfile.mkdtemp(prefix="fsadbench-test-caches-")
for _var, _sub in (("HF_HOME", "hf"), ("HF_HUB_CACHE", "hf/hub"), ("TORCH_HOME", "torch")):
    os.environ[_var] = os.path.join(_CACHES, _sub)
os.environ.pop("HUGGINGFACE_HUB_CACHE", None)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _own_weight_caches(tmp_path_factory, monkeypatch):
    """Each test its own empty standard caches (what one test puts there never reaches another)."""
    root = tmp_path_factory.mktemp("caches")
    for var, sub in (("HF_HOME", "hf"), ("HF_HUB_CACHE", "hf/hub"), ("TORCH_HOME", "torch")):
        monkeypatch.setenv(var, str(root / sub))


@pytest.fixture(scope="session")
def tiny_backbone():
    """The shipped tiny random open_clip model (15x15 grid, 12 blocks) on CPU."""
    from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec

    return Backbone(BackboneSpec(TINY_MODEL, "none"), device="cpu")


@pytest.fixture()
def feature_store(tiny_backbone, tmp_path):
    from fsadbench.backbone.features import FeatureStore

    return FeatureStore(tiny_backbone, cache_dir=tmp_path / "cache", batch_size=8)


@pytest.fixture()
def method_ctx(tiny_backbone, feature_store):
    from fsadbench.protocol.method import MethodContext

    return MethodContext(backbone=tiny_backbone, features=feature_store, device=torch.device("cpu"), seed=0)


@pytest.fixture(scope="session")
def tiny_vision_backbones():
    """The tiny random timm / torchvision configurations on CPU, built once: name -> backbone."""
    from fsadbench.backbone.load import load_backbone
    from fsadbench.backbone.spec import parse_backbone

    return {n: load_backbone(parse_backbone(n, "none"))
            for n in ("wide_resnet50_2-tiny", "resnet18-tiny", "dinov2-tiny")}


@pytest.fixture()
def context_for(tiny_backbone, tiny_vision_backbones, tmp_path):
    """``context_for(method class, options)``: a MethodContext on the backbone that method resolves to in the
    pipeline check (the tiny CLIP for the CLIP methods, its family's tiny config otherwise)."""
    from fsadbench.backbone.features import FeatureStore
    from fsadbench.backbone.spec import BackboneSpec
    from fsadbench.protocol.method import MethodContext

    def make(cls, options=None, seed=0):
        spec = cls.backbone_for(cls.make_options(dict(options or {})), BackboneSpec("fsad-tiny-vit", "none"))
        bb = tiny_backbone if spec.family == "open_clip" else tiny_vision_backbones[spec.model]
        store = FeatureStore(bb, cache_dir=tmp_path / "cache", batch_size=8)
        return MethodContext(backbone=bb, features=store, device=torch.device("cpu"), seed=seed)

    return make
