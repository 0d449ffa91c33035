"""APT's CFG: Contextual anomaly Feature Generation with Target Focus (Chen et al. 2025, Sec. 3.4).

Target Focus (TF). The paper marks a patch as object when F(i,j).z_obj > 0.5,
z_obj being the embedding of "This is a photo of {object}.". With
l2-normalised CLIP features that inner product is rarely above 0.5, so the
similarity is first turned into a [0, 1] score and that score is thresholded
at 0.5 (``tf_score`` rules):

* ``softmax`` (default): softmax over {object, background} prompts with the
  CLIP logit scale, the object entry;
* ``minmax``: (s - min) / (max - min) of F.z_obj over each image's patches;
* ``raw``: the paper's literal F.z_obj > 0.5.

An empty object mask (nothing scored above 0.5) falls back to the whole grid,
and the number of such fallbacks is recorded. Texture categories use the whole
grid (spec; the 2024 paper treats the whole texture image as the target).

Gaussian noise (GN). Noise is added in feature space to the l2-normalised
patch features and the result is normalised again (the paper normalises
features before every similarity, Sec. 4). ``noise_sigma`` is in units of
1/sqrt(D): each element's std is noise_sigma / sqrt(D), so the noise vector's
expected norm is about noise_sigma relative to the unit feature, whatever the
backbone's width (choice; the paper gives no sigma).

Region rule (choice, the paper is silent). Noising the whole object mask, as
the paper's formula reads, would make "anomalous" mean "object" and
"normal" mean "background". Instead each synthetic sample gets 1..``max_blobs``
discs, each centred on a patch drawn uniformly from the object mask, with a
radius drawn uniformly in ``blob_radius`` (fractions of the grid's shorter
side); the noised region is the union of the discs intersected with the object
mask. M'_a marks the noised patches and M'_n = 1 - M'_a, so every sample holds
both classes. ``region="object"`` gives the paper's literal rule (noise on the
whole object mask).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError

TF_RULES = ("softmax", "minmax", "raw")
REGION_RULES = ("blobs", "object")


def target_focus_scores(feats: torch.Tensor, z_obj: torch.Tensor, z_bg: torch.Tensor | None = None,
                        scale: float = 100.0, rule: str = "softmax") -> torch.Tensor:
    """[0, 1]-ish object scores of B x N patch features for the TF threshold (Sec. 3.4)."""
    f = F.normalize(feats.float(), dim=-1)
    s_obj = f @ F.normalize(z_obj.float(), dim=-1)
    if rule == "raw":
        return s_obj
    if rule == "minmax":
        lo = s_obj.min(dim=-1, keepdim=True).values
        hi = s_obj.max(dim=-1, keepdim=True).values
        return (s_obj - lo) / (hi - lo).clamp_min(1e-12)
    if rule == "softmax":
        if z_bg is None:
            raise ValueError("target_focus_scores: rule 'softmax' needs the background prompt embedding z_bg")
        s_bg = f @ F.normalize(z_bg.float(), dim=-1)
        return torch.softmax(scale * torch.stack([s_obj, s_bg], dim=-1), dim=-1)[..., 0]
    raise ConfigError(f"apt option 'tf_score' must be one of {TF_RULES}, got {rule!r}")


def object_mask(scores: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, int]:
    """M_obj = score > threshold (Sec. 3.4); an all-zero row becomes all ones.

    Returns the B x N bool mask and how many images fell back to the whole grid.
    """
    mask = scores > threshold
    empty = ~mask.any(dim=-1)
    mask[empty] = True
    return mask, int(empty.sum())


def sample_regions(obj: torch.Tensor, grid: tuple[int, int], gen: torch.Generator, rule: str = "blobs",
                   max_blobs: int = 3, blob_radius: tuple[float, float] = (0.07, 0.2)) -> torch.Tensor:
    """The noised region M'_a (B x N bool) inside the object mask ``obj`` (B x N bool).

    ``blobs``: 1..max_blobs discs centred on object patches, radius uniform in
    blob_radius x min(grid) patches (at least 1 patch: the centre), union
    intersected with ``obj``. ``object``: the whole object mask (paper's formula).
    """
    if rule == "object":
        return obj.clone()
    if rule != "blobs":
        raise ConfigError(f"apt option 'region' must be one of {REGION_RULES}, got {rule!r}")
    device, obj = obj.device, obj.cpu()
    h, w = grid
    ii, jj = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    ii, jj = ii.flatten().float(), jj.flatten().float()
    side = float(min(h, w))
    out = torch.zeros_like(obj, dtype=torch.bool)
    for b in range(obj.shape[0]):
        where = torch.nonzero(obj[b]).flatten()
        n_blobs = int(torch.randint(1, max_blobs + 1, (1,), generator=gen))
        for _ in range(n_blobs):
            c = where[int(torch.randint(0, where.numel(), (1,), generator=gen))]
            u = float(torch.rand((), generator=gen))
            r = max(1.0, (blob_radius[0] + u * (blob_radius[1] - blob_radius[0])) * side)
            d2 = (ii - ii[c]) ** 2 + (jj - jj[c]) ** 2
            out[b] |= d2 <= r * r
        out[b] &= obj[b]
    return out.to(device)


def add_noise(feats: torch.Tensor, region: torch.Tensor, sigma: float, gen: torch.Generator) -> torch.Tensor:
    """F' = normalise(F + N(0, (sigma/sqrt(D))^2) at region, F elsewhere) (Sec. 3.4)."""
    f = F.normalize(feats, dim=-1)
    d = f.shape[-1]
    noise = torch.randn(f.shape, generator=gen, dtype=f.dtype) * (sigma / math.sqrt(d))
    noise = noise.to(f.device) * region.unsqueeze(-1).to(f.dtype)
    return F.normalize(f + noise, dim=-1)
