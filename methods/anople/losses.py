"""AnoPLe's losses and score fusion (Lee et al. 2024, sec. 3.4-3.5, supplementary 6.2).

Class index 0 is "normal" (+), 1 is "abnormal" (-) everywhere.

* pixel loss, eq. 7: dice + focal on the abnormal-class probability of the
  pixel logits <D(z), w> against the pseudo mask;
* image loss, eq. 8-9: cross entropy of softmax(scale * <z^0, w>) with label
  smoothing on the latent anomalies only (0.003);
* alignment, eq. 10: s = sum_ij softmax(M_hat / tau)_ij D_ij(z), tau = 2
  (suppl. 6.2), L = 1 - cos(z^0, s);
* inference, eq. 12-14: harmonic means of maps and of image probability and
  map maximum.

Choices where the paper is silent: dice with smoothing 1 on each image
(V-Net form 1 - (2 sum p y + 1) / (sum p + sum y + 1)), averaged over images;
focal loss with gamma 2 and no class weight, averaged over pixels; the
alignment logit M_hat is the abnormal-vs-normal log-odds of each pixel;
harmonic means clamp inputs at 1e-12 so a zero gives ~1e-12, never NaN.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 1e-12


def unit(x: torch.Tensor) -> torch.Tensor:
    """x / max(||x||, 1e-12) along the last dimension: the one normalisation every term here uses."""
    return F.normalize(x, dim=-1)


def dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """mean over images of 1 - (2 sum(p y) + s) / (sum p + sum y + s); prob, target: B x H x W."""
    p = prob.flatten(1)
    y = target.flatten(1).to(p.dtype)
    return (1.0 - (2.0 * (p * y).sum(1) + smooth) / (p.sum(1) + y.sum(1) + smooth)).mean()


def focal_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """mean over pixels of -(1 - p_t)^gamma log p_t, p_t = p where y = 1 else 1 - p (Lin et al. 2017);
    p_t clamped at 1e-6 so a confident miss costs -log 1e-6, not infinity."""
    y = target.to(prob.dtype)
    pt = (prob * y + (1.0 - prob) * (1.0 - y)).clamp_min(1e-6)
    return (-(1.0 - pt).pow(gamma) * pt.log()).mean()


def pixel_loss(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 7: dice + focal."""
    return dice_loss(prob, target) + focal_loss(prob, target)


def smoothed_ce(logits: torch.Tensor, target: torch.Tensor, smoothing: torch.Tensor | float = 0.0) -> torch.Tensor:
    """Cross entropy of N x C logits with per-row label smoothing eps, averaged over rows:
    -(1 - eps) log p_y - eps / C * sum_c log p_c."""
    logp = F.log_softmax(logits, dim=-1)
    nll = -logp.gather(1, target.long()[:, None])[:, 0]
    eps = torch.zeros_like(nll) + smoothing  # a float or one eps per row, in the logits' precision
    uniform = -logp.mean(dim=-1)
    return ((1.0 - eps) * nll + eps * uniform).mean()


def image_loss(scale: float, emb: torch.Tensor, labels: torch.Tensor, latent: torch.Tensor | None,
               normal_emb: torch.Tensor, text: torch.Tensor, smoothing: float = 0.003) -> torch.Tensor:
    """Eq. 9: CE(z+, z-, w) + CE(z+, z_latent, w); embeddings and text L2-normalised here.

    emb / labels: every view (normal 0, pixel pseudo anomaly 1); normal_emb: the z+ views the
    latent anomalies were made from; latent: z_latent, or None (no latent anomalies: the first
    term alone); text: 2 x E (normal, abnormal).
    Label smoothing applies to the latent-anomaly rows only (sec. 3.4.2).
    """
    w = unit(text)
    first = smoothed_ce(scale * unit(emb) @ w.T, labels)
    if latent is None:
        return first
    z = unit(torch.cat([normal_emb, latent]))
    y = torch.cat([z.new_zeros(len(normal_emb)), z.new_ones(len(latent))])
    eps = torch.cat([z.new_zeros(len(normal_emb)), z.new_full((len(latent),), float(smoothing))])
    return first + smoothed_ce(scale * z @ w.T, y, eps)


def pixel_logits(features: torch.Tensor, text: torch.Tensor, scale: float) -> torch.Tensor:
    """<D(z), w>: B x E x H x W decoder features, 2 x E text -> B x 2 x H x W (cosine x scale)."""
    return (scale * unit(features.movedim(1, -1)) @ unit(text).T).movedim(-1, 1)


def align_loss(emb: torch.Tensor, features: torch.Tensor, weight_logits: torch.Tensor | None,
               tau: float = 2.0) -> torch.Tensor:
    """Eq. 10: s = sum_ij softmax(M_hat / tau)_ij D_ij(z); mean over images of 1 - cos(z^0, s).

    emb: B x E; features: B x E x H x W; weight_logits: B x H x W, or None for the plain mean
    of the features (Table 3 (c), "align with mean").
    """
    if weight_logits is None:
        s = features.flatten(2).mean(dim=-1)  # B x E
    else:
        wts = F.softmax(weight_logits.flatten(1) / tau, dim=-1)  # B x HW
        s = (features.flatten(2) @ wts[:, :, None])[:, :, 0]  # B x E
    return (1.0 - (unit(emb) * unit(s)).sum(dim=-1)).mean()


def harmonic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 / (1/a + 1/b) (eq. 12 and 14), inputs clamped at 1e-12."""
    return 1.0 / (1.0 / a.clamp_min(EPS) + 1.0 / b.clamp_min(EPS))


def fuse_map(decoder_map: torch.Tensor, memory_map: torch.Tensor) -> torch.Tensor:
    """Eq. 12: M_q = 1 / (1/M_hat_q + 1/M_mem)."""
    return harmonic(decoder_map, memory_map)


def image_score(prob: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Eq. 14: 1 / (1/p_hat + 1/max M_q); prob: B, maps: B x H x W."""
    return harmonic(prob, maps.flatten(1).max(dim=1).values)
