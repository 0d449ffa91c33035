"""Paper table layouts as plugins: what a layout is, and how ``paper-table`` finds and builds one.

A :class:`Layout` is data plus a little code: its name, the paper and table it
sits beside, a ``build(records, show, **kw) -> Table`` function and an
``options(spec, config) -> kw`` parser for a paper config's ``table:`` mapping.
Layouts are registered in :data:`fsadbench.core.registry.LAYOUTS`: the
built-in ones (``fsadbench.core.builtin.BUILTIN_LAYOUTS``: the APT and AnoPLe
tables) and any package's entry point in the group ``fsadbench.layouts``::

    [project.entry-points."fsadbench.layouts"]
    my_table = "mypkg.tables:MY_TABLE"     # a Layout, e.g. grid_layout(...) of fsadbench.reports.paper.grid

Most layouts are a :func:`fsadbench.reports.paper.grid.grid_layout`: rows of
(method, options) and columns of (dataset, metric, shots, variant) with the
published figures beside them, all data.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from fsadbench.core.errors import ConfigError, PluginWarning, RegistryError
from fsadbench.reports.tables import Table


def no_options(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A config's ``table:`` mapping -> build keywords: ``metric`` and ``datasets`` (or ``columns``) only."""
    kw: dict[str, Any] = {}
    if spec.get("metric"):
        kw["metric"] = spec["metric"]
    ds = spec.get("datasets") or spec.get("columns")
    if ds:
        kw["datasets"] = list(ds)
    return kw


@dataclass(frozen=True)
class Layout:
    name: str
    paper: str  # the source paper, as printed by --list
    table: str  # the published table it sits beside ("Table 1")
    build: Callable[..., Table]  # build(records, show, **kw)
    options: Callable[[dict, dict], dict] = no_options  # config table: mapping, whole config -> build kw
    description: str = ""


def registry():
    from fsadbench.core.registry import LAYOUTS

    return LAYOUTS


def layout_names() -> list[str]:
    return registry().names()


def get_layout(name: str) -> Layout:
    """The registered layout ``name``; an unknown name lists the registered ones."""
    reg = registry()
    if name not in reg:
        raise ConfigError(f"table layout {name!r} unknown; registered layouts: {', '.join(reg.names())} "
                          f"(paper-table --list)")
    try:
        obj, _ = reg.get(name)
    except RegistryError as exc:
        raise ConfigError(str(exc)) from exc
    if not isinstance(obj, Layout):
        raise ConfigError(f"table layout {name!r} ({reg.entry(name).source}) is a {type(obj).__name__}, "
                          f"not a fsadbench.reports.paper.catalog.Layout")
    return obj


def build(name: str, records: Iterable, show: str = "none", notes: str = "full", **kw) -> Table:
    """The layout ``name`` from ``records``; ``notes``: its method notes in full, short or none (``--notes``)."""
    from fsadbench.reports.notes import shape_notes

    return shape_notes(get_layout(name).build(list(records), show, **kw), notes)


def listing() -> list[tuple[str, str, str, str]]:
    """(name, paper and table, description, where it comes from) of every registered layout that loads; a
    plugin that does not is skipped with one :class:`PluginWarning` naming it and why."""
    out = []
    for name in layout_names():
        try:
            lay = get_layout(name)
        except ConfigError as exc:
            source = registry().entry(name).source
            if source == "builtin":
                out.append((name, "?", f"cannot be loaded: {exc}", source))
            else:
                warnings.warn(f"{exc}; skipped", PluginWarning, stacklevel=2)
            continue
        out.append((name, f"{lay.paper}, {lay.table}", lay.description, registry().entry(name).source))
    return out
