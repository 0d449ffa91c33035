"""InCTRL's frozen evidence: the multi-layer patch residual map and the text prior.

Official code (mala-lab/InCTRL, ``open_clip/model.py``), in words:

* image pass: ``encode_image(..., out_layers=[7, 9, 11])`` (l.478) keeps the token stream after blocks
  7, 9 and 11 of the 12-block ViT-B-16-plus-240, counted from 1 (``transformer.py`` l.418-433: the
  counter is incremented before the test), raw (no ``ln_post``, no projection), [CLS] dropped
  (l.533-534); the image token is the pooled, projected [CLS] (``transformer.py`` l.795-803), not
  normalised (l.530-531). These are the outputs of the harness's plain pass (``token_spec``:
  ``layer{i}`` and ``embedding``).
* patch residual (l.550-566): per layer, each query patch's smallest ``(1 - cos) / 2`` to every patch
  of every shot of that layer; the map is the mean over the layers (B x N), and its max is the
  patch-level score (l.568-569).
* text prior (l.571-586): the normal / anomalous state phrases of the class name in every template,
  each prompt's feature normalised, averaged per state and normalised again; the score is the
  anomalous entry of ``softmax(100 * cos(image token, [t_n, t_a]))``. The class name is the category
  folder name with ``_`` read as a space (l.574); the CIFAR-10 class names get one prompt per state
  instead (l.138-146).

Block numbers on another depth: the official 7/9/11 of 12 are scaled by ``n_layers / 12`` (rounded half
up), so the 12-block tiny test model keeps them as they are.
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F

from fsadbench.methods.common.visual_memory import VisualMemory
from fsadbench.methods.winclip.model import ANOMALOUS_STATES, NORMAL_STATES
from fsadbench.methods.winclip.model import TEMPLATES as WINCLIP_TEMPLATES

OFFICIAL_BLOCKS = 12
OFFICIAL_LAYERS = (7, 9, 11)  # model.py l.478
TEXT_SCALE = 100.0  # model.py l.585
#: model.py l.112-134: WinCLIP's 21 templates plus this one (their order does not matter: a mean)
TEMPLATES = WINCLIP_TEMPLATES + ("a cropped photo of a {}.",)
#: model.py l.138-139: class names that get the one-prompt pair of the semantic (CIFAR-10) setting
SEMANTIC_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
                    "animal")


def scaled(blocks: Sequence[int], n_layers: int) -> tuple[int, ...]:
    """Official block numbers of the 12-block tower scaled to ``n_layers`` blocks (rounded half up, >= 1)."""
    return tuple(max(1, int(b * n_layers / OFFICIAL_BLOCKS + 0.5)) for b in blocks)


def class_words(category: str) -> str:
    """The class name the prompts use: the category name with ``_`` as a space (model.py l.574)."""
    return category.replace("_", " ")


def prompt_texts(name: str) -> tuple[list[str], list[str]]:
    """(normal prompts, anomalous prompts) of a class name (model.py l.136-154)."""
    if name in SEMANTIC_CLASSES:
        return [f"a photo of {name} for anomaly detection."], [f"a photo without {name} for anomaly detection."]
    return ([t.format(s.format(name)) for s in NORMAL_STATES for t in TEMPLATES],
            [t.format(s.format(name)) for s in ANOMALOUS_STATES for t in TEMPLATES])


def state_features(encode: Callable[[list[str]], torch.Tensor], name: str) -> torch.Tensor:
    """2 x E: [t_n, t_a], each the normalised mean of its prompts' normalised features (l.577-584)."""
    rows = []
    for prompts in prompt_texts(name):
        f = F.normalize(encode(prompts).float(), dim=-1)
        rows.append(F.normalize(f.mean(dim=0), dim=-1))
    return torch.stack(rows)


def text_prior(embedding: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    """B: the anomalous probability of each image token against ``states`` ([t_n, t_a], l.585-586)."""
    e = F.normalize(embedding.float(), dim=-1)
    return (TEXT_SCALE * e @ states.to(e.device).T).softmax(dim=-1)[:, 1]


def patch_residual(query: Mapping[int, torch.Tensor], shots: Mapping[int, torch.Tensor],
                   layers: Sequence[int]) -> torch.Tensor:
    """B x N: mean over ``layers`` of each query patch's min ``(1 - cos) / 2`` to the shots' patches.

    ``query[l]``: B x N x D tokens of block l; ``shots[l]``: K x N x D, every patch of every shot.
    """
    memory = VisualMemory(layers)
    memory.fit({l: shots[l].float() for l in layers})
    return memory.score({l: query[l].float() for l in layers})


def residual_of_each(query: Mapping[int, torch.Tensor], shots: Mapping[int, torch.Tensor],
                     layers: Sequence[int]) -> torch.Tensor:
    """B x N for queries that each have their own prompts (training): ``shots[l]`` is B x K x N x D."""
    return torch.cat([patch_residual({l: query[l][i:i + 1] for l in layers}, {l: shots[l][i] for l in layers},
                                     layers) for i in range(query[layers[0]].shape[0])])
