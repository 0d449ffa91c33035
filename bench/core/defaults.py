"""Defaults every layer agrees on: backbone names and the cache folder (no torch here)."""

from __future__ import annotations

import os
from pathlib import Path

TINY_MODEL = "fsad-tiny-vit"  # shipped random config for tests and the offline pipeline check
DEFAULT_MODEL = "ViT-B-16-plus-240"  # the papers' protocol (WinCLIP, PromptAD, AnoPLe, APT)
DEFAULT_PRETRAINED = "laion400m_e32"
RANDOM = "none"  # --pretrained none: random weights, said in every table


def default_cache_dir() -> Path:
    """Feature cache and generated data: ``$FSADBENCH_CACHE`` or ``~/.cache/fsadbench``."""
    return Path(os.environ.get("FSADBENCH_CACHE", Path.home() / ".cache" / "fsadbench"))
