"""``list``: registered methods, datasets and paper layouts; ``--method M`` (and ``--verbose`` for all) adds
each method's paper, backbone and weights, options (default, meaning, where the default comes from) and
fidelity notes; ``--layouts`` the paper table layouts; ``--config-reference`` the config keys (docs/config.md)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from typing import Any, Sequence

from fsadbench.cli.common import parser


def build_parser() -> argparse.ArgumentParser:
    p = parser("list", "Registered methods, datasets and paper layouts (plugins from entry points included).")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="each method's paper, backbone, options (default and meaning) and fidelity notes; each "
                        "dataset's categories; each paper layout")
    p.add_argument("--method", help="only this method, in full (implies --verbose)")
    p.add_argument("--layouts", action="store_true", help="only the paper table layouts (as paper-table --list)")
    p.add_argument("--config-reference", action="store_true",
                   help="print the run config's keys as Markdown (the source of docs/config.md)")
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


def method_backbones(cls: type, options: Any) -> tuple[Any, Any, bool]:
    """(backbone with the default sweep, backbone in the pipeline check, True when it is the sweep's CLIP)."""
    from fsadbench.backbone.spec import BackboneSpec
    from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, RANDOM, TINY_MODEL

    sweep = BackboneSpec(DEFAULT_MODEL, DEFAULT_PRETRAINED)
    own = cls.backbone_for(options, sweep)
    return own, cls.backbone_for(options, BackboneSpec(TINY_MODEL, RANDOM)), own == sweep


def backbone_line(own: Any, check: Any, shared: bool) -> str:
    """Where the method's numbers come from: the sweep's CLIP model, or its own default backbone and weights
    (and the random configuration the pipeline check runs)."""
    from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL

    if shared:
        return (f"backbone: the sweep's open_clip model (--model, default {DEFAULT_MODEL}; --pretrained, default "
                f"{DEFAULT_PRETRAINED}); pipeline check: {TINY_MODEL}, random weights")
    return (f"backbone: {own.name} (its own), weights {own.pretrained}; pipeline check: {check.name}, "
            f"{'random weights' if check.is_random else 'weights ' + check.pretrained} (options backbone, "
            f"backbone_weights)")


def describe_method(name: str) -> list[str]:
    from fsadbench.core.optiondoc import field_comments
    from fsadbench.core.registry import METHODS

    cls, registered = METHODS.get(name)
    entry = METHODS.entry(name)
    opts = option_defaults(cls, registered)
    scope = cls.fit_scope_for({o: v for o, v, _ in opts})
    lines = [f"{name}: {paper_of(cls)}",
             f"    variants: {', '.join(cls.variants)}; fit per {scope}; min shots {cls.min_shots}; "
             f"sigma {cls.default_sigma:g}; version {cls.version}"
             + ("" if entry.source == "builtin" else f"; from {entry.source}")]
    resolved: dict[str, str] = {}
    try:
        own, check, shared = method_backbones(cls, cls.make_options(dict(registered)))
        lines.append("    " + backbone_line(own, check, shared))
        if not shared:  # the empty options stand for these
            resolved = {"backbone": f"-> {own.name} (pipeline check {check.name})",
                        "backbone_weights": f"-> {own.pretrained} (pipeline check {check.pretrained})"}
    except Exception as exc:  # noqa: BLE001 (a plugin's options or backbone that cannot resolve: said, not raised)
        lines.append(f"    backbone: cannot be resolved ({str(exc).splitlines()[0]})")
    if opts:
        meaning = {o: plain(text) for o, text in field_comments(cls.Options).items()}
        width = max(len(o) for o, _, _ in opts)
        vwidth = min(24, max(len(repr(v)) for _, v, _ in opts))
        lines.append(f"    options (--method-option {name}.OPTION=VALUE; default, then its meaning and source):")
        for o, v, mine in opts:
            shown = resolved.get(o, "") if v in ("", None) else ""
            why = (f"(set by '{name}') " if mine else "") + "; ".join(x for x in (shown, meaning.get(o, "")) if x)
            lines.append((f"      {o:<{width}} = {v!r:<{vwidth}}" + (f"  {why}" if why else "")).rstrip())
    notes = list(getattr(cls, "fidelity_notes", ()) or ())
    if notes:
        lines.append("    fidelity notes (departures from the paper / reference code; in every record and table):")
        lines += [f"      - {n}" for n in notes]
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


def describe_layouts() -> list[str]:
    """Each registered paper layout: name, paper and table, what it shows, where it comes from."""
    from fsadbench.reports.paper.catalog import listing

    return [f"{name}: {paper}" + (f" ({desc})" if desc else "") + ("" if source == "builtin" else f" [{source}]")
            for name, paper, desc, source in listing()]


def main(argv: Sequence[str]) -> int:
    from fsadbench.core.registry import DATASETS, METHODS
    from fsadbench.reports.paper.catalog import layout_names

    a = build_parser().parse_args(list(argv))
    if a.config_reference:
        from fsadbench.run.config_doc import config_reference

        print(config_reference(), end="")
        return 0
    if a.layouts:
        print("\n".join(describe_layouts()))
        return 0
    if a.method:
        print("\n".join(describe_method(a.method)))
        return 0
    if not a.verbose:
        print("methods: " + ", ".join(METHODS.names()))
        print("datasets: " + ", ".join(DATASETS.names()))
        print("paper layouts: " + ", ".join(layout_names()) + "   (details: list --layouts, list --method NAME)")
        return 0
    print("methods:")
    for n in METHODS.names():
        print("\n".join("  " + line for line in _safely(describe_method, n)))
    print("datasets:")
    for n in DATASETS.names():
        print("\n".join("  " + line for line in _safely(describe_dataset, n)))
    print("paper layouts:")
    print("\n".join("  " + line for line in describe_layouts()))
    return 0


def _safely(describe, name: str) -> list[str]:
    """One plugin that cannot be imported is listed with its error; the others are still described."""
    from fsadbench.core.errors import BenchError

    try:
        return describe(name)
    except BenchError as exc:
        return [f"{name}: cannot be loaded: {str(exc).splitlines()[0]}"]
