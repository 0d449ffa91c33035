"""``fastrecon`` as a method (methods/fastrecon/model.py): registration, every default with its source, the option
checks and their messages, what reaches the core, predict and describe; on the stand-in backbone and feature
store of test_baseline_glue (no model is built)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from test_baseline_glue import INFO, FakeBackbone, ctx_for, refs

from fsadbench.backbone.spec import BackboneSpec
from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.core.registry import METHODS
from fsadbench.core.variants import W_VG
from fsadbench.methods.common.baseline import SIGMA_AT_EVAL, SQUASH_224, WideResNet50Baseline
from fsadbench.methods.fastrecon import torch_model as core
from fsadbench.methods.fastrecon.model import POOL_NOTE, RATIO_NOTE, SOLVE_NOTE, FastReconMethod

EQUIVALENT_MUTANTS: dict[str, str] = {}


def method(**options) -> FastReconMethod:
    return FastReconMethod(ctx_for(), **options)


def test_registered_under_its_name_with_no_preset_options():
    cls, defaults = METHODS.get("fastrecon")
    assert cls is FastReconMethod and defaults == {} and cls.name == "fastrecon"
    assert cls.paper == ("FastRecon (Fang et al., ICCV 2023): Few-shot Industrial Anomaly Detection via Fast "
                         "Feature Reconstruction")


def test_defaults_and_their_sources():
    assert dataclasses.asdict(FastReconMethod.Options()) == {"backbone": "", "backbone_weights": "", "layers": (),
                                                             "lam": 2.0, "coreset_ratio": 0.01}
    assert issubclass(FastReconMethod, WideResNet50Baseline)  # main.py l. 240: WRN-50, ImageNet weights
    assert (FastReconMethod.backbone_default, FastReconMethod.backbone_tiny) == (
        "torchvision:wide_resnet50_2", "torchvision:wide_resnet50_2-tiny")
    assert FastReconMethod.backbone_weights_default is None  # the family's IMAGENET1K_V1
    assert FastReconMethod.reference_layers == ("layer2", "layer3")  # main.py l. 245-246
    assert FastReconMethod.default_sigma == 4.0 and FastReconMethod.sigma_size == 224  # main.py l. 412-413
    assert FastReconMethod.variants == (W_VG,) and FastReconMethod.min_shots == 1 and FastReconMethod.version == 1
    assert FastReconMethod.feature_specs == ("layers",) and FastReconMethod.fit_scope == "category"
    assert FastReconMethod.fidelity_notes == (POOL_NOTE, RATIO_NOTE, SOLVE_NOTE, SQUASH_224, SIGMA_AT_EVAL)
    assert "main.py l. 352-353" in POOL_NOTE and "0.001 (l. 446)" in RATIO_NOTE and "float64" in SOLVE_NOTE


def test_backbone_resolution():
    opts = FastReconMethod.make_options({})
    tiny = FastReconMethod.backbone_for(opts, BackboneSpec("fsad-tiny-vit", "none"))
    assert (tiny.family, tiny.model, tiny.pretrained) == ("torchvision", "wide_resnet50_2-tiny", "none")
    real = FastReconMethod.backbone_for(opts, BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"))
    assert (real.family, real.model, real.pretrained) == ("torchvision", "wide_resnet50_2", "IMAGENET1K_V1")


def test_options_reach_the_core_as_numbers():
    c = method().core
    assert isinstance(c, core.FastRecon) and (c.lam, c.coreset_ratio, c.chunk) == (2.0, 0.01, core.DEFAULT_CHUNK)
    c = method(lam="0.5", coreset_ratio="0.25").core
    assert (c.lam, c.coreset_ratio) == (0.5, 0.25) and type(c.lam) is float and type(c.coreset_ratio) is float
    assert method(lam=0).core.lam == 0.0 and method(coreset_ratio=1).core.coreset_ratio == 1.0


@pytest.mark.parametrize("ratio", [0, -0.5, 1.000001, 1.5])
def test_coreset_ratio_is_in_zero_one(ratio):
    with pytest.raises(ConfigError) as err:
        method(coreset_ratio=ratio)
    assert str(err.value) == f"method 'fastrecon': option 'coreset_ratio' must be > 0 and <= 1 (got {ratio!r})"


@pytest.mark.parametrize("lam", [-0.001, -2, float("nan"), float("inf")])
def test_lam_is_not_negative(lam):
    """The declared range (one checker, the same at planning and construction); NaN and infinity refused."""
    with pytest.raises(ConfigError) as err:
        method(lam=lam)
    why = ("must be a finite number" if lam != lam or lam == float("inf")
           else "must be >= 0 (the weight of the distribution term)")
    assert str(err.value) == f"method 'fastrecon': option 'lam' {why} (got {lam!r})"


def test_fit_and_predict_are_the_core_on_layer2_and_layer3():
    m = method(coreset_ratio=0.5, lam=1.5)
    shots, tests = refs(1), refs(3, start=5)
    m.fit(shots, INFO)
    enc = m.ctx.backbone.encode(m.ctx.features.pixels(shots), ["layer2", "layer3"])
    want = core.FastRecon(lam=1.5, coreset_ratio=0.5)
    want.fit([enc["layer2"], enc["layer3"]])
    assert torch.equal(m.core.reconstructor.support, want.reconstructor.support)
    assert m.core.reconstructor.support.shape == (8, 6 + 8)  # int(16 * 0.5) rows of layer2 + layer3 channels
    pred = m.predict(tests)
    assert list(pred) == [W_VG]
    test_enc = m.ctx.backbone.encode(m.ctx.features.pixels(tests), ["layer2", "layer3"])
    maps, scores = want.predict([test_enc["layer2"], test_enc["layer3"]])
    assert np.allclose(pred[W_VG].maps, maps.numpy()) and pred[W_VG].maps.shape == (3, 4, 4)  # layer2's grid
    assert np.allclose(pred[W_VG].scores, scores.numpy())
    assert np.allclose(pred[W_VG].scores, np.asarray(pred[W_VG].maps).reshape(3, -1).max(axis=1))


def test_zero_shots_are_refused_and_the_default_ratio_needs_enough_rows():
    with pytest.raises(NotApplicable, match=r"^fastrecon needs at least one normal shot"):
        method().fit([], INFO)
    with pytest.raises(ValueError, match=r"coreset_ratio 0.01 of 16 support rows keeps 0 rows"):
        method().fit(refs(1), INFO)  # a 4 x 4 stand-in grid; a 224 px WRN-50 shot has 784 rows (7 kept)


def test_describe_before_and_after_fit():
    m = FastReconMethod(ctx_for(FakeBackbone("wide_resnet50_2", pretrained="IMAGENET1K_V1")), coreset_ratio=0.25)
    d = m.describe()
    assert d["support_rows"] == 0 and d["backbone"] == "torchvision:wide_resnet50_2"
    assert d["backbone_weights"] == "IMAGENET1K_V1" and d["layers"] == ["layer2", "layer3"]
    assert d["options_resolved"] == {"backbone": "", "backbone_weights": "", "layers": ("layer2", "layer3"),
                                     "lam": 2.0, "coreset_ratio": 0.25}
    assert d["fidelity_notes"] == list(FastReconMethod.fidelity_notes)
    assert d["score"] == "L2 norm of the residual Q - Q_hat of the closed-form reconstruction per position"
    assert d["image_score"] == "max of the raw map (official main.py l. 410)"
    m.fit(refs(2), INFO)
    assert m.describe()["support_rows"] == 8  # int(2 x 16 x 0.25)
