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
