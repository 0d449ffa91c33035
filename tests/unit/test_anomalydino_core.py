"""AnomalyDINO functional core: rotations, PCA background mask, cosine 1-NN, mean of the top 1 %."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.decomposition import PCA

from fsadbench.methods.anomalydino import torch_model as ad
from fsadbench.methods.anomalydino.torch_model import (AnomalyDino, _dilate, _erode, _rotate_grid, background_mask,
                                                       build_memory, first_component, image_scores, patch_distances,
                                                       rotate_images)

EQUIVALENT_MUTANTS = {
    "patch_distances / build_memory: masks.to(device) -> .to(None)": "device: the CPU tests cannot see a device",
    "_rotate_grid: align_corners=False -> None / dropped; mode='bilinear' dropped": "the defaults of affine_grid "
                                                                                   "and grid_sample",
    "first_component: axis * sign -> axis / sign": "sign is +-1",
    "image_scores: topk(top, dim=1) -> topk(top)": "topk's default dim is the last, here 1",
}


def reference_top1p(distances: np.ndarray) -> float:
    """post_eval.py l. 293-297 in the test's words."""
    n = int(len(distances) * 0.01)
    return float(np.max(distances)) if n == 0 else float(np.mean(sorted(distances.flatten(), reverse=True)[:n]))


def test_defaults_pinned_with_their_source():
    assert ad.ROTATION_ANGLES == (0, 45, 90, 135, 180, 225, 270, 315)  # utils.py l. 7
    assert ad.ROTATE_SHOTS is True  # 'agnostic' preprocess default, utils.py l. 136-137
    assert ad.MASK_THRESHOLD == 10.0 and ad.MASK_BORDER == 0.2 and ad.MASK_KERNEL == 3  # backbones.py l. 159
    assert ad.MASK_CENTRE_MIN == 0.35  # backbones.py l. 167
    assert ad.MASK_SHOTS is False  # run_anomalydino.py l. 44
    assert ad.NUM_NEIGHBORS == 1  # run_anomalydino.py l. 39
    assert ad.TOP_FRACTION == 0.01  # post_eval.py l. 293-297
    fields = {f.name: f.default for f in dataclasses.fields(AnomalyDino)}
    assert fields == {"num_neighbors": 1, "fraction": 0.01, "block": 1 << 22, "memory": None}


def test_rotations_hand_case_and_order():
    img = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    out = rotate_images(torch.cat([img, img + 10]), angles=(0, 90, 180, 270))
    assert out.shape == (8, 1, 2, 2)
    assert out[0, 0].tolist() == [[1, 2], [3, 4]]
    assert out[1, 0].tolist() == [[2, 4], [1, 3]]  # counter-clockwise: the right column goes to the top
    assert out[2, 0].tolist() == [[4, 3], [2, 1]]
    assert out[3, 0].tolist() == [[3, 1], [4, 2]]
    assert out[4, 0].tolist() == [[11, 12], [13, 14]]  # image-major: the second image's rotations follow
    assert rotate_images(img).shape == (8, 1, 2, 2)  # the eight reference angles
    assert torch.equal(rotate_images(img, angles=(360,)), img) and torch.equal(rotate_images(img, (-90,)), out[3:4])


def test_generic_rotation_turns_the_same_way_and_keeps_the_centre():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(1, 3, 6, 6, generator=g)
    assert torch.allclose(_rotate_grid(img, 90.0), torch.rot90(img, 1, dims=(-2, -1)), atol=1e-5)
    assert torch.allclose(_rotate_grid(img, 0.0), img, atol=1e-5)
    odd = torch.rand(1, 1, 5, 5, generator=g)
    assert _rotate_grid(odd, 45.0)[0, 0, 2, 2].item() == pytest.approx(odd[0, 0, 2, 2].item(), abs=1e-5)
    assert torch.allclose(rotate_images(torch.full((1, 1, 4, 4), 7.0), (45,)), torch.full((1, 1, 4, 4), 7.0))
    wide = torch.rand(1, 1, 4, 6, generator=g)
    turned = rotate_images(wide, (90, 180))
    assert turned.shape == (2, 1, 4, 6)  # the size is kept, as warpAffine does
    assert torch.equal(turned[1], torch.rot90(wide[0], 2, dims=(-2, -1)))
    assert torch.allclose(turned[0], _rotate_grid(wide, 90.0)[0])
    # a column ramp (value = column) turned 90 degrees in its 4 x 6 frame: row y reads column 2.5 - (y - 1.5)
    ramp = torch.arange(6.0).expand(1, 1, 4, 6).contiguous()
    assert torch.allclose(_rotate_grid(ramp, 90.0)[0, 0], torch.tensor([4.0, 3, 2, 1])[:, None].expand(4, 6),
                          atol=1e-5)


def test_first_component_hand_case_and_sign():
    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    assert first_component(line).tolist() == pytest.approx([-1.5, -0.5, 0.5, 1.5])
    assert first_component(-line).tolist() == pytest.approx([1.5, 0.5, -0.5, -1.5])  # largest loading positive


def test_first_component_equals_sklearn():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randn(40, 6, generator=g) * torch.tensor([5.0, 1, 1, 1, 1, 3])
    want = PCA(n_components=1, svd_solver="full").fit_transform(tokens.numpy().astype(np.float64))[:, 0]
    assert np.allclose(first_component(tokens).numpy(), want, atol=1e-4)


def test_morphology_equals_opencv_border_rules():
    """cv2.dilate / erode ignore outside cells: scipy with border_value 0 (dilate) and 1 (erode)."""
    g = torch.Generator().manual_seed(2)
    ones = np.ones((3, 3), bool)
    for _ in range(5):
        m = torch.rand(7, 9, generator=g) > 0.7
        assert np.array_equal(_dilate(m, 3).numpy(), ndimage.binary_dilation(m.numpy(), ones, border_value=0))
        assert np.array_equal(_erode(m, 3).numpy(), ndimage.binary_erosion(m.numpy(), ones, border_value=1))


def _object_tokens(value: float) -> torch.Tensor:
    """11 x 11 grid of 2-D tokens, (value, 0) on the centre 5 x 5 (rows/cols 3-7), 0 elsewhere."""
    feat = torch.zeros(11, 11, 2)
    feat[3:8, 3:8, 0] = value
    return feat.reshape(121, 2)


def test_background_mask_hand_case():
    # mean 2500/121 = 20.7: the object projects to 79.3 > 10, the rest to -20.7; the centre crop (rows 2-7)
    # holds 25 of 36 kept cells > 12.6: no flip; dilation -> rows 2-8; closing keeps rows 2-8
    want = torch.zeros(11, 11, dtype=torch.bool)
    want[2:9, 2:9] = True
    assert torch.equal(background_mask(_object_tokens(100.0), (11, 11)), want)
    # a dark object: +20.7 outside is kept, only 11 of 36 centre cells -> flipped to the object
    assert torch.equal(background_mask(_object_tokens(-100.0), (11, 11)), want)
    # a projection equal to the threshold is not kept (strictly above), on either side
    t = float(first_component(_object_tokens(100.0))[60])  # the object's projection, 79.34
    assert not background_mask(_object_tokens(100.0), (11, 11), threshold=t).any()
    assert not background_mask(_object_tokens(-100.0), (11, 11), threshold=t).any()
    assert torch.equal(background_mask(_object_tokens(-100.0), (11, 11), threshold=t - 1e-3), want)
    # a faint object (projection 7.9 < 10) keeps nothing, flipped or not
    assert not background_mask(_object_tokens(10.0), (11, 11)).any()
    assert background_mask(_object_tokens(10.0), (11, 11), threshold=5.0).sum() == 49


def test_memory_and_masks():
    tokens = torch.arange(12.0).reshape(2, 3, 2)
    assert torch.equal(build_memory(tokens), tokens.reshape(6, 2))
    keep = torch.tensor([[True, False, True], [False, False, True]])
    assert build_memory(tokens, keep).tolist() == [[0, 1], [4, 5], [10, 11]]


def test_patch_distances_hand_case():
    memory = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tokens = torch.tensor([[[1.0, 1.0], [2.0, 0.0], [0.0, -3.0]]])
    d = patch_distances(tokens, memory)
    assert d.shape == (1, 3)
    assert d[0].tolist() == pytest.approx([1 - 1 / math.sqrt(2), 0.0, 1.0], abs=1e-6)
    d2 = patch_distances(tokens, memory, num_neighbors=2)  # mean of the two nearest
    assert d2[0].tolist() == pytest.approx([1 - 1 / math.sqrt(2), 0.5, 1.5], abs=1e-6)
    masked = patch_distances(tokens, memory, masks=torch.tensor([[True, True, False]]))
    assert masked[0].tolist() == pytest.approx([1 - 1 / math.sqrt(2), 0.0, 0.0], abs=1e-6)


def test_patch_distances_equal_plain_cosine():
    g = torch.Generator().manual_seed(3)
    tokens, memory = torch.randn(3, 20, 8, generator=g), torch.randn(50, 8, generator=g)
    want = (1 - F.normalize(tokens.double(), dim=-1) @ F.normalize(memory.double(), dim=-1).T)
    for k in (1, 3):
        got = patch_distances(tokens, memory, num_neighbors=k, block=64)
        assert torch.allclose(got.double(), want.topk(k, dim=-1, largest=False).values.mean(-1), atol=1e-6)


@pytest.mark.parametrize("n", [50, 99, 100, 250, 1024])
def test_image_score_equals_reference_top1p(n):
    g = torch.Generator().manual_seed(n)
    d = torch.rand(3, n, generator=g)
    got = image_scores(d)
    assert got.tolist() == pytest.approx([reference_top1p(row.numpy()) for row in d], rel=1e-6)


def test_image_score_hand_case():
    d = torch.zeros(1, 250)
    d[0, 7], d[0, 9], d[0, 3] = 5.0, 3.0, 1.0
    assert image_scores(d).item() == pytest.approx(4.0)  # int(2.5) = 2: mean of 5 and 3
    assert image_scores(d[:, :99]).item() == pytest.approx(5.0)  # int(0.99) = 0: the max
    assert image_scores(d, fraction=0.012).item() == pytest.approx(3.0)  # int(3.0) = 3: (5 + 3 + 1) / 3


def test_anomalydino_fit_predict_wiring(monkeypatch):
    g = torch.Generator().manual_seed(4)
    shots, tests = torch.randn(2, 16, 6, generator=g), torch.randn(3, 16, 6, generator=g)
    model = AnomalyDino()
    with pytest.raises(ValueError, match=r"^anomalydino: predict before fit \(the memory of the shots is empty\)$"):
        model.predict(tests)
    model.fit(shots)
    assert model.memory.shape == (32, 6)
    dist, scores = model.predict(shots)
    assert torch.allclose(dist, torch.zeros(2, 16), atol=1e-6)  # a shot's token is in the memory
    dist, scores = model.predict(tests)
    assert torch.allclose(dist, patch_distances(tests, model.memory)) and torch.equal(scores, image_scores(dist))
    keep = torch.zeros(2, 16, dtype=torch.bool)
    keep[0, :3] = True
    model3 = AnomalyDino(num_neighbors=3, fraction=0.2)
    model3.fit(shots, keep)
    assert torch.equal(model3.memory, shots[0, :3])
    tmask = torch.ones(3, 16, dtype=torch.bool)
    tmask[:, 0] = False
    dist, scores = model3.predict(tests, tmask)
    assert torch.all(dist[:, 0] == 0) and torch.allclose(dist, patch_distances(tests, shots[0, :3], tmask, 3))
    assert torch.allclose(scores, dist.topk(3, dim=1).values.mean(1))
    seen = []
    real = ad.knn
    monkeypatch.setattr(ad, "knn", lambda *a, **kw: seen.append(kw["block"]) or real(*a, **kw))
    AnomalyDino(block=33, memory=model.memory).predict(tests)
    assert seen == [33]
    with pytest.raises(ValueError, match=r"^anomalydino: the shots keep 3 patches, fewer than num_neighbors=4 "
                                         r"\(mask fewer shots or lower num_neighbors\)$"):
        AnomalyDino(num_neighbors=4).fit(shots, keep)


def test_mask_flips_at_exactly_35_percent_of_the_centre():
    """7 x 8 grid: the centre crop is rows 1-4 x cols 1-5, 20 cells; 7 kept = 20 * 0.35 -> flipped (<=)."""
    feat = torch.zeros(7, 8, 2)
    for r, c in [(1, 1), (1, 2), (1, 3), (2, 1), (2, 2), (2, 3), (3, 1)]:
        feat[r, c, 0] = 100.0  # projection 87.5 on these, -12.5 elsewhere
    tokens = feat.reshape(56, 2)
    flipped = background_mask(tokens, (7, 8))
    assert flipped.all()  # the 49 other cells kept, dilated over everything
    assert torch.equal(flipped, background_mask(-tokens, (7, 8)))  # no flip needed when the sign is the other
