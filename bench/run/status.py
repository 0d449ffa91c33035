"""``python run_bench.py status --results-dir DIR``: done / running / failed / pending cells of a sweep.

The cells come from the sweep's plan: the config in ``<DIR>/run.json`` (written
by every executor when a sweep starts), or ``--preset`` / ``--config`` given
here, or, failing both, the config stored in the newest record. A cell is

* ``done``: a record with status ok or not_applicable and the plan's config hash;
* ``running``: not done, and a live claim under ``<DIR>/claims/`` names it
  (its pid is alive on this host, or it runs elsewhere and its heartbeat is
  younger than its lease); stale claims are listed apart and ignored;
* ``failed``: a failed record with the plan's config hash (rerun to retry);
* ``pending``: no record, or one from another config (outdated).

Beside the cells: the SLURM tasks submitted for this folder (``slurm_jobs.json``),
each with its job id and state from ``squeue`` (:mod:`fsadbench.run.slurmjobs`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from fsadbench.run.config import RunConfig, apply_mapping, build_config
from fsadbench.core.errors import BenchError, ConfigError, error_line
from fsadbench.run.claims import ClaimInfo, ClaimStore
from fsadbench.results.records import DONE_STATUSES, STATUS_FAILED, RecordStore
from fsadbench.run.identity import cell_hash
from fsadbench.run.plan import plan_jobs
from fsadbench.run.resources import DataSource
from fsadbench.run.slurmjobs import array_states

STATES = ("done", "running", "failed", "pending")


@dataclass
class SweepStatus:
    cells: dict[str, str] = field(default_factory=dict)  # str(CellKey) -> state
    running: dict[str, ClaimInfo] = field(default_factory=dict)  # str(CellKey) -> live claim
    errors: dict[str, str] = field(default_factory=dict)  # failed cell -> last error line
    stale: list[tuple[ClaimInfo, str]] = field(default_factory=list)
    outdated: int = 0  # pending cells whose record has another config hash
    live: dict[str, ClaimInfo] = field(default_factory=dict)  # claimed cell relpath -> live claim
    unplanned: list[str] = field(default_factory=list)  # why older sweep configs could not be planned
    arrays: list[dict[str, Any]] = field(default_factory=list)  # SLURM arrays submitted here (slurmjobs)

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATES, 0)
        for s in self.cells.values():
            out[s] += 1
        return out

    def of(self, state: str) -> list[str]:
        return [c for c, s in self.cells.items() if s == state]


def config_for(results_dir: Path, preset: str | None = None, config_file: str | None = None) -> tuple[RunConfig, str]:
    """The run config to plan from, and where it came from."""
    if preset or config_file:
        cfg = build_config(preset, config_file)
        src = " + ".join(x for x in (f"preset {preset}" if preset else "", config_file or "") if x)
    else:
        manifest = results_dir / "run.json"
        data: dict[str, Any] | None = None
        src = str(manifest)
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text())["config"]
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigError(f"{manifest} is unreadable ({exc}); pass --preset or --config") from exc
        else:
            recs = [r for r in RecordStore(results_dir) if r.config]
            if not recs:
                raise ConfigError(f"{results_dir}: no run.json and no records; pass the sweep's --preset or "
                                  f"--config, or start the sweep first")
            newest = max(recs, key=lambda r: str(r.provenance.get("time_utc", "")))
            data, src = newest.config, f"the config stored in the newest record ({newest.cell})"
        cfg = apply_mapping(RunConfig(), data, src)
    cfg.results_dir = str(results_dir)
    return cfg, src


def plans_for(results_dir: Path, latest: RunConfig) -> list[RunConfig]:
    """Every distinct sweep config started in ``results_dir`` (``run.json``'s ``plans``), oldest first;
    ``[latest]`` when the manifest lists none (an older manifest, or a plan given by --preset / --config)."""
    try:
        plans = json.loads((results_dir / "run.json").read_text()).get("plans") or []
        cfgs = [apply_mapping(RunConfig(), p, f"{results_dir / 'run.json'} plans") for p in plans]
    except (OSError, ValueError, AttributeError, ConfigError):
        return [latest]
    for c in cfgs:
        c.results_dir = str(results_dir)
    return cfgs or [latest]


def sweep_status(cfg: RunConfig | Sequence[RunConfig]) -> SweepStatus:
    """State of every planned cell of ``cfg`` (or of several sweep configs: their cells, once each) in
    its ``results_dir``."""
    cfgs = [cfg] if isinstance(cfg, RunConfig) else list(cfg)
    st = _claims_status(cfgs[-1])
    for i, c in enumerate(reversed(cfgs)):  # the latest config decides a cell that several plans share
        try:
            _plan_status(c, st)
        except BenchError as exc:
            if i == 0:
                raise
            st.unplanned.append(error_line(str(exc)))  # an older sweep whose data moved: said, not fatal
    st.arrays = array_states(cfgs[-1].results_dir)
    return st


def recent_sweeps(results_root: Path = Path("results")) -> list[Path]:
    """Folders directly under ``results_root`` holding a sweep's ``run.json``, the most recent first."""
    try:
        found = [p.parent for p in results_root.glob("*/run.json") if p.is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda d: (d / "run.json").stat().st_mtime, reverse=True)


def _claims_status(cfg: RunConfig) -> SweepStatus:
    claims = ClaimStore(cfg.results_dir)
    now = time.time()
    st = SweepStatus()
    for c in claims:
        why = c.stale_reason(now)
        if why is None:
            for rel in c.cells:
                st.live[rel] = c
        else:
            st.stale.append((c, why))
    return st


def _plan_status(cfg: RunConfig, st: SweepStatus) -> None:
    store = RecordStore(cfg.results_dir)
    live = st.live
    data = DataSource(cfg)  # datasets only: no backbone, no feature store
    for job in plan_jobs(cfg, data):
        h = cell_hash(cfg, data, job)
        for key in job.keys():
            name = str(key)
            if name in st.cells:
                continue  # already stated by a later sweep config
            rec = store.load(key)
            if rec is not None and rec.config_hash == h and rec.status in DONE_STATUSES:
                state = "done"
            elif str(key.relpath()) in live:
                state = "running"
                st.running[name] = live[str(key.relpath())]
            elif rec is not None and rec.config_hash == h and rec.status == STATUS_FAILED:
                state = "failed"
                st.errors[name] = error_line(rec.error)
            else:
                state = "pending"
                st.outdated += rec is not None
            st.cells[name] = state


def _age(t: float) -> str:
    s = max(0.0, time.time() - t)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min"


def render(st: SweepStatus, results_dir: Path, source: str, show: Sequence[str] = ("running", "failed")) -> str:
    n = st.counts()
    lines = [f"results: {results_dir} (plan from {source})",
             f"{len(st.cells)} cell(s): " + ", ".join(f"{n[s]} {s}" for s in STATES)]
    lines += [f"(an older sweep config of this folder was left out: {why})" for why in st.unplanned]
    if st.outdated:
        lines.append(f"({st.outdated} pending cell(s) have a record from another config; they will be recomputed)")
    for a in st.arrays:
        lines.append(f"SLURM array {a['array']} (submitted {_age(a['submitted'])} ago):")
        for t in a["tasks"]:
            where = f" on {t['NodeList']}" if t["NodeList"] else ""
            why = f" ({t['Reason']})" if t["Reason"] and t["Reason"] != "None" and not where else ""
            lines.append(f"  {t['job']}  {t['State']}{where}{why}  {t['label']}")
    if any(t["State"] == "?" for a in st.arrays for t in a["tasks"]):
        lines.append("  (no answer from squeue here: SLURM states unknown; run status on a node of the cluster)")
    if "running" in show and st.running:
        lines.append("running:")
        for cell, c in st.running.items():
            lines.append(f"  {cell}  [{c.owner or 'pid ' + str(c.pid)} on {c.host}, started {_age(c.started)} ago, "
                         f"heartbeat {_age(c.heartbeat)} ago]")
    if "failed" in show and st.errors:
        lines.append("failed (rerun to retry):")
        lines.extend(f"  {cell}: {err}" for cell, err in st.errors.items())
    if "pending" in show and n["pending"]:
        lines.append("pending:")
        lines.extend(f"  {c}" for c in st.of("pending"))
    if "done" in show and n["done"]:
        lines.append("done:")
        lines.extend(f"  {c}" for c in st.of("done"))
    if st.stale:
        lines.append(f"{len(st.stale)} stale claim(s) ignored (their cells are redone by the next run):")
        lines.extend(f"  {c.path.relative_to(results_dir)}: {why}" for c, why in st.stale)
    return "\n".join(lines) + "\n"


def status_json(st: SweepStatus) -> str:
    return json.dumps({"counts": st.counts(), "cells": st.cells, "errors": st.errors,
                       "running": {k: {"pid": c.pid, "host": c.host, "heartbeat": c.heartbeat, "owner": c.owner}
                                   for k, c in st.running.items()},
                       "stale_claims": [str(c.path) for c, _ in st.stale], "slurm_arrays": st.arrays}, indent=1)
