"""WinCLIP / WinCLIP+: window masks, harmonic aggregation, prompts, few-shot score, token path, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fsadbench.core.errors import ConfigError, MethodError
from fsadbench.methods.winclip.model import (ANOMALOUS_STATES, NORMAL_STATES, TEMPLATES, WinCLIP, ensemble_embeddings,
                                       few_shot_map, state_prompts, zero_shot_scores)
from fsadbench.methods.winclip.windows import (encode_windows, harmonic_aggregate, harmonic_mean, vit_flops,
                                       window_embeddings, window_embeddings_loop, window_index, window_mask)
from fsadbench.core.types import CategoryInfo

GRID = (15, 15)


def _pixels(n=2, seed=0):
    return torch.randn(n, 3, 120, 120, generator=torch.Generator().manual_seed(seed))


# -- windows ---------------------------------------------------------------------------------------
def test_window_counts_on_15x15():
    assert window_index(GRID, 2).shape == (196, 4)
    assert window_index(GRID, 3).shape == (169, 9)
    assert window_mask(GRID, 2).sum().item() == 196 * 4
    assert window_index(GRID, 15).shape == (1, 225)
    with pytest.raises(ValueError):
        window_index(GRID, 16)


def test_window_index_layout():
    idx = window_index(GRID, 2)
    assert idx[0].tolist() == [0, 1, 15, 16]            # top-left window
    assert idx[1].tolist() == [1, 2, 16, 17]            # one step right
    assert idx[14].tolist() == [15, 16, 30, 31]         # second window row
    assert idx[-1].tolist() == [208, 209, 223, 224]     # bottom-right
    assert window_index(GRID, 3)[0].tolist() == [0, 1, 2, 15, 16, 17, 30, 31, 32]


def test_windows_covering_each_patch():
    m2, m3 = window_mask(GRID, 2), window_mask(GRID, 3)
    cover2 = m2.sum(0).reshape(GRID)
    cover3 = m3.sum(0).reshape(GRID)
    # corners are covered by one window, edges by s, the interior by s*s
    assert cover2[0, 0] == 1 and cover2[0, 7] == 2 and cover2[7, 7] == 4
    assert cover3[0, 0] == 1 and cover3[0, 1] == 2 and cover3[0, 7] == 3 and cover3[1, 1] == 4
    assert cover3[7, 7] == 9 and cover3[14, 14] == 1
    # patch (1, 1) = index 16 is covered by the scale-2 windows at (0,0), (0,1), (1,0), (1,1)
    assert torch.nonzero(m2[:, 16]).flatten().tolist() == [0, 1, 14, 15]


def test_harmonic_aggregation_hand_case():
    # 2x3 grid, scale 2 -> windows A = {0,1,3,4} and B = {1,2,4,5}
    mask = window_mask((2, 3), 2)
    assert mask.tolist() == [[1, 1, 0, 1, 1, 0], [0, 1, 1, 0, 1, 1]]
    scores = torch.tensor([[0.5, 0.25]])
    agg = harmonic_aggregate(scores, mask)
    # patches in A only: 0.5; in B only: 0.25; both: 2 / (2 + 4) = 1/3
    expect = torch.tensor([[0.5, 1 / 3, 0.25, 0.5, 1 / 3, 0.25]])
    assert torch.allclose(agg, expect)
    # a zero score gives 0, never NaN
    zero = harmonic_aggregate(torch.tensor([[0.0, 0.25]]), mask)
    assert torch.isfinite(zero).all() and zero[0, 1] < 1e-9 and zero[0, 2] == pytest.approx(0.25)
    hm = harmonic_mean([torch.tensor([1.0]), torch.tensor([0.5]), torch.tensor([0.25])])
    assert hm.item() == pytest.approx(3 / (1 + 2 + 4))


# -- prompts ---------------------------------------------------------------------------------------
def test_prompt_ensemble_counts_and_words():
    assert (len(NORMAL_STATES), len(ANOMALOUS_STATES), len(TEMPLATES)) == (7, 4, 21)
    normal = state_prompts("metal nut", NORMAL_STATES)
    anomalous = state_prompts("metal nut", ANOMALOUS_STATES)
    assert len(normal) == 147 and len(anomalous) == 84 and len(set(normal)) == 147
    assert "a cropped photo of the flawless metal nut." in normal
    assert "a photo of a metal nut with defect for anomaly detection." in anomalous
    assert all("{" not in p for p in normal + anomalous)


def test_ensemble_embedding_is_the_unnormalised_mean_per_state():
    table = {}

    def encode(prompts):
        out = []
        for p in prompts:
            v = torch.tensor([float(len(p)), 2.0 if "flawless" in p else 1.0])
            table[p] = v
            out.append(v)
        return torch.stack(out)

    t = ensemble_embeddings(encode, "pill")
    normal = torch.stack([table[p] for p in state_prompts("pill", NORMAL_STATES)]).mean(0)
    anomalous = torch.stack([table[p] for p in state_prompts("pill", ANOMALOUS_STATES)]).mean(0)
    assert torch.allclose(t[0], normal) and torch.allclose(t[1], anomalous)
    # second coordinate: 21 of 147 normal prompts say "flawless"
    assert t[0, 1].item() == pytest.approx(1 + 21 / 147)


def test_zero_shot_score_hand_case():
    text = torch.tensor([[1.0, 0.0], [0.0, 3.0]])   # norms do not matter (cosine)
    f = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    s = zero_shot_scores(f, text, 0.07)
    e = np.exp(1 / 0.07)
    assert s[0].item() == pytest.approx(1 / (1 + e), rel=1e-4)
    assert s[1].item() == pytest.approx(e / (1 + e), rel=1e-4)
    assert s[2].item() == pytest.approx(0.5)


# -- few-shot score --------------------------------------------------------------------------------
def test_few_shot_map_hand_memory():
    grid = (2, 3)
    masks = {2: window_mask(grid, 2)}
    patch_memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # patch tokens: identical to memory, orthogonal-ish, opposite
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [1.0, 1.0], [1.0, 0.0], [-1.0, -1.0]]])
    window_memory = {2: torch.tensor([[1.0, 0.0]])}
    windows = {2: torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])}    # window A matches (0), B at 90 deg (0.5)
    out = few_shot_map(tokens, windows, patch_memory, window_memory, masks)
    c = (1 - 1 / np.sqrt(2)) / 2
    patch = torch.tensor([0.0, 0.0, 0.5, c, 0.0, (1 + 1 / np.sqrt(2)) / 2]).float()
    win = harmonic_aggregate(torch.tensor([[0.0, 0.5]]), masks[2])[0]
    assert torch.allclose(win, torch.tensor([0.0, 0.0, 0.5, 0.0, 0.0, 0.5]), atol=1e-6)
    assert torch.allclose(out[0], (patch + win) / 2, atol=1e-6)


# -- token path ----------------------------------------------------------------------------------
@pytest.mark.openclip_floor
def test_full_image_window_equals_encode_image(tiny_backbone):
    tower, px = tiny_backbone.image_tower, _pixels()
    x = tower.embed(px)
    full = window_embeddings(tower, x, torch.arange(225)[None])
    ref = tiny_backbone.model.encode_image(px)
    assert full.shape == (2, 1, 64)
    assert torch.allclose(full[:, 0], ref, atol=1e-5)
    feats = encode_windows(tiny_backbone, px, (2, 3))
    assert torch.allclose(feats["embedding"], ref, atol=1e-5)
    assert feats["patch_tokens"].shape == (2, 225, 64)
    assert feats["win2"].shape == (2, 196, 64) and feats["win3"].shape == (2, 169, 64)


@pytest.mark.openclip_floor
def test_window_selection_commutes_with_ln_pre(tiny_backbone):
    """ln_pre normalises each token alone: selecting tokens before or after it is the same."""
    visual, px = tiny_backbone.model.visual, _pixels(1, 3)
    with torch.no_grad():
        x = visual.conv1(px).flatten(2).transpose(1, 2)
        x = torch.cat([visual.class_embedding.expand(1, 1, -1), x], 1) + visual.positional_embedding
        idx = torch.tensor([0, 17, 18, 32, 33])   # CLS + a 2x2 window
        after = visual.ln_pre(x)[:, idx]
        before = visual.ln_pre(x[:, idx])
        assert torch.allclose(after, before, atol=1e-6)
        assert torch.allclose(tiny_backbone.image_tower.embed(px), visual.ln_pre(x), atol=1e-6)


@pytest.mark.openclip_floor
def test_batched_windows_equal_the_per_window_loop(tiny_backbone):
    tower, px = tiny_backbone.image_tower, _pixels()
    x = tower.embed(px)
    idx = window_index(GRID, 3)[:20]
    batched = window_embeddings(tower, x, idx, chunk=7)   # chunk edges inside the batch
    loop = window_embeddings_loop(tower, x, idx)
    assert torch.allclose(batched, loop, atol=1e-5)
    # a window embedding depends only on its own patches
    far = px.clone()
    far[..., 100:, 100:] += 5.0
    y = window_embeddings(tower, tower.embed(far), idx[:1])
    assert torch.allclose(y, batched[:, :1], atol=1e-6)


def test_vit_flops_counts():
    # one token, width 1, one layer: (12 + 2) multiply-adds -> 28 FLOPs
    assert vit_flops(1, 1, 1) == 28.0
    assert vit_flops(10, 8, 2) == 2 * 2 * 10 * (12 * 64 + 2 * 10 * 8)


# -- method end to end -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from fsadbench.datasets.synthetic import SyntheticDataset
    from fsadbench.protocol.sampler import image_ref

    ds = SyntheticDataset(cache_dir=tmp_path_factory.mktemp("winclip_synth"), size=120, n_train=3, n_test_good=3,
                          n_test_bad=4)
    split = ds.load("disc")
    masks = []
    from PIL import Image

    for s in split.test:
        m = np.zeros((120, 120), bool) if s.mask_path is None else np.asarray(Image.open(s.mask_path)) > 0
        masks.append(m)
    return split.info, [image_ref(s) for s in split.train], [image_ref(s) for s in split.test], np.stack(masks)


def test_zero_shot_returns_only_wo_vg(method_ctx, synth):
    info, _, test, _ = synth
    m = WinCLIP(method_ctx)
    with pytest.raises(MethodError):
        m.predict(test[:1])
    m.fit([], info)
    preds = m.predict(test[:2])
    assert set(preds) == {"w/o VG"}
    p = preds["w/o VG"]
    assert p.maps.shape == (2, 15, 15) and np.isfinite(p.maps).all()
    assert ((p.maps > 0) & (p.maps < 1)).all() and ((p.scores > 0) & (p.scores < 1)).all()
    assert m.describe()["class_name"] == "disc" and m.describe()["windows"] == {"scale2": 196, "scale3": 169}


def test_few_shot_end_to_end_beats_chance(method_ctx, synth):
    import torch.nn.functional as F

    info, train, test, masks = synth
    m = WinCLIP(method_ctx)
    m.fit(train[:2], info)
    preds = m.predict(test)
    enc = method_ctx.features.stats.encoded
    assert enc == 2 + len(test)
    assert set(preds) == {"w/o VG", "w/ VG"}
    for p in preds.values():
        assert p.maps.shape == (len(test), 15, 15) and np.isfinite(p.maps).all() and np.isfinite(p.scores).all()
    up = F.interpolate(torch.from_numpy(preds["w/ VG"].maps)[:, None], size=(120, 120), mode="bilinear",
                       align_corners=False)[:, 0].numpy()
    auroc = roc_auc_score(masks.reshape(-1), up.reshape(-1))
    assert auroc > 0.6, auroc
    # image-only features are cached: a second predict encodes nothing, gives the same maps
    again = m.predict(test)
    assert method_ctx.features.stats.encoded == enc
    assert np.array_equal(again["w/ VG"].maps, preds["w/ VG"].maps)
    # text embeddings are computed once per class name
    n_text = len(m.text_cache)
    m.fit(train[:1], info)
    assert len(m.text_cache) == n_text == 1


def test_options_are_checked(method_ctx):
    with pytest.raises(ConfigError, match="scales"):
        WinCLIP(method_ctx, scales=(2, 16))
    with pytest.raises(ConfigError, match="temperature"):
        WinCLIP(method_ctx, temperature=0)
    with pytest.raises(ConfigError, match="unknown option"):
        WinCLIP(method_ctx, window=3)
    m = WinCLIP(method_ctx, class_name="object")
    m.fit([], CategoryInfo("synthetic", "metal_nut", "metal nut"))
    assert m.class_name == "object"
