"""Cell identity: the resume key (everything that can change a number), and the one sigma resolution.

:func:`cell_identity` gathers, for every cell of a job, the parts of its
resume key: the method (name, version, every resolved option, the versions of
the encoder paths it declares; for a plugin the fingerprint of its code,
:mod:`fsadbench.run.codeprint`), the dataset (name, options, a content fingerprint
of the test images, masks and shots each category of the cell sees; for a method trained on an auxiliary dataset, that dataset's name,
options, categories and content, and for a leave-one-out training the held-out category), the method's backbone (``Method.backbone_for``: family, model, tag,
weights identity, precision), the protocol with the sigma used, and the metric version. Records store it as
``identity``; its hash (:func:`cell_hash`) is what resume compares with a
stored record's ``config_hash``. The Gaussian sigma after upsampling is
resolved here and only here (:func:`smoothing_for`): the protocol's value, or the
method's paper value at its reference's image size when the protocol leaves it unset.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fsadbench.core.errors import BenchError
from fsadbench.core.registry import METHODS
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.protocol.sampler import content_fingerprint, file_digest, sample_shots, test_hasher
from fsadbench.run.config import PROTOCOL_VERSION, MethodSpec, Protocol, RunConfig, stable_hash

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.backbone.spec import BackboneSpec
    from fsadbench.protocol.evaluator import Smoothing
    from fsadbench.run.plan import Job
    from fsadbench.run.resources import DataSource


def resolve_method(spec: MethodSpec) -> tuple[type, dict[str, Any]]:
    """The method class and its options (registered defaults < the spec's); unknown options fail here."""
    cls, defaults = METHODS.get(spec.name)
    options = {**defaults, **spec.options}
    cls.make_options(options)  # unknown options fail before any work
    cls.check_option_types(options)  # and options of the wrong type, naming the option
    return cls, options


def resolved_options(spec: MethodSpec) -> dict[str, Any]:
    """Every option of the method with the value it runs with (defaults included), as JSON data."""
    cls, options = resolve_method(spec)
    return json.loads(json.dumps(cls.option_dict(cls.make_options(options)), default=str))


def smoothing_for(protocol: Protocol, method_cls: type) -> "Smoothing":
    """The Gaussian after upsampling: the protocol's sigma (evaluation pixels), else the method's paper
    value at the image size its reference applies it (``Method.sigma_size``)."""
    from fsadbench.protocol.evaluator import Smoothing

    if protocol.sigma is not None:
        return Smoothing(protocol.sigma)
    return Smoothing(method_cls.default_sigma, getattr(method_cls, "sigma_size", None))


def sigma_for(protocol: Protocol, method_cls: type) -> float | None:
    """The Gaussian sigma applied at the evaluation size (:func:`smoothing_for`); None when it depends on
    each image's original size."""
    return smoothing_for(protocol, method_cls).uniform(protocol.eval_size)


def protocol_facts(protocol: Protocol, method_cls: type) -> dict[str, Any]:
    """The record's and the resume key's ``protocol``: the configured one, its version, the sigma used at
    the evaluation size and, when the method's reference smooths at another size, ``sigma_reference``."""
    ref = smoothing_for(protocol, method_cls).reference()
    return {**asdict(protocol), "version": PROTOCOL_VERSION, "sigma_used": sigma_for(protocol, method_cls),
            **({"sigma_reference": ref} if ref is not None else {})}


def sweep_backbone(cfg: RunConfig) -> "BackboneSpec":
    """The sweep's CLIP backbone (``--model`` / ``--pretrained``), ``--model`` read as ``[family:]model[@size]``
    (``open_clip:X`` is open_clip's model X; a plain open_clip name is the same spec as before)."""
    from fsadbench.backbone.spec import parse_backbone

    return parse_backbone(cfg.model, cfg.pretrained, where="backbone model (--model)")


def method_backbone(cfg: RunConfig, spec: MethodSpec) -> "BackboneSpec":
    """The backbone ``spec``'s numbers come from: the sweep's CLIP, or the method's own
    (``Method.backbone_for``: its default, the tiny one in the pipeline check, or its options)."""
    cls, options = resolve_method(spec)
    return cls.backbone_for(cls.make_options(options), sweep_backbone(cfg))


def backbone_weights_identity(spec: "BackboneSpec") -> str:
    """The weights, known before loading them: a checkpoint file's content digest, the family's tag
    (``open_clip-tag:...``), or the random initialisation (the loaded weights' fingerprint is in every
    record)."""
    pre = spec.pretrained
    if spec.is_random:
        return f"random-init:{spec.init_seed}"
    if Path(pre).expanduser().is_file():
        return f"file-sha1:{file_digest(Path(pre).expanduser())}"
    return f"{spec.family}-tag:{pre}"


def weights_identity(cfg: RunConfig) -> str:
    """:func:`backbone_weights_identity` of the sweep's CLIP backbone."""
    return backbone_weights_identity(sweep_backbone(cfg))


def backbone_identity(cfg: RunConfig, spec: "BackboneSpec") -> dict[str, Any]:
    """The resume key's ``backbone``: model, weights as named and as identified, precision; the family
    and the input size when not the open_clip default (so every CLIP record keeps its key)."""
    out: dict[str, Any] = {"model": spec.model, "pretrained": spec.pretrained,
                           "weights": backbone_weights_identity(spec), "precision": "bf16" if cfg.amp else "fp32"}
    if spec.family != "open_clip":
        out["family"] = spec.family
    if spec.image_size:
        out["image_size"] = spec.image_size
    return out


def precision(cfg: RunConfig) -> str:
    """The encoder precision this run gets on its device (bf16 autocast only on CUDA)."""
    if not cfg.amp:
        return "fp32"
    from fsadbench.backbone.clip import resolve_device

    return "bf16-autocast" if resolve_device(cfg.device).type == "cuda" else "fp32"


def static_identity(cfg: RunConfig, job: "Job", metric_version: str = METRIC_VERSION) -> dict[str, Any]:
    """The resume key's parts that need no data: all of :func:`cell_identity` but ``dataset.data``
    (``rescore`` compares them with a stored record's, under the record's own metric version)."""
    from fsadbench.backbone.features import spec_versions
    from fsadbench.run.codeprint import code_fingerprint, is_builtin

    cls, _ = resolve_method(job.method)
    code = {} if is_builtin(cls) else {"code": code_fingerprint(cls)}  # a plugin's records follow its code
    return {
        "method": {"name": job.method.name, "version": int(getattr(cls, "version", 1)), **code,
                   "options": resolved_options(job.method),
                   "feature_specs": spec_versions(getattr(cls, "feature_specs", ()))},
        "dataset": {"name": job.dataset.name, "options": job.dataset.options},
        "backbone": backbone_identity(cfg, method_backbone(cfg, job.method)),
        "protocol": protocol_facts(cfg.protocol, cls),
        "metric_version": metric_version,
    }


def cell_identity(cfg: RunConfig, data: "DataSource", job: "Job") -> dict[str, Any]:
    """The resume key's parts for every cell of ``job`` (stored as ``Record.identity``); cached in ``data``
    per method, dataset, categories, shots, seed and auxiliary set (a target paired with two sets has two)."""
    aux = None if job.auxiliary is None else json.dumps(asdict(job.auxiliary), sort_keys=True, default=str)
    k = (job.method.id, job.dataset.name, tuple(job.categories), job.shots, job.seed, aux)
    if k in data.identities:
        return data.identities[k]
    content: dict[str, str] = {}
    for c in job.categories:
        try:
            split = data.split(job.dataset, c)
            shots = sample_shots(split.train, job.shots, job.seed) if 0 < job.shots <= len(split.train) else []
            tk = ("test", job.dataset.name, c)  # the test part once per category, not once per seed
            if tk not in data.identities:
                data.identities[tk] = test_hasher(split.test)
            content[c] = content_fingerprint(split.test, shots, base=data.identities[tk])
        except BenchError as exc:  # the cell records the failure; a repaired dataset changes the key
            content[c] = f"unreadable ({type(exc).__name__})"
    sk = ("static", job.method.id, job.dataset.name)
    if sk not in data.identities:
        data.identities[sk] = json.dumps(static_identity(cfg, job), default=str)
    ident = json.loads(data.identities[sk])  # a fresh copy per job (the method part once per method id)
    ident["dataset"]["data"] = content
    if job.auxiliary is not None:  # the dataset it trained on (fsadbench.run.transfer)
        from fsadbench.run.transfer import LEAVE_ONE_OUT_SCOPE, auxiliary_identity

        held_out = job.categories[0] if job.scope == LEAVE_ONE_OUT_SCOPE else None
        try:
            ident["auxiliary"] = auxiliary_identity(data, job.auxiliary, held_out)
        except BenchError as exc:
            ident["auxiliary"] = {"name": job.auxiliary.name, "data": f"unreadable ({type(exc).__name__})"}
    data.identities[k] = ident
    return ident


def cell_hash(cfg: RunConfig, data: "DataSource", job: "Job") -> str:
    """What every cell of ``job`` must match in a stored record to count as done."""
    return stable_hash(cell_identity(cfg, data, job))
