"""The one place that runs git: the working tree's state, resolving a ref, a commit's subject line.

Every call goes through :func:`git` (argument list, never a shell string, a
timeout, ``None`` when git is missing or fails). A ref or commit id that came
from a user is passed after ``--end-of-options`` (and refused when it starts
with ``-``), so it can never be read as an option.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parents[2]


def git(args: Sequence[str], cwd: str | Path | None = None, timeout: float = 10) -> str | None:
    """stdout of ``git <args>`` (stripped), or None when git is missing, fails or times out."""
    try:
        out = subprocess.run(["git", *args], cwd=str(cwd or REPO_ROOT), capture_output=True, text=True,
                             timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _ref_ok(ref: str) -> bool:
    return bool(ref) and not ref.startswith("-") and "\n" not in ref and "\0" not in ref


def tree_state(cwd: str | Path | None = None) -> dict[str, object]:
    """``{"commit": full sha or None, "dirty": bool or None}`` of the working tree at ``cwd``."""
    commit = git(["rev-parse", "HEAD"], cwd)
    if not commit:
        return {"commit": None, "dirty": None}
    # results/ holds outputs (the committed smoke baseline among them): writing records there while a
    # run records its provenance must not make the code it ran look modified
    status = git(["status", "--porcelain", "--untracked-files=no", "--", ":(top)", ":(top,exclude)results"], cwd)
    return {"commit": commit, "dirty": None if status is None else status != ""}


def resolve_commit(ref: str, cwd: str | Path | None = None) -> str | None:
    """The full sha a ref (``HEAD~1``, a tag, a hash prefix) names, or None."""
    if not _ref_ok(ref):
        return None
    return git(["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"], cwd) or None


HEX_COMMIT = re.compile(r"[0-9a-fA-F]{4,40}")


def commit_subject(commit: str, cwd: str | Path | None = None) -> str:
    """The subject line of ``commit`` (4-40 hex digits, e.g. read from a record) when git knows it, else ''.

    Anything but a hex id never reaches git (a record cannot smuggle in an option such as ``--output=F``).
    """
    if not HEX_COMMIT.fullmatch(commit):
        return ""
    return git(["log", "-1", "--format=%s", "--end-of-options", commit, "--"], cwd) or ""
