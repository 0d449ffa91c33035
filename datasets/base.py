"""Base class of dataset plugins.

A dataset knows one on-disk layout and nothing of methods. It yields, per
category, the train normals (k-shot pool) and the test samples.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from fsadbench.errors import DataError
from fsadbench.types import CategoryInfo, CategorySplit, Sample

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class Dataset(ABC):
    name: ClassVar[str] = "dataset"
    #: categories as the papers list them (may be empty when discovered on disk)
    categories: ClassVar[tuple[str, ...]] = ()
    #: shown in the error for a wrong root
    layout: ClassVar[str] = ""
    #: True when test images have no normal counterpart (image metrics undefined)
    test_only: ClassVar[bool] = False

    def __init__(self, root: str | Path | None = None, **options: Any):
        self.root = Path(root).expanduser() if root is not None else None
        self.options = options

    # -- what every plugin implements ---------------------------------
    @abstractmethod
    def load(self, category: str) -> CategorySplit:
        """Read one category's split from ``self.root``."""

    def list_categories(self) -> list[str]:
        return list(self.categories)

    # -- shared helpers --------------------------------------------------
    def require_root(self) -> Path:
        if self.root is None or not self.root.is_dir():
            where = "no --data-root given" if self.root is None else f"folder {self.root} does not exist"
            raise DataError(
                f"dataset {self.name!r}: {where}. Point --data-root (or datasets.{self.name}.root in the "
                f"config) at a folder with this layout:\n{self.layout}"
            )
        return self.root

    def category_info(self, category: str, defect_types: tuple[str, ...] = ()) -> CategoryInfo:
        return CategoryInfo(
            dataset=self.name,
            name=category,
            class_name=class_name(category),
            defect_types=defect_types,
            is_texture=category in TEXTURES,
        )

    def fingerprint(self, split: CategorySplit) -> str:
        """Hash over relative paths and file sizes of every sample (cheap, stable)."""
        h = hashlib.sha1()
        for s in list(split.train) + list(split.test):
            for p, rel in ((s.image_path, s.rel_path), (s.mask_path, None)):
                if p is None:
                    continue
                h.update((rel or str(p.name)).encode())
                try:
                    h.update(str(p.stat().st_size).encode())
                except OSError:
                    h.update(b"missing")
        return h.hexdigest()[:16]


TEXTURES = {"carpet", "grid", "leather", "tile", "wood"}

_CLASS_NAMES = {
    "metal_nut": "metal nut",
    "pcb1": "printed circuit board",
    "pcb2": "printed circuit board",
    "pcb3": "printed circuit board",
    "pcb4": "printed circuit board",
    "macaroni1": "macaroni",
    "macaroni2": "macaroni",
    "pipe_fryum": "pipe fryum",
    "chewinggum": "chewing gum",
}


def class_name(category: str) -> str:
    """Prompt words for a category: underscores as spaces, PCBs spelled out."""
    return _CLASS_NAMES.get(category, category.replace("_", " "))


def list_images(folder: Path) -> list[Path]:
    """Image files of a folder, sorted by name (any case of extension)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def make_sample(path: Path, root: Path, label: int, defect: str, mask: Path | None) -> Sample:
    return Sample(image_path=path, label=label, defect_type=defect, mask_path=mask, rel_path=rel(path, root))
