"""The classic baselines' glue (methods/common/baseline.py, methods/{patchcore,padim,spade,anomalydino}/model.py)
on a stand-in backbone and feature store: option checks and their messages, which layers are encoded and
reach the core in which order, what each method hands its core, and what predict / describe return.

Fast by design (no model is built): the mutation selection of these five modules. The same wiring on the
families' tiny random backbones is tests/integration/test_baselines.py.

EQUIVALENT_MUTANTS lists the surviving mutants of those modules that cannot change behaviour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_methods import RecordingCore

from fsadbench.backbone.spec import BackboneSpec
from fsadbench.backbone.vision import VisionBackbone
from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.core.types import CategoryInfo, ImageRef
from fsadbench.core.variants import W_VG
from fsadbench.methods.anomalydino import torch_model as dino_core
from fsadbench.methods.anomalydino.model import AnomalyDINOMethod
from fsadbench.methods.common.baseline import (SIGMA_AT_EVAL, SQUASH_224, Baseline, WideResNet50Baseline,
                                               str_tuple)
from fsadbench.methods.padim.model import PadimMethod
from fsadbench.methods.patchcore import model as pcm
from fsadbench.methods.patchcore.model import PatchCoreMethod
from fsadbench.methods.spade.model import SpadeMethod
from fsadbench.protocol.method import MethodContext

#: equivalent survivors of mutation testing (modules: methods/common/baseline.py, methods/*/model.py)
EQUIVALENT_MUTANTS: dict[str, str] = {}  # none: 289/289 killed (2026-12-03); patchcore/model.py 114/114 (2026-12-07)

INFO = CategoryInfo("synthetic", "x", "x")
CNN_SHAPES = {"layer1": (4, 8, 8), "layer2": (6, 4, 4), "layer3": (8, 2, 2), "layer4": (10, 2, 2)}
VIT_BLOCKS = ("block1", "block2", "block3", "block4")
TOKEN_DIM = 5
SIZE = 16  # pixels


class FakeBackbone:
    """A timm / torchvision adapter's interface without a model: CNN maps or ViT tokens that are a fixed
    function of the pixels (so rotated shots give other tokens); every ``encode`` call is recorded."""

    check_layers = VisionBackbone.check_layers  # the adapters' own range check and message

    def __init__(self, model="wide_resnet50_2-tiny", family="torchvision", grid=None, pretrained="none"):
        self.spec = BackboneSpec(model, pretrained, family=family)
        self.grid = grid
        self.layer_names = VIT_BLOCKS if grid else tuple(CNN_SHAPES)
        self.calls: list[tuple[int, tuple[str, ...], bool]] = []  # (batch, layers, grad enabled)

    def weight(self, layer: str, channels: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(sum(map(ord, layer)))
        return torch.randn(channels, 3, generator=g)

    def encode(self, pixels: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        self.calls.append((pixels.shape[0], tuple(layers), torch.is_grad_enabled()))
        out = {}
        for n in layers:
            if self.grid:  # B x N x D tokens
                px = F.adaptive_avg_pool2d(pixels, self.grid).flatten(2).transpose(1, 2)
                out[n] = px @ self.weight(n, TOKEN_DIM).T
            else:  # B x C x h x w maps
                c, h, w = CNN_SHAPES[n]
                out[n] = torch.einsum("bkhw,ck->bchw", F.adaptive_avg_pool2d(pixels, (h, w)), self.weight(n, c))
        return out


class FakeStore:
    """The feature store's two entry points: ``pixels`` (seeded per image) and ``get`` (the spec's compute on
    those pixels, as the real store does on a miss); every ``get`` is recorded."""

    def __init__(self, backbone):
        self.backbone = backbone
        self.requests: list = []

    def pixels(self, refs) -> torch.Tensor:
        return torch.stack([torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(int(r.digest)))
                            for r in refs])

    def get(self, refs, spec):
        self.requests.append((list(refs), spec))
        return spec.compute(self.backbone, self.pixels(refs))


def refs(n: int, start: int = 0) -> list[ImageRef]:
    return [ImageRef(Path(f"/nowhere/{i}.png"), str(i)) for i in range(start, start + n)]


def ctx_for(backbone=None, seed=0, batch_size=32) -> MethodContext:
    bb = backbone or FakeBackbone()
    return MethodContext(backbone=bb, features=FakeStore(bb), device=torch.device("cpu"), seed=seed,
                         batch_size=batch_size)


def vit(grid=(2, 3)) -> FakeBackbone:
    return FakeBackbone("dinov2-tiny", "timm", grid=grid)


class Plain(Baseline):
    name = "plain"
    reference_layers = ("layer2", "layer3")


def plain(**options) -> Plain:
    m = Plain(ctx_for(), **options)
    m.core = RecordingCore()
    return m


# -- methods/common/baseline.py -------------------------------------------------------------------


@pytest.mark.parametrize("value, want", [
    ("layer2,layer3", ("layer2", "layer3")), (" layer2 , layer3 ", ("layer2", "layer3")), ("layer3", ("layer3",)),
    (["layer1", " layer4"], ("layer1", "layer4")), (("layer2",), ("layer2",)),
])
def test_str_tuple_reads_yaml_and_cli_forms(value, want):
    assert str_tuple(value, "m", "layers") == want


@pytest.mark.parametrize("value", [[], (), "", ",", "layer2,", [3], ["layer2", " "], ["layer2", None], 5, None,
                                   {"layer2": 1}])
def test_str_tuple_refuses_what_is_not_a_list_of_names(value):
    want = f"m option 'ls' must be a list of layer names, e.g. [layer2, layer3]; got {value!r}"
    with pytest.raises(ConfigError) as err:
        str_tuple(value, "m", "ls")
    assert str(err.value) == want


def test_layers_default_to_the_reference_layers_and_the_option_overrides_them():
    m = plain()
    assert m.layers == m.options.layers == ("layer2", "layer3") and m.encoded_layers() == ("layer2", "layer3")
    assert m.spec.name == "layers" and m.spec.params == (("layers", ("layer2", "layer3")),)
    m = plain(layers="layer4, layer1")
    assert m.layers == m.options.layers == ("layer4", "layer1")  # the option's order: the core's input order
    assert m.spec.params == (("layers", ("layer1", "layer4")),)


def test_bad_layers_name_the_method_the_option_and_the_backbone():
    with pytest.raises(ConfigError, match=r"^plain option 'layers' must be a list of layer names, .*got \[7\]$"):
        plain(layers=[7])
    with pytest.raises(ConfigError) as err:
        plain(layers=["layer2", "stage9"])
    assert str(err.value) == ("layers ['stage9'] unknown: torchvision:wide_resnet50_2-tiny has "
                              "layer1, layer2, layer3, layer4")


def test_fit_and_predict_hand_the_core_the_layer_maps_in_order():
    m = plain(layers=["layer3", "layer1"])
    shots, tests = refs(2), refs(3, start=10)
    m.fit(shots, INFO)
    (kind, (maps,)), = m.core.calls
    want = m.ctx.backbone.encode(m.ctx.features.pixels(shots), ["layer3", "layer1"])
    assert kind == "fit" and len(maps) == 2
    assert torch.equal(maps[0], want["layer3"]) and torch.equal(maps[1], want["layer1"])
    (got_refs, spec), = m.ctx.features.requests  # one request, through the store, with the method's spec
    assert got_refs == shots and spec is m.spec
    out_maps, scores = torch.rand(3, 4, 4), torch.tensor([3.0, 1.0, 2.0])
    m.core.out = (out_maps, scores)
    pred = m.predict(tests)
    assert list(pred) == [W_VG]
    assert np.array_equal(pred[W_VG].maps, out_maps.numpy()) and pred[W_VG].scores.tolist() == [3.0, 1.0, 2.0]
    kind, (maps,) = m.core.calls[-1]
    assert kind == "predict" and [t.shape[1] for t in maps] == [8, 4] and m.ctx.features.requests[-1][0] == tests


def test_fit_refuses_zero_shots_before_the_core_sees_anything():
    m = plain()
    with pytest.raises(NotApplicable) as err:
        m.fit([], INFO)
    assert str(err.value) == "plain needs at least one normal shot (shots=0 is zero-shot)"
    assert m.core.calls == [] and m.ctx.features.requests == []
    m.fit(refs(1), INFO)  # one shot is enough
    assert [c[0] for c in m.core.calls] == ["fit"]


def test_describe_names_backbone_weights_layers_options_and_notes():
    m = plain(layers="layer1")
    assert m.describe() == {"options_resolved": {"backbone": "", "backbone_weights": "", "layers": ("layer1",)},
                            "fidelity_notes": [], "backbone": "torchvision:wide_resnet50_2-tiny",
                            "backbone_weights": "none", "layers": ["layer1"]}
    m = Plain(ctx_for(FakeBackbone("resnet18", pretrained="IMAGENET1K_V1")))
    d = m.describe()
    assert (d["backbone"], d["backbone_weights"], d["layers"]) == ("torchvision:resnet18", "IMAGENET1K_V1",
                                                                  ["layer2", "layer3"])


def test_the_wrn50_baselines_share_the_reference_backbone_and_notes():
    assert (WideResNet50Baseline.backbone_default, WideResNet50Baseline.backbone_tiny) == (
        "torchvision:wide_resnet50_2", "torchvision:wide_resnet50_2-tiny")
    for cls in (PatchCoreMethod, PadimMethod, SpadeMethod):
        assert issubclass(cls, WideResNet50Baseline) and cls.backbone_default == "torchvision:wide_resnet50_2"
        assert SQUASH_224 in cls.fidelity_notes and SIGMA_AT_EVAL in cls.fidelity_notes
        assert cls.sigma_size == 224  # the official codes smooth the map of their 224 px crop
    assert AnomalyDINOMethod.sigma_size == "original"
    for cls in (PatchCoreMethod, PadimMethod, SpadeMethod, AnomalyDINOMethod):
        assert cls.variants == (W_VG,) and cls.min_shots == 1 and cls.feature_specs == ("layers",)
        assert cls.default_sigma == 4.0


# -- methods/patchcore/model.py -------------------------------------------------------------------


def patchcore(seed=0, **options) -> PatchCoreMethod:
    return PatchCoreMethod(ctx_for(seed=seed), **options)


def test_patchcore_hands_its_options_and_the_seed_to_the_core():
    m = patchcore()
    assert m.layers == ("layer2", "layer3")
    c = m.core
    # the official code's scoring and pooling (README l.29), the few-shot full memory
    assert (c.num_neighbors, c.coreset_ratio, c.target_dim, c.pretrain_dim, c.scoring, c.seed) == (
        9, 1.0, 1024, 1024, "official", 0)
    assert PatchCoreMethod.version == 2  # the official scoring became the default
    c = patchcore(seed=7, num_neighbors=3.0, coreset_ratio="0.5", target_dim="64", pretrain_dim="32",
                  scoring="anomalib").core
    assert (c.num_neighbors, c.coreset_ratio, c.target_dim, c.pretrain_dim, c.scoring, c.seed) == (
        3, 0.5, 64, 32, "anomalib", 7)
    assert type(c.num_neighbors) is int and type(c.coreset_ratio) is float and type(c.target_dim) is int
    assert type(c.pretrain_dim) is int and patchcore(target_dim=None).core.target_dim is None


def test_patchcore_scoring_and_dims_are_checked():
    with pytest.raises(ConfigError) as err:
        patchcore(scoring="faiss")
    assert str(err.value) == ("patchcore option 'scoring' must be one of ('official', 'anomalib') "
                              "(official: 'official'), got 'faiss'")
    for bad in ({"target_dim": 0}, {"pretrain_dim": 0}, {"target_dim": -3}):  # the declared ranges, one line
        with pytest.raises(ConfigError) as err:
            patchcore(**bad)
        (name, value), = bad.items()
        assert str(err.value) == f"method 'patchcore': option {name!r} must be >= 1 (got {value})"
    assert patchcore(target_dim=1, pretrain_dim=1).core.pretrain_dim == 1  # the bounds are valid


def test_patchcore_coreset_and_neighbours_departures_are_said_or_refused():
    """A coreset is anomalib's greedy, not the official approximate one: a note with the official sampler;
    num_neighbors only acts under scoring=anomalib: refused with the official scoring, not silently ignored."""
    notes = patchcore(coreset_ratio=0.1).describe()["fidelity_notes"]
    assert notes[0] == pcm.CORESET_NOTE and "ApproximateGreedyCoresetSampler" in pcm.CORESET_NOTE
    assert notes[1:] == list(PatchCoreMethod.fidelity_notes)
    assert pcm.CORESET_NOTE not in patchcore().describe()["fidelity_notes"]
    with pytest.raises(ConfigError, match="'num_neighbors' \\(5\\) is used by scoring=anomalib only"):
        patchcore(num_neighbors=5)
    assert patchcore(num_neighbors=9).describe()["image_score"] == "max of the patch scores"  # the default: fine
    assert patchcore(scoring="anomalib", num_neighbors=5).core.num_neighbors == 5


def test_patchcore_choices_and_their_notes():
    d = patchcore().describe()
    assert d["fidelity_notes"] == list(PatchCoreMethod.fidelity_notes)  # the official choices: no note of them
    assert not any("anomalib's scoring" in n or "anomalib's embedding" in n for n in d["fidelity_notes"])
    assert (d["score"], d["image_score"]) == ("squared L2 to the nearest memory patch", "max of the patch scores")
    assert d["choices"] == {
        "scoring": "official (official: squared L2 to the nearest memory patch (faiss IndexFlatL2, common.py "
                   "l.43-48, anomaly_scorer_num_nn 1, README l.29), image score = max of the patch scores "
                   "(PatchMaker.score, patchcore.py l.313-319))",
        "embedding": "3 x 3 patches pooled to 1024 per layer, the layers to 1024 (official: 3 x 3 patches pooled to "
                     "1024 per layer, the layers to 1024 (Preprocessing / Aggregator, common.py l.145-183; README "
                     "l.29 --pretrain_embed_dimension 1024 --target_embed_dimension 1024))",
        "coreset_ratio": "1.0 (official: 0.1, README l.30 sampler -p 0.1)"}
    a = patchcore(scoring="anomalib", target_dim=None, num_neighbors=5).describe()
    assert a["fidelity_notes"][:2] == [pcm.ANOMALIB_SCORING_NOTE, pcm.CONCAT_NOTE]
    assert a["fidelity_notes"][2:] == list(PatchCoreMethod.fidelity_notes)
    assert pcm.ANOMALIB_SCORING_NOTE.endswith("official: " + pcm.OFFICIAL_SCORING)
    assert pcm.CONCAT_NOTE.endswith("official: " + pcm.OFFICIAL_EMBEDDING)
    assert (a["score"], a["image_score"]) == ("L2 to the nearest memory patch",
                                              "re-weighted max over 5 neighbours (anomalib)")
    assert a["choices"]["scoring"].startswith("anomalib (official: squared L2")
    assert a["choices"]["embedding"].startswith("anomalib's concatenation of the 3 x 3 neighbourhood averages "
                                                "(official: 3 x 3 patches pooled to 1024")
    assert patchcore(scoring="anomalib").describe()["fidelity_notes"][1:] == list(PatchCoreMethod.fidelity_notes)
    small = patchcore(target_dim=256, pretrain_dim=512).describe()["fidelity_notes"]
    assert small[0] == "embedding pooled to 512 per layer and 256 in all; official: 1024 and 1024 (README l.29)"
    assert small[1:] == list(PatchCoreMethod.fidelity_notes)
    assert len(patchcore(target_dim=1024, pretrain_dim=512).describe()["fidelity_notes"]) == len(small)
    assert len(patchcore(target_dim=512).describe()["fidelity_notes"]) == len(small)
    both = patchcore(scoring="anomalib", target_dim=256).describe()["fidelity_notes"]  # two departures: two notes
    assert both[:2] == [pcm.ANOMALIB_SCORING_NOTE, "embedding pooled to 1024 per layer and 256 in all; official: "
                                                   "1024 and 1024 (README l.29)"]
    assert both[2:] == list(PatchCoreMethod.fidelity_notes)


@pytest.mark.parametrize("ratio, ok", [(0, False), (-0.5, False), (1e-6, True), (0.5, True), (1, True),
                                       (1.000001, False), (1.5, False)])
def test_patchcore_coreset_ratio_is_in_zero_one(ratio, ok):
    if ok:
        assert patchcore(coreset_ratio=ratio).core.coreset_ratio == ratio
        return
    with pytest.raises(ConfigError) as err:
        patchcore(coreset_ratio=ratio)
    assert str(err.value) == f"patchcore option 'coreset_ratio' must be in (0, 1], got {ratio!r}"


def test_patchcore_num_neighbors_is_at_least_one():
    assert patchcore(scoring="anomalib", num_neighbors=1).core.num_neighbors == 1
    for bad in (0, -2):
        with pytest.raises(ConfigError) as err:
            patchcore(num_neighbors=bad)
        assert str(err.value) == f"patchcore option 'num_neighbors' must be >= 1, got {bad!r}"


def test_patchcore_memory_rows_before_and_after_fit():
    m = patchcore()
    assert m.describe()["memory_rows"] == 0
    m.fit(refs(2), INFO)
    d = m.describe()
    assert d["memory_rows"] == 2 * 4 * 4  # every layer2 position of both shots
    assert d["layers"] == ["layer2", "layer3"] and d["fidelity_notes"] == list(PatchCoreMethod.fidelity_notes)
    pred = m.predict(refs(2) + refs(1, start=5))[W_VG]
    assert pred.maps.shape == (3, 4, 4) and abs(pred.maps[:2]).max() < 1e-4 and pred.scores[2] > 0


# -- methods/padim/model.py -----------------------------------------------------------------------


@pytest.mark.parametrize("model, base", [("wide_resnet50_2-tiny", "wide_resnet50_2"), ("resnet18-tiny", "resnet18"),
                                         ("resnet18", "resnet18"), ("tiny-resnet", "tiny-resnet")])
def test_padim_names_the_core_its_model_without_the_tiny_suffix(model, base):
    m = PadimMethod(ctx_for(FakeBackbone(model)))
    assert m.layers == ("layer1", "layer2", "layer3")
    assert (m.core.backbone, m.core.n_features, m.core.reg) == (base, None, 0.01)


def test_padim_passes_n_features_and_reg_and_describes_the_subset():
    m = PadimMethod(ctx_for(), n_features="5", reg=1)
    assert (m.core.n_features, m.core.reg) == (5, 1.0) and type(m.core.reg) is float
    assert m.describe()["n_features"] is None  # no subset before fit
    m.fit(refs(2), INFO)
    d = m.describe()
    assert d["n_features"] == 5 and (d["score"], d["image_score"]) == (
        "Mahalanobis distance per position",
        "max of the map upsampled to 224 px and smoothed with sigma 4 (official main.py l. 172-185)")
    default = PadimMethod(ctx_for())
    default.fit(refs(1), INFO)
    assert default.describe()["n_features"] == 4 + 6 + 8  # 550 capped at the tiny layers' channels


# -- methods/spade/model.py -----------------------------------------------------------------------


def test_spade_encodes_its_pyramid_and_the_global_layer():
    m = SpadeMethod(ctx_for())
    assert m.layers == ("layer1", "layer2", "layer3") and m.global_layer == "layer4" and m.core.top_k == 5
    assert m.encoded_layers() == ("layer1", "layer2", "layer3", "layer4")
    assert m.spec.params == (("layers", ("layer1", "layer2", "layer3", "layer4")),)
    m = SpadeMethod(ctx_for(), layers=["layer3", "layer2"], global_layer="layer3", top_k=2.0)
    assert m.encoded_layers() == ("layer3", "layer2") and m.global_layer == "layer3"
    assert m.core.top_k == 2 and type(m.core.top_k) is int


def test_spade_hands_the_core_the_pooled_global_feature_and_the_pyramid():
    m = SpadeMethod(ctx_for(), layers=["layer2", "layer1"])
    m.core = RecordingCore()
    shots = refs(2)
    m.fit(shots, INFO)
    (kind, (glob, maps)), = m.core.calls
    want = m.ctx.backbone.encode(m.ctx.features.pixels(shots), ["layer1", "layer2", "layer4"])
    assert kind == "fit" and glob.dtype == torch.float32
    assert torch.allclose(glob, want["layer4"].mean(dim=(2, 3)))  # average pool over the 2 x 2 grid
    assert torch.equal(maps[0], want["layer2"]) and torch.equal(maps[1], want["layer1"]) and len(maps) == 2
    m.core.out = (torch.zeros(1, 8, 8), torch.tensor([0.5]))
    assert m.predict(refs(1))[W_VG].scores.tolist() == [0.5]


def test_spade_option_checks():
    for bad in (0, -1):
        with pytest.raises(ConfigError) as err:
            SpadeMethod(ctx_for(), top_k=bad)
        assert str(err.value) == f"spade option 'top_k' must be >= 1, got {bad!r}"
    assert SpadeMethod(ctx_for(), top_k=1).core.top_k == 1
    with pytest.raises(ConfigError, match=r"^layers \['layer9'\] unknown"):
        SpadeMethod(ctx_for(), global_layer="layer9")


def test_spade_end_to_end_and_describe():
    m = SpadeMethod(ctx_for(), top_k=1)
    m.fit(refs(2), INFO)
    pred = m.predict(refs(2) + refs(1, start=9))[W_VG]
    assert pred.maps.shape == (3, 8, 8) and abs(pred.scores[:2]).max() < 1e-5 and pred.scores[2] > 0
    d = m.describe()
    assert (d["global_feature"], d["score"], d["image_score"]) == (
        "layer4 average-pooled", "L2 to the nearest position of the K nearest shots, mean over layers",
        "mean L2 to the K nearest shots' global features")
    assert d["layers"] == ["layer1", "layer2", "layer3"]


# -- methods/anomalydino/model.py -----------------------------------------------------------------


def dino(backbone=None, batch_size=32, **options) -> AnomalyDINOMethod:
    return AnomalyDINOMethod(ctx_for(backbone or vit(), batch_size=batch_size), **options)


def test_anomalydino_reads_the_last_block_unless_told_and_passes_its_options():
    m = dino()
    assert m.layers == m.options.layers == ("block4",) and m.spec.params == (("layers", ("block4",)),)
    assert (m.core.num_neighbors, m.core.fraction) == (1, 0.01)
    assert dino(layers=()).layers == ("block4",) and dino(layers="").layers == ("block4",)
    m = dino(layers="block2", num_neighbors=3.0, top_fraction="0.5")
    assert m.layers == ("block2",) and (m.core.num_neighbors, m.core.fraction) == (3, 0.5)
    assert type(m.core.num_neighbors) is int and type(m.core.fraction) is float


def test_anomalydino_needs_one_vit_block():
    with pytest.raises(ConfigError) as err:
        dino(layers=["block2", "block3"])
    assert str(err.value) == ("anomalydino reads one ViT block's patch tokens; got layers ['block2', 'block3'] "
                              "on timm:dinov2-tiny")
    with pytest.raises(ConfigError) as err:  # a CNN has no token grid
        dino(FakeBackbone(), layers=["layer3"])
    assert str(err.value) == ("anomalydino reads one ViT block's patch tokens; got layers ['layer3'] on "
                              "torchvision:wide_resnet50_2-tiny")


@pytest.mark.parametrize("nn, fraction, ok", [(1, 1.0, True), (2, 1e-6, True), (0, 0.5, False), (-1, 0.5, False),
                                              (1, 0, False), (1, -0.1, False), (1, 1.000001, False),
                                              (1, 1.5, False)])
def test_anomalydino_option_ranges(nn, fraction, ok):
    if ok:
        assert (dino(num_neighbors=nn, top_fraction=fraction).core.fraction) == fraction
        return
    with pytest.raises(ConfigError) as err:
        dino(num_neighbors=nn, top_fraction=fraction)
    assert str(err.value) == ("anomalydino options: num_neighbors must be >= 1 and top_fraction in (0, 1]; "
                              f"got {nn!r}, {fraction!r}")


def test_anomalydino_memory_is_every_rotation_of_every_shot_encoded_without_grad():
    m = dino(batch_size=3)
    shots = refs(2)
    m.fit(shots, INFO)
    rotated = dino_core.rotate_images(m.ctx.features.pixels(shots))
    want = m.ctx.backbone.encode(rotated, ["block4"])["block4"].reshape(-1, TOKEN_DIM)
    assert m.core.memory.shape == (2 * 8 * 6, TOKEN_DIM) and torch.allclose(m.core.memory, want)
    fit_calls = m.ctx.backbone.calls[:-1]  # the last one is this test's
    assert [c[0] for c in fit_calls] == [3, 3, 3, 3, 3, 1]  # 16 rotated shots in chunks of the batch size
    assert all(layers == ("block4",) and not grad for _, layers, grad in fit_calls)
    assert m.ctx.features.requests == []  # the rotated shots are new pixels, not cached features
    assert m.describe()["memory_rows"] == 96
    zero = dino(batch_size=0)
    zero.fit(refs(1), INFO)
    assert [c[0] for c in zero.ctx.backbone.calls] == [1] * 8  # batch size 0: one image at a time


def test_anomalydino_without_rotation_keeps_the_shots_cached_tokens():
    m = dino(rotate_shots=False)
    assert m.describe()["memory_rows"] == 0
    m.fit(refs(2), INFO)
    want = m.ctx.backbone.encode(m.ctx.features.pixels(refs(2)), ["block4"])["block4"].reshape(-1, TOKEN_DIM)
    assert torch.equal(m.core.memory, want) and m.describe()["memory_rows"] == 12
    assert [r for r, _ in m.ctx.features.requests] == [refs(2)]
    with pytest.raises(NotApplicable, match=r"^anomalydino needs at least one normal shot"):
        m.fit([], INFO)


@pytest.mark.parametrize("masking, mask_shots, shots_masked", [(False, False, False), (False, True, False),
                                                               (True, False, False), (True, True, True)])
def test_anomalydino_masks_the_shots_only_with_masking_and_mask_shots(masking, mask_shots, shots_masked):
    m = dino(rotate_shots=False, masking=masking, mask_shots=mask_shots)
    m.core = RecordingCore(torch.arange(12.0).reshape(2, 6), torch.tensor([4.0, 2.0]))
    pca_masks = m.masks  # the fake tokens' PCA masks drop every patch (refused: the last test); keep half of them
    m.masks = lambda tokens: pca_masks(tokens) | (torch.arange(tokens.shape[1]) % 2 == 0)
    m.fit(refs(2), INFO)
    (_, (tokens, masks)), = m.core.calls
    assert tokens.shape == (2, 6, TOKEN_DIM)
    if shots_masked:
        assert torch.equal(masks, m.masks(tokens)) and masks.shape == (2, 6)
    else:
        assert masks is None
    pred = m.predict(refs(2, start=4))[W_VG]
    _, (tokens, masks) = m.core.calls[-1]
    assert tokens.dtype == torch.float32 and (masks is None) == (not masking)
    if masking:
        assert torch.equal(masks, m.masks(tokens))
    assert pred.maps.tolist() == [[[0, 1, 2], [3, 4, 5]], [[6, 7, 8], [9, 10, 11]]]  # on the 2 x 3 grid
    assert pred.scores.tolist() == [4.0, 2.0]


def test_anomalydino_masks_are_the_pca_rule_per_image_on_the_grid():
    m = dino(vit(grid=(4, 4)))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randn(3, 16, TOKEN_DIM, generator=g)
    tokens[0, :8] += 40.0  # image 0: a strong first component over the top half
    masks = m.masks(tokens)
    assert masks.shape == (3, 16) and masks.dtype == torch.bool
    for i in range(3):
        assert torch.equal(masks[i], dino_core.background_mask(tokens[i], (4, 4)).reshape(-1))
    assert not torch.equal(masks[0], masks[1])


def test_anomalydino_describe():
    d = dino().describe()
    assert (d["score"], d["image_score"], d["backbone"], d["layers"]) == (
        "1 - cos to the nearest shot token", "mean of the top 1 % patch distances", "timm:dinov2-tiny", ["block4"])
    assert d["fidelity_notes"] == list(AnomalyDINOMethod.fidelity_notes) and len(d["fidelity_notes"]) == 5
    assert d["masking_applied"] is False  # before fit: the reference table is read at fit
    assert d["smoothing"] == "sigma 4 at each test image's original size (official src/utils.py l. 25-30)"


def test_anomalydino_masking_that_drops_every_test_patch_is_an_error_not_a_50():
    """Drill of issue 33 (was: every distance 0, every score 0, a 50.00 AUROC recorded as ok)."""
    m = dino(rotate_shots=False, masking=True)
    m.fit(refs(2), INFO)
    m.masks = lambda tokens: torch.zeros(tokens.shape[:2], dtype=torch.bool)
    with pytest.raises(MethodError) as err:
        m.predict(refs(3, start=4))
    assert str(err.value) == ("anomalydino: the background mask drops every patch of the 3 test image(s) (every "
                              "score would be 0, an AUROC of 50); rerun with --method-option "
                              "anomalydino.masking=false")
    keep = torch.zeros(3, 6, dtype=torch.bool)
    keep[2, 1] = True  # one patch kept: scored as before
    m.masks = lambda tokens: keep
    assert m.predict(refs(3, start=4))[W_VG].scores.shape == (3,)
