"""``list``: registered methods and datasets; ``--verbose`` adds each one's paper, options and defaults."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any, Sequence

from fsadbench.cli.common import parser


def build_parser() -> argparse.ArgumentParser:
    p = parser("list", "Registered methods and datasets (plugins from entry points included).")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="each method's paper, variants and options with their defaults; each dataset's categories")
    p.add_argument("--method", help="only this method (implies --verbose)")
    return p


def paper_of(cls: type) -> str:
    """The plugin's ``paper`` attribute, else the first line of its module's docstring (which cites it)."""
    paper = getattr(cls, "paper", None)
    if paper:
        return str(paper)
    module = sys.modules.get(cls.__module__)
    doc = ((module.__doc__ if module is not None else None) or cls.__doc__ or "").strip()
    return plain(doc.splitlines()[0]) if doc else "(no reference given)"


def plain(text: str) -> str:
    """A docstring line for the terminal: reST literals (````x````, ```x```) and roles (``:class:`X```) unwrapped."""
    text = re.sub(r":[a-z]+:`~?([^`]*)`", r"\1", text)
    return re.sub(r"`{1,2}([^`]*)`{1,2}", r"\1", text).strip()


def option_defaults(cls: type, registered: dict[str, Any]) -> list[tuple[str, Any, bool]]:
    """(option, default, set by the registered name) for a method class's ``Options`` dataclass."""
    out = []
    for f in dataclasses.fields(cls.Options):
        if f.name in registered:
            out.append((f.name, registered[f.name], True))
        elif f.default is not dataclasses.MISSING:
            out.append((f.name, f.default, False))
        elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
            out.append((f.name, f.default_factory(), False))  # type: ignore[misc]
        else:
            out.append((f.name, "(required)", False))
    return out


def describe_method(name: str) -> list[str]:
    from fsadbench.core.registry import METHODS

    cls, registered = METHODS.get(name)
    entry = METHODS.entry(name)
    opts = option_defaults(cls, registered)
    scope = cls.fit_scope_for({o: v for o, v, _ in opts})
    lines = [f"{name}: {paper_of(cls)}",
             f"    variants: {', '.join(cls.variants)}; fit per {scope}; min shots {cls.min_shots}; "
             f"sigma {cls.default_sigma:g}" + ("" if entry.source == "builtin" else f"; from {entry.source}")]
    if opts:
        width = max(len(o) for o, _, _ in opts)
        lines.append("    options (--method-option NAME.OPTION=VALUE):")
        lines += [f"      {o:<{width}} = {v!r}" + (f"  (set by '{name}')" if mine else "") for o, v, mine in opts]
    return lines


def describe_dataset(name: str) -> list[str]:
    from fsadbench.core.registry import DATASETS

    cls, registered = DATASETS.get(name)
    cats = ", ".join(cls.categories) if cls.categories else "discovered on disk"
    lines = [f"{name}: {paper_of(cls)}", f"    categories: {cats}"]
    if getattr(cls, "option_names", ()):
        lines.append(f"    options: {', '.join(cls.option_names)}"
                     + (f" (set by '{name}': {registered})" if registered else ""))
    return lines


def main(argv: Sequence[str]) -> int:
    from fsadbench.core.registry import DATASETS, METHODS

    a = build_parser().parse_args(list(argv))
    if a.method:
        print("\n".join(describe_method(a.method)))
        return 0
    if not a.verbose:
        print("methods: " + ", ".join(METHODS.names()))
        print("datasets: " + ", ".join(DATASETS.names()))
        return 0
    print("methods:")
    for n in METHODS.names():
        print("\n".join("  " + line for line in _safely(describe_method, n)))
    print("datasets:")
    for n in DATASETS.names():
        print("\n".join("  " + line for line in _safely(describe_dataset, n)))
    return 0


def _safely(describe, name: str) -> list[str]:
    """One plugin that cannot be imported is listed with its error; the others are still described."""
    from fsadbench.core.errors import BenchError

    try:
        return describe(name)
    except BenchError as exc:
        return [f"{name}: cannot be loaded: {str(exc).splitlines()[0]}"]
