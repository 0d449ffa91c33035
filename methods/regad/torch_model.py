"""RegAD (Huang et al., ECCV 2022), functional core: STN-registered ResNet features, the Siamese registration
loss, the support augmentations and the per-position Gaussian.

Read from the official code, MediaBrain-SJTU/RegAD (commit 5e2c1f8), cited by file and line:

* ``models/stn.py``: a ResNet-18 stem and ``layer1``-``layer3`` (l. 204-221, ImageNet weights l. 277-285)
  with a spatial transformer after each layer (``STNModule`` l. 48-152: conv3x3 -> 64, BN, ReLU, maxpool
  3/2/1, conv3x3 -> 16, BN, ReLU, maxpool 3/2/1, linear -> 1024, ReLU, linear -> the mode's parameters,
  its weight zero and its bias the identity transform); the warp is ``affine_grid`` + ``grid_sample``
  with reflection padding (l. 149-150). The registered features are each STN output warped back by the
  inverse transforms, innermost first (l. 253-271: layer2's by theta2^-1 then theta1^-1, ...).
  ``stn_mode`` default ``rotation_scale`` (``train.py`` l. 38): theta = [[cos a * s_x, -sin a, 0],
  [sin a, cos a * s_y, 0]] (l. 121-126).
* ``models/siamese.py``: the encoder (three 1x1 convs, BN + ReLU after the first two, l. 27-55) and the
  predictor (1x1 conv, BN, ReLU, 1x1 conv, l. 59-77) on the last STN output (256 channels for ResNet-18).
* ``losses/norm_loss.py`` l. 20-26 and ``train.py`` l. 181-185: the symmetric negative cosine
  ``-cos(p1, sg(z2)) / 2 - cos(p2, sg(z1)) / 2`` over channels, averaged over batch and positions.
* ``test.py`` l. 112-132 and ``utils/funcs.py`` l. 28-66: the k shots augmented to 22 k images (the
  shots, 8 rotations by +-pi/4, +-3pi/16, +-pi/8, +-pi/16, 8 translations by (+-0.2, +-0.2) and
  (+-0.1, +-0.1), a horizontal flip, grey (0.299 R + 0.587 G + 0.114 B), rotations by 90, 180 and 270
  degrees). kornia's 90-degree rotations of a square image about its centre (align_corners) are exact
  ``torch.rot90``; the set {90, 180, 270} is the same either way round, and the Gaussian is blind to the
  order (so the official ``randperm`` is left out).
* ``test.py`` l. 145-157 and 189-205: layer1-3 registered features concatenated on layer1's grid
  (``embedding_concat``: each coarser cell repeated, i.e. nearest upsampling), per position the mean and
  the unbiased covariance + 0.01 I, Mahalanobis distance of each test position.

The Gaussian here (:func:`fit_gaussian`, :func:`mahalanobis`) is exact and batched over positions, in
chunks of ``chunk`` positions so the working memory is bounded whatever the grid: it keeps the centred
samples (n x C per position, n = 22 k, the size of the input) and inverts per position the n x n matrix
of the Woodbury identity, never a C x C matrix per position (C = 448 for ResNet-18; the official code
holds C x C x H x W). :func:`loop_mahalanobis` is the official per-position loop, the oracle of the tests
and the baseline of ``benchmarks/regad_speed.py``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LAYERS = ("layer1", "layer2", "layer3")  # stn.py l. 214-221: layer4 is never built
REGULARISER = 0.01  # test.py l. 157
STN_MODES = ("affine", "translation", "rotation", "scale", "shear", "rotation_scale", "translation_scale",
             "rotation_translation", "rotation_translation_scale")  # stn.py l. 19-27
N_PARAMS = dict(zip(STN_MODES, (6, 2, 1, 2, 2, 3, 4, 3, 5)))  # stn.py l. 19-27
IDENTITY_BIAS = {"affine": (1, 0, 0, 0, 1, 0), "translation": (0, 0), "rotation": (0,), "scale": (1, 1),
                 "shear": (0, 0), "rotation_scale": (0, 1, 1), "translation_scale": (0, 0, 1, 1),
                 "rotation_translation": (0, 0, 0), "rotation_translation_scale": (0, 0, 0, 1, 1)}  # l. 75-90
ROTATIONS = (-math.pi / 4, -3 * math.pi / 16, -math.pi / 8, -math.pi / 16,
             math.pi / 16, math.pi / 8, 3 * math.pi / 16, math.pi / 4)  # test.py l. 115
TRANSLATIONS = ((0.2, 0.2), (-0.2, 0.2), (-0.2, -0.2), (0.2, -0.2),
                (0.1, 0.1), (-0.1, 0.1), (-0.1, -0.1), (0.1, -0.1))  # test.py l. 119
GREY = (0.299, 0.587, 0.114)  # kornia rgb_to_grayscale (utils/funcs.py l. 63-66)
N_AUGMENTED = 1 + len(ROTATIONS) + len(TRANSLATIONS) + 1 + 1 + 3  # 22 images per shot


# -- affine warps -------------------------------------------------------------------------------------
def theta_matrix(params: torch.Tensor, mode: str) -> torch.Tensor:
    """B x 2 x 3 affine matrices from the STN's B x n parameters (stn.py l. 98-147)."""
    b = params.shape[0]
    if mode == "affine":
        return params.view(b, 2, 3)
    one, zero = torch.ones_like(params[:, 0]), torch.zeros_like(params[:, 0])
    a, c = [one, zero, zero], [zero, one, zero]  # rows of the identity
    p = params.unbind(1)
    if mode == "translation":
        a[2], c[2] = p[0], p[1]
    elif mode in ("rotation", "rotation_translation"):
        a[0], a[1], c[0], c[1] = p[0].cos(), -p[0].sin(), p[0].sin(), p[0].cos()
        if mode == "rotation_translation":
            a[2], c[2] = p[1], p[2]
    elif mode == "scale":
        a[0], c[1] = p[0], p[1]
    elif mode == "shear":
        a[1], c[0] = p[0], p[1]
    elif mode in ("rotation_scale", "rotation_translation_scale"):
        sx, sy = (p[1], p[2]) if mode == "rotation_scale" else (p[3], p[4])
        a[0], a[1], c[0], c[1] = p[0].cos() * sx, -p[0].sin(), p[0].sin(), p[0].cos() * sy
        if mode == "rotation_translation_scale":
            a[2], c[2] = p[1], p[2]
    elif mode == "translation_scale":
        a[2], c[2], a[0], c[1] = p[0], p[1], p[2], p[3]
    else:
        raise ValueError(f"regad: unknown stn_mode {mode!r}; one of {', '.join(STN_MODES)}")
    return torch.stack([torch.stack(a, 1), torch.stack(c, 1)], 1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """``x`` (B x C x H x W) resampled at ``affine_grid(theta)``: bilinear, reflection padding, corners not
    aligned (stn.py l. 149-150, 239-243; utils/funcs.py l. 37-49)."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def invert(theta: torch.Tensor) -> torch.Tensor:
    """B x 2 x 3: the first two rows of the inverse of [theta; 0 0 1] (stn.py l. 254-255), no gradient."""
    last = torch.tensor([0.0, 0.0, 1.0], dtype=theta.dtype, device=theta.device).expand(theta.shape[0], 1, 3)
    return torch.linalg.inv(torch.cat([theta.detach(), last], 1))[:, :2, :]


def rotation(angle: float) -> torch.Tensor:
    """1 x 2 x 3: [[cos, -sin, 0], [sin, cos, 0]] (utils/funcs.py l. 28-31)."""
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[[c, -s, 0.0], [s, c, 0.0]]])


def translation(a: float, b: float) -> torch.Tensor:
    """1 x 2 x 3: [[1, 0, a], [0, 1, b]] (utils/funcs.py l. 33-35)."""
    return torch.tensor([[[1.0, 0.0, a], [0.0, 1.0, b]]])


def augment(shots: torch.Tensor) -> torch.Tensor:
    """22 k x 3 x H x W: the shots (pixels in [0, 1]), their rotations, translations, flip, grey and 90-degree
    rotations, in the official order (test.py l. 112-131)."""
    k = shots.shape[0]
    out = [shots]
    out += [warp(shots, rotation(a).expand(k, 2, 3)) for a in ROTATIONS]
    out += [warp(shots, translation(a, b).expand(k, 2, 3)) for a, b in TRANSLATIONS]
    out.append(shots.flip(-1))
    grey = sum(w * shots[:, i:i + 1] for i, w in enumerate(GREY))
    out.append(grey.expand(-1, 3, -1, -1))
    out += [torch.rot90(shots, r, dims=(2, 3)) for r in (1, 2, 3)]
    return torch.cat(out, 0)


# -- networks -------------------------------------------------------------------------------------------
def pooled(size: int) -> int:
    """The side after two maxpools 3/2/1 (the STN's conv stack): ceil(ceil(size / 2) / 2)."""
    return -(-(-(-size // 2)) // 2)


class STN(nn.Module):
    """One spatial transformer (stn.py l. 48-152) on a ``channels`` x ``size`` x ``size`` map."""

    def __init__(self, channels: int, size: int, mode: str):
        super().__init__()
        if mode not in N_PARAMS:
            raise ValueError(f"regad: unknown stn_mode {mode!r}; one of {', '.join(STN_MODES)}")
        self.mode = mode
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
            nn.Conv2d(64, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        side = pooled(size)
        self.fc = nn.Sequential(nn.Linear(16 * side * side, 1024), nn.ReLU(True), nn.Linear(1024, N_PARAMS[mode]))
        with torch.no_grad():
            self.fc[2].weight.zero_()
            self.fc[2].bias.copy_(torch.tensor(IDENTITY_BIAS[mode], dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        theta = theta_matrix(self.fc(self.conv(x).flatten(1)), self.mode)
        return warp(x, theta), theta


class RegNet(nn.Module):
    """The ResNet stem and layer1-3 of ``resnet`` (a copy, trained) with an STN after each layer.

    ``forward`` returns the last STN output and the three registered maps (each STN output warped back by
    the inverses of its own and every earlier STN's transform, stn.py l. 253-271)."""

    def __init__(self, resnet: nn.Module, image_size: int, mode: str = "rotation_scale"):
        super().__init__()
        self.stem = nn.Sequential(*(copy.deepcopy(getattr(resnet, n)) for n in ("conv1", "bn1", "relu", "maxpool")))
        self.layers = nn.ModuleList(copy.deepcopy(getattr(resnet, n)) for n in LAYERS)
        # trained with the rest (train.py l. 70: SGD on all of stn_net), whatever the backbone adapter froze
        self.stem.requires_grad_(True)
        self.layers.requires_grad_(True)
        with torch.no_grad():
            x = self.stem(torch.zeros(1, 3, image_size, image_size, device=next(resnet.parameters()).device))
            shapes = []
            for layer in self.layers:
                x = layer(x)
                shapes.append(x.shape)
        self.stns = nn.ModuleList(STN(s[1], s[2], mode) for s in shapes)
        self.channels = int(shapes[-1][1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.stem(x)
        inverses, registered = [], []
        for layer, stn in zip(self.layers, self.stns):
            x, theta = stn(layer(x))
            inverses.insert(0, invert(theta))
            r = x.detach()
            for inv in inverses:  # its own inverse first, then the earlier layers'
                r = warp(r, inv)
            registered.append(r)
        return x, registered


def head(channels: int, n_convs: int) -> nn.Sequential:
    """1x1 convs, BN + ReLU after each but the last (siamese.py: encoder 3 convs l. 27-55, predictor 2 l. 59-77)."""
    mods: list[nn.Module] = []
    for i in range(n_convs):
        mods.append(nn.Conv2d(channels, channels, 1, bias=False))
        if i < n_convs - 1:
            mods += [nn.BatchNorm2d(channels), nn.ReLU()]
    return nn.Sequential(*mods)


def neg_cosine(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """B x H x W: -cos(p, z) over channels, no gradient through ``z`` (norm_loss.py l. 20-26)."""
    return -F.cosine_similarity(p, z.detach(), dim=1)


def registration_loss(p1: torch.Tensor, z1: torch.Tensor, p2: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The symmetric loss -cos(p1, sg z2) / 2 - cos(p2, sg z1) / 2, mean over batch and positions (train.py l. 185)."""
    return neg_cosine(p1, z2).mean() / 2 + neg_cosine(p2, z1).mean() / 2


def cosine_lr(lr: float, epoch: int, epochs: int) -> float:
    """The learning rate of 1-indexed ``epoch``: lr (1 + cos(pi epoch / epochs)) / 2 (train.py l. 317-322)."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))


# -- the Gaussian ---------------------------------------------------------------------------------------
def embed(maps: list[torch.Tensor]) -> torch.Tensor:
    """B x C x H x W: the maps brought to the first one's grid by repeating cells (nearest), concatenated."""
    size = maps[0].shape[2:]
    return torch.cat([F.interpolate(m.float(), size=size, mode="nearest") for m in maps], 1)


@dataclass
class Gaussian:
    """Per position p (P = H x W): ``mean`` P x C, ``u`` P x n x C the centred samples / sqrt(n - 1) (so the
    covariance is u^T u + reg I) and ``small`` P x n x n = (reg I + u u^T)^-1; float64."""

    mean: torch.Tensor
    u: torch.Tensor
    small: torch.Tensor
    reg: float
    grid: tuple[int, int]


def fit_gaussian(embedding: torch.Tensor, reg: float = REGULARISER, chunk: int = 256) -> Gaussian:
    """The per-position Gaussian of n samples (n x C x H x W), ``chunk`` positions at a time."""
    n, c, h, w = embedding.shape
    if n < 2:
        raise ValueError(f"regad: the Gaussian needs at least 2 samples per position, got {n}")
    x = embedding.reshape(n, c, h * w)
    means, us, smalls = [], [], []
    eye = torch.eye(n, dtype=torch.float64, device=x.device)
    for s in range(0, h * w, chunk):
        xs = x[:, :, s:s + chunk].double().permute(2, 0, 1)  # p x n x C
        mean = xs.mean(1)
        u = (xs - mean[:, None]) / math.sqrt(n - 1)
        means.append(mean)
        us.append(u)
        smalls.append(torch.linalg.inv(reg * eye + u @ u.transpose(1, 2)))
    return Gaussian(torch.cat(means), torch.cat(us), torch.cat(smalls), reg, (h, w))


def covariance(g: Gaussian) -> torch.Tensor:
    """P x C x C: u^T u + reg I (for tests; the scoring never builds it)."""
    eye = torch.eye(g.mean.shape[1], dtype=torch.float64, device=g.mean.device)
    return g.u.transpose(1, 2) @ g.u + g.reg * eye


def mahalanobis(embedding: torch.Tensor, g: Gaussian, chunk: int = 256) -> torch.Tensor:
    """B x H x W: sqrt(d^T Sigma^-1 d) per position, ``chunk`` positions at a time, by Woodbury:
    d^T Sigma^-1 d = (|d|^2 - (u d)^T small (u d)) / reg."""
    b, c, h, w = embedding.shape
    if (h, w) != g.grid or c != g.mean.shape[1]:
        raise ValueError(f"regad: test embedding {c} x {h} x {w} does not match the fitted "
                         f"{g.mean.shape[1]} x {g.grid[0]} x {g.grid[1]}")
    x = embedding.reshape(b, c, h * w)
    out = []
    for s in range(0, h * w, chunk):
        d = x[:, :, s:s + chunk].double().permute(2, 0, 1) - g.mean[s:s + chunk, None]  # p x B x C
        proj = d @ g.u[s:s + chunk].transpose(1, 2)  # p x B x n
        quad = (d * d).sum(-1) - ((proj @ g.small[s:s + chunk]) * proj).sum(-1)
        out.append((quad / g.reg).clamp_min(0.0).sqrt())
    return torch.cat(out).T.reshape(b, h, w).float()


def loop_mahalanobis(train: torch.Tensor, test: torch.Tensor, reg: float = REGULARISER) -> torch.Tensor:
    """The official per-position loop (test.py l. 150-157, 199-205): for each position the covariance
    (``torch.cov`` + reg I), its inverse, the distance of every test sample. B x H x W."""
    n, c, h, w = train.shape
    tr, te = train.reshape(n, c, h * w).double(), test.reshape(test.shape[0], c, h * w).double()
    eye = torch.eye(c, dtype=torch.float64, device=train.device)
    dist = torch.empty(test.shape[0], h * w, dtype=torch.float64, device=train.device)
    for i in range(h * w):
        inv = torch.linalg.inv(torch.cov(tr[:, :, i].T) + reg * eye)
        d = te[:, :, i] - tr[:, :, i].mean(0)
        dist[:, i] = ((d @ inv) * d).sum(1).sqrt()
    return dist.reshape(-1, h, w).float()
