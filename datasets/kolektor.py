"""KolektorSDD (Tabernik et al., J. Intell. Manuf. 2020) and KolektorSDD2 (Bozic et al., Comput. Ind. 2021).

KolektorSDD raw release::

    <root>/kos01/Part0.jpg, <root>/kos01/Part0_label.bmp, ... <root>/kos50/...

About 400 grayscale images of about 500 x 1240 px. An image (or crop) is
anomalous iff its mask has a non-zero pixel. The release has no few-shot
split; following the AnomalyCLIP / AdaCLIP line of work each image is cut into
three vertical thirds (rows ``[round(i*H/3), round((i+1)*H/3))``, i = 0, 1, 2),
each crop is labelled from its mask, every anomalous crop goes to test, and
the normal crops are shuffled with ``numpy.random.default_rng(split_seed)``
(default 0) and split ``train_fraction`` (default 0.75, rounded to the nearest
count) to train, the rest to test. The conversion is written once, atomically,
as an MVTec-like tree ``<cache>/kolektorsdd/<key>/sdd/`` (PNG crops, 0/255
masks, ``split.json`` listing the assignment); the key hashes the source file
list and sizes, the seed and the fraction. An already converted MVTec-like tree
(``<root>/<folder>/{train/good,test,ground_truth}``) is read as is.

KolektorSDD2 (``sdd2``)::

    <root>/train/10000.png, <root>/train/10000_GT.png
    <root>/test/20000.png,  <root>/test/20000_GT.png

Train normals are the train images with an empty mask (train images with a
defect are left out and counted in ``meta``); every test image is a test
sample, anomalous iff its mask has a non-zero pixel.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.types import CategorySplit, Sample

from fsadbench.core.io import to_rgb
from fsadbench.datasets.base import Dataset, atomic_dir, list_images, list_missing, load_mask, make_sample, natural_key
from fsadbench.datasets.mvtec import load_mvtec_like

CONVERSION_VERSION = 1

SDD_LAYOUT = """  raw release:
    <root>/kos01/Part0.jpg
    <root>/kos01/Part0_label.bmp
    ... <root>/kos50/Part7.jpg
  or converted (MVTec-like, one category folder):
    <root>/<folder>/train/good/<crop>.png
    <root>/<folder>/test/good/<crop>.png, <root>/<folder>/test/<defect>/<crop>.png
    <root>/<folder>/ground_truth/<defect>/<crop>_mask.png"""

SDD2_LAYOUT = """  <root>/train/10000.png, <root>/train/10000_GT.png
  <root>/test/20000.png,  <root>/test/20000_GT.png"""


def _raw_pairs(root: Path) -> tuple[list[tuple[Path, Path]], list[str]]:
    """(image, label) pairs of the raw release in natural order, and images with no label file."""
    pairs, missing = [], []
    for folder in sorted((d for d in root.iterdir() if d.is_dir() and d.name.lower().startswith("kos")),
                         key=lambda d: natural_key(d.name)):
        files = sorted(list_images(folder), key=lambda p: natural_key(p.name))
        labels = {p.stem[: -len("_label")]: p for p in files if p.stem.endswith("_label")}
        for img in files:
            if img.stem.endswith("_label"):
                continue
            if img.stem in labels:
                pairs.append((img, labels[img.stem]))
            else:
                missing.append(str(img))
    return pairs, missing


def third_bounds(height: int) -> list[tuple[int, int]]:
    """Row ranges of the three vertical thirds of an image ``height`` rows tall."""
    cuts = [round(i * height / 3) for i in range(4)]
    return [(cuts[i], cuts[i + 1]) for i in range(3)]


def split_normals(names: list[str], seed: int, fraction: float) -> tuple[list[str], list[str]]:
    """Shuffle sorted ``names`` with ``default_rng(seed)``; the first ``round(fraction*n)`` go to train."""
    names = sorted(names, key=natural_key)
    perm = np.random.default_rng(seed).permutation(len(names))
    n_train = int(round(fraction * len(names)))
    train = sorted((names[i] for i in perm[:n_train]), key=natural_key)
    test = sorted((names[i] for i in perm[n_train:]), key=natural_key)
    return train, test


def convert_sdd(pairs: list[tuple[Path, Path]], root: Path, target: Path, seed: int, fraction: float) -> dict:
    """Write the crops of ``pairs`` as an MVTec-like tree under ``target/sdd`` (atomically); returns split.json.

    Crops are written once to a staging folder and then moved into their split
    folders, so memory holds one source image at a time.
    """
    from PIL import Image

    with atomic_dir(target) as tmp:
        cat, staging = tmp / "sdd", tmp / "staging"
        staging.mkdir()
        defective_crops: list[str] = []
        normal_crops: list[str] = []
        n_defective = 0
        for img_path, label_path in pairs:
            with Image.open(img_path) as im:
                im.load()
                image = im if im.mode in ("L", "RGB") else to_rgb(im, img_path)
            mask = load_mask(label_path, expected_hw=(image.height, image.width))
            n_defective += int(mask.any())
            stem = f"{img_path.parent.name}_{img_path.stem}"
            for i, (r0, r1) in enumerate(third_bounds(image.height)):
                name = f"{stem}_{i}"
                image.crop((0, r0, image.width, r1)).save(staging / f"{name}.png")
                if mask[r0:r1].any():
                    defective_crops.append(name)
                    Image.fromarray(mask[r0:r1].astype(np.uint8) * 255).save(staging / f"{name}_mask.png")
                else:
                    normal_crops.append(name)
        train, test_good = split_normals(normal_crops, seed, fraction)
        test_bad = sorted(defective_crops, key=natural_key)
        for folder, names in (("train/good", train), ("test/good", test_good), ("test/defect", test_bad)):
            (cat / folder).mkdir(parents=True, exist_ok=True)
            for n in names:
                (staging / f"{n}.png").rename(cat / folder / f"{n}.png")
        (cat / "ground_truth" / "defect").mkdir(parents=True, exist_ok=True)
        for n in test_bad:
            (staging / f"{n}_mask.png").rename(cat / "ground_truth" / "defect" / f"{n}_mask.png")
        staging.rmdir()
        info = {"conversion": "kolektorsdd-vertical-thirds", "version": CONVERSION_VERSION, "source": str(root),
                "split_seed": seed, "train_fraction": fraction, "source_images": len(pairs),
                "defective_source_images": n_defective, "train": train, "test_good": test_good,
                "test_defect": test_bad}
        (tmp / "split.json").write_text(json.dumps(info, indent=1))
    return json.loads((target / "split.json").read_text())


class KolektorSDD(Dataset):
    """KolektorSDD ("SDD" in the APT paper): one category ``sdd``; see the module docstring."""

    name = "sdd"
    object_name = "electrical commutator"
    categories: ClassVar[tuple[str, ...]] = ("sdd",)
    dir_names = ("KolektorSDD", "kolektorsdd", "kolektor_sdd", "KSDD", "sdd", "SDD")
    layout = SDD_LAYOUT
    option_names = ("split_seed", "train_fraction")
    #: the raw release (counted before cropping)
    expected_counts: ClassVar[dict[str, dict[str, int]]] = {
        "sdd": {"source_images": 399, "defective_source_images": 52}}

    def __init__(self, root=None, cache_dir=None, split_seed: int = 0, train_fraction: float = 0.75):
        super().__init__(root=root, cache_dir=cache_dir, split_seed=split_seed, train_fraction=train_fraction)
        if not 0.0 < float(train_fraction) < 1.0:
            raise ConfigError(f"dataset 'sdd': option train_fraction={train_fraction!r} must lie in (0, 1)")
        self.split_seed = int(split_seed)
        self.train_fraction = float(train_fraction)

    @classmethod
    def looks_like(cls, folder: Path) -> bool:
        return folder.is_dir() and any(d.is_dir() and (d.name.lower().startswith("kos") or (d / "test").is_dir())
                                       for d in folder.iterdir())


    def _check_category(self, category: str) -> None:
        if category != "sdd":
            raise DataError(f"dataset 'sdd' has one category, 'sdd' (asked for {category!r})")

    def load(self, category: str) -> CategorySplit:
        self._check_category(category)
        root = self.require_root()
        converted = sorted((d for d in root.iterdir() if d.is_dir() and (d / "test").is_dir()),
                           key=lambda d: (d.name != "sdd", d.name))
        if converted and not any(d.name.lower().startswith("kos") for d in root.iterdir() if d.is_dir()):
            split = load_mvtec_like(self, converted[0].name)
            split.info = self.category_info("sdd", split.info.defect_types)
            split.meta = {"layout": "converted", "folder": converted[0].name}
            return split
        pairs, missing = _raw_pairs(root)
        if missing:
            raise DataError("dataset 'sdd': " + list_missing(
                f"{len(missing)} image(s) have no <stem>_label mask next to them", missing))
        if not pairs:
            raise DataError(f"dataset 'sdd': no kosNN/PartN.jpg images under {root}. Expected layout:\n{self.layout}")
        target = self.cache_dir / "kolektorsdd" / self._key(root, pairs)
        info = (json.loads((target / "split.json").read_text()) if (target / "split.json").is_file()
                else convert_sdd(pairs, root, target, self.split_seed, self.train_fraction))
        view = KolektorSDD(root=target, cache_dir=self.cache_dir, split_seed=self.split_seed,
                           train_fraction=self.train_fraction)
        split = load_mvtec_like(view, "sdd")
        split.info = self.category_info("sdd", split.info.defect_types)
        split.meta = {"layout": "raw", "converted_root": str(target),
                      **{k: info[k] for k in ("conversion", "version", "source", "split_seed", "train_fraction")},
                      "counts": {"source_images": info["source_images"],
                                 "defective_source_images": info["defective_source_images"]}}
        return split

    def _key(self, root: Path, pairs: list[tuple[Path, Path]]) -> str:
        h = hashlib.sha1(json.dumps([CONVERSION_VERSION, str(root.resolve()), self.split_seed,
                                     self.train_fraction]).encode())
        for img, label in pairs:
            for p in (img, label):
                h.update(f"{p.relative_to(root).as_posix()}:{p.stat().st_size};".encode())
        return h.hexdigest()[:16]


class KolektorSDD2(Dataset):
    """KolektorSDD2: one category ``sdd2``; see the module docstring."""

    name = "sdd2"
    object_name = "surface"
    categories: ClassVar[tuple[str, ...]] = ("sdd2",)
    dir_names = ("KolektorSDD2", "kolektorsdd2", "KSDD2", "sdd2", "SDD2")
    layout = SDD2_LAYOUT
    #: 2085 normal + 246 defective train images, 894 normal + 110 defective test images
    expected_counts: ClassVar[dict[str, dict[str, int]]] = {
        "sdd2": {"train": 2085, "train_defective_excluded": 246, "test_good": 894, "test_anomalous": 110}}

    @classmethod
    def looks_like(cls, folder: Path) -> bool:
        return (folder / "train").is_dir() and (folder / "test").is_dir()


    def load(self, category: str) -> CategorySplit:
        if category != "sdd2":
            raise DataError(f"dataset 'sdd2' has one category, 'sdd2' (asked for {category!r})")
        root = self.require_root()
        if not self.looks_like(root):
            raise DataError(f"dataset 'sdd2': {root} has no train/ and test/ folders. Expected layout:\n{self.layout}")
        parts: dict[str, list[Sample]] = {"train": [], "test": []}
        missing: list[str] = []
        excluded = 0
        for part in ("train", "test"):
            for img in sorted(list_images(root / part), key=lambda p: natural_key(p.name)):
                if img.stem.endswith("_GT"):
                    continue
                gt = next((p for p in (img.with_name(f"{img.stem}_GT{e}") for e in (".png", ".bmp")) if p.is_file()),
                          None)
                if gt is None:
                    missing.append(str(img))
                    continue
                defective = bool(load_mask(gt).any())
                if part == "train":
                    if defective:
                        excluded += 1
                    else:
                        parts["train"].append(make_sample(img, root, 0, "good", None))
                else:
                    parts["test"].append(make_sample(img, root, int(defective), "defect" if defective else "good",
                                                     gt if defective else None))
        if missing:
            raise DataError("dataset 'sdd2': " + list_missing(
                f"{len(missing)} image(s) have no <id>_GT.png mask next to them", missing))
        if not parts["test"]:
            raise DataError(f"dataset 'sdd2': no test images under {root / 'test'}. Expected layout:\n{self.layout}")
        meta: dict[str, Any] = {"layout": "sdd2", "counts": {"train_defective_excluded": excluded}}
        return CategorySplit(info=self.category_info("sdd2", ("defect",)), root=root, train=parts["train"],
                             test=parts["test"], meta=meta)
