"""AnoPLe's training views and pseudo anomalies (methods/anople/views.py), recomputed draw by draw.

Every random draw comes from one generator; each test replays the draws in the documented order
(texture shot, rotation, flip; Perlin mask; noise texture; opacity) on a clone of the generator
and rebuilds the expected views and masks from the DRAEM blend.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from fsadbench.methods.anople.views import (PixelSpace, grid_crops, multi_scale_views, normal_texture,
                                            views_original, views_upsampled)
from fsadbench.methods.common.perlin import blend, noise_texture, perlin_mask, pseudo_anomaly

MEAN, STD = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
SPACE = PixelSpace(MEAN, STD)


def _gen(seed: int = 3) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _model_pixels(n: int, size: int, seed: int) -> torch.Tensor:
    """Normalised pixels of images in (0.05, 0.95) (no clamping on the way back)."""
    unit = 0.05 + 0.9 * torch.rand(n, 3, size, size, generator=_gen(seed))
    return SPACE.to_model(unit)


# -- pixel space --------------------------------------------------------------------------------
def test_pixel_space_by_hand():
    img = torch.zeros(3, 1, 2)
    img[:, 0, 1] = torch.tensor([0.7, 0.3, 1.0])
    x = SPACE.to_model(img)
    assert torch.allclose(x[:, 0, 0], torch.tensor([-0.4, -1.6, -4.8]))
    assert torch.allclose(x[:, 0, 1], torch.tensor([1.0, -0.4, 3.2]))
    assert torch.allclose(SPACE.to_unit(x), img, atol=1e-6)
    # to_unit clamps to [0, 1]
    far = torch.tensor([10.0, -10.0, 0.0]).view(3, 1, 1)
    assert torch.allclose(SPACE.to_unit(far)[:, 0, 0], torch.tensor([1.0, 0.0, 0.6]))


# -- crops --------------------------------------------------------------------------------------
def test_bilinear_views_by_hand():
    """align_corners False: output pixel i samples the input at (i + 0.5) / 2 - 0.5, clamped."""
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])[None, None]
    v = multi_scale_views(x, 2)
    big = torch.tensor([[0.0, 0.25, 0.75, 1.0], [0.5, 0.75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5],
                        [2.0, 2.25, 2.75, 3.0]])
    assert v.shape == (1, 5, 1, 2, 2)
    for k, (i, j) in enumerate([(0, 0), (0, 2), (2, 0), (2, 2)]):
        assert torch.allclose(v[0, k, 0], big[i:i + 2, j:j + 2]), k
    assert torch.equal(v[0, 4], x[0])


def test_grid_crops_of_a_non_square_image_row_major():
    big = torch.arange(6 * 9).reshape(1, 6, 9)
    crops = grid_crops(big, 3)
    assert len(crops) == 9 and all(c.shape == (1, 2, 3) for c in crops)
    assert torch.equal(crops[1], big[:, 0:2, 3:6]) and torch.equal(crops[5], big[:, 2:4, 6:9])
    assert torch.equal(torch.cat([torch.cat(crops[r * 3:r * 3 + 3], 2) for r in range(3)], 1), big)


# -- the texture shot ---------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(40))
def test_normal_texture_is_a_rotated_flipped_shot(seed):
    pool = _model_pixels(3, 4, seed=10 + seed)
    g = _gen(seed)
    got = normal_texture(pool, g, SPACE)
    r = _gen(seed)
    j = int(torch.randint(0, 3, (1,), generator=r))
    k = int(torch.randint(0, 4, (1,), generator=r))
    flip = bool(torch.randint(0, 2, (1,), generator=r))
    want = torch.rot90(SPACE.to_unit(pool[j]), k, dims=(1, 2))
    want = want.flip(2) if flip else want
    assert torch.allclose(got, want, atol=1e-6)
    assert torch.equal(g.get_state(), r.get_state())  # exactly three draws


def test_normal_texture_uses_every_shot_rotation_and_flip():
    pool = _model_pixels(3, 4, seed=0)
    shots = [SPACE.to_unit(p) for p in pool]
    seen_shot, seen_k, seen_flip = set(), set(), set()
    for seed in range(60):
        tex = normal_texture(pool, _gen(seed), SPACE)
        for j, s in enumerate(shots):
            for k in range(4):
                r = torch.rot90(s, k, dims=(1, 2))
                for flip in (False, True):
                    if torch.allclose(tex, r.flip(2) if flip else r, atol=1e-6):
                        seen_shot.add(j), seen_k.add(k), seen_flip.add(flip)
    assert seen_shot == {0, 1, 2} and seen_k == {0, 1, 2, 3} and seen_flip == {False, True}


# -- views from the upsampled S x S tensor ------------------------------------------------------
@pytest.mark.parametrize("texture", ["noise", "normal"])
def test_views_upsampled_replayed(texture):
    pool = _model_pixels(2, 8, seed=1)
    x = pool[1]
    views, masks = views_upsampled(x, pool, _gen(5), 2, texture, 0.8, SPACE)
    r = _gen(5)
    tex = normal_texture(pool, r, SPACE) if texture == "normal" else None
    pa = pseudo_anomaly(SPACE.to_unit(x), r, texture=tex, beta_max=0.8)
    anomalous = SPACE.to_model(pa.image)
    assert views.shape == (10, 3, 8, 8) and masks.shape == (10, 8, 8)
    assert torch.allclose(views[:5], multi_scale_views(x[None], 2)[0], atol=1e-6)
    assert torch.allclose(views[5:], multi_scale_views(anomalous[None], 2)[0], atol=1e-5)
    assert (masks[:5] == 0).all()
    up = F.interpolate(pa.mask[None, None], scale_factor=2, mode="nearest")[0, 0]
    for k, crop in enumerate(grid_crops(up, 2)):
        assert torch.equal(masks[5 + k], crop)
    assert torch.equal(masks[9], pa.mask) and pa.mask.sum() > 0


def test_views_upsampled_texture_and_opacity_reach_the_blend():
    pool = _model_pixels(2, 8, seed=1)
    noise, _ = views_upsampled(pool[0], pool, _gen(5), 2, "noise", 0.8, SPACE)
    shot, _ = views_upsampled(pool[0], pool, _gen(5), 2, "normal", 0.8, SPACE)
    assert not torch.allclose(noise[9], shot[9], atol=1e-3)
    # beta_max 0: beta = 0, the masked pixels are the texture alone
    views, masks = views_upsampled(pool[0], pool, _gen(7), 1, "noise", 0.0, SPACE)
    r = _gen(7)
    mask = perlin_mask((8, 8), r)
    tex = noise_texture((8, 8), r, 3)
    m = masks[1] > 0
    assert torch.allclose(SPACE.to_unit(views[1])[:, m], tex[:, m].clamp(0, 1), atol=1e-5)
    assert views.shape == (2, 3, 8, 8) and torch.equal(m, mask > 0)


# -- views from the original file at g S -------------------------------------------------------
def _replay_original(x, big, pool_big, seed, factor, texture, beta_max):
    r = _gen(seed)
    img_big = SPACE.to_unit(big)
    tex = normal_texture(pool_big, r, SPACE) if texture == "normal" else None
    mask = perlin_mask(tuple(img_big.shape[-2:]), r)
    if tex is None:
        tex = noise_texture(tuple(img_big.shape[-2:]), r, 3)
    beta = beta_max * float(torch.rand(1, generator=r, dtype=torch.float64))
    return img_big, mask, tex, beta


@pytest.mark.parametrize("texture, factor, seed", [("noise", 2, 0), ("normal", 2, 1), ("noise", 3, 2),
                                                    ("normal", 3, 4)])
def test_views_original_replayed(texture, factor, seed):
    s = 6
    pool_big = _model_pixels(3, factor * s, seed=20 + seed)
    big = pool_big[2]
    x = SPACE.to_model(F.interpolate(SPACE.to_unit(big)[None], size=(s, s), mode="area")[0])
    views, masks = views_original(x, big, pool_big, _gen(seed), factor, texture, 0.8, SPACE)
    img_big, mask, tex, beta = _replay_original(x, big, pool_big, seed, factor, texture, 0.8)
    n = factor ** 2 + 1
    assert views.shape == (2 * n, 3, s, s) and masks.shape == (2 * n, s, s)
    # normal views: the crops of the g S image (row-major), then the S image itself
    for k, crop in enumerate(grid_crops(big, factor)):
        assert torch.equal(views[k], crop)
    assert torch.equal(views[n - 1], x) and (masks[:n] == 0).all()
    # anomalous crops: the DRAEM blend of the g S image, mask = the changed pixels of the draw
    anom_big = blend(img_big, mask, tex, beta)
    changed = ((anom_big - img_big).abs().amax(0) > 0).float() * mask
    for k, (v, mk) in enumerate(zip(grid_crops(SPACE.to_model(anom_big), factor), grid_crops(changed, factor))):
        assert torch.allclose(views[n + k], v, atol=1e-5)
        assert torch.equal(masks[n + k], mk)
    # the anomalous whole view: the S image blended with the max-pooled mask, the area-downsampled
    # texture and the same opacity
    img_s = SPACE.to_unit(x)
    mask_s = F.max_pool2d(mask[None, None], factor)[0, 0]
    tex_s = F.interpolate(tex[None], size=(s, s), mode="area")[0]
    anom_s = blend(img_s, mask_s, tex_s, beta)
    assert torch.allclose(views[2 * n - 1], SPACE.to_model(anom_s), atol=1e-5)
    changed_s = ((anom_s - img_s).abs().amax(0) > 0).float() * mask_s
    assert torch.equal(masks[2 * n - 1], changed_s if changed_s.any() else mask_s)
    assert 0 < beta < 0.8 and mask.sum() > 0


def test_views_original_opacity_bound_and_texture_source():
    s, factor = 6, 2
    pool_big = _model_pixels(2, 12, seed=3)
    big, x = pool_big[0], _model_pixels(1, 6, seed=4)[0]
    # beta_max 0: the masked pixels of the anomalous crops are the texture itself
    views, masks = views_original(x, big, pool_big, _gen(9), factor, "noise", 0.0, SPACE)
    img_big, mask, tex, beta = _replay_original(x, big, pool_big, 9, factor, "noise", 0.0)
    assert beta == 0.0
    got = torch.cat([torch.cat([views[5], views[6]], 2), torch.cat([views[7], views[8]], 2)], 1)
    m = mask > 0
    assert torch.allclose(SPACE.to_unit(got)[:, m], tex[:, m], atol=1e-5)
    # texture "normal" takes the texture from the pool it is given (not the shot itself)
    other = _model_pixels(2, 12, seed=8)
    a, _ = views_original(x, big, pool_big, _gen(9), factor, "normal", 0.5, SPACE)
    b, _ = views_original(x, big, other, _gen(9), factor, "normal", 0.5, SPACE)
    assert torch.equal(a[:5], b[:5]) and not torch.allclose(a[5:], b[5:], atol=1e-3)


def test_unchanged_blend_keeps_the_drawn_mask():
    """A texture equal to the image changes nothing: the views keep the draw's mask (never empty)."""
    s, factor = 4, 2
    flat = torch.full((3, 8, 8), 0.5)
    big = SPACE.to_model(flat)
    x = SPACE.to_model(torch.full((3, s, s), 0.5))
    pool = big[None]
    views, masks = views_original(x, big, pool, _gen(2), factor, "normal", 0.8, SPACE)
    _, mask, _, _ = _replay_original(x, big, pool, 2, factor, "normal", 0.8)
    assert torch.allclose(views[5:], views[:5], atol=1e-6)  # nothing changed
    full = torch.cat([torch.cat([masks[5], masks[6]], 1), torch.cat([masks[7], masks[8]], 1)], 0)
    assert torch.equal(full, mask) and torch.equal(masks[9], F.max_pool2d(mask[None, None], 2)[0, 0])


def test_masks_keep_only_the_pixels_the_blend_changed():
    """beta 0 and a texture shot equal to the image except in its top rows: the mask of an
    anomalous view is the drawn mask where the texture differs from the image, not the whole draw."""
    s, factor = 8, 2
    unit = torch.full((3, 16, 16), 0.5)
    unit[:, :3] = 0.05 + 0.9 * torch.rand(3, 3, 16, generator=_gen(0))  # a band only the top rows have
    big = SPACE.to_model(unit)
    x = SPACE.to_model(F.interpolate(unit[None], size=(s, s), mode="area")[0])
    pool = big[None]
    found = 0
    for seed in range(30):
        views, masks = views_original(x, big, pool, _gen(seed), factor, "normal", 0.0, SPACE)
        img_big, mask, tex, _ = _replay_original(x, big, pool, seed, factor, "normal", 0.0)
        differs = (tex != img_big).any(dim=0).float()
        want = mask * differs
        if not 0 < want.sum() < mask.sum():
            continue
        found += 1
        full = torch.cat([torch.cat(list(masks[5 + r * 2:7 + r * 2]), 1) for r in range(2)], 0)
        assert torch.equal(full, want), seed
        img_s = SPACE.to_unit(x)
        mask_s = F.max_pool2d(mask[None, None], factor)[0, 0]
        tex_s = F.interpolate(tex[None], size=(s, s), mode="area")[0]
        want_s = mask_s * (tex_s != img_s).any(dim=0).float()
        assert torch.equal(masks[9], want_s if want_s.any() else mask_s), seed
    assert found >= 3
