"""Cell identity: the resolved method, the sigma a cell is evaluated with, and the cell hash.

A cell's numbers depend on the method (its class and resolved options), the
dataset options, the backbone, the versions of the encoder paths the method
declares, the protocol and the metric definitions; the
hash of those (:func:`cell_hash`) is what resume compares with a stored
record's ``config_hash``. The Gaussian sigma after upsampling is resolved here
and only here (:func:`sigma_for`): the protocol's value, or the method's paper
value when the protocol leaves it unset.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from fsadbench.core.registry import METHODS
from fsadbench.protocol.metrics import METRIC_VERSION
from fsadbench.run.config import PROTOCOL_VERSION, MethodSpec, Protocol, RunConfig, stable_hash

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.run.plan import Job


def resolve_method(spec: MethodSpec) -> tuple[type, dict[str, Any]]:
    """The method class and its options (registered defaults < the spec's); unknown options fail here."""
    cls, defaults = METHODS.get(spec.name)
    options = {**defaults, **spec.options}
    cls.make_options(options)  # unknown options fail before any work
    return cls, options


def sigma_for(protocol: Protocol, method_cls: type) -> float:
    """Gaussian sigma (evaluation pixels) after upsampling: the protocol's, else the method's paper value."""
    return protocol.sigma if protocol.sigma is not None else method_cls.default_sigma


def cell_hash(cfg: RunConfig, job: "Job", metric_version: str = METRIC_VERSION) -> str:
    """What every cell of ``job`` must match in a stored record to count as done.

    ``metric_version``: the hash under another metric version (``rescore`` checks that nothing else changed).

    The versions of the encoder paths the method declares (``Method.feature_specs``) are part of it, so a
    changed encoder path (its version bumped) invalidates the records computed through the old one.
    """
    from fsadbench.backbone.features import spec_versions

    cls, options = resolve_method(job.method)
    paths = spec_versions(cls.feature_specs)
    return stable_hash({
        "method": job.method.name, "options": options,
        "dataset": {"name": job.dataset.name, "options": job.dataset.options},
        "backbone": {"model": cfg.model, "pretrained": cfg.pretrained},
        "protocol": asdict(cfg.protocol), "protocol_version": PROTOCOL_VERSION,
        "metric_version": metric_version,
        # bf16 autocast changes numbers; only present when on, so fp32 hashes stay as they were
        **({"amp": "bf16"} if cfg.amp else {}),
        **({"encoder_paths": paths} if paths else {}),
    })
