"""SPADE functional core: image kNN on global features, pixel kNN over the K nearest normals' maps."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from fixtures_maps import pyramid

from fsadbench.methods.spade import torch_model as sp
from fsadbench.methods.spade.torch_model import Spade, image_knn, pixel_scores

EQUIVALENT_MUTANTS = {
    "pixel_scores: align_corners=False -> None / dropped": "None means False for bilinear (F.interpolate's default)",
    "pixel_scores: neighbours[i].to(nmap.device) -> .to(None)": "device: the CPU tests cannot see a device",
    "pixel_scores: shape[-2:] -> shape[+2:]": "the maps are 4-D: the same two sizes",
    "pixel_scores: torch.empty(b, 1, h, w) -> (b, 2, h, w)": "only channel 0 is written and read",
}


def reference_image(query, normals, top_k):
    """main.py l. 111-116, 187-195: expanded-difference distance matrix, topk smallest, mean."""
    n, m, d = query.shape[0], normals.shape[0], query.shape[1]
    diff = query.double().unsqueeze(1).expand(n, m, d) - normals.double().unsqueeze(0).expand(n, m, d)
    dist = torch.sqrt(diff.pow(2).sum(2))
    v, i = torch.topk(dist, k=top_k, dim=1, largest=False)
    return v.mean(1), i


def reference_maps(query_maps, normal_maps, neighbours, size):
    """main.py l. 126-149 without the gallery-tail drop: per image, per layer, min distance, resize, mean."""
    out = []
    for t in range(query_maps[0].shape[0]):
        layers = []
        for qmap, nmap in zip(query_maps, normal_maps):
            gallery = nmap[neighbours[t]].double().permute(0, 2, 3, 1).reshape(-1, nmap.shape[1])
            test = qmap[t].double().permute(1, 2, 0).reshape(-1, qmap.shape[1])
            score = torch.cdist(test, gallery).min(dim=1).values.reshape(1, 1, *qmap.shape[-2:])
            layers.append(F.interpolate(score, size=size, mode="bilinear", align_corners=False))
        out.append(torch.cat(layers, 0).mean(0)[0])
    return torch.stack(out)


def test_defaults_pinned_with_their_source():
    assert sp.TOP_K == 5  # main.py l. 23
    assert sp.LAYERS == ("layer1", "layer2", "layer3")  # main.py l. 44-46, 128
    fields = {f.name: f.default for f in dataclasses.fields(Spade)}
    assert fields["top_k"] == 5 and fields["out_size"] is None and fields["block"] == 1 << 22


def test_image_knn_hand_case():
    normals = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    scores, index = image_knn(torch.tensor([[0.0, 0.0], [6.0, 9.0]]), normals, top_k=2)
    assert index.tolist() == [[0, 1], [2, 1]]
    assert scores.tolist() == pytest.approx([2.5, (1.0 + (9 + 25) ** 0.5) / 2])
    scores, index = image_knn(torch.tensor([[0.0, 0.0]]), normals)  # top_k 5 > 3 normals: all three
    assert index.tolist() == [[0, 1, 2]] and scores.item() == pytest.approx(5.0)
    with pytest.raises(ValueError, match=r"^spade: top_k=0 must be >= 1$"):
        image_knn(normals, normals, top_k=0)


def test_image_knn_flattens_and_equals_reference():
    g = torch.Generator().manual_seed(0)
    normals, query = torch.randn(9, 16, 1, 1, generator=g), torch.randn(4, 16, 1, 1, generator=g)
    scores, index = image_knn(query, normals, top_k=3, block=10)
    want_s, want_i = reference_image(query.flatten(1), normals.flatten(1), 3)
    assert torch.allclose(scores.double(), want_s, atol=1e-5) and torch.equal(index, want_i)


def test_pixel_scores_hand_case_uses_only_the_neighbours():
    normals = torch.stack([torch.zeros(1, 2, 2), torch.full((1, 2, 2), 10.0)])
    query = torch.tensor([[1.0, 9.0], [5.0, 0.0]]).reshape(1, 1, 2, 2)
    only_first = pixel_scores([query], [normals], torch.tensor([[0]]))
    assert only_first.shape == (1, 2, 2) and only_first[0].tolist() == [[1.0, 9.0], [5.0, 0.0]]
    both = pixel_scores([query], [normals], torch.tensor([[0, 1]]))
    assert both[0].tolist() == [[1.0, 1.0], [5.0, 0.0]]
    only_second = pixel_scores([query], [normals], torch.tensor([[1]]))
    assert only_second[0].tolist() == [[9.0, 1.0], [5.0, 10.0]]


def test_pixel_scores_resize_then_average_layers():
    layer1 = torch.zeros(1, 1, 4, 4)
    layer2 = torch.tensor([[2.0, 0.0], [0.0, 0.0]]).reshape(1, 1, 2, 2)
    normals = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    got = pixel_scores([layer1, layer2], normals, torch.tensor([[0]]))
    up = F.interpolate(layer2, size=(4, 4), mode="bilinear", align_corners=False)[0, 0]
    assert torch.allclose(got[0], up / 2.0)  # layer1 scores 0 everywhere: mean of the two layers
    assert got[0, 0, 0].item() == pytest.approx(1.0)  # bilinear corner keeps the corner value 2, halved
    big = pixel_scores([layer1, layer2], normals, torch.tensor([[0]]), out_size=(8, 8))
    assert big.shape == (1, 8, 8)


def test_pixel_scores_equal_reference_on_random_pyramids():
    g = torch.Generator().manual_seed(1)
    normals = [torch.randn(5, 3, 8, 8, generator=g), torch.randn(5, 4, 4, 4, generator=g),
               torch.randn(5, 6, 2, 2, generator=g)]
    query = [torch.randn(3, 3, 8, 8, generator=g), torch.randn(3, 4, 4, 4, generator=g),
             torch.randn(3, 6, 2, 2, generator=g)]
    neighbours = torch.tensor([[0, 2], [4, 1], [3, 3]])
    got = pixel_scores(query, normals, neighbours, block=30)
    assert torch.allclose(got.double(), reference_maps(query, normals, neighbours, (8, 8)), atol=1e-5)
    got = pixel_scores(query, normals, neighbours, out_size=(5, 7))
    assert torch.allclose(got.double(), reference_maps(query, normals, neighbours, (5, 7)), atol=1e-5)


def test_pixel_scores_layer_mismatch():
    with pytest.raises(ValueError, match=r"^spade: 2 query layers and 1 normal layers \(expected the same layers"):
        pixel_scores([torch.zeros(1, 1, 2, 2)] * 2, [torch.zeros(1, 1, 2, 2)], torch.tensor([[0]]))
    with pytest.raises(ValueError, match=r"^spade: 0 query layers and 0 normal layers"):
        pixel_scores([], [], torch.tensor([[0]]))


def test_spade_fit_predict_wiring():
    g = torch.Generator().manual_seed(2)
    shots_g, shots_m = torch.randn(4, 8, generator=g), pyramid(g, 4, [(3, 4), (5, 2)])
    test_g, test_m = torch.randn(2, 8, generator=g), pyramid(g, 2, [(3, 4), (5, 2)])
    model = Spade()
    with pytest.raises(ValueError, match=r"^spade: predict before fit \(no normal shots\)$"):
        model.predict(test_g, test_m)
    with pytest.raises(ValueError, match=r"^spade: no normal shots to fit$"):
        model.fit(torch.zeros(0, 8), shots_m)
    model.fit(shots_g, shots_m)
    maps, scores = model.predict(test_g, test_m)
    want_s, want_i = reference_image(test_g, shots_g, 4)  # K = min(5, 4 shots)
    assert torch.allclose(scores.double(), want_s, atol=1e-5)
    assert torch.allclose(maps.double(), reference_maps(test_m, shots_m, want_i, (4, 4)), atol=1e-5)
    one = Spade(top_k=1, out_size=(6, 6))
    one.fit(shots_g, shots_m)
    maps, scores = one.predict(shots_g[:2], [m[:2] for m in shots_m])
    assert maps.shape == (2, 6, 6) and torch.all(maps == 0.0) and torch.all(scores == 0.0)  # a shot is its own NN
    maps, scores = one.predict(test_g, test_m)
    want_s, want_i = reference_image(test_g, shots_g, 1)
    assert torch.allclose(scores.double(), want_s, atol=1e-5)
    assert torch.allclose(maps.double(), reference_maps(test_m, shots_m, want_i, (6, 6)), atol=1e-5)


def test_block_reaches_every_search(monkeypatch):
    seen = []
    real = sp.knn

    def spy(*a, **kw):
        seen.append(kw["block"])
        return real(*a, **kw)

    monkeypatch.setattr(sp, "knn", spy)
    g = torch.Generator().manual_seed(5)
    model = Spade(block=41)
    model.fit(torch.randn(3, 4, generator=g), pyramid(g, 3, [(2, 4), (2, 2)]))
    model.predict(torch.randn(2, 4, generator=g), pyramid(g, 2, [(2, 4), (2, 2)]))
    assert seen == [41] * 5  # image kNN, then 2 layers x 2 images
