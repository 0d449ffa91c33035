"""Built-in synthetic anomaly dataset: deterministic, MVTec layout on disk.

Textures (``stripes``, ``grain``, ``checker``) and objects on a plain
background (``disc``, ``pill``) with painted defects: scratches, holes,
stains and, for objects, missing parts. Every image is drawn from a numpy
generator seeded by (seed, category, split, index), so a parameter set always
yields the same bytes. Masks are exact: a pixel is anomalous iff the defect
changed its 8-bit value. Defects of object categories lie on the object.

Normal images vary a little (phase, position, colour, mild noise) so the task
is not a pixel copy. Size and counts are parameters: the smoke preset uses
120 px and a handful of images; ``size=512, n_test_bad=300`` makes an
MVTec-sized set for performance work.

Without an explicit root the set is generated once into
``<cache_dir>/synthetic/<hash of the generator version and parameters, seed
included>/<category>`` (one category at a time, into a temporary folder renamed
into place, so a killed generation leaves nothing half-written) and reused
afterwards. ``--data-root`` is never used (:meth:`SyntheticDataset.resolve_root`):
the user's data folder is never written to, and two generator seeds (``synthetic``
and ``synthetic-aux``) never share one folder. Only a ``root`` named for this set
itself (``datasets.synthetic.root``, or the constructor's ``root``) is generated into.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from pathlib import Path
from typing import ClassVar

import numpy as np
from scipy import ndimage

from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.types import CategorySplit

from fsadbench.datasets.base import Dataset, atomic_dir
from fsadbench.datasets.mvtec import MVTEC_LAYOUT, load_mvtec_like

GENERATOR_VERSION = 2  # bump whenever any category's pixels change
TEXTURE_CATEGORIES = ("stripes", "grain", "checker")
OBJECT_CATEGORIES = ("disc", "pill")
TEXTURE_DEFECTS = ("hole", "scratch", "stain")
OBJECT_DEFECTS = ("hole", "missing", "scratch", "stain")
_SPLITS = {"train": 0, "test_good": 1, "test_bad": 2}

# base colours (RGB in [0, 1]) per category: (colour A, colour B)
_PALETTE = {
    "stripes": ((0.20, 0.35, 0.55), (0.75, 0.80, 0.85)),
    "grain": ((0.55, 0.45, 0.30), (0.70, 0.60, 0.45)),
    # v2: lighter, bluish checker (v1's dark squares hid dark holes from a nearest-neighbour baseline)
    "checker": ((0.45, 0.50, 0.60), (0.80, 0.78, 0.70)),
    "disc": ((0.85, 0.65, 0.20), (0.55, 0.40, 0.10)),
    "pill": ((0.90, 0.90, 0.85), (0.80, 0.30, 0.25)),
}
_BACKGROUND = (0.22, 0.24, 0.26)
_STAINS = (np.array([0.55, 0.20, 0.08]), np.array([0.15, 0.50, 0.30]), np.array([0.95, 0.80, 0.30]))


def _rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(category.encode()), _SPLITS[split], index])


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return (yy + 0.5) / size, (xx + 0.5) / size


def _mix(a, b, t: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a)[None, None], np.asarray(b)[None, None]
    return a * (1 - t[..., None]) + b * t[..., None]


def _jitter(colour, rng: np.random.Generator, amount: float = 0.01) -> np.ndarray:
    """Small brightness change (4 %) plus a slight per-channel tint."""
    return np.clip(np.asarray(colour) * (1 + rng.normal(0, 0.04)) + rng.normal(0, amount, 3), 0, 1)


def _smooth_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    coarse = rng.random((cells + 1, cells + 1))
    fine = ndimage.zoom(coarse, size / (cells + 1), order=1)[:size, :size]
    return (fine - fine.min()) / max(float(np.ptp(fine)), 1e-6)


def _texture(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    a, b = (_jitter(c, rng) for c in _PALETTE[category])
    if category == "stripes":
        angle = np.pi / 4 + rng.normal(0, 0.05)
        freq = 6.0 + rng.normal(0, 0.15)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    elif category == "grain":
        t = 0.6 * _smooth_noise(size, 12, rng) + 0.4 * _smooth_noise(size, 40, rng)
    elif category == "checker":
        cells = 6
        oy, ox = rng.uniform(0, 1.0 / cells, 2)
        t = ((np.floor((yy + oy) * cells) + np.floor((xx + ox) * cells)) % 2).astype(np.float64)
        t = ndimage.gaussian_filter(t, size / 200.0)
    else:
        raise ValueError(category)
    return _mix(a, b, t)


def _object(category: str, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image, object mask and the background alone (for missing parts)."""
    yy, xx = _grid(size)
    bg_col = _jitter(_BACKGROUND, rng)
    background = np.broadcast_to(bg_col, (size, size, 3)).astype(np.float64)
    a, b = (_jitter(c, rng) for c in _PALETTE[category])
    cy, cx = 0.5 + rng.normal(0, 0.02, 2)
    if category == "disc":
        r = np.hypot(yy - cy, xx - cx)
        radius = 0.32 * (1 + rng.normal(0, 0.02))
        obj = r <= radius
        ring = np.abs(r - 0.6 * radius) < 0.06 * radius
        shade = np.clip(1.0 - 0.35 * r / radius, 0, 1)
        body = _mix(b, a, shade)
        body[ring] = b
    elif category == "pill":
        ay, ax = 0.20 * (1 + rng.normal(0, 0.02)), 0.38 * (1 + rng.normal(0, 0.02))
        obj = ((yy - cy) / ay) ** 2 + ((xx - cx) / ax) ** 2 <= 1.0
        body = np.where((xx < cx)[..., None], np.asarray(a)[None, None], np.asarray(b)[None, None]).astype(np.float64)
        body = body * (1.0 - 0.25 * np.abs(yy - cy)[..., None] / ay)
    else:
        raise ValueError(category)
    img = np.where(obj[..., None], body, background)
    return img, obj, background


def _blob(size: int, cy: float, cx: float, radius: float, rng: np.random.Generator, wobble: float) -> np.ndarray:
    yy, xx = _grid(size)
    theta = np.arctan2(yy - cy, xx - cx)
    rr = radius * (1 + sum(wobble * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
                           for k in (2, 3, 5)))
    return np.hypot(yy - cy, xx - cx) <= rr


def _scratch(size: int, cy: float, cx: float, rng: np.random.Generator) -> np.ndarray:
    yy, xx = _grid(size)
    angle = rng.uniform(0, np.pi)
    length = rng.uniform(0.25, 0.4)
    width = max(3.0, size / 30) / size
    dy, dx = np.sin(angle), np.cos(angle)
    t = (yy - cy) * dy + (xx - cx) * dx  # position along the line
    d = -(yy - cy) * dx + (xx - cx) * dy  # signed distance to it
    bend = 0.02 * np.sin(t * 10 + rng.uniform(0, 2 * np.pi))
    return (np.abs(t) <= length / 2) & (np.abs(d - bend) <= width / 2)


def _contrast(img: np.ndarray, region: np.ndarray) -> np.ndarray:
    """A dark or a bright colour, whichever is farther from the region's mean."""
    mean = float(img[region].mean()) if region.any() else 0.5
    return np.array([0.04, 0.04, 0.05]) if mean > 0.45 else np.array([0.96, 0.95, 0.90])


def _paint_defect(img: np.ndarray, defect: str, rng: np.random.Generator, obj: np.ndarray | None,
                  background: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    size = img.shape[0]
    allowed = obj if obj is not None else np.ones(img.shape[:2], dtype=bool)
    inner = ndimage.binary_erosion(allowed, iterations=max(1, size // 12)) if obj is not None else allowed
    candidates = np.argwhere(inner if inner.any() else allowed)
    for _ in range(50):
        py, px = candidates[rng.integers(len(candidates))]
        cy, cx = (py + 0.5) / size, (px + 0.5) / size
        if obj is None:
            cy, cx = rng.uniform(0.2, 0.8, 2)
        out = img.copy()
        if defect == "hole":
            region = _blob(size, cy, cx, rng.uniform(0.06, 0.09), rng, 0.05) & allowed
            out[region] = np.array([0.02, 0.02, 0.02]) + 0.03 * rng.random((int(region.sum()), 1))
        elif defect == "scratch":
            region = _scratch(size, cy, cx, rng) & allowed
            out[region] = _contrast(img, region)
        elif defect == "stain":
            region = _blob(size, cy, cx, rng.uniform(0.08, 0.12), rng, 0.15) & allowed
            mean = img[region].mean(axis=0) if region.any() else np.full(3, 0.5)
            colour = max(_STAINS, key=lambda c: float(np.abs(c - mean).sum()))
            out[region] = 0.15 * img[region] + 0.85 * colour
        elif defect == "missing":
            # a bite out of the object's outline: the background shows through
            edge = np.argwhere(allowed & ~ndimage.binary_erosion(allowed))
            ey, ex = edge[rng.integers(len(edge))]
            region = _blob(size, (ey + 0.5) / size, (ex + 0.5) / size, rng.uniform(0.10, 0.14), rng, 0.1) & allowed
            out[region] = background[region]
        else:
            raise ValueError(defect)
        changed = np.any(_to_uint8(out) != _to_uint8(img), axis=2)
        if changed.sum() >= max(12, (size // 40) ** 2):
            return out, changed
    raise RuntimeError(f"could not place a {defect} defect")  # unreachable for the shipped shapes


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def _normal(category: str, size: int, rng: np.random.Generator):
    if category in TEXTURE_CATEGORIES:
        img, obj, bg = _texture(category, size, rng), None, None
    else:
        img, obj, bg = _object(category, size, rng)
    img = img + rng.normal(0, 0.015, img.shape)
    return np.clip(img, 0, 1), obj, bg


def render(category: str, split: str, index: int, size: int = 128, seed: int = 0,
           defect: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """One image (H x W x 3 uint8) and, for a defect, its exact mask (H x W bool)."""
    rng = _rng(seed, category, split, index)
    img, obj, bg = _normal(category, size, rng)
    if defect is None:
        return _to_uint8(img), None
    out, mask = _paint_defect(img, defect, rng, obj, bg)
    return _to_uint8(out), mask


def defect_types(category: str) -> tuple[str, ...]:
    return TEXTURE_DEFECTS if category in TEXTURE_CATEGORIES else OBJECT_DEFECTS


def _write_png(arr: np.ndarray, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format="PNG")


def generate_category(folder: Path, category: str, size: int, n_train: int, n_test_good: int,
                      n_test_bad: int, seed: int) -> None:
    """Write one category's MVTec tree into ``folder`` (which must not exist yet)."""
    for i in range(n_train):
        _write_png(render(category, "train", i, size, seed)[0], folder / "train" / "good" / f"{i:03d}.png")
    for i in range(n_test_good):
        _write_png(render(category, "test_good", i, size, seed)[0], folder / "test" / "good" / f"{i:03d}.png")
    kinds = defect_types(category)
    counters = dict.fromkeys(kinds, 0)
    for i in range(n_test_bad):
        d = kinds[i % len(kinds)]
        img, mask = render(category, "test_bad", i, size, seed, defect=d)
        j = counters[d]
        counters[d] += 1
        _write_png(img, folder / "test" / d / f"{j:03d}.png")
        _write_png((mask.astype(np.uint8) * 255), folder / "ground_truth" / d / f"{j:03d}_mask.png")


def generate_synthetic(root: str | Path, categories=None, size: int = 128, n_train: int = 16,
                       n_test_good: int = 8, n_test_bad: int = 12, seed: int = 0) -> Path:
    """Generate (or reuse) the synthetic set under ``root``; returns ``root``.

    Each category is written to a temporary folder and renamed into place, so a
    category folder that exists is complete.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for cat in categories or SyntheticDataset.categories:
        if cat not in SyntheticDataset.categories:
            raise DataError(f"synthetic dataset has no category {cat!r}; "
                            f"categories: {', '.join(SyntheticDataset.categories)}")
        target = root / cat
        if target.is_dir():
            continue
        with atomic_dir(target) as tmp:
            generate_category(tmp, cat, size, n_train, n_test_good, n_test_bad, seed)
    return root


class SyntheticDataset(Dataset):
    """The built-in generated set (see the module docstring)."""

    name = "synthetic"
    texture_categories = frozenset(TEXTURE_CATEGORIES)
    categories: ClassVar[tuple[str, ...]] = TEXTURE_CATEGORIES + OBJECT_CATEGORIES
    option_names = ("size", "n_train", "n_test_good", "n_test_bad", "seed", "categories")
    layout = MVTEC_LAYOUT
    needs_root = False

    def __init__(self, root=None, cache_dir=None, size: int = 128, n_train: int = 16, n_test_good: int = 8,
                 n_test_bad: int = 12, seed: int = 0, categories=None):
        super().__init__(root=root, cache_dir=cache_dir)
        self.params = {"size": int(size), "n_train": int(n_train), "n_test_good": int(n_test_good),
                       "n_test_bad": int(n_test_bad), "seed": int(seed)}
        if isinstance(categories, str):
            categories = [c.strip() for c in categories.split(",") if c.strip()]
        unknown = sorted(set(categories or ()) - set(type(self).categories))
        if unknown:
            raise ConfigError(f"dataset 'synthetic': option categories names unknown {', '.join(unknown)}; "
                              f"categories: {', '.join(type(self).categories)}")
        #: the categories a sweep lists (option ``categories``; each one is generated on first load,
        #: so the choice does not enter the cache key)
        self.selected = tuple(categories) if categories else type(self).categories
        self.options = dict(self.params)
        if categories:
            self.options["categories"] = list(self.selected)
        if self.root is None:
            key = json.dumps({"version": GENERATOR_VERSION, **self.params}, sort_keys=True)
            self.root = self.cache_dir / "synthetic" / hashlib.sha1(key.encode()).hexdigest()[:12]

    @classmethod
    def resolve_root(cls, data_root: Path | None, root: Path | None) -> Path | None:
        """Only a root named for this set; ``--data-root`` holds the user's data, never generated files."""
        del data_root
        return root

    def list_categories(self) -> list[str]:
        return list(self.selected)

    def load(self, category: str) -> CategorySplit:
        generate_synthetic(self.root, [category], **self.params)
        split = load_mvtec_like(self, category)
        split.meta = {"generator_version": GENERATOR_VERSION, **self.params}
        return split
