"""Per-image scores (and, with ``--save-maps``, maps) stored beside each record, for rescoring without a refit.

Layout: ``<results_dir>/records/<method>/<dataset>/<category>/k<shots>_s<seed>.scores.npz``
beside the cell's ``k<shots>_s<seed>.json``; written atomically (temp file + rename) before the record,
so a record that names a scores file always has a complete one.

Content (``numpy.savez_compressed``): ``meta`` (JSON: cell key, protocol incl. its version,
metric version, eval size, variants, image paths), ``labels`` (N, 0/1), ``pixel_truth`` (N bool:
the image's pixels are labelled, see the evaluator), ``scores_<i>`` (N float32, variant i), and
with maps ``maps_<i>`` (N x S x S float32: the maps the pixel metrics saw, i.e. after upsampling
to ``eval_size`` and the Gaussian, so rescoring them reproduces the record's numbers exactly) and
``masks`` (N x S x S ground truth, bit-packed).
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fsadbench.core.errors import BenchError
from fsadbench.core.io import atomic_write_bytes

SUFFIX = ".scores.npz"
FORMAT = "fsad-scores/1"


def scores_path(record_path: str | Path) -> Path:
    """``.../k1_s0.json`` -> ``.../k1_s0.scores.npz``."""
    p = Path(record_path)
    return p.with_name(p.name[: -len(p.suffix)] + SUFFIX if p.suffix else p.name + SUFFIX)


@dataclass
class CellScores:
    variants: list[str]
    images: list[str]  # image paths as the dataset gave them
    labels: np.ndarray  # N, 0 normal / 1 anomalous
    pixel_truth: np.ndarray  # N bool
    scores: dict[str, np.ndarray]  # variant -> N float32
    maps: dict[str, np.ndarray] | None = None  # variant -> N x S x S float32, after the protocol's post-processing
    masks: np.ndarray | None = None  # N x S x S bool
    meta: dict[str, Any] = field(default_factory=dict)  # key, protocol, metric_version, eval_size

    @property
    def has_maps(self) -> bool:
        return self.maps is not None and self.masks is not None

    def save(self, path: str | Path) -> Path:
        arrays: dict[str, np.ndarray] = {
            "meta": np.frombuffer(json.dumps({**self.meta, "format": FORMAT, "variants": self.variants,
                                              "images": self.images}).encode(), dtype=np.uint8),
            "labels": np.asarray(self.labels, dtype=np.int8), "pixel_truth": np.asarray(self.pixel_truth, dtype=bool)}
        for i, v in enumerate(self.variants):
            arrays[f"scores_{i}"] = np.asarray(self.scores[v], dtype=np.float32)
            if self.has_maps:
                arrays[f"maps_{i}"] = np.asarray(self.maps[v], dtype=np.float32)
        if self.has_maps:
            m = np.asarray(self.masks, dtype=bool)
            arrays["masks"] = np.packbits(m.reshape(m.shape[0], -1), axis=1)
            arrays["mask_shape"] = np.asarray(m.shape, dtype=np.int64)
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(Path(path), buf.getvalue())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path, maps: bool = True) -> "CellScores":
        p = Path(path)
        try:
            with np.load(p, allow_pickle=False) as z:
                meta = json.loads(bytes(z["meta"]).decode())
                variants = list(meta.pop("variants"))
                images = list(meta.pop("images"))
                scores = {v: z[f"scores_{i}"] for i, v in enumerate(variants)}
                has = maps and "masks" in z.files
                mp = {v: z[f"maps_{i}"] for i, v in enumerate(variants)} if has else None
                masks = None
                if has:
                    shape = tuple(int(x) for x in z["mask_shape"])
                    n_px = shape[1] * shape[2]
                    masks = np.unpackbits(z["masks"], axis=1, count=n_px).astype(bool).reshape(shape)
                return cls(variants, images, z["labels"].astype(np.int64), z["pixel_truth"].astype(bool), scores,
                           mp, masks, meta)
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # truncated too
            raise BenchError(f"scores file {p} is unreadable ({exc}); recompute the cell with --force") from exc


def metrics_from_scores(cs: CellScores, variant: str, device=None) -> tuple[dict[str, float | None], dict[str, str]]:
    """A variant's metrics recomputed from stored scores, as :class:`CategoryEvaluator` computes them.

    Image metrics from the scores and labels; pixel metrics (AUROC, AP, F1-max, AUPRO) from the stored
    maps and masks of the images with pixel truth, only when the maps were saved (else absent).
    """
    from fsadbench.protocol.evaluator import pixel_truth_reasons
    from fsadbench.protocol.metrics import PixelMetrics, image_metrics

    img = image_metrics(np.asarray(cs.scores[variant], dtype=np.float64), cs.labels)
    undefined = dict(img.pop("undefined", {}) or {})
    metrics = dict(img)
    if cs.has_maps:
        pix = PixelMetrics(device=device)
        for i in np.flatnonzero(cs.pixel_truth):
            pix.add(cs.maps[variant][i], cs.masks[i])
        p = pix.compute()
        anomalous = np.asarray(cs.labels) == 1  # an anomalous image has pixel truth iff it has a mask file
        masked = int((anomalous & cs.pixel_truth).sum())
        undefined.update(pixel_truth_reasons(p.pop("undefined", {}) or {}, masked, int(anomalous.sum()) - masked))
        metrics.update(p)
    return metrics, undefined


class ScoreCollector:
    """Gathers one category's per-image scores (and maps) batch by batch, in test order."""

    def __init__(self, save_maps: bool = False):
        self.save_maps = save_maps
        self.images: list[str] = []
        self.labels: list[int] = []
        self.truth: list[bool] = []
        self.scores: dict[str, list[np.ndarray]] = {}
        self.maps: dict[str, list[np.ndarray]] = {}
        self.masks: list[np.ndarray] = []

    def add_batch(self, images: Sequence[str], labels: Sequence[int], truth: Sequence[bool],
                  masks: Sequence[np.ndarray]) -> None:
        self.images += [str(i) for i in images]
        self.labels += [int(x) for x in labels]
        self.truth += [bool(x) for x in truth]
        if self.save_maps:
            self.masks += [np.asarray(m, dtype=bool) for m in masks]

    def add_variant(self, variant: str, scores: np.ndarray, maps: Any = None) -> None:
        self.scores.setdefault(variant, []).append(np.asarray(scores, dtype=np.float32).reshape(-1))
        if self.save_maps and maps is not None:
            arr = maps.numpy() if hasattr(maps, "numpy") else np.asarray(maps)
            self.maps.setdefault(variant, []).append(arr.astype(np.float32, copy=False))

    def result(self, meta: dict[str, Any]) -> CellScores:
        variants = list(self.scores)
        maps = {v: np.concatenate(self.maps[v]) for v in variants} if self.save_maps and self.maps else None
        masks = np.stack(self.masks) if maps is not None else None
        return CellScores(variants, self.images, np.asarray(self.labels, dtype=np.int64),
                          np.asarray(self.truth, dtype=bool), {v: np.concatenate(self.scores[v]) for v in variants},
                          maps, masks, meta)
