"""Claim (lease) files: which runner is computing which job, so that concurrent runners share a sweep.

A claim is a small JSON file ``<results>/claims/<method>/<dataset>/<category>/k<shots>_s<seed>.claim``
(``_dataset`` as the category for a multi-class fit) holding ``pid``, ``host``,
a random ``token``, the ``started`` and ``heartbeat`` times (Unix seconds), the
``lease_s`` its owner promised to renew within, and the ``cells`` (record paths)
the job writes.

* Taking a free claim is ``open(O_CREAT | O_EXCL)``: of two runners exactly one
  wins.
* A claim is *stale* when its heartbeat is older than its ``lease_s``, or when
  it was written on this host by a pid that no longer exists (a SIGKILLed
  worker). Stale claims are ignored by ``status`` and taken over by the next
  runner: the taker holds ``<claim>.steal`` (O_EXCL) while it re-reads the claim
  and replaces it atomically (temp file + ``os.replace``), so two takers never
  both win. A ``.steal`` file older than ``STEAL_TIMEOUT_S`` is itself stale.
* The owner renews every heartbeat from a daemon thread, only while the file
  still holds its token; it removes the file when the job ends.

Records do not depend on claims for their integrity (they are written
atomically, one path per cell); claims only prevent duplicated work and let
``status`` show what is running.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from fsadbench.core.io import atomic_write_text, set_aside

DEFAULT_LEASE_S = 300.0  # a claim whose heartbeat is older than this is stale
DEFAULT_HEARTBEAT_S = 30.0
STEAL_TIMEOUT_S = 60.0
SUFFIX = ".claim"


def hostname() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """True when a process with this pid exists on this host (signal 0 probes without sending)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


@dataclass
class ClaimInfo:
    path: Path
    pid: int
    host: str
    token: str
    started: float
    heartbeat: float
    lease_s: float
    cells: list[str] = field(default_factory=list)
    owner: str = ""  # free text: executor name / job id

    @classmethod
    def read(cls, path: Path) -> "ClaimInfo | None":
        """The claim at ``path``, or None when it is absent or unreadable (a torn write is never trusted)."""
        try:
            d = json.loads(path.read_text())
            check_claim(d)
            return cls(path=path, pid=d["pid"], host=d["host"], token=d["token"], started=float(d["started"]),
                       heartbeat=float(d["heartbeat"]), lease_s=float(d.get("lease_s", DEFAULT_LEASE_S)),
                       cells=list(d.get("cells", [])), owner=d.get("owner", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def stale_reason(self, now: float | None = None) -> str | None:
        """Why this claim no longer protects its job, or None while its owner is alive."""
        now = time.time() if now is None else now
        if now - self.heartbeat > self.lease_s:
            return f"heartbeat {now - self.heartbeat:.0f} s old (lease {self.lease_s:.0f} s)"
        if self.host == hostname() and not pid_alive(self.pid):
            return f"pid {self.pid} on {self.host} is gone"
        return None

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host, "token": self.token, "started": self.started,
                           "heartbeat": self.heartbeat, "lease_s": self.lease_s, "cells": self.cells,
                           "owner": self.owner}, indent=1)


def check_claim(d: Any) -> None:
    """Raise ValueError naming the field when ``d`` is not a claim (see the module doc for the fields)."""
    def num(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if not isinstance(d, dict):
        raise ValueError(f"a claim is a JSON object, not {type(d).__name__}")
    if not (isinstance(d.get("pid"), int) and not isinstance(d["pid"], bool)):
        raise ValueError(f"claim field pid is {d.get('pid')!r}, expected an integer")
    for name in ("host", "token"):
        if not isinstance(d.get(name), str) or not d[name]:
            raise ValueError(f"claim field {name} is {d.get(name)!r}, expected a non-empty string")
    for name in ("started", "heartbeat"):
        if not num(d.get(name)):
            raise ValueError(f"claim field {name} is {d.get(name)!r}, expected Unix seconds")
    if not (num(d.get("lease_s", DEFAULT_LEASE_S)) and d.get("lease_s", DEFAULT_LEASE_S) > 0):
        raise ValueError(f"claim field lease_s is {d.get('lease_s')!r}, expected seconds > 0")
    cells = d.get("cells", [])
    if not isinstance(cells, list) or not all(isinstance(c, str) for c in cells):
        raise ValueError("claim field cells is not a list of record paths")
    if not isinstance(d.get("owner", ""), str):
        raise ValueError("claim field owner is not a string")


def _write_replace(path: Path, text: str) -> None:
    atomic_write_text(path, text, fsync=False)  # atomic, not durable: a lost claim only means redone work


class ClaimStore:
    """Claims of one results folder, for one process (thread-safe)."""

    def __init__(self, results_dir: str | Path, lease_s: float = DEFAULT_LEASE_S,
                 heartbeat_s: float | None = None, owner: str = ""):
        if lease_s <= 0:
            raise ValueError("lease_s must be > 0")
        self.dir = Path(results_dir) / "claims"
        self.lease_s = float(lease_s)
        self.heartbeat_s = float(heartbeat_s) if heartbeat_s else min(DEFAULT_HEARTBEAT_S, self.lease_s / 4)
        self.owner = owner
        self._held: dict[Path, ClaimInfo] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    # -- paths --------------------------------------------------------------------------
    def path_for(self, relpath: Path) -> Path:
        """The claim file of a job whose first record path (relative to records/) is ``relpath``."""
        return self.dir / relpath.with_suffix(SUFFIX)

    # -- acquire / release --------------------------------------------------------------
    def acquire(self, relpath: Path, cells: Sequence[str] = ()) -> ClaimInfo | None:
        """Take the claim, or return None when a live owner holds it."""
        path = self.path_for(relpath)
        path.parent.mkdir(parents=True, exist_ok=True)
        now = time.time()
        mine = ClaimInfo(path, os.getpid(), hostname(), secrets.token_hex(8), now, now, self.lease_s,
                         list(cells), self.owner)
        if not _create_exclusive(path, mine.to_json()) and not self._take_over(path, mine):
            return None
        with self._lock:
            self._held[path] = mine
        self._ensure_heartbeat()
        return mine

    def _take_over(self, path: Path, mine: ClaimInfo) -> bool:
        current = ClaimInfo.read(path)
        if current is not None and current.stale_reason() is None:
            return False
        if current is None and path.exists() and time.time() - _mtime(path) < 5.0:
            return False  # being written right now (O_EXCL create, then write): not ours to judge yet
        steal = path.with_name(path.name + ".steal")
        try:
            fd = os.open(steal, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            if time.time() - _mtime(steal) > STEAL_TIMEOUT_S:
                steal.unlink(missing_ok=True)  # a taker died holding it; the next attempt retries
            return False
        os.close(fd)
        try:
            again = ClaimInfo.read(path)
            if again is None and not path.exists():  # released meanwhile: take it the ordinary way
                return _create_exclusive(path, mine.to_json())
            if again is None and time.time() - _mtime(path) < 5.0:
                return False
            if again is not None and again.stale_reason() is None:
                return False  # renewed or taken meanwhile
            _write_replace(path, mine.to_json())
            return True
        finally:
            steal.unlink(missing_ok=True)

    def release(self, claim: ClaimInfo) -> None:
        with self._lock:
            self._held.pop(claim.path, None)
        current = ClaimInfo.read(claim.path)
        if current is not None and current.token == claim.token:
            claim.path.unlink(missing_ok=True)

    def release_all(self) -> None:
        with self._lock:
            held = list(self._held.values())
        for c in held:
            self.release(c)
        self._stop.set()

    # -- heartbeat ------------------------------------------------------------------------
    def heartbeat(self) -> None:
        """Renew every claim this process holds (called by the daemon thread)."""
        with self._lock:
            held = list(self._held.values())
        now = time.time()
        for c in held:
            current = ClaimInfo.read(c.path)
            if current is None or current.token != c.token:
                continue  # released, or taken over after we stalled past the lease
            c.heartbeat = now
            try:
                _write_replace(c.path, c.to_json())
            except OSError:
                pass  # the next beat retries; the lease is several beats long

    def _ensure_heartbeat(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive() and not self._stop.is_set():
                return
            stop = self._stop = threading.Event()

            def beat() -> None:
                while not stop.wait(self.heartbeat_s):
                    self.heartbeat()

            self._thread = threading.Thread(target=beat, name="fsadbench-claims-heartbeat", daemon=True)
            self._thread.start()

    # -- reading ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ClaimInfo]:
        """Every valid claim; an invalid one older than a write takes is named and set aside."""
        if not self.dir.is_dir():
            return iter(())
        return (c for p in sorted(self.dir.rglob("*" + SUFFIX)) if not p.name.startswith(".tmp-")
                for c in [ClaimInfo.read(p) or self._set_aside(p)] if c is not None)

    def _set_aside(self, path: Path) -> None:
        seen = _stat(path)
        if seen is not None and time.time() - seen.st_mtime >= 5.0:  # younger: maybe being written now
            set_aside(path, self.dir.parent, "not a valid claim", seen)

    def live(self) -> list[ClaimInfo]:
        return [c for c in self if c.stale_reason() is None]

    def describe(self) -> dict[str, Any]:
        return {"lease_s": self.lease_s, "heartbeat_s": self.heartbeat_s}


def _create_exclusive(path: Path, text: str) -> bool:
    """Create ``path`` with ``text`` unless it exists (O_EXCL: of concurrent creators exactly one wins)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return True


def _mtime(p: Path) -> float:
    st = _stat(p)
    return st.st_mtime if st is not None else 0.0


def _stat(p: Path) -> os.stat_result | None:
    try:
        return p.stat()
    except OSError:
        return None
