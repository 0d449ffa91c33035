"""Where a number came from: git state, package versions, device, time."""

from __future__ import annotations

import datetime as _dt
import os
import platform
from functools import lru_cache
from importlib import metadata
from typing import Any

from fsadbench.core.gitinfo import REPO_ROOT, git, tree_state

_PACKAGES = ("fsad-bench", "torch", "torchvision", "open_clip_torch", "numpy", "scipy", "scikit-learn", "pandas")


def git_state(repo: str | None = None) -> dict[str, Any]:
    """Commit + dirty flag (+ repo root) of the git checkout at ``repo``: by default the current directory,
    i.e. the working repository the user runs in (their plugins, configs, local edits), not wherever the
    package is installed; the package's own checkout when the current directory is in none."""
    return _git_state(os.path.abspath(repo or os.getcwd()))


@lru_cache(maxsize=16)
def _git_state(cwd: str) -> dict[str, Any]:
    where = cwd
    state = dict(tree_state(cwd))
    if state["commit"] is None and cwd != str(REPO_ROOT):
        where, state = str(REPO_ROOT), dict(tree_state(REPO_ROOT))
    if state["commit"] is not None:
        state["repo"] = git(["rev-parse", "--show-toplevel"], where)
    return state


@lru_cache(maxsize=1)
def package_versions() -> dict[str, str | None]:
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def device_info(device) -> dict[str, Any]:
    import torch

    d = {"device": str(device), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
         "python": platform.python_version()}
    if getattr(device, "type", str(device)) == "cuda" and torch.cuda.is_available():
        d["gpu"] = torch.cuda.get_device_name(device)
    return d


def provenance(device) -> dict[str, Any]:
    return {
        "git": git_state(),
        "packages": package_versions(),
        "device": device_info(device),
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
