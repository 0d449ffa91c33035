"""Files in and out, torch-free: atomic writes, corrupt files set aside, images and masks read as 8-bit.

Writes. :func:`atomic_write_bytes` writes a temp file in the target's folder
(``os.write`` until every byte is out, then ``os.fsync``) and renames it over
the target, so a reader sees the old file or the new one, never a part. Any
failure (a kill, ENOSPC, a read-only folder) removes the temp file; an
``OSError`` becomes a :class:`~fsadbench.core.errors.StorageError` naming the
folder and the fix. :func:`atomic_dir` does the same for a folder tree.

Corrupt files. :func:`set_aside` moves a file that failed validation to
``<root>/corrupt/<its path under root>`` and logs one warning naming both, so
the next reader counts its cell as missing instead of crashing.

Images. :func:`read_rgb` maps every PIL mode to 8-bit RGB the same way on
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

:func:`read_mask`: a pixel is anomalous when any colour channel is non-zero
(alpha ignored), in every mode, 16-bit and float included.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from fsadbench.core.errors import DataError, StorageError

log = logging.getLogger("fsadbench")

TMP_PREFIX = ".tmp-"  # readers skip names starting with this
CORRUPT_DIR = "corrupt"

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


# -- writes -------------------------------------------------------------------------------------
def storage_error(exc: OSError, folder: Path, what: str = "") -> StorageError:
    """``exc`` raised while writing into ``folder`` as one line: the folder, the cause, the fix."""
    target = f" ({what})" if what else ""
    if exc.errno in _FULL:
        msg = (f"no space left on the device holding {folder}{target}; free space there or point the "
               f"output (--results-dir / --cache-dir / --output) at another disk")
    elif exc.errno in _READ_ONLY:
        msg = (f"cannot write to {folder}{target}: {exc.strerror or exc}; make it writable or point the "
               f"output (--results-dir / --cache-dir / --output) at a writable folder")
    else:
        msg = f"cannot write to {folder}{target}: {exc.strerror or exc}"
    err = StorageError(msg)
    err.errno = exc.errno
    return err


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename); nothing partial is ever left.

    ``fsync=False`` skips the flush to disk for files that only need atomicity, not durability (claims).
    """
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=TMP_PREFIX, suffix=path.suffix)
    except StorageError:
        raise
    except OSError as exc:
        raise storage_error(exc, folder, path.name) from exc
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, StorageError):
            raise storage_error(exc, folder, path.name) from exc
        raise


def atomic_write_text(path: str | Path, text: str, fsync: bool = True) -> None:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a temporary sibling folder that is renamed to ``target`` when the block succeeds.

    A killed or failed block leaves no ``target`` (only a hidden temporary folder
    that the next attempt ignores), so "``target`` exists" means "complete". When
    another process created ``target`` first, its copy is kept and ours dropped.
    A full disk or read-only parent is a :class:`StorageError` naming the folder.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        work = tmp / target.name  # made by mkdir, so it gets the usual permissions (mkdtemp's are 0700)
        work.mkdir()
    except OSError as exc:
        raise storage_error(exc, target.parent, target.name) from exc
    try:
        yield work
        try:
            os.rename(work, target)
        except OSError:
            if not target.is_dir():
                raise
    except OSError as exc:
        if isinstance(exc, StorageError) or exc.errno not in _FULL + (errno.EROFS,):
            raise
        raise storage_error(exc, target.parent, target.name) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- corrupt files --------------------------------------------------------------------------------
def set_aside(path: Path, root: Path, reason: str, seen: os.stat_result | None = None) -> Path | None:
    """Move the corrupt file ``path`` to ``<root>/corrupt/<path under root>`` and warn once, naming it.

    ``seen``: the ``os.stat`` of the bytes found corrupt. When the file was replaced meanwhile (a
    writer renamed a good one over it) it is left alone. Returns the new path, or None when the file
    stays (replaced, already moved, or the folder is read-only: then it is only named).
    """
    path, root = Path(path), Path(root)
    try:
        rel = path.relative_to(root)
    except ValueError:
        rel = Path(path.name)
    dest = root / CORRUPT_DIR / rel
    try:
        now = os.stat(path)
        if seen is not None and (now.st_ino, now.st_mtime_ns) != (seen.st_ino, seen.st_mtime_ns):
            return None  # replaced by a writer since it was read: not the corrupt bytes any more
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
    except FileNotFoundError:
        return None  # another reader moved it first
    except OSError as exc:
        log.warning("warning: %s is corrupt (%s) and could not be moved aside (%s); it is ignored",
                    path, reason, exc.strerror or exc)
        return None
    if seen is not None and os.stat(dest).st_ino != seen.st_ino:  # lost a race with a writer: put it back
        try:
            os.link(dest, path)
            os.unlink(dest)
        except OSError:
            pass
        return None
    log.warning("warning: %s is corrupt (%s); moved to %s, its cell counts as not done", path, reason, dest)
    return dest


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


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path)
    except FileNotFoundError as exc:
        raise DataError(f"image file {path} does not exist") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"image file {path} cannot be read ({exc}); replace or remove it") from exc


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
    non-zero (alpha ignored), so a dark palette colour is never lost to a
    luminance rounding. With ``expected_hw`` (the image's height, width) a mask
    of another size is an error naming the file.
    """
    from PIL import Image

    path = Path(path)
    try:
        with Image.open(path) as im:
            single = im.mode in ("L", "1", "I", "F") or im.mode.startswith("I;16")
            arr = np.asarray(im if single else im.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DataError(f"mask file {path} cannot be read ({exc}); replace or remove it") from exc
    if arr.ndim == 3:
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
