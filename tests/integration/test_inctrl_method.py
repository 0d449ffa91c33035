"""InCTRL wiring on the tiny random CLIP: every default and its source, the options' checks, the blocks,
training on an auxiliary set (deterministic per seed, the losses that reach the heads), the shots as
in-context prompts per category, the image-level prediction (no maps), and describe()."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fixtures_transfer import image_ref
from fsadbench.core.errors import ConfigError, MethodError
from fsadbench.core.types import AuxiliarySet, CategoryInfo
from fsadbench.core.variants import W_VG
from fsadbench.methods.inctrl import residual as R
from fsadbench.methods.inctrl.model import InCTRL
from fsadbench.protocol.method import MethodContext

TINY = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "train_shots": 1}


@pytest.fixture()
def aux(tmp_path):
    rng = np.random.default_rng(0)
    images, labels, cats = [], [], []
    for i in range(8):
        images.append(image_ref(tmp_path / f"{i}.png", (rng.random((40, 40, 3)) * 255).astype(np.uint8)))
        labels.append(int(i % 4 == 3))
        cats.append("metal_nut" if i < 4 else "dog")
    return AuxiliarySet("aux", tuple(images), tuple(labels), (None,) * 8, ("metal_nut", "dog"), tuple(cats))


@pytest.fixture()
def shots(tmp_path):
    rng = np.random.default_rng(5)
    return [image_ref(tmp_path / f"s{i}.png", (rng.random((40, 40, 3)) * 255).astype(np.uint8)) for i in range(3)]


def test_defaults_pinned_with_their_source(method_ctx):
    o = InCTRL.Options()
    # main.py l.83 --shot, engine_IC.py l.201 epochs, main.py l.81 steps, defaults.py l.23 batch,
    # engine_IC.py l.188 AdamW lr (default weight decay), model.py l.466 Adapter(640, 4)
    assert (o.train_shots, o.epochs, o.steps_per_epoch, o.batch_size, o.lr, o.weight_decay, o.reduction) == \
        (2, 10, 100, 16, 1e-3, 0.01, 4)
    assert o.layers is None and o.backbone == "" and o.backbone_weights == ""
    assert InCTRL.backbone_default == "open_clip:ViT-B-16-plus-240"  # engine_IC.py l.143
    assert InCTRL.backbone_weights_default == "laion400m_e32"  # engine_IC.py l.182
    assert InCTRL.backbone_tiny == "fsad-tiny-vit"
    assert InCTRL.produces == ("image",) and not InCTRL.makes_maps()
    assert InCTRL.fit_scope == "auxiliary" and InCTRL.few_shot_transfer and InCTRL.min_shots == 1
    assert InCTRL.variants == (W_VG,) and InCTRL.feature_specs == ("tokens",) and InCTRL.name == "inctrl"
    assert InCTRL.paper.startswith("Zhu and Pang, CVPR 2024")
    assert InCTRL.paper_traits({}) == {"multi_class": False, "few_shot_transfer": True}
    assert len(InCTRL.fidelity_notes) == 4 and all(n.strip() for n in InCTRL.fidelity_notes)
    m = InCTRL(method_ctx)
    assert m.layers == (7, 9, 11) and dict(m.spec.params) == {"layers": (7, 9, 11)}
    assert m.head.adapter.fc[0].out_features == 64 // 4 and m.head.holistic_head.projection1.in_features == 225
    assert m.head.image_head.projection1.in_features == 64
    d = m.describe()
    assert d["layers"] == [7, 9, 11] and d["trained_on"] is None and d["final_loss"] is None
    assert d["options_resolved"] == dataclasses.asdict(o) and d["fidelity_notes"] == list(InCTRL.fidelity_notes)


def test_backbone_resolution():
    from fsadbench.backbone.spec import parse_backbone

    o = InCTRL.make_options({})
    real = InCTRL.backbone_for(o, parse_backbone("ViT-B-16-plus-240", "laion400m_e32"))
    assert (real.model, real.pretrained) == ("ViT-B-16-plus-240", "laion400m_e32")
    tiny = InCTRL.backbone_for(o, parse_backbone("fsad-tiny-vit", "none"))
    assert (tiny.model, tiny.pretrained) == ("fsad-tiny-vit", "none")


def test_options_override_and_checks(method_ctx):
    assert InCTRL(method_ctx, layers=[12, 3]).layers == (3, 12)
    assert InCTRL(method_ctx, reduction=8).head.adapter.fc[0].out_features == 8
    msgs = {"epochs": "an integer >= 1 (official: 10)", "steps_per_epoch": "an integer >= 1 (official: 100)",
            "batch_size": "an integer >= 2: one normal and one anomalous query at least (official: 16)",
            "train_shots": "an integer >= 1 (official: 2)", "lr": "> 0 (official: 0.001)",
            "weight_decay": ">= 0", "reduction": "an integer >= 1 (official: 4)"}
    for bad in [{"epochs": 0}, {"steps_per_epoch": 0}, {"batch_size": 1}, {"train_shots": 0}, {"lr": 0.0},
                {"weight_decay": -0.1}, {"reduction": 0}]:
        name = next(iter(bad))
        with pytest.raises(ConfigError, match=f"option '{name}' must be {msgs[name]}".replace("(", r"\(")
                           .replace(")", r"\)").replace(".", r"\.")):
            InCTRL(method_ctx, **bad)
    for ok in [{"epochs": 1}, {"steps_per_epoch": 1}, {"batch_size": 2}, {"train_shots": 1}, {"weight_decay": 0.0},
               {"reduction": 1}]:
        InCTRL(method_ctx, **ok)
    with pytest.raises(ConfigError):
        InCTRL(method_ctx, layers=[13])


def test_layers_scale_with_depth(method_ctx, monkeypatch):
    monkeypatch.setattr(method_ctx.backbone, "n_layers", 24)
    assert InCTRL(method_ctx).layers == R.scaled((7, 9, 11), 24) == (14, 18, 22)


def test_fit_auxiliary_trains_deterministically(method_ctx, aux):
    a = InCTRL(method_ctx, **TINY)
    before = {k: v.clone() for k, v in a.head.state_dict().items()}
    a.fit_auxiliary(aux)
    assert a.trained_on == "aux" and len(a.history) == 1 and np.isfinite(a.history[0])
    after = a.head.state_dict()
    for part in ("adapter.fc.0.weight", "image_head.projection1.weight", "holistic_head.projection3.weight"):
        assert not torch.equal(before[part], after[part]), part  # both losses reach every trained part
    assert not a.head.training
    b = InCTRL(method_ctx, **TINY)
    b.fit_auxiliary(aux)
    assert b.history == a.history and all(torch.equal(after[k], v) for k, v in b.head.state_dict().items())
    c = InCTRL(MethodContext(method_ctx.backbone, method_ctx.features, method_ctx.device, seed=1), **TINY)
    c.fit_auxiliary(aux)
    assert c.history != a.history
    assert InCTRL(method_ctx, **{**TINY, "epochs": 2}).describe()["options_resolved"]["epochs"] == 2


def test_fit_auxiliary_refuses_sets_it_cannot_train_on(method_ctx, aux):
    m = InCTRL(method_ctx, **TINY)
    with pytest.raises(MethodError, match="no images with their categories"):
        m.fit_auxiliary(AuxiliarySet("x", aux.images, aux.labels, aux.masks))
    with pytest.raises(MethodError, match="0 anomalous"):
        m.fit_auxiliary(AuxiliarySet("x", aux.images, (0,) * 8, aux.masks, (), aux.image_categories))
    with pytest.raises(MethodError, match="fewer than train_shots=4"):
        InCTRL(method_ctx, **{**TINY, "train_shots": 4}).fit_auxiliary(aux)


def test_predict_scores_only_from_the_categorys_prompts(method_ctx, aux, shots):
    m = InCTRL(method_ctx, **TINY)
    with pytest.raises(MethodError, match="before fit_auxiliary"):
        m.predict(shots)
    m.fit_auxiliary(aux)
    with pytest.raises(MethodError, match="before fit"):
        m.predict(shots)
    with pytest.raises(MethodError, match="k >= 1"):
        m.fit([], CategoryInfo("d", "bottle", "bottle"))
    nut, bottle = CategoryInfo("d", "metal_nut", "metal nut"), CategoryInfo("d", "bottle", "bottle")
    m.fit(shots[:1], nut)
    m.fit(shots[1:], bottle)
    queries = list(aux.images[:5])
    out = m.predict(queries)
    assert set(out) == {W_VG} and out[W_VG].maps is None and out[W_VG].scores.shape == (5,)
    m.set_category(nut)
    p_nut = m.predict(queries)[W_VG].scores
    assert not np.allclose(p_nut, out[W_VG].scores)  # another category: its own prompts and class words
    # the score by hand from the pieces: residual against the shots, text prior of "metal nut"
    with torch.no_grad():
        q = m.features(queries)
        s = m.features(shots[:1])
        patch = R.patch_residual(q, s, m.layers)
        states = R.state_features(method_ctx.backbone.encode_text, "metal nut")
        text = R.text_prior(q["embedding"], states)
        final, _ = m.head(patch, text, q["embedding"], s["embedding"].unsqueeze(0).expand(5, -1, -1))
    assert np.allclose(p_nut, final.numpy(), atol=1e-6)
    d = m.describe()
    assert d["trained_on"] == "aux" and d["final_loss"] == m.history[-1]
