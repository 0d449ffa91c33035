"""The record store: one JSON record per cell, written atomically, never silently replaced.

A cell is (method id, dataset, category, shots, seed); its record holds the
metrics of every variant of that one fit (so the variants of a fit land
together or not at all). Layout::

    <results_dir>/records/<method id>/<dataset>/<category>/k<shots>_s<seed>.json
    <results_dir>/superseded/<same path without .json>.<old config hash>.json

Every path component taken from data goes through :func:`encode_component`,
an injective encoding (names that differ only by case, a space or an
underscore, or punctuation land in different files, also on case-insensitive
file systems).

Writes go to a temp file in the same folder, are fsync'ed, then renamed over
the final name (:func:`fsadbench.core.io.atomic_write_text`): a killed writer
leaves no partial record (at most a stray ``.tmp-*`` file, ignored), a full
disk leaves no partial file and an error naming the folder. A done record (ok
or not applicable) is never overwritten by a record with another
``config_hash`` (the resume key): it is moved to ``superseded/`` first and the
store says what changed.

A file that is not a valid record (bad JSON, truncated, the wrong shape:
:func:`fsadbench.results.schema.validate_record`) is named in a warning, moved
to ``<results_dir>/corrupt/records/...`` and its cell counts as not done.

Schema (``SCHEMA_VERSION``): see :class:`Record` fields. Version 2 added
``identity`` (the resume key's parts), ``plan`` (the categories, shots and
seeds the run planned) and resolved method options; version 3 names the
backbone's family (``backbone.family``: open_clip, timm, torchvision), since a
method may run on its own backbone. Older records load through :func:`migrate`
(``migrated_from`` says so). Readers refuse a newer version with a clear
message.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from fsadbench.core.errors import BenchError
from fsadbench.core.io import atomic_write_text, set_aside
from fsadbench.results.schema import SchemaError, validate_record

SCHEMA_VERSION = 3
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_NA = "not_applicable"
DONE_STATUSES = (STATUS_OK, STATUS_NA)
SUPERSEDED_DIR = "superseded"

_VERBATIM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.[],=+")
_MAX_COMPONENT = 150


def encode_component(text: str) -> str:
    """An injective, file-system-safe path component for a name.

    Lowercase letters, digits and ``_ - . [ ] , = +`` stay as they are (so
    ``apt[la=false]`` and ``metal_nut`` keep their names); an uppercase letter
    becomes ``^`` + its lowercase; every other character (space, ``/``, ``%``,
    ``^``, non-ASCII, a leading dot) becomes ``%XX`` per UTF-8 byte; the empty
    name is ``%``. Names longer than 150 characters once encoded keep 100 and
    end in ``%-`` + a sha1 of the whole name (a marker no short encoding holds).
    """
    if text == "":
        return "%"
    out = []
    for i, ch in enumerate(text):
        if ch in _VERBATIM and not (i == 0 and ch == "."):
            out.append(ch)
        elif "A" <= ch <= "Z":
            out.append("^" + ch.lower())
        else:
            out.extend(f"%{b:02x}" for b in ch.encode("utf-8"))
    s = "".join(out)
    if len(s) > _MAX_COMPONENT:
        s = s[:100] + "%-" + hashlib.sha1(text.encode("utf-8")).hexdigest()[:24]
    return s


def decode_component(s: str) -> str:
    """Inverse of :func:`encode_component` (for names that were not shortened)."""
    if s == "%":
        return ""
    if "%-" in s:
        raise ValueError(f"{s!r} is a shortened name; it cannot be decoded")
    out, buf, i = [], bytearray(), 0
    while i < len(s):
        if s[i] == "%":
            buf.append(int(s[i + 1:i + 3], 16))
            i += 3
            continue
        if buf:
            out.append(buf.decode("utf-8"))
            buf = bytearray()
        if s[i] == "^":
            out.append(s[i + 1].upper())
            i += 2
        else:
            out.append(s[i])
            i += 1
    if buf:
        out.append(buf.decode("utf-8"))
    return "".join(out)


@dataclass(frozen=True)
class CellKey:
    method: str  # method id (name + options)
    dataset: str
    category: str
    shots: int
    seed: int

    def relpath(self) -> Path:
        return Path(encode_component(self.method)) / encode_component(self.dataset) / \
            encode_component(self.category) / f"k{int(self.shots)}_s{int(self.seed)}.json"

    def __str__(self) -> str:
        return f"{self.method} | {self.dataset}/{self.category} | {self.shots}-shot | seed {self.seed}"


@dataclass
class Record:
    """One cell's result. ``metrics[variant][metric]`` are fractions in [0, 1] or None when undefined."""

    key: dict[str, Any]
    status: str
    config_hash: str  # the resume key: a hash of ``identity``
    method: dict[str, Any] = field(default_factory=dict)  # name, id, label, version, options (resolved), describe
    metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)  # variant -> metric -> reason
    n_test: int = 0
    n_test_anomalous: int = 0
    timings: dict[str, float] = field(default_factory=dict)
    manifest: list[dict[str, str]] = field(default_factory=list)
    encoder: dict[str, Any] = field(default_factory=dict)  # feature-cache counters for this cell
    protocol: dict[str, Any] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)  # name, fingerprint, root, meta
    provenance: dict[str, Any] = field(default_factory=dict)  # git, packages, device, time
    config: dict[str, Any] = field(default_factory=dict)  # the full resolved run config
    metric_version: str = ""
    error: str | None = None
    identity: dict[str, Any] = field(default_factory=dict)  # everything that can change a number (hashed)
    plan: dict[str, Any] = field(default_factory=dict)  # categories, shots, seeds the run planned
    migrated_from: int | None = None  # schema version this record was read as, when older
    schema_version: int = SCHEMA_VERSION

    @property
    def cell(self) -> CellKey:
        return CellKey(**self.key)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True, allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "record") -> "Record":
        v = d.get("schema_version", 0)
        if v > SCHEMA_VERSION:
            raise BenchError(f"{where}: record schema version {v} is newer than this harness "
                             f"({SCHEMA_VERSION}); upgrade fsad-bench to read it")
        if v < SCHEMA_VERSION:
            d = migrate(d)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


def migrate(d: dict[str, Any]) -> dict[str, Any]:
    """An older record as the current version, ``migrated_from`` set.

    Version 0/1: no identity or plan (unknown); its ``config_hash`` was computed by the old key, so a
    rerun never takes it for done: the cell is recomputed and this record is kept aside in
    ``superseded/``. Its ``method.options`` hold only the options the user set (version 1 did not store
    the defaults). Version 2 (and older): every backbone was open_clip, so ``backbone.family`` is set to
    it; a version-2 resume key stays valid (a CLIP method's key names no family).
    """
    out = dict(d)
    out["migrated_from"] = int(d.get("schema_version", 0))
    out["schema_version"] = SCHEMA_VERSION
    out.setdefault("identity", {})
    out.setdefault("plan", {})
    if isinstance(out.get("backbone"), dict) and out["backbone"]:
        out["backbone"] = {"family": "open_clip", **out["backbone"]}
    return out


def identity_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """``["method.options.k: 2 -> 3", ...]``: the leaves that differ between two identity dicts."""
    out = []
    for k in sorted(set(old) | set(new), key=str):
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        name = f"{prefix}{k}"
        if isinstance(a, dict) and isinstance(b, dict):
            out += identity_changes(a, b, name + ".")
        elif a != b:
            out.append(f"{name}: {a!r} -> {b!r}")
    return out


class RecordStore:
    """Records of one results folder. ``log`` hears about records moved to ``superseded/``."""

    def __init__(self, results_dir: str | Path, log: Callable[[str], None] | None = None):
        self.root = Path(results_dir)
        self.records_dir = self.root / "records"
        self.superseded_dir = self.root / SUPERSEDED_DIR
        self.log = log

    def path(self, key: CellKey) -> Path:
        return self.records_dir / key.relpath()

    def load(self, key: CellKey) -> Record | None:
        p = self.path(key)
        if not p.is_file():
            return None
        return self.read(p)

    def read(self, p: Path) -> Record | None:
        """The record at ``p``; a file that is not a valid record is set aside (named) and read as missing."""
        try:
            seen = os.stat(p)
            d = json.loads(p.read_bytes())
            version = d.get("schema_version") if isinstance(d, dict) else None
            if isinstance(version, int) and version > SCHEMA_VERSION:
                return Record.from_dict(d, where=str(p))  # refuses it: newer, not corrupt
            validate_record(d)
            return Record.from_dict(d, where=str(p))
        except FileNotFoundError:
            return None  # set aside by another reader meanwhile
        except (ValueError, TypeError) as exc:  # JSON, UTF-8 and schema errors
            why = str(exc) if isinstance(exc, SchemaError) else f"not valid JSON: {exc}"
            set_aside(p, self.root, why, seen)
            return None

    def is_done(self, key: CellKey, config_hash: str) -> bool:
        r = self.load(key)
        return r is not None and r.status in DONE_STATUSES and r.config_hash == config_hash

    def write(self, record: Record) -> Path:
        """Write ``record``; a done record with another resume key is moved to ``superseded/`` first."""
        p = self.path(record.cell)
        old = self.read(p)  # None when there is none
        if old is not None and old.status in DONE_STATUSES and old.config_hash != record.config_hash:
            if old.identity:
                changes = identity_changes(old.identity, record.identity)
            else:  # a migrated record has no resume key; a hand-made one may not either
                changes = [] if old.migrated_from is None else \
                    [f"record schema {old.migrated_from} (no resume key recorded)"]
            self.set_aside(old, "; ".join(changes) or f"config hash {old.config_hash} -> {record.config_hash}")
        atomic_write_text(p, record.to_json())
        return p

    def set_aside(self, record: Record, reason: str = "") -> Path | None:
        """Move ``record``'s file to ``superseded/`` (kept, never deleted); returns where it went."""
        src = self.path(record.cell)
        if not src.is_file():
            return None
        stem = self.superseded_dir / record.cell.relpath().with_suffix("")
        dest = stem.with_name(f"{stem.name}.{record.config_hash or 'nohash'}.json")
        n = 2
        while dest.exists():
            dest = stem.with_name(f"{stem.name}.{record.config_hash or 'nohash'}-{n}.json")
            n += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dest)
        if self.log is not None:
            self.log(f"kept aside {src.relative_to(self.root)} -> {dest.relative_to(self.root)}"
                     + (f" ({reason})" if reason else ""))
        return dest

    def superseded(self) -> list[Record]:
        """Records moved aside, oldest path order."""
        if not self.superseded_dir.is_dir():
            return []
        return [r for p in sorted(self.superseded_dir.rglob("*.json")) for r in [self.read(p)] if r is not None]

    def __iter__(self) -> Iterator[Record]:
        """One record per cell. A file at a non-canonical path (written under an older path scheme) counts
        only when no record sits at its cell's canonical path."""
        if not self.records_dir.is_dir():
            return iter(())
        found: list[tuple[bool, Record]] = []
        for p in sorted(self.records_dir.rglob("*.json")):
            if p.name.startswith(".tmp-"):
                continue
            r = self.read(p)
            if r is not None:
                found.append((p == self.path(r.cell), r))
        canonical = {r.cell for ok, r in found if ok}
        seen: set[CellKey] = set()
        out = []
        for ok, r in found:
            if (ok or r.cell not in canonical) and r.cell not in seen:
                seen.add(r.cell)
                out.append(r)
        return iter(out)

    def records(self) -> list[Record]:
        return list(self)
