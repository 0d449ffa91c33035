"""The ``regad`` method (fsadbench.methods.regad.model): defaults with their sources, option checks, the
training batches, the training step against a hand-made replay, the Gaussian of the augmented shots,
determinism for a seed, and what reaches describe()."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.core.registry import METHODS
from fsadbench.core.types import AuxiliarySet, CategoryInfo
from fsadbench.core.variants import W_VG
from fsadbench.methods.regad import model as regad_model
from fsadbench.methods.regad import torch_model as core
from fsadbench.methods.regad.model import RegAD, training_batches

#: equivalent survivors of mutation testing (module: methods/regad/model.py; 2026-12-07)
EQUIVALENT_MUTANTS: dict[str, str] = {
    "fit_auxiliary: SGD(lr=o.lr) dropped": "every epoch sets each group's lr (cosine_lr) before its first step",
    "fit / predict: chunk=int(options.chunk) dropped": "chunking bounds memory only; the default chunks give the "
                                                       "same numbers (test_regad_core's chunk test)",
    "__init__: self.device = None; .to(self.device) -> .to(None) (net, encoder, predictor, pixels, augment)":
        "the tests run on the CPU, torch's default device",
    "__init__: fork_rng(devices=[]) -> devices=None": "with no CUDA device the default forks the CPU generator "
                                                      "only",
    "__init__: mean / std .view(1, 3, 1, 1) -> .view(3, 1, 1)": "both broadcast over B x 3 x H x W the same way",
    "__init__: self.losses = [] -> None": "fit_auxiliary sets [] before use; describe() reads None and [] alike",
}
INFO = CategoryInfo("synthetic", "x", "x")


@pytest.fixture(scope="module")
def refs(tmp_path_factory):
    from fixtures_layouts import random_image_refs

    return random_image_refs(tmp_path_factory.mktemp("img"), 6, 40, 40, prefix="")


def make(context_for, seed=0, **options):
    return RegAD(context_for(RegAD, options, seed=seed), **options)


def aux_of(refs, groups=("a", "a", "a", "b", "b", "b")):
    n = len(groups)
    return AuxiliarySet("synthetic", tuple(refs[:n]), (0,) * n, (None,) * n, tuple(dict.fromkeys(groups)),
                        tuple(groups))


def test_registered_with_the_official_defaults():
    cls, defaults = METHODS.get("regad")
    assert cls is RegAD and defaults == {}
    o = {f.name: f.default for f in dataclasses.fields(RegAD.Options)}
    assert {k: o[k] for k in regad_model.OFFICIAL} == regad_model.OFFICIAL
    assert regad_model.OFFICIAL == {"epochs": 50, "batch_size": 32, "lr": 1e-4, "momentum": 0.9,
                                    "stn_mode": "rotation_scale"}
    assert o["reg"] == 0.01 and o["chunk"] == 256 and o["backbone"] == "" and o["backbone_weights"] == ""
    assert (RegAD.fit_scope, RegAD.min_shots, RegAD.variants) == ("leave_one_out", 1, (W_VG,))
    assert (RegAD.default_sigma, RegAD.sigma_size) == (4.0, 224)
    assert (RegAD.backbone_default, RegAD.backbone_tiny) == ("torchvision:resnet18", "torchvision:resnet18-tiny")
    assert RegAD.few_shot_transfer is True and RegAD.uses_feature_cache is False
    assert RegAD.paper.startswith("RegAD (Huang et al., ECCV 2022)")
    assert len(RegAD.fidelity_notes) == 4 and "last epoch" in RegAD.fidelity_notes[0]
    assert RegAD.auxiliary_fit_key(RegAD.make_options({}), 4) == {"train_shots": 4}
    assert RegAD.paper_traits({}) == {"multi_class": True, "few_shot_transfer": True}  # AnoPLe Table 1's row


def test_backbone_resolution():
    from fsadbench.backbone.spec import BackboneSpec

    opts = RegAD.make_options({})
    assert RegAD.backbone_for(opts, BackboneSpec("fsad-tiny-vit", "none")).name == "torchvision:resnet18-tiny"
    real = RegAD.backbone_for(opts, BackboneSpec("ViT-B-16", "openai"))
    assert (real.family, real.model, real.pretrained) == ("torchvision", "resnet18", "IMAGENET1K_V1")


MODES = ("affine, translation, rotation, scale, shear, rotation_scale, translation_scale, rotation_translation, "
         "rotation_translation_scale")


@pytest.mark.parametrize("name, value, want", [
    ("epochs", 0, "an integer >= 1 (official: 50); got 0"),
    ("epochs", 1.5, "an integer >= 1 (official: 50); got 1.5"),
    ("batch_size", 0, "an integer >= 1 (official: 32); got 0"),
    ("lr", 0.0, "> 0 (official: 0.0001); got 0.0"),
    ("momentum", 1.0, "in [0, 1) (official: 0.9); got 1.0"),
    ("momentum", -0.1, "in [0, 1) (official: 0.9); got -0.1"),
    ("stn_mode", "spin", f"one of {MODES} (official: rotation_scale); got 'spin'"),
    ("reg", 0.0, "> 0 (official: 0.01); got 0.0"),
    ("chunk", 0, "an integer >= 1; got 0")])
def test_option_checks(context_for, name, value, want):
    with pytest.raises(ConfigError) as e:
        make(context_for, **{name: value})
    assert str(e.value) == f"method 'regad': option {name!r} must be {want}"


def test_option_boundaries_are_accepted(context_for):
    m = make(context_for, epochs=1, batch_size=1, lr=1e-9, momentum=0.0, reg=1e-9, chunk=1)
    assert (m.options.epochs, m.options.batch_size, m.options.momentum, m.options.chunk) == (1, 1, 0.0, 1)


def test_training_batches_stay_in_their_category_and_never_pair_a_query_with_itself():
    groups = ["a"] * 5 + ["b"] * 3 + ["c"]  # c has one image: no support besides itself, no batch
    gen = torch.Generator().manual_seed(0)
    batches = training_batches(groups, 2, 3, gen)
    assert sorted(len(q) for q, _ in batches) == [1, 1, 2, 2, 2]  # a: 2 + 2 + 1, b: 2 + 1
    seen = sorted(i for q, _ in batches for i in q)
    assert seen == list(range(8))  # every image of a and b once a query per epoch; c never
    for queries, supports in batches:
        assert len({groups[i] for i in queries}) == 1
        for q, row in zip(queries, supports):
            assert len(row) == 3 and q not in row and all(groups[j] == groups[q] for j in row)
    again = training_batches(groups, 2, 3, torch.Generator().manual_seed(0))
    assert again == batches
    assert training_batches(groups, 2, 3, torch.Generator().manual_seed(1)) != batches
    assert training_batches(["x"], 2, 1, gen) == []
    # a category of exactly 2 images trains (each the other's support); a lone image first stops nothing
    lone_first = ["c", "a", "a", "b", "b", "b"]
    got = training_batches(lone_first, 4, 1, torch.Generator().manual_seed(0))
    assert sorted(i for q, _ in got for i in q) == [1, 2, 3, 4, 5]
    queries, supports = next(b for b in got if 1 in b[0])
    assert sorted(queries) == [1, 2] and all(row == [3 - q] for q, row in zip(queries, supports))  # 1 <-> 2


def test_training_schedule_batches_and_step(context_for, refs, monkeypatch):
    """Per epoch the cosine lr, one SGD step per batch over every parameter, the symmetric loss of each
    query against the mean of its supports' last features."""
    m = make(context_for, epochs=2, batch_size=2, lr=0.5, momentum=0.5)
    aux = aux_of(refs)
    steps, losses, values = [], [], []
    progress, shown = [], []
    m.ctx.progress = lambda *a: progress.append(a)
    m.ctx.show_values = lambda **v: shown.append(v)
    orig_step, orig_loss = torch.optim.SGD.step, core.registration_loss

    def step(opt, *a, **k):
        steps.append((opt.param_groups[0]["lr"], opt.param_groups[0]["momentum"], len(opt.param_groups[0]["params"])))
        return orig_step(opt, *a, **k)

    def loss(p1, z1, p2, z2):
        losses.append((p1.shape, z2.shape))
        out = orig_loss(p1, z1, p2, z2)
        values.append(out.item())
        return out

    monkeypatch.setattr(torch.optim.SGD, "step", step)
    monkeypatch.setattr(core, "registration_loss", loss)
    snap = [p.detach().clone() for p in m.predictor.parameters()]
    stem, layer3 = m.net.stem[0].weight.detach().clone(), m.net.layers[2][0].conv1.weight.detach().clone()
    m.fit_auxiliary(aux, shots=2)
    # the ResNet copy is trained too (train.py l. 70), though the backbone adapter's model is frozen
    assert not torch.equal(stem, m.net.stem[0].weight) and not torch.equal(layer3, m.net.layers[2][0].conv1.weight)
    assert not any(p.requires_grad for p in m.ctx.backbone.model.parameters())
    n_params = sum(1 for mod in m.modules() for _ in mod.parameters())
    # 2 categories x 3 images in batches of 2: 4 steps per epoch; lr 0.25 in epoch 1, 0 in epoch 2 (of 2)
    assert [s[0] for s in steps] == pytest.approx([0.25] * 4 + [0.0] * 4)
    assert all(s[1] == 0.5 and s[2] == n_params for s in steps)
    side = m.ctx.backbone.image_size // 16
    assert sorted(sh[0][0] for sh in losses[:4]) == [1, 1, 2, 2]
    assert all(p == z and p[1:] == (256, side, side) for p, z in losses)
    assert len(m.losses) == 2 and all(math.isfinite(v) for v in m.losses)
    # an epoch's loss is the mean of its 4 batches' losses; reported per epoch beside the bar
    assert m.losses == pytest.approx([sum(values[:4]) / 4, sum(values[4:]) / 4])
    assert progress == [("epoch", 1, 2), ("epoch", 2, 2)]
    assert shown == [{"loss": m.losses[0]}, {"loss": m.losses[1]}]
    assert m.trained_on == "synthetic" and m.train_shots == 2
    assert any(not torch.equal(a, b) for a, b in zip(snap, m.predictor.parameters()))
    assert all(mod.training for mod in m.modules())  # left in train mode until fit()
    m.fit(refs[:1], INFO)
    assert all(not mod.training for mod in m.modules())


def test_loss_of_a_batch_matches_the_formula(context_for, refs):
    m = make(context_for)
    x = m.pixels(refs[:2])
    assert x.min() >= -1e-6 and x.max() <= 1 + 1e-6  # un-normalised back to [0, 1]
    bb = m.ctx.backbone
    normalised = m.ctx.features.pixels(refs[:2])
    assert torch.allclose((x - torch.tensor(bb.mean).view(1, 3, 1, 1)) / torch.tensor(bb.std).view(1, 3, 1, 1),
                          normalised, atol=1e-5)


def test_fit_predict_and_refusals(context_for, refs):
    m = make(context_for, epochs=1, batch_size=4)
    with pytest.raises(MethodError, match=r"^regad: fit\(\) before fit_auxiliary\(\): the registration network "
                                          r"is untrained$"):
        m.fit(refs[:1], INFO)
    with pytest.raises(MethodError, match=r"^regad: predict\(\) before fit\(\): no Gaussian of the shots$"):
        m.predict(refs[:1])
    with pytest.raises(NotApplicable, match=r"^regad needs at least one normal shot \(shots=0 is zero-shot\)$"):
        m.fit_auxiliary(aux_of(refs), shots=0)
    with pytest.raises(MethodError, match="no category with 2 or more"):
        m.fit_auxiliary(aux_of(refs[:2], ("a", "b")), shots=1)
    m.fit_auxiliary(aux_of(refs), shots=1)
    with pytest.raises(NotApplicable, match=r"^regad needs at least one normal shot \(shots=0 is zero-shot\)$"):
        m.fit([], INFO)
    m.fit(refs[:2], INFO)
    g = m.gaussian
    assert g.u.shape[1] == 2 * core.N_AUGMENTED and g.mean.shape[1] == 64 + 128 + 256
    out = m.predict(refs[2:5])
    assert set(out) == {W_VG}
    pred = out[W_VG]
    h = m.ctx.backbone.image_size // 4
    assert pred.maps.shape == (3, h, h) and pred.scores.shape == (3,)
    # the map is the Mahalanobis distance of the registered features; the score the smoothed map's max
    emb = m.registered(m.pixels(refs[2:5]))
    want = core.mahalanobis(emb, g)
    assert torch.allclose(torch.from_numpy(pred.maps), want, atol=1e-5)
    from fsadbench.methods.padim.model import smoothed_max

    assert torch.allclose(torch.from_numpy(pred.scores), smoothed_max(want, 224, 4.0), atol=1e-5)
    # the Gaussian is the one of the augmented shots
    shots = m.pixels(refs[:2])
    direct = core.fit_gaussian(m.registered(core.augment(shots)))
    assert torch.allclose(direct.mean, g.mean) and torch.allclose(direct.small, g.small)
    d = m.describe()
    assert d["backbone"] == "torchvision:resnet18-tiny" and d["backbone_weights"] == "none"
    assert d["layers"] == ["layer1", "layer2", "layer3"] and d["trained_on"] == "synthetic"
    assert d["train_shots"] == 1 and d["final_loss"] == m.losses[-1]
    assert d["fidelity_notes"] == list(RegAD.fidelity_notes) and d["options_resolved"]["epochs"] == 1
    assert d["score"] == "Mahalanobis distance per position of the registered features" and "224 px" in d["image_score"] and "sigma 4" in d["image_score"]


def test_deterministic_for_a_seed_and_seeded_init(context_for, refs):
    a, b, c = (make(context_for, seed=s, epochs=1, batch_size=4) for s in (0, 0, 1))
    for m in (a, b, c):
        m.fit_auxiliary(aux_of(refs), shots=1)
        m.fit(refs[:1], INFO)
    pa, pb, pc = (m.predict(refs[2:4])[W_VG].maps for m in (a, b, c))
    assert (pa == pb).all() and a.losses == b.losses
    assert not (pa == pc).all()


def test_stn_mode_reaches_the_network(context_for):
    m = make(context_for, stn_mode="affine")
    assert all(s.mode == "affine" and s.fc[2].out_features == 6 for s in m.net.stns)
    assert m.net.channels == 256
    # siamese.py: the encoder 3 1x1 convs (l. 27-55), the predictor 2 (l. 59-77), on the 256 channels of layer3
    convs = [[c for c in head if isinstance(c, torch.nn.Conv2d)] for head in (m.encoder, m.predictor)]
    assert [len(c) for c in convs] == [3, 2] and all(c.in_channels == c.out_channels == 256 for h in convs for c in h)


def test_describe_before_training_and_one_group_without_categories(context_for, refs):
    """describe() of an untrained method names nothing trained; an auxiliary set without per-image categories
    is one group (the dataset's name): its images are each other's supports."""
    m = make(context_for, epochs=1, batch_size=4)
    d = m.describe()
    assert (d["trained_on"], d["train_shots"], d["final_loss"]) == (None, None, None)
    n = 3
    plain = AuxiliarySet("synthetic", tuple(refs[:n]), (0,) * n, (None,) * n, ("x",))
    assert plain.image_categories == ()
    m.fit_auxiliary(plain, shots=1)
    assert len(m.losses) == 1 and m.trained_on == "synthetic" and m.describe()["train_shots"] == 1


def test_registered_runs_in_batches_of_the_context_size(context_for, refs):
    m = make(context_for)
    x = m.pixels(refs[:3])
    whole = m.registered(x)
    assert whole.shape[0] == 3 and not any(mod.training for mod in m.modules())
    for size in (1, 2):
        m.ctx.batch_size = size
        assert torch.allclose(m.registered(x), whole, atol=1e-5)


def test_a_non_finite_training_loss_is_refused_naming_the_last_epoch(context_for, refs, monkeypatch):
    """Three epochs of 2 batches; the third epoch's losses are infinite: the message quotes that epoch's mean."""
    m = make(context_for, epochs=3, batch_size=4)
    calls = []
    orig = core.registration_loss

    def loss(*a):
        calls.append(1)
        out = orig(*a)
        return out + float("inf") if len(calls) > 4 else out

    monkeypatch.setattr(core, "registration_loss", loss)
    with pytest.raises(MethodError, match=r"^regad: the training loss is not finite \(inf\); lower lr$"):
        m.fit_auxiliary(aux_of(refs), shots=1)
    assert len(m.losses) == 3 and all(math.isfinite(v) for v in m.losses[:2]) and m.trained_on is None
