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

Images and masks (:func:`read_rgb`, :func:`read_mask`, :func:`image_info`) live in
:mod:`fsadbench.core.imageio` and are re-exported here.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from fsadbench.core.errors import StorageError
from fsadbench.core.imageio import (ImageInfo, image_info, image_size, mode_note, read_mask,  # noqa: F401
                                    read_mask_resized, read_rgb, to_rgb)

log = logging.getLogger("fsadbench")

TMP_PREFIX = ".tmp-"  # readers skip names starting with this
CORRUPT_DIR = "corrupt"

_FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
#: every errno a write can end in that is the user's to fix (the "cannot write" messages)
WRITE_ERRNOS = _FULL + _READ_ONLY + (errno.EFBIG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST)


def current_umask() -> int:
    """The process umask, read without changing it (Linux: /proc/self/status) where possible."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (a brief window for other threads)
    os.umask(old)
    return old


# -- writes -------------------------------------------------------------------------------------
def storage_error(exc: OSError, folder: Path, what: str = "") -> StorageError:
    """``exc`` raised while writing into ``folder`` as one line: the folder, the cause, the fix."""
    target = f" ({what})" if what else ""
    if exc.errno in _FULL:
        msg = (f"no space left on the device holding {folder}{target}; free space there or point the "
               f"output (--results-dir / --cache-dir / --output) at another disk")
    elif exc.errno == errno.EFBIG:
        msg = (f"cannot write to {folder}{target}: the file exceeds the file-size limit of this process or file "
               f"system (ulimit -f); raise the limit or point the output at another disk")
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST) and _file_in_the_way(folder):
        msg = (f"cannot write to {folder}{target}: {_file_in_the_way(folder)} is a file, not a folder; "
               f"choose another path")
    elif exc.errno == errno.EISDIR:
        msg = f"cannot write {folder / what if what else folder}: it is a folder; give a file name"
    elif exc.errno in _READ_ONLY:
        msg = (f"cannot write to {folder}{target}: {exc.strerror or exc}; make it writable or point the "
               f"output (--results-dir / --cache-dir / --output) at a writable folder")
    else:
        msg = f"cannot write to {folder}{target}: {exc.strerror or exc}"
    err = StorageError(msg)
    err.errno = exc.errno
    return err


def _file_in_the_way(folder: Path) -> Path | None:
    """The nearest of ``folder`` and its parents that exists as something other than a folder."""
    for p in (folder, *folder.parents):
        if p.exists() or p.is_symlink():
            return None if p.is_dir() else p
    return None


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
            os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp makes 0600: follow the umask like open() does
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
        if isinstance(exc, StorageError) or exc.errno not in WRITE_ERRNOS:
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
