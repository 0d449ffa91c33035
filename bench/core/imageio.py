"""Image and mask files read as 8-bit RGB / bool, the same way everywhere (torch-free).

:func:`read_rgb` maps every PIL mode to 8-bit RGB the same way on
every machine:

* ``RGB``, ``L``, ``1`` (0/255), ``CMYK``, ``YCbCr``, ``HSV``, ``RGBX``, ``P``
  without transparency: PIL's own conversion;
* 16-bit (``I;16``, ``I;16B``, ``I;16L``) and 32-bit integer ``I`` holding
  0..65535: scaled, ``round(v * 255 / 65535)`` (a 16-bit PNG is not clipped
  to white);
* float ``F``: values in [0, 1] are scaled by 255, values in [0, 255] are taken
  as levels (rounded); anything else (negative, larger, NaN) is an error;
* with alpha (``RGBA``, ``LA``, ``PA``, ``RGBa``, ``La``, ``P`` with a
  transparent index): composited over **black**, ``rgb * alpha / 255``;
* anything else (``LAB``, ``I`` beyond 16 bits, ...): a :class:`DataError`
  naming the file and the fix. EXIF orientation is not applied (masks are
  stored unrotated too).

:func:`read_mask`: a pixel is anomalous when any colour channel is non-zero,
in every mode, 16-bit and float included; a mask annotated only in its alpha
channel (colour zero everywhere, alpha not constant) is read from the alpha.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fsadbench.core.errors import DataError


# -- images -----------------------------------------------------------------------------------------
_BITS = {"1": 1, "I": 32, "F": 32}
_PIL_RGB = ("RGB", "L", "1", "CMYK", "YCbCr", "HSV", "RGBX")
_ALPHA = ("RGBA", "LA", "PA")


@dataclass(frozen=True)
class ImageInfo:
    """What ``check-data`` reports about an image file: its PIL mode, bits per channel and size."""

    mode: str
    bits: int
    height: int
    width: int

    @property
    def label(self) -> str:
        note = mode_note(self.mode, self.bits)
        return f"{self.mode} {self.bits}-bit" + (f" ({note})" if note else "")


def mode_note(mode: str, bits: int = 8) -> str:
    """How :func:`read_rgb` treats a mode, for reports: '' (as is), a note, or 'unsupported'."""
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return "alpha composited over black"
    if mode.startswith("I;16") and not mode.endswith("S") or mode == "I":
        return "scaled to 8-bit"
    if mode == "F":
        return "float, 0..1 or 0..255 to 8-bit"
    if mode in _PIL_RGB or mode == "P":
        return "reduced to 8-bit" if bits > 8 else ""
    return "unsupported"


def _bits(im: Any) -> int:
    if im.mode.startswith("I;16"):
        return 16
    tile = getattr(im, "tile", None) or []
    args = getattr(tile[0], "args", None) if tile else None
    raw = args if isinstance(args, str) else (args[0] if isinstance(args, tuple) and args else "")
    if isinstance(raw, str) and ";16" in raw:
        return 16  # e.g. a 48-bit RGB PNG, which PIL reduces to 8 bits per channel
    return _BITS.get(im.mode, 8)


def _too_large(path: Path, what: str, pixels: int | None = None) -> DataError:
    from PIL import Image

    size = f" ({pixels:,} pixels)" if pixels else ""
    return DataError(f"{what} file {path} is too large to decode safely{size}, over the limit of "
                     f"{Image.MAX_IMAGE_PIXELS:,} pixels (a decompression bomb or a wrong header); "
                     f"replace, downscale or remove it")


def _open(path: Path, what: str = "image"):
    """``Image.open`` whose errors name the file; an image over PIL's pixel limit is a :class:`DataError`
    (PIL warns beyond ``MAX_IMAGE_PIXELS`` and raises beyond twice that; both stop here, before decoding)."""
    from PIL import Image, UnidentifiedImageError

    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)  # refused below instead
    try:
        im = Image.open(path)
    except FileNotFoundError as exc:
        raise DataError(f"{what} file {path} does not exist") from exc
    except Image.DecompressionBombError as exc:
        raise _too_large(path, what) from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{what} file {path} cannot be read ({exc}); replace or remove it") from exc
    limit = Image.MAX_IMAGE_PIXELS
    if limit and im.width * im.height > limit:
        im.close()
        raise _too_large(path, what, im.width * im.height)
    return im


def image_info(path: str | Path, decode: bool = False) -> ImageInfo:
    """Mode, bit depth and size of an image file (``decode`` also decodes it, catching truncation)."""
    path = Path(path)
    with _open(path) as im:
        try:
            if decode:
                im.load()
            return ImageInfo(im.mode, _bits(im), im.height, im.width)
        except (OSError, ValueError) as exc:
            raise DataError(f"image file {path} cannot be read ({exc}); replace or remove it") from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file from its header; errors name the file."""
    info = image_info(path)
    return info.height, info.width


def _levels16(arr: np.ndarray, path: Path, mode: str) -> np.ndarray:
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise DataError(f"image file {path} is mode {mode} with values {arr.min()}..{arr.max()}, beyond 16 bits; "
                        f"save it as 8- or 16-bit (PNG) or RGB")
    return ((arr.astype(np.int64) * 255 + 32767) // 65535).astype(np.uint8)


def _levels_float(arr: np.ndarray, path: Path) -> np.ndarray:
    lo, hi = (float(np.min(arr)), float(np.max(arr))) if arr.size else (0.0, 0.0)
    if not np.isfinite(arr).all() or lo < 0 or hi > 255:
        raise DataError(f"image file {path} is a float image with values {lo:g}..{hi:g} (or NaN); expected "
                        f"0..1 or 0..255: save it as 8-bit")
    scale = 255.0 if hi <= 1.0 else 1.0
    return np.clip(np.rint(arr.astype(np.float64) * scale), 0, 255).astype(np.uint8)


def to_rgb(im: Any, path: str | Path = "<image>") -> Any:
    """An open PIL image as 8-bit RGB by the rules of the module docstring."""
    from PIL import Image

    path = Path(path)
    mode = im.mode
    if mode == "P" and "transparency" in im.info:
        mode = "PA"
    if mode in _PIL_RGB or mode == "P":
        return im.convert("RGB")
    if mode in ("RGBa", "La"):  # premultiplied: the colour channels already are the image over black
        arr = np.asarray(im)
        return Image.fromarray(np.ascontiguousarray(arr[..., :3] if mode == "RGBa" else arr[..., 0]),
                               "RGB" if mode == "RGBa" else "L").convert("RGB")
    if mode in _ALPHA:
        rgba = np.asarray(im.convert("RGBA")).astype(np.uint16)
        rgb = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255
        return Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode.startswith("I;16") and not mode.endswith("S") or mode == "I":
        return Image.fromarray(_levels16(np.asarray(im), path, mode), "L").convert("RGB")
    if mode == "F":
        return Image.fromarray(_levels_float(np.asarray(im), path), "L").convert("RGB")
    raise DataError(f"image file {path} has PIL mode {mode}, which has no defined mapping to RGB; "
                    f"save it as 8-bit RGB or grayscale")


def read_rgb(path: str | Path) -> Any:
    """Decode an image file as an 8-bit RGB PIL image (see the module docstring); errors name the file."""
    path = Path(path)
    with _open(path) as im:
        try:
            im.load()
            return to_rgb(im, path)
        except DataError:
            raise
        except (OSError, ValueError) as exc:
            raise DataError(f"image file {path} cannot be read ({exc}); replace or remove it") from exc


def read_mask(path: str | Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """A ground-truth mask as H x W bool: any non-zero pixel is anomalous (0/255, 0/1, 16-bit, float).

    Single-channel modes are read as stored; any other mode (palette, RGB, RGBA,
    LA) is converted to RGB and a pixel counts when any colour channel is
    non-zero, so a dark palette colour is never lost to a luminance rounding.
    Alpha: a mask whose colour channels are zero everywhere but whose alpha
    varies (an annotation drawn only in the alpha channel, e.g. opaque black on
    a transparent background) is read from the alpha channel, alpha > 0
    anomalous; otherwise alpha is ignored. check-data and the sweep both read
    masks here, so they see the same pixels. With ``expected_hw`` (the image's
    height, width) a mask of another size is an error naming the file.
    """

    path = Path(path)
    try:
        with _open(path, "mask") as im:
            single = im.mode in ("L", "1", "I", "F") or im.mode.startswith("I;16")
            alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or im.mode == "P" and "transparency" in im.info
            arr = np.asarray(im if single else im.convert("RGBA" if alpha else "RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"mask file {path} cannot be read ({exc}); replace or remove it") from exc
    if alpha:
        colour, a = arr[..., :3].max(axis=2), arr[..., 3]
        arr = a if not colour.any() and a.min() != a.max() else colour
    elif arr.ndim == 3:
        arr = arr.max(axis=2)
    if expected_hw is not None and tuple(arr.shape[:2]) != tuple(expected_hw):
        raise DataError(
            f"mask {path} is {arr.shape[1]}x{arr.shape[0]} but its image is {expected_hw[1]}x{expected_hw[0]}; "
            f"fix or regenerate the mask (python run_bench.py check-data lists all such files)")
    return np.nan_to_num(arr, nan=0.0) > 0 if arr.dtype.kind == "f" else arr > 0


def read_mask_resized(path: str | Path, size: int) -> np.ndarray:
    """A mask at size x size as float32 0/1: bilinear resize of its 0/255 image, then > 127.5."""
    from PIL import Image

    img = Image.fromarray(read_mask(path).astype(np.uint8) * 255)
    return (np.asarray(img.resize((size, size), Image.BILINEAR), dtype=np.float32) > 127.5).astype(np.float32)
