"""AnomalyCLIP wiring on the tiny model: defaults and their sources, layers, DPAM start, which loss
reaches which parameter, the training loop (Adam, batches, epochs, one encoder pass per image) and
the test maps."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from fixtures_methods import StubFeatures
from fixtures_transfer import image_ref
from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.core.types import AuxiliarySet, CategoryInfo, ImageRef
from fsadbench.core.variants import WO_VG
from fsadbench.methods.anomalyclip import train as T
from fsadbench.methods.anomalyclip.losses import anomaly_map, image_logits
from fsadbench.methods.anomalyclip.model import AnomalyCLIP
from fsadbench.protocol.method import MethodContext


@pytest.fixture()
def aux(tmp_path):
    rng = np.random.default_rng(0)
    images, masks, labels = [], [], []
    for i in range(10):
        images.append(image_ref(tmp_path / f"{i}.png", (rng.random((48, 48, 3)) * 255).astype(np.uint8)))
        if i % 2:
            m = np.zeros((48, 48), np.uint8)
            m[8:24, 8 + i:24 + i] = 255
            masks.append(image_ref(tmp_path / f"m{i}.png", m))
        else:
            masks.append(None)
        labels.append(i % 2)
    return AuxiliarySet("aux", tuple(images), tuple(labels), tuple(masks), ("a",))


def test_defaults_pinned_with_their_source(method_ctx):
    o = AnomalyCLIP.Options()
    # train.py l.125 n_ctx, l.124 depth, l.126 t_n_ctx, l.130 epoch, l.131 learning_rate, l.44 betas, l.132 batch
    assert (o.n_ctx, o.depth, o.t_n_ctx, o.epochs, o.lr, o.beta1, o.beta2, o.batch_size) == \
        (12, 9, 4, 15, 1e-3, 0.5, 0.999, 8)
    # train.sh l.16/35, test.sh l.17/36: --features_list 24 (the last block); DPAM_layer 20: blocks 6..24
    assert o.layers == "last" and o.dpam_start is None
    assert o.text_fp16_grad is True  # AnomalyCLIP.py l.246: the deep text tokens cast to fp16
    assert AnomalyCLIP.default_sigma == 4.0 and AnomalyCLIP.min_shots == 0  # test.py l.192
    assert AnomalyCLIP.backbone_default == "open_clip:ViT-L-14-336@518" and AnomalyCLIP.name == "anomalyclip"
    assert AnomalyCLIP.version == 2  # the last block by default, the fp16 cast
    assert len(AnomalyCLIP.fidelity_notes) == 3 and all(n.strip() for n in AnomalyCLIP.fidelity_notes)
    assert AnomalyCLIP.sigma_size == 518  # its Gaussian where the official applies it: no sigma note
    assert not any("Gaussian" in n or "evaluation size" in n for n in AnomalyCLIP.fidelity_notes)
    assert AnomalyCLIP.fit_scope == "auxiliary" and AnomalyCLIP.variants == (WO_VG,)
    assert AnomalyCLIP.feature_specs == ("anomalyclip-dpam", "anomalyclip-text")
    m = AnomalyCLIP(method_ctx)
    assert m.layers == (12,) and m.dpam_start == 3  # 12 blocks: the last one; DPAM in the official proportion
    assert dict(m.spec.params) == {"dpam_start": 3, "layers": (12,)}
    assert m.learner.ctx_normal.shape == (12, 64) and m.learner.deep.shape == (8, 4, 64)
    d = m.describe()
    assert d["layers"] == [12] and d["dpam_start"] == 3 and d["trained_on"] is None
    assert d["options_resolved"] == dataclasses.asdict(o)
    assert d["fidelity_notes"] == list(AnomalyCLIP.fidelity_notes)  # the defaults: no layer note
    assert not any("feature layers" in n for n in d["fidelity_notes"])
    assert any("fp16" in n and "l.246" in n for n in d["fidelity_notes"])
    assert d["choices"] == {
        "layers": "blocks [12] of 12 (official: the last block, --features_list 24, train.sh l.16, test.sh l.17)",
        "dpam_start": "block 3 of 12 (official: block 6 of 24, DPAM_layer 20, train.py l.42)",
        "text_fp16_grad": "True (official: true, the deep text tokens cast to fp16, AnomalyCLIP.py l.246)"}


def test_multiscale_layers_are_an_option_with_their_note(method_ctx):
    m = AnomalyCLIP(method_ctx, layers="multiscale")  # train.py l.128's argparse default, scaled to 12 blocks
    assert m.layers == (3, 6, 9, 12) and dict(m.spec.params)["layers"] == (3, 6, 9, 12)
    notes = m.describe()["fidelity_notes"]
    assert len(notes) == 4 and notes[1:] == list(AnomalyCLIP.fidelity_notes)
    assert notes[0] == ("feature layers 3/6/9/12 of 12 blocks; the official runs and every published figure read "
                        "the last block only (--features_list 24: train.sh l.16/35, test.sh l.17/36; "
                        "zqhang/AnomalyCLIP issue #82): the map loss sums 4 layers, weighing 4x against the image "
                        "loss, and the test map sums their probabilities")
    assert AnomalyCLIP(method_ctx, layers=[12]).describe()["fidelity_notes"] == list(AnomalyCLIP.fidelity_notes)
    assert "feature layers 11 of 12" in AnomalyCLIP(method_ctx, layers=11).describe()["fidelity_notes"][0]
    with pytest.raises(ConfigError, match=r"^method 'anomalyclip': option 'layers' must be one of \('last', "
                                          r"'multiscale'\) or a list of block numbers; got 'all'$"):
        AnomalyCLIP(method_ctx, layers="all")


def test_text_fp16_grad_option_wiring_and_note(method_ctx):
    from fsadbench.methods.anomalyclip.prompts import encode_prompts

    m, off = AnomalyCLIP(method_ctx), AnomalyCLIP(method_ctx, text_fp16_grad=False)
    with torch.no_grad():
        for p in (m.learner.deep, off.learner.deep):
            p.normal_(0, 0.3, generator=torch.Generator().manual_seed(4))
        got, got_off = m.text_features(), off.text_features()
        assert torch.equal(got, encode_prompts(m.encoder, m.learner, m.layout, fp16=True))
        assert torch.equal(got_off, encode_prompts(m.encoder, m.learner, m.layout, fp16=False))
        assert not torch.equal(got, got_off)
    notes = off.describe()["fidelity_notes"]
    assert len(notes) == 3 and notes[0].startswith("deep text tokens kept in fp32 (text_fp16_grad=false)")
    assert "exactly 0" in notes[0] and notes[1:] == list(AnomalyCLIP.fidelity_notes[1:])
    assert off.describe()["choices"]["text_fp16_grad"].startswith("False (official: true")
    with pytest.raises(ConfigError, match=r"^method 'anomalyclip': option 'text_fp16_grad' must be true or false "
                                          r"\(official: true\)$"):
        AnomalyCLIP(method_ctx, text_fp16_grad="yes")


def test_options_override_and_checks(method_ctx):
    m = AnomalyCLIP(method_ctx, layers=[12, 4], dpam_start=5, n_ctx=6, depth=3, t_n_ctx=2)
    assert "feature layers 4/12 of 12 blocks" in m.describe()["fidelity_notes"][0]
    assert m.layers == (4, 12) and m.dpam_start == 5 and m.learner.deep.shape == (2, 2, 64)
    assert m.layout[0].slots["ctx"].tolist() == list(range(1, 7))
    assert AnomalyCLIP(method_ctx, layers=7).layers == (7,)
    import re

    msgs = {"epochs": "an integer >= 1 (official: 15)", "batch_size": "an integer >= 1 (official: 8)",
            "lr": "> 0 (official: 0.001)", "beta1/beta2": "in [0, 1) (official: 0.5, 0.999)",
            "depth": "between 1 and the text encoder's blocks (official: 9)"}
    for bad, name in [({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch_size"), ({"lr": 0.0}, "lr"),
                      ({"beta1": 1.0}, "beta1/beta2"), ({"beta2": -0.1}, "beta1/beta2"),
                      ({"beta1": -0.1}, "beta1/beta2"), ({"beta2": 1.0}, "beta1/beta2"),
                      ({"depth": 13}, "depth"), ({"depth": 0}, "depth")]:
        want = f"method 'anomalyclip': option '{name}' must be {msgs[name]}"
        with pytest.raises(ConfigError, match="^" + re.escape(want) + "$"):
            AnomalyCLIP(method_ctx, **bad)
    with pytest.raises(ConfigError, match="out of range"):
        AnomalyCLIP(method_ctx, layers=[13])
    AnomalyCLIP(method_ctx, depth=12, beta1=0.0, beta2=0.0)  # the bounds themselves are valid
    AnomalyCLIP(method_ctx, depth=1, epochs=1, batch_size=1, n_ctx=4)
    with pytest.raises(ConfigError, match=r"^anomalyclip option 'layers' must be a list of block numbers, "
                                          r"e\.g\. \[3, 8\]; 'x' \(item 2\) is not an integer \(got \[3, 'x'\]\)$"):
        AnomalyCLIP(method_ctx, layers=[3, "x"])


def test_which_loss_reaches_which_parameter(method_ctx):
    m = AnomalyCLIP(method_ctx)
    gen = torch.Generator().manual_seed(0)
    feats = {f"layer{i}": torch.randn(2, 225, 64, generator=gen) for i in m.layers}
    feats["embedding"] = torch.randn(2, 64, generator=gen)
    masks = torch.zeros(2, 120, 120)
    masks[1, :40, :40] = 1
    losses = T.step_losses(m, feats, torch.tensor([0, 1]), masks)
    assert torch.allclose(losses["total"], losses["map"] + losses["image"])
    params = dict(m.learner.named_parameters())
    for part in ("map", "image"):
        grads = torch.autograd.grad(losses[part], list(params.values()), retain_graph=True, allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            assert g is not None and g.abs().sum() > 0, (part, name)
    # the masks reach the map loss only; the labels the image loss only
    other = T.step_losses(m, feats, torch.tensor([1, 1]), torch.ones(2, 120, 120))
    assert other["map"] != losses["map"] and other["image"] != losses["image"]
    same_mask = T.step_losses(m, feats, torch.tensor([1, 1]), masks)
    assert same_mask["map"] == losses["map"]


def test_training_loop_adam_batches_epochs(method_ctx, monkeypatch):
    m = AnomalyCLIP(method_ctx, epochs=2, batch_size=4, lr=0.01, beta1=0.3, beta2=0.9)
    made = {}
    real_adam = torch.optim.Adam

    def adam(params, **kw):
        made.update(kw, params=params)
        return real_adam(params, **kw)

    monkeypatch.setattr(torch.optim, "Adam", adam)
    calls = []
    gen = torch.Generator().manual_seed(1)
    bank = {f"layer{i}": torch.randn(10, 225, 64, generator=gen) for i in m.layers}
    bank["embedding"] = torch.randn(10, 64, generator=gen)

    def batch(idx):
        calls.append(list(idx))
        return ({k: v[idx] for k, v in bank.items()}, torch.tensor([i % 2 for i in idx]),
                torch.zeros(len(idx), 120, 120))

    before = m.learner.ctx_abnormal.detach().clone()
    T.train_epochs(m, 10, batch)
    assert made["lr"] == 0.01 and made["betas"] == (0.3, 0.9)
    assert [id(p) for p in made["params"]] == [id(p) for p in m.learner.parameters()]
    assert [len(c) for c in calls] == [4, 4, 2, 4, 4, 2]
    assert sorted(sum(calls[:3], [])) == list(range(10)) == sorted(sum(calls[3:], []))
    assert calls[:3] != calls[3:]  # reshuffled each epoch
    assert len(m.history) == 2 and set(m.history[0]) == {"map", "image", "total"}
    assert not torch.equal(before, m.learner.ctx_abnormal) and not m.learner.training


def test_fit_on_the_feature_store_encodes_each_image_once_and_is_deterministic(method_ctx, aux, tiny_backbone,
                                                                               feature_store):
    m = AnomalyCLIP(method_ctx, epochs=3)
    m.fit_auxiliary(aux)
    assert feature_store.stats.encoded == len(aux.images)  # 3 epochs, one encoder pass per image
    assert m.trained_on == "aux" and m.describe()["trained_on"] == "aux" and len(m.history) == 3
    assert m.describe()["final_losses"] == m.history[-1] != m.history[1]
    again = AnomalyCLIP(method_ctx, epochs=3)
    again.fit_auxiliary(aux)
    assert torch.equal(m._text, again._text)
    other = AnomalyCLIP(dataclasses.replace(method_ctx, seed=1), epochs=3)
    other.fit_auxiliary(aux)
    assert not torch.equal(m._text, other._text)
    p = m.predict(list(aux.images[:3]))[WO_VG]
    assert p.maps.shape == (3, 15, 15) and p.scores.shape == (3,)
    feats = feature_store.get(list(aux.images[:3]), m.spec)
    want = image_logits(feats["embedding"], m._text).softmax(-1)[:, 1]
    assert np.allclose(p.scores, want.numpy(), atol=1e-6)


def test_predict_sums_the_declared_layers(method_ctx):
    m = AnomalyCLIP(method_ctx, layers=[4, 8])
    m._text = torch.nn.functional.normalize(torch.randn(2, 64, generator=torch.Generator().manual_seed(2)), dim=-1)
    gen = torch.Generator().manual_seed(3)
    feats = {f"layer{i}": torch.randn(2, 225, 64, generator=gen) for i in (3, 4, 8)}
    feats["embedding"] = torch.randn(2, 64, generator=gen)
    ctx = MethodContext(backbone=method_ctx.backbone, features=StubFeatures(feats), device=torch.device("cpu"))
    m.ctx = ctx
    p = m.predict([None, None])[WO_VG]
    want = anomaly_map([feats["layer4"], feats["layer8"]], m._text).reshape(2, 15, 15)
    assert np.allclose(p.maps, want.numpy(), atol=1e-6)


def test_shots_predict_before_fit_and_empty_aux(method_ctx):
    m = AnomalyCLIP(method_ctx)
    info = CategoryInfo("d", "c", "c")
    m.fit([], info)
    assert m.describe()["final_losses"] is None
    with pytest.raises(NotApplicable, match=r"^AnomalyCLIP is zero-shot: the official code has no few-shot use; "
                                            r"run --shots 0$"):
        m.fit([ImageRef("x", "y")], info)
    with pytest.raises(MethodError, match=r"^AnomalyCLIP\.predict\(\) before fit_auxiliary\(\): "
                                          r"the prompts are untrained$"):
        m.predict([])
    with pytest.raises(MethodError, match="no images"):
        m.fit_auxiliary(AuxiliarySet("e", (), (), ()))
    with pytest.raises(ValueError, match="one label and one mask"):
        AuxiliarySet("e", (ImageRef("x", "y"),), (), ())


def test_masks_from_the_feature_store(feature_store, aux):
    got = feature_store.masks(list(aux.masks[:2]), 24)
    assert got.shape == (2, 24, 24) and got[0].sum() == 0
    assert got[1, 4:12, 5:12].min() == 1 and got[1].sum() == pytest.approx(8 * 8, abs=8)  # 16 px at half scale
    decoded = feature_store.stats.decoded
    feature_store.masks([aux.masks[1]], 24)
    assert feature_store.stats.decoded == decoded  # kept in memory


def test_its_own_backbone():
    from fsadbench.backbone.spec import BackboneSpec

    o = AnomalyCLIP.make_options({})
    real = AnomalyCLIP.backbone_for(o, BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"))
    # train.py l.32 ViT-L/14@336px (OpenAI), l.133 image size 518
    assert (real.family, real.model, real.image_size, real.pretrained) == ("open_clip", "ViT-L-14-336", 518, "openai")
    tiny = AnomalyCLIP.backbone_for(o, BackboneSpec("fsad-tiny-vit", "none"))
    assert (tiny.model, tiny.pretrained) == ("fsad-tiny-vit", "none")  # the pipeline check
    other = AnomalyCLIP.backbone_for(AnomalyCLIP.make_options({"backbone": "ViT-B-16@224", "backbone_weights": "x"}),
                                     BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"))
    assert (other.model, other.image_size, other.pretrained) == ("ViT-B-16", 224, "x")


def test_training_loop_reports_means_progress_and_a_diverged_loss(method_ctx, monkeypatch):
    said, steps = [], []
    ctx = dataclasses.replace(method_ctx, log=said.append, progress=lambda *a: steps.append(a),
                              show_values=lambda **v: steps.append(v))
    m = AnomalyCLIP(ctx, epochs=2, batch_size=4)
    k = {"n": 0}

    def fake(m_, feats, labels, masks):
        k["n"] += 1
        zero = m_.learner.deep.sum() * 0
        total = float("nan") if k["n"] == 6 else 3.0 * k["n"]
        return {"map": zero + k["n"], "image": zero + 2.0 * k["n"], "total": zero + total}

    monkeypatch.setattr(T, "step_losses", fake)
    batch = lambda idx: ({}, torch.zeros(len(idx)), torch.zeros(len(idx), 4, 4))  # noqa: E731
    with pytest.raises(MethodError, match=r"^AnomalyCLIP: training loss became nan at epoch 2; lower lr$"):
        T.train_epochs(m, 10, batch)
    assert m.history[0] == {"map": 2.0, "image": 4.0, "total": 6.0}  # mean of steps 1..3
    assert steps[:3] == [("epoch", 1, 2), {"loss": 6.0}, ("epoch", 2, 2)] and math.isnan(steps[3]["loss"])
    assert said == []  # epoch losses go to the progress line, not the log


EQUIVALENT_MUTANTS = {
    "AnomalyCLIP.__init__: self.device = None, learner.to(None), fork_rng(devices=None)": "CPU tests: one device",
    "AnomalyCLIP.__init__: self.history = None": "describe() tests it for truth: [] and None say the same",
    "fit_auxiliary: masks size -> None / dropped": "FeatureStore.masks defaults to the backbone's image size",
    "predict: softmax(dim=-1) -> dim=+1": "the logits are B x 2: dim 1 is the last",
    "predict: astype(np.float32) -> astype(None)": "Prediction stores float32 whatever it is given",
    "step_losses: masks.shape[-1] -> [+1] / [-2]": "masks are B x S x S: square",
    "step_losses: masks.to(maps[0].device) / labels.to(text.device) -> to(None), maps[1]": "CPU tests: one device",
}
