"""Mean ± std tables in Markdown and LaTeX (booktabs).

Main layout (the APT paper's Table 1): rows (shots, method), columns
dataset x variant ("w/o VG", "w/ VG"), mean ± std over seeds, best mean per
column in bold. Per-category layout: rows category, columns method x variant.
A table built from random-weight records says so in its first line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import pandas as pd
from tabulate import tabulate

from fsadbench.results.aggregate import METRIC_LABELS, per_category, summary

VARIANT_ORDER = ("w/o VG", "w/ VG")
RANDOM_BANNER = ("PIPELINE CHECK: these numbers come from RANDOM backbone weights (--pretrained none); "
                 "they test the pipeline, not any method.")


@dataclass(frozen=True)
class TextCell:
    """A preformatted cell (a published figure, a delta, a check mark), in both output formats.

    Allowed as a value cell or a row header; never bold and never a candidate for the best.
    """

    md: str
    tex: str


@dataclass
class Table:
    """A rendered-agnostic table: header groups, column labels, body rows of cells."""

    title: str
    row_headers: list[str]  # e.g. ["shots", "method"]
    groups: list[tuple[str, int]]  # (group label, span) over the value columns
    columns: list[str]  # value column labels (variants)
    rows: list[tuple[list[str], list[tuple[float, float] | None]]]
    best: list[int | None]  # row index of the best mean per value column
    notes: list[str]
    breaks: list[int]  # row indices before which a rule is drawn


def _variants(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["variant"]))
    return [v for v in VARIANT_ORDER if v in present] + sorted(v for v in present if v not in VARIANT_ORDER)


def _best(rows, ncols: int) -> list[int | None]:
    best: list[int | None] = []
    for j in range(ncols):
        vals = [(r[1][j][0], i) for i, r in enumerate(rows)
                if isinstance(r[1][j], tuple) and not math.isnan(r[1][j][0])]
        best.append(max(vals)[1] if vals else None)
    return best


def main_table(df: pd.DataFrame, metric: str = "pixel_auroc", datasets: Sequence[str] | None = None,
               variants: Sequence[str] | None = None) -> Table:
    s = summary(df, metric)
    datasets = list(datasets or dict.fromkeys(df["dataset"]))
    variants = list(variants or _variants(df))
    cols = [(d, v) for d in datasets for v in variants]
    cols = [c for c in cols if ((s["dataset"] == c[0]) & (s["variant"] == c[1])).any()]
    rows, breaks = [], []
    methods = list(dict.fromkeys(df["label"]))
    for k in sorted(s["shots"].unique()):
        if rows:
            breaks.append(len(rows))
        for lab in methods:
            sub = s[(s["shots"] == k) & (s["label"] == lab)]
            if sub.empty:
                continue
            cells = []
            for d, v in cols:
                hit = sub[(sub["dataset"] == d) & (sub["variant"] == v)]
                cells.append((float(hit["mean"].iloc[0]), float(hit["std"].iloc[0])) if len(hit) else None)
            rows.append(([f"{k}-shot", lab], cells))
    groups: list[tuple[str, int]] = []
    for d, _ in cols:
        if groups and groups[-1][0] == d:
            groups[-1] = (d, groups[-1][1] + 1)
        else:
            groups.append((d, 1))
    notes = [RANDOM_BANNER] if bool(df["random_weights"].any()) else []
    n_seeds = sorted(set(summary(df, metric)["n_seeds"]))
    notes.append(f"{METRIC_LABELS.get(metric, metric)} (%), mean ± std over seeds (n = {', '.join(map(str, n_seeds))}); "
                 f"dataset figure = mean over categories; best per column in bold.")
    return Table(f"{METRIC_LABELS.get(metric, metric)}", ["shots", "method"], groups,
                 [v for _, v in cols], rows, _best(rows, len(cols)), notes, breaks)


def category_table(df: pd.DataFrame, dataset: str, shots: int, metric: str = "pixel_auroc") -> Table:
    pc = per_category(df[(df["dataset"] == dataset) & (df["shots"] == shots)], metric)
    variants = _variants(df)
    methods = list(dict.fromkeys(df["label"]))
    cols = [(m, v) for m in methods for v in variants if ((pc["label"] == m) & (pc["variant"] == v)).any()]
    rows = []
    for cat in sorted(pc["category"].unique()):
        cells = []
        for m, v in cols:
            hit = pc[(pc["category"] == cat) & (pc["label"] == m) & (pc["variant"] == v)]
            cells.append((float(hit["mean"].iloc[0]), float(hit["std"].iloc[0])) if len(hit) else None)
        rows.append(([cat], cells))
    groups: list[tuple[str, int]] = []
    for m, _ in cols:
        if groups and groups[-1][0] == m:
            groups[-1] = (m, groups[-1][1] + 1)
        else:
            groups.append((m, 1))
    notes = [RANDOM_BANNER] if bool(df["random_weights"].any()) else []
    notes.append(f"{METRIC_LABELS.get(metric, metric)} (%) per category, {dataset}, {shots}-shot, mean ± std over seeds.")
    return Table(f"{dataset} {shots}-shot per category", ["category"], groups, [v for _, v in cols], rows,
                 _best(rows, len(cols)), notes, [])


# -- renderers -----------------------------------------------------------------------------
def _cell(c: tuple[float, float] | TextCell | None, bold: bool, fmt: str) -> str:
    if isinstance(c, TextCell):
        return c.md if fmt == "md" else c.tex
    if c is None or math.isnan(c[0]):
        return "–" if fmt == "md" else "--"
    std = 0.0 if math.isnan(c[1]) else c[1]
    if fmt == "md":
        s = f"{c[0]:.2f} ± {std:.2f}"
        return f"**{s}**" if bold else s
    s = f"{c[0]:.2f} $\\pm$ {std:.2f}"
    return f"\\textbf{{{c[0]:.2f}}} $\\pm$ {std:.2f}" if bold else s


def to_markdown(t: Table) -> str:
    headers = list(t.row_headers)
    col_names = []
    i = 0
    for g, span in t.groups:
        for _ in range(span):
            col_names.append(f"{g} {t.columns[i]}".strip())
            i += 1
    headers += col_names
    body = []
    for ri, (rh, cells) in enumerate(t.rows):
        body.append([h.md if isinstance(h, TextCell) else h for h in rh]
                    + [_cell(c, t.best[j] == ri, "md") for j, c in enumerate(cells)])
    lines = [f"**{t.title}**", ""] + [f"> {n}" for n in t.notes] + [""]
    lines.append(tabulate(body, headers=headers, tablefmt="pipe", stralign="center", disable_numparse=True))
    return "\n".join(lines) + "\n"


_LATEX_ESC = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
              "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
              "±": r"$\pm$", "–": "--", "×": r"$\times$", "✓": r"$\checkmark$", "≥": r"$\geq$", "≤": r"$\leq$"}
#: every LaTeX table needs these packages in the document's preamble
LATEX_PREAMBLE_NOTE = "% needs \\usepackage{booktabs,graphicx,amssymb}"
#: scale the tabular down to the text width when wider, never up (graphicx: \width is the natural width)
FIT_WIDTH = "\\resizebox{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}{!}{%"


def latex_escape(s: str) -> str:
    return "".join(_LATEX_ESC.get(ch, ch) for ch in str(s))


def to_latex(t: Table) -> str:
    nrh, ncols = len(t.row_headers), len(t.columns)
    spec = "l" * nrh + "c" * ncols
    out = [LATEX_PREAMBLE_NOTE, "\\begin{table}[t]", "\\centering", f"\\caption{{{latex_escape(t.title)}}}",
           FIT_WIDTH, f"\\begin{{tabular}}{{{spec}}}", "\\toprule"]
    head1 = [""] * nrh
    rules, col = [], nrh + 1
    for g, span in t.groups:
        head1.append(f"\\multicolumn{{{span}}}{{c}}{{{latex_escape(g)}}}")
        rules.append(f"\\cmidrule(lr){{{col}-{col + span - 1}}}")
        col += span
    out.append(" & ".join(head1) + " \\\\")
    out.append(" ".join(rules))
    out.append(" & ".join([latex_escape(h) for h in t.row_headers] + [latex_escape(c) for c in t.columns]) + " \\\\")
    out.append("\\midrule")
    for ri, (rh, cells) in enumerate(t.rows):
        if ri in t.breaks:
            out.append("\\midrule")
        vals = [h.tex if isinstance(h, TextCell) else latex_escape(h) for h in rh] + \
            [_cell(c, t.best[j] == ri, "tex") for j, c in enumerate(cells)]
        out.append(" & ".join(vals) + " \\\\")
    out += ["\\bottomrule", "\\end{tabular}}"]  # closes FIT_WIDTH's box
    if t.notes:  # visible under the table (a warning in a % comment is never read)
        out.append("\\par\\smallskip{\\footnotesize\\raggedright " + "\\par ".join(latex_escape(n) for n in t.notes)
                   + "\\par}")
    out.append("\\end{table}")
    return "\n".join(out) + "\n"


def render(t: Table, fmt: str) -> str:
    if fmt in ("markdown", "md"):
        return to_markdown(t)
    if fmt in ("latex", "tex"):
        return to_latex(t)
    from fsadbench.core.errors import ConfigError

    raise ConfigError(f"--format {fmt!r}: use markdown or latex")
