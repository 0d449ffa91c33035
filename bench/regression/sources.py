"""Where the records of a comparison come from: a results folder, a run id, or a git commit.

A side (BASE or HEAD of ``compare``) is

* a results folder (a path holding ``records/``),
* a run id (a sub-folder of ``--results-root``, default ``results/``), or
* a git commit (hash prefix or ref such as ``HEAD~1``): the records whose
  ``provenance.git.commit`` is that commit, searched in ``--results-dir``
  (repeatable; default: every results folder under the results root). The
  same cell found in several folders: the latest record (``time_utc``) wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from fsadbench.core.errors import ConfigError
from fsadbench.core.gitinfo import resolve_commit
from fsadbench.results.comparability import commit_summary
from fsadbench.results.records import CellKey, Record, RecordStore


@dataclass
class Side:
    """One side of a comparison: its records (one per cell) and where they came from."""

    spec: str
    kind: str  # "folder", "run", "commit", "records"
    source: str
    records: list[Record]

    @property
    def by_cell(self) -> dict[CellKey, Record]:
        return {r.cell: r for r in self.records}

    def describe(self) -> str:
        return f"`{self.spec}` ({self.kind}: {self.source}; {len(self.records)} record(s); " \
               f"{commit_summary(self.records)})"


def record_time(r: Record) -> str:
    return str((r.provenance or {}).get("time_utc") or "")


def latest_per_cell(records: Iterable[Record]) -> list[Record]:
    """One record per cell: the latest by ``provenance.time_utc``; sorted by cell."""
    best: dict[CellKey, Record] = {}
    for r in records:
        k = r.cell
        if k not in best or record_time(r) > record_time(best[k]):
            best[k] = r
    return [best[k] for k in sorted(best, key=lambda c: (c.method, c.dataset, c.category, c.shots, c.seed))]


def results_folders(root: str | Path) -> list[Path]:
    """Every results folder (one holding ``records/``) at depth 0-2 under ``root``."""
    root = Path(root)
    found = [p.parent for pat in ("records", "*/records", "*/*/records") for p in root.glob(pat) if p.is_dir()]
    return sorted(set(found))


def scan_folders(results_dirs: Sequence[str | Path] | None, results_root: str | Path = "results") -> list[Path]:
    """The folders given (each must hold ``records/``), or every results folder under the root."""
    folders = [Path(d) for d in results_dirs] if results_dirs else results_folders(results_root)
    missing = [str(d) for d in folders if not (Path(d) / "records").is_dir()]
    if missing:
        raise ConfigError(f"--results-dir {', '.join(missing)}: no records/ sub-folder there")
    return folders


def load_side(spec: str, results_dirs: Sequence[str | Path] | None = None,
              results_root: str | Path = "results", what: str = "side") -> Side:
    """Resolve BASE or HEAD: results folder, then run id, then git commit (see the module doc)."""
    p = Path(spec)
    if p.is_dir():
        if not (p / "records").is_dir():
            raise ConfigError(f"{what} {spec!r}: folder has no records/ sub-folder; give a results folder "
                              f"(the --results-dir of a run), a run id under {results_root}/, or a commit")
        return Side(spec, "folder", str(p), RecordStore(p).records())
    run = Path(results_root) / spec
    if "/" not in spec and (run / "records").is_dir():
        return Side(spec, "run", str(run), RecordStore(run).records())
    folders = scan_folders(results_dirs, results_root)
    full = resolve_commit(spec)
    prefix = (full or spec).lower()
    if len(prefix) < 4 or any(ch not in "0123456789abcdef" for ch in prefix):
        raise ConfigError(f"{what} {spec!r} is not a results folder, not a run id under {results_root}/ "
                          f"and not a git commit; give one of those three")
    recs = [r for d in folders for r in RecordStore(d)
            if str(((r.provenance or {}).get("git") or {}).get("commit") or "").lower().startswith(prefix)]
    if not recs:
        where = ", ".join(map(str, folders)) or f"(no results folders under {results_root}/)"
        raise ConfigError(f"{what} {spec!r}: no records made at commit {prefix[:12]} in {where}; "
                          f"pass --results-dir with the folder that holds them")
    return Side(spec, "commit", prefix[:12] + " in " + ", ".join(map(str, folders)), latest_per_cell(recs))


def side_from_records(records: Iterable[Record], name: str = "records") -> Side:
    return Side(name, "records", name, latest_per_cell(records))
