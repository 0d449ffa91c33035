"""Figures with their coverage: what each mean covers, and what it is missing and why.

A *figure* is one table entry: the dataset figure of (method, dataset, shots,
variant, metric) or the per-category figure of one category. The dataset
figure of a seed is the mean over the categories whose metric is defined;
the figure is mean ± std (population std, ddof=0) over seeds, in percent.

Its *coverage* compares what it was computed from with what was planned:
the planned categories of a dataset and the planned seeds are the union of
the ``plan`` of every record of that dataset in the set, the categories and
seeds listed in the records' run configs, and the cells present in any
record (any method, any status). A figure over fewer categories or seeds
than planned is incomplete; :meth:`Coverage.describe` names what is missing
(categories by name, seeds by number) with the reason read from the
records: no record, failed (the error's last line), not applicable, or the
metric undefined for that cell (the evaluator's reason).

A :class:`Scope` narrows a set to the cells one invocation asked for (the table ``run`` prints): only
its methods, datasets, categories, shots and seeds, planned as it planned them, so records of earlier
runs in the same folder neither add rows nor footnotes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from fsadbench.core.types import PIXEL_METRICS
from fsadbench.results.records import STATUS_FAILED, STATUS_NA, STATUS_OK, CellKey, Record

MAX_LISTED = 8


@dataclass(frozen=True)
class Scope:
    """The cells of one invocation: method ids, datasets with their categories (None: every category
    its records name), shots and seeds."""

    methods: tuple[str, ...]
    datasets: tuple[tuple[str, tuple[str, ...] | None], ...]
    shots: tuple[int, ...]
    seeds: tuple[int, ...]

    def holds(self, key: dict) -> bool:
        cats = dict(self.datasets).get(key["dataset"], ())
        return (key["method"] in self.methods and int(key["shots"]) in self.shots
                and int(key["seed"]) in self.seeds and (cats is None or key["category"] in cats))


def _last_line(text: str | None) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:160]


@dataclass(frozen=True)
class Coverage:
    categories: tuple[str, ...]  # planned
    seeds: tuple[int, ...]  # planned
    missing: tuple[tuple[str, int, str], ...] = ()  # (category, seed, reason)

    @property
    def complete(self) -> bool:
        return not self.missing

    def describe(self) -> str:
        """"covers 1/2 categories x 2/2 seeds; missing: category cable (failed: boom); seed 3 (no record)"."""
        if self.complete:
            return f"covers all {len(self.categories)} categories x {len(self.seeds)} seeds"
        if len(self.categories) == 1:
            items = [f"seed {s} ({r})" for _, s, r in self.missing]
            return (f"covers {len(self.seeds) - len(items)}/{len(self.seeds)} seeds; missing: "
                    + ", ".join(items[:MAX_LISTED]) + (f", and {len(items) - MAX_LISTED} more"
                                                       if len(items) > MAX_LISTED else ""))
        reasons: dict[tuple[str, int], str] = {(c, s): r for c, s, r in self.missing}
        items: list[str] = []
        whole_cats = [c for c in self.categories if all((c, s) in reasons for s in self.seeds)]
        whole_seeds = [s for s in self.seeds if all((c, s) in reasons for c in self.categories)
                       and len(whole_cats) < len(self.categories)]
        for c in whole_cats:
            rs = list(dict.fromkeys(reasons[(c, s)] for s in self.seeds))
            items.append(f"category {c} ({'; '.join(rs)})")
        for s in whole_seeds:
            rs = list(dict.fromkeys(reasons[(c, s)] for c in self.categories if c not in whole_cats))
            items.append(f"seed {s} ({'; '.join(rs)})")
        for c, s, r in self.missing:
            if c not in whole_cats and s not in whole_seeds:
                items.append(f"{c} seed {s} ({r})")
        shown = items[:MAX_LISTED] + ([f"and {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else [])
        n_cat = len(self.categories) - len(whole_cats)
        n_seed = len([s for s in self.seeds if not all((c, s) in reasons for c in self.categories)])
        return (f"covers {n_cat}/{len(self.categories)} categories x {n_seed}/{len(self.seeds)} seeds"
                f"{' (some cells missing)' if len(items) > len(whole_cats) + len(whole_seeds) else ''}; "
                f"missing: " + ", ".join(shown))


@dataclass(frozen=True)
class Figure:
    """mean ± std (%) over seeds, the per-seed values it came from, and its coverage."""

    mean: float
    std: float
    seeds: dict[int, float] = field(default_factory=dict)
    coverage: Coverage | None = None

    @property
    def complete(self) -> bool:
        return self.coverage is None or self.coverage.complete

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def _figure(per_seed: dict[int, float], cov: Coverage) -> Figure | None:
    vals = [v for v in per_seed.values() if not math.isnan(v)]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return Figure(mean, std, {s: v for s, v in sorted(per_seed.items()) if not math.isnan(v)}, cov)


class ResultSet:
    """The records of a table, indexed by cell, with the planned categories and seeds per dataset."""

    def __init__(self, records: Iterable[Record], plans_from: Iterable[Record] | None = None):
        latest: dict[CellKey, Record] = {}
        for r in records:
            k = r.cell
            if k not in latest or _time(r) >= _time(latest[k]):
                latest[k] = r
        self.records = list(latest.values())
        self.by_cell = latest
        self._cats: dict[str, dict[str, None]] = {}
        self._seeds: dict[str, set[int]] = {}
        for r in (self.records if plans_from is None else list(plans_from)):
            self._note_plan(r)

    def _note_plan(self, r: Record) -> None:
        d = r.key["dataset"]
        cats, seeds = self._cats.setdefault(d, {}), self._seeds.setdefault(d, set())
        for c in (r.plan or {}).get("categories") or []:
            cats.setdefault(str(c), None)
        for ds in (r.config or {}).get("datasets") or []:
            if isinstance(ds, dict) and ds.get("name") == d:
                for c in ds.get("categories") or []:
                    cats.setdefault(str(c), None)
        cats.setdefault(r.key["category"], None)
        seeds.update(int(s) for s in ((r.plan or {}).get("seeds") or (r.config or {}).get("seeds") or []))
        seeds.add(int(r.key["seed"]))

    def select(self, methods: Sequence[str] | None = None, datasets: Sequence[str] | None = None,
               scope: Scope | None = None) -> "ResultSet":
        """The records of these method ids / datasets; the plans stay those of the whole set. With a
        ``scope``, only its cells, planned as the scope plans them (its seeds; its categories, else
        those of the kept records)."""
        keep = [r for r in self.records if (not methods or r.key["method"] in methods)
                and (not datasets or r.key["dataset"] in datasets) and (scope is None or scope.holds(r.key))]
        if scope is not None:
            out = ResultSet(keep)
            for d, cats in scope.datasets:
                if cats is not None:
                    out._cats[d] = dict.fromkeys(cats)
                out._seeds[d] = set(scope.seeds)
            return out
        out = ResultSet(keep, plans_from=())
        out._cats, out._seeds = self._cats, self._seeds
        return out

    # -- plans -----------------------------------------------------------------------------
    def categories(self, dataset: str) -> list[str]:
        return list(self._cats.get(dataset, {}))

    def seeds(self, dataset: str) -> list[int]:
        return sorted(self._seeds.get(dataset, set()))

    def ok_records(self) -> list[Record]:
        return [r for r in self.records if r.status == STATUS_OK]

    # -- one cell's value, or why there is none ---------------------------------------------
    def value(self, key: CellKey, variant: str, metric: str) -> tuple[float | None, str]:
        """(value in %, "") or (None, reason)."""
        r = self.by_cell.get(key)
        if r is None:
            return None, "no record"
        if r.status == STATUS_FAILED:
            return None, f"failed: {_last_line(r.error) or 'no message'}"
        if r.status == STATUS_NA:
            return None, f"not applicable: {_last_line(r.error)}"
        if r.status != STATUS_OK:
            return None, f"status {r.status}"
        m = r.metrics.get(variant)
        if m is None:
            return None, f"no variant {variant!r}"
        v = m.get(metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            why = (r.undefined.get(variant) or {}).get(metric)
            return None, f"{metric} undefined" + (f": {why}" if why else "")
        return float(v) * 100, ""

    # -- figures -----------------------------------------------------------------------------
    def dataset_figure(self, method: str, dataset: str, shots: int, variant: str, metric: str,
                       categories: Sequence[str] | None = None) -> Figure | None:
        """Mean over categories per seed, then mean ± std over seeds; None when nothing is defined."""
        cats = list(categories or self.categories(dataset))
        seeds = self.seeds(dataset)
        missing, per_seed = [], {}
        for s in seeds:
            vals = []
            for c in cats:
                v, why = self.value(CellKey(method, dataset, c, shots, s), variant, metric)
                if v is None:
                    missing.append((c, s, why))
                else:
                    vals.append(v)
            if vals:
                per_seed[s] = sum(vals) / len(vals)
        return _figure(per_seed, Coverage(tuple(cats), tuple(seeds), tuple(missing)))

    def category_figure(self, method: str, dataset: str, category: str, shots: int, variant: str,
                        metric: str) -> Figure | None:
        missing, per_seed = [], {}
        for s in self.seeds(dataset):
            v, why = self.value(CellKey(method, dataset, category, shots, s), variant, metric)
            if v is None:
                missing.append((category, s, why))
            else:
                per_seed[s] = v
        return _figure(per_seed, Coverage((category,), tuple(self.seeds(dataset)), tuple(missing)))

    def why_empty(self, method: str, dataset: str, shots: int, variant: str, metric: str) -> str:
        """Why a figure has no value at all: the reasons of its cells, most common first."""
        from collections import Counter

        reasons = Counter(self.value(CellKey(method, dataset, c, shots, s), variant, metric)[1]
                          for c in self.categories(dataset) for s in self.seeds(dataset))
        return "; ".join(r for r, _ in reasons.most_common(3)) or "no record"

    def has_variant(self, method: str, variant: str) -> bool:
        """Whether the method produces ``variant`` (declared in its records, or measured)."""
        return any(variant in ((r.method or {}).get("variants") or ()) or variant in r.metrics
                   for r in self.records if r.key["method"] == method)

    def image_level(self, method: str, metric: str) -> bool:
        """Whether ``metric`` is a pixel metric and ``method`` an image-level one (its records declare
        ``outputs: ["image"]``): the entry is "n/a, image-level method" by design, not a missing figure."""
        return metric in PIXEL_METRICS and any((r.method or {}).get("outputs") == ["image"]
                                               for r in self.records if r.key["method"] == method)

    def status_of(self, method: str, dataset: str, shots: int) -> set[str]:
        """The statuses of this method's records of (dataset, shots)."""
        return {r.status for k, r in self.by_cell.items()
                if k.method == method and k.dataset == dataset and k.shots == shots}

    def describe_plan(self, dataset: str) -> str:
        cats, seeds = self.categories(dataset), self.seeds(dataset)
        return f"{dataset}: {len(cats)} categories ({', '.join(cats[:6])}{', ...' if len(cats) > 6 else ''}), " \
               f"seeds {', '.join(map(str, seeds))}"


def _time(r: Record) -> str:
    return str((r.provenance or {}).get("time_utc") or "")
