"""Fitting: seed everything, draw a job's shots, build the method and fit it once.

:func:`fit_job` is the fit of the cell function (one fit per job: per category,
or one multi-class fit over every category of a dataset).
:func:`fitted_method` fits one method on one cell's shots outside a sweep and
returns it with its split, for the qualitative figures and for debugging. Both
go through :func:`job_shots`, which also decides when a cell does not apply
(no normal train images for k > 0, fewer shots than the method needs).
"""

from __future__ import annotations

import random
import time
from typing import Any, Mapping

import numpy as np

from fsadbench.core.errors import NotApplicable
from fsadbench.core.types import CategorySplit, Sample
from fsadbench.protocol.sampler import image_ref, sample_shots
from fsadbench.run.config import DatasetSpec, MethodSpec
from fsadbench.run.identity import method_backbone, resolve_method
from fsadbench.run.plan import Job
from fsadbench.run.transfer import AUXILIARY_SCOPE, LEAVE_ONE_OUT_SCOPE
from fsadbench.run.resources import Resources


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def accepts_normal_source(dataset: str) -> bool:
    """Whether the dataset plugin takes the ``normal_source`` option (the test-only sets do)."""
    from fsadbench.core.errors import RegistryError
    from fsadbench.core.registry import DATASETS

    try:
        cls, _ = DATASETS.get(dataset)
    except RegistryError:
        return False
    return "normal_source" in tuple(getattr(cls, "option_names", ()) or ())


def job_shots(split: CategorySplit, job: Job, cls: type) -> list[Sample]:
    """The seeded k normal images of one category of ``job``; NotApplicable when the cell cannot run."""
    if job.shots > 0 and not split.train:
        raise NotApplicable(
            f"{job.dataset.name}/{split.info.name} has no normal train images for {job.shots}-shot; "
            + (f"configure a normal source (datasets.{job.dataset.name}.options.normal_source) or use --shots 0"
               if accepts_normal_source(job.dataset.name) else
               f"add normal images to its train folder or use --shots 0"))
    if job.shots < cls.min_shots:
        raise NotApplicable(f"{cls.name} needs at least {cls.min_shots} shot(s); got {job.shots}")
    return sample_shots(split.train, job.shots, job.seed)


def fit_job(res: Resources, job: Job, cls: type, options: Mapping[str, Any], splits: Mapping[str, CategorySplit],
            batch_size: int, feature_batch_size: int) -> tuple[Any, dict[str, list[Sample]], float]:
    """(fitted method, shots per category, fit seconds) for ``job``; raises what the fit raises."""
    seed_everything(job.seed)
    shots = {c: job_shots(splits[c], job, cls) for c in job.categories}
    if job.scope == AUXILIARY_SCOPE:
        return fit_auxiliary_job(res, job, cls, options, splits, shots, batch_size, feature_batch_size)
    if job.scope == LEAVE_ONE_OUT_SCOPE:
        return fit_held_out_job(res, job, cls, options, splits, shots, batch_size, feature_batch_size)
    ctx = res.context(job.seed, batch_size, feature_batch_size, method_backbone(res.cfg, job.method))
    method = cls(ctx, **options)
    t = time.perf_counter()
    if job.scope == "dataset":
        method.fit_dataset({c: [image_ref(s) for s in shots[c]] for c in job.categories},
                           {c: splits[c].info for c in job.categories})
    else:
        c = job.categories[0]
        method.fit([image_ref(s) for s in shots[c]], splits[c].info)
    return method, shots, time.perf_counter() - t


def fit_auxiliary_job(res: Resources, job: Job, cls: type, options: Mapping[str, Any],
                      splits: Mapping[str, CategorySplit], shots: dict[str, list[Sample]], batch_size: int,
                      feature_batch_size: int) -> tuple[Any, dict[str, list[Sample]], float]:
    """The transfer fit: the target categories' shots first (a method may refuse them), then one training
    on the auxiliary set, reused by every job of this process with the same (method, auxiliary data, seed,
    backbone); a reused one is handed this job's shots again (``fit`` per category), so a few-shot transfer
    method (InCTRL) never keeps another job's shots."""
    from fsadbench.run.config import stable_hash
    from fsadbench.run.identity import cell_identity
    from fsadbench.run.transfer import auxiliary_set

    ctx = res.context(job.seed, batch_size, feature_batch_size, method_backbone(res.cfg, job.method))
    method = cls(ctx, **options)
    for c in job.categories:
        method.fit([image_ref(s) for s in shots[c]], splits[c].info)
    ident = cell_identity(res.cfg, res, job)
    key = (job.method.id, job.seed, stable_hash(ident["auxiliary"]), stable_hash(ident["backbone"]))
    if key in res.fitted_auxiliary:  # trained already: it meets this job's shots (a few-shot transfer method)
        method = res.fitted_auxiliary[key][0]
        for c in job.categories:
            method.fit([image_ref(s) for s in shots[c]], splits[c].info)
        return method, shots, res.fitted_auxiliary[key][1]
    t = time.perf_counter()
    method.fit_auxiliary(auxiliary_set(res, job.auxiliary))
    res.fitted_auxiliary[key] = (method, time.perf_counter() - t)
    return method, shots, res.fitted_auxiliary[key][1]


def fit_held_out_job(res: Resources, job: Job, cls: type, options: Mapping[str, Any],
                     splits: Mapping[str, CategorySplit], shots: dict[str, list[Sample]], batch_size: int,
                     feature_batch_size: int) -> tuple[Any, dict[str, list[Sample]], float]:
    """The leave-one-out fit: one training on the other categories' normal train images per (method,
    training data with its held-out category, seed, backbone, ``Method.auxiliary_fit_key``), shared by
    this process's jobs (``method.fit_auxiliary(aux, shots=k)``: the cell's shot count, which RegAD trains
    with); then the cell's shots fitted on top of that training (fit seconds: both)."""
    from fsadbench.run.config import stable_hash
    from fsadbench.run.identity import cell_identity
    from fsadbench.run.transfer import held_out_set

    ident = cell_identity(res.cfg, res, job)
    extra = cls.auxiliary_fit_key(cls.make_options(options), job.shots)
    key = (job.method.id, job.seed, stable_hash(ident["auxiliary"]), stable_hash(ident["backbone"]), stable_hash(extra))
    t = time.perf_counter()
    if key not in res.fitted_auxiliary:
        method = cls(res.context(job.seed, batch_size, feature_batch_size, method_backbone(res.cfg, job.method)),
                     **options)
        method.fit_auxiliary(held_out_set(res, job.auxiliary), shots=job.shots)
        res.fitted_auxiliary[key] = (method, time.perf_counter() - t)
    method, train_s = res.fitted_auxiliary[key]
    seed_everything(job.seed)
    t = time.perf_counter()
    c = job.categories[0]
    method.fit([image_ref(s) for s in shots[c]], splits[c].info)
    return method, shots, train_s + time.perf_counter() - t


def fitted_method(res: Resources, method: MethodSpec, dataset: DatasetSpec, category: str, shots: int, seed: int):
    """Fit one method on one cell's shots and return (method, split); for figures and debugging.

    Dataset-scope methods are fitted on that category alone here.
    """
    cls, options = resolve_method(method)
    split = res.split(dataset, category)
    job = Job(method, dataset, [category], shots, seed)
    scope = cls.fit_scope_for(options)
    if scope in (AUXILIARY_SCOPE, LEAVE_ONE_OUT_SCOPE):
        from fsadbench.run.transfer import auxiliary_for, held_out_spec

        aux = (auxiliary_for(res.cfg, dataset, cls.name) if scope == AUXILIARY_SCOPE
               else held_out_spec(dataset, category, res.categories(dataset)))
        job = Job(method, dataset, [category], shots, seed, scope, aux)
        m, _, _ = fit_job(res, job, cls, options, {category: split}, res.cfg.batch_size, res.cfg.batch_size)
        return m, split
    seed_everything(seed)
    m = cls(res.context(seed, res.cfg.batch_size, res.cfg.batch_size, method_backbone(res.cfg, method)), **options)
    refs = [image_ref(s) for s in job_shots(split, job, cls)]
    if cls.fit_scope_for(options) == "dataset":
        m.fit_dataset({category: refs}, {category: split.info})
        m.set_category(split.info)
    else:
        m.fit(refs, split.info)
    return m, split
