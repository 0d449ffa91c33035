"""The common part of the non-CLIP adapters (timm, torchvision): preprocessing, identity, weights.

Every family adapter offers one interface to the feature store and the methods:

* ``encode(pixels, layers)`` -> ``{layer name: tensor}``: feature maps ``B x C x h x w`` (CNN layers,
  ``layer2``, ``stage3``) or patch tokens ``B x L x D`` (ViT blocks, ``block12``, prefix tokens dropped);
* ``layer_names`` (what ``encode`` accepts), ``check_layers`` (range check with the known names),
  ``grid`` (the token grid of a ViT; ``None`` for a CNN, whose maps carry their own size);
* ``preprocess`` / ``load_pixels``: squash resize to ``image_size`` (no crop, so maps align with the
  masks), the family's interpolation, ImageNet mean and std;
* ``key`` (family, model, weights fingerprint, resolution, library release: the feature-cache identity),
  ``describe()`` (the record's ``backbone`` section), ``is_random``, ``fingerprint``.

Weights: ``none`` (random, seeded by ``init_seed``), a local checkpoint file (``torch.load(weights_only=True)``
or safetensors), or the family's tag, found in its library's cache or downloaded when the host is
reachable; offline, a WeightsError names the file, its URL and where to put it (:func:`weights_remedy`).
"""

from __future__ import annotations

import abc
from pathlib import Path
from typing import Any, Sequence

import torch

from fsadbench.backbone.checkpoints import Source, identity, place_of
from fsadbench.backbone.spec import BackboneSpec, looks_like_file
from fsadbench.backbone.weights import key_mismatch, read_state_dict, state_fingerprint
from fsadbench.core.errors import ConfigError, WeightsError
from fsadbench.core.io import read_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: The flag a family tag's remedy names when the caller does not say which sets the backbone
#: (``{file}``: where the path goes); :func:`with_option` puts the caller's in its place.
METHOD_OPTION = "--method-option METHOD.backbone_weights={file}"


def weights_remedy(spec: BackboneSpec, reason: str, url: str, file_name: str, cache_hint: str,
                   option: str | None = None) -> str:
    """The WeightsError text for a family tag: the checkpoint's URL, the file to pass (with ``option``, the
    flags that set this backbone's weights, ``{file}`` where the path goes; default the generic ``METHOD``
    form), where the library's cache expects it, and the random-weights pipeline check."""
    return "\n".join([
        f"could not load weights {spec.name!r} / {spec.pretrained!r}: {reason}",
        "The checkpoint for this tag:",
        f"  {url}",
        "Remedies:",
        f"  1. download it on a machine with internet and pass the file: "
        f"{(option or METHOD_OPTION).format(file=f'/path/to/{file_name}')}",
        f"  2. or put it where {spec.family} looks for it: {cache_hint}",
        "  3. or run the offline pipeline check with random weights: python run_bench.py --preset smoke",
    ])


def with_option(text: str, option: str) -> str:
    """A :func:`weights_remedy` text written with the default flag, naming ``option`` instead."""
    import re

    prefix = re.escape(METHOD_OPTION.split("{file}")[0])
    return re.sub(prefix + r"(\S+)", lambda m: option.format(file=m.group(1)), text)


def describe_backbone(bb: Any) -> dict[str, Any]:
    """The record's ``backbone`` section of any family's adapter: family, model, weights (as named, their
    source, random or not, fingerprint), input size, token grid (None for CNN maps), preprocessing."""
    out = {
        "family": bb.family,
        "model": bb.spec.model,
        "pretrained": bb.spec.pretrained,
        "weights_source": bb.weights_source,
        "random_weights": bb.is_random,
        "weights_fingerprint": bb.fingerprint,
        "image_size": bb.image_size,
        "grid": list(bb.grid) if bb.grid else None,
        "preprocess": {"resize": "squash (no crop, so maps align with masks)",
                       "interpolation": bb.interpolation, "mean": list(bb.mean), "std": list(bb.std)},
    }
    if not bb.is_random:  # random records stay as they were
        out["checkpoint"] = getattr(bb, "checkpoint", None)
        if getattr(bb, "activation", None):
            out["activation"] = bb.activation
    return out


class VisionBackbone(abc.ABC):
    """A frozen timm / torchvision model in eval mode; subclasses build the model and run ``encode``.

    A family implements the four abstract members (``build``, ``tag_checkpoint``, ``layer_names``,
    ``encode``); one that lacks any cannot be instantiated (TypeError)."""

    family = ""
    library_version = "unknown"
    interpolation = "bilinear"

    def __init__(self, spec: BackboneSpec, device: str | torch.device = "cpu", cache_dir: str | None = None,
                 option: str | None = None):
        self.spec = spec
        self.device = torch.device(device)
        self.cache_dir, self.option = cache_dir, option
        self.is_random = spec.is_random
        self.checkpoint: dict[str, Any] | None = None
        pre = spec.pretrained
        if self.is_random:
            torch.manual_seed(spec.init_seed)
            model = self.build()
            self.weights_source = f"random init (seed {spec.init_seed})"
        else:
            path = Path(pre).expanduser()
            if not path.is_file():
                if looks_like_file(pre):
                    raise WeightsError(f"checkpoint file {pre} does not exist (backbone {spec.name}); pass an "
                                       f"existing file, a tag, or none")
                path = self.tag_checkpoint()
                self.weights_source = f"{self.family} tag {pre} ({path})"
                self.checkpoint = identity(self.tag_source(), place_of(path, cache_dir))
            else:
                self.weights_source = f"file {path}"
                self.checkpoint = identity(None, path)
            model = self.build()
            self.load_weights(model, read_state_dict(path), path)
        model.eval().requires_grad_(False)
        self.model = model.to(self.device)
        self.fingerprint = state_fingerprint(model)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self._transforms: dict[int, Any] = {}

    # -- what a family provides ----------------------------------------------------
    @abc.abstractmethod
    def build(self) -> torch.nn.Module:
        """The family's model for ``self.spec``, weights not yet loaded (random init)."""

    @abc.abstractmethod
    def tag_checkpoint(self) -> Path:
        """The local file of the tag (from the library's cache, or downloaded); WeightsError offline."""

    def tag_source(self) -> Source | None:
        """The one file the tag names (address, hub repo), for the record's ``checkpoint``."""
        return None

    def load_weights(self, model: torch.nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise WeightsError(f"checkpoint {path} does not fit backbone {self.spec.name!r}: "
                               f"{key_mismatch(model, sd) or str(exc)[:500]}\n"
                               f"Pass the backbone the checkpoint was trained as.") from exc

    @property
    @abc.abstractmethod
    def layer_names(self) -> tuple[str, ...]:
        """The layer names ``encode`` accepts."""

    @abc.abstractmethod
    def encode(self, pixels: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{layer name: feature map B x C x h x w or patch tokens B x L x D}`` of the layers asked for."""

    # -- shared ------------------------------------------------------------------------
    def check_layers(self, layers: Sequence[str]) -> tuple[str, ...]:
        """Layer names, checked against this backbone's."""
        layers = tuple(str(n) for n in layers)
        bad = [n for n in layers if n not in self.layer_names]
        if bad:
            raise ConfigError(f"layers {bad} unknown: {self.spec.name} has {', '.join(self.layer_names)}")
        return layers

    @property
    def key(self) -> str:
        """Identity of the encoder for caches: family, model, weights hash, resolution, library release."""
        return f"{self.family}|{self.spec.model}|{self.fingerprint}|{self.image_size}|{self.family}-{self.library_version}"

    def describe(self) -> dict[str, Any]:
        return describe_backbone(self)

    def preprocess(self, image, size: int | None = None) -> torch.Tensor:
        """A PIL image -> normalised 3 x size x size tensor (squash resize; ``size`` defaults to S)."""
        from torchvision import transforms as T

        size = self.image_size if size is None else int(size)
        if size < 1:
            raise ConfigError(f"image size must be >= 1 pixel, got {size}")
        if size not in self._transforms:
            mode = T.InterpolationMode(self.interpolation)
            self._transforms[size] = T.Compose([T.Resize((size, size), interpolation=mode), T.ToTensor(),
                                                T.Normalize(self.mean, self.std)])
        return self._transforms[size](image)

    def load_pixels(self, paths: Sequence[Path], size: int | None = None) -> torch.Tensor:
        """Decode and preprocess image files into a B x 3 x size x size tensor (on CPU; size: S)."""
        return torch.stack([self.preprocess(read_rgb(p), size) for p in paths])
