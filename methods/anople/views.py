"""AnoPLe's training views and pixel-space pseudo anomalies (Lee et al. 2024, sec. 3.1, 3.3.2, suppl. 6.1).

Training feeds each image as N + 1 views: the N = g^2 non-overlapping S x S
crops of a g x resize of the image (row-major; the paper: g = 2, a 480 x 480
resize cut into four 240 x 240 crops) and the image itself at S (last, the
c_{N+1} view); test feeds the image alone. ``crop_source``:

* ``"original"`` (default, the paper): the g S x g S image is decoded from the
  original file by the feature store (``FeatureStore.pixels(refs, size=g S)``:
  the backbone's own preprocessing, squash resize, its interpolation, mean /
  std), so the crops carry the detail the S x S image lost;
* ``"upsampled"``: a bilinear g x upsampling of the preprocessed S x S tensor
  (no new detail; the harness's earlier behaviour).

Pseudo anomalies (DRAEM blend, ``fsadbench.methods.common.perlin``) are drawn
once per step at the crops' resolution: Perlin mask M, texture T and opacity
beta. The crops come from the blended g S image; the whole-image view is the
S x S image blended with M max-pooled by g (a pixel is anomalous when any of its
g x g children is) and T area-downsampled, with the same beta, so the normal
and anomalous whole views differ only inside the mask. A view is anomalous when
its mask is non-empty. Masks keep only the pixels the blend changed.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from fsadbench.methods.common.perlin import blend, noise_texture, perlin_mask, pseudo_anomaly

CROP_SOURCES = ("original", "upsampled")


def multi_scale_views(x: torch.Tensor, factor: int, mode: str = "bilinear") -> torch.Tensor:
    """B x C x S x S -> B x (factor^2 + 1) x C x S x S: the factor^2 non-overlapping S x S crops of
    the factor-x upsampling (row-major), then the image itself (last, the c_{N+1} view).

    factor 1 gives the image alone.
    """
    if factor <= 1:
        return x[:, None]
    big = F.interpolate(x, scale_factor=factor, mode=mode)  # bilinear: align_corners False (torch's default)
    return torch.stack(grid_crops(big, factor) + [x], dim=1)


def grid_crops(big: torch.Tensor, factor: int) -> list[torch.Tensor]:
    """The factor^2 non-overlapping crops (row-major) of ``big`` (... x fS x fS) -> list of ... x S x S."""
    h, w = big.shape[-2] // factor, big.shape[-1] // factor
    return [big[..., i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(factor) for j in range(factor)]


class PixelSpace:
    """Maps between the backbone's normalised pixels and [0, 1] images."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean).view(3, 1, 1)  # Python floats: float32
        self.std = torch.tensor(std).view(3, 1, 1)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        return (x * self.std + self.mean).clamp(0, 1)

    def to_model(self, img: torch.Tensor) -> torch.Tensor:
        return (img - self.mean) / self.std


def normal_texture(pool: torch.Tensor, gen: torch.Generator, space: PixelSpace) -> torch.Tensor:
    """Another normal shot of the category (``pool`` P x 3 x H x W, normalised), rotated by a random
    multiple of 90 degrees and randomly flipped, in [0, 1]."""
    j = int(torch.randint(pool.shape[0], (1,), generator=gen).item())
    tex = torch.rot90(space.to_unit(pool[j]), int(torch.randint(4, (1,), generator=gen).item()), dims=(1, 2))
    return tex.flip(2) if bool(torch.randint(2, (1,), generator=gen).item()) else tex


def _changed(out: torch.Tensor, img: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    changed = ((out - img).abs().amax(dim=0) > 0).float() * mask
    return changed if changed.any() else mask


def views_upsampled(x: torch.Tensor, pool: torch.Tensor, gen: torch.Generator, factor: int, texture: str,
                    beta_max: float, space: PixelSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of a shot x (3 x S x S) and its pseudo anomaly from the upsampled S x S tensor:
    (2V x 3 x S x S views, normal ones first; 2V x S x S masks)."""
    tex = normal_texture(pool, gen, space) if texture == "normal" else None
    pa = pseudo_anomaly(space.to_unit(x), gen, texture=tex, beta_max=beta_max)
    anomalous = space.to_model(pa.image)
    views = multi_scale_views(torch.stack([x, anomalous]), factor).flatten(0, 1)
    masks = multi_scale_views(torch.stack([torch.zeros_like(pa.mask), pa.mask])[:, None], factor,
                              mode="nearest").flatten(0, 1)[:, 0]
    return views, masks


def views_original(x: torch.Tensor, big: torch.Tensor, pool_big: torch.Tensor, gen: torch.Generator, factor: int,
                   texture: str, beta_max: float, space: PixelSpace) -> tuple[torch.Tensor, torch.Tensor]:
    """Views of a shot and its pseudo anomaly, crops from the original image at factor x S (module doc).

    x: 3 x S x S and big: 3 x fS x fS, both preprocessed from the same file; pool_big: the
    category's shots at fS (texture source "normal"). Returns (2V x 3 x S x S, 2V x S x S).
    """
    img_big = space.to_unit(big)
    tex = normal_texture(pool_big, gen, space) if texture == "normal" else None
    mask = perlin_mask(tuple(img_big.shape[-2:]), gen)
    if tex is None:
        tex = noise_texture(tuple(img_big.shape[-2:]), gen)  # RGB
    beta = beta_max * float(torch.rand(1, generator=gen, dtype=torch.float64).item())
    anom_big = blend(img_big, mask, tex, beta)
    mask_big = _changed(anom_big, img_big, mask)
    img_s = space.to_unit(x)
    mask_s = F.max_pool2d(mask[None, None], factor)[0, 0]
    anom_s = blend(img_s, mask_s, F.interpolate(tex[None], size=x.shape[-2:], mode="area")[0], beta)
    mask_s = _changed(anom_s, img_s, mask_s)
    normal = grid_crops(big, factor) + [x]
    anomalous = grid_crops(space.to_model(anom_big), factor) + [space.to_model(anom_s)]
    masks = [torch.zeros_like(mask_s)] * len(normal) + grid_crops(mask_big, factor) + [mask_s]
    return torch.stack(normal + anomalous), torch.stack(masks)
