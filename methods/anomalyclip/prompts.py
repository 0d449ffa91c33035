"""AnomalyCLIP's object-agnostic text prompts (Zhou et al., ICLR 2024; official code zqhang/AnomalyCLIP).

Two prompts, one per state, with no class name (``prompt_ensemble.py`` l.88:
the only class word is "object"; l.103-109: normal state "{}", abnormal
"damaged {}"):

    g_n = [SOS] [V_1 .. V_E] object.          [EOT]
    g_a = [SOS] [W_1 .. W_E] damaged object.  [EOT]

* ``V``, ``W``: learnable contexts, E = ``n_ctx`` = 12 (``train.py`` l.125,
  ``--n_ctx``), initialised N(0, 0.02^2) (``prompt_ensemble.py`` l.148-155),
  placed right after [SOS] (l.232-249: prefix, ctx, suffix).
* Learnable text tokens ("compound prompts"): ``depth - 1`` sets of
  ``t_n_ctx`` vectors (``prompt_ensemble.py`` l.158-163; ``train.py`` l.124,
  126: depth 9, length 4), N(0, 0.02^2). Block 1 reads the prompt as built
  above; the input of text blocks 2..depth has its ``t_n_ctx`` rows after
  [SOS] replaced by that block's set (``AnomalyCLIP.py`` l.237-251: every
  block but the first while the counter is below the number of sets). Later
  blocks carry the rows on.
* The text pass is open_clip's ``encode_text`` otherwise (``AnomalyCLIP.py``
  l.497-515: + positional embedding, causal blocks, ``ln_final``, the row at
  argmax(ids) = [EOT], @ text projection); features are L2-normalised and
  stacked as (normal, abnormal) (``train.py`` l.77-80).

The prompt embeddings are laid out by :mod:`fsadbench.methods.common.text_prompts`
(one slot "ctx" of ``n_ctx`` stand-in words "X", as the official prefix
``" ".join(["X"] * n_ctx)``) and encoded by the text tower of
:mod:`fsadbench.backbone.towers` with a call before each block for the deep
tokens. The official learner also builds ``depth - 1`` linear projections
(l.165-166) that its forward never uses; they are not built here (no gradient
reaches them, so Adam leaves them unchanged: same numbers).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.text_prompts import PromptTemplate, PromptTextEncoder, Slot

#: (normal, abnormal) state words around the object word (prompt_ensemble.py l.88, l.103-109)
OBJECT_WORD = "object"
STATES = ("{}", "damaged {}")
INIT_STD = 0.02  # prompt_ensemble.py l.154-155, l.163


class PromptLearner(nn.Module):
    """The learnable contexts of the two prompts and the deep text tokens (all trained parameters)."""

    def __init__(self, width: int, n_ctx: int, depth: int, t_n_ctx: int, init_std: float = INIT_STD):
        super().__init__()
        if n_ctx < 1 or depth < 1 or t_n_ctx < 0:
            raise ConfigError("AnomalyCLIP: n_ctx and depth must be >= 1, t_n_ctx >= 0 "
                              "(the official code: 12, 9, 4)")
        if t_n_ctx > n_ctx:
            raise ConfigError(f"AnomalyCLIP: t_n_ctx ({t_n_ctx}) must not exceed n_ctx ({n_ctx}): "
                              "the deep text tokens replace context rows")
        self.n_ctx, self.depth, self.t_n_ctx = n_ctx, depth, t_n_ctx
        self.ctx_normal = nn.Parameter(torch.randn(n_ctx, width) * init_std)
        self.ctx_abnormal = nn.Parameter(torch.randn(n_ctx, width) * init_std)
        self.deep = nn.Parameter(torch.randn(depth - 1, t_n_ctx, width) * init_std)


def templates(encoder: PromptTextEncoder, n_ctx: int) -> tuple[PromptTemplate, PromptTemplate]:
    """(normal, abnormal) layouts: [SOS] ctx x n_ctx "{state} object." [EOT]."""
    return tuple(encoder.template([Slot("ctx", n_ctx), state.format(OBJECT_WORD) + "."])
                 for state in STATES)  # type: ignore[return-value]


def deep_replacer(deep: torch.Tensor, fp16: bool = False):
    """The call before each text block: block i (0-indexed) in 1..len(deep) reads its set of
    deep tokens in rows 1..t_n_ctx (right after [SOS]); other blocks are untouched.

    ``fp16``: the official cast (``AnomalyCLIP.py`` l.246, ``expand(...).half()``): each prompt's
    copy of the tokens is rounded to fp16, and so is each copy's gradient in the backward pass
    (the cast back to the stream's dtype rounds it) before the copies' gradients are summed."""
    t = deep.shape[1]

    def before(i: int, x: torch.Tensor) -> torch.Tensor:
        if not 1 <= i <= deep.shape[0] or t == 0:
            return x
        rows = deep[i - 1].unsqueeze(0).expand(x.shape[0], -1, -1)
        rows = (rows.half() if fp16 else rows).to(x.dtype)
        return torch.cat([x[:, :1], rows, x[:, 1 + t:]], dim=1)

    return before


def encode_prompts(encoder: PromptTextEncoder, learner: PromptLearner,
                   layout: tuple[PromptTemplate, PromptTemplate], fp16: bool = False) -> torch.Tensor:
    """Normalised text features, 2 x E (row 0 normal, row 1 abnormal); differentiable in the learner;
    ``fp16``: the deep tokens go through the official fp16 cast (:func:`deep_replacer`)."""
    x = torch.stack([encoder.embed(layout[0], {"ctx": learner.ctx_normal}),
                     encoder.embed(layout[1], {"ctx": learner.ctx_abnormal})])
    eot = torch.tensor([layout[0].eot, layout[1].eot], device=x.device)
    feats = encoder.text.encode(x, eot, before=deep_replacer(learner.deep, fp16))
    return F.normalize(feats.float(), dim=-1)
