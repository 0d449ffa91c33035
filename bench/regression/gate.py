"""The committed baselines and the smoke regression gate (``tests/gate``), and the ``baseline`` command.

``gate(preset, head_dir)`` compares a fresh run of a preset with its committed
baseline (``results/baselines/<preset>``) strictly: every baseline cell must be
present and unchanged beyond 0.001 pp; head is narrowed to the preset's cells (other pipeline checks
written into the same folder are neither gated nor listed).
A baseline written by an older harness (record schema 1) is read through the
record migration; its resume keys differ from a fresh run's (listed as notes),
its numbers are compared as usual.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable

from fsadbench.core.errors import ConfigError
from fsadbench.core.io import storage_error
from fsadbench.regression.compare import Comparison, compare
from fsadbench.regression.sources import load_side

BASELINES_DIR = Path("results") / "baselines"
# pp, either direction. Deterministic for one machine and one torch thread count; across thread counts
# full-tensor reductions may differ (up to 1.4e-4 pp seen on APT between OMP_NUM_THREADS=1 and the
# default), which this tolerance covers. Tests pin one torch thread (tests/conftest.py).
GATE_TOL = 1e-3
# the dataset fingerprint is left out: it hashes file bytes, and PNG bytes may differ between zlib builds
# while pixels do not; the gate's strict cell check catches any change in the data that matters
GATE_CHECKS = ("metric_version", "backbone", "protocol")


def run_preset(preset: str, results_dir: str | Path, cache_dir: str | Path | None = None,
               force: bool = False, log: Callable[[str], None] | None = None):
    """Run a preset sweep into ``results_dir`` (local executor, the CLI's path); returns its summary."""
    from fsadbench.run import sweep
    from fsadbench.run.config import build_config

    overrides: dict[str, Any] = {"results_dir": str(results_dir)}
    if cache_dir is not None:
        overrides["cache_dir"] = str(cache_dir)
    cfg = build_config(preset, None, overrides)
    return sweep(cfg, "local", force=force, log=log)


def gate(preset: str, head_dir: str | Path, baseline_dir: str | Path | None = None,
         tol: float = GATE_TOL) -> Comparison:
    """Compare a fresh run of ``preset`` (in ``head_dir``) with its committed baseline, strictly."""
    base_dir = Path(baseline_dir) if baseline_dir else BASELINES_DIR / preset
    base = load_side(str(base_dir), what="baseline")
    if not base.records:
        raise ConfigError(f"baseline {base_dir} holds no records; create it with "
                          f"`python run_bench.py baseline --preset {preset}`")
    head = load_side(str(head_dir), what="head")
    return compare(base, preset_cells(head, preset), tol=tol, strict=True, checks=GATE_CHECKS)


def preset_cells(side, preset: str):
    """``side`` narrowed to the cells of ``preset`` (other pipeline checks in the folder are not gated)."""
    from dataclasses import replace

    from fsadbench.run.api import invocation_scope
    from fsadbench.run.config import build_config

    scope = invocation_scope(build_config(preset))
    return replace(side, records=[r for r in side.records if scope.holds(r.key)])


def write_baseline(preset: str, out: str | Path | None = None, cache_dir: str | Path | None = None,
                   log: Callable[[str], None] | None = None):
    """Run ``preset`` from scratch into ``out`` (default results/baselines/<preset>); returns (summary, folder).

    The previous baseline is kept aside and put back when the run fails or any cell fails.
    """
    out = Path(out) if out else BASELINES_DIR / preset
    old = out.parent / f".{out.name}.old"
    try:
        if old.exists():
            shutil.rmtree(old)
        if out.exists():
            out.rename(old)
    except OSError as exc:
        raise storage_error(exc, out.parent, out.name) from exc
    try:
        summary = run_preset(preset, out, cache_dir, force=True, log=log)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if old.exists():
            old.rename(out)
        raise
    if summary.failed:
        shutil.rmtree(out, ignore_errors=True)
        if old.exists():
            old.rename(out)
    elif old.exists():
        shutil.rmtree(old)
    return summary, out
