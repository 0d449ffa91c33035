"""Where a number came from: git state, package versions, device, time."""

from __future__ import annotations

import datetime as _dt
import platform
from functools import lru_cache
from importlib import metadata
from typing import Any

from fsadbench.core.gitinfo import tree_state

_PACKAGES = ("fsad-bench", "torch", "torchvision", "open_clip_torch", "numpy", "scipy", "scikit-learn", "pandas")


@lru_cache(maxsize=1)
def git_state(repo: str | None = None) -> dict[str, Any]:
    """The commit and dirty flag of the harness's own tree (or of ``repo``), read once per process."""
    return tree_state(repo)


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
