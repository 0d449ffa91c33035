"""CLIP text encoder with learnable context tokens (CoOp-style prompt learning).

A prompt is a list of segments: text (real words, embedded with the frozen
token embedding) and :class:`Slot` s (n learnable vectors of the text width).
The token sequence is ``[SOS] seg_1 ... seg_m [EOT] pad...``; each text segment
is BPE-encoded on its own, which equals encoding the joined sentence because
CLIP's BPE never crosses whitespace. The forward pass is the text tower's
(:class:`fsadbench.backbone.towers.TextTower`, = open_clip's ``encode_text``)
with the slot rows of the token embeddings replaced:

    x = E[ids] (slots replaced) + pos;  x = transformer(x, causal mask)
    f = ln_final(x)[eot] @ text_projection,   eot = argmax(ids) (as CLIP)

PromptAD: ``[SOS] Slot("ctx", 4) "bottle." [EOS]``; APT:
``[SOS] Slot("g", ng) "bottle" Slot("n", nn) "." [EOS]``.

Slot positions carry the id of the word "X" (as in CoOp); any id
below the EOT id works since the rows are replaced. Because the text mask is
causal, tokens after the EOT never reach it: the batch is cut at the longest
prompt's EOT + 1 (same result, less compute).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from fsadbench.backbone.towers import TextTower
from fsadbench.core.errors import ConfigError


@dataclass(frozen=True)
class Slot:
    """``n`` learnable token vectors named ``name`` inside a prompt."""

    name: str
    n: int = 1


@dataclass
class PromptTemplate:
    """Token ids of one prompt and where its learnable slots sit."""

    ids: torch.Tensor  # (context_length,) int64
    slots: dict[str, torch.Tensor]  # slot name -> positions (n,)
    eot: int  # position of the EOT token (= argmax of ids)
    text: str  # human-readable form, "*" per learnable token


def build_template(tokenizer: Any, segments: Sequence[str | Slot], context_length: int | None = None
                   ) -> PromptTemplate:
    """Lay out ``[SOS] segments [EOT]`` with an open_clip ``SimpleTokenizer``."""
    for attr in ("encode", "sot_token_id", "eot_token_id"):
        if not hasattr(tokenizer, attr):
            raise ConfigError(f"learnable text prompts need open_clip's SimpleTokenizer (CLIP BPE); "
                              f"{type(tokenizer).__name__} has no {attr!r}")
    context_length = int(context_length or getattr(tokenizer, "context_length", 77))
    slot_id = tokenizer.encode("X")[0]  # overwritten by the slot values in embed()
    ids = [tokenizer.sot_token_id]
    slots: dict[str, torch.Tensor] = {}
    words: list[str] = []
    for seg in segments:
        if isinstance(seg, Slot):
            if seg.n < 1 or seg.name in slots:
                raise ConfigError(f"prompt slot {seg.name!r}: needs n >= 1 and a name used once per prompt")
            slots[seg.name] = torch.arange(len(ids), len(ids) + seg.n)
            ids += [slot_id] * seg.n
            words.append(" ".join(["*"] * seg.n))
        else:
            ids += tokenizer.encode(seg)
            words.append(seg)
    ids.append(tokenizer.eot_token_id)
    if len(ids) > context_length:
        raise ConfigError(f"prompt {' '.join(words)!r} has {len(ids)} tokens; the text encoder takes "
                          f"{context_length}: shorten the class name, states or context")
    eot = len(ids) - 1
    full = torch.zeros(context_length, dtype=torch.long)
    full[:len(ids)] = torch.tensor(ids)
    return PromptTemplate(ids=full, slots=slots, eot=eot, text=" ".join(words))


class PromptTextEncoder:
    """Frozen open_clip text tower run on token embeddings with learnable slots."""

    def __init__(self, model: nn.Module, tokenizer: Any):
        try:
            self.text = TextTower(model)
        except ConfigError as exc:
            raise ConfigError(f"learnable prompts: {exc}") from exc
        self.tokenizer = tokenizer
        self.width = self.text.width
        self.context_length = self.text.context_length

    def template(self, segments: Sequence[str | Slot]) -> PromptTemplate:
        return build_template(self.tokenizer, segments, self.context_length)

    def word_embeddings(self, text: str) -> torch.Tensor:
        """Frozen token embeddings of ``text`` (no SOS/EOT): n x width."""
        return self.text.token_embeddings(torch.tensor(self.tokenizer.encode(text))).detach()

    def embed(self, template: PromptTemplate, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Token embeddings (context_length x width) with each slot's rows set to ``values[name]`` (n x width)."""
        x = self.text.token_embeddings(template.ids)
        missing = set(template.slots) - set(values)
        if missing:
            raise ConfigError(f"prompt {template.text!r}: no values for slot(s) {sorted(missing)}")
        for name, pos in template.slots.items():
            v = values[name]
            if v.shape != (len(pos), self.width):
                raise ConfigError(f"prompt slot {name!r} takes {len(pos)} x {self.width} values, got {tuple(v.shape)}")
            x = x.index_put((pos.to(x.device),), v.to(x.dtype))
        return x

    def encode(self, prompts: Sequence[tuple[PromptTemplate, Mapping[str, torch.Tensor]]],
               normalize: bool = False) -> torch.Tensor:
        """Text features (P x E) of (template, slot values) pairs; differentiable in the values."""
        if not prompts:
            raise ConfigError("encode() needs at least one prompt")
        x = torch.stack([self.embed(tpl, vals) for tpl, vals in prompts])
        eot = torch.tensor([tpl.eot for tpl, _ in prompts], device=x.device)
        return self.text.encode(x, eot, normalize=normalize)
