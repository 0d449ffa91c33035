"""When a measured paper-table figure may be diffed against its published figure: one rule, :func:`diff_blockers`.

A layout declares the protocol of each of its rows as data: published.yaml's table ``protocol`` merged with
the row's own ``protocol`` (a baseline on its own backbone), plus the ``options`` the layout adds
(:func:`row_protocol`):

* ``model`` / ``pretrained``: the backbone and its pretrained weights;
* ``seeds``: the number of seeds, exactly (fewer or more runs are another estimate);
* ``eval_size``: the evaluation resolution the published figure was computed at;
* ``options``: the resolved method options the row stands for (:func:`row_options`: the method's
  ``Options`` defaults under its registry alias's options, under the row's own options).

A record carries what it ran with: ``backbone`` (model, pretrained, random_weights), ``protocol``
(``eval_size``, the configured ``sigma``, ``max_test_images``) and ``method.options`` (every option
resolved, defaults included). A figure is comparable when it covers every category of the dataset for
the protocol's seeds, and every record behind it matches the protocol: the backbone with pretrained
weights, the evaluation size, all test images, the method's own Gaussian (no ``--sigma``) and the row's
options. An option a record does not state (records written before options were resolved) counts as
its default; ``backbone`` / ``backbone_weights`` (the per-method ``--model`` / ``--pretrained``) are
compared through the record's backbone instead.

A layout row is *filled* by records that agree with it on fewer options (:func:`fill_keys`: the
layout's switches of that method and the options that define its registry alias, so ``maple-draem`` with
``interaction=bidirectional`` is not MaPLe+DRAEM); any other option (a CI sweep's ``epochs=1``) still
fills the row, and its diff is "n/c" naming the option.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from fsadbench.core.errors import RegistryError
from fsadbench.results.coverage import Figure
from fsadbench.results.records import Record

# compared through the record's backbone (model, pretrained), not as options
BACKBONE_OPTIONS = ("backbone", "backbone_weights")


def as_json(value: Any) -> Any:
    """``value`` as a record stores it (tuples as lists, other objects as their text)."""
    return json.loads(json.dumps(value, default=str))


def method_class(name: str):
    """(class, its resolved default options as records store them: the ``Options`` defaults under the
    registry's options of ``name``), or (None, {}) when no method of that name is registered."""
    from fsadbench.core.registry import METHODS

    try:
        cls, reg = METHODS.get(name)
    except RegistryError:
        return None, {}
    return cls, as_json(cls.option_dict(cls.make_options(reg)))


def alias_options(name: str) -> dict[str, Any]:
    """The options the registry entry ``name`` sets (what makes ``maple-draem`` an alias of AnoPLe)."""
    from fsadbench.core.registry import METHODS

    return dict(METHODS.entry(name).options or {}) if name in METHODS.names() else {}


def fill_keys(name: str, switches: Sequence[str]) -> list[str]:
    """The options a record of ``name`` must share with a layout row to fill it: the layout's switches,
    then the options of the registry alias."""
    return list(switches) + [k for k in alias_options(name) if k not in switches]


def row_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The resolved options a row of method ``name`` with ``options`` stands for, as records store them."""
    _, defaults = method_class(name)
    want = {**defaults, **as_json(dict(options or {}))}
    return {k: v for k, v in want.items() if k not in BACKBONE_OPTIONS}


def row_protocol(table: Mapping[str, Any] | None, row: Mapping[str, Any] | None, name: str | None,
                 options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A row's protocol: the table's, the row's own over it, and the options of method ``name``."""
    out = {**(table or {}), **((row or {}).get("protocol") or {})}
    if name:
        out["options"] = row_options(name, options)
    return out


def off_defaults(name: str, options: Mapping[str, Any]) -> int:
    """How many of ``options`` differ from the defaults of method ``name`` (0: the method as published)."""
    _, defaults = method_class(name)
    return sum(1 for k, v in as_json(dict(options)).items() if k in defaults and v != defaults[k])


def closest_first(name: str, ids: Iterable[str], options: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Method ids of ``name``, the one with the fewest options off the defaults first (ties by id)."""
    return sorted(ids, key=lambda mid: (off_defaults(name, options.get(mid, {})), mid))


def option_departures(records: Iterable[Record], want: Mapping[str, Any]) -> list[str]:
    """``name=value (the protocol's default)`` for every option a record ran with that is not ``want``'s."""
    out: dict[str, None] = {}
    for r in records:
        have = as_json(dict((r.method or {}).get("options") or {}))
        for k, v in want.items():
            if k in have and have[k] != v:
                out[f"{k}={json.dumps(have[k])} (protocol {json.dumps(v)})"] = None
    return list(out)


@lru_cache(maxsize=None)
def dataset_categories(dataset: str) -> tuple[str, ...] | None:
    """Every category of a registered dataset (its plugin's list), or None when unknown."""
    from fsadbench.core.registry import DATASETS

    try:
        cls, _ = DATASETS.get(dataset)
    except RegistryError:
        return None
    cats = tuple(getattr(cls, "categories", ()) or ())
    return cats or None


def coverage_blockers(fig: Figure, dataset: str, protocol: Mapping[str, Any]) -> list[str]:
    """The dataset's categories, complete, over exactly the protocol's seeds."""
    out = []
    want = dataset_categories(dataset)
    cov = fig.coverage
    if want is None:
        out.append(f"the category list of {dataset} is unknown here")
    elif cov is not None:
        extra = sorted(set(cov.categories) - set(want))
        lacking = [c for c in want if c not in cov.categories]
        if lacking:
            out.append(f"measured over {len(cov.categories)} of the paper's {len(want)} {dataset} categories "
                       f"(missing {', '.join(lacking[:5])}{', ...' if len(lacking) > 5 else ''})")
        if extra:
            out.append(f"categories not in the paper's dataset: {', '.join(extra[:5])}")
    if cov is not None and not cov.complete:
        out.append(cov.describe())
    n = protocol.get("seeds")
    if n is not None and fig.n_seeds != int(n):
        out.append(f"{fig.n_seeds} seed(s) vs the protocol's {int(n)}")
    return out


def record_blockers(records: Sequence[Record], protocol: Mapping[str, Any]) -> list[str]:
    """What the records behind a figure ran with that the protocol does not: backbone, evaluation, options."""
    out = []
    bbs = {((r.backbone or {}).get("model"), (r.backbone or {}).get("pretrained"),
            bool((r.backbone or {}).get("random_weights"))) for r in records}
    if any(random for _, _, random in bbs):
        out.append("random backbone weights")
    model, pre = protocol.get("model"), protocol.get("pretrained")
    other = sorted({f"{m}/{p}" for m, p, _ in bbs if (model and m != model) or (pre and p != pre)})
    if other:
        out.append(f"backbone {', '.join(other)} vs the paper's {model}/{pre}")
    size = protocol.get("eval_size")
    sizes = sorted({str((r.protocol or {}).get("eval_size") or "an unrecorded size") for r in records})
    if size is not None and sizes and sizes != [str(size)]:
        out.append(f"evaluated at {', '.join(sizes)} px vs the protocol's {size} px")
    caps = sorted({int(c) for r in records if (c := (r.protocol or {}).get("max_test_images"))})
    if caps:
        out.append(f"a subset of the test images (max_test_images={', '.join(map(str, caps))})")
    sigmas = sorted({float(s) for r in records if (s := (r.protocol or {}).get("sigma")) is not None})
    if sigmas:
        out.append(f"Gaussian sigma set by the run ({', '.join(map(str, sigmas))}), not the method's own")
    if protocol.get("options") is not None:
        opts = option_departures(records, protocol["options"])
        if opts:
            out.append("options off the row's protocol: " + ", ".join(opts))
    return out


def diff_blockers(fig: Figure | None, dataset: str, records: Iterable[Record], protocol: Mapping[str, Any]) -> list[str]:
    """Why ``fig`` may not be diffed against the published figure (empty: comparable); ``records``: those
    behind it, ``protocol``: the row's (:func:`row_protocol`)."""
    if fig is None:
        return ["no measured figure"]
    return coverage_blockers(fig, dataset, protocol) + record_blockers(list(records), protocol)
