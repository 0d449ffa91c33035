"""MVTec AD (Bergmann et al., CVPR 2019) and the MVTec-like layout other sets reuse.

    <root>/<cat>/train/good/000.png
    <root>/<cat>/test/good/000.png, <root>/<cat>/test/<defect>/000.png
    <root>/<cat>/ground_truth/<defect>/000_mask.png   (0/255; any non-zero = anomaly)
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from fsadbench.core.errors import DataError
from fsadbench.core.types import CategorySplit, Sample

from fsadbench.datasets.base import Dataset, list_images, make_sample

MVTEC_LAYOUT = """  <root>/<category>/train/good/000.png
  <root>/<category>/test/good/000.png
  <root>/<category>/test/<defect>/000.png
  <root>/<category>/ground_truth/<defect>/000_mask.png"""


def find_mask(gt_dir: Path, image: Path, suffixes: tuple[str, ...] = ("_mask", "")) -> Path | None:
    """The mask of ``image`` in ``gt_dir``: same stem plus one of ``suffixes``, any image extension."""
    if not gt_dir.is_dir():
        return None
    for suffix in suffixes:
        for ext in (".png", ".PNG", ".bmp", ".tif", ".tiff", ".jpg", ".JPG"):
            p = gt_dir / f"{image.stem}{suffix}{ext}"
            if p.is_file():
                return p
    return None


def load_mvtec_like(dataset: Dataset, category: str, mask_suffixes: tuple[str, ...] = ("_mask", ""),
                    require_masks: bool = True) -> CategorySplit:
    """Read one category of an MVTec-like tree.

    Every anomalous test image must have a mask unless ``require_masks`` is
    False (then it is evaluated at image level only); missing masks are listed
    in one error naming the files.
    """
    root = dataset.require_root()
    cat_dir = root / category
    if not cat_dir.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir())
        raise DataError(
            f"dataset {dataset.name!r}: category folder {cat_dir} does not exist (found: {', '.join(found) or 'none'}). "
            f"Expected layout:\n{dataset.layout}")
    train = [make_sample(p, root, 0, "good", None) for p in list_images(cat_dir / "train" / "good")]
    test: list[Sample] = []
    missing: list[str] = []
    test_dir = cat_dir / "test"
    defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
    for defect in defects:
        for img in list_images(test_dir / defect):
            if defect == "good":
                test.append(make_sample(img, root, 0, "good", None))
                continue
            mask = find_mask(cat_dir / "ground_truth" / defect, img, mask_suffixes)
            if mask is None and require_masks:
                missing.append(str(img))
            test.append(make_sample(img, root, 1, defect, mask))
    if missing:
        shown = "\n  ".join(missing[:10]) + (f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise DataError(
            f"dataset {dataset.name!r}, category {category!r}: {len(missing)} anomalous test image(s) have no mask "
            f"in {cat_dir / 'ground_truth'}/<defect>/ (expected <stem>{mask_suffixes[0]}.png):\n  {shown}")
    if not test:
        raise DataError(f"dataset {dataset.name!r}, category {category!r}: no test images under {test_dir}. "
                        f"Expected layout:\n{dataset.layout}")
    info = dataset.category_info(category, tuple(d for d in defects if d != "good"))
    return CategorySplit(info=info, root=root, train=train, test=test)


class MVTecAD(Dataset):
    name = "mvtec"
    categories: ClassVar[tuple[str, ...]] = (
        "bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut",
        "pill", "screw", "tile", "toothbrush", "transistor", "wood", "zipper")
    dir_names = ("mvtec", "mvtec_anomaly_detection", "MVTec-AD", "mvtec_ad", "MVTec")
    layout = MVTEC_LAYOUT
    #: published split sizes (train, test) per category, for check-data
    expected_counts: ClassVar[dict[str, tuple[int, int]]] = {
        "bottle": (209, 83), "cable": (224, 150), "capsule": (219, 132), "carpet": (280, 117),
        "grid": (264, 78), "hazelnut": (391, 110), "leather": (245, 124), "metal_nut": (220, 115),
        "pill": (267, 167), "screw": (320, 160), "tile": (230, 117), "toothbrush": (60, 42),
        "transistor": (213, 100), "wood": (247, 79), "zipper": (240, 151)}

    def load(self, category: str) -> CategorySplit:
        return load_mvtec_like(self, category)
