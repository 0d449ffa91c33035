"""RegAD's functional core (fsadbench.methods.regad.torch_model): hand-checked warps, the registration loss,
the augmentations, the networks' layout and the chunked Gaussian against the official per-position loop."""

from __future__ import annotations

import math

import pytest
import torch

from fsadbench.methods.regad import torch_model as core

#: equivalent survivors of mutation testing (module: methods/regad/torch_model.py; 2026-12-07)
EQUIVALENT_MUTANTS: dict[str, str] = {
    "warp: grid_sample(mode='bilinear') dropped": "bilinear is grid_sample's default mode",
    "invert: dtype=theta.dtype of the [0, 0, 1] row -> None / dropped": "0, 0, 1 are exact in float32 and "
                                                                         "torch.cat promotes to theta's dtype",
    "augment: torch.cat(out, 0) -> torch.cat(out)": "dim 0 is torch.cat's default",
    "STN / head: Conv2d(bias=False) -> bias=None": "None is falsy: no bias either way",
    "STN: fc ReLU(True) -> ReLU(None) / ReLU(False)": "in-place or not, the same values (no other reader)",
    "STN: bias tensor dtype=torch.float32 -> None / dropped": "an int64 tensor of the same small integers, "
                                                               "copied into the float32 bias",
    "RegNet: the shape probe's batch 1 -> 2": "the probe reads channels and side only; zeros give BN the "
                                               "same batch statistics",
    "RegNet: STN(s[1], s[2]) -> STN(s[1], s[3])": "the probe input is image_size x image_size: H == W",
    "neg_cosine: cosine_similarity(dim=1) dropped": "dim 1 is cosine_similarity's default",
    "embed: interpolate(mode='nearest') dropped": "nearest is interpolate's default mode",
    "fit_gaussian / mahalanobis: chunk default 256 -> 257": "chunking bounds memory only "
                                                            "(test_chunked_gaussian_equals_the_official_loop)",
    "loop_mahalanobis: dist dtype=torch.float64 -> None / dropped": "the result is cast to float32 at the end; "
                                                                    "a float64 sqrt stored as float32 is the same "
                                                                    "rounding",
    "every device=... -> None / dropped (invert, RegNet probe, fit_gaussian, covariance, loop_mahalanobis)":
        "the tests run on the CPU, torch's default device",
}


def test_constants_follow_the_official_code():
    assert core.LAYERS == ("layer1", "layer2", "layer3") and core.REGULARISER == 0.01
    assert core.N_PARAMS == {"affine": 6, "translation": 2, "rotation": 1, "scale": 2, "shear": 2,
                             "rotation_scale": 3, "translation_scale": 4, "rotation_translation": 3,
                             "rotation_translation_scale": 5}
    assert all(len(core.IDENTITY_BIAS[m]) == n for m, n in core.N_PARAMS.items())
    assert core.ROTATIONS == (-math.pi / 4, -3 * math.pi / 16, -math.pi / 8, -math.pi / 16,
                              math.pi / 16, math.pi / 8, 3 * math.pi / 16, math.pi / 4)
    assert core.TRANSLATIONS == ((0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2),
                                 (0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1), (0.1, -0.1))
    assert core.GREY == (0.299, 0.587, 0.114) and core.N_AUGMENTED == 22


# -- theta and warps -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", core.STN_MODES)
def test_identity_bias_gives_the_identity_matrix(mode):
    params = torch.tensor([core.IDENTITY_BIAS[mode]], dtype=torch.float32)
    assert torch.equal(core.theta_matrix(params, mode), torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]))


def test_theta_matrices_by_hand():
    a = 0.3
    c, s = math.cos(a), math.sin(a)
    cases = {
        "affine": ([1, 2, 3, 4, 5, 6], [[1, 2, 3], [4, 5, 6]]),
        "translation": ([0.5, -0.25], [[1, 0, 0.5], [0, 1, -0.25]]),
        "rotation": ([a], [[c, -s, 0], [s, c, 0]]),
        "scale": ([2, 3], [[2, 0, 0], [0, 3, 0]]),
        "shear": ([0.5, 0.25], [[1, 0.5, 0], [0.25, 1, 0]]),
        "rotation_scale": ([a, 2, 3], [[2 * c, -s, 0], [s, 3 * c, 0]]),
        "translation_scale": ([0.5, -0.25, 2, 3], [[2, 0, 0.5], [0, 3, -0.25]]),
        "rotation_translation": ([a, 0.5, -0.25], [[c, -s, 0.5], [s, c, -0.25]]),
        "rotation_translation_scale": ([a, 0.5, -0.25, 2, 3], [[2 * c, -s, 0.5], [s, 3 * c, -0.25]]),
    }
    for mode, (p, want) in cases.items():
        got = core.theta_matrix(torch.tensor([p, p], dtype=torch.float64), mode)
        assert got.shape == (2, 2, 3)
        assert torch.allclose(got, torch.tensor([want, want], dtype=torch.float64)), mode
    listed = ("one of affine, translation, rotation, scale, shear, rotation_scale, translation_scale, "
              "rotation_translation, rotation_translation_scale$")
    with pytest.raises(ValueError, match=f"^regad: unknown stn_mode 'spin'; {listed}"):
        core.theta_matrix(torch.zeros(1, 2), "spin")


def test_warp_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    ident = torch.tensor([[[1.0, 0, 0], [0, 1, 0]]])
    assert torch.allclose(core.warp(x, ident), x)
    # x-translation by 0.5 (normalised): each output samples one pixel to the right; reflection at the edge
    shifted = core.warp(x, torch.tensor([[[1.0, 0, 0.5], [0, 1, 0]]]))
    assert torch.allclose(shifted[0, 0, :, :3], x[0, 0, :, 1:])
    assert torch.allclose(shifted[0, 0, :, 3], x[0, 0, :, 3])  # reflected, not zero
    # half a pixel: the mean of two neighbours (bilinear)
    half = core.warp(x, torch.tensor([[[1.0, 0, 0.25], [0, 1, 0]]]))
    assert torch.allclose(half[0, 0, 0, 0], torch.tensor(0.5))
    # the rotation by pi/2 of the official rot_img on a square grid: a quarter turn of the picture
    quarter = core.warp(x, core.rotation(math.pi / 2))
    assert torch.allclose(quarter, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5) or \
        torch.allclose(quarter, torch.rot90(x, -1, dims=(2, 3)), atol=1e-5)


def test_warp_names_align_corners_and_takes_any_float_dtype():
    """align_corners is passed (torch warns on every call when it is left to its default), and a float64 map is
    warped by the float32 matrices of rotation() / translation() (theta brought to the map's dtype)."""
    import warnings

    x = torch.arange(16.0, dtype=torch.float64).view(1, 1, 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = core.warp(x, core.translation(0.5, 0.0))
    assert out.dtype == torch.float64
    assert torch.allclose(out[0, 0, :, :3], x[0, 0, :, 1:])  # as test_warp_by_hand, in float64
    assert core.augment(torch.rand(1, 3, 4, 4, dtype=torch.float64)).dtype == torch.float64


def test_invert_composes_to_the_identity():
    theta = core.theta_matrix(torch.tensor([[0.3, 1.5, 0.7], [-0.2, 0.9, 1.1]]), "rotation_scale")
    inv = core.invert(theta)
    last = torch.tensor([[[0.0, 0, 1]]]).expand(2, 1, 3)
    prod = torch.cat([theta, last], 1) @ torch.cat([inv, last], 1)
    assert torch.allclose(prod, torch.eye(3).expand(2, 3, 3), atol=1e-6)
    assert torch.allclose(core.invert(torch.tensor([[[2.0, 0, 1], [0, 4, -2]]])),
                          torch.tensor([[[0.5, 0, -0.5], [0, 0.25, 0.5]]]))
    t = theta.clone().requires_grad_(True)
    assert not core.invert(t).requires_grad


def test_rotation_and_translation_matrices():
    assert torch.allclose(core.rotation(math.pi / 6), torch.tensor([[[math.sqrt(3) / 2, -0.5, 0], [0.5, math.sqrt(3) / 2, 0]]]))
    assert torch.equal(core.translation(0.2, -0.1), torch.tensor([[[1.0, 0, 0.2], [0, 1, -0.1]]]))


def test_augment_makes_the_official_22_views_in_order():
    torch.manual_seed(0)
    shots = torch.rand(2, 3, 8, 8)
    out = core.augment(shots)
    assert out.shape == (44, 3, 8, 8)
    assert torch.equal(out[:2], shots)
    assert torch.allclose(out[2:4], core.warp(shots, core.rotation(-math.pi / 4).expand(2, 2, 3)))
    assert torch.allclose(out[16:18], core.warp(shots, core.rotation(math.pi / 4).expand(2, 2, 3)))
    assert torch.allclose(out[20:22], core.warp(shots, core.translation(-0.2, 0.2).expand(2, 2, 3)))
    assert torch.allclose(out[32:34], core.warp(shots, core.translation(0.1, -0.1).expand(2, 2, 3)))
    assert torch.equal(out[34:36], shots.flip(-1))
    grey = 0.299 * shots[:, 0] + 0.587 * shots[:, 1] + 0.114 * shots[:, 2]
    assert all(torch.allclose(out[36:38, c], grey) for c in range(3))
    for i, r in enumerate((1, 2, 3)):
        assert torch.equal(out[38 + 2 * i:40 + 2 * i], torch.rot90(shots, r, dims=(2, 3)))


# -- networks --------------------------------------------------------------------------------------------
def test_pooled_side():
    assert [core.pooled(s) for s in (56, 28, 14, 7, 4, 1)] == [14, 7, 4, 2, 1, 1]


def tiny_resnet():
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(0)
    return ResNet(BasicBlock, [1, 1, 1, 1]).eval()


def test_stn_layout_and_identity_start():
    stn = core.STN(64, 14, "rotation_scale")
    convs = [m for m in stn.conv if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding, c.bias) for c in convs] == \
        [(64, 64, (3, 3), (1, 1), None), (64, 16, (3, 3), (1, 1), None)]
    assert [type(m).__name__ for m in stn.conv] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 2
    pools = [m for m in stn.conv if isinstance(m, torch.nn.MaxPool2d)]
    assert all((p.kernel_size, p.stride, p.padding) == (3, 2, 1) for p in pools)
    assert stn.fc[0].in_features == 16 * 4 * 4 and stn.fc[0].out_features == 1024 and stn.fc[2].out_features == 3
    assert torch.all(stn.fc[2].weight == 0) and torch.equal(stn.fc[2].bias, torch.tensor([0.0, 1, 1]))
    x = torch.rand(2, 64, 14, 14)
    out, theta = stn.eval()(x)
    assert torch.allclose(out, x, atol=1e-6) and torch.allclose(theta, torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
    with pytest.raises(ValueError, match="^regad: unknown stn_mode 'spin'; one of affine, translation, rotation, "
                                         "scale, shear, rotation_scale, translation_scale, rotation_translation, "
                                         "rotation_translation_scale$"):
        core.STN(64, 14, "spin")


def test_regnet_registers_back_with_every_earlier_inverse():
    net = core.RegNet(tiny_resnet(), 64).eval()
    assert net.channels == 256 and [s.fc[0].in_features for s in net.stns] == [16 * 4 * 4, 16 * 2 * 2, 16 * 1 * 1]
    x = torch.rand(2, 3, 64, 64)
    out, reg = net(x)
    assert out.shape == (2, 256, 4, 4) and [r.shape[1:] for r in reg] == [(64, 16, 16), (128, 8, 8), (256, 4, 4)]
    # at the identity start the STNs change nothing: the registered maps are the plain layer outputs
    r = tiny_resnet()
    y = r.maxpool(r.relu(r.bn1(r.conv1(x))))
    for layer, got in zip((r.layer1, r.layer2, r.layer3), reg):
        y = layer(y)
        assert torch.allclose(got, y, atol=1e-5)
    # a non-identity transform at stn1 is undone on layer1's registered map and on the deeper ones
    with torch.no_grad():
        net.stns[0].fc[2].bias.copy_(torch.tensor([0.4, 1.0, 1.0]))
    seen = []
    orig = core.warp

    def spy(t, theta):
        seen.append(theta.detach().clone())
        return orig(t, theta)

    core.warp, saved = spy, core.warp
    try:
        _, reg = net(x)
    finally:
        core.warp = saved
    rot = core.theta_matrix(torch.tensor([[0.4, 1.0, 1.0]]), "rotation_scale")
    inv = core.invert(rot)
    # per layer: the STN's warp, then the inverses innermost first (layer 1: 1 + 1; 2: 1 + 2; 3: 1 + 3)
    assert len(seen) == 9
    assert torch.allclose(seen[0][0], rot[0]) and torch.allclose(seen[1][0], inv[0], atol=1e-6)
    assert torch.allclose(seen[4][0], inv[0], atol=1e-6)  # layer2: its own (identity), then stn1's inverse
    assert torch.allclose(seen[8][0], inv[0], atol=1e-6)  # layer3: own, stn2's, then stn1's inverse
    assert not any(r.requires_grad for r in reg)


def test_regnet_trains_a_copy_never_the_backbone_it_was_built_from():
    """The stem and layer1-3 are copies: updating RegNet's weights leaves the backbone's ResNet untouched. The
    copies are trainable (the official trains all of stn_net) even when the backbone adapter froze its model."""
    resnet = tiny_resnet().requires_grad_(False)
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    net = core.RegNet(resnet, 32)
    assert all(p.requires_grad for p in net.parameters())
    assert not any(p.requires_grad for p in resnet.parameters())
    with torch.no_grad():
        for p in list(net.stem.parameters()) + list(net.layers.parameters()):
            p.add_(1.0)
    assert all(torch.equal(v, before[k]) for k, v in resnet.state_dict().items())
    assert not any(p is q for p in net.parameters() for q in resnet.parameters())


def test_heads_and_loss_by_hand():
    enc, pred = core.head(8, 3), core.head(8, 2)
    assert [type(m).__name__ for m in enc] == ["Conv2d", "BatchNorm2d", "ReLU"] * 2 + ["Conv2d"]
    assert [type(m).__name__ for m in pred] == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert all(m.kernel_size == (1, 1) and m.bias is None for m in enc if isinstance(m, torch.nn.Conv2d))
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]]).T.reshape(1, 2, 1, 2)  # positions (1, 0) and (0, 1)... by channel
    z = torch.tensor([[1.0, 1.0], [0.0, 1.0]]).T.reshape(1, 2, 1, 2)
    nc = core.neg_cosine(p, z)
    assert nc.shape == (1, 1, 2)
    want = -torch.nn.functional.cosine_similarity(p, z, dim=1)
    assert torch.allclose(nc, want)
    assert torch.allclose(core.neg_cosine(torch.tensor([[[[1.0]], [[0.0]]]]), torch.tensor([[[[0.0]], [[2.0]]]])),
                          torch.tensor(0.0))
    assert torch.allclose(core.neg_cosine(torch.tensor([[[[3.0]], [[4.0]]]]), torch.tensor([[[[6.0]], [[8.0]]]])),
                          torch.tensor(-1.0))
    # the symmetric loss: -cos(p1, z2)/2 - cos(p2, z1)/2, each averaged; no gradient into the z's
    p1 = torch.tensor([[[[1.0]], [[0.0]]]], requires_grad=True)
    z2 = torch.tensor([[[[1.0]], [[1.0]]]], requires_grad=True)
    p2 = torch.tensor([[[[0.0]], [[1.0]]]], requires_grad=True)
    z1 = torch.tensor([[[[-1.0]], [[0.0]]]], requires_grad=True)
    loss = core.registration_loss(p1, z1, p2, z2)
    assert torch.allclose(loss, torch.tensor(-(1 / math.sqrt(2)) / 2 - 0.0 / 2))
    loss.backward()
    # both halves non-zero: cos(p1, z2) = 1/sqrt(2), cos(p2, z1) = 1 (z1 along p2), each halved
    both = core.registration_loss(p1, torch.tensor([[[[0.0]], [[2.0]]]]), p2, z2)
    assert torch.allclose(both, torch.tensor(-(1 / math.sqrt(2)) / 2 - 1.0 / 2))
    assert z1.grad is None and z2.grad is None and p1.grad is not None and p2.grad is not None


def test_cosine_lr_by_hand():
    assert core.cosine_lr(1e-4, 0, 50) == pytest.approx(1e-4)
    assert core.cosine_lr(1e-4, 25, 50) == pytest.approx(5e-5)
    assert core.cosine_lr(1e-4, 50, 50) == pytest.approx(0.0)
    assert core.cosine_lr(2.0, 1, 3) == pytest.approx(2.0 * 0.5 * (1 + math.cos(math.pi / 3)))


# -- the Gaussian ----------------------------------------------------------------------------------------
def test_embed_repeats_coarse_cells():
    a = torch.zeros(1, 1, 4, 4)
    b = torch.arange(4.0).view(1, 1, 2, 2)
    e = core.embed([a, b])
    assert e.shape == (1, 2, 4, 4)
    assert torch.equal(e[0, 1], torch.tensor([[0.0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]))


def test_gaussian_by_hand_two_samples():
    # two samples in 2-D at one position: mean (1, 0), covariance [[2, 0], [0, 0]] + 0.01 I
    emb = torch.tensor([[0.0, 0.0], [2.0, 0.0]]).view(2, 2, 1, 1)
    g = core.fit_gaussian(emb)
    assert torch.allclose(g.mean, torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(core.covariance(g), torch.tensor([[[2.01, 0.0], [0.0, 0.01]]], dtype=torch.float64))
    test = torch.tensor([[1.0, 0.1], [1.0 + 2.01 ** 0.5, 0.0]]).view(2, 2, 1, 1)
    d = core.mahalanobis(test, g)
    assert d.shape == (2, 1, 1)
    assert torch.allclose(d.flatten(), torch.tensor([1.0, 1.0]), atol=1e-5)  # 0.1 / sqrt(0.01); 1 std along x


def test_the_gaussian_is_float64_throughout():
    """Identical samples (u = 0): covariance reg I and distance |d| / sqrt(reg). With reg = 1e-45, below
    float32's normal range (float32 holds it as 1.4e-45), only float64 arithmetic gives 1 / sqrt(1e-45)."""
    emb = torch.full((3, 2, 1, 2), 0.5)
    test = emb[:1] + torch.tensor([1.0, 0.0]).view(1, 2, 1, 1)  # |d| = 1 at both positions
    g = core.fit_gaussian(emb, reg=1e-45)
    assert g.mean.dtype == g.u.dtype == g.small.dtype == torch.float64
    assert torch.equal(g.u, torch.zeros(2, 3, 2, dtype=torch.float64))
    assert torch.allclose(core.covariance(g), 1e-45 * torch.eye(2, dtype=torch.float64), rtol=1e-9, atol=0)
    want = torch.full((1, 1, 2), 1 / math.sqrt(1e-45))
    assert torch.allclose(core.mahalanobis(test, g), want, rtol=1e-6)
    assert torch.allclose(core.loop_mahalanobis(emb, test, reg=1e-45), want, rtol=1e-6)
    # two 1-D samples 0 and s = 2^-75: variance s^2 / 2 = 2^-151; with reg 2^-150 (0 in float32) the variance is
    # 3 x 2^-151 and a point s from the mean lies sqrt(2 / 3) standard deviations away
    s = 2.0 ** -75
    pair = torch.tensor([0.0, s]).view(2, 1, 1, 1)
    g = core.fit_gaussian(pair, reg=2.0 ** -150)
    point = torch.tensor([s / 2 + s]).view(1, 1, 1, 1)
    assert core.mahalanobis(point, g).item() == pytest.approx(math.sqrt(2 / 3), rel=1e-6)
    assert core.loop_mahalanobis(pair, point, reg=2.0 ** -150).item() == pytest.approx(math.sqrt(2 / 3), rel=1e-6)


def test_chunked_gaussian_equals_the_official_loop():
    torch.manual_seed(0)
    train, test = torch.randn(6, 5, 3, 4), torch.randn(3, 5, 3, 4)
    want = core.loop_mahalanobis(train, test)
    for chunk in (1, 5, 12, 100):
        g = core.fit_gaussian(train, chunk=chunk)
        assert torch.allclose(core.mahalanobis(test, g, chunk=chunk), want, atol=1e-4)
        assert torch.allclose(core.mahalanobis(test, g, chunk=7), want, atol=1e-4)
    g = core.fit_gaussian(train, reg=0.5)
    assert torch.allclose(core.mahalanobis(test, g), core.loop_mahalanobis(train, test, reg=0.5), atol=1e-5)
    cov = torch.cov(train.reshape(6, 5, 12)[:, :, 7].T.double()) + 0.5 * torch.eye(5, dtype=torch.float64)
    assert torch.allclose(core.covariance(g)[7], cov)
    # more samples than channels works the same
    train = torch.randn(9, 3, 2, 2)
    assert torch.allclose(core.mahalanobis(test[:, :3, :2, :2], core.fit_gaussian(train, chunk=3), chunk=3),
                          core.loop_mahalanobis(train, test[:, :3, :2, :2]), atol=1e-4)


def test_gaussian_refusals():
    with pytest.raises(ValueError, match="at least 2 samples"):
        core.fit_gaussian(torch.zeros(1, 2, 2, 2))
    g = core.fit_gaussian(torch.randn(3, 2, 2, 2))
    with pytest.raises(ValueError, match=r"test embedding 2 x 3 x 2 does not match the fitted 2 x 2 x 2"):
        core.mahalanobis(torch.zeros(1, 2, 3, 2), g)
    with pytest.raises(ValueError, match=r"test embedding 3 x 2 x 2"):
        core.mahalanobis(torch.zeros(1, 3, 2, 2), g)
    wide = core.fit_gaussian(torch.randn(3, 2, 2, 3))  # a 2 x 3 grid: rows, then columns
    with pytest.raises(ValueError, match=r"^regad: test embedding 2 x 3 x 2 does not match the fitted 2 x 2 x 3$"):
        core.mahalanobis(torch.zeros(1, 2, 3, 2), wide)
