"""Maps -> metrics for one category, streamed image by image.

Protocol (defaults are the paper protocol; every value is recorded):
maps are upsampled bilinearly (align_corners=False) to ``eval_size`` x
``eval_size``, then smoothed with a Gaussian (kernel truncated at 4 sigma,
reflect padding, as scipy.ndimage); masks are resized with nearest neighbour to
the same size. The Gaussian is a :class:`Smoothing`: ``sigma`` pixels of the
image size at which the method's reference applies it (``Method.sigma_size``):
the evaluation size itself (sigma as is), an S x S image (sigma * eval_size / S),
or each test image's original H x W (sigma * eval_size / H down, / W across:
the same blur on the squashed map as the reference's on the original). Pixel metrics are computed
over all test pixels of the category; image metrics over its test images.
An anomalous image without a mask (a user folder with partial masks) counts
for image metrics only: its pixels are unknown, not normal, so they are left
out of the pixel metrics rather than scored as all-normal.
An image-level method (``Method.produces == ("image",)``) hands no maps: its
evaluator (``pixel=False``) computes the image metrics only, and every pixel
metric is None with the reason ``IMAGE_LEVEL`` ("n/a, image-level method").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from fsadbench.core.errors import DataError
from fsadbench.core.io import image_size, read_mask
from fsadbench.protocol.metrics import PixelMetrics, image_metrics
from fsadbench.core.types import IMAGE_LEVEL, PIXEL_METRICS, Prediction, Sample


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """Normalised 1-D Gaussian, radius round(truncate * sigma) (scipy.ndimage's rule)."""
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def _symmetric_index(n: int, r: int) -> torch.Tensor:
    """Indices of a length-n axis padded by r on both sides, scipy 'reflect' (d c b a | a b c d)."""
    i = torch.arange(-r, n + r) % (2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


Sigma = Union[float, "tuple[float, float]"]


def _blur_axis(x: torch.Tensor, sigma: float, across: bool) -> torch.Tensor:
    """B x 1 x H x W smoothed along W (``across``) or H, reflect padding (scipy.ndimage's)."""
    k = gaussian_kernel1d(sigma).to(x.device, x.dtype)
    r = (k.numel() - 1) // 2
    if across:
        return F.conv2d(x[..., _symmetric_index(x.shape[-1], r).to(x.device)], k.view(1, 1, 1, -1))
    return F.conv2d(x[:, :, _symmetric_index(x.shape[-2], r).to(x.device), :], k.view(1, 1, -1, 1))


def gaussian_blur(maps: torch.Tensor, sigma: Sigma) -> torch.Tensor:
    """Separable Gaussian smoothing of B x H x W maps; equals scipy.ndimage.gaussian_filter
    (mode='reflect', truncate=4) applied per map. ``sigma`` is one value or (down, across); an axis
    whose sigma is 0 (or None) is not smoothed, and no smoothing at all returns ``maps`` itself."""
    sy, sx = ((s if s and s > 0 else 0.0) for s in (sigma if isinstance(sigma, tuple) else (sigma, sigma)))
    if not sx and not sy:
        return maps
    x = maps.unsqueeze(1)
    if sx:
        x = _blur_axis(x, sx, across=True)
    if sy:
        x = _blur_axis(x, sy, across=False)
    return x.squeeze(1)


#: ``Method.sigma_size`` of a reference that smooths each image at its original height and width
ORIGINAL = "original"


@dataclass(frozen=True)
class Smoothing:
    """The Gaussian of a method's reference: ``sigma`` pixels of an image of ``size`` (None: the
    evaluation size; an int S: an S x S image; :data:`ORIGINAL`: each image's original H x W)."""

    sigma: float
    size: int | str | None = None

    def at(self, eval_size: int, image_hw: tuple[int, int] | None = None) -> tuple[float, float]:
        """(down, across) sigma in evaluation pixels; ``image_hw`` is needed for :data:`ORIGINAL`."""
        if self.size is None or not self.sigma:
            return (self.sigma, self.sigma)
        h, w = image_hw if self.size == ORIGINAL else (self.size, self.size)
        return (self.sigma * eval_size / h, self.sigma * eval_size / w)

    def uniform(self, eval_size: int) -> float | None:
        """The one sigma applied to every map at ``eval_size``, None when it depends on the image."""
        return None if self.size == ORIGINAL else self.at(eval_size)[0]

    def reference(self) -> dict[str, object] | None:
        """The record's ``sigma_reference`` ({sigma, image_size}), None when applied at the evaluation size."""
        return None if self.size is None else {"sigma": self.sigma, "image_size": self.size}


def upsample(maps: torch.Tensor, size: int) -> torch.Tensor:
    """B x h x w -> B x size x size, bilinear, align_corners=False."""
    if maps.shape[-2:] == (size, size):
        return maps
    return F.interpolate(maps.unsqueeze(1), size=(size, size), mode="bilinear", align_corners=False).squeeze(1)


def postprocess(maps: np.ndarray | torch.Tensor, size: int, sigma: Sigma | Smoothing,
                samples: Sequence[Sample] = ()) -> torch.Tensor:
    """Maps as evaluated: upsampled to ``size`` x ``size``, smoothed; a :class:`Smoothing` at the
    original size reads each of ``samples``' image size (its header) for its map's sigma."""
    t = upsample(torch.as_tensor(maps, dtype=torch.float32), size)
    if not isinstance(sigma, Smoothing):
        return gaussian_blur(t, sigma)
    if sigma.size != ORIGINAL:
        return gaussian_blur(t, sigma.at(size))
    if len(samples) != t.shape[0]:
        raise ValueError(f"smoothing at the original size needs one sample per map ({len(samples)} for {t.shape[0]})")
    return torch.cat([gaussian_blur(t[i:i + 1], sigma.at(size, _image_hw(str(s.image_path))))
                      for i, s in enumerate(samples)]) if len(samples) else t


@lru_cache(maxsize=8192)
def _mask_cached(path: str, size: int) -> np.ndarray:
    from PIL import Image

    m = read_mask(Path(path))
    img = Image.fromarray(m.astype(np.uint8) * 255)
    return np.asarray(img.resize((size, size), Image.NEAREST)) > 0


def gt_mask(sample: Sample, size: int) -> np.ndarray:
    """Ground truth at the evaluation size (all False for normals / unmasked images).

    A mask whose size differs from its image's fails with a message naming the file.
    """
    if sample.mask_path is None:
        return np.zeros((size, size), dtype=bool)
    m_hw = _image_hw(str(sample.mask_path))
    i_hw = image_size(sample.image_path)
    if m_hw != i_hw:
        raise DataError(
            f"mask {sample.mask_path} is {m_hw[1]}x{m_hw[0]} but its image {sample.image_path} is "
            f"{i_hw[1]}x{i_hw[0]}; fix or regenerate the mask (python run_bench.py check-data lists all such files)")
    return _mask_cached(str(sample.mask_path), size)


def has_pixel_truth(sample: Sample) -> bool:
    """Whether the sample's pixels are labelled: normals (all normal) and masked anomalies."""
    return not sample.label or sample.mask_path is not None


@lru_cache(maxsize=8192)
def _image_hw(path: str) -> tuple[int, int]:
    return image_size(Path(path))


class CategoryEvaluator:
    """Accumulates one variant's predictions for one category."""

    def __init__(self, eval_size: int, sigma: float | Smoothing, device: torch.device | None = None,
                 aupro: bool = True, pixel: bool = True):
        self.eval_size = eval_size
        self.with_pixel = pixel  # False: an image-level method (no maps, pixel metrics n/a)
        self.sigma = sigma if isinstance(sigma, Smoothing) else Smoothing(sigma)
        self.applied: set[tuple[float, float]] = set()  # (down, across) sigmas applied, evaluation pixels
        self.pixel = PixelMetrics(device=device, aupro=aupro)
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.unmasked = 0  # anomalous test images without a mask file (image metrics only)
        self.masked = 0  # anomalous test images with one

    def add(self, pred: Prediction, samples: Sequence[Sample], masks: Sequence[np.ndarray]) -> torch.Tensor | None:
        """Accumulate a batch; returns its maps as evaluated (B x eval_size x eval_size, after the Gaussian),
        None for an image-level evaluator (which refuses maps, as a pixel one refuses their absence)."""
        if (pred.maps is None) == self.with_pixel:
            raise ValueError("a prediction without maps for a method that makes maps" if self.with_pixel else
                             "maps from a method declared image-level (produces = ('image',))")
        self.scores.extend(float(x) for x in pred.scores)
        self.labels.extend(int(s.label) for s in samples)
        if not self.with_pixel:
            return None
        maps = postprocess(pred.maps, self.eval_size, self.sigma, samples)
        if self.sigma.size == ORIGINAL:
            self.applied.update(self.sigma.at(self.eval_size, _image_hw(str(s.image_path))) for s in samples)
        for i, s in enumerate(samples):
            if has_pixel_truth(s):
                self.pixel.add(maps[i].numpy(), masks[i])
            if s.label:
                self.masked += s.mask_path is not None
                self.unmasked += s.mask_path is None
        return maps

    def sigma_applied(self) -> dict[str, list[float]] | None:
        """The record's ``protocol.sigma_applied`` when the sigma depends on the image: the smallest and
        largest sigma applied down (``y``) and across (``x``), evaluation pixels; None when uniform."""
        if self.sigma.size != ORIGINAL or not self.applied:
            return None
        ys, xs = zip(*self.applied)
        return {"y": [min(ys), max(ys)], "x": [min(xs), max(xs)]}

    def compute(self) -> tuple[dict[str, float | None], dict[str, str]]:
        if self.with_pixel:
            pix = self.pixel.compute()
            undefined = pixel_truth_reasons(pix.pop("undefined", {}) or {}, self.masked, self.unmasked)
        else:
            names = [k for k in PIXEL_METRICS if k != "aupro" or self.pixel.with_aupro]
            pix, undefined = dict.fromkeys(names), dict.fromkeys(names, IMAGE_LEVEL)
        img = image_metrics(np.asarray(self.scores, dtype=np.float64), np.asarray(self.labels))
        undefined.update(img.pop("undefined", {}) or {})
        metrics = {**img, **pix}
        return metrics, undefined


def no_pixel_truth(masked: int, unmasked: int) -> str:
    """Why pixel metrics found no anomalous pixel in a category with ``masked`` anomalous test images with a
    mask file and ``unmasked`` without one: no masks at all, or masks that mark nothing."""
    if not masked:
        return (f"no masks: none of the {unmasked} anomalous test image(s) has a mask file, so their "
                f"pixels are unlabelled (image metrics only); add the masks (check-data lists the images)")
    extra = f"; {unmasked} more have no mask file" if unmasked else ""
    return (f"empty masks: the masks of the {masked} anomalous test image(s) mark no anomalous "
            f"pixel{extra}; check the mask files (check-data lists them)")


def pixel_truth_reasons(undefined: dict[str, str], masked: int, unmasked: int) -> dict[str, str]:
    """The pixel metrics' ``undefined`` reasons, with "one class only: no anomalous ..." replaced by
    :func:`no_pixel_truth` when the category has anomalous images (the sweep and ``rescore`` alike)."""
    out = dict(undefined)
    for name, why in undefined.items():
        if str(why).startswith("one class only: no anomalous") and masked + unmasked:
            out[name] = no_pixel_truth(masked, unmasked)
    return out


def check_finite(pred: Prediction, where: str) -> None:
    for name, arr in (("maps", pred.maps), ("scores", pred.scores)):
        if arr is None:
            continue
        bad = ~np.isfinite(arr)
        if bad.any():
            raise FloatingPointError(f"{where}: {int(bad.sum())} non-finite value(s) (NaN/inf) in {name}")


def nan_to_none(x: float | None) -> float | None:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return float(x)
