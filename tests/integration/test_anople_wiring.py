"""AnoPLe wiring: defaults, training views from the original file, deep prompts per layer, the multi-view
signal, loss terms, what the optimiser receives, and the inference fusion computed by hand."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsadbench.core.types import CategoryInfo, ImageRef
from fsadbench.methods.anople import model as anople_model
from fsadbench.methods.anople import train as anople_train
from fsadbench.methods.anople.model import AnoPLe
from fsadbench.methods.anople.prompts import ImageOut, PromptLearner, encode_image_prompted, encode_text_prompted
from fsadbench.methods.anople.views import PixelSpace, grid_crops, multi_scale_views, views_original
from fsadbench.methods.common.visual_memory import VisualMemory

INFO = CategoryInfo("synthetic", "disc", "disc")


def test_defaults_pinned_to_their_sources():
    assert dataclasses.asdict(AnoPLe.Options()) == {
        "multi_class": True,  # the paper's "AnoPLe" is multi-class; "AnoPLe*" (anople-oc) is one-class
        "epochs": 60,  # suppl. 6.2
        "depth": 9,  # sec. 4.2, suppl. 8.1 (best prompt depth)
        "n_ctx_text": None,  # sec. 4.2: 3 on MVTec (and any other dataset), 5 on VisA
        "n_ctx_visual": None,  # sec. 4.2: 3 on MVTec, 8 on VisA
        "crop_grid": 2,  # suppl. 6.1: four non-overlapping crops of a 480 x 480 resize
        "crop_source": "original",  # suppl. 6.1: the crops come from the image resized to 480 x 480
        "view_signal": True,  # sec. 3.3.2: the multi-view signal c
        "decoder_scale": 2,  # choice: sec. 3.3.1 upsamples bilinearly, the factor is ours
        "texture": "noise",  # choice: DRAEM's DTD texture set is not shipped
        "beta_max": 0.8,  # DRAEM's opacity range (suppl. 8.3 follows DRAEM)
        "latent_mu": 0.0,  # choice: SimpleNet's default, the paper gives no mu
        "latent_sigma": 0.015,  # choice: SimpleNet's default, the paper gives no sigma
        "label_smoothing": 0.003,  # sec. 3.4.2 (eq. 9)
        "align_tau": 2.0,  # suppl. 6.2 (eq. 10)
        "lr_prompt": 1e-3,  # suppl. 6.2
        "lr_decoder": 2e-4,  # suppl. 6.2
        "momentum": 0.9,  # suppl. 6.2
        "weight_decay": 1e-5,  # suppl. 6.2
        "warmup_epochs": 1.0,  # choice: "warms up from zero" (suppl. 6.2), no length given
        "memory_layers": None,  # suppl. 6.3: blocks 7-10 on MVTec, 7-9 on VisA
        "class_text": "average",  # sec. 3.4.2: "we average outputs from all classes"
        "state_word": "abnormal",  # eq. 2: "[ctx] abnormal {class}"; Table 4's last row
        "interaction": "bidirectional",  # sec. 3.2 (eq. 5-6); Table 3 (a)'s last row
        "align": "weighted",  # eq. 10; Table 3 (c)'s last row
        "pseudo_anomalies": "both",  # sec. 3.4; Table 5's last row
        "decoder": True,  # sec. 3.3.1 (off only in the maple-draem alias of Table 2)
    }
    assert AnoPLe.fit_scope_for({}) == "dataset"


# -- training views from the original file -----------------------------------------------------
def _fine_image(tmp_path, size=240):
    """A one-pixel checkerboard: its detail survives at 2 x 120 = 240 px and vanishes at 120 px."""
    from PIL import Image

    from fsadbench.protocol.sampler import file_digest

    yy, xx = np.mgrid[:size, :size]
    board = (((yy + xx) % 2) * 255).astype(np.uint8)
    p = tmp_path / "fine.png"
    Image.fromarray(np.stack([board, 255 - board, board], -1)).save(p)
    return ImageRef(p, file_digest(p), p.name)


def test_crops_come_from_the_original_file_at_twice_the_resolution(tiny_backbone, feature_store, tmp_path):
    ref = _fine_image(tmp_path)
    x = feature_store.pixels([ref])[0]  # 3 x 120 x 120 (the backbone's own preprocessing)
    big = feature_store.pixels([ref], size=240)[0]  # the same file through the same transform at 2S
    assert big.shape == (3, 240, 240)
    assert torch.equal(big, tiny_backbone.load_pixels([ref.path], 240)[0])
    assert torch.equal(feature_store.pixels([ref], size=120)[0], x)  # size S is the default entry
    space = PixelSpace(tiny_backbone.mean, tiny_backbone.std)
    views, masks = views_original(x, big, big[None], torch.Generator().manual_seed(0), 2, "noise", 0.8, space)
    assert views.shape == (10, 3, 120, 120) and masks.shape == (10, 120, 120)
    for k, crop in enumerate(grid_crops(big, 2)):
        assert torch.equal(views[k], crop)  # normal crops: the 240 px image, cut in four
    assert torch.equal(views[4], x)  # the whole view is the image at the encoder's size
    # the crops carry the fine detail; crops of the upsampled 120 px image do not
    up = multi_scale_views(x[None], 2)[0, :4]
    assert views[:4].std(dim=(2, 3)).mean() > 3 * up.std(dim=(2, 3)).mean()
    # anomalous views differ from the normal ones exactly where their masks are set
    assert (masks[:5] == 0).all() and masks[5:].sum() > 0
    for k in range(5):
        diff = (views[5 + k] - views[k]).abs().amax(dim=0) > 1e-6
        assert torch.equal(diff, masks[5 + k] > 0)
    # the whole view is anomalous wherever a crop pixel below it is (max-pooled mask, same blend)
    full = torch.cat([torch.cat([masks[5], masks[6]], 1), torch.cat([masks[7], masks[8]], 1)], 0)
    pooled = F.max_pool2d(full[None, None], 2)[0, 0] > 0
    assert masks[9].any() and (pooled & (masks[9] > 0)).sum() > 0.5 * pooled.sum()


@pytest.mark.parametrize("source, crop_grid, texture, want", [("original", 2, "normal", "views_original"),
                                                              ("upsampled", 2, "normal", "views_upsampled"),
                                                              ("original", 1, "noise", "views_upsampled")])
def test_fit_takes_views_from_the_configured_source(monkeypatch, method_ctx, tmp_path, source, crop_grid, texture,
                                                    want):
    from fixtures_layouts import random_image_refs

    ref = _fine_image(tmp_path)
    refs = [ref] + random_image_refs(tmp_path, 1, 50, 50, prefix="o")
    calls = {"views_original": [], "views_upsampled": []}
    for name in calls:
        real = getattr(anople_model, name)
        monkeypatch.setattr(anople_model, name, lambda *a, _r=real, _n=name, **k: calls[_n].append(a) or _r(*a, **k))
    m = AnoPLe(method_ctx, multi_class=False, epochs=1, depth=2, crop_grid=crop_grid, crop_source=source,
               texture=texture, beta_max=0.6)
    m.fit(refs, INFO)
    assert len(calls[want]) == 2 and sum(map(len, calls.values())) == 2
    if want == "views_upsampled":
        assert m.crop_pixels == {}  # no crop_grid x S decode when the crops do not come from the file
    else:
        assert torch.equal(m.crop_pixels["disc"], method_ctx.features.pixels(refs, size=240))
    small = method_ctx.features.pixels(refs)
    for args in calls[want]:
        i = next(k for k in range(2) if torch.equal(args[0], small[k]))  # the shot this step trains on
        if want == "views_original":
            pool = method_ctx.features.pixels(refs, size=240)  # the files at crop_grid x 120, via the store
            x, big, pool_big, gen, factor, tex, beta_max, space = args
            assert torch.equal(big, pool[i]) and torch.equal(pool_big, pool)
        else:
            x, pool_small, gen, factor, tex, beta_max, space = args
            assert torch.equal(pool_small, small)
        assert isinstance(gen, torch.Generator) and (factor, tex, beta_max) == (crop_grid, texture, 0.6)
        assert space.mean.flatten().tolist() == pytest.approx(list(method_ctx.backbone.mean))
    assert m.describe()["training_view_source"] == {
        "original": "crops of the original file at crop_grid x S",
        "upsampled": "crops of the bilinearly upsampled S x S tensor"}[source]
    assert m.describe()["pseudo_anomaly_texture"] == {
        "noise": "Perlin colour noise (no texture set available)",
        "normal": "another normal shot of the category, flipped/rotated"}[texture]


# -- deep prompts: every prompted layer counts, and only those ----------------------------------------
@torch.no_grad()
def test_every_prompted_layer_changes_both_encoders(tiny_backbone):
    model = tiny_backbone.model
    torch.manual_seed(0)
    pl = PromptLearner(64, 64, 2, 2, depth=4, init_std=0.5)
    tokens = tiny_backbone.tokenizer(["X X X X bottle.", "X X X X abnormal bottle."])
    px = torch.randn(1, 3, 120, 120, generator=torch.Generator().manual_seed(1))
    tp, vp = pl.text_prompts(), pl.visual_prompts()
    t0 = encode_text_prompted(model, tokens, tp)
    v0 = encode_image_prompted(model, px, vp).embedding
    for j in range(4):
        bump = torch.zeros_like(tp)
        bump[j] = torch.randn(bump[j].shape, generator=torch.Generator().manual_seed(10 + j))
        assert not torch.allclose(encode_text_prompted(model, tokens, tp + bump), t0, atol=1e-4), j
        bump = torch.zeros_like(vp)
        bump[j] = torch.randn(bump[j].shape, generator=torch.Generator().manual_seed(20 + j))
        assert not torch.allclose(encode_image_prompted(model, px, vp + bump).embedding, v0, atol=1e-4), j
    # depth 1: only the input prompts; the slots then carry the block outputs (a different result)
    assert not torch.allclose(encode_text_prompted(model, tokens, tp[:1]), t0, atol=1e-4)


# -- inference fusion by hand ---------------------------------------------------------------------
class _Decoder(torch.nn.Module):
    """Returns the hand-made features of the image whose index the stub encoder wrote in the patches."""

    def __init__(self, feats):
        super().__init__()
        self.feats = feats

    def forward(self, patches, grid):
        assert grid == (15, 15)
        k = int(patches[0, 0, 0])
        return self.feats[k:k + patches.shape[0]]


def test_predict_fusion_and_signal_by_hand(monkeypatch, method_ctx):
    m = AnoPLe(method_ctx, multi_class=False, memory_layers=(2, 5))
    m._setup([INFO])
    g = torch.Generator().manual_seed(4)
    b, n, e = 2, 225, 64
    dec_feats = torch.randn(b, e, 15, 15, generator=g)
    emb = torch.randn(b, e, generator=g)
    layers = {2: torch.randn(b, n, 8, generator=g), 5: torch.randn(b, n, 8, generator=g)}
    seen = []

    def encode(px, signal_index, want=()):
        k = len(seen)  # batch size 1: call k is image k
        seen.append((signal_index.tolist(), tuple(want)))
        return ImageOut(embedding=emb[k:k + 1], patches=torch.full((px.shape[0], n, 8), float(k)),
                        layers={i: t[k:k + 1] for i, t in layers.items()})

    monkeypatch.setattr(m, "encode", encode)
    m.ctx.batch_size = 1
    m.decoder = _Decoder(dec_feats)
    text = F.normalize(torch.randn(2, e, generator=g), dim=-1)
    monkeypatch.setattr(m, "_category_text", lambda: text)
    bank = torch.randn(1, 30, 8, generator=g)
    m.memories = {"disc": VisualMemory((0,))}
    m.memories["disc"].fit({0: bank})
    m.category = INFO
    m.ctx.features = type("S", (), {"pixels": lambda self, refs: torch.zeros(len(refs), 3, 120, 120)})()
    pred = m.predict([None, None])
    assert seen == [([4], (2, 5))] * 2  # test time: the whole image on c_{N+1} only, memory blocks
    s = m.scale
    assert s == pytest.approx(m.model.logit_scale.exp().item()) and s > 10  # CLIP's exp(logit_scale) as 1/tau
    f = F.normalize(dec_feats, dim=1)
    dec = torch.sigmoid(s * (torch.einsum("bchw,c->bhw", f, text[1]) - torch.einsum("bchw,c->bhw", f, text[0])))
    z = F.normalize(emb, dim=-1)
    prob = torch.sigmoid(s * (z @ text[1] - z @ text[0]))
    q = F.normalize((layers[2] + layers[5]) / 2, dim=-1)
    mem = ((1 - (q @ F.normalize(bank[0], dim=-1).T).max(dim=-1).values) / 2).reshape(b, 15, 15)
    fused = dec * mem / (dec + mem)
    assert np.allclose(pred["w/o VG"].maps, dec.numpy(), atol=1e-5)
    assert np.allclose(pred["w/ VG"].maps, fused.numpy(), atol=1e-5)
    for v, mp in (("w/o VG", dec), ("w/ VG", fused)):
        mx = mp.flatten(1).max(dim=1).values
        assert np.allclose(pred[v].scores, (prob * mx / (prob + mx)).numpy(), atol=1e-5)


@torch.no_grad()
def test_only_the_last_signal_reaches_test_time(method_ctx, tmp_path):
    """Changing c_1..c_N (training crops) leaves predictions unchanged; changing c_{N+1} changes them."""
    from fixtures_layouts import random_image_refs

    refs = random_image_refs(tmp_path, 3, 60, 60, prefix="s")
    m = AnoPLe(method_ctx, multi_class=False, epochs=1, depth=2, crop_grid=2)
    with torch.enable_grad():
        m.fit(refs[:1], INFO)
    assert m.learner.signal.shape == (5, method_ctx.backbone.width)
    before = m.predict(refs[1:])["w/o VG"].maps
    m.learner.signal[:4] += 1.0
    assert np.array_equal(m.predict(refs[1:])["w/o VG"].maps, before)
    m.learner.signal[4] += torch.randn(m.learner.signal.shape[1], generator=torch.Generator().manual_seed(0))
    assert not np.allclose(m.predict(refs[1:])["w/o VG"].maps, before, atol=1e-6)
    off = AnoPLe(method_ctx, multi_class=False, view_signal=False)
    off._setup([INFO])
    assert off.learner.signal is None


# -- training: the loss terms and what the optimiser receives --------------------------------------
def test_training_step_losses_signal_and_optimiser(monkeypatch, method_ctx, tmp_path):
    from fixtures_layouts import random_image_refs

    refs = random_image_refs(tmp_path, 2, 60, 60, prefix="t")
    log, steps = [], []

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            log.append([{"lr": g["lr"], "momentum": g["momentum"], "wd": g["weight_decay"],
                         "grads": [None if p.grad is None else p.grad.clone() for p in g["params"]]}
                        for g in self.param_groups])
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "SGD", RecordingSGD)
    real_step, real_encode, real_image_loss = AnoPLe.step_loss, AnoPLe.encode, anople_train.image_loss
    encodes, latents = [], []

    def step_loss(self, views, masks, text, gen):
        out = real_step(self, views, masks, text, gen)
        params = [p for g in (self.learner, self.decoder) for p in g.parameters()]
        grads = torch.autograd.grad(out["total"], params, retain_graph=True, allow_unused=True)
        steps.append({"out": {k: float(v.detach()) for k, v in out.items()}, "grads": grads, "masks": masks.clone()})
        return out

    def encode(self, px, signal_index, layers=()):
        encodes.append(signal_index.tolist())
        return real_encode(self, px, signal_index, layers)

    def image_loss(scale, emb, labels, latent, z_pos, text, smoothing):
        latents.append((labels.clone(), latent.clone(), z_pos.clone(), smoothing))
        return real_image_loss(scale, emb, labels, latent, z_pos, text, smoothing)

    monkeypatch.setattr(AnoPLe, "step_loss", step_loss)
    monkeypatch.setattr(AnoPLe, "encode", encode)
    monkeypatch.setattr(anople_train, "image_loss", image_loss)
    m = AnoPLe(method_ctx, multi_class=False, epochs=2, depth=2, crop_grid=2, lr_prompt=0.01, lr_decoder=0.004,
               latent_sigma=0.5, latent_mu=0.1)
    m.fit(refs, INFO)
    assert len(log) == len(steps) == 4  # 2 epochs x 2 shots, batch 1
    # warm-up from zero over one epoch (2 steps): factors 1/2, 1, then constant
    for k, factor in enumerate((0.5, 1.0, 1.0, 1.0)):
        assert [round(g["lr"], 9) for g in log[k]] == [round(0.01 * factor, 9), round(0.004 * factor, 9)]
        assert all(g["momentum"] == 0.9 and g["wd"] == 1e-5 for g in log[k])
    # the optimiser gets grad(pixel + image + align) of every parameter of both groups
    for rec, st in zip(log, steps):
        flat = [gr for g in rec for gr in g["grads"]]
        for got, want in zip(flat, st["grads"]):
            assert (got is None) == (want is None) and (got is None or torch.allclose(got, want, atol=1e-6))
        o = st["out"]
        assert o["total"] == pytest.approx(o["pixel"] + o["image"] + o["align"], rel=1e-5)
        assert min(o["pixel"], o["image"], o["align"]) > 0
    # training views: crop i on c_i, the whole image on c_{N+1}, for the shot and its anomaly
    assert encodes[0] == [0, 1, 2, 3, 4] * 2
    labels, latent, z_pos, smoothing = latents[0]
    assert labels[:5].tolist() == [0] * 5 and labels[9] == 1 and smoothing == 0.003
    assert torch.equal(labels.bool(), steps[0]["masks"].flatten(1).amax(dim=1) > 0)
    # latent anomalies: z+ + N(0.1, 0.5^2), renormalised -- far from z+ at this sigma
    assert torch.allclose(latent.norm(dim=-1), torch.ones(5), atol=1e-5)
    assert (latent * z_pos).sum(-1).max() < 0.99


def test_option_checks_name_the_option_and_describe(method_ctx):
    from fsadbench.core.errors import ConfigError

    cases = {"depth": (13, "between 1 and the encoder's 12 blocks \\(the paper: 9\\)"),
             "texture": ("dtd", "'noise' or 'normal'"),
             "crop_source": ("web", "one of \\('original', 'upsampled'\\)"),
             "class_text": ("mine", "'average' or 'own'")}
    for name, (value, want) in cases.items():
        with pytest.raises(ConfigError, match=rf"^method 'anople' option {name}: must be {want}, got {value!r}$"):
            AnoPLe(method_ctx, **{name: value})
    # the number ranges: options.RANGES, checked by fsadbench.protocol.optionranges when the options are made
    ranges = {"epochs": (0, ">= 1 \\(the paper: 60\\)"),
              "crop_grid": (0, ">= 1 and <= 4 \\(the paper: 2, i\\.e\\. 4 crops; 4 = 16 crops of a 4x resize\\)"),
              "decoder_scale": (0, ">= 1"), "beta_max": (1.5, ">= 0 and <= 1"),
              "latent_sigma": (-0.1, ">= 0"), "label_smoothing": (1.0, ">= 0 and < 1"), "align_tau": (0.0, "> 0"),
              "warmup_epochs": (-1.0, ">= 0"), "n_ctx_text": (-1, ">= 0 \\(or null: the paper's length\\)")}
    for name, (value, want) in ranges.items():
        with pytest.raises(ConfigError, match=rf"^method 'anople': option '{name}' must be {want} \(got {value!r}\)$"):
            AnoPLe(method_ctx, **{name: value})
    with pytest.raises(ConfigError, match=r"option 'crop_grid' must be >= 1 and <= 4 .* \(got 5\)$"):
        AnoPLe(method_ctx, crop_grid=5)
    for ok in ({"depth": 1}, {"depth": 12}, {"beta_max": 0.0}, {"beta_max": 1.0}, {"label_smoothing": 0.0},
               {"latent_sigma": 0.0}, {"warmup_epochs": 0.0}, {"n_ctx_text": 0}, {"n_ctx_visual": 0},
               {"crop_grid": 1}, {"crop_grid": 4}, {"decoder_scale": 1}, {"align_tau": 0.5}, {"epochs": 1}):
        AnoPLe(method_ctx, **ok)
    assert AnoPLe(method_ctx, crop_grid=1).n_views == 1  # no crops: the image alone
    with pytest.raises(ConfigError, match=r"^method 'anople' option memory_layers: layers \[40\] out of range"):
        AnoPLe(method_ctx, memory_layers=[7, 40])
    with pytest.warns(DeprecationWarning, match="'mem_layers' is deprecated; use 'memory_layers'"):
        assert AnoPLe(method_ctx, mem_layers=[5]).options.memory_layers == (5,)
    m = AnoPLe(method_ctx, multi_class=False, crop_source="upsampled", texture="normal", latent_sigma=0.02)
    m._setup([CategoryInfo("visa", "pcb1", "printed circuit board")])
    assert m.n_ctx == (5, 8) and m.mem_layers == (7, 8, 9)  # VisA: sec. 4.2, suppl. 6.3
    d = m.describe()
    assert d["fidelity_notes"] == list(AnoPLe.fidelity_notes) and d["options_resolved"]["latent_sigma"] == 0.02
    assert {k: v for k, v in d.items() if k not in ("fidelity_notes", "options_resolved")} == {
        "training_view_source": "crops of the bilinearly upsampled S x S tensor",
        "setting": "one-class (one model per category)",
        "feature_cache": "not used: the visual prompts change the image encoder",
        "context_lengths": {"text": 5, "visual": 8}, "memory_layers": [7, 8, 9], "training_views": 5,
        "pseudo_anomaly_texture": "another normal shot of the category, flipped/rotated",
        "latent_noise": {"mu": 0.0, "sigma": 0.02, "on": "L2-normalised image embedding"},
        "text_embeddings": "average", "loss_history": []}
    mv = AnoPLe(method_ctx, n_ctx_text=2, n_ctx_visual=0, crop_grid=3)
    mv._setup([INFO])
    assert mv.n_ctx == (2, 0) and mv.mem_layers == (7, 8, 9, 10) and mv.n_views == 10
    assert mv.describe()["setting"] == "multi-class (one model per dataset)"


# Equivalent mutants (mutmut, methods/anople/model.py), with the reason they cannot be killed on CPU:
EQUIVALENT_MUTANTS = {
    "AnoPLe.autocast (device type compared with another string, amp -> None, dtype removed)":
        "autocast stays off on CPU either way (amp on CPU is tested to change nothing)",
    "AnoPLe._tokens/encode/_setup/class_texts (.to(device) -> .to(None))": "device placement: the CPU tests cannot "
                                                                            "see a device",
    "AnoPLe._setup (fork_rng(devices=[] -> None))": "forks the CPU generator either way on a machine without CUDA",
    "AnoPLe.class_texts (n > 1 -> n >= 1, or (n > 1) or True)": "one sentence per state: the normalised mean of "
                                                               "one unit vector is that vector",
}
