"""Published figures and the protocol a measured figure must match before it is diffed against one.

The data is ``fsadbench/data/published.yaml`` (figures re-typed from the
papers, with their source paper and table). A measured figure is *comparable*
to a published one when (:func:`diff_blockers` returns nothing):

* it covers every category of the dataset (the dataset plugin's list) for
  every planned seed, with no cell missing;
* it is over the table protocol's number of seeds (``protocol.seeds``);
* every record behind it used the protocol's backbone with pretrained weights
  (``protocol.model`` / ``protocol.pretrained``), not random weights.

Otherwise the measured figure is shown without a diff, and a note says why.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any, Iterable

import yaml

from fsadbench.core.errors import RegistryError
from fsadbench.results.coverage import Figure
from fsadbench.results.records import Record

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


def is_measurable(method: str) -> bool:
    """Whether the harness implements ``method`` (else its layout row shows published figures only)."""
    from fsadbench.core.registry import METHODS

    return method in METHODS.names()


def diff_blockers(fig: Figure | None, dataset: str, records: Iterable[Record], protocol: dict[str, Any]) -> list[str]:
    """Why ``fig`` may not be diffed against the paper (empty: comparable). ``records``: those behind it."""
    if fig is None:
        return ["no measured figure"]
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
    bbs = {((r.backbone or {}).get("model"), (r.backbone or {}).get("pretrained"),
            bool((r.backbone or {}).get("random_weights"))) for r in records}
    if any(random for _, _, random in bbs):
        out.append("random backbone weights")
    model, pre = protocol.get("model"), protocol.get("pretrained")
    other = sorted({f"{m}/{p}" for m, p, _ in bbs if (model and m != model) or (pre and p != pre)})
    if other:
        out.append(f"backbone {', '.join(other)} vs the paper's {model}/{pre}")
    return out
