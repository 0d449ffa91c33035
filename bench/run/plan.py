"""Planning: the jobs of a sweep, which of them are still to do, and how they group onto processes.

A :class:`Job` is one fit: a single cell for per-category methods, or all
categories of a dataset for multi-class methods (``fit_scope == "dataset"``)
and for methods trained on an auxiliary dataset (``fit_scope == "auxiliary"``:
the job names it, :mod:`fsadbench.run.transfer`). A leave-one-out method (``fit_scope ==
"leave_one_out"``) has per-category jobs, each naming the target's other categories as its auxiliary set.
:func:`plan_jobs` orders per-category jobs by (dataset, category) so a
category's test images stay in the feature cache's memory while every method,
shot count and seed uses them; :func:`pending` refuses a folder holding another
run's records (:func:`check_folder`) and drops jobs whose cells all have a
record with the current cell hash (resume). :func:`job_groups` puts the jobs
of one (dataset, category) into one group, the unit an executor sends to one
process. Planning reads dataset folders but builds no model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from fsadbench.core.errors import ConfigError
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.results.records import DONE_STATUSES, STATUS_OK, CellKey, RecordStore
from fsadbench.run.codeprint import is_builtin
from fsadbench.run.config import PROTOCOL_VERSION, DatasetSpec, MethodSpec, RunConfig
from fsadbench.run.identity import cell_hash, cell_identity, method_backbone, precision, resolve_method
from fsadbench.run.transfer import (AUXILIARY_SCOPE, LEAVE_ONE_OUT_SCOPE, auxiliary_for, check_auxiliary,
                                    held_out_spec)

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.run.resources import DataSource

DATASET_SCOPE = "_dataset"  # the category part of a multi-class job's claim name
PER_CATEGORY = ("category", LEAVE_ONE_OUT_SCOPE)  # scopes whose jobs are one cell each


@dataclass
class Job:
    method: MethodSpec
    dataset: DatasetSpec
    categories: list[str]  # one for per-category methods
    shots: int
    seed: int
    scope: str = "category"
    auxiliary: DatasetSpec | None = None  # fit_scope "auxiliary": the dataset the method trains on

    def keys(self) -> list[CellKey]:
        return [CellKey(self.method.id, self.dataset.name, c, self.shots, self.seed) for c in self.categories]

    def claim_relpath(self) -> Path:
        """The claim name of a job: its cell's record path, or ``_dataset`` for a multi-class fit."""
        cat = self.categories[0] if self.scope in PER_CATEGORY else DATASET_SCOPE
        return CellKey(self.method.id, self.dataset.name, cat, self.shots, self.seed).relpath()


def plan_jobs(cfg: RunConfig, data: "DataSource") -> list[Job]:
    """Every job of ``cfg``: per-category jobs in (dataset, category) order, then multi-class jobs."""
    per_cat, per_ds = [], []
    for ds in cfg.datasets:
        data.dataset(ds)  # resolves and checks its folder before any work
        cats = data.categories(ds)
        for m in cfg.methods:
            cls, options = resolve_method(m)
            scope = cls.fit_scope_for(options)
            for k in cfg.shots:
                for s in cfg.seeds:
                    if scope == AUXILIARY_SCOPE:  # one fit on the auxiliary set, every category 0-shot
                        aux = auxiliary_for(cfg, ds, m.name)
                        check_auxiliary(data, aux, m.name, cls.auxiliary_needs_masks)
                        per_ds.append(Job(m, ds, cats, k, s, scope, aux))
                    elif scope == "dataset":
                        per_ds.append(Job(m, ds, cats, k, s, scope))
                    elif scope == LEAVE_ONE_OUT_SCOPE:  # trained on the other categories, per category
                        per_cat.extend(Job(m, ds, [c], k, s, scope, held_out_spec(ds, c, cats)) for c in cats)
                    else:
                        per_cat.extend(Job(m, ds, [c], k, s, scope) for c in cats)
    cells = [(d.name, c) for d in cfg.datasets for c in data.categories(d)]
    order = {dc: i for i, dc in enumerate(cells)}  # a rank per (dataset, category), not per dataset
    per_cat.sort(key=lambda j: order[(j.dataset.name, j.categories[0])])
    return per_cat + per_ds


def folder_setup(cfg: RunConfig) -> tuple[dict, dict[str, dict]]:
    """(the run identity every record of a folder shares, each method id's backbone)."""
    p = cfg.protocol
    expected = {"metric_version": METRIC_VERSION,
                "protocol": {"version": PROTOCOL_VERSION, "eval_size": p.eval_size, "sigma": p.sigma,
                             "max_test_images": p.max_test_images}}
    backbones = {}
    for m in cfg.methods:
        b = method_backbone(cfg, m)
        backbones[m.id] = {"family": b.family, "model": b.model, "pretrained": b.pretrained,
                           "precision": precision(cfg)}
    return expected, backbones


def method_setups(cfg: RunConfig) -> dict[str, dict]:
    """Each method id's setup (its backbone and the run identity): :mod:`fsadbench.run.setups`."""
    expected, backbones = folder_setup(cfg)
    return {mid: {**expected, "backbone": bb} for mid, bb in backbones.items()}


def check_folder(cfg: RunConfig, store: RecordStore, force: bool = False) -> None:
    """A results folder holds one comparable run: refuse (or with ``force`` set aside) the ok records
    measured with another metric version or protocol than this run's, and the records of this run's
    methods measured with another backbone than the method's now (one backbone per method per folder;
    methods on different backbones share a folder); and a method another runner set up differently in this
    folder before any record (:func:`fsadbench.run.setups.check_setups`)."""
    from fsadbench.results.comparability import folder_conflicts
    from fsadbench.run.setups import check_setups

    expected, backbones = folder_setup(cfg)
    bad = folder_conflicts((r for r in store if r.status == STATUS_OK), expected, backbones)
    if not bad:
        check_setups(store.root, method_setups(cfg), force)
        return
    if force:
        for r, diffs in bad:
            store.set_aside(r, "; ".join(diffs))
        return
    diffs = sorted({d for _, ds in bad for d in ds})
    raise ConfigError(
        f"--results-dir {store.root} holds {len(bad)} record(s) of another run: " + "; ".join(diffs[:6])
        + ". A results folder holds one comparable run (one backbone per method): use another "
          f"--results-dir, or --force to move those records to {store.superseded_dir} and run here")


def pending(cfg: RunConfig, data: "DataSource", jobs: Iterable[Job], store: RecordStore,
            force: bool = False, code_changed: dict[str, int] | None = None) -> tuple[list[Job], int]:
    """(jobs with at least one cell to compute, number of cells already done); checks the folder first.
    ``code_changed`` (method id -> count) hears of the done records a plugin's code edit outdates."""
    check_folder(cfg, store, force)
    todo, skipped = [], 0
    for j in jobs:
        h = cell_hash(cfg, data, j)
        keys = j.keys()
        done = [k for k in keys if not force and store.is_done(k, h)]
        if len(done) == len(keys):
            skipped += len(keys)
        else:
            todo.append(j)
            if code_changed is not None and not is_builtin(resolve_method(j.method)[0]):
                n = outdated_code(cell_identity(cfg, data, j), (store.load(k) for k in keys if k not in done))
                if n:
                    code_changed[j.method.id] = code_changed.get(j.method.id, 0) + n
    return todo, skipped


def outdated_code(ident: dict, records: Iterable) -> int:
    """How many of the done ``records`` hold another code fingerprint than ``ident`` (plugins only)."""
    code = ident["method"].get("code")
    return 0 if code is None else sum(
        1 for r in records if r is not None and r.status in DONE_STATUSES
        and (r.identity or {}).get("method", {}).get("code") != code)


@dataclass
class Plan:
    """A sweep's jobs, the ones still to do and the number of cells already done."""

    jobs: list[Job]
    todo: list[Job]
    skipped: int
    code_changed: dict[str, int] = field(default_factory=dict)  # method id -> records its code outdates

    @classmethod
    def build(cls, cfg: RunConfig, data: "DataSource", store: RecordStore, force: bool = False) -> "Plan":
        jobs = plan_jobs(cfg, data)
        changed: dict[str, int] = {}
        todo, skipped = pending(cfg, data, jobs, store, force, changed)
        return cls(jobs, todo, skipped, changed)

    def code_note(self) -> str:
        """"" or "; method code changed since 8 record(s) of patch-mean: recomputed"."""
        if not self.code_changed:
            return ""
        return "; method code changed since " + ", ".join(
            f"{n} record(s) of {m}" for m, n in sorted(self.code_changed.items())) + ": recomputed"

    @property
    def n_todo_cells(self) -> int:
        return sum(len(j.categories) for j in self.todo)


def job_groups(jobs: Iterable[Job]) -> list[list[Job]]:
    """Jobs grouped by (dataset, category) in plan order; each multi-class job alone."""
    groups: dict[tuple[str, str], list[Job]] = {}
    alone: list[list[Job]] = []
    for j in jobs:
        if j.scope not in PER_CATEGORY:
            alone.append([j])
        else:
            groups.setdefault((j.dataset.name, j.categories[0]), []).append(j)
    return list(groups.values()) + alone


def job_claim_relpath(job: Job) -> Path:
    """The claim name of ``job`` (see :meth:`Job.claim_relpath`)."""
    return job.claim_relpath()
