"""AnoPLe's training step and loop (Lee et al. 2024, eq. 7-11, suppl. 6.2); see ``anople/model.py``.

One step = one shot and its pseudo anomaly, all their training views in one
encoder batch (batch 1 in the paper's sense). The switches: ``pseudo_anomalies``
"latent" keeps the shot's normal views only (no pixel pseudo anomaly reaches
any loss), "pixel" drops the latent-anomaly term of eq. 9 (no noise drawn);
``align`` "none" drops eq. 10 from the total, "mean" aligns with the plain mean
of the decoder features; without a decoder only the prompt learner trains. The loop runs ``epochs`` passes
over every shot of every training category in a seeded random order, SGD with
two parameter groups (prompt learner ``lr_prompt``, decoder ``lr_decoder``),
momentum and weight decay from the options, and a linear warm-up of both
learning rates from zero over ``warmup_epochs`` epochs (then constant).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping

import torch
import torch.nn.functional as F

from fsadbench.core.errors import MethodError
from fsadbench.methods.anople.losses import align_loss, image_loss, pixel_logits, pixel_loss, unit

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.methods.anople.model import AnoPLe


def step_losses(m: "AnoPLe", views: torch.Tensor, masks: torch.Tensor, text: torch.Tensor,
               gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Losses (eq. 7-11) for one shot and its pseudo anomaly: 2V views (normal first), one encoder batch."""
    o = m.options
    s = m.ctx.backbone.image_size
    views, masks = views.to(m.device), masks.to(m.device)
    v = m.n_views
    pixel_on, latent_on = o.pseudo_anomalies != "latent", o.pseudo_anomalies != "pixel"
    if not pixel_on:
        views, masks = views[:v], masks[:v]  # the normal views: no pixel pseudo anomaly
    signal_index = torch.arange(v).repeat(2 if pixel_on else 1)
    labels = (masks.flatten(1).amax(dim=1) > 0).long()
    with m.autocast():
        out = m.encode(views, signal_index)
        feats = m.pixel_features(out)
    emb, feats = out.embedding.float(), feats.float()
    logits = pixel_logits(feats, text, m.scale)
    # bilinear at torch's default align_corners (False) to the image size; abnormal channel
    prob = F.softmax(F.interpolate(logits, size=(s, s), mode="bilinear"), dim=1)[:, 1]
    l_pix = pixel_loss(prob, masks)
    z_pos = unit(emb[:v])  # the shot's views (normal)
    latent = None
    if latent_on:
        noise = torch.randn(z_pos.shape, generator=gen).to(m.device) * o.latent_sigma + o.latent_mu
        latent = unit(z_pos + noise)
    l_img = image_loss(m.scale, emb, labels, latent, z_pos, text, o.label_smoothing)
    if o.align == "none":
        l_align = torch.zeros((), device=l_img.device)
        total = l_pix + l_img
    else:
        weights = logits[:, 1] - logits[:, 0] if o.align == "weighted" else None
        l_align = align_loss(emb, feats, weights, o.align_tau)
        total = l_pix + l_img + l_align
    return {"pixel": l_pix, "image": l_img, "align": l_align, "total": total}


def train_epochs(m: "AnoPLe", names: list[str], pixels: Mapping[str, torch.Tensor]) -> None:
    """Train ``m``'s prompt learner and decoder on the shots of ``names``; the per-epoch mean losses
    go to ``m.history``. ``pixels``: each category's shots at S."""
    o = m.options
    gen = torch.Generator().manual_seed(int(m.ctx.seed))
    items = [(c, i) for c in names for i in range(pixels[c].shape[0])]
    groups = [{"params": list(m.learner.parameters()), "lr": o.lr_prompt}]
    if m.decoder is not None:
        groups.append({"params": list(m.decoder.parameters()), "lr": o.lr_decoder})
    opt = torch.optim.SGD(groups, momentum=o.momentum, weight_decay=o.weight_decay)
    warmup = max(1, math.ceil(o.warmup_epochs * len(items)))  # steps; warmup_epochs 0: one step, factor 1
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup))
    classes = [m.class_names[c] for c in names]
    m.learner.train()
    if m.decoder is not None:
        m.decoder.train()
    m.history = []
    for epoch in range(o.epochs):
        m.ctx.step("epoch", epoch + 1, o.epochs)
        sums: dict[str, float] = {}
        for t in torch.randperm(len(items), generator=gen).tolist():
            c, i = items[t]
            views, masks = m.training_views(c, i, pixels, gen)
            with m.autocast():
                per_class = m.class_texts(classes, m.learner.text_prompts())
            text = m.pick_text(per_class, names.index(c))
            losses = m.step_loss(views, masks, text, gen)
            opt.zero_grad()
            losses["total"].backward()
            opt.step()
            schedule.step()
            for k, val in losses.items():
                sums[k] = sums.get(k, 0.0) + float(val.detach())
        m.history.append({k: val / len(items) for k, val in sums.items()})
        total = m.history[-1]["total"]
        m.ctx.show(loss=total)  # on the progress line, not the log
        if not math.isfinite(total):
            raise MethodError(f"AnoPLe: training loss became {total} at epoch {epoch + 1}; "
                              f"lower lr_prompt / lr_decoder")
