"""The Markdown report of a :class:`fsadbench.regression.compare.Comparison`.

Verdict and reasons first; then the comparability problems, the table
figures (each flag with the test that decided it, each incomplete figure with
a footnote naming the missing categories and seeds), the cells that moved, and
the cells that failed, went missing or are new.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from tabulate import tabulate

from fsadbench.regression.compare import Comparison
from fsadbench.reports.tables import Footnotes
from fsadbench.results.records import CellKey


def _f(x: float, signed: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def _md(rows: list[list[Any]], headers: list[str]) -> str:
    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def _cells_list(keys: Sequence[CellKey], max_list: int) -> list[str]:
    out = [f"- {k}" for k in keys[:max_list]]
    if len(keys) > max_list:
        out.append(f"- ... and {len(keys) - max_list} more")
    return out


def _flags(t, c: Comparison) -> str:
    flags = []
    why = t["test"] if not math.isnan(t["band"]) else f"tolerance only: {t['test']}"
    if t["regression"]:
        flags.append(f"**REGRESSION** ({why})")
    elif t["beyond_tol"]:
        flags.append(f"drop within noise ({why})")
    if t["delta"] > t["tol"]:
        flags.append("gain")
    return " ".join(flags)


def render_markdown(c: Comparison, all_cells: bool = False, max_list: int = 50) -> str:
    reasons = c.reasons()
    L = ["# Comparison", "", f"- base: {c.base.describe()}", f"- head: {c.head.describe()}",
         f"- deltas are head - base in percentage points; tolerance {c.tol.describe()}; noise band "
         f"t(1 - {c.alpha:g}, df) x SE over seeds: a one-sided paired t test when both sides hold the same seeds, "
         f"else Welch's t" + ("; strict: any cell change fails" if c.strict else ""),
         "", f"**Verdict: {'FAIL' if reasons else 'PASS'}**" + ("" if reasons else " (no regression)")]
    L += [f"- {r}" for r in reasons]
    if c.mismatched:
        L += ["", "## Not comparable" + (" (compared anyway: --allow-mismatch)" if c.allow_mismatch else
                                         " (not compared)")]
        groups: dict[tuple, list[CellKey]] = {}
        for k, mm in c.mismatched:
            for name, vb, vh in mm:
                groups.setdefault((name, repr(vb), repr(vh)), []).append(k)
        for (name, vb, vh), ks in groups.items():
            L.append(f"- {name}: base {vb} vs head {vh} in {len(ks)} cell(s), e.g. {ks[0]}")
    L += ["", "## Tables (dataset figure: mean over the categories compared, then over seeds)", ""]
    foot = Footnotes()
    if len(c.tables):
        rows = []
        for _, t in c.tables.iterrows():
            cov = "" if t["complete"] else f" [{foot.mark(f'{t.method} {t.dataset} {t.shots}-shot: {t.coverage}')}]"
            rows.append([t["method"], t["dataset"], t["shots"], t["variant"], t["metric"], _f(t["base"]),
                         _f(t["head"]), _f(t["delta"], True), _f(t["band"]), f"{t['n_base']}/{t['n_head']}",
                         f"{t['n_categories']}{cov}", _flags(t, c)])
        L.append(_md(rows, ["method", "dataset", "shots", "variant", "metric", "base", "head", "Δ",
                            "noise band", "seeds", "categories", "flags (test)"]))
        if foot.texts:
            L += ["", "Coverage (figures compared over fewer categories or seeds than planned):", ""]
            L += [f"- {n}" for n in foot.notes()]
    else:
        L.append("(no cell in common)")
    changed = c.cells if all_cells else c.cell_changes
    title = "all cells" if all_cells else "cells that moved by more than the tolerance"
    L += ["", f"## Cells ({title}: {len(changed)} of {len(c.cells)} cell metrics)", ""]
    if len(changed):
        rows = [[r["method"], r["dataset"], r["category"], r["shots"], r["seed"], r["variant"], r["metric"],
                 _f(r["base"]), _f(r["head"]), _f(r["delta"], True),
                 "drop" if r["delta"] < -c.tol(r["metric"]) else ("gain" if r["delta"] > c.tol(r["metric"]) else "")]
                for _, r in changed.head(max_list * 4).iterrows()]
        L.append(_md(rows, ["method", "dataset", "category", "shots", "seed", "variant", "metric", "base", "head",
                            "Δ", "flag"]))
        if len(changed) > max_list * 4:
            L.append(f"\n... and {len(changed) - max_list * 4} more rows")
    if c.failed_head:
        L += ["", f"## Ok in base, not ok in head ({len(c.failed_head)})", ""]
        L += [f"- {k}: {st}" for k, st in c.failed_head[:max_list]]
    if c.only_base:
        L += ["", f"## Only in base: missing in head ({len(c.only_base)})", ""] + _cells_list(c.only_base, max_list)
    if c.only_head:
        L += ["", f"## Only in head: new ({len(c.only_head)})", ""] + _cells_list(c.only_head, max_list)
    if c.fixed_head:
        L += ["", f"## Not ok in base, ok in head ({len(c.fixed_head)})", ""] + _cells_list(c.fixed_head, max_list)
    if c.notes:
        L += ["", "## Notes", ""] + [f"- {n}" for n in c.notes[:max_list]]
        if len(c.notes) > max_list:
            L.append(f"- ... and {len(c.notes) - max_list} more")
    return "\n".join(L) + "\n"
