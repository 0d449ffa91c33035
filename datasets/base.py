"""Base class of dataset plugins.

A dataset knows one on-disk layout and nothing of methods. It yields, per
category, the train normals (k-shot pool) and the test samples.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Mapping

from fsadbench.core.defaults import default_cache_dir
from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.io import atomic_dir, read_mask  # noqa: F401  (atomic_dir: re-exported for the plugins)
from fsadbench.core.types import CategoryInfo, CategorySplit, Sample

#: a mask as H x W bool, any non-zero pixel anomalous (:func:`fsadbench.core.io.read_mask`)
load_mask = read_mask

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

TEXTURES = frozenset({"carpet", "grid", "leather", "tile", "wood"})  # MVTec AD's texture categories


class Dataset(ABC):
    name: ClassVar[str] = "dataset"
    #: categories as the papers list them (may be empty when discovered on disk)
    categories: ClassVar[tuple[str, ...]] = ()
    #: shown in the error for a wrong root
    layout: ClassVar[str] = ""
    #: True when test images have no normal counterpart (image metrics undefined)
    test_only: ClassVar[bool] = False
    #: folder names tried under --data-root, first match wins
    dir_names: ClassVar[tuple[str, ...]] = ()
    #: options a config may set (``datasets.<name>.options``); anything else is an error
    option_names: ClassVar[tuple[str, ...]] = ()
    #: False for generated datasets that need no folder on disk
    needs_root: ClassVar[bool] = True
    #: published counts per category for ``check-data`` (approximate where the papers are):
    #: a (train, test) pair or a dict whose keys are count names of :func:`split_counts`
    expected_counts: ClassVar[Mapping[str, Any]] = {}
    #: the prompt words of every category (one-object datasets); None = from the category name
    object_name: ClassVar[str | None] = None
    #: categories that are textures (no object to focus on)
    texture_categories: ClassVar[frozenset[str]] = TEXTURES

    def __init__(self, root: str | Path | None = None, cache_dir: str | Path | None = None, **options: Any):
        self.root = Path(root).expanduser() if root is not None else None
        #: where derived data (generated sets, converted crops) may be written
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
        self.options = options

    @classmethod
    def from_config(cls, data_root: str | Path | None = None, root: str | Path | None = None,
                    cache_dir: str | Path | None = None, **options: Any) -> "Dataset":
        """Build the dataset the runner asks for, resolving its folder.

        Precedence: an explicit ``root`` > ``<data_root>/<one of dir_names>`` >
        ``data_root`` itself when it already holds the layout. A dataset that
        needs a folder and finds none fails here, before any work, with the
        expected layout in the message.
        """
        unknown = sorted(set(options) - set(cls.option_names))
        if unknown:
            known = ", ".join(cls.option_names) or "(none)"
            raise ConfigError(f"dataset {cls.name!r}: unknown option(s) {', '.join(unknown)}; known options: {known}")
        resolved = cls.resolve_root(Path(data_root).expanduser() if data_root else None,
                                    Path(root).expanduser() if root else None)
        ds = cls(root=resolved, cache_dir=cache_dir, **options)
        if cls.needs_root:
            ds.require_root()
        return ds

    @classmethod
    def resolve_root(cls, data_root: Path | None, root: Path | None) -> Path | None:
        if root is not None:
            return root
        if data_root is None:
            return None
        for name in cls.dir_names:
            if (data_root / name).is_dir():
                return data_root / name
        if cls.looks_like(data_root):
            return data_root
        return data_root / cls.dir_names[0] if cls.dir_names else data_root

    @classmethod
    def looks_like(cls, folder: Path) -> bool:
        """True when ``folder`` already holds this layout (a known category folder exists)."""
        return any((folder / c).is_dir() for c in cls.categories)

    # -- what every plugin implements ---------------------------------
    @abstractmethod
    def load(self, category: str) -> CategorySplit:
        """Read one category's split from ``self.root``."""

    def list_categories(self) -> list[str]:
        return list(self.categories)

    def expected(self, category: str) -> dict[str, int] | None:
        """Published counts of ``category`` keyed like :func:`split_counts`, or None when unknown."""
        exp = self.expected_counts.get(category)
        if exp is None:
            return None
        if isinstance(exp, Mapping):
            return dict(exp)
        train, test = exp
        return {"train": int(train), "test": int(test)}

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
            class_name=self.object_name or class_name(category),
            defect_types=defect_types,
            is_texture=category in self.texture_categories,
        )


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


def natural_key(name: str) -> tuple:
    """Sort key that orders ``2.png`` before ``10.png`` (digit runs compare as numbers)."""
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name) if t)


def split_counts(split: CategorySplit) -> dict[str, int]:
    """Counts ``check-data`` compares: train, test, test_good, test_anomalous, normal (train +
    test_good), anomalous, plus the loader's own ``meta['counts']`` (e.g. source images before cropping)."""
    n_bad = sum(1 for s in split.test if s.label)
    counts = {"train": len(split.train), "test": len(split.test), "test_good": len(split.test) - n_bad,
              "test_anomalous": n_bad, "normal": len(split.train) + len(split.test) - n_bad, "anomalous": n_bad}
    counts.update({k: int(v) for k, v in dict(split.meta.get("counts", {})).items()})
    return counts


def list_missing(what: str, paths: list[str], limit: int = 10) -> str:
    """``what`` plus the first ``limit`` paths, one a line, and how many more there are."""
    shown = "\n  ".join(paths[:limit])
    more = f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{what}:\n  {shown}{more}"
