"""The classic baselines as methods: which backbone, which layers reach the core, which options, on the
tiny configurations of their families (the functional cores' equations are tested beside the cores; the
mutation selection of the glue is the faster tests/unit/test_baseline_glue.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from fixtures_methods import RecordingCore

from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.core.registry import METHODS
from fsadbench.core.types import CategoryInfo
from fsadbench.core.variants import W_VG

INFO = CategoryInfo("synthetic", "x", "x")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    from fixtures_layouts import random_image_refs

    return random_image_refs(tmp_path_factory.mktemp("img"), 4, 40, 48, prefix="")


def make(context_for, name, **options):
    cls, defaults = METHODS.get(name)
    opts = {**defaults, **options}
    return cls(context_for(cls, opts), **opts)


@pytest.mark.parametrize("name, backbone, layers", [
    ("patchcore", "wide_resnet50_2-tiny", ("layer2", "layer3")),
    ("padim", "wide_resnet50_2-tiny", ("layer1", "layer2", "layer3")),
    ("fastrecon", "wide_resnet50_2-tiny", ("layer2", "layer3")),
    ("spade", "wide_resnet50_2-tiny", ("layer1", "layer2", "layer3")),
    ("anomalydino", "dinov2-tiny", ("block4",)),
])
def test_backbone_layers_and_variant(context_for, name, backbone, layers):
    m = make(context_for, name)
    assert m.ctx.backbone.spec.model == backbone and m.layers == layers
    assert m.variants == (W_VG,) and m.min_shots == 1 and m.feature_specs == ("layers",) and m.default_sigma == 4.0
    assert m.spec.name == "layers"
    d = m.describe()
    assert d["backbone"] == m.ctx.backbone.spec.name and d["backbone_weights"] == "none"
    assert d["layers"] == list(layers) and d["fidelity_notes"] == list(type(m).fidelity_notes)
    with pytest.raises(NotApplicable, match=f"^{name} needs at least one normal shot"):
        m.fit([], INFO)


def test_reference_defaults_and_sources():
    from fsadbench.methods.anomalydino.model import AnomalyDINOMethod
    from fsadbench.methods.padim.model import PadimMethod
    from fsadbench.methods.patchcore.model import PatchCoreMethod
    from fsadbench.methods.spade.model import GLOBAL_LAYER, SpadeMethod

    own = {"backbone": "", "backbone_weights": "", "layers": ()}
    # the official scoring and pooling (patchcore-inspection README l.29), anomalib's 9 neighbours for its option
    assert dataclasses.asdict(PatchCoreMethod.Options()) == {**own, "scoring": "official", "num_neighbors": 9,
                                                            "coreset_ratio": 1.0, "target_dim": 1024,
                                                            "pretrain_dim": 1024}
    assert dataclasses.asdict(PadimMethod.Options()) == {**own, "n_features": None, "reg": 0.01}
    assert dataclasses.asdict(SpadeMethod.Options()) == {**own, "top_k": 5, "global_layer": "layer4"}
    assert GLOBAL_LAYER == "layer4"
    assert dataclasses.asdict(AnomalyDINOMethod.Options()) == {**own, "rotate_shots": True, "masking": "reference",
                                                              "mask_shots": False, "num_neighbors": 1,
                                                              "top_fraction": 0.01}
    for cls in (PatchCoreMethod, PadimMethod, SpadeMethod):  # the reference codes' WRN-50, ImageNet weights
        assert (cls.backbone_default, cls.backbone_tiny) == ("torchvision:wide_resnet50_2",
                                                             "torchvision:wide_resnet50_2-tiny")
        assert cls.backbone_weights_default is None  # the family's: IMAGENET1K_V1
    assert PatchCoreMethod.reference_layers == ("layer2", "layer3")
    assert PadimMethod.reference_layers == SpadeMethod.reference_layers == ("layer1", "layer2", "layer3")
    # DINOv2 ViT-S/14 at the reference's resolution 448
    assert (AnomalyDINOMethod.backbone_default, AnomalyDINOMethod.backbone_tiny) == (
        "timm:vit_small_patch14_dinov2@448", "timm:dinov2-tiny")


def test_patchcore_feeds_its_layers_in_order_and_passes_options(context_for, refs):
    m = make(context_for, "patchcore", coreset_ratio=0.5, num_neighbors=3, target_dim=64, scoring="anomalib")
    assert (m.core.coreset_ratio, m.core.num_neighbors, m.core.target_dim, m.core.seed) == (0.5, 3, 64, 0)
    rec = m.core = RecordingCore(torch.zeros(4, 4, 4), torch.arange(4.0))
    m.fit(refs[:2], INFO)
    (kind, (maps,)), = rec.calls
    assert kind == "fit" and [t.shape[1:] for t in maps] == [(512, 16, 16), (1024, 8, 8)]
    want = m.ctx.backbone.encode(m.ctx.features.pixels(refs[:2]), ["layer2", "layer3"])
    assert torch.equal(maps[0], want["layer2"]) and torch.equal(maps[1], want["layer3"])
    pred = m.predict(refs)[W_VG]
    assert pred.maps.shape == (4, 4, 4) and pred.scores.tolist() == [0.0, 1.0, 2.0, 3.0]


def test_patchcore_end_to_end_and_option_checks(context_for, refs):
    m = make(context_for, "patchcore")
    m.fit(refs[:2], INFO)
    pred = m.predict(refs)[W_VG]
    assert pred.maps.shape == (4, 16, 16) and abs(pred.maps[:2]).max() < 1e-3
    assert pred.maps[2].min() > 0 and m.describe()["memory_rows"] == 2 * 16 * 16
    assert m.describe()["score"] == "squared L2 to the nearest memory patch"  # the official scoring
    assert m.core.memory.shape == (2 * 16 * 16, 1024)  # the official 1024-d pooling
    assert np.allclose(pred.scores, pred.maps.reshape(4, -1).max(1))  # the plain max
    for bad, match in (({"coreset_ratio": 0}, "coreset_ratio' must be in \\(0, 1\\], got 0"),
                       ({"coreset_ratio": 1.5}, "got 1.5"), ({"num_neighbors": 0}, "num_neighbors' must be >= 1")):
        with pytest.raises(ConfigError, match=match):
            make(context_for, "patchcore", **bad)
    assert make(context_for, "patchcore", coreset_ratio=1).core.coreset_ratio == 1.0
    assert make(context_for, "patchcore", num_neighbors=1, scoring="anomalib").core.num_neighbors == 1


def test_patchcore_seed_reaches_the_coreset(context_for):
    from fsadbench.methods.patchcore.model import PatchCoreMethod

    assert PatchCoreMethod(context_for(PatchCoreMethod, {}, seed=7)).core.seed == 7


def test_layers_option_and_bad_layers(context_for):
    assert make(context_for, "patchcore", layers="layer1, layer3").layers == ("layer1", "layer3")
    assert make(context_for, "patchcore", layers=["layer3"]).spec.params == (("layers", ("layer3",)),)
    with pytest.raises(ConfigError, match=r"^patchcore option 'layers' must be a list of layer names"):
        make(context_for, "patchcore", layers=[3])
    with pytest.raises(ConfigError, match=r"^layers \['block2'\] unknown"):
        make(context_for, "padim", layers=["block2"])


def test_padim_reads_the_models_channel_defaults(context_for, refs):
    m = make(context_for, "padim")
    assert m.core.backbone == "wide_resnet50_2" and m.core.n_features is None and m.core.reg == 0.01
    m.fit(refs[:2], INFO)
    assert m.describe()["n_features"] == 550
    assert m.describe()["image_score"].startswith("max of the map upsampled to 224 px")
    pred = m.predict(refs)[W_VG]
    from fsadbench.methods.padim.model import smoothed_max  # main.py l. 172-185: max of the smoothed 224 px map

    want = smoothed_max(torch.as_tensor(pred.maps), 224, 4.0).numpy()
    assert pred.maps.shape == (4, 32, 32) and (pred.scores == want).all()
    m2 = make(context_for, "padim", backbone="resnet18-tiny", n_features=20, reg=0.1)
    assert m2.core.backbone == "resnet18" and (m2.core.n_features, m2.core.reg) == (20, 0.1)
    assert make(context_for, "padim").describe()["n_features"] is None  # before fit


def test_spade_global_feature_is_layer4_average_pooled(context_for, refs):
    m = make(context_for, "spade", top_k=1)
    assert m.spec.params == (("layers", ("layer1", "layer2", "layer3", "layer4")),) and m.core.top_k == 1
    rec = m.core = RecordingCore()
    m.fit(refs[:2], INFO)
    (_, (glob, maps)), = rec.calls
    l4 = m.ctx.backbone.encode(m.ctx.features.pixels(refs[:2]), ["layer4"])["layer4"]
    assert torch.allclose(glob, l4.mean(dim=(2, 3))) and [t.shape[1] for t in maps] == [256, 512, 1024]
    with pytest.raises(ConfigError, match="top_k' must be >= 1, got 0"):
        make(context_for, "spade", top_k=0)
    with pytest.raises(ConfigError, match="unknown"):
        make(context_for, "spade", global_layer="layer9")
    m = make(context_for, "spade")
    m.fit(refs[:2], INFO)
    pred = m.predict(refs)[W_VG]  # K = min(5, 2): a shot's score is half its distance to the other shot
    assert pred.maps.shape == (4, 32, 32) and pred.scores[0] == pytest.approx(pred.scores[1]) and pred.scores[0] > 0
    assert abs(pred.maps[:2]).max() < 1e-3  # every position of a shot is in the gallery
    m = make(context_for, "spade", top_k=1)
    m.fit(refs[:2], INFO)
    assert abs(m.predict(refs)[W_VG].scores[:2]).max() < 1e-3
    assert m.describe()["global_feature"] == "layer4 average-pooled"


def test_anomalydino_rotates_the_shots_and_masks_on_request(context_for, refs, monkeypatch):
    from fsadbench.methods.anomalydino import torch_model as core

    m = make(context_for, "anomalydino")
    m.fit(refs[:2], INFO)
    assert m.core.memory.shape == (2 * 8 * 64, 48)  # 8 rotations x 2 shots x 8 x 8 tokens
    assert m.describe()["memory_rows"] == 1024
    px = core.rotate_images(m.ctx.features.pixels(refs[:1]))
    want = m.ctx.backbone.encode(px, ["block4"])["block4"].reshape(-1, 48)
    assert torch.allclose(m.core.memory[:8 * 64], want, atol=1e-5)
    pred = m.predict(refs)[W_VG]
    assert pred.maps.shape == (4, 8, 8) and abs(pred.maps[:2]).max() < 1e-4
    plain = make(context_for, "anomalydino", rotate_shots=False)
    plain.fit(refs[:2], INFO)
    assert plain.core.memory.shape == (128, 48)
    seen = []
    monkeypatch.setattr(core, "background_mask", lambda t, grid: seen.append(grid) or torch.ones(grid, dtype=bool))
    masked = make(context_for, "anomalydino", rotate_shots=False, masking=True)
    masked.fit(refs[:2], INFO)
    assert seen == []  # the shots are masked only with mask_shots
    masked.predict(refs)
    assert seen == [(8, 8)] * 4
    both = make(context_for, "anomalydino", rotate_shots=False, masking=True, mask_shots=True)
    both.fit(refs[:2], INFO)
    assert len(seen) == 6


def test_anomalydino_option_checks(context_for):
    with pytest.raises(ConfigError, match="num_neighbors must be >= 1"):
        make(context_for, "anomalydino", num_neighbors=0)
    with pytest.raises(ConfigError, match="top_fraction in"):
        make(context_for, "anomalydino", top_fraction=0)
    with pytest.raises(ConfigError, match="reads one ViT block"):
        make(context_for, "anomalydino", layers=["block2", "block3"])
    m = make(context_for, "anomalydino", layers=["block2"], num_neighbors=2, top_fraction=0.5)
    assert m.layers == ("block2",) and (m.core.num_neighbors, m.core.fraction) == (2, 0.5)


def test_test_images_are_encoded_once_per_backbone_across_fits(context_for, refs):
    m = make(context_for, "patchcore")
    store = m.ctx.features
    m.fit(refs[:1], INFO)
    m.predict(refs)
    first = store.stats.encoded
    m2 = type(m)(m.ctx)
    m2.fit(refs[1:2], INFO)  # another shot / seed
    m2.predict(refs)
    assert first == 4 and store.stats.encoded == 4


def test_fastrecon_on_the_tiny_wrn50_maps_on_layer2_grid(context_for, refs):
    m = make(context_for, "fastrecon")
    m.fit(refs[:1], INFO)  # 128 px: a 16 x 16 layer2 grid, int(256 x 0.01) = 2 support rows of 512 + 1024
    assert m.core.reconstructor.support.shape == (2, 1536) and m.describe()["support_rows"] == 2
    pred = m.predict(refs[1:])[W_VG]
    assert pred.maps.shape == (3, 16, 16) and bool(torch.isfinite(torch.as_tensor(pred.maps)).all())
