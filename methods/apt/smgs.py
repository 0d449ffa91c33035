"""APT's SMGS: the Self-optimising Meta-prompt Guiding Scheme (Chen et al. 2025, Sec. 3.1, 3.3).

Equation numbers are those of "Beyond Human-prompting: Adaptive Prompt Tuning
with Semantic Alignment for Anomaly Detection" (2025).

Score maps (eq. 3-4). With l2-normalised patch features F and prompt
embeddings z_n, z_a, S_n = F.z_n and S_a = F.z_a. The map is the softmax over
the pair, so with logit scale t (choice: CLIP's exp(logit_scale), the paper
writes none; without it cosine differences of ~0.01 give S ~ 0.5 everywhere)

    S'_a = softmax(t [S_n, S_a])_a = sigmoid(t (S_a - S_n)),    S'_n = 1 - S'_a.

This module works on the *pair logit* d = t (S_a - S_n), so S'_a = sigmoid(d)
and S'_n = sigmoid(-d), computed with log-sigmoids for stability.

Losses:
* eq. 6-7  L_ano = BCE(S'_n, M'_n) + BCE(S'_a, M'_a), each the mean over the
  H x W locations (eq. 6), then the mean over the batch.
* eq. 8-9  L_div = KL(S^M_n || S'_n) + KL(S^M_a || S'_a): at each location the
  score is a two-outcome probability, so KL is the Bernoulli KL
  p log(p/q) + (1-p) log((1-p)/(1-q)) with p from the meta prompts (target, no
  gradient) and q from the learnable prompts. Choice: mean over locations, the
  same reduction as eq. 6 (the 2024 paper sums; the reduction only rescales).
* eq. 10   gradient calibration, per parameter group (see ``calibrate``).
* eq. 11   after each meta-round MNP <- LNP, MAP <- LAP (see ``meta_swap_epochs``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError


# -- eq. 3-4 -----------------------------------------------------------------------
def pair_logit(feats: torch.Tensor, z_n: torch.Tensor, z_a: torch.Tensor, scale: float) -> torch.Tensor:
    """d = scale * (F.z_a - F.z_n) for B x N x D features and D-dim prompt embeddings (eq. 3-4).

    Both sides are l2-normalised here; ``sigmoid(d)`` is the anomaly map S.
    """
    f = F.normalize(feats, dim=-1)
    zn = F.normalize(z_n, dim=-1)
    za = F.normalize(z_a, dim=-1)
    return scale * (f @ za - f @ zn)


def anomaly_map(d: torch.Tensor) -> torch.Tensor:
    """S = sigmoid(d) = softmax over (S_n, S_a), the anomalous entry (eq. 4)."""
    return torch.sigmoid(d)


# -- eq. 6-7 -----------------------------------------------------------------------
def ano_loss(d: torch.Tensor, mask_a: torch.Tensor) -> torch.Tensor:
    """L_ano = BCE(S'_n, M'_n) + BCE(S'_a, M'_a) with M'_n = 1 - M'_a (eq. 6-7).

    ``d``: B x N pair logits; ``mask_a``: B x N in {0, 1}. Each BCE is the mean
    over the N = H x W locations (eq. 6) and then over the batch.
    """
    m = mask_a.to(d.dtype)
    bce_a = F.binary_cross_entropy_with_logits(d, m, reduction="none").mean(dim=-1)
    bce_n = F.binary_cross_entropy_with_logits(-d, 1.0 - m, reduction="none").mean(dim=-1)
    return (bce_n + bce_a).mean()


# -- eq. 8-9 -----------------------------------------------------------------------
def bernoulli_kl_logits(target_logit: torch.Tensor, logit: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(Bern(sigmoid(target_logit)) || Bern(sigmoid(logit)))."""
    p = torch.sigmoid(target_logit)
    log_p, log_1p = F.logsigmoid(target_logit), F.logsigmoid(-target_logit)
    log_q, log_1q = F.logsigmoid(logit), F.logsigmoid(-logit)
    return p * (log_p - log_q) + (1.0 - p) * (log_1p - log_1q)


def div_loss(d_meta: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """L_div = KL(S^M_n || S'_n) + KL(S^M_a || S'_a) (eq. 8-9).

    ``d_meta``: pair logits of the meta prompts on the same (noised) features,
    treated as the fixed target (detached); ``d``: the learnable prompts' logits.
    S_n = sigmoid(-d), so the normal term uses the negated logits.
    """
    t = d_meta.detach()
    kl_a = bernoulli_kl_logits(t, d).mean(dim=-1)
    kl_n = bernoulli_kl_logits(-t, -d).mean(dim=-1)
    return (kl_n + kl_a).mean()


# -- eq. 10 ------------------------------------------------------------------------
def calibrate(g_ano: Sequence[torch.Tensor], g_div: Sequence[torch.Tensor], lam: float = 1.0
              ) -> tuple[list[torch.Tensor], list[float]]:
    """Gradient calibration (eq. 10), applied to each parameter group on its own.

    For group i: C_i = cos(g_ano_i, g_div_i) over the flattened tensors;
    g_i = g_ano_i - lam * C_i * g_div_i when C_i < 0, else g_ano_i. A zero
    gradient has no direction: C is taken as 0 (no calibration).
    Returns the calibrated gradients and the C of each group.
    """
    out, cs = [], []
    for ga, gd in zip(g_ano, g_div, strict=True):
        na, nd = ga.norm(), gd.norm()
        c = float((ga.flatten() @ gd.flatten()) / (na * nd)) if na > 0 and nd > 0 else 0.0
        out.append(ga - lam * c * gd if c < 0 else ga.clone())
        cs.append(c)
    return out, cs


CALIBRATIONS = ("per_group", "joint")


def calibrate_groups(g_ano: Sequence[torch.Tensor], g_div: Sequence[torch.Tensor], lam: float = 1.0,
                     grouping: str = "per_group") -> tuple[list[torch.Tensor], list[float]]:
    """Eq. 10 per parameter group ("per_group") or once over all groups flattened together ("joint").

    The paper calibrates "the gradients of the learnable prompts" without saying whether the
    cosine is taken per prompt or over all of them; "joint" returns one C, repeated per group.
    """
    if grouping == "per_group":
        return calibrate(g_ano, g_div, lam)
    if grouping != "joint":
        raise ConfigError(f"apt option 'calibration' must be one of {CALIBRATIONS}, got {grouping!r}")
    flat, cs = calibrate([torch.cat([g.flatten() for g in g_ano])], [torch.cat([g.flatten() for g in g_div])], lam)
    out, start = [], 0
    for g in g_ano:
        out.append(flat[0][start:start + g.numel()].reshape(g.shape))
        start += g.numel()
    return out, cs * len(g_ano)


# -- eq. 11 ------------------------------------------------------------------------
def meta_swap_epochs(epochs: int, meta_rounds: int) -> tuple[int, ...]:
    """Epochs (1-indexed) after which MNP <- LNP and MAP <- LAP (eq. 11).

    The ``epochs`` are split into ``meta_rounds`` consecutive rounds; round r
    ends after epoch round(r * epochs / meta_rounds). The meta prompts are
    replaced at the end of every round except the last (nothing trains after
    it): 100 epochs, 5 rounds -> after epochs 20, 40, 60, 80.
    """
    if epochs < 1:
        raise ConfigError(f"apt option 'epochs' must be >= 1, got {epochs}")
    if not 1 <= meta_rounds <= epochs:
        raise ConfigError(f"apt option 'meta_rounds' must be between 1 and epochs ({epochs}), got {meta_rounds}")
    return tuple(int(math.floor(r * epochs / meta_rounds + 0.5)) for r in range(1, meta_rounds))


# -- the training loop ---------------------------------------------------------------
EncodeFn = Callable[[], tuple[torch.Tensor, torch.Tensor]]
SynthFn = Callable[[int], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class SMGSConfig:
    epochs: int = 100
    meta_rounds: int = 5
    lr: float = 1e-4
    lam: float = 1.0
    mg: bool = True  # meta-guiding: L_div + eq. 10
    so: bool = True  # self-optimisation: eq. 11
    scale: float = 100.0
    steps_per_epoch: int = 1  # Adam steps per epoch, each on a fresh synth() batch
    calibration: str = "per_group"  # eq. 10 grouping, see calibrate_groups


@dataclass
class SMGSHistory:
    ano: list[float] = field(default_factory=list)  # L_ano per epoch (mean over its steps)
    div: list[float] = field(default_factory=list)  # L_div per epoch (mg only; mean over its steps)
    cos: dict[str, list[float]] = field(default_factory=dict)  # C per group per step (mg only)
    swaps: list[int] = field(default_factory=list)  # epochs after which eq. 11 ran
    meta_version: list[int] = field(default_factory=list)  # meta prompts in use at each epoch

    def summary(self) -> dict:
        out = {"epochs_run": len(self.ano), "swaps_after_epochs": list(self.swaps)}
        if self.ano:
            out.update(l_ano_first=self.ano[0], l_ano_last=self.ano[-1])
        if self.div:
            out.update(l_div_first=self.div[0], l_div_last=self.div[-1])
        if self.cos:
            out["calibrated_fraction"] = {k: sum(c < 0 for c in v) / len(v) for k, v in self.cos.items() if v}
        return out


def train_smgs(params: Mapping[str, torch.Tensor], encode: EncodeFn, synth: SynthFn,
               meta: tuple[torch.Tensor, torch.Tensor], cfg: SMGSConfig) -> tuple[SMGSHistory, tuple]:
    """Tune the learnable prompt groups ``params`` (Sec. 3.3).

    ``encode()`` gives the current (z_n, z_a) with gradient to ``params``;
    ``synth(epoch)`` gives a batch of noised features F' (B x N x D) and their
    anomaly masks M'_a (B x N); ``meta`` = initial (z^M_n, z^M_a).

    Per epoch, ``steps_per_epoch`` Adam steps, each on a fresh ``synth(epoch)``
    batch: g = grad L_ano, calibrated against grad L_div (eq. 10, grouped by
    ``calibration``) when ``mg``; without ``mg`` plain grad L_ano. Cosine
    annealing of the learning rate over all steps (to 0), one schedule and one
    Adam state across the meta-rounds (choice: the paper names neither a reset
    nor a restart). With ``so``, after each meta-round (``meta_swap_epochs``)
    the meta embeddings become detached copies of the learnable ones (eq. 11);
    without it the initial meta prompts guide every round.
    Returns the history and the final meta embeddings.
    """
    names = list(params)
    tensors = [params[n] for n in names]
    steps = cfg.epochs * cfg.steps_per_epoch
    if cfg.steps_per_epoch < 1:
        raise ConfigError(f"apt option 'steps_per_epoch' must be >= 1, got {cfg.steps_per_epoch}")
    opt = torch.optim.Adam(tensors, lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=0.0)
    swaps = set(meta_swap_epochs(cfg.epochs, cfg.meta_rounds)) if cfg.so else set()
    zm_n, zm_a = (m.detach().clone() for m in meta)
    hist = SMGSHistory(cos={n: [] for n in names} if cfg.mg else {})
    version = 0
    for epoch in range(1, cfg.epochs + 1):
        ano, div = [], []
        for _ in range(cfg.steps_per_epoch):
            feats, mask_a = synth(epoch)
            z_n, z_a = encode()
            d = pair_logit(feats, z_n, z_a, cfg.scale)
            l_ano = ano_loss(d, mask_a)
            g_ano = torch.autograd.grad(l_ano, tensors, retain_graph=cfg.mg, allow_unused=True)
            g_ano = [torch.zeros_like(t) if g is None else g for g, t in zip(g_ano, tensors)]
            if cfg.mg:
                with torch.no_grad():
                    d_meta = pair_logit(feats, zm_n, zm_a, cfg.scale)
                l_div = div_loss(d_meta, d)
                g_div = torch.autograd.grad(l_div, tensors, allow_unused=True)
                g_div = [torch.zeros_like(t) if g is None else g for g, t in zip(g_div, tensors)]
                grads, cs = calibrate_groups(g_ano, g_div, cfg.lam, cfg.calibration)
                div.append(float(l_div.detach()))
                for n, c in zip(names, cs):
                    hist.cos[n].append(c)
            else:
                grads = g_ano
            for t, g in zip(tensors, grads):
                t.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
            sched.step()
            ano.append(float(l_ano.detach()))
        hist.ano.append(sum(ano) / len(ano))
        if div:
            hist.div.append(sum(div) / len(div))
        hist.meta_version.append(version)
        if epoch in swaps:  # eq. 11: MNP <- LNP, MAP <- LAP
            with torch.no_grad():
                z_n, z_a = encode()
            zm_n, zm_a = z_n.detach().clone(), z_a.detach().clone()
            hist.swaps.append(epoch)
            version += 1
    return hist, (zm_n, zm_a)
