"""Compare two sets of records (commit to commit, run to run): deltas, t-based noise bands, exit status.

Only ``ok`` records carry numbers. All deltas are HEAD - BASE in percentage
points (records store fractions). Sides come from :mod:`fsadbench.regression.sources`.

Cell level (one seed): a metric is flagged ``drop`` when delta < -tol(metric).

Table level (method, dataset, shots, variant, metric): both sides are
reduced to the same categories and seeds. When the sides share seeds, the
figure uses those seeds S and the categories C defined on both sides for
every seed of S; the comparison is paired: d_s = head_s - base_s, a one-sided
paired t test. Without a common seed each side keeps its own seeds, C is the
categories defined on both sides for all of them, and the test is Welch's
(:mod:`fsadbench.results.stats`). The noise band is t_{1-alpha, df} x SE
(alpha = 0.025 one-sided by default, the two-sided 95 % t band): with 2 seeds
t_{0.975, 1} = 12.7, where a 2 x SE band flags pure noise about one time in
six (``benchmarks/compare_false_alarm.py`` measures both). SE needs two seeds
(two pairs when paired); without it the noise band is unknown.

A table row is a *regression* when its delta < -tol(metric) AND (delta < -band,
or the band is unknown). Each row names the test that decided it. A row whose
categories or seeds fall short of what either side planned is marked, and a
note names the missing categories and seeds with the reason.

Other outcomes that make the exit status 1 (CI gates): a cell that was ``ok``
in BASE and failed or is missing in HEAD (``--allow-missing`` relaxes the
missing part), cells whose records are not comparable
(:data:`fsadbench.results.comparability.CHECKS`; ``--allow-mismatch``
compares them anyway and says so), and in ``--strict`` mode any cell metric
that moved by more than tol in either direction (the deterministic smoke gate:
any change is a real change) or a table row whose categories or seeds lack, in
HEAD, cells that BASE holds or planned. Cells only in HEAD are listed as new and
never fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import pandas as pd

from fsadbench.core.errors import ConfigError
from fsadbench.regression.sources import Side
from fsadbench.results.comparability import CHECKS, mismatches
from fsadbench.results.coverage import Coverage, ResultSet
from fsadbench.results.records import STATUS_OK, CellKey, Record
from fsadbench.results.stats import TTest, compare_seeds

DEFAULT_TOL = 0.5  # percentage points
DEFAULT_ALPHA = 0.025  # one-sided: the t analogue of a two-sided 95 % band
METRIC_ORDER = ("pixel_auroc", "image_auroc", "aupro", "pixel_ap", "pixel_f1_max", "image_ap", "image_f1_max")


@dataclass(frozen=True)
class Tolerance:
    """Tolerance in pp: a default and per-metric values (``--tol 0.5,image_auroc=1.0``)."""

    default: float = DEFAULT_TOL
    per_metric: tuple[tuple[str, float], ...] = ()

    def __call__(self, metric: str) -> float:
        return dict(self.per_metric).get(metric, self.default)

    @classmethod
    def of(cls, tol: "float | Tolerance | Mapping[str, float] | str") -> "Tolerance":
        if isinstance(tol, Tolerance):
            return tol
        if isinstance(tol, (int, float)):
            return cls(float(tol))
        if isinstance(tol, Mapping):
            d = dict(tol)
            return cls(float(d.pop("*", DEFAULT_TOL)), tuple(sorted((k, float(v)) for k, v in d.items())))
        default, per = DEFAULT_TOL, {}
        for part in (p.strip() for p in str(tol).split(",") if p.strip()):
            name, eq, value = part.partition("=")
            try:
                if eq:
                    per[name.strip()] = float(value)
                else:
                    default = float(name)
            except ValueError:
                raise ConfigError(f"--tol {tol!r}: {part!r} is not a number or METRIC=NUMBER") from None
        return cls(default, tuple(sorted(per.items())))

    def describe(self) -> str:
        return f"{self.default:g} pp" + "".join(f", {m} {v:g} pp" for m, v in self.per_metric)


@dataclass
class Comparison:
    base: Side
    head: Side
    tol: Tolerance
    alpha: float
    strict: bool
    allow_missing: bool
    allow_mismatch: bool
    cells: pd.DataFrame  # one row per (cell, variant, metric) compared
    tables: pd.DataFrame  # one row per (method, dataset, shots, variant, metric)
    only_base: list[CellKey] = field(default_factory=list)
    only_head: list[CellKey] = field(default_factory=list)
    failed_head: list[tuple[CellKey, str]] = field(default_factory=list)
    fixed_head: list[CellKey] = field(default_factory=list)
    mismatched: list[tuple[CellKey, list[tuple[str, Any, Any]]]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _tol_of(self, df: pd.DataFrame) -> pd.Series:
        return df["metric"].map(self.tol)

    @property
    def regressions(self) -> pd.DataFrame:
        return self.tables[self.tables["regression"]] if len(self.tables) else self.tables

    @property
    def incomplete(self) -> pd.DataFrame:
        """Table rows that lack, in head, categories or seeds base holds or planned (new head cells do not count)."""
        return self.tables[self.tables["head_gap"]] if len(self.tables) else self.tables

    @property
    def cell_drops(self) -> pd.DataFrame:
        return self.cells[self.cells["delta"] < -self._tol_of(self.cells)] if len(self.cells) else self.cells

    @property
    def cell_changes(self) -> pd.DataFrame:
        return self.cells[self.cells["delta"].abs() > self._tol_of(self.cells)] if len(self.cells) else self.cells

    def reasons(self) -> list[str]:
        """Why the comparison fails (empty = pass)."""
        out = []
        if len(self.regressions):
            out.append(f"{len(self.regressions)} table figure(s) fell beyond tolerance ({self.tol.describe()}) "
                       f"and beyond the seeds' noise")
        if self.strict and len(self.cell_changes):
            out.append(f"{len(self.cell_changes)} cell metric(s) changed by more than the tolerance "
                       f"(strict: the run is deterministic, so any change is real)")
        if self.strict and len(self.incomplete):
            out.append(f"{len(self.incomplete)} table figure(s) compare fewer categories or seeds than planned: "
                       f"head lacks cells (strict)")
        if self.failed_head:
            out.append(f"{len(self.failed_head)} cell(s) ok in base did not succeed in head")
        if self.only_base and not self.allow_missing:
            out.append(f"{len(self.only_base)} cell(s) of base are missing in head")
        if self.mismatched and not self.allow_mismatch:
            out.append(f"{len(self.mismatched)} cell(s) are not comparable (different metric version, backbone, "
                       f"protocol or data); not compared")
        return out

    @property
    def ok(self) -> bool:
        return not self.reasons()

    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_markdown(self, all_cells: bool = False, max_list: int = 50) -> str:
        from fsadbench.regression.render import render_markdown

        return render_markdown(self, all_cells=all_cells, max_list=max_list)


def _metric_names(base: Record, head: Record, variant: str, metrics: Sequence[str] | None) -> list[str]:
    names = set(base.metrics.get(variant, {})) & set(head.metrics.get(variant, {}))
    if metrics:
        names &= set(metrics)
    order = {m: i for i, m in enumerate(METRIC_ORDER)}
    return sorted(names, key=lambda m: (order.get(m, len(order)), m))


def _num(x) -> float:
    return float("nan") if x is None else float(x)


def _ck(k: CellKey) -> tuple:
    return (k.method, k.dataset, k.category, k.shots, k.seed)


def table_stats(base: dict[int, float], head: dict[int, float], alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """Delta, SE, t band and test of one dataset figure from per-seed values (pp) on each side.

    Paired t when both sides hold the same seeds, else Welch t (see the module doc).
    """
    b = {s: v for s, v in base.items() if not math.isnan(v)}
    h = {s: v for s, v in head.items() if not math.isnan(v)}
    nan = float("nan")
    out: dict[str, Any] = {"base": nan, "head": nan, "delta": nan, "se": nan, "df": nan, "band": nan,
                           "paired": set(b) == set(h) and bool(b), "n_base": len(b), "n_head": len(h), "test": None}
    if not b or not h:
        return out
    out["base"], out["head"] = sum(b.values()) / len(b), sum(h.values()) / len(h)
    tt: TTest = compare_seeds(h, b)
    out.update(delta=tt.delta, se=tt.se, df=tt.df, band=tt.band(alpha), test=tt)  # paired: mean of d_s = the same
    return out


def _values(side: Side, skip: set[CellKey], metrics: Sequence[str] | None) -> dict[tuple, dict[tuple, float]]:
    """(method, dataset, shots, variant, metric) -> {(category, seed): value in pp} of the ok records."""
    out: dict[tuple, dict[tuple, float]] = {}
    for r in side.records:
        if r.status != STATUS_OK or r.cell in skip:
            continue
        k = r.cell
        for v, ms in r.metrics.items():
            for m, x in ms.items():
                if x is None or (metrics and m not in metrics):
                    continue
                out.setdefault((k.method, k.dataset, k.shots, v, m), {})[(k.category, k.seed)] = float(x) * 100
    return out


def _coverage(g: tuple, cats_used: list[str], seeds_used: set[int], rb: ResultSet, rh: ResultSet,
              skip: set[CellKey]) -> Coverage:
    method, dataset, shots, variant, metric = g
    cats = list(dict.fromkeys(rb.categories(dataset) + rh.categories(dataset)))
    seeds = sorted(set(rb.seeds(dataset)) | set(rh.seeds(dataset)))
    missing = []
    for c in cats:
        for s in seeds:
            if c in cats_used and s in seeds_used:
                continue
            key = CellKey(method, dataset, c, shots, s)
            why = ["not comparable"] if key in skip else []
            for name, rs in (("base", rb), ("head", rh)):
                val, w = rs.value(key, variant, metric)
                if val is None:
                    why.append(f"{name}: {w}")
            if not why:  # both sides hold it: its category lacks a seed on one side (a seed held on one
                # side only leaves that side's other cells without a value, named above)
                why.append("left out: the category lacks another seed")
            missing.append((c, s, "; ".join(why)))
    return Coverage(tuple(cats), tuple(seeds), tuple(missing))


def compare(base: Side, head: Side, tol: float | Tolerance | Mapping[str, float] | str = DEFAULT_TOL,
            alpha: float = DEFAULT_ALPHA, metrics: Sequence[str] | None = None, strict: bool = False,
            allow_missing: bool = False, allow_mismatch: bool = False,
            checks: Sequence[str] | None = None) -> Comparison:
    """Compare two sides cell by cell and table by table (see the module doc for the rules).

    ``checks``: the comparability checks to apply (names of ``CHECKS``; default all).
    """
    tol = Tolerance.of(tol)
    if tol.default < 0 or any(v < 0 for _, v in tol.per_metric) or not 0 < alpha < 1:
        raise ConfigError(f"--tol ({tol.describe()}) must be >= 0 and --alpha ({alpha}) in (0, 1)")
    bad = sorted(set(checks or ()) - set(CHECKS))
    if bad:
        raise ConfigError(f"comparability check(s) {bad} unknown; known: {sorted(CHECKS)}")
    B, H = base.by_cell, head.by_cell
    cmp = Comparison(base, head, tol, alpha, strict, allow_missing, allow_mismatch, pd.DataFrame(), pd.DataFrame())
    ok_b = {k for k, r in B.items() if r.status == STATUS_OK}
    ok_h = {k for k, r in H.items() if r.status == STATUS_OK}
    cmp.only_base = sorted((k for k in ok_b if k not in H), key=_ck)
    cmp.only_head = sorted((k for k in H if k not in B), key=_ck)
    cmp.failed_head = sorted(((k, H[k].status) for k in ok_b if k in H and k not in ok_h), key=lambda t: _ck(t[0]))
    cmp.fixed_head = sorted((k for k in ok_h if k in B and k not in ok_b), key=_ck)
    rows, skip = [], set()
    for k in sorted(ok_b & ok_h, key=_ck):
        rb, rh = B[k], H[k]
        mm = mismatches(rb, rh, checks)
        if mm:
            cmp.mismatched.append((k, mm))
            if not allow_mismatch:
                skip.add(k)
                continue
        if rb.config_hash and rh.config_hash and rb.config_hash != rh.config_hash:
            cmp.notes.append(f"{k}: resume key differs ({rb.config_hash} -> {rh.config_hash}): options, their "
                             f"defaults, method or feature versions, backbone, protocol or data changed")
        for v in [v for v in rb.metrics if v in rh.metrics]:
            for m in _metric_names(rb, rh, v, metrics):
                vb, vh = _num(rb.metrics[v][m]) * 100, _num(rh.metrics[v][m]) * 100
                rows.append({"method": k.method, "dataset": k.dataset, "category": k.category, "shots": k.shots,
                             "seed": k.seed, "variant": v, "metric": m, "base": vb, "head": vh,
                             "delta": vh - vb, "mismatch": bool(mm)})
    cols = ["method", "dataset", "category", "shots", "seed", "variant", "metric", "base", "head", "delta", "mismatch"]
    cmp.cells = pd.DataFrame(rows, columns=cols)
    cmp.tables = _tables(base, head, skip, metrics, tol, alpha)
    dirty = [s for s in (base, head) if any(((r.provenance or {}).get("git") or {}).get("dirty") for r in s.records)]
    for s in dirty:
        cmp.notes.insert(0, f"side `{s.spec}` holds records made from a working tree with uncommitted changes")
    return cmp


def _tables(base: Side, head: Side, skip: set[CellKey], metrics, tol: Tolerance, alpha: float) -> pd.DataFrame:
    VB, VH = _values(base, skip, metrics), _values(head, skip, metrics)
    # each method's figure is planned by that method's own sweeps: another method's run (more seeds,
    # other categories) in the same folder does not make it incomplete
    plans: dict[str, tuple[ResultSet, ResultSet]] = {}
    gkeys = ["method", "dataset", "shots", "variant", "metric"]
    trows = []
    for g in sorted(set(VB) & set(VH), key=lambda g: (g[0], g[1], g[2], g[3], _metric_rank(g[4]), g[4])):
        vb, vh = VB[g], VH[g]
        sb, sh = {s for _, s in vb}, {s for _, s in vh}
        common = sb & sh
        seeds_b, seeds_h = (common, common) if common else (sb, sh)
        cats = sorted({c for c, _ in vb} | {c for c, _ in vh})
        used = [c for c in cats if all((c, s) in vb for s in seeds_b) and all((c, s) in vh for s in seeds_h)]
        base_ps = {s: sum(vb[(c, s)] for c in used) / len(used) for s in seeds_b} if used else {}
        head_ps = {s: sum(vh[(c, s)] for c in used) / len(used) for s in seeds_h} if used else {}
        st = table_stats(base_ps, head_ps, alpha)
        if g[0] not in plans:
            plans[g[0]] = tuple(ResultSet([r for r in side.records if r.key["method"] == g[0]])
                                for side in (base, head))
        cov = _coverage(g, used, seeds_b | seeds_h, *plans[g[0]], skip)
        t = tol(g[4])
        d, band = st["delta"], st["band"]
        beyond_tol = bool(d < -t)
        beyond_noise = None if math.isnan(band) else bool(d < -band)
        test = st.pop("test")
        trows.append({**dict(zip(gkeys, g)), **st, "tol": t, "n_categories": len(used),
                      "test": test.describe() if test is not None else "no common category",
                      "p": test.p_lower if test is not None else float("nan"),
                      "complete": cov.complete, "coverage": cov.describe(),
                      "head_gap": any(r.startswith("not comparable") or "head: " in r for _, _, r in cov.missing),
                      "beyond_tol": beyond_tol, "beyond_noise": beyond_noise,
                      "regression": beyond_tol and beyond_noise is not False})
    tcols = gkeys + ["base", "head", "delta", "se", "df", "band", "paired", "n_base", "n_head", "tol", "n_categories",
                     "test", "p", "complete", "coverage", "head_gap", "beyond_tol", "beyond_noise", "regression"]
    return pd.DataFrame(trows, columns=tcols)


def _metric_rank(m: str) -> int:
    return METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER)
