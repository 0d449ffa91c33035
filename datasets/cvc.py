"""CVC-ColonDB (Bernal et al., Pattern Recognit. 2012) and CVC-ClinicDB (Bernal et al., CMIG 2015).

    <root>/images/1.png   <root>/masks/1.png      (.png or .tif)

The ClinicDB release names the folders ``Original`` and ``Ground Truth``; both
spellings are accepted. Images and masks are paired by stem, or, when the
stems differ but the counts agree, by natural sort order (1, 2, ..., 10).

Every image shows a polyp, so there are no normal test images: image AUROC is
undefined (the evaluator records it as undefined) and only pixel metrics count
(``test_only = True``). The train pool is empty unless the option
``normal_source`` names a folder of normal images (searched recursively); the
source (or "none") is written to ``split.meta["normal_source"]`` so every
record says which normals a few-shot method saw.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fsadbench.core.errors import DataError
from fsadbench.core.types import CategorySplit, Sample

from fsadbench.datasets.base import IMAGE_EXTENSIONS, Dataset, list_images, list_missing, make_sample, natural_key

CVC_LAYOUT = """  <root>/images/<n>.png   (or .tif; ClinicDB release: <root>/Original/<n>.tif)
  <root>/masks/<n>.png    (or .tif; ClinicDB release: <root>/Ground Truth/<n>.tif)
  normal images for few-shot methods: option normal_source=<folder>"""

IMAGE_DIRS = ("images", "Images", "Original", "original")
MASK_DIRS = ("masks", "Masks", "Ground Truth", "GroundTruth", "ground_truth", "gt")


def pair_images_masks(images: list[Path], masks: list[Path]) -> list[tuple[Path, Path]]:
    """Pair by stem when every image has a same-stem mask, else by natural order when the counts agree."""
    by_stem = {m.stem: m for m in masks}
    if images and all(i.stem in by_stem for i in images):
        return [(i, by_stem[i.stem]) for i in images]
    if len(images) == len(masks):
        by_name = lambda p: natural_key(p.name)  # noqa: E731
        return list(zip(sorted(images, key=by_name), sorted(masks, key=by_name)))
    unpaired = [str(i) for i in images if i.stem not in by_stem]
    raise DataError(list_missing(
        f"{len(images)} images but {len(masks)} masks, and {len(unpaired)} image(s) have no mask with the same stem",
        unpaired))


class _CVC(Dataset):
    layout = CVC_LAYOUT
    test_only = True
    object_name = "colon"
    option_names = ("normal_source",)

    def __init__(self, root=None, cache_dir=None, normal_source: str | Path | None = None):
        super().__init__(root=root, cache_dir=cache_dir, normal_source=normal_source)
        self.normal_source = Path(normal_source).expanduser() if normal_source else None

    @classmethod
    def looks_like(cls, folder: Path) -> bool:
        return any((folder / d).is_dir() for d in IMAGE_DIRS) and any((folder / d).is_dir() for d in MASK_DIRS)

    def load(self, category: str) -> CategorySplit:
        if category not in self.categories:
            raise DataError(f"dataset {self.name!r} has one category, {self.categories[0]!r} (asked for {category!r})")
        root = self.require_root()
        img_dir = next((root / d for d in IMAGE_DIRS if (root / d).is_dir()), None)
        mask_dir = next((root / d for d in MASK_DIRS if (root / d).is_dir()), None)
        if img_dir is None or mask_dir is None:
            raise DataError(f"dataset {self.name!r}: {root} has no images/ and masks/ folders. "
                            f"Expected layout:\n{self.layout}")
        images = sorted(list_images(img_dir), key=lambda p: natural_key(p.name))
        if not images:
            raise DataError(f"dataset {self.name!r}: no images in {img_dir}. Expected layout:\n{self.layout}")
        try:
            pairs = pair_images_masks(images, list_images(mask_dir))
        except DataError as exc:
            raise DataError(f"dataset {self.name!r}: {exc}") from None
        test = [make_sample(i, root, 1, "polyp", m) for i, m in pairs]
        train = self._normals()
        meta = {"normal_source": str(self.normal_source) if self.normal_source else "none",
                "counts": {"normal_source_images": len(train)}}
        return CategorySplit(info=self.category_info(category, ("polyp",)), root=root, train=train, test=test,
                             meta=meta)

    def _normals(self) -> list[Sample]:
        src = self.normal_source
        if src is None:
            return []
        if not src.is_dir():
            raise DataError(f"dataset {self.name!r}: option normal_source={str(src)!r} is not a folder; "
                            f"give a folder of normal images")
        files = sorted((p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                       key=lambda p: natural_key(p.relative_to(src).as_posix()))
        if not files:
            raise DataError(f"dataset {self.name!r}: option normal_source={str(src)!r} holds no images "
                            f"({', '.join(IMAGE_EXTENSIONS)})")
        return [Sample(image_path=p, label=0, defect_type="good", mask_path=None,
                       rel_path="normal_source/" + p.relative_to(src).as_posix()) for p in files]


class CVCColonDB(_CVC):
    """CVC-ColonDB ("CVC" / ColonDB in the APT paper): 380 images, one category ``colondb``."""

    name = "cvc-colondb"
    categories: ClassVar[tuple[str, ...]] = ("colondb",)
    dir_names = ("CVC-ColonDB", "cvc-colondb", "ColonDB", "colondb", "CVC_ColonDB")
    expected_counts: ClassVar[dict[str, dict[str, int]]] = {"colondb": {"test": 380, "test_anomalous": 380}}


class CVCClinicDB(_CVC):
    """CVC-ClinicDB: 612 images, one category ``clinicdb``."""

    name = "cvc-clinicdb"
    categories: ClassVar[tuple[str, ...]] = ("clinicdb",)
    dir_names = ("CVC-ClinicDB", "cvc-clinicdb", "ClinicDB", "clinicdb", "CVC_ClinicDB")
    expected_counts: ClassVar[dict[str, dict[str, int]]] = {"clinicdb": {"test": 612, "test_anomalous": 612}}
