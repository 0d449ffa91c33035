"""Checks before the first cell: a results folder that cannot be written is refused, naming the path.

:func:`check_results_dir` creates the folder when needed and writes (then
removes) a probe file in it and in its ``records/`` and ``claims/`` folders when
they exist, so a read-only folder, a path under a file or a missing permission
is a one-line error up front instead of a traceback after the first fit.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fsadbench.core.errors import ConfigError


def refuse_file_in_the_way(results_dir: str | Path) -> Path:
    """The results folder's path, or a ConfigError when it or a parent is a file (before any planning)."""
    root = Path(results_dir)
    for p in (root, *root.parents):
        if p.is_dir():
            break
        if p.exists():
            raise ConfigError(f"results folder {root}: {p} is a file, not a folder; choose another --results-dir")
    return root


def check_results_dir(results_dir: str | Path) -> Path:
    """The results folder, checked writable; ConfigError naming the path otherwise."""
    root = refuse_file_in_the_way(results_dir)
    where = root
    try:
        root.mkdir(parents=True, exist_ok=True)
        for where in (root, root / "records", root / "claims"):
            if where == root or where.is_dir():
                fd, probe = tempfile.mkstemp(dir=where, prefix=".tmp-write-check-")
                os.close(fd)
                os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"results folder {where} cannot be written ({exc.strerror or exc}); "
                          f"fix its permissions or choose another --results-dir") from None
    return root
