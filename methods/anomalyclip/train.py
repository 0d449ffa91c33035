"""AnomalyCLIP's training loop on an auxiliary labelled split (official ``train.py``).

* Adam on the prompt learner only, lr 0.001 (l.131), betas (0.5, 0.999) (l.44);
  batch 8 (l.132), shuffled each epoch (l.36: ``shuffle=True``, last partial
  batch kept); 15 epochs (l.130). The image encoder is frozen (l.68) and its
  outputs come from the feature store cache (:mod:`.encoder`): one encoder
  pass per auxiliary image per fit at most.
* One step (l.60-105): the text features of the two prompts (one text pass
  with the current parameters), the image loss and the map loss of
  :mod:`.losses` on the batch's cached features and its ground-truth masks at
  the image size S, ``(map loss + image loss).backward()``, Adam step.

The shuffles come from a CPU generator seeded by the cell seed, so a fit is
deterministic for a seed on CPU (the official code seeds 111, l.136).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch

from fsadbench.core.errors import MethodError
from fsadbench.methods.anomalyclip.losses import image_loss, map_loss, patch_probs, prob_maps

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.methods.anomalyclip.model import AnomalyCLIP

BatchFn = Callable[[list[int]], tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]]


def step_losses(m: "AnomalyCLIP", feats: dict[str, torch.Tensor], labels: torch.Tensor,
                masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """The losses of one batch: cached features, labels (B,), masks (B x S x S, 0/1)."""
    text = m.text_features()
    size = masks.shape[-1]
    maps = [prob_maps(patch_probs(feats[f"layer{i}"], text), size) for i in m.layers]
    l_map = map_loss(maps, masks.to(maps[0].device))
    l_img = image_loss(feats["embedding"], text, labels.to(text.device))
    return {"map": l_map, "image": l_img, "total": l_map + l_img}


def train_epochs(m: "AnomalyCLIP", n_images: int, batch: BatchFn) -> None:
    """Train ``m.learner`` for ``m.options.epochs`` epochs over ``n_images`` auxiliary images;
    ``batch(indices)`` returns (features, labels, masks). Per-epoch mean losses go to ``m.history``."""
    o = m.options
    gen = torch.Generator().manual_seed(int(m.ctx.seed))
    opt = torch.optim.Adam(list(m.learner.parameters()), lr=o.lr, betas=(o.beta1, o.beta2))
    m.learner.train()
    m.history = []
    for epoch in range(o.epochs):
        m.ctx.step("epoch", epoch + 1, o.epochs)
        sums: dict[str, float] = {}
        order = torch.randperm(n_images, generator=gen).tolist()
        steps = 0
        for start in range(0, n_images, o.batch_size):
            feats, labels, masks = batch(order[start:start + o.batch_size])
            losses = step_losses(m, feats, labels, masks)
            opt.zero_grad()
            losses["total"].backward()
            opt.step()
            steps += 1
            for k, val in losses.items():
                sums[k] = sums.get(k, 0.0) + float(val.detach())
        m.history.append({k: val / steps for k, val in sums.items()})
        total = m.history[-1]["total"]
        m.ctx.show(loss=total)  # on the progress line, not the log
        if not math.isfinite(total):
            raise MethodError(f"AnomalyCLIP: training loss became {total} at epoch {epoch + 1}; lower lr")
    m.learner.eval()
