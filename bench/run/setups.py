"""Which setup each method of a results folder runs with, so two runners never supersede each other.

A record that is not done for the current cell hash is recomputed and the old one
moved to ``superseded/``; two runners started into one folder with the same method
id and different setups (backbone, precision, protocol) would do that to each other,
cell after cell. So the first runner to start a method in a folder writes its setup
to ``<results>/setups/<hash of the method id>.json`` (published with ``os.link``:
of two runners exactly one wins, the file whole), and planning refuses a run whose
setup of that method differs, naming the method, what differs and the remedy (another
``--results-dir``, or ``--force``, which replaces the setup and sets the old records
aside). ``--dry-run`` only reads.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any, Mapping

from fsadbench.core.errors import ConfigError
from fsadbench.core.io import atomic_write_text

SETUPS_DIR = "setups"


def setup_path(results_dir: str | Path, method_id: str) -> Path:
    return Path(results_dir) / SETUPS_DIR / (hashlib.sha1(method_id.encode()).hexdigest()[:16] + ".json")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _diffs(have: Mapping[str, Any], want: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(have) | set(want)):
        a, b = have.get(k), want.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _diffs(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: folder has {a!r}, this run {b!r}")
    return out


def _refusal(results_dir: str | Path, method_id: str, found: Mapping[str, Any], diffs: list[str]) -> ConfigError:
    who = f"pid {found.get('pid')} on {found.get('host')}" if found.get("pid") else "another run"
    return ConfigError(
        f"--results-dir {results_dir}: method {method_id} is set up differently there by {who} "
        f"({setup_path(results_dir, method_id)}): {'; '.join(diffs[:4])}. Two setups of one method id in one "
        f"folder would supersede each other's records: use another --results-dir, or --force to replace it")


def check_setups(results_dir: str | Path, setups: Mapping[str, Mapping[str, Any]], force: bool = False) -> None:
    """Refuse (unless ``force``) a method whose setup in ``results_dir`` differs from this run's (reads only)."""
    if force:
        return
    for mid, want in setups.items():
        found = _read(setup_path(results_dir, mid))
        if found is not None:
            diffs = _diffs(found.get("setup") or {}, want)
            if diffs:
                raise _refusal(results_dir, mid, found, diffs)


def record_setups(results_dir: str | Path, setups: Mapping[str, Mapping[str, Any]], force: bool = False) -> None:
    """Write each method's setup where none is (atomically, exactly one of two runners wins), then check them
    as :func:`check_setups` does; ``force`` replaces a different one."""
    import socket

    for mid, want in setups.items():
        path = setup_path(results_dir, mid)
        text = json.dumps({"method": mid, "setup": want, "pid": os.getpid(), "host": socket.gethostname(),
                           "written": time.time()}, indent=1, sort_keys=True, default=str)
        tmp = path.parent / f".tmp-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            atomic_write_text(tmp, text)  # whole, synced, the umask's mode; a full disk is its one-line error
            os.link(tmp, path)  # fails when the file exists: the first runner's setup stays
        except FileExistsError:
            found = _read(path) or {}
            diffs = _diffs(found.get("setup") or {}, want)
            if diffs and force:
                atomic_write_text(path, text)
            elif diffs:
                raise _refusal(results_dir, mid, found, diffs) from None
        finally:
            Path(tmp).unlink(missing_ok=True)
