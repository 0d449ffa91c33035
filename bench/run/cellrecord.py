"""The record of one cell: what varies from cell to cell (:class:`CellResult`) plus what the run knows.

:func:`build_record` fills every section of a :class:`fsadbench.results.records.Record`
from a job, one category, the cell hash, the batch size used and a
``CellResult``: the resume key's parts (``identity``) and the sweep's plan, the
method (name, id, label, version, resolved options, variants, fit scope,
``describe()``), the dataset facts of the split that was read (root, meta,
content fingerprint, anomalous images without a mask), the backbone facts, the
protocol with the sigma used (and its range when it
varies per image), provenance and the resolved config.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from fsadbench.core.errors import error_text
from fsadbench.core.provenance import provenance
from fsadbench.core.types import Sample
from fsadbench.protocol.evaluator import has_pixel_truth
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.protocol.sampler import manifest
from fsadbench.results.records import STATUS_FAILED, STATUS_OK, CellKey, Record
from fsadbench.run.identity import cell_identity, method_backbone, protocol_facts, resolve_method, resolved_options
from fsadbench.run.plan import Job
from fsadbench.run.resources import Resources


@dataclass
class CellResult:
    """What one category of a job produced: the variable part of its record."""

    status: str
    metrics: dict[str, Any] = field(default_factory=dict)
    undefined: dict[str, Any] = field(default_factory=dict)
    shots: Sequence[Sample] = ()
    encoder: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    n_anomalous: int = 0
    method: Any = None  # the fitted method, for describe()
    error: str | None = None
    sigma_applied: dict[str, Any] | None = None  # per-image sigmas' range (smoothing at the original size)

    @classmethod
    def failure(cls, exc: BaseException, t0: float) -> "CellResult":
        """A failed cell: its one-line cause, then the full traceback (``error_text``)."""
        return cls(STATUS_FAILED, timings={"total_s": time.perf_counter() - t0}, error=error_text(exc))


def dataset_facts(res: Resources, job: Job, category: str, identity: dict[str, Any]) -> dict[str, Any]:
    """The record's ``dataset`` section, from the split if it was read (fingerprint: the data's content)."""
    facts: dict[str, Any] = {"name": job.dataset.name, "category": category}
    split = res.loaded_split(job.dataset.name, category)
    if split is not None:
        facts.update(root=str(split.root), meta=split.meta, fingerprint=identity["dataset"]["data"][category])
        unmasked = sum(1 for s in split.test if not has_pixel_truth(s))
        if unmasked:  # image metrics only for these (see evaluator docstring)
            facts["anomalous_without_mask"] = unmasked
    return facts


def auxiliary_facts(job: Job) -> dict[str, Any]:
    """The record's ``method.auxiliary``: the dataset a transfer method trained on (absent otherwise)."""
    if job.auxiliary is None:
        return {}
    from fsadbench.run.transfer import LEAVE_ONE_OUT_SCOPE, auxiliary_label

    held_out = job.categories[0] if job.scope == LEAVE_ONE_OUT_SCOPE else None
    extra = {"held_out": held_out, "categories": list(job.auxiliary.categories or [])} if held_out else {}
    return {"auxiliary": {"name": job.auxiliary.name, "options": job.auxiliary.options,
                          "label": auxiliary_label(job.auxiliary, job.dataset, held_out),
                          "same_as_target": job.auxiliary.name == job.dataset.name and held_out is None, **extra}}


def build_record(res: Resources, job: Job, category: str, config_hash: str, result: CellResult,
                 batch_size: int | None = None) -> Record:
    """The record of one cell; ``batch_size`` (the method batch that produced it) goes into its config."""
    cfg = res.cfg
    cls, _ = resolve_method(job.method)
    identity = cell_identity(cfg, res, job)
    split = res.loaded_split(job.dataset.name, category)
    config = cfg.to_dict()
    if batch_size is not None:
        config["batch_size"] = batch_size
    return Record(
        key=asdict(CellKey(job.method.id, job.dataset.name, category, job.shots, job.seed)),
        status=result.status, config_hash=config_hash, identity=identity,
        plan={"categories": res.categories(job.dataset), "shots": list(cfg.shots), "seeds": list(cfg.seeds)},
        method={"name": job.method.name, "id": job.method.id, "label": job.method.display,
                "version": int(cls.version), "options": resolved_options(job.method),
                "variants": list(cls.variants), "fit_scope": job.scope,
                "uses_feature_cache": cls.uses_feature_cache, **auxiliary_facts(job),
                **({} if cls.makes_maps() else {"outputs": list(cls.produces)}),
                "describe": result.method.describe() if result.method is not None else {}},
        metrics=result.metrics, undefined=result.undefined,
        n_test=len(split.test) if split is not None and result.status == STATUS_OK else 0,
        n_test_anomalous=result.n_anomalous, timings=result.timings, manifest=manifest(result.shots),
        encoder=result.encoder,
        protocol={**protocol_facts(cfg.protocol, cls),
                  **({"sigma_applied": result.sigma_applied} if result.sigma_applied else {})},
        backbone=res.backbone_facts(method_backbone(cfg, job.method)), dataset=dataset_facts(res, job, category, identity),
        provenance=provenance(res.device),
        config=config, metric_version=METRIC_VERSION, error=result.error)
