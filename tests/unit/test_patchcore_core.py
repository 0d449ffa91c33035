"""PatchCore functional core: neighbourhood embedding, memory, nearest-patch map, re-weighted image score."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_maps import pyramid

from fsadbench.methods.common.knn import coreset_indices
from fsadbench.methods.patchcore import torch_model as pc
from fsadbench.methods.patchcore.torch_model import (PatchCore, build_memory, embed, image_scores, patch_scores,
                                                     patches)

EQUIVALENT_MUTANTS = {
    "embed / official_embed: align_corners=False -> None / dropped": "None means False for bilinear "
                                                                     "(F.interpolate's default)",
    "image_scores: device=scores.device / .to(memory.device) / .to(star.device) -> None / dropped": "device: the "
                                                                                "CPU tests cannot see a device",
    "patch_scores: search(..., k=1) -> k dropped": "k=1 is MemoryBank.search's default",
    "patch_scores: MemoryBank(..., compute_device(embedding)) -> None / dropped": "device: the CPU tests cannot "
                                                                                "see a device",
}


def anomalib_image_score_oracle(emb, memory, num_neighbors):
    """anomalib compute_anomaly_score (torch_model.py l. 385-442) in float64 with torch.cdist, own words."""
    b, d, h, w = emb.shape
    rows = emb.double().permute(0, 2, 3, 1).reshape(b, h * w, d)
    mem = memory.double()
    out = []
    for i in range(b):
        dist = torch.cdist(rows[i], mem)
        nn_d, nn_i = dist.min(dim=1)
        worst = int(nn_d.argmax())
        if num_neighbors == 1:
            out.append(nn_d[worst])
            continue
        m_star = mem[nn_i[worst]]
        support = torch.cdist(m_star[None], mem)[0].topk(min(num_neighbors, mem.shape[0]), largest=False).indices
        to_support = torch.cdist(rows[i][worst][None], mem[support])[0]
        out.append((1.0 - torch.softmax(to_support, dim=0)[0]) * nn_d[worst])
    return torch.stack(out)


def official_oracle(shot_maps, test_maps, pretrain_dim, target_dim):
    """patchcore-inspection's _embed (patchcore.py l. 91-145: PatchMaker.patchify, each of the C x 3 x 3
    components of later layers resized bilinearly, Preprocessing / MeanMapper, Aggregator), its
    NearestNeighbourScorer with one neighbour on IndexFlatL2 (squared L2) and PatchMaker.score (max),
    restated in float64 numpy in this file's own words."""

    def adaptive_mean(v, n):
        length = v.shape[-1]
        return np.stack([v[:, (i * length) // n: -((-(i + 1) * length) // n)].mean(-1) for i in range(n)], -1)

    def embed_np(maps):
        big_h, big_w = maps[0].shape[2:]
        per_layer = []
        for m in maps:
            m = m.double().numpy()
            b, c, h, w = m.shape
            padded = np.pad(m, ((0, 0), (0, 0), (1, 1), (1, 1)))
            patch = np.stack([np.stack([padded[:, :, y:y + h, x:x + w] for x in range(3)], -1) for y in range(3)],
                             -2)  # b c h w 3 3
            if (h, w) != (big_h, big_w):
                comp = torch.from_numpy(patch.transpose(0, 1, 4, 5, 2, 3).reshape(b * c * 9, 1, h, w))
                comp = F.interpolate(comp, size=(big_h, big_w), mode="bilinear", align_corners=False).numpy()
                patch = comp.reshape(b, c, 3, 3, big_h, big_w).transpose(0, 1, 4, 5, 2, 3)
            rows = patch.transpose(0, 2, 3, 1, 4, 5).reshape(b * big_h * big_w, c * 9)  # channel-major
            per_layer.append(adaptive_mean(rows, pretrain_dim))
        return adaptive_mean(np.concatenate(per_layer, 1), target_dim), (maps[0].shape[0], big_h, big_w)

    memory, _ = embed_np(shot_maps)
    query, shape = embed_np(test_maps)
    nearest = ((query[:, None, :] - memory[None]) ** 2).sum(-1).min(1)
    maps = nearest.reshape(shape)
    return maps, maps.reshape(shape[0], -1).max(1)


def test_defaults_pinned_with_their_source():
    assert pc.LAYERS == ("layer2", "layer3")  # anomalib torch_model.py l. 17-18
    assert pc.NEIGHBOURHOOD == 3  # anomalib l. 127 AvgPool2d(3, 1, 1); official run_patchcore.py l. 252
    assert pc.NUM_NEIGHBORS == 9  # anomalib l. 113
    assert pc.CORESET_RATIO == 1.0  # few-shot decision: full memory
    assert pc.PRETRAIN_DIM == 1024 == pc.TARGET_DIM  # official README l. 29, run_patchcore.py l. 245-246
    assert pc.SCORINGS == ("official", "anomalib")
    fields = {f.name: f.default for f in dataclasses.fields(PatchCore)}
    assert fields == {"num_neighbors": 9, "coreset_ratio": 1.0, "target_dim": 1024, "scoring": "official",
                      "pretrain_dim": 1024, "seed": 0, "block": 1 << 22, "memory": None}


def test_embed_averages_the_3x3_neighbourhood_with_zero_padding_counted():
    fmap = torch.arange(9.0).reshape(1, 1, 3, 3)  # 0..8
    out = embed([fmap])
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, 1, 1] == pytest.approx(36 / 9)  # centre: all nine
    assert out[0, 0, 0, 0] == pytest.approx((0 + 1 + 3 + 4) / 9)  # corner: four values, nine counted
    assert out[0, 0, 0, 1] == pytest.approx((0 + 1 + 2 + 3 + 4 + 5) / 9)


def test_embed_resizes_later_layers_to_the_first_grid_and_concatenates_in_order():
    layer2 = torch.ones(1, 2, 4, 4)
    layer3 = torch.tensor([[0.0, 4.0], [8.0, 12.0]]).reshape(1, 1, 2, 2)
    out = embed([layer2, layer3])
    assert out.shape == (1, 3, 4, 4)
    # layer3 averaged: every position of the 2x2 map sees all four values over nine -> 24/9 everywhere
    assert torch.allclose(out[0, 2], torch.full((4, 4), 24 / 9))
    assert out[0, 0, 1, 1] == pytest.approx(1.0) and out[0, 0, 0, 0] == pytest.approx(4 / 9)
    ramp = torch.tensor([[0.0, 9.0], [0.0, 9.0]]).reshape(1, 1, 2, 2)  # each position sees all four: 18/9 = 2
    got = embed([torch.zeros(1, 1, 4, 4), ramp])[0, 1]
    pooled = F.avg_pool2d(ramp, 3, 1, 1)
    assert torch.allclose(got, F.interpolate(pooled, size=(4, 4), mode="bilinear", align_corners=False)[0, 0])
    assert torch.allclose(pooled[0, 0], torch.full((2, 2), 2.0))


def test_embed_bilinear_not_nearest():
    coarse = torch.tensor([[9.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]).reshape(1, 1, 3, 3)
    got = embed([torch.zeros(1, 1, 6, 6), coarse])[0, 1]
    assert len(torch.unique(got)) > 4  # nearest would repeat 3x3 values in 2x2 blocks
    pooled = F.avg_pool2d(coarse, 3, 1, 1)  # 1 on the top-left 2x2, 0 elsewhere
    half = F.interpolate(pooled, size=(6, 6), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(got, half)
    assert not torch.allclose(got, F.interpolate(pooled, size=(6, 6), mode="bilinear", align_corners=True)[0, 0])
    # align_corners=False: output column 2 samples input 2.5/2 - 0.5 = 0.75: 0.25 * 1 + 0.75 * 1 = 1, column 3 1.25
    assert got[0, :4].tolist() == pytest.approx([1.0, 1.0, 1.0, 0.75])


def test_embed_target_dim_pools_each_flattened_3x3_patch_then_the_layers():
    """The official MeanMapper pools the C x 3 x 3 patch (channel-major, zero padded) itself, not the
    3 x 3 means of the channels: its windows cut across patch positions and channels."""
    ramp = torch.arange(9.0).reshape(1, 1, 3, 3)
    out = embed([ramp], target_dim=3, pretrain_dim=3)  # one layer: the target pooling is the identity
    assert out.shape == (1, 3, 3, 3)
    assert out[0, :, 1, 1].tolist() == pytest.approx([1.0, 4.0, 7.0])  # the patch's rows: 0..2, 3..5, 6..8
    assert out[0, :, 0, 0].tolist() == pytest.approx([0.0, 1 / 3, 7 / 3])  # rows [0,0,0], [0,0,1], [0,3,4]
    two = torch.cat([ramp, torch.full((1, 1, 3, 3), 10.0)], dim=1)  # 18 values -> 3 windows of 6
    got = embed([two], target_dim=3, pretrain_dim=3)[0, :, 1, 1]
    assert got.tolist() == pytest.approx([2.5, (6 + 7 + 8 + 30) / 6, 10.0])  # the middle window spans both
    stacked = embed([ramp, torch.full((1, 1, 3, 3), 9.0)], target_dim=2, pretrain_dim=3)[0, :, 1, 1]
    assert stacked.tolist() == pytest.approx([4.0, 9.0])  # [1, 4, 7, 9, 9, 9] -> 2 bins, layer-major
    per_image = embed([torch.stack([ramp[0], 2 * ramp[0]])], target_dim=3, pretrain_dim=3)
    assert torch.allclose(per_image[1], 2 * per_image[0])  # images pooled one by one, in order


def test_official_scoring_equals_the_official_code():
    g = torch.Generator().manual_seed(8)
    shots, tests = pyramid(g, 2, [(5, 6), (7, 3)]), pyramid(g, 3, [(5, 6), (7, 3)])
    model = PatchCore(pretrain_dim=7, target_dim=5)  # 45 -> 7 and 63 -> 7 values, 14 -> 5: windows overlap
    model.fit(shots)
    maps, scores = model.predict(tests)
    want_maps, want_scores = official_oracle(shots, tests, 7, 5)
    assert model.memory.shape == (2 * 36, 5)
    assert np.allclose(maps.double().numpy(), want_maps, rtol=1e-5, atol=1e-6)
    assert np.allclose(scores.double().numpy(), want_scores, rtol=1e-5, atol=1e-6)
    l2 = PatchCore(pretrain_dim=7, target_dim=5, scoring="anomalib")
    l2.fit(shots)
    maps_l2, scores_l2 = l2.predict(tests)
    assert torch.allclose(maps_l2.square(), maps, rtol=1e-5) and not torch.allclose(scores_l2.square(), scores)
    default = PatchCore()
    default.fit(shots)
    assert default.memory.shape == (72, 1024)
    assert np.allclose(default.predict(tests)[1].double().numpy(), official_oracle(shots, tests, 1024, 1024)[1],
                       rtol=1e-5)


def test_patch_scores_squared():
    emb = torch.tensor([[3.0, 0.0]]).reshape(1, 2, 1, 1)
    memory = torch.tensor([[0.0, 4.0], [6.0, 0.0]])
    assert patch_scores(emb, memory)[0].item() == pytest.approx(3.0)  # nearest: [6, 0]
    dist, index = patch_scores(emb, memory, squared=True)
    assert dist.item() == pytest.approx(9.0) and index.item() == 1


def test_embed_needs_maps():
    with pytest.raises(ValueError, match=r"^patchcore.embed: no feature maps \(expected layer2 and layer3\)$"):
        embed([])


def test_patches_row_order_is_image_row_column():
    emb = torch.arange(2 * 3 * 2 * 2.0).reshape(2, 3, 2, 2)
    rows = patches(emb)
    assert rows.shape == (8, 3)
    assert rows[0].tolist() == [0.0, 4.0, 8.0] and rows[1].tolist() == [1.0, 5.0, 9.0]
    assert rows[4].tolist() == emb[1, :, 0, 0].tolist()


def test_memory_keeps_every_patch_or_the_seeded_coreset():
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(2, 8, 5, 5, generator=g)
    assert torch.equal(build_memory(emb), patches(emb))
    core = build_memory(emb, coreset_ratio=0.2, seed=3)
    assert core.shape == (10, 8)
    assert torch.equal(core, patches(emb)[coreset_indices(patches(emb), 0.2, seed=3)])
    assert torch.equal(build_memory(emb, coreset_ratio=0.2, seed=3), core)
    assert torch.equal(build_memory(emb, 0.2), build_memory(emb, 0.2, seed=0))  # default seed 0
    assert not torch.equal(build_memory(emb, coreset_ratio=0.2, seed=4), core)


def test_patch_scores_equal_cdist_min():
    g = torch.Generator().manual_seed(1)
    emb, memory = torch.randn(3, 6, 4, 5, generator=g), torch.randn(17, 6, generator=g)
    dist, index = patch_scores(emb, memory, block=50)
    want = torch.cdist(patches(emb).double(), memory.double()).min(dim=1)
    assert dist.shape == index.shape == (3, 4, 5)
    assert torch.allclose(dist.flatten().double(), want.values, atol=1e-6)
    assert torch.equal(index.flatten(), want.indices)


def test_patch_scores_search_each_image_as_a_view_of_one_prepared_memory(monkeypatch):
    banks, calls = [], []
    real = pc.MemoryBank

    class Spy(real):
        def __init__(self, *a, **kw):
            banks.append((a, kw))
            super().__init__(*a, **kw)

        def search(self, query, k=1, block=0):
            calls.append((tuple(query.shape), query.untyped_storage().data_ptr(), k, block))
            return super().search(query, k=k, block=block)

    monkeypatch.setattr(pc, "MemoryBank", Spy)
    g = torch.Generator().manual_seed(4)
    emb, memory = torch.randn(5, 3, 2, 4, generator=g), torch.randn(6, 3, generator=g)
    dist, index = patch_scores(emb, memory, block=25)
    assert len(banks) == 1 and banks[0][0][1] == "l2"  # the memory once, L2
    ptr = emb.untyped_storage().data_ptr()
    assert calls == [((8, 3), ptr, 1, 25)] * 5  # one image at a time, (H W) x D, the embedding's own storage
    want = torch.cdist(patches(emb).double(), memory.double()).min(dim=1)
    assert torch.allclose(dist.flatten().double(), want.values, atol=1e-6)
    assert torch.equal(index.flatten(), want.indices)


def test_image_score_hand_case():
    memory = torch.tensor([[0.0], [10.0]])
    emb = torch.tensor([1.0, 3.0]).reshape(1, 1, 1, 2)  # worst patch at 3: s* = 3, m* = 0
    dist, index = patch_scores(emb, memory)
    # support of m*: rows 0 and 10; distances from 3: 3 and 7; weight 1 - e^3 / (e^3 + e^7) = 1 - 1 / (1 + e^4)
    want = (1.0 - 1.0 / (1.0 + math.exp(4.0))) * 3.0
    for b in (2, 9):  # 9 > M: min(num_neighbors, M) rows
        assert image_scores(emb, memory, dist, index, num_neighbors=b).item() == pytest.approx(want, rel=1e-6)
    assert image_scores(emb, memory, dist, index, num_neighbors=1).item() == pytest.approx(3.0)


@pytest.mark.parametrize("num_neighbors", [1, 2, 9])
def test_image_score_equals_anomalib_oracle(num_neighbors):
    g = torch.Generator().manual_seed(num_neighbors)
    emb, memory = torch.randn(4, 5, 3, 3, generator=g), torch.randn(30, 5, generator=g)
    dist, index = patch_scores(emb, memory)
    got = image_scores(emb, memory, dist, index, num_neighbors=num_neighbors, block=7)
    assert got.shape == (4,)
    assert torch.allclose(got.double(), anomalib_image_score_oracle(emb, memory, num_neighbors), atol=1e-5)


def test_patchcore_fit_predict_wiring():
    g = torch.Generator().manual_seed(2)
    shots, tests = pyramid(g, 2, [(4, 6), (8, 3)]), pyramid(g, 3, [(4, 6), (8, 3)])
    model = PatchCore(scoring="anomalib", target_dim=None)
    with pytest.raises(ValueError, match=r"^patchcore: predict before fit \(the memory of the shots is empty\)$"):
        model.predict(tests)
    model.fit(shots)
    assert model.memory.shape == (2 * 36, 12)
    maps, scores = model.predict(shots)
    assert maps.shape == (2, 6, 6) and torch.all(maps == 0.0)  # a shot's patch is in the memory
    maps, scores = model.predict(tests)
    emb = embed(tests)
    assert torch.allclose(scores.double(), anomalib_image_score_oracle(emb, model.memory, 9), atol=1e-5)
    assert torch.allclose(maps.flatten().double(),
                          torch.cdist(patches(emb).double(), model.memory.double()).min(1).values, atol=1e-5)
    small = PatchCore(num_neighbors=1, coreset_ratio=0.5, target_dim=6, seed=1, scoring="anomalib")
    small.fit(shots)
    assert small.memory.shape == (36, 6)
    maps1, scores1 = small.predict(tests)
    assert torch.allclose(scores1, maps1.flatten(1).amax(1))
    again = PatchCore(num_neighbors=1, coreset_ratio=0.5, target_dim=6, seed=1, scoring="anomalib")
    again.fit(shots)
    assert torch.equal(again.memory, small.memory)  # deterministic for a seed
    assert torch.equal(small.memory, build_memory(embed(shots, 6), 0.5, seed=1))


def test_block_reaches_every_search(monkeypatch):
    seen = []
    real_knn, real_core = pc.knn, pc.coreset_indices

    def knn_spy(*a, **kw):
        seen.append(("knn", kw["block"]))
        return real_knn(*a, **kw)

    class BankSpy(pc.MemoryBank):
        def search(self, query, k=1, block=0):
            seen.append(("search", block))
            return super().search(query, k=k, block=block)

    def core_spy(*a, **kw):
        seen.append(("coreset", kw["block"]))
        return real_core(*a, **kw)

    monkeypatch.setattr(pc, "knn", knn_spy)
    monkeypatch.setattr(pc, "coreset_indices", core_spy)
    monkeypatch.setattr(pc, "MemoryBank", BankSpy)
    g = torch.Generator().manual_seed(3)
    shots, tests = pyramid(g, 2, [(4, 4)]), pyramid(g, 1, [(4, 4)])
    model = PatchCore(coreset_ratio=0.5, block=77, scoring="anomalib")
    model.fit(shots)
    model.predict(tests)
    assert seen == [("coreset", 77), ("search", 77), ("knn", 77)]
    seen.clear()
    official = PatchCore(coreset_ratio=0.5, block=55, target_dim=8, pretrain_dim=8)
    official.fit(shots)
    official.predict(tests)
    assert seen == [("coreset", 55), ("search", 55)]  # the plain max needs no re-weighting search
