"""Published figures, their sources and labels: ``fsadbench/data/published.yaml``.

The figures are re-typed from the papers, with their source paper and table,
and each table's ``protocol``: what a measured figure must match before it is
diffed against one (the rule: :func:`fsadbench.reports.paper.comparable.diff_blockers`).
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

Fig = tuple  # published (mean, std or None) in %


@lru_cache(maxsize=1)
def published() -> dict[str, Any]:
    """The published figures (fsadbench/data/published.yaml)."""
    text = resources.files("fsadbench").joinpath("data/published.yaml").read_text()
    return yaml.safe_load(text)


def table_data(table_key: str) -> dict[str, Any]:
    return published()["tables"][table_key]


def method_label(name: str) -> str:
    return (published().get("labels") or {}).get("methods", {}).get(name, name)


def dataset_label(name: str) -> str:
    return (published().get("labels") or {}).get("datasets", {}).get(name, name)


def source_name(key: str) -> str:
    """A paper by its ``sources`` key (a text that is no key is returned as is)."""
    return published()["sources"].get(key, key)


def source_note(table_key: str, data: dict[str, Any] | None = None) -> str:
    t = data if data is not None else table_data(table_key)
    return f"paper: {source_name(t['source'])}, {t['table']}; diff = measured - paper (pp)."


def pub_value(v) -> Fig | None:
    """A published value: [mean, std] -> (mean, std); bare number -> (mean, None); null -> None."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return (float(v[0]), None if len(v) < 2 or v[1] is None else float(v[1]))
    return (float(v), None)


def is_measurable(method: str) -> bool:
    """Whether the harness implements ``method`` (else its layout row shows published figures only)."""
    from fsadbench.core.registry import METHODS

    return method in METHODS.names()

