"""k-shot sampling and image digests.

The k normals of a cell are drawn from the category's train/good images,
sorted by relative path, with ``numpy.random.default_rng(seed)`` choosing k
indices without replacement. The manifest (relative paths + content digests)
goes into the record so a result can be rerun on the same images.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.types import ImageRef, Sample


def file_digest(path: str | Path) -> str:
    """sha1 of a file's bytes (memoised on path, size and mtime)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError as exc:
        raise DataError(f"image file {p} does not exist") from exc
    return _digest(_resolved(str(p)), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=200_000)
def _resolved(path: str) -> str:
    return str(Path(path).resolve())  # realpath stats every component: once per path, not once per seed


@lru_cache(maxsize=200_000)
def _digest(path: str, size: int, mtime: int) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_ref(sample: Sample) -> ImageRef:
    return ImageRef(path=sample.image_path, digest=file_digest(sample.image_path), rel_path=sample.rel_path)


def sample_shots(train: Sequence[Sample], k: int, seed: int) -> list[Sample]:
    """Seeded choice of k normals from the train pool sorted by relative path."""
    if k < 0:
        raise ConfigError(f"shots must be >= 0, got {k}")
    pool = sorted(train, key=lambda s: s.rel_path or str(s.image_path))
    if k == 0:
        return []
    if k > len(pool):
        raise DataError(f"asked for {k} shots but the train pool has only {len(pool)} normal images")
    rng = np.random.default_rng(seed)
    idx = sorted(rng.choice(len(pool), size=k, replace=False).tolist())
    return [pool[i] for i in idx]


def manifest(shots: Sequence[Sample]) -> list[dict[str, str]]:
    return [{"rel_path": s.rel_path, "sha1": file_digest(s.image_path)} for s in shots]


def test_hasher(test: Sequence[Sample]) -> Any:
    """The sha1 state over a category's test part (see :func:`content_fingerprint`), to reuse per seed."""
    h = hashlib.sha1()
    for s in test:
        mask = file_digest(s.mask_path) if s.mask_path is not None else "-"
        h.update(f"{s.rel_path}|{int(s.label)}|{file_digest(s.image_path)}|{mask}\n".encode())
    h.update(b"shots\n")
    return h


def content_fingerprint(test: Sequence[Sample], shots: Sequence[Sample] = (), base: Any = None) -> str:
    """A category's data as a cell sees it: sha1 over the test images' relative paths, labels and content
    digests, their masks' content digests, and the shots' relative paths and digests.

    Any changed pixel file (image or mask), relabelled or added test image, or other shot changes it.
    ``base``: :func:`test_hasher` of ``test`` computed once (a plan of many seeds reads each file once).
    """
    h = base.copy() if base is not None else test_hasher(test)
    for s in shots:
        h.update(f"{s.rel_path}|{file_digest(s.image_path)}\n".encode())
    return h.hexdigest()[:16]
