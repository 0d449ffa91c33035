"""PromptAD: losses, prompt layout, fusion, training and the feature cache (methods/promptad.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fixtures_methods import StubFeatures

from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.methods.promptad import (GENERIC_STATES, PromptAD, defect_phrases, harmonic, promptad_losses,
                                        state_sentence)
from fsadbench.core.types import CategoryInfo, ImageRef


def _unit(*v):
    t = torch.tensor(v, dtype=torch.float32)
    return t / t.norm()


def test_losses_hand_case_asymmetric():
    """Raw (non-unit) prompt features: the anchors are normalised MEANS of raw features (official code),
    the CE target is the normal class, and each reduction of the margin term has its own value."""
    toks = [(1.0, 0.0), (0.28, 0.96)]
    f = torch.tensor([toks])  # B=1, L=2 unit tokens
    normal = torch.tensor([[2.0, 0.0]])
    hand = torch.tensor([[0.0, 3.0]])
    learned = torch.tensor([[0.3, 0.4]])
    a_a = _unit(0.15, 1.7)  # norm(mean(raw abnormal)) -- not norm(mean(norm)) = norm(0.3, 0.9)
    A = [(0.0, 1.0), (0.6, 0.8)]
    logits = [[2 * x for x in (fx, fx * A[0][0] + fy * A[0][1], fx * A[1][0] + fy * A[1][1])]
              for fx, fy in toks]

    def ce(target):
        return sum(math.log(sum(math.exp(z) for z in row)) - row[target] for row in logits) / 2

    out = promptad_losses(f, normal, hand, learned, scale=2.0, margin=1.0, align_weight=0.5, reduction="paper")
    assert out["ce"].item() == pytest.approx(ce(0), abs=1e-5)
    assert abs(ce(0) - ce(1)) > 0.2 and abs(ce(0) - ce(2)) > 0.2  # the target class matters
    d_a = [2 - 2 * float(a_a @ torch.tensor(t)) for t in toks]
    d_n = [2 - 2 * t[0] for t in toks]  # a_n = (1, 0)
    paper = sum(max(0.0, dn - da + 1.0) for dn, da in zip(d_n, d_a)) / 2
    assert out["margin"].item() == pytest.approx(paper, abs=1e-5)
    align = 0.6 ** 2 + 0.2 ** 2  # ||mean(norm(hand)) - mean(norm(learned))||^2
    assert out["align"].item() == pytest.approx(align, abs=1e-6)
    assert out["total"].item() == pytest.approx(ce(0) + paper + 0.5 * align, abs=1e-5)
    # "official": squared differences summed over the L tokens, relu per channel, mean over channels
    off = promptad_losses(f, normal, hand, learned, scale=2.0, margin=1.0, align_weight=0.5, reduction="official")
    per_c = [sum((t[c] - (1.0, 0.0)[c]) ** 2 - (t[c] - float(a_a[c])) ** 2 for t in toks) + 1.0 for c in (0, 1)]
    official = sum(max(0.0, v) for v in per_c) / 2
    assert off["margin"].item() == pytest.approx(official, abs=1e-5) and abs(official - paper) > 0.1
    assert off["ce"].item() == pytest.approx(ce(0), abs=1e-5)
    # a B x E (image run) input: both reductions are the per-feature distance
    flat = f[0]
    assert promptad_losses(flat, normal, hand, learned, 2.0, 1.0, reduction="official")["margin"].item() == \
        pytest.approx(paper, abs=1e-5)
    with pytest.raises(ConfigError, match="margin_reduction"):
        promptad_losses(flat, normal, hand, learned, 2.0, reduction="sum")


def test_margin_zero_is_relu_of_distance_gap():
    f = torch.tensor([[1.0, 0.0]])
    out = promptad_losses(f, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]),
                          scale=1.0)
    assert out["margin"].item() == 0.0  # f sits on a_n: the gap is negative
    out = promptad_losses(f, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]),
                          scale=1.0)
    assert out["margin"].item() == pytest.approx(2.0)  # ||f - a_n||^2 = 2, ||f - a_a||^2 = 0


def test_states_and_fusion():
    assert defect_phrases(("good", "broken_large", "combined", "scratch", "flaw", "broken_large")) == (
        "with broken large", "with scratch")
    assert state_sentence("damaged", "metal nut") == "damaged metal nut."
    assert state_sentence("with broken large", "bottle") == "bottle with broken large."
    assert len(GENERIC_STATES) == 8
    got = harmonic(torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0.5, 0.25, 0.3]))
    assert torch.allclose(got, torch.tensor([0.25, 0.2, 0.0]), atol=1e-6)


def _refs(tmp_path, n, seed):
    from PIL import Image

    from fsadbench.protocol.sampler import file_digest

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = tmp_path / f"img{seed}_{i}.png"
        base = np.full((60, 60, 3), 120, np.uint8)
        base[::4] = 200
        Image.fromarray(np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)).save(p)
        out.append(ImageRef(p, file_digest(p), p.name))
    return out


INFO = CategoryInfo("synthetic", "stripes", "stripes", defect_types=("good", "hole", "broken_large"))


def test_prompt_layout_and_pairing(method_ctx):
    m = PromptAD(method_ctx, epochs=1, n_pro=2, n_pro_ab=3)
    states = m._states(INFO)
    assert states == GENERIC_STATES + ("with hole", "with broken large")
    from fsadbench.methods.promptad import PromptSet

    ps = PromptSet(m.encoder, "stripes", states, 4, 1, 2, 3, 0.02, torch.Generator().manual_seed(7),
                   torch.device("cpu"))
    # contexts: N(0, 0.02) from the generator, normal contexts drawn first
    g = torch.Generator().manual_seed(7)
    w = m.encoder.width
    assert torch.equal(ps.ctx_n.data, torch.randn(2, 4, w, generator=g) * 0.02)
    assert torch.equal(ps.ctx_a.data, torch.randn(3, 1, w, generator=g) * 0.02)
    prompts, a, b = ps.prompts()
    # official code: n_pro normal, n_pro x states hand-crafted, n_pro x n_pro_ab learned abnormal prompts
    assert (a, b, len(prompts)) == (2, 2 + 2 * 10, 2 + 20 + 6)
    texts = [tpl.text for tpl, _ in prompts]
    assert texts[:2] == ["* * * * stripes."] * 2 and texts[2] == "* * * * damaged stripes."
    assert all("stripes" in t for t in texts)  # the class word is in every prompt
    assert "* * * * stripes with broken large." in texts and texts[-1] == "* * * * * stripes."
    # every hand-crafted prompt shares a NORMAL context (semantic concatenation)
    for j, (_, vals) in enumerate(prompts[:b]):
        assert set(vals) == {"ctx"} and vals["ctx"].data_ptr() == ps.ctx_n[j % 2 if j < 2 else (j - 2) // 10].data_ptr()
    learned = prompts[b:]
    assert [tpl.slots["ab"].tolist() for tpl, _ in learned] == [[5]] * 6
    assert learned[0][0].eot == 8 and int(learned[0][0].ids.argmax()) == 8  # SOS, 4 ctx, ab, stripes, ., EOT
    # prompt i pairs ctx_n[i % n_pro] with ctx_a[i % n_pro_ab]: all 6 (normal, abnormal) pairs once
    pairs = []
    for i, (_, vals) in enumerate(learned):
        assert vals["ctx"].data_ptr() == ps.ctx_n[i % 2].data_ptr()
        assert vals["ab"].data_ptr() == ps.ctx_a[i % 3].data_ptr()
        pairs.append((i % 2, i % 3))
    assert len(set(pairs)) == 6
    g = PromptAD(method_ctx, generic_only=True)
    assert g._states(INFO) == GENERIC_STATES


def test_defaults_pinned_to_their_sources(method_ctx):
    """Every default, with where it comes from (shared spec promptad.md = facts of the official code)."""
    import dataclasses

    assert dataclasses.asdict(PromptAD.Options()) == {
        "generic_only": False,  # "promptad" uses class-specific states; "promptad-g" sets it
        "epochs": 100,  # official run scripts / train_cls.py --Epoch 100
        "lr": 0.002,  # official --lr
        "lr_min": 1e-5,  # official CosineAnnealingLR(eta_min=1e-5)
        "momentum": 0.9,  # official SGD momentum
        "weight_decay": 5e-4,  # official --weight_decay 0.0005
        "n_ctx": 4,  # official --n_ctx
        "n_ctx_ab": 1,  # official --n_ctx_ab
        "n_pro": 1,  # official train_seg.py --n_pro
        "n_pro_ab": 4,  # official --n_pro_ab
        "cls_n_pro": 3,  # official train_cls.py --n_pro
        "separate_image_prompts": True,  # official: separate classification and segmentation runs
        "margin": 0.0,  # official TripletLoss(margin=0.0)
        "margin_reduction": "official",  # official TripletLoss sums over dim 1 (the tokens of B x L x E)
        "align_weight": 0.001,  # official --lambda1
        "init_std": 0.02,  # official nn.init.normal_(std=0.02)
        "logit_scale": "raw",  # official: logits * model.logit_scale (not its exp)
        "vv_blocks": None,  # official code: V-V on all 12 blocks
        "memory_layers": (3, 8),  # spec quirk 2: the clean choice of the official hooked blocks
    }
    m = PromptAD(method_ctx)
    assert m.scale == pytest.approx(float(method_ctx.backbone.model.logit_scale))  # raw parameter
    assert m.mem_layers == (3, 8) and "all" in m.spec.key
    d = m.describe()
    assert d["options_resolved"]["logit_scale"] == "raw" and d["logit_scale_kind"].startswith("raw")
    assert any("test-set" in n for n in d["fidelity_notes"]) and d["model_selection"].startswith("last epoch")


def test_logit_scale_choices_and_deprecated_names(method_ctx):
    ls = float(method_ctx.backbone.model.logit_scale)
    assert PromptAD(method_ctx, logit_scale="exp").scale == pytest.approx(min(math.exp(ls), 100.0), rel=1e-6)
    assert PromptAD(method_ctx, logit_scale=7.5).scale == 7.5
    with pytest.warns(DeprecationWarning, match="'raw_logit_scale' is deprecated; use 'logit_scale'"):
        assert PromptAD(method_ctx, raw_logit_scale=False).options.logit_scale == "exp"
    with pytest.warns(DeprecationWarning, match="'mem_layers' is deprecated; use 'memory_layers'"):
        assert PromptAD(method_ctx, mem_layers=[2, 9]).mem_layers == (2, 9)
    for bad in ({"logit_scale": "log"}, {"logit_scale": -1.0}, {"margin_reduction": "sum"}):
        with pytest.raises(ConfigError):
            PromptAD(method_ctx, **bad)


def test_predict_wiring_by_hand(method_ctx):
    """Text map from the SEGMENTATION prompts (anomalous channel), image score from the IMAGE prompts,
    w/ VG = harmonic fusion with the memory map; computed here without the method's code."""
    from fsadbench.methods.common.visual_memory import VisualMemory

    m = PromptAD(method_ctx, logit_scale=3.0)
    g = torch.Generator().manual_seed(0)
    n = 225
    tokens = torch.randn(2, n, 3, generator=g)
    emb = torch.randn(2, 3, generator=g)
    layers = {l: torch.randn(2, n, 5, generator=g) for l in (3, 8)}
    m.ctx.features = StubFeatures({"tokens": tokens, "embedding": emb, "layer3": layers[3], "layer8": layers[8]})
    m.text_seg = torch.stack([_unit(1.0, 0.0, 0.0), _unit(0.0, 1.0, 0.5)])
    m.text_img = torch.stack([_unit(0.2, 0.0, 1.0), _unit(1.0, 1.0, 0.0)])
    banks = {l: torch.randn(1, 7, 5, generator=g) for l in (3, 8)}
    m.memory = VisualMemory((3, 8))
    m.memory.fit(banks)
    pred = m.predict([None, None])

    def cos(a, b):
        return (a / a.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T

    text = torch.sigmoid(3.0 * (cos(tokens, m.text_seg[1:])[..., 0] - cos(tokens, m.text_seg[:1])[..., 0]))
    cls = torch.sigmoid(3.0 * (cos(emb, m.text_img[1:])[:, 0] - cos(emb, m.text_img[:1])[:, 0]))
    visual = sum((1 - cos(layers[l], banks[l][0]).max(dim=-1).values) / 2 for l in (3, 8)) / 2
    assert np.allclose(pred["w/o VG"].maps.reshape(2, -1), text.numpy(), atol=1e-6)
    assert np.allclose(pred["w/o VG"].scores, cls.numpy(), atol=1e-6)
    fused = text * visual / (text + visual)
    assert np.allclose(pred["w/ VG"].maps.reshape(2, -1), fused.numpy(), atol=1e-6)
    vmax = visual.max(dim=1).values
    assert np.allclose(pred["w/ VG"].scores, (vmax * cls / (vmax + cls)).numpy(), atol=1e-6)
    assert pred["w/o VG"].maps.shape == (2, 15, 15)


def test_training_step_reaches_the_optimiser(monkeypatch, method_ctx):
    """SGD gets grad(CE + EAM + 0.001 align) of the seeded initial contexts, with the official
    momentum / weight decay, and the learning rate follows cosine annealing to lr_min per epoch."""
    from fsadbench.methods.promptad import PromptSet

    log = []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            grp = self.param_groups[0]
            log.append({"lr": grp["lr"], "momentum": grp["momentum"], "wd": grp["weight_decay"],
                        "grads": [p.grad.detach().clone() for p in grp["params"]],
                        "before": [p.detach().clone() for p in grp["params"]]})
            out = super().step(closure)
            log[-1]["after"] = [p.detach().clone() for p in grp["params"]]
            return out

    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)
    method_ctx.seed = 3
    m = PromptAD(method_ctx, epochs=4, lr=0.5, lr_min=0.1)
    f = torch.nn.functional.normalize(torch.randn(2, 6, method_ctx.backbone.embed_dim,
                                                  generator=torch.Generator().manual_seed(1)), dim=-1)
    ps, hist = m.train_prompts(f, "disc", GENERIC_STATES[:2], n_pro=1, run=1)
    assert [round(e["lr"], 6) for e in log] == [round(0.1 + 0.4 * (1 + math.cos(math.pi * e / 4)) / 2, 6)
                                               for e in range(4)]
    assert all(e["momentum"] == 0.9 and e["wd"] == 5e-4 for e in log)
    # the first step's gradient, recomputed from the seeded initial contexts
    ref = PromptSet(m.encoder, "disc", GENERIC_STATES[:2], 4, 1, 1, 4, 0.02,
                    torch.Generator().manual_seed(3 * 1000 + 1), torch.device("cpu"))
    assert torch.equal(ref.ctx_n.data, log[0]["before"][0]) and torch.equal(ref.ctx_a.data, log[0]["before"][1])
    normal, hand, learned = ref.features()
    total = promptad_losses(f, normal, hand, learned, m.scale, 0.0, 0.001, "official")["total"]
    total.backward()
    assert torch.allclose(log[0]["grads"][0], ref.ctx_n.grad, atol=1e-7)
    assert torch.allclose(log[0]["grads"][1], ref.ctx_a.grad, atol=1e-7)
    assert hist[0]["total"] == pytest.approx(float(total.detach()), rel=1e-6)
    # SGD's first step: p - lr (g + wd p)
    want = log[0]["before"][0] - 0.5 * (log[0]["grads"][0] + 5e-4 * log[0]["before"][0])
    assert torch.allclose(log[0]["after"][0], want, atol=1e-7)
    assert len(hist) == 4 and torch.equal(ps.ctx_n.data, log[-1]["after"][0])


def test_fit_trains_segmentation_on_tokens_and_image_prompts_on_cls(monkeypatch, method_ctx, tmp_path):
    shots = _refs(tmp_path, 2, 8)
    calls = []
    real = PromptAD.train_prompts

    def spy(self, f, class_name, states, n_pro, run):
        calls.append((f.clone(), class_name, tuple(states), n_pro, run))
        return real(self, f, class_name, states, n_pro, run)

    monkeypatch.setattr(PromptAD, "train_prompts", spy)
    m = PromptAD(method_ctx, epochs=1, cls_n_pro=2)
    m.fit(shots, CategoryInfo("synthetic", "metal_nut", "metal_nut", defect_types=("good", "scratch")))
    feats = method_ctx.features.get(shots, m.spec)
    seg, img = calls
    assert torch.allclose(seg[0], torch.nn.functional.normalize(feats["tokens"], dim=-1))
    assert torch.allclose(img[0], torch.nn.functional.normalize(feats["embedding"], dim=-1))
    assert seg[1] == img[1] == "metal nut" and seg[2][-1] == "with scratch"
    assert (seg[3], seg[4], img[3], img[4]) == (1, 0, 2, 1)
    assert not torch.equal(m.text_seg, m.text_img)
    # the memory holds the shots' block 3 and 8 outputs
    assert torch.equal(m.memory.bank[3], feats["layer3"].reshape(-1, feats["layer3"].shape[-1]))


@pytest.fixture(scope="module")
def synthetic_disc(tmp_path_factory):
    from fsadbench.datasets.synthetic import SyntheticDataset
    from fsadbench.protocol.sampler import file_digest

    ds = SyntheticDataset(root=tmp_path_factory.mktemp("synth"), size=64, n_train=2, n_test_good=1, n_test_bad=2)
    split = ds.load("disc")

    def refs(samples):
        return [ImageRef(s.image_path, file_digest(s.image_path), s.rel_path) for s in samples]

    return split.info, refs(split.train), refs(split.test)


def test_fit_lowers_loss_deterministic_and_predicts(method_ctx, synthetic_disc):
    info, shots, test = synthetic_disc
    assert info.defect_types  # class-specific states come from the dataset
    m = PromptAD(method_ctx, epochs=10)  # the paper's optimiser settings, fewer epochs
    with pytest.raises(NotApplicable):
        m.fit([], info)
    with pytest.raises(ConfigError, match="before fit"):
        m.predict(test)
    m.fit(shots, info)
    for run in ("segmentation", "image"):
        hist = m.history[run]
        assert len(hist) == 10 and hist[-1]["total"] < 0.9 * hist[0]["total"]
    assert any("disc with" in t and "flaw" not in t and "defect" not in t and "damage" not in t
               for t in m.prompt_texts)
    preds = m.predict(test)
    assert set(preds) == {"w/o VG", "w/ VG"}
    for p in preds.values():
        assert p.maps.shape == (3, 15, 15) and p.scores.shape == (3,)
        assert np.isfinite(p.maps).all() and np.isfinite(p.scores).all()
    assert ((preds["w/o VG"].maps > 0) & (preds["w/o VG"].maps < 1)).all()
    again = PromptAD(method_ctx, epochs=10)
    again.fit(shots, info)
    assert torch.equal(again.text_seg, m.text_seg) and torch.equal(again.text_img, m.text_img)
    assert np.array_equal(again.predict(test)["w/ VG"].maps, preds["w/ VG"].maps)
    method_ctx.seed = 1
    other = PromptAD(method_ctx, epochs=10)
    other.fit(shots, info)
    assert not torch.equal(other.text_seg, m.text_seg)
    d = m.describe()
    assert d["loss_segmentation"]["epochs"] == 10 and d["vv_blocks"] == "all"


def test_fit_reports_each_epoch_of_each_prompt_set(method_ctx, tmp_path):
    seen = []
    ctx = method_ctx.__class__(**{**method_ctx.__dict__, "progress": lambda *a: seen.append(a)})
    PromptAD(ctx, epochs=3).fit(_refs(tmp_path, 1, 5), INFO)
    run = [("epoch", 1, 3), ("epoch", 2, 3), ("epoch", 3, 3)]
    assert seen == run * 2  # the segmentation prompts, then the image prompts
    seen.clear()
    PromptAD(ctx, epochs=2, separate_image_prompts=False).fit(_refs(tmp_path, 1, 6), INFO)
    assert seen == [("epoch", 1, 2), ("epoch", 2, 2)]


def test_shared_image_prompts(method_ctx, tmp_path):
    shots, test = _refs(tmp_path, 1, 2), _refs(tmp_path, 2, 3)
    m = PromptAD(method_ctx, epochs=2, separate_image_prompts=False, generic_only=True)
    m.fit(shots, INFO)
    assert m.text_img is m.text_seg and "image" not in m.history
    assert len(m.prompt_texts) == 1 + 8 + 4
    pred = m.predict(test)["w/ VG"]
    assert pred.maps.shape == (2, 15, 15)
    with pytest.raises(ConfigError, match="epochs"):
        PromptAD(method_ctx, epochs=0)


def test_sweep_encodes_each_image_once(method_ctx, tmp_path):
    """3 shot counts x 3 seeds: one encoder pass per image (train pool + test), the rest from the cache."""
    from fsadbench.protocol.sampler import sample_shots
    from fsadbench.core.types import Sample

    pool, test = _refs(tmp_path, 4, 4), _refs(tmp_path, 3, 5)
    samples = [Sample(r.path, 0, rel_path=r.rel_path) for r in pool]
    by_path = {r.path: r for r in pool}
    used = set()
    for k in (1, 2, 3):
        for seed in (0, 1, 2):
            method_ctx.seed = seed
            shots = [by_path[s.image_path] for s in sample_shots(samples, k, seed)]
            used.update(r.digest for r in shots)
            m = PromptAD(method_ctx, epochs=1, separate_image_prompts=False)
            m.fit(shots, INFO)
            m.predict(test)
    assert method_ctx.features.stats.encoded == len(used) + len(test)


def test_describe_records_every_choice(method_ctx, tmp_path):
    m = PromptAD(method_ctx, epochs=3, separate_image_prompts=False, logit_scale="exp", margin_reduction="paper",
                 vv_blocks=[11, 12])
    m.fit(_refs(tmp_path, 1, 11), INFO)
    d = m.describe()
    assert d["options_resolved"]["logit_scale"] == "exp" and d["fidelity_notes"] == list(PromptAD.fidelity_notes)
    assert {k: v for k, v in d.items() if k not in ("options_resolved", "fidelity_notes", "logit_scale", "prompts",
                                                    "loss_segmentation")} == {
        "logit_scale_kind": "exp(logit_scale) (paper / CLIP)", "margin_reduction": "paper", "vv_blocks": [11, 12],
        "memory_layers": [3, 8], "model_selection": "last epoch (no test-set selection)",
        "image_score": "segmentation prompts on the CLS embedding"}
    assert d["prompts"] == m.prompt_texts and d["loss_segmentation"]["epochs"] == 3
    assert d["loss_segmentation"]["first"] == m.history["segmentation"][0]["total"]
    assert d["loss_segmentation"]["last"] == m.history["segmentation"][-1]["total"]
    assert PromptAD(method_ctx, logit_scale=3.0).describe()["logit_scale_kind"] == "fixed number"
    assert PromptAD(method_ctx).describe()["image_score"] == "separate image-level prompt run"


def test_losses_with_several_rows_defaults_and_messages(method_ctx):
    f = torch.nn.functional.normalize(torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    normal = torch.randn(2, 4, generator=torch.Generator().manual_seed(1))
    hand = torch.randn(3, 4, generator=torch.Generator().manual_seed(2)) * 3
    learned = torch.randn(2, 4, generator=torch.Generator().manual_seed(3)) * 0.5
    out = promptad_losses(f, normal, hand, learned, scale=2.0)  # margin 0, align weight 0.001, official
    unit = torch.nn.functional.normalize
    align = (unit(hand, dim=-1).mean(0) - unit(learned, dim=-1).mean(0)).pow(2).sum()
    assert out["align"].item() == pytest.approx(float(align), rel=1e-6)
    assert out["total"].item() == pytest.approx(float(out["ce"] + out["margin"] + 0.001 * align), rel=1e-6)
    assert defect_phrases(("broken-large", "faulty_imprint")) == ("with broken large", "with faulty imprint")
    for bad, msg in (({"margin_reduction": "sum"}, r"^promptad option 'margin_reduction' must be one of "
                                                   r"\('official', 'paper'\), got 'sum'$"),
                     ({"logit_scale": "log"}, r"^promptad option 'logit_scale' must be one of \('exp', 'raw'\) or a "
                                              r"number, got 'log'$"),
                     ({"logit_scale": -1.0}, r"^promptad option 'logit_scale' must be > 0, got -1\.0$"),
                     ({"memory_layers": ["x"]}, r"^promptad option 'memory_layers' must be a list of block numbers"),
                     ({"vv_blocks": ["x"]}, r"^promptad option 'vv_blocks' must be a list of block numbers"),
                     ({"n_pro": 0}, r"^promptad option 'n_pro' must be >= 1, got 0$")):
        with pytest.raises(ConfigError, match=msg):
            PromptAD(method_ctx, **bad)
    m = PromptAD(method_ctx, vv_blocks=[12, 11], n_ctx_ab=2)
    assert m.spec.key.startswith('vv@v1:{"blocks": [11, 12]')
    assert m.describe()["prompts"] == [] and m.text_seg is None and m.text_img is None
    with pytest.raises(ConfigError, match=r"^promptad: predict\(\) called before fit\(\)$"):
        m.predict([])
    with pytest.raises(NotApplicable, match=r"^promptad learns prompts from normal shots; it needs at least one "
                                            r"\(shots >= 1\)$"):
        m.fit([], INFO)
    from fsadbench.methods.promptad import PromptSet

    ps = PromptSet(m.encoder, "pill", GENERIC_STATES[:1], 4, 2, 1, 2, 0.02, torch.Generator(), torch.device("cpu"))
    assert ps.learned_tpl.slots["ab"].tolist() == [5, 6] and ps.learned_tpl.text == "* * * * * * pill."


def test_paper_margin_reduction_reaches_training(method_ctx):
    m = PromptAD(method_ctx, epochs=3, margin_reduction="paper", margin=0.5)
    f = torch.nn.functional.normalize(torch.randn(1, 4, method_ctx.backbone.embed_dim,
                                                  generator=torch.Generator().manual_seed(5)), dim=-1)
    from fsadbench.methods.promptad import PromptSet

    ref = PromptSet(m.encoder, "disc", GENERIC_STATES[:1], 4, 1, 1, 4, 0.02,
                    torch.Generator().manual_seed(0 * 1000 + 0), torch.device("cpu"))
    with torch.no_grad():
        want = promptad_losses(f, *ref.features(), m.scale, 0.5, 0.001, "paper")
    _, hist = m.train_prompts(f, "disc", GENERIC_STATES[:1], n_pro=1, run=0)
    assert hist[0]["margin"] == pytest.approx(float(want["margin"]), rel=1e-6)
    assert hist[0]["total"] == pytest.approx(float(want["total"]), rel=1e-6)
    assert len(hist) == 3 and hist[1] != hist[-1]


# Equivalent mutants (mutmut, methods/promptad.py), with the reason they cannot be killed:
EQUIVALENT_MUTANTS = {
    "promptad_losses: normalize(mean of rows, dim=-1 -> None)": "normalising a 1-D mean over all dims is over its one dim",
    "promptad_losses: normalize(raw_ab / hand / learned, dim default / +1)": "dim 1 is the last dim of the 2-D features",
    "promptad_losses / PromptSet.__init__ / train_prompts (device= None or omitted)": "device placement: the CPU tests "
                                                                                      "cannot see a device",
    "PromptAD.train_prompts: zero_grad(set_to_none=True -> None / False)": "every grad is set by backward() "
                                                                          "before the step: zeroed or None is the same",
    "PromptAD.fit: normalize(embedding, dim default / +1)": "dim 1 is the last dim of the B x E CLS embeddings",
}
