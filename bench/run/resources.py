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

    from fsadbench.backbone.spec import BackboneSpec
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
    """A DataSource plus the device, the backbones and their feature stores of one process (built lazily,
    one per backbone spec: the sweep's CLIP and each method's own)."""

    def __init__(self, cfg: RunConfig, log: Log | None = None):
        super().__init__(cfg)
        self.log = log or _quiet
        self._backbones: dict[Any, Any] = {}  # BackboneSpec -> backbone adapter
        self._stores: dict[Any, Any] = {}  # BackboneSpec -> FeatureStore
        #: methods trained on an auxiliary set, fitted once per (method, seed, auxiliary data, backbone)
        self.fitted_auxiliary: dict[tuple, tuple[Any, float]] = {}
        #: progress inside a cell (an object with ``step(stage, done, total)``), set by the local executor
        self.cell_progress: Any = None

    @property
    def device(self) -> "torch.device":
        from fsadbench.backbone.clip import resolve_device

        return resolve_device(self.cfg.device)

    @property
    def backbone(self):
        """The sweep's CLIP backbone."""
        from fsadbench.run.identity import sweep_backbone

        return self.backbone_of(sweep_backbone(self.cfg))

    def backbone_of(self, spec: "BackboneSpec"):
        """The backbone ``spec`` names, built once per process (one per family, model and weights)."""
        if spec not in self._backbones:
            from fsadbench.backbone.load import load_backbone
            from fsadbench.run.backbones import used_backbones, weights_option

            users = used_backbones(self.cfg).get(spec)  # a remedy names the flags that set THIS backbone
            bb = load_backbone(spec, device=self.device, cache_dir=str(self.cfg.resolved_cache_dir / "weights"),
                               option=weights_option(self.cfg, users) if users else None)
            self._backbones[spec] = bb
            if bb.is_random:
                self.log(f"NOTE: backbone {spec.model} has RANDOM weights: a pipeline check, "
                         f"not a benchmark result")
        return self._backbones[spec]

    @property
    def features(self):
        """The feature store of the sweep's CLIP backbone."""
        from fsadbench.run.identity import sweep_backbone

        return self.features_of(sweep_backbone(self.cfg))

    def features_of(self, spec: "BackboneSpec"):
        """The feature store of backbone ``spec`` (its key holds the family, model and weights)."""
        if spec not in self._stores:
            from fsadbench.backbone.features import FeatureStore

            self._stores[spec] = FeatureStore(self.backbone_of(spec), cache_dir=self.cfg.resolved_cache_dir,
                                              batch_size=self.cfg.batch_size, amp=self.cfg.amp)
        return self._stores[spec]

    def context(self, seed: int, batch_size: int, feature_batch_size: int,
                backbone: "BackboneSpec | None" = None) -> "MethodContext":
        """What a method gets for one fit (on ``backbone``, default the sweep's); sets that feature
        store's encoder batch for this attempt."""
        from fsadbench.protocol.method import MethodContext
        from fsadbench.run.identity import sweep_backbone

        spec = backbone or sweep_backbone(self.cfg)
        features = self.features_of(spec)
        features.batch_size = feature_batch_size
        return MethodContext(backbone=self.backbone_of(spec), features=features, device=self.device, seed=seed,
                             batch_size=batch_size, amp=self.cfg.amp, log=self.log,
                             progress=self.cell_progress.step if self.cell_progress is not None else None,
                             show_values=self.cell_progress.show if self.cell_progress is not None else None)

    def encoder_counts(self) -> dict[str, int] | None:
        """The feature stores' counters now (summed over backbones), or None before any exists."""
        if not self._stores:
            return None
        out: dict[str, int] = {}
        for store in self._stores.values():
            for k, v in store.stats.as_dict().items():
                out[k] = out.get(k, 0) + v
        return out

    def encoder_delta(self, before: dict[str, int] | None) -> dict[str, int]:
        now = self.encoder_counts() or self.features.stats.as_dict()
        before = before or {k: 0 for k in now}
        return {k: now[k] - before.get(k, 0) for k in now}

    def backbone_facts(self, spec: "BackboneSpec | None" = None) -> dict[str, Any]:
        """The record's ``backbone`` section for ``spec`` (default the sweep's): describe() once built,
        else the configured names."""
        from fsadbench.run.identity import sweep_backbone

        spec = spec or sweep_backbone(self.cfg)
        built = self._backbones.get(spec)
        bb = built.describe() if built is not None else {"family": spec.family, "model": spec.model,
                                                          "pretrained": spec.pretrained}
        store = self._stores.get(spec)
        bb["precision"] = store.precision if store is not None else "fp32"
        return bb
