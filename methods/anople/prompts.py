"""AnoPLe's multi-modal deep prompts, their coupling, and the prompted CLIP forward passes.

Paper: Lee et al., "AnoPLe" (2024), sec. 3.2 and 3.3.2.

* Learnable contexts per prompted block j = 1..J (J = ``depth``, default 9):
  text P_j^t (C_t x d_t), visual P_j^v (C_v x d_v).
* Bidirectional coupling (eq. 5-6): one pair of bias-free linear maps
  f_{v->t} (d_v -> d_t) and f_{t->v} (d_t -> d_v), shared by all blocks; block
  j's text prompt slots hold [P_j^t, f_{v->t}(P_j^v)] and its visual slots
  [P_j^v, f_{t->v}(P_j^t)].
* Multi-view signal c (sec. 3.3.2): N + 1 learnable d_v vectors; view i of an
  image gets c_i in front of its visual prompts; the whole image is c_{N+1}.
* ``interaction`` (Table 3 (a)): which contexts exist and which coupling maps
  feed the other encoder. ``text``: P^t only (no visual prompts); ``visual``:
  P^v only (the text encoder reads the bare sentence); ``independent``: both,
  no coupling; ``text_to_visual``: visual slots [P^v, f_{t->v}(P^t)], text
  slots [P^t] (with no own visual contexts this is MaPLe's coupling);
  ``visual_to_text``: text slots [P^t, f_{v->t}(P^v)], visual slots [P^v];
  ``bidirectional`` (default, eq. 5-6): both maps. A setting without a
  context set or map has no such parameter.

The prompted passes follow the MaPLe layout the paper builds on; they run on
the towers of :mod:`fsadbench.backbone.towers` (embedding, blocks with a call
before each, ``ln_post`` / ``ln_final``, projections), this module says where
the prompts go:

* text: the sentence is tokenised with one stand-in word "X" per prompt slot
  right after [SOS] (``"X X X X X X bottle."``); block 1 sees the prompt vectors
  in place of the stand-in embeddings (positional embeddings added, as for
  words); blocks 2..J see the slots' hidden states replaced by that block's
  prompts; later blocks carry them. Pooling at [EOT] as CLIP. The causal mask
  means tokens after [EOT] never reach it, so the sequence is cut after the
  last [EOT] of the batch (same output, a fraction of the cost).
* image: [c_i, visual slots, CLS, patches] after ``ln_pre``; the slots are
  replaced at the input of blocks 2..J; the signal token is given once, at the
  input, and carried through every block (the paper says only that c_i is
  prepended to the visual contexts). Prompts get no positional embedding.

With zero-length prompts and no signal both passes are open_clip's own
``encode_text`` / ``encode_image`` (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from fsadbench.backbone.towers import ImageTower, TextTower
from fsadbench.core.errors import ConfigError
from fsadbench.methods.winclip.model import ANOMALOUS_STATES, NORMAL_STATES

STATE_ENSEMBLE = "cpe"  # state_word value: the compositional ensemble of state templates (Table 4)


INTERACTIONS = ("text", "visual", "independent", "text_to_visual", "visual_to_text", "bidirectional")


class PromptLearner(nn.Module):
    """Learnable contexts, coupling maps and multi-view signal (all the prompt-side parameters)."""

    def __init__(self, d_text: int, d_visual: int, n_text: int, n_visual: int, depth: int,
                 n_signals: int = 0, init_std: float = 0.02, interaction: str = "bidirectional"):
        super().__init__()
        if depth < 0 or n_text < 0 or n_visual < 0 or n_signals < 0:
            raise ConfigError("AnoPLe: depth, context lengths and the number of views must be >= 0")
        if interaction not in INTERACTIONS:
            raise ConfigError(f"AnoPLe: interaction must be one of {INTERACTIONS}, got {interaction!r}")
        self.interaction = interaction
        self.depth = depth
        self.n_text = 0 if interaction == "visual" else n_text
        self.n_visual = 0 if interaction == "text" else n_visual
        self.ctx_text = nn.Parameter(torch.randn(depth, self.n_text, d_text) * init_std)
        self.ctx_visual = nn.Parameter(torch.randn(depth, self.n_visual, d_visual) * init_std)
        # f_{v->t}, f_{t->v} (eq. 5-6), created in this order for every setting that has them
        self.v2t = nn.Linear(d_visual, d_text, bias=False) if interaction in ("visual_to_text", "bidirectional") \
            else None
        self.t2v = nn.Linear(d_text, d_visual, bias=False) if interaction in ("text_to_visual", "bidirectional") \
            else None
        self.signal = nn.Parameter(torch.randn(n_signals, d_visual) * init_std) if n_signals else None

    @property
    def text_slots(self) -> int:
        """Prompt slots of the text encoder: own contexts + the projected visual ones (v -> t)."""
        return self.n_text + (self.n_visual if self.v2t is not None else 0)

    @property
    def visual_slots(self) -> int:
        """Prompt slots of the image encoder: own contexts + the projected text ones (t -> v)."""
        return self.n_visual + (self.n_text if self.t2v is not None else 0)

    def text_prompts(self) -> torch.Tensor:
        """depth x text_slots x d_t: [P_j^t, f_{v->t}(P_j^v)] (eq. 5; the map only when it exists)."""
        parts = [self.ctx_text] + ([self.v2t(self.ctx_visual)] if self.v2t is not None else [])
        return torch.cat(parts, dim=1)

    def visual_prompts(self) -> torch.Tensor:
        """depth x visual_slots x d_v: [P_j^v, f_{t->v}(P_j^t)] (eq. 6; the map only when it exists)."""
        parts = [self.ctx_visual] + ([self.t2v(self.ctx_text)] if self.t2v is not None else [])
        return torch.cat(parts, dim=1)


def slot_sentences(class_name: str, n_slots: int, state_word: str) -> tuple[str, str]:
    """Normal and abnormal sentences (eq. 1-2): "X.. {class}." and "X.. {state} {class}."."""
    lead = "X " * n_slots
    return f"{lead}{class_name}.", f"{lead}{state_word} {class_name}."


def state_sentences(class_name: str, n_slots: int, state_word: str) -> tuple[list[str], list[str]]:
    """The normal and the abnormal sentences of a class: one each (:func:`slot_sentences`), or with
    ``state_word`` "cpe" (Table 4) WinCLIP's state templates, "X.. {template with the class}." each."""
    if state_word == STATE_ENSEMBLE:
        lead = "X " * n_slots
        return ([f"{lead}{t.format(class_name)}." for t in NORMAL_STATES],
                [f"{lead}{t.format(class_name)}." for t in ANOMALOUS_STATES])
    normal, abnormal = slot_sentences(class_name, n_slots, state_word)
    return [normal], [abnormal]


def project_patches(model, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """No decoder (``decoder=False``): the patch tokens after ``ln_post`` through CLIP's visual projection,
    B x N x d_v -> B x E x h x w (MaPLe's dense output)."""
    x = ImageTower(model.visual).project(patches)
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], grid[0], grid[1])


def encode_text_prompted(model, tokens: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
    """CLIP text embeddings (K x E, not normalised) with deep prompts.

    tokens: K x L token ids with ``prompts.shape[1]`` stand-in tokens ("X") after [SOS];
    prompts: depth x P x d_t (depth 0 or P 0: no prompts, open_clip's own pass).
    """
    text = TextTower(model)
    eot = tokens.argmax(dim=1)
    tokens = tokens[:, :int(eot.max().item()) + 1]
    depth, p = prompts.shape[0], prompts.shape[1]

    def put(b: int, x: torch.Tensor) -> torch.Tensor:
        """The slots after [SOS] hold block b's prompts."""
        return torch.cat([x[:, :1], prompts[b].to(x.dtype).expand(x.shape[0], -1, -1), x[:, 1 + p:]], dim=1)

    x = text.token_embeddings(tokens)
    if depth:
        x = put(0, x)  # block 1 reads the prompts (+ positional embedding) in place of the stand-ins
    return text.encode(x, eot, before=lambda b, h: put(b, h) if 1 <= b < depth else h)


@dataclass
class ImageOut:
    embedding: torch.Tensor  # B x E: CLS after ln_post and proj (z^0)
    patches: torch.Tensor  # B x N x d_v: patch tokens after ln_post (decoder input)
    layers: dict[int, torch.Tensor]  # block (1-indexed) -> B x N x d_v patch outputs of that block


def encode_image_prompted(model, pixels: torch.Tensor, prompts: torch.Tensor,
                          signal: torch.Tensor | None = None, layers: Sequence[int] = ()) -> ImageOut:
    """The prompted image encoder E_V.

    pixels: B x 3 x S x S (preprocessed); prompts: depth x P x d_v (depth 0 or P 0: no prompts);
    signal: B x d_v multi-view vectors (one per image) or None; layers: blocks whose
    patch outputs to return (1-indexed).
    """
    tower = ImageTower(model.visual)
    x = tower.embed(pixels)
    bsz = x.shape[0]
    depth = prompts.shape[0]
    p = prompts.shape[1] if depth else 0
    front = []
    if signal is not None:
        front.append(signal.to(x.dtype)[:, None, :])
    s = len(front)
    if p:
        front.append(prompts[0].to(x.dtype).expand(bsz, -1, -1))
    if front:
        x = torch.cat(front + [x], dim=1)
    skip = s + p  # tokens before CLS
    want = set(int(i) for i in layers)
    captured: dict[int, torch.Tensor] = {}

    def put(b: int, h: torch.Tensor) -> torch.Tensor:
        """Block b (0-indexed, 1..depth-1) reads its own prompts in the slots."""
        if p and 1 <= b < depth:
            return torch.cat([h[:, :s], prompts[b].to(h.dtype).expand(bsz, -1, -1), h[:, s + p:]], dim=1)
        return h

    def keep(i: int, out: torch.Tensor) -> None:
        if i in want:
            captured[i] = out[:, skip + 1:]

    x = tower.post_norm(tower.run_blocks(x, before=put, after=keep))
    return ImageOut(embedding=tower.project(x[:, skip]), patches=x[:, skip + 1:], layers=captured)


class Decoder(nn.Module):
    """The shallow decoder D (sec. 3.3.1): bilinear upsampling of the patch tokens, then 3 convolutions.

    Conv 3x3 (d_v -> hidden), ReLU, conv 3x3 (hidden -> hidden), ReLU, conv 1x1 (hidden -> d_t).
    The paper gives three convolution layers and the output dimension; the kernel sizes, the
    ReLUs, hidden = d_t and the upsampling factor ``scale`` (2: a 15x15 grid becomes 30x30) are ours.
    """

    def __init__(self, d_visual: int, d_out: int, hidden: int | None = None, scale: int = 2):
        super().__init__()
        hidden = hidden or d_out
        self.scale = int(scale)
        self.conv1 = nn.Conv2d(d_visual, hidden, 3, padding=1)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, padding=1)
        self.conv3 = nn.Conv2d(hidden, d_out, 1)

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """B x N x d_v -> B x d_out x (scale*h) x (scale*w)."""
        b, n, d = patches.shape
        x = patches.transpose(1, 2).reshape(b, d, grid[0], grid[1])
        if self.scale != 1:
            x = F.interpolate(x, scale_factor=self.scale, mode="bilinear")  # align_corners False (the default)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.conv3(x)
