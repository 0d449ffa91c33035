"""One registry per plugin kind (methods, datasets, paper table layouts).

Three ways in, all ending in the same name -> factory table:

* ``@METHODS.register("name")`` on a class inside the project;
* lazy entries ``"name" -> "module:attr"`` so listing names imports nothing
  heavy (the built-in table is in :mod:`fsadbench.core.builtin`);
* the Python entry-point groups ``fsadbench.methods`` / ``fsadbench.datasets`` /
  ``fsadbench.layouts`` (a :class:`fsadbench.reports.paper.catalog.Layout`) so an outside package adds a plugin without editing this repository::

      [project.entry-points."fsadbench.methods"]
      mymethod = "mypkg.mymodule:MyMethod"

A registered name may carry default options (``promptad-g`` is ``promptad``
with ``generic_only=True``).
"""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable, Generic, TypeVar

from fsadbench.core.errors import PluginWarning, RegistryError, error_summary

T = TypeVar("T")


@dataclass
class Entry:
    name: str
    target: Any  # a class, or a "module:attr" string until first use
    options: dict[str, Any] = field(default_factory=dict)
    source: str = "builtin"

    def load(self) -> Any:
        if isinstance(self.target, str):
            module_name, _, attr = self.target.partition(":")
            module = importlib.import_module(module_name)
            self.target = getattr(module, attr)
        return self.target


class Registry(Generic[T]):
    def __init__(self, kind: str, group: str):
        self.kind = kind
        self.group = group
        self._entries: dict[str, Entry] = {}
        self._plugins_loaded = False

    # registration -------------------------------------------------------
    def register(self, name: str, **options: Any) -> Callable[[T], T]:
        """Class decorator: ``@METHODS.register("memory")``."""

        def deco(obj: T) -> T:
            self.add(name, obj, options=options)
            return obj

        return deco

    def add(self, name: str, target: Any, options: dict | None = None, source: str = "builtin") -> None:
        name = name.lower()
        existing = self._entries.get(name)
        if existing is not None and not isinstance(existing.target, str) and existing.target is not target:
            if not (isinstance(target, str)):
                raise RegistryError(f"{self.kind} {name!r} is registered twice ({existing.target} and {target})")
        if existing is not None and isinstance(target, str) and not isinstance(existing.target, str):
            return  # already imported; keep the live class
        self._entries[name] = Entry(name, target, dict(options or {}), source)

    # lookup -------------------------------------------------------------
    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            existing = self._entries.get(ep.name.lower())
            if existing is not None and existing.source == "builtin":  # refused by name (was: dropped silently)
                warnings.warn(f"{self.kind} plugin {ep.name!r} (entry point {ep.value}) refused: "
                              f"{ep.name.lower()!r} is a built-in {self.kind}'s name; rename the entry point",
                              PluginWarning, stacklevel=2)
            elif existing is None:
                self._entries[ep.name.lower()] = Entry(ep.name.lower(), ep.value, {}, f"entry point {ep.value}")

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._entries)

    def __contains__(self, name: str) -> bool:
        self._load_plugins()
        return name.lower() in self._entries

    def entry(self, name: str) -> Entry:
        self._load_plugins()
        key = name.lower()
        if key not in self._entries:
            raise RegistryError(
                f"unknown {self.kind} {name!r}. Registered {self.kind}s: {', '.join(self.names())}. "
                f"Add one with @{self.kind.upper()}S.register(...) or the entry-point group '{self.group}'."
            )
        return self._entries[key]

    def get(self, name: str) -> tuple[T, dict[str, Any]]:
        """Return (class, default options) for a registered name."""
        e = self.entry(name)
        try:
            return e.load(), dict(e.options)
        except (ImportError, AttributeError) as exc:
            raise RegistryError(f"{self.kind} {name!r} ({e.source}: {e.target}) could not be imported: {exc}") from exc
        except Exception as exc:  # a plugin that raises at import (or has a SyntaxError) is named, not a crash
            if e.source == "builtin":
                raise
            raise RegistryError(f"{self.kind} {name!r} ({e.source}) could not be imported: "
                                f"{error_summary(exc)}") from exc


METHODS: Registry = Registry("method", "fsadbench.methods")
DATASETS: Registry = Registry("dataset", "fsadbench.datasets")
LAYOUTS: Registry = Registry("layout", "fsadbench.layouts")

from fsadbench.core import builtin as _builtin  # noqa: E402  (fills the lazy tables)

_builtin.register_builtins(METHODS, DATASETS, LAYOUTS)
