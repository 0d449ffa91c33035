"""VisA (Zou et al., ECCV 2022): the raw release with its split CSV, or the MVTec-like "1cls" conversion.

Raw release::

    <root>/<cat>/Data/Images/Normal/0000.JPG      (file-name widths differ by category)
    <root>/<cat>/Data/Images/Anomaly/000.JPG
    <root>/<cat>/Data/Masks/Anomaly/000.png       (any non-zero value = anomaly)
    <root>/split_csv/1cls.csv                      header: object,split,label,image,mask

CSV paths are relative to ``<root>``; ``label`` is ``normal`` or ``anomaly``;
``mask`` is empty for normal rows. The raw release has no defect-type column
in this CSV, so every anomalous image gets the defect type ``bad`` (the name
the converted tree uses). Converted tree: ``<root>/<cat>/{train/good,
test/good, test/bad, ground_truth/bad}`` with the mask named like its image's
stem (``bad/000.JPG`` <-> ``ground_truth/bad/000.png``).

Option ``layout``: ``auto`` (default: the CSV when ``<root>/<split_csv>``
exists, else the converted tree), ``raw`` or ``1cls``. Option ``split_csv``:
the CSV path relative to the root (default ``split_csv/1cls.csv``).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import ClassVar

from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.types import CategorySplit, Sample

from fsadbench.datasets.base import Dataset, list_missing, make_sample
from fsadbench.datasets.mvtec import load_mvtec_like

VISA_LAYOUT = """  raw release:
    <root>/split_csv/1cls.csv   (header: object,split,label,image,mask; paths relative to <root>)
    <root>/<category>/Data/Images/Normal/0000.JPG
    <root>/<category>/Data/Images/Anomaly/000.JPG
    <root>/<category>/Data/Masks/Anomaly/000.png
  or converted ("1cls"):
    <root>/<category>/train/good/000.JPG
    <root>/<category>/test/good/000.JPG, <root>/<category>/test/bad/000.JPG
    <root>/<category>/ground_truth/bad/000.png
  categories: candle capsules cashew chewinggum fryum macaroni1 macaroni2 pcb1 pcb2 pcb3 pcb4 pipe_fryum"""

CSV_COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}


class VisA(Dataset):
    name = "visa"
    categories: ClassVar[tuple[str, ...]] = (
        "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2",
        "pcb1", "pcb2", "pcb3", "pcb4", "pipe_fryum")
    dir_names = ("visa", "VisA", "VisA_20220922", "visa_pytorch")
    layout = VISA_LAYOUT
    option_names = ("layout", "split_csv")
    #: images per category in the release (all normal, all anomalous); the 1cls split
    #: puts the anomalous ones and about a tenth of the normal ones in test
    expected_counts: ClassVar[dict[str, dict[str, int]]] = {
        c: {"normal": n, "anomalous": 100} for c, n in (
            ("candle", 1000), ("capsules", 602), ("cashew", 500), ("chewinggum", 503), ("fryum", 500),
            ("macaroni1", 1000), ("macaroni2", 1000), ("pcb1", 1004), ("pcb2", 1001), ("pcb3", 1006),
            ("pcb4", 1005), ("pipe_fryum", 500))}

    def __init__(self, root=None, cache_dir=None, layout: str = "auto", split_csv: str = "split_csv/1cls.csv"):
        super().__init__(root=root, cache_dir=cache_dir, layout=layout, split_csv=split_csv)
        if layout not in ("auto", "raw", "1cls"):
            raise ConfigError(f"dataset 'visa': option layout={layout!r} is not one of auto, raw, 1cls")
        self.layout_kind = layout
        self.split_csv = split_csv

    @classmethod
    def looks_like(cls, folder: Path) -> bool:
        return (folder / "split_csv").is_dir() or super().looks_like(folder)

    def _is_raw(self, root: Path) -> bool:
        if self.layout_kind != "auto":
            return self.layout_kind == "raw"
        return (root / self.split_csv).is_file()

    def load(self, category: str) -> CategorySplit:
        root = self.require_root()
        if not self._is_raw(root):
            split = load_mvtec_like(self, category, mask_suffixes=("", "_mask"))
            split.meta = {"layout": "1cls"}
            return split
        train, test = self._read_csv(root, category)
        info = self.category_info(category, ("bad",))
        return CategorySplit(info=info, root=root, train=train, test=test,
                             meta={"layout": "raw", "split_csv": self.split_csv})

    def _read_csv(self, root: Path, category: str) -> tuple[list[Sample], list[Sample]]:
        csv_path = root / self.split_csv
        if not csv_path.is_file():
            raise DataError(f"dataset 'visa': split file {csv_path} does not exist (option split_csv). "
                            f"Expected layout:\n{self.layout}")
        with open(csv_path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            if any(c not in header for c in CSV_COLUMNS):
                raise DataError(f"dataset 'visa': {csv_path} has header {','.join(header) or '(empty)'}; "
                                f"expected {','.join(CSV_COLUMNS)}")
            all_rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
        rows = [r for r in all_rows if r["object"] == category]
        if not rows:
            objects = sorted({r["object"] for r in all_rows})
            raise DataError(f"dataset 'visa': {csv_path} has no rows for category {category!r}"
                            + (f" (objects: {', '.join(objects)})" if objects else ""))
        train: list[Sample] = []
        test: list[Sample] = []
        missing: list[str] = []
        bad_rows: list[str] = []
        for r in rows:
            label = LABELS.get(r["label"].lower())
            split = r["split"].lower()
            if label is None or split not in ("train", "test") or (label and not r["mask"]):
                bad_rows.append(f"{r['image'] or '(no image)'}: split={r['split']!r} label={r['label']!r} "
                                f"mask={r['mask']!r}")
                continue
            img = root / r["image"]
            mask = root / r["mask"] if label else None
            for p in (img, mask):
                if p is not None and not p.is_file():
                    missing.append(str(p))
            sample = make_sample(img, root, label, "bad" if label else "good", mask)
            (train if split == "train" else test).append(sample)
        if bad_rows:
            raise DataError(f"dataset 'visa', category {category!r}: " + list_missing(
                f"{len(bad_rows)} row(s) of {csv_path} are malformed (split must be train/test, label "
                f"normal/anomaly, anomaly rows need a mask)", bad_rows))
        if missing:
            raise DataError(f"dataset 'visa', category {category!r}: " + list_missing(
                f"{len(missing)} file(s) listed in {csv_path} are missing under {root}", missing))
        if any(s.label for s in train):
            raise DataError(f"dataset 'visa', category {category!r}: {csv_path} lists anomalous train images; "
                            f"the 1cls split has normal train images only")
        return train, test
