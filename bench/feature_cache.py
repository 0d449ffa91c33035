"""Feature cache for the frozen image encoder, shared across methods, shots and seeds.

An entry is the encoder output for ONE image under ONE feature spec, keyed by

    sha1(image content digest, backbone model + weights fingerprint + resolution,
         spec name + spec params)

so the same image file under another path hits the same entry, and a change of
weights, resolution, layers or encoder variant misses. Entries live in memory
(bounded LRU) and on disk (one ``.pt`` file per entry, written atomically:
temp file + ``os.replace``; safe under concurrent writers, which write the same
bytes). Loads use ``torch.load(..., weights_only=True)``.

Counters tell how many images went through the encoder (``encoded``) and how
many were served from memory or disk; the runner puts them in every record.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import torch

from .types import ImageRef

if TYPE_CHECKING:  # pragma: no cover
    from .backbone import Backbone

ComputeFn = Callable[["Backbone", torch.Tensor], Mapping[str, torch.Tensor]]


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute from a batch of preprocessed pixels.

    ``name`` + ``params`` identify the encoder variant (e.g. plain tokens of
    blocks 3 and 8, or V-V attention on all blocks); ``fn(backbone, pixels)``
    returns a dict of B x ... tensors.
    """

    name: str
    params: tuple[tuple[str, Any], ...]
    fn: ComputeFn = field(compare=False, hash=False, repr=False)

    @classmethod
    def make(cls, name: str, fn: ComputeFn, **params: Any) -> "FeatureSpec":
        return cls(name, tuple(sorted(params.items())), fn)

    @property
    def key(self) -> str:
        return f"{self.name}:{json.dumps(dict(self.params), sort_keys=True, default=str)}"


def token_spec(layers: Sequence[int] = ()) -> FeatureSpec:
    """The plain encoder pass: embedding, projected patch tokens, block outputs."""
    layers = tuple(sorted(int(i) for i in layers))
    return FeatureSpec.make("tokens", lambda bb, px: bb.encode_image_tokens(px, layers), layers=layers)


@dataclass
class CacheStats:
    encoded: int = 0  # images that went through the encoder
    memory_hits: int = 0
    disk_hits: int = 0
    batches: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(encoded=self.encoded, memory_hits=self.memory_hits, disk_hits=self.disk_hits,
                    batches=self.batches)


class FeatureStore:
    """Get encoder outputs for images, computing only what no cache holds."""

    def __init__(self, backbone: "Backbone", cache_dir: str | Path | None = None,
                 memory_bytes: int = 2 << 30, batch_size: int = 32, store_dtype: torch.dtype = torch.float32,
                 amp: bool = False):
        self.backbone = backbone
        self.dir = Path(cache_dir) / "features" if cache_dir else None
        self.memory_bytes = memory_bytes
        self.batch_size = batch_size
        self.store_dtype = store_dtype
        self.amp = amp
        self.stats = CacheStats()
        self._mem: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self._mem_used = 0
        self._pixels: OrderedDict[str, torch.Tensor] = OrderedDict()

    # -- keys -------------------------------------------------------------------
    def entry_key(self, ref: ImageRef, spec: FeatureSpec) -> str:
        h = hashlib.sha1(f"{ref.digest}|{self.backbone.key}|{spec.key}".encode())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.pt"

    # -- pixels -------------------------------------------------------------------
    def pixels(self, refs: Sequence[ImageRef]) -> torch.Tensor:
        """Preprocessed pixels (B x 3 x S x S, CPU), decoded once per image and kept in memory."""
        out = []
        for r in refs:
            t = self._pixels.get(r.digest)
            if t is None:
                t = self.backbone.load_pixels([r.path])[0]
                self._pixels[r.digest] = t
                if len(self._pixels) > 4096:
                    self._pixels.popitem(last=False)
            out.append(t)
        return torch.stack(out)

    # -- main entry ----------------------------------------------------------------
    def get(self, refs: Sequence[ImageRef], spec: FeatureSpec) -> dict[str, torch.Tensor]:
        """Stacked features for ``refs`` (on the backbone's device), in order."""
        keys = [self.entry_key(r, spec) for r in refs]
        found: dict[int, dict[str, torch.Tensor]] = {}
        missing: list[int] = []
        for i, k in enumerate(keys):
            e = self._mem_get(k)
            if e is not None:
                self.stats.memory_hits += 1
                found[i] = e
                continue
            e = self._disk_get(k)
            if e is not None:
                self.stats.disk_hits += 1
                self._mem_put(k, e)
                found[i] = e
                continue
            missing.append(i)
        for start in range(0, len(missing), self.batch_size):
            idx = missing[start:start + self.batch_size]
            px = self.pixels([refs[i] for i in idx])
            with torch.no_grad(), self._autocast():
                out = spec.fn(self.backbone, px.to(self.backbone.device))
            self.stats.encoded += len(idx)
            self.stats.batches += 1
            for j, i in enumerate(idx):
                e = {name: t[j].detach().to("cpu", self.store_dtype).contiguous().clone() for name, t in out.items()}
                self._disk_put(keys[i], e)
                self._mem_put(keys[i], e)
                found[i] = e
        if not refs:
            return {}
        names = found[0].keys()
        dev = self.backbone.device
        return {n: torch.stack([found[i][n] for i in range(len(refs))]).to(dev) for n in names}

    # -- layers -------------------------------------------------------------------------
    def _autocast(self):
        dev = self.backbone.device
        if self.amp and dev.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return torch.autocast("cpu", enabled=False)

    def _mem_get(self, key: str):
        e = self._mem.get(key)
        if e is not None:
            self._mem.move_to_end(key)
        return e

    def _mem_put(self, key: str, e: dict[str, torch.Tensor]) -> None:
        if key in self._mem:
            return
        size = sum(t.numel() * t.element_size() for t in e.values())
        self._mem[key] = e
        self._mem_used += size
        while self._mem_used > self.memory_bytes and len(self._mem) > 1:
            _, old = self._mem.popitem(last=False)
            self._mem_used -= sum(t.numel() * t.element_size() for t in old.values())

    def _disk_get(self, key: str):
        if self.dir is None:
            return None
        p = self._path(key)
        if not p.is_file():
            return None
        try:
            return torch.load(p, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed, never trusted
            return None

    def _disk_put(self, key: str, e: dict[str, torch.Tensor]) -> None:
        if self.dir is None:
            return
        p = self._path(key)
        if p.is_file():
            return
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".pt")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(e, f)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
