"""The torchvision family: ResNet-style CNNs, feature maps by layer name (``layer1`` .. ``layer4``).

``wide_resnet50_2`` with ImageNet weights (``IMAGENET1K_V1``, what ``wide_resnet50_2(pretrained=True)``
loads in PatchCore's and PaDiM's reference code) and ``resnet18`` are the classic baselines' encoders;
any torchvision model with the ResNet stem and ``layer1..4`` works. Input 224 px (the reference codes
centre-crop 224 of 256; here a squash resize to 224, so maps align with masks), bilinear, ImageNet
mean/std. ``encode`` runs the stem and stops after the deepest layer asked for.

Random test configurations (never downloaded, 128 px):

* ``wide_resnet50_2-tiny``: the WRN's Bottleneck blocks, one per stage, bottleneck width 1/8 of the WRN's
  (``width_per_group=16``): layer2 / layer3 keep the WRN's 512 / 1024 channels and strides 8 / 16;
* ``resnet18-tiny``: ResNet-18's BasicBlocks, one per stage (64 / 128 / 256 / 512 channels).

Tag weights come from the caches (the Hugging Face cache, torch hub's ``<torch hub dir>/checkpoints/<file>``,
then the harness's) or are downloaded into torch hub's; they are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from fsadbench.backbone.checkpoints import Source, find_checkpoint, torchvision_source
from fsadbench.backbone.vision import VisionBackbone, weights_remedy
from fsadbench.backbone.weights import reachable
from fsadbench.core.errors import ConfigError, WeightsError

LAYERS = ("layer1", "layer2", "layer3", "layer4")
DEFAULT_SIZE, TINY_SIZE = 224, 128


def tiny_model(name: str) -> torch.nn.Module | None:
    """The random test configuration called ``name``, or None when ``name`` is not one."""
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    if name == "wide_resnet50_2-tiny":
        return ResNet(Bottleneck, [1, 1, 1, 1], width_per_group=16)
    if name == "resnet18-tiny":
        return ResNet(BasicBlock, [1, 1, 1, 1])
    return None


def tag_source(spec) -> Source:
    """The one file of torchvision weights ``spec.pretrained`` (its download URL)."""
    try:
        return torchvision_source(spec.model, spec.pretrained)
    except WeightsError as exc:
        raise WeightsError(f"backbone {spec.name}: unknown torchvision weights {spec.pretrained!r}; "
                           f"e.g. IMAGENET1K_V1, a checkpoint file, or none") from exc


def tag_checkpoint(spec, cache_dir: str | None = None, option: str | None = None) -> Path:
    """The local file of torchvision weights ``spec.pretrained``: from the caches in
    :func:`~fsadbench.backbone.checkpoints.cache_places` order (torch hub's before ``cache_dir``), or downloaded
    into torch hub's cache; WeightsError with the remedy when offline."""
    source = tag_source(spec)
    url, file_name = source.url, source.file
    hit = find_checkpoint(source, cache_dir)
    if hit is not None:
        return hit.path
    target = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if not reachable("download.pytorch.org"):
        raise WeightsError(weights_remedy(spec, "no network and not in the local cache", url, file_name, str(target),
                                          option))
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(target), progress=False)
    return target


class TorchvisionBackbone(VisionBackbone):
    family = "torchvision"

    def __init__(self, spec, device="cpu", cache_dir=None, option=None):
        import torchvision

        self.library_version = torchvision.__version__.split("+")[0]
        self.image_size = spec.image_size or (TINY_SIZE if tiny_model(spec.model) is not None else DEFAULT_SIZE)
        self.grid = None
        super().__init__(spec, device, cache_dir, option)
        if not all(hasattr(self.model, n) for n in ("conv1", "bn1", "relu", "maxpool", *LAYERS)):
            raise ConfigError(f"backbone {spec.name}: not a ResNet-style model (stem + layer1..layer4); "
                              f"use timm:{spec.model} for other CNNs")

    def build(self) -> torch.nn.Module:
        import torchvision

        tiny = tiny_model(self.spec.model)
        if tiny is not None:
            return tiny
        if self.spec.model not in torchvision.models.list_models():
            raise ConfigError(f"backbone {self.spec.name}: torchvision has no model {self.spec.model!r} "
                              f"(torchvision.models.list_models() lists them; e.g. wide_resnet50_2, resnet18)")
        return torchvision.models.get_model(self.spec.model, weights=None)

    def tag_checkpoint(self) -> Path:
        return tag_checkpoint(self.spec, self.cache_dir, self.option)

    def tag_source(self) -> Source:
        return tag_source(self.spec)

    @property
    def layer_names(self) -> tuple[str, ...]:
        return LAYERS

    def encode(self, pixels: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]:
        """``{name: B x C x h x w}`` of the ResNet layers asked for, in that order (one forward, up to the
        deepest)."""
        wanted = self.check_layers(layers)
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(pixels.to(self.device)))))
        out = {}
        for name in LAYERS[:max(LAYERS.index(n) for n in wanted) + 1] if wanted else ():
            x = getattr(m, name)(x)
            out[name] = x
        return {n: out[n] for n in wanted}
