"""``rescore``: recompute the metrics of stored cells from their score files, without a refit.

Every cell stores its per-image scores (and with ``--save-maps`` its maps as
evaluated) beside its record (:mod:`fsadbench.results.scores`). Rescoring is
valid when those inputs are what the current code would produce: the record's
protocol version (upsampling, smoothing, mask handling) is the current
``PROTOCOL_VERSION``, and the parts of its resume key (``Record.identity``) that
need no data (method version and resolved options, encoder-path versions,
backbone, protocol) equal today's under the record's own metric version. Only
the metric definitions (``METRIC_VERSION``) may differ; the data is not read
(its fingerprint stays the record's). Image metrics come from the scores, pixel
metrics from the stored maps; without maps a cell is rescored only when its
metric version is the current one (its pixel metrics are then kept). The reasons
of undefined metrics are the sweep's (``no masks: ...`` where a category's
anomalies have no mask file, from the stored labels and pixel-truth flags).

A rescored record gets the new metrics, the current metric version in its
identity and the hash of that identity (so a rerun counts it as done), and ``provenance.rescored`` (when, from
which metric version, at which commit).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from fsadbench.core.errors import BenchError
from fsadbench.core.provenance import git_state
from fsadbench.protocol.evaluator import nan_to_none
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.results.records import STATUS_OK, Record, RecordStore
from fsadbench.results.scores import CellScores, metrics_from_scores, scores_path
from fsadbench.run.config import PROTOCOL_VERSION, RunConfig, apply_mapping, stable_hash
from fsadbench.run.identity import static_identity
from fsadbench.run.plan import Job

RESCORED, UNCHANGED, REFUSED = "rescored", "unchanged", "refused"


@dataclass
class Rescore:
    cell: str
    status: str  # rescored | unchanged | refused
    reason: str = ""
    changed: dict[str, Any] = field(default_factory=dict)  # "variant/metric" -> (old, new)


def job_of(record: Record) -> tuple[RunConfig, Job]:
    """The run config stored in a record and the (one-category) job of its cell."""
    cfg = apply_mapping(RunConfig(), record.config, f"the config of record {record.cell}")
    k = record.key
    method = next((m for m in cfg.methods if m.id == k["method"]), None)
    dataset = next((d for d in cfg.datasets if d.name == k["dataset"]), None)
    if method is None or dataset is None:
        raise KeyError(f"method {k['method']!r} / dataset {k['dataset']!r} not in the record's config")
    scope = (record.method or {}).get("fit_scope", "category")
    return cfg, Job(method, dataset, [k["category"]], int(k["shots"]), int(k["seed"]), scope)


def rescore_record(store: RecordStore, record: Record, write: bool = True, device=None) -> Rescore:
    cell = str(record.cell)
    path = scores_path(store.path(record.cell))
    if not path.is_file():
        return Rescore(cell, REFUSED, f"no scores file {path.name} (made before scores were stored): "
                                      f"recompute the cell with --force")
    version = (record.protocol or {}).get("version")
    if version != PROTOCOL_VERSION:
        return Rescore(cell, REFUSED, f"protocol {version!r} is not the current {PROTOCOL_VERSION!r}: the stored "
                                      f"maps are not what the protocol produces now; recompute with --force")
    if not record.identity:
        return Rescore(cell, REFUSED, "the record has no resume key (written by an older harness): recompute "
                                      "the cell with --force")
    try:
        cfg, job = job_of(record)
        now = static_identity(cfg, job, record.metric_version)
    except Exception as exc:  # noqa: BLE001 - a plugin gone, an option renamed: not rescorable
        return Rescore(cell, REFUSED, f"its configuration no longer resolves ({exc}); recompute with --force")
    stored = {**record.identity, "dataset": {k: v for k, v in (record.identity.get("dataset") or {}).items()
                                             if k != "data"}}
    changed = sorted(k for k in set(now) | set(stored) if now.get(k) != stored.get(k))
    if changed:
        return Rescore(cell, REFUSED, f"its {', '.join(changed)} changed since it was computed, so its scores "
                                      f"are stale; recompute with --force")
    try:
        scores = CellScores.load(path)
    except BenchError as exc:  # a truncated or damaged file: this cell is refused, naming it (was: rescore aborted)
        return Rescore(cell, REFUSED, str(exc))
    image_level = (record.method or {}).get("outputs") == ["image"]  # no maps by design, pixel metrics n/a
    if not scores.has_maps and not image_level and record.metric_version != METRIC_VERSION:
        return Rescore(cell, REFUSED, "the metric version changed and the cell stored no maps, so its pixel "
                                      "metrics cannot be recomputed; recompute with --force --save-maps")
    metrics, undefined = {}, {}
    for v in scores.variants:
        m, u = metrics_from_scores(scores, v, device)
        metrics[v] = {**(record.metrics.get(v, {}) if not scores.has_maps else {}),
                      **{k: nan_to_none(x) for k, x in m.items()}}
        undefined[v] = {**(record.undefined.get(v, {}) if not scores.has_maps else {}), **u}
    changed = {f"{v}/{k}": (record.metrics.get(v, {}).get(k), x) for v, mv in metrics.items() for k, x in mv.items()
               if record.metrics.get(v, {}).get(k) != x}
    if not changed and undefined == record.undefined and record.metric_version == METRIC_VERSION:
        return Rescore(cell, UNCHANGED)  # a new reason alone (e.g. "no masks" for "one class only") is rewritten
    if write:
        record.provenance = {**(record.provenance or {}), "rescored": {
            "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "from_metric_version": record.metric_version, "git": git_state()}}
        record.metrics, record.undefined, record.metric_version = metrics, undefined, METRIC_VERSION
        record.identity = {**record.identity, "metric_version": METRIC_VERSION}
        record.config_hash = stable_hash(record.identity)
        store.write(record)
    return Rescore(cell, RESCORED, changed=changed)


def rescore_folder(results_dir: str | Path, write: bool = True, device=None) -> Iterator[Rescore]:
    """Rescore every ok record of a results folder (one :class:`Rescore` per cell, in path order)."""
    store = RecordStore(results_dir)
    for record in store:
        if record.status == STATUS_OK:
            yield rescore_record(store, record, write, device)
