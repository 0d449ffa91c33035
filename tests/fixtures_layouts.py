"""Builders of tiny fixture trees that copy the released dataset layouts exactly.

Directory names, file-name widths (VisA ``0000.JPG`` normals vs ``000.JPG``
anomalies), extensions (.png/.JPG/.jpg/.bmp/.tif), grayscale and RGB images and
mask encodings (0/255, 0/1) follow the releases; only the image sizes and
counts are small. Every builder returns the root it wrote and is deterministic.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, h: int = 24, w: int = 24, mode: str = "RGB", seed: int = 0) -> Path:
    """A random image of ``h`` x ``w`` in ``mode`` (format from the extension)."""
    rng = np.random.default_rng(seed)
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def random_image_refs(folder: Path, n: int, h: int, w: int, seed: int = 0, prefix: str = "img") -> list:
    """``n`` random RGB PNGs ``folder/<prefix><i>.png`` drawn from one generator of ``seed``, as ImageRefs."""
    from fsadbench.protocol.sampler import file_digest
    from fsadbench.core.types import ImageRef

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    refs = []
    for i in range(n):
        p = folder / f"{prefix}{i}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(p)
        refs.append(ImageRef(p, file_digest(p), p.name))
    return refs


def write_mask(path: Path, h: int = 24, w: int = 24, value: int = 255,
               box: tuple[int, int, int, int] | None = (4, 4, 10, 10)) -> Path:
    """A mask with ``value`` inside ``box`` = (top, left, bottom, right) and 0 elsewhere (no box: all 0)."""
    arr = np.zeros((h, w), dtype=np.uint8)
    if box is not None:
        t, l, b, r = box
        arr[t:b, l:r] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "L").save(path)
    return path


def make_mvtec(root: Path, categories=("bottle", "grid"), grayscale=("grid",), size: int = 24) -> Path:
    """MVTec AD: 3 train, 2 test good, 2 ``broken_large`` (+ ``000_mask.png`` 0/255), 1 ``crack``."""
    for ci, cat in enumerate(categories):
        mode = "L" if cat in grayscale else "RGB"
        d = root / cat
        for i in range(3):
            write_image(d / "train" / "good" / f"{i:03d}.png", size, size, mode, seed=100 * ci + i)
        for i in range(2):
            write_image(d / "test" / "good" / f"{i:03d}.png", size, size, mode, seed=100 * ci + 10 + i)
        for defect, n in (("broken_large", 2), ("crack", 1)):
            for i in range(n):
                write_image(d / "test" / defect / f"{i:03d}.png", size, size, mode, seed=100 * ci + 20 + i)
                write_mask(d / "ground_truth" / defect / f"{i:03d}_mask.png", size, size, 255)
    return root


def make_visa_raw(root: Path, mask_values: dict[str, int] | None = None, size: int = 24) -> Path:
    """VisA raw release: ``candle`` (normals 0000.JPG, 4 digits; masks 0/255) and ``pcb1`` (masks 0/1).

    ``split_csv/1cls.csv`` puts 3 normals in train, 1 normal and 2 anomalies in test.
    """
    mask_values = mask_values or {"candle": 255, "pcb1": 1}
    rows = []
    for ci, (cat, value) in enumerate(mask_values.items()):
        base = root / cat / "Data"
        normals = [f"{i:04d}.JPG" for i in range(4)]
        anomalies = [f"{i:03d}.JPG" for i in range(2)]
        for i, n in enumerate(normals):
            write_image(base / "Images" / "Normal" / n, size, size + 8, "RGB", seed=50 * ci + i)
            rows.append([cat, "train" if i < 3 else "test", "normal", f"{cat}/Data/Images/Normal/{n}", ""])
        for i, n in enumerate(anomalies):
            write_image(base / "Images" / "Anomaly" / n, size, size + 8, "RGB", seed=50 * ci + 20 + i)
            write_mask(base / "Masks" / "Anomaly" / n.replace(".JPG", ".png"), size, size + 8, value)
            rows.append([cat, "test", "anomaly", f"{cat}/Data/Images/Anomaly/{n}",
                         f"{cat}/Data/Masks/Anomaly/{n.replace('.JPG', '.png')}"])
    (root / "split_csv").mkdir(parents=True, exist_ok=True)
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["object", "split", "label", "image", "mask"])
        w.writerows(rows)
    return root


def make_visa_1cls(root: Path, categories=("capsules",), size: int = 24) -> Path:
    """VisA converted "1cls": ``test/bad/000.JPG`` <-> ``ground_truth/bad/000.png`` (no ``_mask``)."""
    for ci, cat in enumerate(categories):
        d = root / cat
        for i in range(3):
            write_image(d / "train" / "good" / f"{i:03d}.JPG", size, size, "RGB", seed=ci * 10 + i)
        write_image(d / "test" / "good" / "000.JPG", size, size, "RGB", seed=ci * 10 + 5)
        for i in range(2):
            write_image(d / "test" / "bad" / f"{i:03d}.JPG", size, size, "RGB", seed=ci * 10 + 6 + i)
            write_mask(d / "ground_truth" / "bad" / f"{i:03d}.png", size, size, 255)
    return root


def make_mpdd(root: Path, size: int = 24) -> Path:
    """MPDD: ``bracket_black`` with ``000_mask.png`` masks, ``tubes`` with stem-only ``000.png`` masks."""
    for ci, (cat, suffix) in enumerate((("bracket_black", "_mask"), ("tubes", ""))):
        d = root / cat
        for i in range(2):
            write_image(d / "train" / "good" / f"{i:03d}.png", size, size, "RGB", seed=ci * 10 + i)
        write_image(d / "test" / "good" / "000.png", size, size, "RGB", seed=ci * 10 + 3)
        write_image(d / "test" / "hole" / "000.png", size, size, "RGB", seed=ci * 10 + 4)
        write_mask(d / "ground_truth" / "hole" / f"000{suffix}.png", size, size, 255)
    return root


def make_sdd_raw(root: Path, n_folders: int = 3, parts: int = 4, w: int = 20, h: int = 62) -> Path:
    """KolektorSDD raw: ``kosNN/PartN.jpg`` (grayscale, tall) with ``PartN_label.bmp`` (0/255).

    ``kos01/Part1`` has a defect in its middle third (rows 25..30), ``kos02/Part0``
    one that straddles the first two thirds (rows 18..24); all other labels are empty.
    """
    defects = {("kos01", 1): (25, 2, 30, 8), ("kos02", 0): (18, 2, 24, 8)}
    for f in range(1, n_folders + 1):
        folder = root / f"kos{f:02d}"
        for p in range(parts):
            write_image(folder / f"Part{p}.jpg", h, w, "L", seed=f * 10 + p)
            write_mask(folder / f"Part{p}_label.bmp", h, w, 255, defects.get((folder.name, p)))
    return root


def make_sdd2(root: Path, size: int = 24) -> Path:
    """KolektorSDD2: ``train/10000.png`` + ``10000_GT.png``; train 3 normal + 1 defective, test 2 + 2."""
    layout = {"train": [(10000, None), (10001, None), (10002, (3, 3, 8, 8)), (10003, None)],
              "test": [(20000, None), (20001, (5, 5, 9, 9)), (20002, None), (20003, (1, 1, 4, 6))]}
    for part, items in layout.items():
        for i, (n, box) in enumerate(items):
            write_image(root / part / f"{n}.png", size + 10, size, "RGB", seed=n)
            write_mask(root / part / f"{n}_GT.png", size + 10, size, 255, box)
    return root


def make_cvc(root: Path, n: int = 3, ext: str = ".png", clinic: bool = False, size: int = 24) -> Path:
    """CVC: ``images/<n><ext>`` + ``masks/<n><ext>`` (ClinicDB release: ``Original`` / ``Ground Truth``)."""
    img_dir, mask_dir = ("Original", "Ground Truth") if clinic else ("images", "masks")
    for i in range(1, n + 1):
        write_image(root / img_dir / f"{i}{ext}", size, size + 6, "RGB", seed=i)
        write_mask(root / mask_dir / f"{i}{ext}", size, size + 6, 255)
    return root


def make_folder(root: Path, size: int = 24) -> Path:
    """Generic folder layout: category ``widget`` with a masked ``dent`` and an unmasked ``smudge`` (.bmp)."""
    d = root / "widget"
    for i in range(2):
        write_image(d / "train" / "good" / f"img{i}.png", size, size, "RGB", seed=i)
    write_image(d / "test" / "good" / "ok0.png", size, size, "RGB", seed=5)
    write_image(d / "test" / "dent" / "d0.png", size, size, "RGB", seed=6)
    write_mask(d / "ground_truth" / "dent" / "d0_mask.png", size, size, 255)
    write_image(d / "test" / "smudge" / "s0.bmp", size, size, "L", seed=7)
    return root
