"""The zero-shot transfer protocol: which auxiliary dataset a method that trains on one
(``fit_scope = "auxiliary"``, e.g. AnomalyCLIP) is trained on, and what it is handed.

Pairing (:func:`auxiliary_for`), per target dataset of the sweep:

* ``train_on`` in the config maps a target dataset to its auxiliary one
  (``{mvtec: visa, visa: mvtec}``: the papers' pairs); ``--train-on NAME`` (key
  ``"*"``) names one auxiliary set for every target;
* with neither, the offline pipeline check trains on :data:`PIPELINE_AUXILIARY`
  (the built-in synthetic generator with another seed: other images of the
  same categories); a run on real data must name the pairing;
* the auxiliary set is never the target dataset itself unless
  ``train_on_target`` is set, and then records and tables say so.

An auxiliary name that is also one of the sweep's datasets reuses that entry
(its root, categories and options); any other is a registered dataset found
under ``--data-root``. The method gets an :class:`AuxiliarySet` (image refs,
labels, mask refs of every test image of every auxiliary category, never a
path it could open itself): :func:`auxiliary_set`. The auxiliary dataset's
name, options, categories and content fingerprint are part of the resume key
(:mod:`fsadbench.run.identity`), so changing it recomputes the cells.

The second auxiliary mode, leave-one-out (``fit_scope = "leave_one_out"``, RegAD): the method trains on
the normal train images of the OTHER categories of the target dataset (:func:`held_out_spec`: the
target's entry with every category but the held-out one; :func:`held_out_set`), once per (dataset,
held-out category, seed) and whatever else the method's training depends on
(``Method.auxiliary_fit_key``), then fits the cell's k shots on top. Those categories and their content
are part of the resume key (:func:`auxiliary_identity` with ``held_out``), and rows read "trained on
mvtec without bottle" (:func:`auxiliary_label`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fsadbench.core.errors import ConfigError
from fsadbench.core.types import AuxiliarySet, ImageRef
from fsadbench.protocol.sampler import content_fingerprint, file_digest
from fsadbench.run.config import PIPELINE_CHECK, DatasetSpec, RunConfig

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.run.resources import DataSource

AUXILIARY_SCOPE = "auxiliary"
LEAVE_ONE_OUT_SCOPE = "leave_one_out"  # trained on the target dataset's other categories (RegAD)
ALL_TARGETS = "*"  # the train_on key of --train-on NAME
PIPELINE_AUXILIARY = "synthetic-aux"  # registered: the synthetic generator with seed 1


def auxiliary_for(cfg: RunConfig, target: DatasetSpec, method: str = "") -> DatasetSpec:
    """The auxiliary dataset ``method`` trains on before it is evaluated on ``target``."""
    name = cfg.train_on.get(target.name, cfg.train_on.get(ALL_TARGETS))
    if name is None:
        if cfg.preset != PIPELINE_CHECK:
            raise ConfigError(f"method {method!r} trains on an auxiliary dataset: name it with --train-on NAME "
                              f"(e.g. --train-on visa) or train_on: {{{target.name}: NAME}} in the config")
        return DatasetSpec(PIPELINE_AUXILIARY, categories=target.categories,
                           options={k: v for k, v in target.options.items() if k != "seed"})
    same = [d for d in cfg.datasets if d.name == name]
    spec = same[0] if same else DatasetSpec(str(name))
    if spec.name == target.name and not cfg.train_on_target:
        raise ConfigError(f"method {method!r} would train on {target.name}, the dataset it is evaluated on: "
                          f"pair it with another (--train-on NAME), or set train_on_target: true to do so on "
                          f"purpose (records and tables then say so)")
    return spec


def check_auxiliary(data: "DataSource", aux: DatasetSpec, method: str, needs_masks: bool) -> None:
    """Refuse (at planning) an auxiliary set a method cannot learn from, naming the set, the category and
    what is missing: a category without an anomalous test image, or, for a method that trains on the masks
    (``Method.auxiliary_needs_masks``), anomalous images without a mask (their defects would read as
    normal pixels)."""
    for c in data.categories(aux):
        bad = [s for s in data.split(aux, c).test if s.label]
        unmasked = sum(s.mask_path is None for s in bad)
        if not bad:
            why = "has no anomalous test image (the method learns normal against anomalous from them)"
        elif needs_masks and unmasked:
            why = (f"has {unmasked} of {len(bad)} anomalous test image(s) without a mask ({method} trains on the "
                   f"masks: their defects would read as normal pixels)")
        else:
            continue
        raise ConfigError(f"auxiliary dataset {aux.name!r} of method {method!r}: category {c!r} {why}; give that "
                          f"set what is missing, or pair another set (--train-on NAME, or train_on in the config)")


def held_out_spec(target: DatasetSpec, category: str, categories: list[str]) -> DatasetSpec:
    """The leave-one-out training set of ``category``: the target's entry (root, options) with every
    other category of ``categories``; a ConfigError when none is left."""
    others = [c for c in categories if c != category]
    if not others:
        raise ConfigError(f"dataset {target.name!r}: leave-one-out training needs a category besides "
                          f"{category!r} to train on; select at least two categories (--categories)")
    return DatasetSpec(target.name, root=target.root, categories=others, options=dict(target.options))


def held_out_category(aux: DatasetSpec, target: DatasetSpec, categories: list[str]) -> str | None:
    """The category ``aux`` leaves out of ``target`` (one of ``categories``), or None for another dataset."""
    if aux.name != target.name or aux.categories is None:
        return None
    left = [c for c in categories if c not in aux.categories]
    return left[0] if len(left) == 1 else None


def auxiliary_label(aux: DatasetSpec, target: DatasetSpec, held_out: str | None = None) -> str:
    """How tables name the pairing: ``trained on visa`` (``... on its own test split`` when the same;
    ``trained on mvtec without bottle`` for a leave-one-out training)."""
    if held_out is not None:
        return f"trained on {aux.name} without {held_out}"
    if aux.name == target.name:
        return f"trained on {aux.name} (its own test split)"
    return f"trained on {aux.name}"


def auxiliary_identity(data: "DataSource", aux: DatasetSpec, held_out: str | None = None) -> dict[str, Any]:
    """The auxiliary part of the resume key: name, options, categories and content per category (their
    test splits; with ``held_out``, the leave-one-out mode, their normal train images and the category
    left out)."""
    cats = data.categories(aux)
    if held_out is None:
        content = {c: content_fingerprint(data.split(aux, c).test, []) for c in cats}
        return {"name": aux.name, "options": aux.options, "categories": cats, "data": content}
    content = {c: content_fingerprint(data.split(aux, c).train, []) for c in cats}
    return {"name": aux.name, "options": aux.options, "categories": cats, "held_out": held_out, "data": content}


def auxiliary_set(data: "DataSource", aux: DatasetSpec) -> AuxiliarySet:
    """Every test image of every auxiliary category with its label, mask and category (refs only)."""
    images, labels, masks, of = [], [], [], []
    cats = data.categories(aux)
    for c in cats:
        split = data.split(aux, c)
        images += data.test_refs(aux, c)
        of += [c] * len(split.test)
        labels += [int(s.label) for s in split.test]
        masks += [ImageRef(s.mask_path, file_digest(s.mask_path)) if s.mask_path is not None else None
                  for s in split.test]
    return AuxiliarySet(aux.name, tuple(images), tuple(labels), tuple(masks), tuple(cats), tuple(of))



def held_out_set(data: "DataSource", aux: DatasetSpec) -> AuxiliarySet:
    """The leave-one-out training set: every normal train image of every category of ``aux`` (labels 0,
    no masks), each with its category (``AuxiliarySet.image_categories``)."""
    from fsadbench.protocol.sampler import image_ref

    images, groups = [], []
    for c in data.categories(aux):
        train = data.split(aux, c).train
        images += [image_ref(s) for s in train]
        groups += [c] * len(train)
    return AuxiliarySet(aux.name, tuple(images), (0,) * len(images), (None,) * len(images),
                        tuple(data.categories(aux)), tuple(groups))
