"""Where a number came from: git state, package versions, device, time."""

from __future__ import annotations

import datetime as _dt
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = ("fsad-bench", "torch", "torchvision", "open_clip_torch", "numpy", "scipy", "scikit-learn", "pandas")


@lru_cache(maxsize=1)
def git_state(repo: str | None = None) -> dict[str, Any]:
    cwd = repo or str(Path(__file__).resolve().parents[2])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit or None, "dirty": dirty if commit else None}


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
