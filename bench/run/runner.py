"""The sweep: datasets x categories x methods x shots x seeds -> one record per cell.

The cell function (:meth:`Runner.run_job`) is the same whichever executor
calls it. A job is one fit: a single cell for per-category methods, or all
categories of a dataset for multi-class methods (``fit_scope == "dataset"``).
Jobs are ordered by (dataset, category) so a category's test images stay in
the feature cache's memory while every method, shot count and seed uses them.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch

from fsadbench.run.config import PROTOCOL_VERSION, DatasetSpec, MethodSpec, RunConfig, stable_hash
from fsadbench.core.errors import BenchError, ConfigError, NotApplicable, error_line, error_text
from fsadbench.protocol.evaluator import CategoryEvaluator, check_finite, gt_mask, has_pixel_truth, nan_to_none
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.core.provenance import provenance
from fsadbench.results.records import STATUS_FAILED, STATUS_NA, STATUS_OK, CellKey, Record, RecordStore
from fsadbench.core.registry import DATASETS, METHODS
from fsadbench.protocol.sampler import content_fingerprint, file_digest, image_ref, manifest, sample_shots
from fsadbench.core.types import CategorySplit, ImageRef, Sample


@dataclass
class Job:
    method: MethodSpec
    dataset: DatasetSpec
    categories: list[str]  # one for per-category methods
    shots: int
    seed: int
    scope: str = "category"

    def keys(self) -> list[CellKey]:
        return [CellKey(self.method.id, self.dataset.name, c, self.shots, self.seed) for c in self.categories]


@dataclass
class RunSummary:
    computed: int = 0
    skipped: int = 0
    failed: int = 0
    not_applicable: int = 0
    encoded_images: int = 0
    failures: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"{self.computed} cell(s) computed, {self.skipped} already done, {self.failed} failed, "
                f"{self.not_applicable} not applicable; encoder passes: {self.encoded_images} image(s)")


def is_out_of_memory(exc: BaseException) -> bool:
    """A CUDA (or allocator) out-of-memory error, which a smaller batch may avoid."""
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Runner:
    def __init__(self, cfg: RunConfig, log: Callable[[str], None] | None = None, progress: bool = True):
        self.cfg = cfg
        self.log = log or (lambda msg: None)
        self.store = RecordStore(cfg.results_dir, log=self.log)
        self.progress = progress
        self._backbone = None
        self._features = None
        self._datasets: dict[str, Any] = {}
        self._splits: dict[tuple[str, str], CategorySplit] = {}
        self._refs: dict[tuple[str, str], list[ImageRef]] = {}
        self._identities: dict[tuple, dict[str, Any]] = {}
        # Set by an executor that retries a cell with a smaller batch (fsadbench.run.executors): an
        # out-of-memory error then propagates instead of being recorded, while a batch can still shrink.
        self.retry_oom = False

    # -- shared, lazily built resources -------------------------------------------------
    @property
    def device(self) -> torch.device:
        from fsadbench.backbone.clip import resolve_device

        return resolve_device(self.cfg.device)

    @property
    def backbone(self):
        if self._backbone is None:
            from fsadbench.backbone.clip import Backbone, BackboneSpec

            self._backbone = Backbone(BackboneSpec(self.cfg.model, self.cfg.pretrained), device=self.device,
                                      cache_dir=str(self.cfg.resolved_cache_dir / "weights"))
            if self._backbone.is_random:
                self.log(f"NOTE: backbone {self.cfg.model} has RANDOM weights: a pipeline check, "
                         f"not a benchmark result")
        return self._backbone

    @property
    def features(self):
        if self._features is None:
            from fsadbench.backbone.features import FeatureStore

            self._features = FeatureStore(self.backbone, cache_dir=self.cfg.resolved_cache_dir,
                                          batch_size=self.cfg.batch_size, amp=self.cfg.amp)
        return self._features

    def dataset(self, spec: DatasetSpec):
        if spec.name not in self._datasets:
            cls, defaults = DATASETS.get(spec.name)
            self._datasets[spec.name] = cls.from_config(
                data_root=Path(self.cfg.data_root) if self.cfg.data_root else None,
                root=Path(spec.root) if spec.root else None,
                cache_dir=self.cfg.resolved_cache_dir, **{**defaults, **spec.options})
        return self._datasets[spec.name]

    def split(self, spec: DatasetSpec, category: str) -> CategorySplit:
        k = (spec.name, category)
        if k not in self._splits:
            split = self.dataset(spec).load(category)
            n = self.cfg.protocol.max_test_images
            if n and len(split.test) > n:  # quick checks only (recorded): evenly spaced, both classes kept
                idx = np.linspace(0, len(split.test) - 1, n).round().astype(int)
                split.test = [split.test[i] for i in sorted(set(idx.tolist()))]
            self._splits[k] = split
        return self._splits[k]

    def test_refs(self, spec: DatasetSpec, category: str) -> list[ImageRef]:
        k = (spec.name, category)
        if k not in self._refs:
            self._refs[k] = [image_ref(s) for s in self.split(spec, category).test]
        return self._refs[k]

    # -- planning -----------------------------------------------------------------------
    def categories(self, spec: DatasetSpec) -> list[str]:
        if spec.categories:
            return list(spec.categories)
        return list(self.dataset(spec).list_categories())

    def method_entry(self, spec: MethodSpec) -> tuple[type, dict[str, Any]]:
        cls, defaults = METHODS.get(spec.name)
        options = {**defaults, **spec.options}
        cls.make_options(options)  # unknown options fail before any work
        return cls, options

    def resolved_options(self, spec: MethodSpec) -> dict[str, Any]:
        """Every option of the method with the value it runs with (defaults included), as JSON data."""
        cls, options = self.method_entry(spec)
        return json.loads(json.dumps(cls.option_dict(cls.make_options(options)), default=str))

    def plan(self) -> list[Job]:
        per_cat, per_ds = [], []
        for ds in self.cfg.datasets:
            self.dataset(ds)  # resolves and checks its folder before any work
            cats = self.categories(ds)
            for m in self.cfg.methods:
                cls, options = self.method_entry(m)
                scope = cls.fit_scope_for(options)
                for k in self.cfg.shots:
                    for s in self.cfg.seeds:
                        if scope == "dataset":
                            per_ds.append(Job(m, ds, cats, k, s, scope))
                        else:
                            per_cat.extend(Job(m, ds, [c], k, s, scope) for c in cats)
        order = {(d.name, c): i for i, d in enumerate(self.cfg.datasets) for c in self.categories(d)}
        per_cat.sort(key=lambda j: order[(j.dataset.name, j.categories[0])])
        return per_cat + per_ds

    # -- resume key: everything that can change a number ----------------------------------------
    def weights_identity(self) -> str:
        """The backbone weights, known before loading them: a checkpoint file's content digest, the
        open_clip tag, or the random initialisation (the loaded weights' fingerprint is in every record)."""
        pre = self.cfg.pretrained
        if pre.lower() in ("none", "random", ""):
            return "random-init:0"
        if Path(pre).expanduser().is_file():
            return f"file-sha1:{file_digest(Path(pre).expanduser())}"
        return f"open_clip-tag:{pre}"

    def precision(self) -> str:
        return "bf16-autocast" if self.cfg.amp and self.device.type == "cuda" else "fp32"

    def cell_identity(self, job: Job) -> dict[str, Any]:
        """The resume key's parts for every cell of ``job`` (stored as ``Record.identity``): resolved
        options, method and feature-spec versions, backbone, protocol, metric version, data content."""
        from fsadbench.backbone.features import spec_versions

        k = (job.method.id, job.dataset.name, tuple(job.categories), job.shots, job.seed)
        if k in self._identities:
            return self._identities[k]
        cls, _ = self.method_entry(job.method)
        data: dict[str, str] = {}
        for c in job.categories:
            try:
                split = self.split(job.dataset, c)
                shots = sample_shots(split.train, job.shots, job.seed) if 0 < job.shots <= len(split.train) else []
                data[c] = content_fingerprint(split.test, shots)
            except BenchError as exc:  # the cell records the failure; a repaired dataset changes the key
                data[c] = f"unreadable ({type(exc).__name__})"
        sigma = self.cfg.protocol.sigma if self.cfg.protocol.sigma is not None else cls.default_sigma
        self._identities[k] = {
            "method": {"name": job.method.name, "version": int(getattr(cls, "version", 1)),
                       "options": self.resolved_options(job.method),
                       "feature_specs": spec_versions(getattr(cls, "feature_specs", ()))},
            "dataset": {"name": job.dataset.name, "options": job.dataset.options, "data": data},
            "backbone": {"model": self.cfg.model, "pretrained": self.cfg.pretrained,
                         "weights": self.weights_identity(), "precision": "bf16" if self.cfg.amp else "fp32"},
            "protocol": {**asdict(self.cfg.protocol), "version": PROTOCOL_VERSION, "sigma_used": sigma},
            "metric_version": METRIC_VERSION,
        }
        return self._identities[k]

    def cell_hash(self, job: Job) -> str:
        return stable_hash(self.cell_identity(job))

    def check_folder(self, force: bool = False) -> None:
        """A results folder holds one comparable run: refuse (or with ``force`` set aside) the ok records
        measured with another backbone, metric version or protocol than this run's."""
        from fsadbench.results.comparability import folder_conflicts

        p = self.cfg.protocol
        expected = {"metric_version": METRIC_VERSION,
                    "backbone": {"model": self.cfg.model, "pretrained": self.cfg.pretrained,
                                 "precision": self.precision()},
                    "protocol": {"version": PROTOCOL_VERSION, "eval_size": p.eval_size, "sigma": p.sigma,
                                 "max_test_images": p.max_test_images}}
        bad = folder_conflicts((r for r in self.store if r.status == STATUS_OK), expected)
        if not bad:
            return
        if force:
            for r, diffs in bad:
                self.store.set_aside(r, "; ".join(diffs))
            return
        diffs = sorted({d for _, ds in bad for d in ds})
        raise ConfigError(
            f"--results-dir {self.store.root} holds {len(bad)} record(s) of another run: " + "; ".join(diffs[:6])
            + ". A results folder holds one comparable run: use another --results-dir, or --force to move "
              f"those records to {self.store.superseded_dir} and run here")

    def pending(self, jobs: Iterable[Job], force: bool = False) -> tuple[list[Job], int]:
        self.check_folder(force)
        todo, skipped = [], 0
        for j in jobs:
            h = self.cell_hash(j)
            keys = j.keys()
            done = [k for k in keys if not force and self.store.is_done(k, h)]
            if len(done) == len(keys):
                skipped += len(keys)
            else:
                todo.append(j)
        return todo, skipped

    # -- execution ------------------------------------------------------------------------
    def run(self, force: bool = False) -> RunSummary:
        jobs = self.plan()
        todo, skipped = self.pending(jobs, force)
        summary = RunSummary(skipped=skipped)
        n_cells = sum(len(j.categories) for j in todo)
        self.log(f"{n_cells} cell(s) to compute, {skipped} already done in {self.store.root}")
        bar = None
        if self.progress and n_cells:
            from tqdm import tqdm

            bar = tqdm(total=n_cells, unit="cell", dynamic_ncols=True)
        try:
            for job in todo:
                for rec in self.run_job(job, force=force):
                    self._count(summary, rec)
                    if bar is not None:
                        bar.set_postfix_str(f"{rec.key['method']} {rec.key['category']} k={rec.key['shots']}")
                        bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        return summary

    def _count(self, summary: RunSummary, rec: Record) -> None:
        summary.encoded_images += int(rec.encoder.get("encoded", 0))
        if rec.status == STATUS_OK:
            summary.computed += 1
        elif rec.status == STATUS_NA:
            summary.not_applicable += 1
        else:
            summary.failed += 1
            summary.failures.append(f"{rec.cell}: {error_line(rec.error)}")
            self.log(f"FAILED {rec.cell}: {error_line(rec.error)}")

    def run_job(self, job: Job, force: bool = False) -> list[Record]:
        """Fit once, evaluate every category of the job, write one record per cell."""
        h = self.cell_hash(job)
        cls, options = self.method_entry(job.method)
        t0 = time.perf_counter()
        enc0 = self.features.stats.as_dict() if self._features is not None else None
        out: list[Record] = []
        try:
            splits = {c: self.split(job.dataset, c) for c in job.categories}
        except BenchError as exc:
            return [self._write_failure(job, c, h, exc, t0) for c in job.categories]
        try:
            seed_everything(job.seed)
            ctx = self._context(job.seed)
            method = cls(ctx, **options)
            shots = {c: self._shots(splits[c], job, cls) for c in job.categories}
            t_fit = time.perf_counter()
            if job.scope == "dataset":
                method.fit_dataset({c: [image_ref(s) for s in shots[c]] for c in job.categories},
                                   {c: splits[c].info for c in job.categories})
            else:
                c = job.categories[0]
                method.fit([image_ref(s) for s in shots[c]], splits[c].info)
            fit_s = time.perf_counter() - t_fit
        except NotApplicable as exc:
            return [self._write(job, c, h, STATUS_NA, t0, error=str(exc)) for c in job.categories]
        except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the sweep goes on
            self._raise_if_retryable(exc)
            return [self._write_failure(job, c, h, exc, t0) for c in job.categories]
        for c in job.categories:
            key = CellKey(job.method.id, job.dataset.name, c, job.shots, job.seed)
            if not force and len(job.categories) > 1 and self.store.is_done(key, h):
                continue
            tc = time.perf_counter()
            enc_c = self.features.stats.as_dict()
            try:
                if job.scope == "dataset":
                    method.set_category(splits[c].info)
                metrics, undefined, pred_s, eval_s, n_anom = self._evaluate(method, job, c, splits[c])
            except Exception as exc:  # noqa: BLE001
                self._raise_if_retryable(exc)
                out.append(self._write_failure(job, c, h, exc, tc))
                continue
            enc = self._enc_delta(enc0 if len(job.categories) == 1 else enc_c)
            rec = self._record(job, c, h, STATUS_OK, method=method, metrics=metrics, undefined=undefined,
                               shots=self._shots(splits[c], job, cls), encoder=enc,
                               timings={"fit_s": fit_s, "predict_s": pred_s, "eval_s": eval_s,
                                        "total_s": time.perf_counter() - (t0 if len(job.categories) == 1 else tc)},
                               n_anom=n_anom)
            self.store.write(rec)
            out.append(rec)
        return out

    def fitted_method(self, method: MethodSpec, dataset: DatasetSpec, category: str, shots: int, seed: int):
        """Fit one method on one cell's shots and return (method, split) — for figures and debugging.

        Dataset-scope methods are fitted on that category alone here.
        """
        cls, options = self.method_entry(method)
        split = self.split(dataset, category)
        job = Job(method, dataset, [category], shots, seed)
        seed_everything(seed)
        m = cls(self._context(seed), **options)
        refs = [image_ref(s) for s in self._shots(split, job, cls)]
        if cls.fit_scope_for(options) == "dataset":
            m.fit_dataset({category: refs}, {category: split.info})
            m.set_category(split.info)
        else:
            m.fit(refs, split.info)
        return m, split

    def _context(self, seed: int):
        from fsadbench.protocol.method import MethodContext

        return MethodContext(backbone=self.backbone, features=self.features, device=self.device, seed=seed,
                             batch_size=self.cfg.batch_size, amp=self.cfg.amp, log=self.log)

    def _shots(self, split: CategorySplit, job: Job, cls) -> list[Sample]:
        if job.shots > 0 and not split.train:
            raise NotApplicable(
                f"{job.dataset.name}/{split.info.name} has no normal train images for {job.shots}-shot; "
                f"configure a normal source (datasets.{job.dataset.name}.options.normal_source) or use --shots 0")
        if job.shots < cls.min_shots:
            raise NotApplicable(f"{cls.name} needs at least {cls.min_shots} shot(s); got {job.shots}")
        return sample_shots(split.train, job.shots, job.seed)

    def _evaluate(self, method, job: Job, category: str, split: CategorySplit):
        sigma = self.cfg.protocol.sigma if self.cfg.protocol.sigma is not None else type(method).default_sigma
        size = self.cfg.protocol.eval_size
        refs = self.test_refs(job.dataset, category)
        evaluators: dict[str, CategoryEvaluator] = {}
        pred_s = eval_s = 0.0
        bs = self.cfg.batch_size
        for start in range(0, len(refs), bs):
            batch = split.test[start:start + bs]
            t = time.perf_counter()
            preds = method.predict(refs[start:start + bs])
            pred_s += time.perf_counter() - t
            t = time.perf_counter()
            masks = [gt_mask(s, size) for s in batch]
            if not evaluators:
                evaluators = {v: CategoryEvaluator(size, sigma, device=self.device) for v in preds}
            elif set(preds) != set(evaluators):
                raise BenchError(f"{job.method.id}: predict() returned variants {sorted(preds)} in one batch "
                                 f"and {sorted(evaluators)} in another")
            for v, p in preds.items():
                check_finite(p, f"method {job.method.id}, variant {v!r}, {job.dataset.name}/{category}, "
                                f"seed {job.seed}")
                if p.maps.shape[0] != len(batch):
                    raise BenchError(f"{job.method.id}: {p.maps.shape[0]} maps for a batch of {len(batch)} images")
                evaluators[v].add(p, batch, masks)
            eval_s += time.perf_counter() - t
        t = time.perf_counter()
        metrics, undefined = {}, {}
        for v, ev in evaluators.items():
            m, u = ev.compute()
            metrics[v] = {k: nan_to_none(x) for k, x in m.items()}
            undefined[v] = u
        eval_s += time.perf_counter() - t
        n_anom = sum(int(s.label) for s in split.test)
        return metrics, undefined, pred_s, eval_s, n_anom

    def _enc_delta(self, before: dict[str, int] | None) -> dict[str, int]:
        now = self.features.stats.as_dict()
        before = before or {k: 0 for k in now}
        return {k: now[k] - before.get(k, 0) for k in now}

    def _raise_if_retryable(self, exc: BaseException) -> None:
        if self.retry_oom and is_out_of_memory(exc) and (
                self.cfg.batch_size > 1 or (self._features is not None and self._features.batch_size > 1)):
            raise exc

    def _write_failure(self, job: Job, category: str, h: str, exc: BaseException, t0: float) -> Record:
        return self._write(job, category, h, STATUS_FAILED, t0, error=error_text(exc))  # cause line + traceback

    def _write(self, job: Job, category: str, h: str, status: str, t0: float, error: str | None = None) -> Record:
        rec = self._record(job, category, h, status, error=error,
                           timings={"total_s": time.perf_counter() - t0})
        self.store.write(rec)
        return rec

    def _record(self, job: Job, category: str, h: str, status: str, method=None, metrics=None, undefined=None,
                shots: Sequence[Sample] = (), encoder=None, timings=None, error=None, n_anom: int = 0) -> Record:
        cls, _ = self.method_entry(job.method)
        identity = self.cell_identity(job)
        split = self._splits.get((job.dataset.name, category))
        ds_info: dict[str, Any] = {"name": job.dataset.name, "category": category}
        if split is not None:
            ds_info.update(root=str(split.root), meta=split.meta, fingerprint=identity["dataset"]["data"][category])
            unmasked = sum(1 for s in split.test if not has_pixel_truth(s))
            if unmasked:  # image metrics only for these (see evaluator docstring)
                ds_info["anomalous_without_mask"] = unmasked
        bb = self._backbone.describe() if self._backbone is not None else {
            "model": self.cfg.model, "pretrained": self.cfg.pretrained}
        bb["precision"] = self._features.precision if self._features is not None else "fp32"
        return Record(
            key=asdict(CellKey(job.method.id, job.dataset.name, category, job.shots, job.seed)),
            status=status, config_hash=h, identity=identity,
            plan={"categories": list(self.categories(job.dataset)), "shots": list(self.cfg.shots),
                  "seeds": list(self.cfg.seeds)},
            method={"name": job.method.name, "id": job.method.id, "label": job.method.display,
                    "version": int(getattr(cls, "version", 1)), "options": self.resolved_options(job.method),
                    "variants": list(cls.variants), "fit_scope": job.scope,
                    "uses_feature_cache": cls.uses_feature_cache,
                    "describe": method.describe() if method is not None else {}},
            metrics=metrics or {}, undefined=undefined or {},
            n_test=len(split.test) if split is not None and status == STATUS_OK else 0,
            n_test_anomalous=n_anom, timings=timings or {}, manifest=manifest(shots),
            encoder=encoder or {}, protocol={**asdict(self.cfg.protocol), "version": PROTOCOL_VERSION,
                                             "sigma_used": (self.cfg.protocol.sigma if self.cfg.protocol.sigma
                                                            is not None else cls.default_sigma)},
            backbone=bb, dataset=ds_info, provenance=provenance(self.device), config=self.cfg.to_dict(),
            metric_version=METRIC_VERSION, error=error)
