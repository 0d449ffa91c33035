"""Plain data passed along the one-way flow dataset -> sampler -> method -> evaluator."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np


@dataclass(frozen=True)
class Sample:
    """One image of a dataset split, as a dataset plugin yields it.

    ``label`` is 0 (normal) or 1 (anomalous); ``mask_path`` is None for normal
    images and for anomalous images without a pixel mask.
    """

    image_path: Path
    label: int
    defect_type: str = "good"
    mask_path: Path | None = None
    rel_path: str = ""  # relative to the dataset root: stable across machines


@dataclass(frozen=True)
class CategoryInfo:
    """What a method may know about a category (never paths)."""

    dataset: str
    name: str
    class_name: str  # human words for prompts: "metal nut", "printed circuit board"
    defect_types: tuple[str, ...] = ()
    is_texture: bool = False


@dataclass
class CategorySplit:
    """A category's train normals (the k-shot pool) and its test samples."""

    info: CategoryInfo
    root: Path
    train: list[Sample]
    test: list[Sample]
    meta: dict[str, Any] = field(default_factory=dict)  # e.g. the CVC normal source


@dataclass(frozen=True)
class ImageRef:
    """An image handed to a method: a path plus its content digest (cache key)."""

    path: Path
    digest: str
    rel_path: str = ""


@dataclass(frozen=True)
class AuxiliarySet:
    """A labelled auxiliary split handed to a method that trains on another dataset
    (``fit_scope = "auxiliary"``, the zero-shot transfer protocol): its images, their labels
    (0 normal, 1 anomalous) and their masks (``None``: no pixel truth, all normal). The method
    reads pixels and masks through the feature store only (``features.pixels`` / ``features.masks``)."""

    dataset: str
    images: tuple[ImageRef, ...]
    labels: tuple[int, ...]
    masks: tuple[ImageRef | None, ...]
    categories: tuple[str, ...] = ()
    #: each image's category (the leave-one-out mode pairs images of one category); () = not given
    image_categories: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not len(self.images) == len(self.labels) == len(self.masks):
            raise ValueError(f"auxiliary set {self.dataset!r}: {len(self.images)} images, {len(self.labels)} "
                             f"labels and {len(self.masks)} masks; give one label and one mask (or None) per image")
        if self.image_categories and len(self.image_categories) != len(self.images):
            raise ValueError(f"auxiliary set {self.dataset!r}: {len(self.images)} images but "
                             f"{len(self.image_categories)} image categories; give one per image or none")


#: The reason every pixel metric of an image-level method (``Method.produces == ("image",)``) is undefined,
#: shown as is in every table and export, never a figure.
IMAGE_LEVEL = "n/a, image-level method"
#: The metrics computed from maps (an image-level method has none of them).
PIXEL_METRICS = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro")


@dataclass
class Prediction:
    """A batch of anomaly maps (B x H x W float32) and image scores (B); ``maps`` is None for an
    image-level method (``Method.produces == ("image",)``), whose pixel metrics are :data:`IMAGE_LEVEL`."""

    maps: np.ndarray | None
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.scores = _as_numpy(self.scores).astype(np.float32, copy=False).reshape(-1)
        if self.maps is None:
            return
        self.maps = _as_numpy(self.maps).astype(np.float32, copy=False)
        if self.maps.ndim != 3:
            raise ValueError(f"Prediction.maps must be B x H x W, got shape {self.maps.shape}")
        if self.scores.shape[0] != self.maps.shape[0]:
            raise ValueError(f"Prediction has {self.maps.shape[0]} maps but {self.scores.shape[0]} scores")


Predictions = Mapping[str, Prediction]  # variant name -> prediction, all from one fit


def _as_numpy(x: Any) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().float().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x)
