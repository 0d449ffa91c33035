"""The shared Perlin pseudo-anomaly generator (bench/perlin.py)."""

from __future__ import annotations

import math

import pytest
import torch

from fsadbench.methods.common.perlin import blend, noise_texture, perlin_mask, perlin_noise, pseudo_anomaly, rotate


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_noise_is_zero_on_the_lattice_and_bounded():
    n = perlin_noise((16, 24), (4, 3), _gen(0))
    assert n.shape == (16, 24)
    # lattice points: rows 0, 4, 8, 12 (16 / 4) and columns 0, 8, 16 (24 / 3)
    assert torch.equal(n[::4, ::8], torch.zeros(4, 3))
    assert n.abs().max() > 0.05 and n.abs().max() <= 1.0  # |2-D Perlin| <= sqrt(1/2), times sqrt(2)


def test_noise_hand_value_at_cell_centre():
    # one cell, 2 x 2 pixels: pixel (1, 1) sits at offset (0.5, 0.5), fade(0.5) = 0.5
    n = perlin_noise((2, 2), (1, 1), _gen(3))
    ang = 2 * math.pi * torch.rand(2, 2, generator=_gen(3), dtype=torch.float64)
    g = [[(math.sin(ang[i, j]), math.cos(ang[i, j])) for j in range(2)] for i in range(2)]
    dots = [g[0][0][0] * 0.5 + g[0][0][1] * 0.5, g[0][1][0] * 0.5 - g[0][1][1] * 0.5,
            -g[1][0][0] * 0.5 + g[1][0][1] * 0.5, -g[1][1][0] * 0.5 - g[1][1][1] * 0.5]
    assert n[1, 1].item() == pytest.approx(math.sqrt(2) * sum(dots) / 4, abs=1e-6)
    assert n[0, 0].item() == 0.0


def test_mask_binary_nonempty_deterministic():
    fractions = []
    for seed in range(12):
        m = perlin_mask((120, 120), _gen(seed))
        assert m.shape == (120, 120) and m.dtype == torch.float32
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert m.sum() > 0
        assert torch.equal(m, perlin_mask((120, 120), _gen(seed)))
        fractions.append(m.mean().item())
    assert len(set(fractions)) > 6  # seeds give different masks
    assert max(fractions) < 0.6


def test_mask_fallback_when_threshold_never_reached():
    m = perlin_mask((50, 40), _gen(1), threshold=10.0, max_tries=2, fallback_fraction=0.05)
    assert 0 < m.sum().item() <= 0.05 * 2000 + 5


def test_rotate_quarter_turn_of_a_square():
    f = torch.arange(16.0).reshape(4, 4)
    assert torch.allclose(rotate(f, 90.0), torch.rot90(f, 1), atol=1e-4)  # counter-clockwise on screen
    assert torch.allclose(rotate(f, 0.0), f, atol=1e-5)


def test_blend_hand_case_and_pseudo_anomaly():
    img = torch.full((3, 2, 2), 0.5)
    tex = torch.ones(3, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    out = blend(img, mask, tex, beta=0.25)
    # inside: 0.75 * 1 + 0.25 * 0.5 = 0.875; outside unchanged
    assert torch.allclose(out[:, 0, 0], torch.full((3,), 0.875))
    assert torch.equal(out[:, 1], img[:, 1]) and torch.equal(out[:, 0, 1], img[:, 0, 1])

    image = torch.rand(3, 64, 64, generator=_gen(5))
    pa = pseudo_anomaly(image, _gen(7))
    assert pa.mask.sum() > 0 and 0.0 <= pa.beta <= 0.8
    outside = pa.mask == 0
    assert torch.equal(pa.image[:, outside], image[:, outside])
    assert (pa.image - image).abs().amax(dim=0)[pa.mask > 0].min() > 0  # every mask pixel changed
    again = pseudo_anomaly(image, _gen(7))
    assert torch.equal(again.image, pa.image) and torch.equal(again.mask, pa.mask)
    t = noise_texture((32, 32), _gen(0))
    assert t.shape == (3, 32, 32) and t.min() >= 0 and t.max() <= 1 and t.std() > 0.01


def test_draem_defaults_scale_rotation_threshold_opacity(monkeypatch):
    """DRAEM (sec. 3.2): lattice 2**u per axis, u in [0, 6); rotation uniform in (-90, 90) degrees; mask where
    the noise exceeds 0.5; opacity beta uniform in [0, 0.8)."""
    import inspect

    from fsadbench.methods.common import perlin

    assert inspect.signature(perlin.perlin_mask).parameters["threshold"].default == 0.5
    assert inspect.signature(perlin.random_perlin).parameters["max_scale"].default == 6
    assert inspect.signature(perlin.pseudo_anomaly).parameters["beta_max"].default == 0.8
    res, angles = [], []
    real_noise, real_rotate = perlin.perlin_noise, perlin.rotate
    monkeypatch.setattr(perlin, "perlin_noise", lambda shape, r, g: res.append(r) or real_noise(shape, r, g))
    monkeypatch.setattr(perlin, "rotate", lambda f, a: angles.append(a) or real_rotate(f, a))
    for seed in range(40):
        perlin.random_perlin((16, 16), _gen(seed))
    assert {r for pair in res for r in pair} == {1, 2, 4, 8, 16, 32}  # 2**0 .. 2**5, both axes drawn
    assert any(a != b for a, b in res)  # independent per axis
    assert len(angles) == 40 and all(-90 < a < 90 for a in angles) and min(angles) < -45 and max(angles) > 45
    angles.clear()
    perlin.random_perlin((16, 16), _gen(0), rotate_noise=False)
    assert angles == []
    # the mask is the thresholded noise of the same draw
    noise = perlin.random_perlin((32, 32), _gen(3))
    assert torch.equal(perlin.perlin_mask((32, 32), _gen(3)), (noise > 0.5).float()) or not (noise > 0.5).any()
    betas = [pseudo_anomaly(torch.rand(3, 16, 16, generator=_gen(s)), _gen(s)).beta for s in range(30)]
    assert max(betas) < 0.8 and max(betas) > 0.5 and min(betas) < 0.3


# -- the noise, the draws and the mask pinned against plain-Python references --------------------------
def _ref_noise(h, w, ry, rx, seed):
    """Perlin noise written out per pixel: gradients (sin a, cos a) on the lattice, quintic fade."""
    ang = 2 * math.pi * torch.rand(ry + 1, rx + 1, generator=_gen(seed), dtype=torch.float64)

    def fade(t):
        return 6 * t ** 5 - 15 * t ** 4 + 10 * t ** 3

    out = torch.zeros(h, w, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            y, x = i * ry / h, j * rx / w
            y0, x0 = math.floor(y), math.floor(x)
            fy, fx = y - y0, x - x0

            def dot(oy, ox):
                a = float(ang[y0 + oy, x0 + ox])
                return math.sin(a) * (fy - oy) + math.cos(a) * (fx - ox)

            u, v = fade(fy), fade(fx)
            top = dot(0, 0) * (1 - v) + dot(0, 1) * v
            bottom = dot(1, 0) * (1 - v) + dot(1, 1) * v
            out[i, j] = math.sqrt(2) * (top * (1 - u) + bottom * u)
    return out.float()


def test_noise_equals_the_per_pixel_reference_and_draws_one_lattice():
    for (h, w), (ry, rx), seed in (((6, 4), (3, 2), 0), ((5, 7), (2, 3), 1), ((1, 1), (1, 1), 2)):
        g = _gen(seed)
        got = perlin_noise((h, w), (ry, rx), g)
        assert torch.allclose(got, _ref_noise(h, w, ry, rx, seed), atol=1e-6)
        ref = _gen(seed)
        torch.rand((ry + 1) * (rx + 1), generator=ref, dtype=torch.float64)
        assert torch.equal(g.get_state(), ref.get_state())  # exactly one lattice of draws
    for bad in (((0, 4), (1, 1)), ((4, 0), (1, 1)), ((4, 4), (0, 1)), ((4, 4), (1, 0))):
        with pytest.raises(ValueError, match=r"^perlin_noise: shape .* and res .* must be positive$"):
            perlin_noise(*bad, _gen(0))


def test_random_perlin_draw_protocol(monkeypatch):
    """u_y, u_x ~ randint(min, max), the lattice, then the angle -90 + 180 U (float64): a seed fixes it all."""
    from fsadbench.methods.common import perlin

    res, angles = [], []
    real_noise, real_rotate = perlin.perlin_noise, perlin.rotate
    monkeypatch.setattr(perlin, "perlin_noise", lambda s, r, g: res.append(r) or real_noise(s, r, g))
    monkeypatch.setattr(perlin, "rotate", lambda f, a: angles.append(a) or real_rotate(f, a))
    for seed, lo, hi in ((11, 0, 6), (12, 2, 4), (13, 1, 6)):
        res.clear()
        angles.clear()
        g = _gen(seed)
        perlin.random_perlin((16, 16), g, lo, hi)
        ref = _gen(seed)
        ry = 2 ** int(torch.randint(lo, hi, (1,), generator=ref))
        rx = 2 ** int(torch.randint(lo, hi, (1,), generator=ref))
        torch.rand((ry + 1) * (rx + 1), generator=ref, dtype=torch.float64)
        angle = -90.0 + 180.0 * float(torch.rand(1, generator=ref, dtype=torch.float64))
        assert res == [(ry, rx)] and angles == [angle]
        assert torch.equal(g.get_state(), ref.get_state())
    with pytest.raises(ValueError, match=r"^random_perlin: need 0 <= min_scale < max_scale, got 3, 3$"):
        perlin.random_perlin((8, 8), _gen(0), 3, 3)


def test_mask_fallback_is_the_top_fraction_of_the_last_draw(monkeypatch):
    from fsadbench.methods.common import perlin

    fields = []
    real = perlin.random_perlin
    monkeypatch.setattr(perlin, "random_perlin", lambda *a, **k: fields.append(real(*a, **k)) or fields[-1])
    m = perlin.perlin_mask((50, 40), _gen(4), threshold=10.0, fallback_fraction=0.05)
    assert len(fields) == 8  # max_tries draws, none above the threshold
    assert int(m.sum()) == 100 and torch.equal(m > 0, fields[-1] >= fields[-1].flatten().topk(100).values[-1])
    fields.clear()
    m = perlin.perlin_mask((50, 40), _gen(4), threshold=10.0, max_tries=1, fallback_fraction=0.0)
    assert len(fields) == 1 and int(m.sum()) == 1 and m.flatten()[fields[0].flatten().argmax()] == 1
    fields.clear()
    m = perlin.perlin_mask((50, 40), _gen(4), threshold=10.0)  # DRAEM-style default: the top 2 %
    assert int(m.sum()) == 40
    fields.clear()
    m = perlin.perlin_mask((32, 32), _gen(5), max_scale=2)
    assert torch.equal(m, (fields[0] > 0.5).float()) and len(fields) >= 1
    # the scale range reaches the noise: max_scale 1 leaves only resolution 2**0 = one lattice cell
    for draw in (perlin.perlin_mask((32, 32), _gen(6), min_scale=0, max_scale=1),
                 perlin.pseudo_anomaly(torch.rand(3, 32, 32, generator=_gen(7)), _gen(6), max_scale=1).mask):
        assert torch.equal(draw, perlin.perlin_mask((32, 32), _gen(6), max_scale=1))
        assert not torch.equal(draw, perlin.perlin_mask((32, 32), _gen(6)))


def test_texture_resolutions_no_rotation_and_range(monkeypatch):
    from fsadbench.methods.common import perlin

    res, rotated = [], []
    real_noise, real_rotate = perlin.perlin_noise, perlin.rotate
    monkeypatch.setattr(perlin, "perlin_noise", lambda s, r, g: res.append(r) or real_noise(s, r, g))
    monkeypatch.setattr(perlin, "rotate", lambda f, a: rotated.append(a) or real_rotate(f, a))
    textures = [perlin.noise_texture((24, 24), _gen(s), channels=2) for s in range(20)]
    assert {r for pair in res for r in pair} == {2, 4, 8, 16, 32} and rotated == []  # 2**1 .. 2**5
    assert len(res) == 40 and all(t.shape == (2, 24, 24) for t in textures)
    values = torch.stack(textures)
    assert abs(float(values.mean()) - 0.5) < 0.05 and float(values.max()) > 0.75 and float(values.min()) < 0.25


def test_blend_with_a_grey_texture_and_pseudo_anomaly_masks():
    img = torch.full((3, 2, 2), 0.2)
    out = blend(img, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), torch.full((3, 2, 2), 0.5), beta=0.25)
    assert torch.allclose(out[:, 0, 0], torch.full((3,), 0.75 * 0.5 + 0.25 * 0.2))
    # non-square, one channel: the mask is the Perlin mask of the image's shape, drawn first
    image = torch.rand(1, 20, 30, generator=_gen(1))
    pa = pseudo_anomaly(image, _gen(9))
    assert pa.mask.shape == (20, 30) and pa.image.shape == (1, 20, 30)
    assert torch.equal(pa.mask > 0, perlin_mask((20, 30), _gen(9)) > 0)
    # the mask keeps only pixels the blend changed: a texture equal to the image on the left half
    tex = torch.rand(3, 16, 16, generator=_gen(2))
    image = tex.clone()
    image[:, :, 8:] = 1.0 - image[:, :, 8:]
    pa = pseudo_anomaly(image, _gen(6), texture=tex, beta_max=0.0)  # beta 0: the texture itself, exactly
    drawn = perlin_mask((16, 16), _gen(6))
    assert drawn[:, :8].sum() > 0 and drawn[:, 8:].sum() > 0  # the draw covers both halves
    assert torch.equal(pa.mask[:, :8], torch.zeros(16, 8)) and torch.equal(pa.mask[:, 8:], drawn[:, 8:])
    # nothing changed anywhere: the drawn mask is returned (never empty)
    same = pseudo_anomaly(tex, _gen(6), texture=tex, beta_max=0.0)
    assert torch.equal(same.mask, drawn) and torch.allclose(same.image, tex, atol=1e-6)
    with pytest.raises(ValueError, match=r"^pseudo_anomaly: image must be C x H x W, got shape \(16, 16\)$"):
        pseudo_anomaly(tex[0], _gen(0))


# Equivalent mutants (mutmut, methods/common/perlin.py), with the reason they cannot be killed:
EQUIVALENT_MUTANTS = {
    "perlin_noise: arange dtype float64 -> None / omitted": "int lattice coordinates (float32 division): rounding "
                                                            "below the float32 output's resolution",
    "rotate: theta dtype float32 -> None / omitted": "torch.tensor of Python floats is float32 already",
    "rotate: align_corners False -> None / omitted": "None or omitted is the default False",
    "rotate: affine_grid size [1, 2, h, w]": "affine_grid's channel count does not change the sampling grid",
    "rotate: grid_sample mode / padding_mode omitted": "'bilinear' and 'zeros' are grid_sample's defaults",
    "perlin_mask: noise = '' before the loop": "the initial noise is overwritten: the loop runs at least once",
    "perlin_mask: noise >= threshold": "noise exactly equal to the threshold has probability zero",
    "noise_texture: rotate_noise None": "None is falsy like False",
    "noise_texture: max_scale 6 omitted": "max_scale's default is 6",
    "noise_texture: clamp bounds None / omitted / -2 / 2": "2-D Perlin noise times sqrt(2) is within [-1, 1]: the "
                                                            "clamp never acts",
    "blend: mask / texture .to(None)": "masks and textures are float32 like the image: .to(None) keeps them",
}
