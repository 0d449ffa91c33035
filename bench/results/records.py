"""The record store: one JSON record per cell, written atomically.

A cell is (method id, dataset, category, shots, seed); its record holds the
metrics of every variant of that one fit (so the variants of a fit land
together or not at all). Layout::

    <results_dir>/records/<method id>/<dataset>/<category>/k<shots>_s<seed>.json

Writes go to a temp file in the same folder, are fsync'ed, then renamed over
the final name (:func:`fsadbench.core.io.atomic_write_text`): a killed writer
leaves no partial record (at most a stray ``.tmp-*`` file, ignored), a full
disk leaves no partial file and an error naming the folder.

A file that is not a valid record (bad JSON, truncated, the wrong shape:
:func:`fsadbench.results.schema.validate_record`) is named in a warning, moved
to ``<results_dir>/corrupt/records/...`` and its cell counts as not done.

Schema (``SCHEMA_VERSION``): see :class:`Record` fields. Readers refuse a newer
major version with a clear message.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fsadbench.core.errors import BenchError
from fsadbench.core.io import atomic_write_text, set_aside
from fsadbench.results.schema import SchemaError, validate_record

SCHEMA_VERSION = 1
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_NA = "not_applicable"
DONE_STATUSES = (STATUS_OK, STATUS_NA)

_SAFE = re.compile(r"[^A-Za-z0-9_.\-\[\],=+]")


def safe_name(text: str) -> str:
    """A path component for a name (method ids keep their brackets and options)."""
    s = _SAFE.sub("_", text)
    return s if len(s) <= 120 else s[:100] + "-" + __import__("hashlib").sha1(s.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class CellKey:
    method: str  # method id (name + options)
    dataset: str
    category: str
    shots: int
    seed: int

    def relpath(self) -> Path:
        return Path(safe_name(self.method)) / safe_name(self.dataset) / safe_name(self.category) / \
            f"k{self.shots}_s{self.seed}.json"

    def __str__(self) -> str:
        return f"{self.method} | {self.dataset}/{self.category} | {self.shots}-shot | seed {self.seed}"


@dataclass
class Record:
    """One cell's result. ``metrics[variant][metric]`` are fractions in [0, 1] or None when undefined."""

    key: dict[str, Any]
    status: str
    config_hash: str
    method: dict[str, Any] = field(default_factory=dict)  # name, id, label, options, variants, describe
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
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


class RecordStore:
    def __init__(self, results_dir: str | Path):
        self.root = Path(results_dir)
        self.records_dir = self.root / "records"

    def path(self, key: CellKey) -> Path:
        return self.records_dir / key.relpath()

    def load(self, key: CellKey) -> Record | None:
        p = self.path(key)
        if not p.is_file():
            return None
        return self._read(p)

    def _read(self, p: Path) -> Record | None:
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
        p = self.path(record.cell)
        atomic_write_text(p, record.to_json())
        return p

    def __iter__(self) -> Iterator[Record]:
        if not self.records_dir.is_dir():
            return iter(())
        return (r for p in sorted(self.records_dir.rglob("*.json")) if not p.name.startswith(".tmp-")
                for r in [self._read(p)] if r is not None)

    def records(self) -> list[Record]:
        return list(self)
