"""WinCLIP / WinCLIP+: window masks, harmonic aggregation, prompts, few-shot score, token path, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from fixtures_methods import StubFeatures

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
    with pytest.raises(ConfigError, match=r"^method 'winclip' option 'scales' must be a list of window sizes in "
                                          r"patches, e\.g\. \[2, 3\]; 'x' \(item 2\) is not an integer"):
        WinCLIP(method_ctx, scales=[2, "x"])  # constructed directly (planning's type check not in the way)
    assert WinCLIP(method_ctx, scales=2).options.scales == (2,)  # a single scale from the CLI
    m = WinCLIP(method_ctx, class_name="object")
    m.fit([], CategoryInfo("synthetic", "metal_nut", "metal nut"))
    assert m.class_name == "object"


# -- wiring ------------------------------------------------------------------------------------------
def test_defaults_pinned_to_their_sources():
    import dataclasses

    assert dataclasses.asdict(WinCLIP.Options()) == {
        "scales": (2, 3),  # Sec. 4.2: windows of 2 x 2 and 3 x 3 patches, stride 1
        "temperature": 0.07,  # eq. 1-2: CLIP's temperature
        "class_name": "",  # the category's own class name (re-implementations: the category name)
    }
    assert WinCLIP.min_shots == 0 and WinCLIP.default_sigma == 4.0  # zero-shot valid; protocol's Gaussian


def _harm(values):
    return len(values) / sum(1.0 / max(v, 1e-12) for v in values)


def _agg(win_scores, scale, grid=GRID):
    """Harmonic mean over the windows covering each patch, written as loops."""
    idx = window_index(grid, scale).tolist()
    return [_harm([win_scores[w] for w, cover in enumerate(idx) if p in cover]) for p in range(grid[0] * grid[1])]


def test_predict_wiring_by_hand(method_ctx):
    """Zero-shot map = harmonic mean of [image score, scale-2, scale-3 maps]; few-shot map = arithmetic mean
    of [patch, scale-2, scale-3 memory maps]; w/ VG = (zero + few) / 2; scores likewise; by hand."""
    m = WinCLIP(method_ctx, temperature=0.5)
    g = torch.Generator().manual_seed(0)
    e, w = 3, 4
    feats = {"embedding": torch.randn(1, e, generator=g), "patch_tokens": torch.randn(1, 225, w, generator=g),
             "win2": torch.randn(1, 196, e, generator=g), "win3": torch.randn(1, 169, e, generator=g)}
    m.ctx.features = StubFeatures(feats)
    m.text = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    m.patch_memory = torch.randn(6, w, generator=g)
    m.window_memory = {2: torch.randn(5, e, generator=g), 3: torch.randn(4, e, generator=g)}
    pred = m.predict([None])

    def unit(v):
        return v / v.norm(dim=-1, keepdim=True)

    def zs(f):  # anomalous probability of softmax(cos / T)
        c = unit(f) @ unit(m.text).T
        return torch.sigmoid((c[..., 1] - c[..., 0]) / 0.5).tolist()

    def dist(f, mem):
        return ((1 - (unit(f) @ unit(mem).T).max(dim=-1).values) / 2).tolist()

    img = zs(feats["embedding"])[0]
    a2, a3 = _agg(zs(feats["win2"][0]), 2), _agg(zs(feats["win3"][0]), 3)
    zero = [_harm([img, x, y]) for x, y in zip(a2, a3)]
    f2, f3 = _agg(dist(feats["win2"][0], m.window_memory[2]), 2), _agg(dist(feats["win3"][0], m.window_memory[3]), 3)
    few = [(p + x + y) / 3 for p, x, y in zip(dist(feats["patch_tokens"][0], m.patch_memory), f2, f3)]
    assert np.allclose(pred["w/o VG"].maps.reshape(-1), zero, atol=1e-5)
    assert pred["w/o VG"].scores[0] == pytest.approx(img, abs=1e-6)
    assert np.allclose(pred["w/ VG"].maps.reshape(-1), [(a + b) / 2 for a, b in zip(zero, few)], atol=1e-5)
    assert pred["w/ VG"].scores[0] == pytest.approx((img + max(few)) / 2, abs=1e-6)


def test_fit_builds_the_memories_from_the_shots(method_ctx):
    m = WinCLIP(method_ctx, scales=(3,))
    g = torch.Generator().manual_seed(1)
    feats = {"embedding": torch.randn(2, 3, generator=g), "patch_tokens": torch.randn(2, 225, 4, generator=g),
             "win3": torch.randn(2, 169, 3, generator=g)}
    m.ctx.features = StubFeatures(feats)
    m._text_for = lambda name: torch.eye(2, 3)
    m.fit([None, None], CategoryInfo("synthetic", "metal_nut", "metal nut"))
    assert m.class_name == "metal nut" and torch.equal(m.text, torch.eye(2, 3))
    assert torch.equal(m.patch_memory, feats["patch_tokens"].reshape(450, 4))
    assert set(m.window_memory) == {3} and torch.equal(m.window_memory[3], feats["win3"].reshape(338, 3))
    assert m.describe()["memory"] == 450  # patch tokens of the two shots
    m.fit([], CategoryInfo("synthetic", "metal_nut", "metal nut"))
    assert m.patch_memory is None and m.window_memory == {}  # zero-shot refit forgets the shots
    d = m.describe()
    assert d["options_resolved"]["scales"] == (3,) and d["fidelity_notes"] and d["windows"] == {"scale3": 169}


def test_scale_one_windows_and_float64_scores():
    assert window_index((2, 3), 1).tolist() == [[0], [1], [2], [3], [4], [5]]  # scale 1: one window per patch
    with pytest.raises(ValueError, match=r"^window scale 3 does not fit a 2x3 patch grid \(1\.\.2\)$"):
        window_index((2, 3), 3)
    scores = torch.tensor([[0.5, 0.25]], dtype=torch.float64)
    agg = harmonic_aggregate(scores, window_mask((2, 3), 2))  # a float32 mask follows the scores' dtype
    assert agg.dtype == torch.float64 and torch.allclose(agg[0, 1], torch.tensor(1 / 3, dtype=torch.float64))


# Equivalent mutants (mutmut, methods/winclip/windows.py), with the reason they cannot be killed:
EQUIVALENT_MUTANTS = {
    "harmonic_aggregate: mask.to(None, dtype) / mask.to(dtype)": "mask device: the CPU tests cannot see a device",
}


@torch.no_grad()
def test_fit_text_is_the_ensemble_of_the_class_words(method_ctx):
    m = WinCLIP(method_ctx)
    m.fit([], CategoryInfo("synthetic", "metal_nut", "metal nut"))
    want = ensemble_embeddings(method_ctx.backbone.encode_text, "metal nut")
    assert torch.equal(m.text, want)
    assert not torch.allclose(want, ensemble_embeddings(method_ctx.backbone.encode_text, "wood"), atol=1e-4)
    assert m._text_for("metal nut") is m.text  # cached per class name


def test_option_messages_class_name_fallback_and_describe(method_ctx):
    with pytest.raises(ConfigError, match=r"^method 'winclip': option scales=\[2, 16\] must be window sizes in "
                                          r"1\.\.15 patches for the 15x15 grid \(paper: 2,3\)$"):
        WinCLIP(method_ctx, scales=(2, 16))
    with pytest.raises(ConfigError, match=r"^method 'winclip': option scales=\[\] must be window sizes"):
        WinCLIP(method_ctx, scales=())
    with pytest.raises(ConfigError, match=r"^method 'winclip': option temperature=-1 must be > 0 \(paper: 0\.07\)$"):
        WinCLIP(method_ctx, temperature=-1)
    m = WinCLIP(method_ctx, scales=[1, 15])
    assert m.options.scales == (1, 15) and {s: int(x.shape[0]) for s, x in m.masks.items()} == {1: 225, 15: 1}
    m._text_for = lambda name: torch.eye(2, 3)
    m.fit([], CategoryInfo("synthetic", "metal_nut", ""))
    assert m.class_name == "metal nut"  # no class words: the category name, underscores as spaces
    assert m.describe() == {"options_resolved": {"scales": (1, 15), "temperature": 0.07, "class_name": ""},
                            "fidelity_notes": list(WinCLIP.fidelity_notes), "class_name": "metal nut",
                            "prompts": {"normal": 147, "anomalous": 84, "templates": 21},
                            "windows": {"scale1": 225, "scale15": 1}, "temperature": 0.07, "memory": 0}


def test_state_before_fit_and_the_window_spec(method_ctx, tiny_backbone):
    m = WinCLIP(method_ctx)
    assert m.spec.key == 'winclip-windows@v1:{"scales": [2, 3]}'
    d = m.describe()
    assert d["class_name"] == "" and d["memory"] == 0 and m.window_memory == {} and m.text_cache == {}
    with pytest.raises(MethodError, match=r"^winclip: predict\(\) called before fit\(\)$"):
        m.predict([])
    with torch.no_grad():
        out = WinCLIP(method_ctx, scales=(3,)).spec.compute(tiny_backbone, _pixels(1))
    assert set(out) == {"embedding", "patch_tokens", "win3"} and out["win3"].shape == (1, 169, 64)
    m.fit([], CategoryInfo("synthetic", "metal_nut", "metal nut"))
    assert set(m.text_cache) == {"metal nut"} and torch.equal(m.text, m.text_cache["metal nut"])


# Equivalent mutants (mutmut, methods/winclip/model.py), with the reason they cannot be killed:
EQUIVALENT_MUTANTS_MODEL = {
    "zero_shot_scores: text .to(None); WinCLIP.__init__: masks .to(None)": "device placement: CPU tests cannot see a "
                                                                           "device",
    "zero_shot_scores: normalize(text, dim default / +1)": "dim 1 is the last dim of the 2 x E text",
    "WinCLIP.__init__: window spec version None / omitted": "a spec without a version takes its registered version (1)",
    "WinCLIP.__init__: encode_windows without window_chunk": "window_chunk only bounds memory: chunked transformer calls "
                                                             "give the same embeddings",
    "WinCLIP.__init__: scales message grid[1] x grid[1]": "ViT patch grids are square: rows = columns",
}
