"""What the cells of one process share, each built once and only when first needed.

:class:`DataSource` holds the dataset instances, category splits, test-image
refs and resume-key parts of a config (reading folders, never a model:
``status`` and planning use it alone). :class:`Resources` adds the device, the backbone and the feature
store, built lazily, and lends a method its :class:`MethodContext`. One
``Resources`` lives per process: the local executor's, or one per pool / array
worker on that worker's device.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from fsadbench.core.registry import DATASETS
from fsadbench.core.types import CategorySplit, ImageRef
from fsadbench.protocol.sampler import image_ref
from fsadbench.run.config import DatasetSpec, RunConfig

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from fsadbench.protocol.method import MethodContext

Log = Callable[[str], None]


def _quiet(msg: str) -> None:
    del msg


class DataSource:
    """Dataset instances, splits and test refs of ``cfg``, cached by (dataset, category)."""

    def __init__(self, cfg: RunConfig):
        self.cfg = cfg
        self._datasets: dict[str, Any] = {}
        self._splits: dict[tuple[str, str], CategorySplit] = {}
        self._refs: dict[tuple[str, str], list[ImageRef]] = {}
        self.identities: dict[tuple, dict[str, Any]] = {}  # resume-key parts per job (fsadbench.run.identity)

    def dataset(self, spec: DatasetSpec):
        if spec.name not in self._datasets:
            cls, defaults = DATASETS.get(spec.name)
            self._datasets[spec.name] = cls.from_config(
                data_root=Path(self.cfg.data_root) if self.cfg.data_root else None,
                root=Path(spec.root) if spec.root else None,
                cache_dir=self.cfg.resolved_cache_dir, **{**defaults, **spec.options})
        return self._datasets[spec.name]

    def categories(self, spec: DatasetSpec) -> list[str]:
        if spec.categories:
            return list(spec.categories)
        return list(self.dataset(spec).list_categories())

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

    def loaded_split(self, dataset: str, category: str) -> CategorySplit | None:
        """The split if it was loaded already (records describe what was read, never load for it)."""
        return self._splits.get((dataset, category))

    def test_refs(self, spec: DatasetSpec, category: str) -> list[ImageRef]:
        k = (spec.name, category)
        if k not in self._refs:
            self._refs[k] = [image_ref(s) for s in self.split(spec, category).test]
        return self._refs[k]


class Resources(DataSource):
    """A DataSource plus the device, backbone and feature store of one process (built lazily)."""

    def __init__(self, cfg: RunConfig, log: Log | None = None):
        super().__init__(cfg)
        self.log = log or _quiet
        self._backbone = None
        self._features = None
        #: progress inside a cell (an object with ``step(stage, done, total)``), set by the local executor
        self.cell_progress: Any = None

    @property
    def device(self) -> "torch.device":
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

    def context(self, seed: int, batch_size: int, feature_batch_size: int) -> "MethodContext":
        """What a method gets for one fit; sets the feature store's encoder batch for this attempt."""
        from fsadbench.protocol.method import MethodContext

        features = self.features
        features.batch_size = feature_batch_size
        return MethodContext(backbone=self.backbone, features=features, device=self.device, seed=seed,
                             batch_size=batch_size, amp=self.cfg.amp, log=self.log,
                             progress=self.cell_progress.step if self.cell_progress is not None else None)

    def encoder_counts(self) -> dict[str, int] | None:
        """The feature store's counters now, or None before it exists."""
        return self._features.stats.as_dict() if self._features is not None else None

    def encoder_delta(self, before: dict[str, int] | None) -> dict[str, int]:
        now = self.features.stats.as_dict()
        before = before or {k: 0 for k in now}
        return {k: now[k] - before.get(k, 0) for k in now}

    def backbone_facts(self) -> dict[str, Any]:
        """The record's ``backbone`` section: describe() once built, else the configured names."""
        bb = self._backbone.describe() if self._backbone is not None else {
            "model": self.cfg.model, "pretrained": self.cfg.pretrained}
        bb["precision"] = self._features.precision if self._features is not None else "fp32"
        return bb
