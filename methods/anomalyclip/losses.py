"""AnomalyCLIP's similarity maps, losses and scores (official code zqhang/AnomalyCLIP).

* Patch probabilities (``AnomalyCLIP_lib/model_load.py`` l.230-235,
  ``compute_similarity``): p = softmax(<f_patch, g> / 0.07) over (normal,
  abnormal), both L2-normalised; ``patch_probs`` returns B x N x 2.
* Maps at the image size (l.222-227, ``get_similarity_map``): the N patch rows
  as a side x side grid, bilinear (``align_corners=False``, torch's default) to
  S x S: ``prob_maps`` -> B x 2 x S x S.
* Focal loss (``loss.py`` l.7-86 with the defaults of ``FocalLoss()``:
  gamma 2, alpha 1 per class, smooth 1e-5): the one-hot target clamped to
  [smooth, 1 - smooth], p_t = <target, p> + smooth, loss = mean over pixels of
  -(1 - p_t)^gamma log p_t.
* Dice loss (``loss.py`` l.89-106): per image 1 - mean_b (2 sum(p t) + 1) /
  (sum p + sum t + 1).
* Map loss (``train.py`` l.96-102): for each feature layer, focal(maps, gt) +
  dice(abnormal, gt) + dice(normal, 1 - gt); summed over layers, times
  ``lam`` = 4 (l.50). Image loss (l.82-84): cross-entropy of
  <f_img, g> / 0.07 against the label. Total = map loss + image loss (l.104).
* Test (``test.py`` l.93-111): image score = softmax(<f_img, g> / 0.07)
  abnormal; map = sum over layers of (p_abnormal + 1 - p_normal) / 2
  (= p_abnormal, l.102-104), then the Gaussian of the evaluator.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

TEMPERATURE = 0.07  # model_load.py l.235, train.py l.83, test.py l.94
FOCAL_GAMMA = 2.0  # loss.py l.21
FOCAL_SMOOTH = 1e-5  # loss.py l.21
DICE_SMOOTH = 1.0  # loss.py l.97
MAP_WEIGHT = 4.0  # train.py l.50 (lam)


def unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1)


def patch_probs(patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """B x N x 2: softmax over (normal, abnormal) of cosine / 0.07 (``text``: 2 x E, normalised)."""
    return (unit(patches) @ text.t() / TEMPERATURE).softmax(dim=-1)


def prob_maps(probs: torch.Tensor, size: int) -> torch.Tensor:
    """B x N x 2 on a square grid -> B x 2 x size x size, bilinear (align_corners=False)."""
    b, n, c = probs.shape
    side = int(round(n ** 0.5))
    grid = probs.transpose(1, 2).reshape(b, c, side, side)
    return F.interpolate(grid, size=(size, size), mode="bilinear", align_corners=False)


def focal_loss(probs: torch.Tensor, target: torch.Tensor, gamma: float = FOCAL_GAMMA,
               smooth: float = FOCAL_SMOOTH) -> torch.Tensor:
    """Focal loss of class probabilities ``probs`` (B x C x H x W) against integer ``target`` (B x H x W)."""
    c = probs.shape[1]
    p = probs.movedim(1, -1).reshape(-1, c)
    one_hot = F.one_hot(target.reshape(-1).long(), c).to(p.dtype)
    one_hot = one_hot.clamp(smooth / (c - 1), 1.0 - smooth)
    pt = (one_hot * p).sum(dim=1) + smooth
    return (-(1.0 - pt).pow(gamma) * pt.log()).mean()


def dice_loss(pred: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """1 - mean over images of (2 sum(p t) + smooth) / (sum p + sum t + smooth)."""
    p, t = pred.reshape(pred.shape[0], -1), target.reshape(target.shape[0], -1)
    dice = (2.0 * (p * t).sum(dim=1) + smooth) / (p.sum(dim=1) + t.sum(dim=1) + smooth)
    return 1.0 - dice.mean()


def map_loss(maps: Sequence[torch.Tensor], gt: torch.Tensor, weight: float = MAP_WEIGHT) -> torch.Tensor:
    """``weight`` x sum over layers of focal + dice(abnormal, gt) + dice(normal, 1 - gt); maps B x 2 x S x S."""
    total = gt.new_zeros(())
    for m in maps:
        total = total + focal_loss(m, gt) + dice_loss(m[:, 1], gt) + dice_loss(m[:, 0], 1.0 - gt)
    return weight * total


def image_logits(embedding: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """B x 2: cosine of the image feature with (normal, abnormal) text / 0.07."""
    return unit(embedding) @ text.t() / TEMPERATURE


def image_loss(embedding: torch.Tensor, text: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of :func:`image_logits` against the labels (0 normal, 1 anomalous)."""
    return F.cross_entropy(image_logits(embedding, text), labels.long())


def anomaly_map(layer_patches: Sequence[torch.Tensor], text: torch.Tensor) -> torch.Tensor:
    """B x N: sum over layers of the abnormal patch probability (the test map before upsampling)."""
    return torch.stack([patch_probs(p, text)[..., 1] for p in layer_patches]).sum(dim=0)
