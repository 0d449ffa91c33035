"""AnoPLe's ablation switches (the paper's Tables 2-5): each removes exactly its component.

interaction (Table 3 (a)): which contexts and coupling maps exist and fill the slots; crop_grid /
view_signal (3 (b)) are pinned in test_anople_wiring.py and test_anople_model.py; align (3 (c));
state_word and its ensemble (Table 4); pseudo_anomalies (Table 5); decoder and the maple-draem
alias (Table 2).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError
from fsadbench.core.types import CategoryInfo
from fsadbench.methods.anople import train as anople_train
from fsadbench.methods.anople.losses import align_loss, image_loss, smoothed_ce, unit
from fsadbench.methods.anople.model import AnoPLe
from fsadbench.methods.anople.prompts import INTERACTIONS, PromptLearner, project_patches, state_sentences
from fsadbench.methods.winclip.model import ANOMALOUS_STATES, NORMAL_STATES

INFO = CategoryInfo("synthetic", "disc", "disc")

# interaction -> (own text contexts, own visual contexts, f_{v->t}, f_{t->v})
PARTS = {"text": (True, False, False, False), "visual": (False, True, False, False),
         "independent": (True, True, False, False), "text_to_visual": (True, True, False, True),
         "visual_to_text": (True, True, True, False), "bidirectional": (True, True, True, True)}


@pytest.mark.parametrize("interaction", INTERACTIONS)
def test_interaction_keeps_exactly_its_contexts_and_maps(interaction):
    own_t, own_v, v2t, t2v = PARTS[interaction]
    torch.manual_seed(0)
    pl = PromptLearner(6, 10, n_text=3, n_visual=2, depth=4, n_signals=1, interaction=interaction)
    assert pl.interaction == interaction and pl.depth == 4
    assert (pl.n_text, pl.n_visual) == (3 if own_t else 0, 2 if own_v else 0)
    assert pl.ctx_text.shape == (4, pl.n_text, 6) and pl.ctx_visual.shape == (4, pl.n_visual, 10)
    assert (pl.v2t is not None, pl.t2v is not None) == (v2t, t2v)
    assert pl.text_slots == pl.n_text + (pl.n_visual if v2t else 0)
    assert pl.visual_slots == pl.n_visual + (pl.n_text if t2v else 0)
    with torch.no_grad():
        want_t = [pl.ctx_text] + ([pl.ctx_visual @ pl.v2t.weight.T] if v2t else [])
        want_v = [pl.ctx_visual] + ([pl.ctx_text @ pl.t2v.weight.T] if t2v else [])
        assert torch.allclose(pl.text_prompts(), torch.cat(want_t, dim=1))
        assert torch.allclose(pl.visual_prompts(), torch.cat(want_v, dim=1))
    n_params = sum(p.numel() for p in pl.parameters())
    assert n_params == 4 * (6 * pl.n_text + 10 * pl.n_visual) + 60 * (v2t + t2v) + 10


def test_bidirectional_draws_the_parameters_as_before():
    """The default draws ctx_text, ctx_visual, f_{v->t}, f_{t->v}, signal in this order (unchanged numbers)."""
    torch.manual_seed(3)
    pl = PromptLearner(6, 10, 3, 2, 4, n_signals=5)
    torch.manual_seed(3)
    ctx_t, ctx_v = torch.randn(4, 3, 6) * 0.02, torch.randn(4, 2, 10) * 0.02
    v2t, t2v = torch.nn.Linear(10, 6, bias=False), torch.nn.Linear(6, 10, bias=False)
    sig = torch.randn(5, 10) * 0.02
    for got, want in ((pl.ctx_text, ctx_t), (pl.ctx_visual, ctx_v), (pl.v2t.weight, v2t.weight),
                      (pl.t2v.weight, t2v.weight), (pl.signal, sig)):
        assert torch.equal(got, want)
    assert pl.interaction == "bidirectional"
    with pytest.raises(ConfigError, match="interaction must be one of"):
        PromptLearner(6, 10, 3, 2, 4, interaction="both")


def test_projected_patches_by_hand_on_a_non_square_grid(tiny_backbone):
    torch.manual_seed(0)
    patches = torch.randn(2, 15, tiny_backbone.width)
    got = project_patches(tiny_backbone.model, patches, (3, 5))
    proj = tiny_backbone.model.visual.proj
    want = torch.stack([(patches[b] @ proj).T.reshape(-1, 3, 5) for b in range(2)])
    assert got.shape == (2, proj.shape[1], 3, 5) and torch.allclose(got, want, atol=1e-6)
    assert torch.allclose(got[1, :, 2, 4], patches[1, 14] @ proj, atol=1e-6)  # row-major: patch 14 = (2, 4)


def test_state_sentences_and_the_ensemble():
    assert state_sentences("nut", 2, "damaged") == (["X X nut."], ["X X damaged nut."])
    normal, abnormal = state_sentences("nut", 1, "cpe")
    assert normal == [f"X {t.format('nut')}." for t in NORMAL_STATES] and len(normal) == 7
    assert abnormal == [f"X {t.format('nut')}." for t in ANOMALOUS_STATES] and len(abnormal) == 4
    assert normal[0] == "X nut." and abnormal[1] == "X nut with flaw."


def test_ensemble_text_is_the_normalised_mean_of_each_state(method_ctx, monkeypatch):
    m = AnoPLe(method_ctx, state_word="cpe", depth=2, n_ctx_text=1, n_ctx_visual=1)
    m._setup([INFO])
    prompts = m.learner.text_prompts().detach()
    got = m.class_texts(["disc", "nut"], prompts)
    from fsadbench.methods.anople.prompts import encode_text_prompted

    for k, c in enumerate(("disc", "nut")):
        normal, abnormal = state_sentences(c, 2, "cpe")
        for s, sents in enumerate((normal, abnormal)):
            emb = unit(encode_text_prompted(m.model, method_ctx.backbone.tokenizer(sents), prompts).float())
            assert torch.allclose(got[k, s], unit(emb.mean(0)), atol=1e-5)
    one = AnoPLe(method_ctx, state_word="abnormal", depth=2, n_ctx_text=1, n_ctx_visual=1)
    one._setup([INFO])
    single = one.class_texts(["disc"], prompts)
    emb = unit(encode_text_prompted(m.model, method_ctx.backbone.tokenizer(["X X disc.", "X X abnormal disc."]),
                                    prompts).float())
    assert torch.allclose(single[0], emb, atol=1e-6)
    # two sentences per state (no built-in ensemble has exactly two): still their normalised mean
    from fsadbench.methods.anople import model as anople_model

    pair = (["X X disc.", "X X round disc."], ["X X abnormal disc.", "X X broken disc."])
    monkeypatch.setattr(anople_model, "state_sentences", lambda *a: pair)
    two = one.class_texts(["disc"], prompts)
    for s, sents in enumerate(pair):
        emb = unit(encode_text_prompted(m.model, method_ctx.backbone.tokenizer(sents), prompts).float())
        assert torch.allclose(two[0, s], unit(emb.mean(0)), atol=1e-5)


def test_align_mean_is_the_plain_mean_of_the_features():
    emb = torch.tensor([[1.0, 0.0]])
    feats = torch.tensor([[[[1.0, 3.0]], [[2.0, -2.0]]]])  # 1 x 2 x 1 x 2: pixel features (1, 2), (3, -2)
    s = torch.tensor([[2.0, 0.0]])  # their mean
    assert float(align_loss(emb, feats, None)) == pytest.approx(1 - float(F.cosine_similarity(emb, s)))
    assert float(align_loss(emb, feats, None)) == pytest.approx(0.0, abs=1e-7)
    diag = torch.tensor([[1.0, 1.0]])  # cos((1, 1), (2, 0)) = 1 / sqrt(2): the mean is per channel, over pixels
    assert float(align_loss(diag, feats, None)) == pytest.approx(1 - 2 ** -0.5, rel=1e-6)
    # weighted, with all weight on pixel 2: s = (3, -2)
    w = torch.tensor([[[-1e4, 1e4]]])
    assert float(align_loss(emb, feats, w)) == pytest.approx(1 - 3 / 13 ** 0.5, rel=1e-6)


def test_image_loss_without_latent_anomalies_is_the_first_term():
    torch.manual_seed(0)
    emb, text, z = torch.randn(4, 8), torch.randn(2, 8), torch.randn(2, 8)
    labels = torch.tensor([0, 0, 1, 1])
    first = smoothed_ce(3.0 * unit(emb) @ unit(text).T, labels)
    assert torch.equal(image_loss(3.0, emb, labels, None, z, text, 0.1), first)
    assert float(image_loss(3.0, emb, labels, unit(z + 1), unit(z), text, 0.1)) > float(first)


def _fit_recording(monkeypatch, method_ctx, tmp_path, **opts):
    """Fit 1 shot x 1 epoch; record the encoder batches, image_loss / align_loss inputs, the optimiser groups
    and the step's losses."""
    from fixtures_layouts import random_image_refs

    refs = random_image_refs(tmp_path, 1, 48, 48, prefix="s")
    rec = {"encode": [], "image": [], "align": [], "groups": [], "steps": []}
    real_encode, real_img, real_align, real_step = (AnoPLe.encode, anople_train.image_loss,
                                                    anople_train.align_loss, AnoPLe.step_loss)

    def encode(self, px, signal_index, layers=()):
        rec["encode"].append((px.shape[0], signal_index.tolist()))
        return real_encode(self, px, signal_index, layers)

    def img(scale, emb, labels, latent, z_pos, text, smoothing):
        rec["image"].append((labels.tolist(), latent))
        return real_img(scale, emb, labels, latent, z_pos, text, smoothing)

    def align(emb, feats, weights, tau):
        rec["align"].append((feats.shape, weights))
        return real_align(emb, feats, weights, tau)

    def step(self, views, masks, text, gen):
        out = real_step(self, views, masks, text, gen)
        rec["steps"].append({k: float(v.detach()) for k, v in out.items()})
        return out

    class SGD(torch.optim.SGD):
        def __init__(self, groups, **kw):
            rec["groups"].append([list(g["params"]) for g in groups])
            super().__init__(groups, **kw)

    monkeypatch.setattr(AnoPLe, "encode", encode)
    monkeypatch.setattr(AnoPLe, "step_loss", step)
    monkeypatch.setattr(anople_train, "image_loss", img)
    monkeypatch.setattr(anople_train, "align_loss", align)
    monkeypatch.setattr(torch.optim, "SGD", SGD)
    m = AnoPLe(method_ctx, multi_class=False, epochs=1, depth=1, n_ctx_text=1, n_ctx_visual=1, **opts)
    m.fit(refs, INFO)
    return m, rec, refs


@pytest.mark.parametrize("mode", ["both", "pixel", "latent"])
def test_pseudo_anomalies_switch(monkeypatch, method_ctx, tmp_path, mode):
    m, rec, _ = _fit_recording(monkeypatch, method_ctx, tmp_path, pseudo_anomalies=mode)
    n, signals = rec["encode"][0]
    labels, latent = rec["image"][0]
    if mode == "latent":  # the shot's 5 normal views only: no pixel pseudo anomaly reaches any loss
        assert n == 5 and signals == [0, 1, 2, 3, 4] and labels == [0] * 5
    else:
        assert n == 10 and signals == [0, 1, 2, 3, 4] * 2 and labels[:5] == [0] * 5 and labels[-1] == 1
    assert (latent is None) == (mode == "pixel")
    if latent is not None:
        assert latent.shape == (5, m.ctx.backbone.embed_dim)
    s = rec["steps"][0]
    assert s["total"] == pytest.approx(s["pixel"] + s["image"] + s["align"], rel=1e-6) and s["align"] > 0


@pytest.mark.parametrize("mode", ["none", "mean", "weighted"])
def test_align_switch(monkeypatch, method_ctx, tmp_path, mode):
    _, rec, _ = _fit_recording(monkeypatch, method_ctx, tmp_path, align=mode)
    s = rec["steps"][0]
    if mode == "none":  # eq. 10 is never computed and not in the total
        assert rec["align"] == [] and s["align"] == 0.0
        assert s["total"] == pytest.approx(s["pixel"] + s["image"], rel=1e-6)
    else:
        (shape, weights), = rec["align"]
        assert (weights is None) == (mode == "mean")
        if weights is not None:
            assert weights.shape == (10, shape[2], shape[3])
        assert s["total"] == pytest.approx(s["pixel"] + s["image"] + s["align"], rel=1e-6) and s["align"] > 0


def test_decoder_switch_and_the_maple_draem_alias(monkeypatch, method_ctx, tmp_path):
    from fsadbench.core.registry import METHODS

    cls, opts = METHODS.get("maple-draem")
    assert cls is AnoPLe and opts == {"interaction": "text_to_visual", "n_ctx_visual": 0,
                                      "pseudo_anomalies": "pixel", "crop_grid": 1, "view_signal": False,
                                      "align": "none", "decoder": False}
    m, rec, refs = _fit_recording(monkeypatch, method_ctx, tmp_path, **{k: v for k, v in opts.items()
                                                                          if k != "n_ctx_visual"})
    assert m.decoder is None and len(rec["groups"][0]) == 1  # only the prompt learner trains
    assert rec["groups"][0][0] == list(m.learner.parameters())
    assert m.learner.t2v is not None and m.learner.v2t is None and m.learner.signal is None
    assert rec["encode"][0] == (2, [0, 0])  # the image and its pseudo anomaly, no crops
    pred = m.predict(refs)
    out = m.encode(method_ctx.features.pixels(refs), torch.tensor([0]), m.mem_layers)
    feats = project_patches(m.model, out.patches, method_ctx.backbone.grid)
    assert pred["w/o VG"].maps.shape[-2:] == method_ctx.backbone.grid
    logits = (m.scale * unit(feats.movedim(1, -1)) @ m._category_text().T).movedim(-1, 1)
    assert torch.allclose(torch.as_tensor(pred["w/o VG"].maps), F.softmax(logits, dim=1)[:, 1].detach(), atol=1e-5)
    with_dec = AnoPLe(method_ctx, depth=1)
    with_dec._setup([INFO])
    assert with_dec.decoder is not None


def test_switch_values_are_checked(method_ctx):
    from fsadbench.methods.anople.options import ALIGN_MODES, PSEUDO_ANOMALIES
    from fsadbench.methods.anople.prompts import STATE_ENSEMBLE
    from fsadbench.methods.anople.views import CROP_SOURCES

    for opt, bad in (("interaction", "both"), ("align", "max"), ("pseudo_anomalies", "none"), ("state_word", " ")):
        with pytest.raises(ConfigError, match=f"option {opt}: must be"):
            AnoPLe(method_ctx, **{opt: bad})
    assert (ALIGN_MODES, PSEUDO_ANOMALIES, CROP_SOURCES) == (("none", "mean", "weighted"), ("pixel", "latent", "both"),
                                                             ("original", "upsampled"))
    accepted = {"interaction": INTERACTIONS, "align": ALIGN_MODES, "pseudo_anomalies": PSEUDO_ANOMALIES,
                "state_word": ("damaged", STATE_ENSEMBLE), "class_text": ("average", "own"),
                "texture": ("noise", "normal"), "crop_source": CROP_SOURCES}
    for opt, values in accepted.items():  # every documented value is accepted, none refused by a typo
        for value in values:
            assert getattr(AnoPLe(method_ctx, **{opt: value}).options, opt) == value


def test_paper_traits_of_every_method():
    from fsadbench.core.registry import METHODS

    want = {"anople": True, "anople-oc": False, "maple-draem": True, "apt": False, "winclip": False,
            "promptad": False, "promptad-g": False, "memory": False}
    for name, multi in want.items():
        cls, opts = METHODS.get(name)
        assert cls.paper_traits(opts) == {"multi_class": multi, "few_shot_transfer": False}, name
