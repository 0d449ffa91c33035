"""Feature cache for the frozen image encoder, shared across methods, shots and seeds.

An entry is the encoder output for ONE image under ONE feature spec, keyed by

    sha1(image content digest, backbone model + weights fingerprint + resolution
         + open_clip release, spec name + spec version + spec params)

so the same image file under another path hits the same entry, and a change of
weights, resolution, layers, encoder variant or encoder code (its version in
``SPEC_VERSIONS``) misses. Entries live in memory
(bounded LRU) and on disk (one ``.pt`` file per entry, written atomically:
temp file + ``os.replace``; safe under concurrent writers, which write the same
bytes). Loads use ``torch.load(..., weights_only=True)``; an entry that fails
to load is recomputed and replaced atomically. A cache folder that cannot be
written (read-only, full disk) degrades to memory with one warning.

Counters tell how many images went through the encoder (``encoded``), how
many were served from memory or disk and how many files were decoded
(``decoded``); the runner puts them in every record.

Keeping the encoder fed: the images an encoder pass needs are decoded and
resized by ``loader_workers`` threads (PIL and torch release the GIL) while
earlier batches are encoded; each decoded tensor is kept in a memory LRU
(``pixel_bytes``) so an image is decoded once per process. Batches go to the GPU
from pinned memory. With ``amp`` on a CUDA device the encoder runs under bf16
autocast and the entry key says so (``|amp-bf16``), so fp32 and bf16 entries
never mix; on CPU ``amp`` changes nothing and keys stay as they were.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import torch

from fsadbench.core.errors import ConfigError
from fsadbench.core.io import atomic_write_bytes, read_mask_resized
from fsadbench.core.types import ImageRef

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.backbone.clip import Backbone

log = logging.getLogger("fsadbench")

ComputeFn = Callable[["Backbone", torch.Tensor], Mapping[str, torch.Tensor]]

#: The version of every encoder path a method's numbers depend on: the cached
#: feature specs (``tokens``: the plain pass; ``vv``: the V-V / LAT dual path;
#: ``winclip-windows``: WinCLIP's window pass; ``layers``: a timm / torchvision
#: backbone's maps or tokens by layer name; ``anomalyclip-dpam``: AnomalyCLIP's
#: DPAM pass) and the passes with learned prompts, never cached (``prompt-text``:
#: PromptAD's and APT's learnable-context text encoder; ``anople-prompted``:
#: AnoPLe's deep-prompt passes; ``anomalyclip-text``: AnomalyCLIP's deep text
#: tokens). Bump a version whenever the path's code changes what it computes: it
#: is part of the feature cache key and (``spec_versions``) of the cell hash.
#: tests/unit/test_encoder_versions.py fails when a path's code changed and its
#: version did not. Plugins add theirs with :func:`register_spec_version`.
SPEC_VERSIONS: dict[str, int] = {
    "tokens": 1,
    "vv": 1,
    "winclip-windows": 1,
    "prompt-text": 1,
    "anople-prompted": 2,
    "layers": 1,
    "anomalyclip-dpam": 1,
    "anomalyclip-text": 2,
}


def register_spec_version(name: str, version: int) -> None:
    """Declare a plugin's encoder path; the same name may only be registered with one version."""
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ConfigError(f"encoder path {name!r}: version must be an int >= 1, got {version!r}")
    if SPEC_VERSIONS.get(name, version) != version:
        raise ConfigError(f"encoder path {name!r} is registered as version {SPEC_VERSIONS[name]}, not {version}")
    SPEC_VERSIONS[name] = version


def spec_versions(names: Iterable[str]) -> dict[str, int]:
    """``{name: version}`` of the encoder paths a method declares (``Method.feature_specs``), for the cell hash."""
    missing = sorted(set(names) - set(SPEC_VERSIONS))
    if missing:
        raise ConfigError(f"encoder path(s) {missing} have no version: known are {sorted(SPEC_VERSIONS)}; "
                          f"add them to SPEC_VERSIONS (built-in) or call register_spec_version (plugins)")
    return {n: SPEC_VERSIONS[n] for n in sorted(set(names))}


@dataclass(frozen=True)
class FeatureSpec:
    """What to compute from a batch of preprocessed pixels.

    ``name`` + ``params`` identify the encoder variant (e.g. plain tokens of
    blocks 3 and 8, or V-V attention on all blocks); ``compute(backbone, pixels)``
    returns a dict of B x ... tensors; ``version`` is the version of the code
    path (``SPEC_VERSIONS[name]``), part of :attr:`key`.
    """

    name: str
    params: tuple[tuple[str, Any], ...]
    compute: ComputeFn = field(compare=False, hash=False, repr=False)
    version: int = field(kw_only=True)

    def __post_init__(self) -> None:
        known = SPEC_VERSIONS.get(self.name)
        if known is None:
            raise ConfigError(f"feature spec {self.name!r} has no registered version; "
                              f"call fsadbench.backbone.features.register_spec_version first")
        if self.version != known:
            raise ConfigError(f"feature spec {self.name!r} says version {self.version!r} but SPEC_VERSIONS "
                              f"says {known}: bump both together")

    @classmethod
    def make(cls, name: str, compute: ComputeFn, version: int | None = None, **params: Any) -> "FeatureSpec":
        """A spec with sorted ``params``; ``version`` defaults to the registered one."""
        return cls(name, tuple(sorted(params.items())), compute,
                   version=SPEC_VERSIONS.get(name, 0) if version is None else version)

    @property
    def key(self) -> str:
        return f"{self.name}@v{self.version}:{json.dumps(dict(self.params), sort_keys=True, default=str)}"


def token_spec(layers: Sequence[int] = ()) -> FeatureSpec:
    """The plain encoder pass: embedding, projected patch tokens, block outputs."""
    layers = tuple(sorted(int(i) for i in layers))
    return FeatureSpec.make("tokens", lambda bb, px: bb.encode_image_tokens(px, layers), layers=layers)


def layer_spec(layers: Sequence[str]) -> FeatureSpec:
    """A timm / torchvision backbone's outputs by layer name (``layer2``, ``block12``): ``encode``."""
    layers = tuple(sorted(str(n) for n in layers))
    return FeatureSpec.make("layers", lambda bb, px: bb.encode(px, layers), layers=layers)


@dataclass
class CacheStats:
    encoded: int = 0  # images that went through the encoder
    memory_hits: int = 0
    disk_hits: int = 0
    batches: int = 0
    decoded: int = 0  # image files decoded and resized

    def as_dict(self) -> dict[str, int]:
        return dict(encoded=self.encoded, memory_hits=self.memory_hits, disk_hits=self.disk_hits,
                    batches=self.batches, decoded=self.decoded)


class FeatureStore:
    """Get encoder outputs for images, computing only what no cache holds."""

    def __init__(self, backbone: "Backbone", cache_dir: str | Path | None = None,
                 memory_bytes: int = 2 << 30, batch_size: int = 32, store_dtype: torch.dtype = torch.float32,
                 amp: bool = False, loader_workers: int | None = None, pixel_bytes: int = 1 << 30):
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
        self._pixels_used = 0
        self.pixel_bytes = pixel_bytes
        self.loader_workers = max(1, loader_workers if loader_workers is not None else min(4, os.cpu_count() or 1))
        self._pool: ThreadPoolExecutor | None = None
        self._corrupt: set[str] = set()  # entries found damaged on disk: rewritten on the next put
        self.disk_writable = True  # False after a failed write (read-only folder, full disk): memory only

    @property
    def precision(self) -> str:
        """What the encoder computes in: ``bf16-autocast`` (amp on a CUDA device) or ``fp32``."""
        return "bf16-autocast" if self.amp and self.backbone.device.type == "cuda" else "fp32"

    # -- keys -------------------------------------------------------------------
    def entry_key(self, ref: ImageRef, spec: FeatureSpec) -> str:
        amp = "|amp-bf16" if self.precision == "bf16-autocast" else ""
        h = hashlib.sha1(f"{ref.digest}|{self.backbone.key}|{spec.key}{amp}".encode())
        return h.hexdigest()

    def _path(self, key: str) -> Path:
        assert self.dir is not None
        return self.dir / key[:2] / f"{key}.pt"

    # -- pixels -------------------------------------------------------------------
    def pixels(self, refs: Sequence[ImageRef], size: int | None = None) -> torch.Tensor:
        """Preprocessed pixels (B x 3 x size x size, CPU; size defaults to the encoder's S), decoded
        once per image and size and kept in memory. Another size goes through the same transform
        (squash resize, the backbone's interpolation, mean and std): e.g. AnoPLe's crops of the
        original file at 2S."""
        size = self.backbone.image_size if size is None else int(size)
        return torch.stack(list(self._iter_pixels(refs, size)))

    def masks(self, refs: Sequence[ImageRef | None], size: int | None = None) -> torch.Tensor:
        """Ground-truth masks as B x size x size float 0/1 (CPU; size defaults to the encoder's S):
        the mask read as anomalous wherever non-zero, resized bilinearly as an 8-bit 0/255 image and
        thresholded at half (AnomalyCLIP's targets); ``None`` is an all-normal mask."""
        size = self.backbone.image_size if size is None else int(size)
        out = torch.zeros(len(refs), size, size)
        for i, ref in enumerate(refs):
            if ref is None:
                continue
            key = f"mask:{ref.digest}@{size}"
            t = self._pixels.get(key)
            if t is None:
                t = torch.from_numpy(read_mask_resized(ref.path, size))
                self.stats.decoded += 1
                self._pixel_put(key, t)
            out[i] = t
        return out

    def _decode(self, ref: ImageRef, size: int) -> torch.Tensor:
        return self.backbone.load_pixels([ref.path], size)[0]

    def _pixel_key(self, ref: ImageRef, size: int) -> str:
        return ref.digest if size == self.backbone.image_size else f"{ref.digest}@{size}"

    def _iter_pixels(self, refs: Sequence[ImageRef], size: int):
        """Pixels of ``refs`` in order; the ones not in memory are decoded by the loader threads,
        all submitted at once so decoding runs ahead of the consumer."""
        keys = [self._pixel_key(r, size) for r in refs]
        todo = {k: r for k, r in zip(keys, refs) if k not in self._pixels}
        futures = {}
        if len(todo) > 1 and self.loader_workers > 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.loader_workers, thread_name_prefix="fsadbench-loader")
            futures = {k: self._pool.submit(self._decode, r, size) for k, r in todo.items()}
        for key, r in zip(keys, refs):
            t = self._pixels.get(key)
            if t is not None:
                self._pixels.move_to_end(key)
            else:
                f = futures.pop(key, None)
                t = f.result() if f is not None else self._decode(r, size)
                self.stats.decoded += 1
                self._pixel_put(key, t)
            yield t

    def _pixel_put(self, digest: str, t: torch.Tensor) -> None:
        self._pixels[digest] = t
        self._pixels_used += t.numel() * t.element_size()
        while self._pixels_used > self.pixel_bytes and len(self._pixels) > 1:
            _, old = self._pixels.popitem(last=False)
            self._pixels_used -= old.numel() * old.element_size()

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
        # decoding runs ahead of encoding
        pixel_iter = self._iter_pixels([refs[i] for i in missing], self.backbone.image_size)
        cuda = self.backbone.device.type == "cuda"
        for start in range(0, len(missing), self.batch_size):
            idx = missing[start:start + self.batch_size]
            px = torch.stack([next(pixel_iter) for _ in idx])
            if cuda:
                px = px.pin_memory()
            with torch.no_grad(), self._autocast():
                out = spec.compute(self.backbone, px.to(self.backbone.device, non_blocking=cuda))
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
        except Exception:  # noqa: BLE001 - a damaged entry is recomputed, never trusted, and replaced
            self._corrupt.add(key)
            return None

    def _disk_put(self, key: str, e: dict[str, torch.Tensor]) -> None:
        """Write an entry (atomically; a corrupt one is replaced); an unwritable cache degrades to memory."""
        if self.dir is None or not self.disk_writable:
            return
        p = self._path(key)
        if p.is_file() and key not in self._corrupt:
            return
        buf = io.BytesIO()
        torch.save(e, buf)
        try:
            atomic_write_bytes(p, buf.getvalue(), fsync=False)  # a torn entry is only recomputed
        except OSError as exc:
            self.disk_writable = False
            log.warning("warning: feature cache not written, features stay in memory for this process: %s", exc)
        self._corrupt.discard(key)

