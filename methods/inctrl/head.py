"""InCTRL's trainable part: the adapter, the two scoring heads, the holistic score, the focal loss.

Official code (mala-lab/InCTRL), in words:

* ``Adapter`` (``open_clip/model.py`` l.428-440): two bias-free linear layers, width / 4 in between,
  each followed by a ReLU; ``Adapter(640, 4)`` (l.466) on the 640-d image token.
* image-level residual (l.542-545, l.588): the mean over the shots of the adapted shot tokens minus
  the adapted query token, scored by a head (``diff_head_ref``, l.468).
* ``TransformerBasicHead`` (l.400-426): linear to 128, ReLU, batch norm, linear to 64, ReLU, batch
  norm, linear to 1, sigmoid (its ``bn1`` is built but never used, so it is left out here).
* holistic score (l.587-594): the text prior plus the image-level score added to every entry of the
  patch residual map (B x N), scored by a second head (``diff_head``, input N = 225 patches); the
  final score is the mean of that and the map's max.
* loss (``engine_IC.py`` l.59-64, ``binary_focal_loss.py`` l.5-24): focal loss (alpha 1, gamma 2) with
  ``logits=True`` applied to the sigmoid outputs, on the final score plus on the image-level score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Adapter(nn.Module):
    def __init__(self, dim: int, reduction: int = 4):
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(dim, dim // reduction, bias=False), nn.ReLU(),
                                nn.Linear(dim // reduction, dim, bias=False), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


class ScoringHead(nn.Module):
    """``dim -> 128 -> 64 -> 1`` with ReLU and batch norm between, sigmoid out: B x dim -> B x 1."""

    def __init__(self, dim: int):
        super().__init__()
        self.projection1 = nn.Linear(dim, 128)
        self.projection2 = nn.Linear(128, 64)
        self.projection3 = nn.Linear(64, 1)
        self.bn2 = nn.BatchNorm1d(128)
        self.bn3 = nn.BatchNorm1d(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn2(F.relu(self.projection1(x)))
        x = self.bn3(F.relu(self.projection2(x)))
        return torch.sigmoid(self.projection3(x))


class HolisticHead(nn.Module):
    """The adapter and both heads; ``forward`` gives (final score B, image-level score B)."""

    def __init__(self, embed_dim: int, n_patches: int, reduction: int = 4):
        super().__init__()
        self.adapter = Adapter(embed_dim, reduction)
        self.image_head = ScoringHead(embed_dim)
        self.holistic_head = ScoringHead(n_patches)

    def image_residual(self, query: torch.Tensor, shots: torch.Tensor) -> torch.Tensor:
        """B x E: mean over the K shots of adapter(shot token) - adapter(query token); ``shots`` B x K x E."""
        return self.adapter(shots).mean(dim=1) - self.adapter(query)

    def holistic_input(self, patch_map: torch.Tensor, text: torch.Tensor, image_score: torch.Tensor) -> torch.Tensor:
        """B x N: the patch residual map plus the text prior (B) and the image-level score (B x 1)."""
        return text.unsqueeze(1) + image_score + patch_map

    def forward(self, patch_map: torch.Tensor, text: torch.Tensor, query: torch.Tensor,
                shots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image_score = self.image_head(self.image_residual(query.float(), shots.float()))
        holistic = self.holistic_head(self.holistic_input(patch_map, text, image_score)).squeeze(1)
        return (holistic + patch_map.max(dim=1).values) / 2, image_score.squeeze(1)


def focal_loss(pred: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, gamma: float = 2.0) -> torch.Tensor:
    """Mean of ``alpha (1 - p_t)^gamma BCE``, BCE taken with logits on ``pred`` (as the official loss is
    called on the heads' sigmoid outputs: ``logits=True`` by default)."""
    bce = F.binary_cross_entropy_with_logits(pred, target.float(), reduction="none")
    return (alpha * (1 - torch.exp(-bce)) ** gamma * bce).mean()
