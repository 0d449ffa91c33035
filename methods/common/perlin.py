"""Perlin-noise pseudo anomalies (DRAEM style), shared by the methods that simulate defects.

DRAEM (Zavrtanik et al., ICCV 2021, sec. 3.2) makes a training anomaly in
three steps, reproduced here:

1. a 2-D Perlin noise field with a random lattice resolution per axis,
   ``2**u`` with ``u`` uniform in ``[min_scale, max_scale)`` (DRAEM: 0..5),
   rotated by an angle uniform in (-90, 90) degrees;
2. a binary mask where the (sqrt(2)-scaled) noise exceeds 0.5;
3. a blend inside the mask with a texture source T and opacity
   ``beta ~ U(0, beta_max)`` (DRAEM: 0.8)::

       I_a = I * (1 - M) + (1 - beta) * T * M + beta * I * M

DRAEM takes T from the DTD texture set. None ships here, so the source is a
parameter: ``noise_texture`` (three independent Perlin fields, one per colour
channel, in [0, 1]) or any image the caller passes (e.g. another normal image
of the same category). Callers record which.

Everything is drawn from an explicit ``torch.Generator`` on CPU, so a seed
fixes the result on every machine. Images are float tensors in [0, 1],
C x H x W; masks are float {0, 1}, H x W.

Choices DRAEM leaves open or makes with imgaug: rotation by bilinear
resampling of the noise (zeros outside, i.e. below threshold); a mask that is
empty after thresholding is redrawn (``max_tries``), and if it stays empty
the top ``fallback_fraction`` of the last noise field becomes the mask, so a
returned mask is never empty.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


def _fade(t: torch.Tensor) -> torch.Tensor:
    """Perlin's quintic interpolant 6t^5 - 15t^4 + 10t^3."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def perlin_noise(shape: tuple[int, int], res: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Gradient noise on an H x W grid with ``res`` lattice cells per axis, scaled by sqrt(2) (DRAEM).

    Random unit gradients sit on the (res_y + 1) x (res_x + 1) lattice; a pixel's value is the
    fade-interpolated dot product of its offsets to the four surrounding lattice points with
    their gradients. It is 0 on every lattice point and lies in about [-1, 1].
    """
    h, w = int(shape[0]), int(shape[1])
    ry, rx = int(res[0]), int(res[1])
    if h < 1 or w < 1 or ry < 1 or rx < 1:
        raise ValueError(f"perlin_noise: shape {shape} and res {res} must be positive")
    angles = 2.0 * math.pi * torch.rand(ry + 1, rx + 1, generator=generator, dtype=torch.float64)
    gy, gx = torch.sin(angles), torch.cos(angles)
    y = torch.arange(h, dtype=torch.float64) * ry / h
    x = torch.arange(w, dtype=torch.float64) * rx / w
    yi, xi = y.floor().long(), x.floor().long()
    fy, fx = (y - yi)[:, None], (x - xi)[None, :]

    def dot(oy: int, ox: int) -> torch.Tensor:
        g_y = gy[yi + oy][:, xi + ox]
        g_x = gx[yi + oy][:, xi + ox]
        return g_y * (fy - oy) + g_x * (fx - ox)

    u, v = _fade(fy), _fade(fx)
    top = dot(0, 0) * (1 - v) + dot(0, 1) * v
    bottom = dot(1, 0) * (1 - v) + dot(1, 1) * v
    return (math.sqrt(2.0) * (top * (1 - u) + bottom * u)).float()


def rotate(field: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate an H x W field about its centre (bilinear, zeros outside)."""
    h, w = field.shape
    a = math.radians(degrees)
    theta = torch.tensor([[math.cos(a), -math.sin(a) * h / w, 0.0],
                          [math.sin(a) * w / h, math.cos(a), 0.0]], dtype=torch.float32)[None]
    grid = F.affine_grid(theta, [1, 1, h, w], align_corners=False)
    return F.grid_sample(field[None, None].float(), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=False)[0, 0]


def _randint(lo: int, hi: int, generator: torch.Generator) -> int:
    return int(torch.randint(lo, hi, (1,), generator=generator).item())


def _uniform(lo: float, hi: float, generator: torch.Generator) -> float:
    return lo + (hi - lo) * float(torch.rand(1, generator=generator, dtype=torch.float64).item())


def random_perlin(shape: tuple[int, int], generator: torch.Generator, min_scale: int = 0, max_scale: int = 6,
                  rotate_noise: bool = True) -> torch.Tensor:
    """One DRAEM noise field: resolution 2**u per axis (u in [min_scale, max_scale)), random rotation."""
    if not 0 <= min_scale < max_scale:
        raise ValueError(f"random_perlin: need 0 <= min_scale < max_scale, got {min_scale}, {max_scale}")
    ry = 2 ** _randint(min_scale, max_scale, generator)
    rx = 2 ** _randint(min_scale, max_scale, generator)
    noise = perlin_noise(shape, (ry, rx), generator)
    angle = _uniform(-90.0, 90.0, generator)
    return rotate(noise, angle) if rotate_noise else noise


def perlin_mask(shape: tuple[int, int], generator: torch.Generator, threshold: float = 0.5, min_scale: int = 0,
                max_scale: int = 6, max_tries: int = 8, fallback_fraction: float = 0.02) -> torch.Tensor:
    """A binary, never-empty H x W mask: noise > ``threshold`` (DRAEM: 0.5), redrawn when empty."""
    noise = None
    for _ in range(max(1, max_tries)):
        noise = random_perlin(shape, generator, min_scale, max_scale)
        mask = (noise > threshold).float()
        if mask.any():
            return mask
    k = max(1, int(round(fallback_fraction * noise.numel())))
    cut = noise.flatten().topk(k).values[-1]
    return (noise >= cut).float()


def noise_texture(shape: tuple[int, int], generator: torch.Generator, channels: int = 3) -> torch.Tensor:
    """A colour texture in [0, 1]: one Perlin field (resolution 2**1..2**5, no rotation) per channel."""
    out = [random_perlin(shape, generator, 1, 6, rotate_noise=False) for _ in range(channels)]
    return ((torch.stack(out).clamp(-1.0, 1.0) + 1.0) / 2.0)


def blend(image: torch.Tensor, mask: torch.Tensor, texture: torch.Tensor, beta: float) -> torch.Tensor:
    """DRAEM's blend: I * (1 - M) + (1 - beta) * T * M + beta * I * M (all C x H x W / H x W, in [0, 1])."""
    m = mask.to(image.dtype)[None]
    return image * (1 - m) + (1 - beta) * texture.to(image.dtype) * m + beta * image * m


@dataclass
class PseudoAnomaly:
    image: torch.Tensor  # C x H x W in [0, 1]
    mask: torch.Tensor  # H x W in {0, 1}: pixels the blend changed
    beta: float


def pseudo_anomaly(image: torch.Tensor, generator: torch.Generator, texture: torch.Tensor | None = None,
                   beta_max: float = 0.8, threshold: float = 0.5, min_scale: int = 0,
                   max_scale: int = 6) -> PseudoAnomaly:
    """A DRAEM pseudo anomaly of ``image`` (C x H x W in [0, 1]); ``texture`` defaults to ``noise_texture``.

    The returned mask keeps only pixels whose value the blend changed (a texture equal to the
    image there makes no anomaly); if that leaves nothing, the mask of the draw is returned.
    """
    if image.ndim != 3:
        raise ValueError(f"pseudo_anomaly: image must be C x H x W, got shape {tuple(image.shape)}")
    shape = (image.shape[1], image.shape[2])
    mask = perlin_mask(shape, generator, threshold, min_scale, max_scale)
    if texture is None:
        texture = noise_texture(shape, generator, image.shape[0])
    beta = _uniform(0.0, beta_max, generator)
    out = blend(image, mask, texture, beta)
    changed = ((out - image).abs().amax(dim=0) > 0).float() * mask
    return PseudoAnomaly(out, changed if changed.any() else mask, beta)
