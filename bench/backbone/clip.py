"""The frozen CLIP backbone, loaded through open_clip.

Three sources of weights, all recorded in ``Backbone.describe()``:

* a pretrained tag (``ViT-B-16-plus-240`` / ``laion400m_e32``, the paper
  protocol): its one file (:mod:`fsadbench.backbone.checkpoints`), found in the
  standard caches or the harness's, or downloaded, and the architecture options
  its config carries (QuickGELU, mean / std / interpolation; :func:`build_clip`);
* a local checkpoint file (``--pretrained /path/to/ckpt.pt``), loaded with
  ``torch.load(..., weights_only=True)`` (or safetensors);
* ``none``: random initialisation, said in every output.

The shipped tiny config ``fsad-tiny-vit`` (120 px, patch 8 -> 15x15 grid,
width 64, 12 blocks) is for tests and the offline smoke run.

Block numbers are 1-indexed everywhere: ``layers=(3, 8)`` means the outputs of
the 3rd and 8th residual blocks. Every tower pass (the plain one here included)
runs through :mod:`fsadbench.backbone.towers`, the one module that reads
open_clip's tower attributes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from fsadbench.backbone.towers import ImageTower
from fsadbench.backbone.vision import describe_backbone
from fsadbench.backbone.checkpoints import fetch_checkpoint, identity, open_clip_source
from fsadbench.backbone.spec import BackboneSpec, is_random, looks_like_file
from fsadbench.backbone.weights import (load_clip_state, quiet_random_init, read_state_dict, state_fingerprint,
                                        tag_quick_gelu, weights_help)
from fsadbench.core.errors import ConfigError, WeightsError
from fsadbench.core.io import read_rgb as load_image  # every mode to 8-bit RGB; errors name the file

from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, RANDOM, TINY_MODEL  # noqa: F401

_CONFIG_DIR = Path(__file__).parent / "model_configs"
_registered = False


def register_model_configs() -> None:
    """Make the shipped configs (the tiny model) known to open_clip."""
    global _registered
    if not _registered:
        import open_clip

        open_clip.add_model_config(_CONFIG_DIR)
        _registered = True


def tag_options(model_name: str, pretrained: str) -> dict[str, Any]:
    """What open_clip tag ``pretrained`` was trained as (its pretrained config): ``quick_gelu``
    (:func:`~fsadbench.backbone.weights.tag_quick_gelu`) and the preprocessing ``mean`` / ``std`` /
    ``interpolation`` it carries; {} for no tag."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained) or {}
    out: dict[str, Any] = {k: cfg[k] for k in ("mean", "std", "interpolation") if cfg.get(k)}
    if cfg:
        out["quick_gelu"] = tag_quick_gelu(model_name, pretrained)
    return out


@dataclass
class BuiltCLIP:
    model: Any
    weights_source: str
    checkpoint: dict[str, Any] | None  # checkpoints.identity(); None for random weights
    preprocess: dict[str, Any]  # the tag's mean / std / interpolation ({} otherwise)


def build_clip(spec: BackboneSpec, cache_dir: str | None = None, option: str | None = None,
               device: str = "cpu") -> BuiltCLIP:
    """The open_clip model ``spec`` names, built as its weights were trained and filled with them.

    Every source builds the architecture with ``pretrained=None`` (``@size`` as ``force_image_size``, the tag's
    QuickGELU as ``force_quick_gelu``) and loads the one file itself (:func:`load_clip_state`, position
    embeddings resized like open_clip's loader), so the same options hold on every open_clip release
    (2.26-2.28 ignored ``force_image_size`` on their ``openai`` path; 2.29+ builds GELU for ``openai`` tags).
    ``option``: the flags that set this backbone's weights (``{file}`` where the path goes), for the remedies
    (:func:`~fsadbench.backbone.weights.file_remedy`). ``device="meta"`` (inside ``torch.device("meta")``)
    builds without memory, for tests.
    """
    import open_clip

    register_model_configs()
    name, pretrained = spec.model, spec.pretrained
    if name not in open_clip.list_models():
        raise ConfigError(
            f"backbone.model: unknown open_clip model {name!r}; e.g. {DEFAULT_MODEL} or {TINY_MODEL} "
            f"(open_clip.list_models() lists all)")
    size = {"force_image_size": spec.image_size} if spec.image_size else {}  # e.g. ViT-L-14-336 at 518
    if is_random(pretrained):
        torch.manual_seed(spec.init_seed)
        with quiet_random_init():  # the harness says RANDOM itself, in the log and every table
            model = open_clip.create_model(name, pretrained=None, device=device, **size)
        return BuiltCLIP(model, f"random init (seed {spec.init_seed})", None, {})
    path, source, opts = Path(pretrained).expanduser(), None, {}
    if path.is_file():
        found: Any = path
        weights_source = f"file {path}"
    elif looks_like_file(pretrained):
        raise WeightsError(weights_help(name, pretrained, f"checkpoint file {pretrained} does not exist",
                                        cache_dir, option))
    else:
        tags = open_clip.list_pretrained_tags_by_model(name)
        source = open_clip_source(name, pretrained) if pretrained in tags else None
        if source is None:
            raise WeightsError(weights_help(
                name, pretrained, f"unknown pretrained tag; open_clip knows {tags or 'none'} for this model",
                cache_dir, option))
        found = fetch_checkpoint(source, cache_dir,
                                 lambda why: weights_help(name, pretrained, why, cache_dir, option))
        path, opts = found.path, tag_options(name, pretrained)
        weights_source = f"open_clip tag {pretrained} ({found.path}, {found.cache})"
    arch = {"force_quick_gelu": True} if opts.pop("quick_gelu", False) else {}
    with quiet_random_init():  # the file's weights follow
        model = open_clip.create_model(name, pretrained=None, device=device, **size, **arch)
    load_clip_state(model, read_state_dict(path), path, name, option)
    return BuiltCLIP(model, weights_source, identity(source, found), opts)


class Backbone:
    """An open_clip CLIP model in eval mode, with token access for the methods."""

    family = "open_clip"

    def __init__(self, spec: BackboneSpec, device: str | torch.device = "cpu", cache_dir: str | None = None,
                 option: str | None = None):
        import open_clip

        self.spec = spec
        self.device = torch.device(device)
        built = build_clip(spec, cache_dir, option)
        model, self.weights_source, self.checkpoint = built.model, built.weights_source, built.checkpoint
        self.is_random = spec.is_random
        model.eval().requires_grad_(False)
        self.model = model.to(self.device)
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        self.open_clip_version = str(getattr(open_clip, "__version__", "unknown"))
        try:
            self.image_tower = ImageTower(model.visual)
        except ConfigError as exc:
            raise ConfigError(f"backbone.model {spec.model!r}: {exc}") from exc
        t = self.image_tower
        self.image_size, self.patch_size, self.grid = t.image_size, t.patch_size, t.grid
        self.width, self.embed_dim, self.n_layers = t.width, t.embed_dim, t.n_layers
        pp = {**t.preprocess_cfg, **built.preprocess}
        self.mean = tuple(pp.get("mean", open_clip.OPENAI_DATASET_MEAN))
        self.std = tuple(pp.get("std", open_clip.OPENAI_DATASET_STD))
        self.interpolation = pp.get("interpolation", "bicubic")
        self.activation = activation_name(model)
        self.fingerprint = state_fingerprint(model)
        self._transforms = {self.image_size: self._make_transform(self.image_size)}

    # -- description -------------------------------------------------------
    @property
    def key(self) -> str:
        """Identity of the encoder for caches: family, model, weights hash, resolution, open_clip release."""
        return f"open_clip|{self.spec.model}|{self.fingerprint}|{self.image_size}|open_clip-{self.open_clip_version}"

    def describe(self) -> dict[str, Any]:
        return describe_backbone(self)

    # -- images --------------------------------------------------------------
    def _make_transform(self, size: int):
        import open_clip

        return open_clip.image_transform(size, is_train=False, mean=self.mean, std=self.std,
                                         resize_mode="squash", interpolation=self.interpolation)

    def preprocess(self, image, size: int | None = None) -> torch.Tensor:
        """A PIL image -> normalised 3 x size x size tensor (open_clip's transform, squash resize;
        ``size`` defaults to the encoder's S; another size, e.g. AnoPLe's 2S crops source, uses the
        same interpolation, mean and std)."""
        size = self.image_size if size is None else int(size)
        if size not in self._transforms:
            if size < 1:
                raise ConfigError(f"image size must be >= 1 pixel, got {size}")
            self._transforms[size] = self._make_transform(size)
        return self._transforms[size](image)

    def load_pixels(self, paths: Sequence[Path], size: int | None = None) -> torch.Tensor:
        """Decode and preprocess image files into a B x 3 x size x size tensor (on CPU; size: S)."""
        return torch.stack([self.preprocess(load_image(p), size) for p in paths])

    # -- image encoder -------------------------------------------------------
    def check_layers(self, layers: Sequence[int]) -> tuple[int, ...]:
        """1-indexed block numbers, range-checked against this encoder."""
        layers = tuple(int(i) for i in layers)
        bad = [i for i in layers if not 1 <= i <= self.n_layers]
        if bad:
            raise ConfigError(f"layers {bad} out of range: {self.spec.model} has blocks 1..{self.n_layers}")
        return layers

    def encode_image_tokens(self, pixels: torch.Tensor, layers: Sequence[int] = ()) -> dict[str, torch.Tensor]:
        """The plain encoder pass (:meth:`ImageTower.encode_tokens`): ``embedding`` (B x E),
        ``tokens`` (B x N x E, after ln_post @ proj), ``layer{i}`` (B x N x W, block i's patch outputs)."""
        return self.image_tower.encode_tokens(pixels.to(self.device), self.check_layers(layers))

    # -- text encoder ----------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, prompts: Sequence[str], normalize: bool = False) -> torch.Tensor:
        tokens = self.tokenizer(list(prompts)).to(self.device)
        return self.model.encode_text(tokens, normalize=normalize)


def activation_name(model: Any) -> str:
    """``QuickGELU`` / ``GELU`` / ...: the MLP activation of the image tower's first block."""
    blocks = getattr(getattr(getattr(model, "visual", None), "transformer", None), "resblocks", None)
    act = getattr(getattr(blocks[0], "mlp", None), "gelu", None) if blocks else None
    return type(act).__name__ if act is not None else "unknown"


def patch_map(values: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """B x N patch scores -> B x h x w map."""
    return values.reshape(values.shape[0], grid[0], grid[1])


def resolve_device(name: str | None) -> torch.device:
    """'auto' -> cuda when available, else cpu."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: CUDA is not available on this machine; use --device cpu or auto")
    return dev


os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
