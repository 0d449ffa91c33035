"""The APT paper's table layouts from records, optionally with the published figures.

Layouts (Chen et al. 2025, "Beyond Human-prompting", APT):

* ``apt_table1`` (Table 1): rows shots x method, columns dataset x {w/o VG, w/ VG},
  pixel AUROC mean ± std over seeds, best measured mean per column in bold.
* ``apt_table2`` (Table 2, zero-shot comparison): rows AnomalyCLIP (published
  only), every method measured at 0 shots ("w/o VG": no shots, no memory), and
  APT 1-shot "w/ VG"; columns MVTec, VisA.
* ``apt_table3`` (Table 3, ablation): rows the switch settings SO/MG/GN/TF/LA of
  the "apt" method options so/mg/gn/tf/la (a record's resolved options must
  match the row's switches), columns datasets, 1-shot, "w/o VG".

Published figures come from ``fsadbench/data/published.yaml`` (re-typed from
the papers, with source paper and table). ``show``:

* ``none``: measured figures only;
* ``under``: a ``source`` row-header column; under each measured row, a
  ``paper`` row and a ``diff`` row (measured mean - published mean, pp);
* ``beside``: after each value column, a ``paper`` and a ``diff`` column.

Rows the harness cannot measure (AnomalyGPT, AnomalyCLIP) appear only when
published figures are shown. Dataset columns: the layout's datasets that have
measured records (then any other measured dataset); all of the layout's
datasets when nothing is measured. Tables are :class:`fsadbench.reports.tables.Table`
objects rendered by the report module's Markdown / LaTeX renderers; published
figures and diffs are ``TextCell`` so they are never bold.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd
import yaml

from fsadbench.results.aggregate import METRIC_LABELS, records_frame, summary
from fsadbench.core.errors import ConfigError
from fsadbench.results.records import STATUS_OK, Record
from fsadbench.reports.tables import RANDOM_BANNER, Table, TextCell

SHOW = ("none", "under", "beside")
LAYOUTS = ("apt_table1", "apt_table2", "apt_table3")
METHOD_LABELS = {"winclip": "WinCLIP", "anomalygpt": "AnomalyGPT", "promptad": "PromptAD", "apt": "APT",
                 "anople": "AnoPLe", "memory": "Memory bank", "anomalyclip": "AnomalyCLIP"}
DATASET_LABELS = {"mvtec": "MVTec", "visa": "VisA", "mpdd": "MPDD", "sdd": "SDD", "cvc-colondb": "CVC"}
TABLE1_METHODS = ("winclip", "anomalygpt", "promptad", "apt")
TABLE1_DATASETS = ("mvtec", "visa", "mpdd", "sdd", "cvc-colondb")
VARIANTS = ("w/o VG", "w/ VG")
SWITCHES = ("so", "mg", "gn", "tf", "la")
CHECK = TextCell("✓", "$\\checkmark$")
CROSS = TextCell("×", "$\\times$")

Fig = tuple  # (mean, std) in %; std may be None (published, not printed)


@lru_cache(maxsize=1)
def published() -> dict[str, Any]:
    """The published figures (fsadbench/data/published.yaml)."""
    text = resources.files("fsadbench").joinpath("data/published.yaml").read_text()
    return yaml.safe_load(text)


def source_note(table_key: str) -> str:
    t = published()["tables"][table_key]
    return f"paper: {published()['sources'][t['source']]}, {t['table']}; diff = measured - paper (pp)."


def _pub(v) -> Fig | None:
    """A published value: [mean, std] -> (mean, std); bare number -> (mean, None); null -> None."""
    if v is None:
        return None
    if isinstance(v, (list, tuple)):
        return (float(v[0]), None if len(v) < 2 or v[1] is None else float(v[1]))
    return (float(v), None)


# -- measured figures --------------------------------------------------------------------------
@dataclass
class Measured:
    """Records -> mean ± std lookups, plus what each method id was run with."""

    df: pd.DataFrame
    options: dict[str, dict[str, Any]]  # method id -> resolved options
    names: dict[str, str]  # method id -> method name
    labels: dict[str, str]  # method id -> label
    metric: str
    _s: Any = None  # summary indexed by (method, dataset, shots, variant)

    @classmethod
    def from_records(cls, records: Iterable[Record], metric: str = "pixel_auroc") -> "Measured":
        records = [r for r in records if r.status == STATUS_OK]
        df = records_frame(records)
        options, names, labels = {}, {}, {}
        for r in records:
            mid = r.key["method"]
            options.setdefault(mid, dict(r.method.get("options") or {}))
            names.setdefault(mid, r.method.get("name") or mid.split("[")[0])
            labels.setdefault(mid, r.method.get("label") or mid)
        s = summary(df, metric).set_index(["method", "dataset", "shots", "variant"]) if len(df) else None
        return cls(df, options, names, labels, metric, s)

    def get(self, method_id: str, dataset: str, shots: int, variant: str) -> Fig | None:
        if self._s is None:
            return None
        try:
            row = self._s.loc[(method_id, dataset, shots, variant)]
        except KeyError:
            return None
        if isinstance(row, pd.DataFrame):  # one id, several labels: take the first
            row = row.iloc[0]
        return None if pd.isna(row["mean"]) else (float(row["mean"]), float(row["std"]))

    def ids_of(self, name: str) -> list[str]:
        return [i for i in dict.fromkeys(self.df["method"]) if self.names.get(i) == name] if len(self.df) else []

    def label(self, method_id: str) -> str:
        lab = self.labels.get(method_id, method_id)
        if lab == method_id and self.names.get(method_id) == method_id:
            return METHOD_LABELS.get(method_id, method_id)
        return lab

    def datasets(self, preferred: Sequence[str]) -> list[str]:
        have = list(dict.fromkeys(self.df["dataset"])) if len(self.df) else []
        if not have:
            return list(preferred)
        return [d for d in preferred if d in have] + [d for d in have if d not in preferred]

    def shots(self) -> list[int]:
        return sorted(int(k) for k in self.df["shots"].unique()) if len(self.df) else []

    def notes(self) -> list[str]:
        out = [RANDOM_BANNER] if len(self.df) and bool(self.df["random_weights"].any()) else []
        n = sorted(set(summary(self.df, self.metric)["n_seeds"])) if len(self.df) else []
        out.append(f"{METRIC_LABELS.get(self.metric, self.metric)} (%), mean ± std over seeds"
                   f"{' (n = ' + ', '.join(map(str, n)) + ')' if n else ''}; dataset figure = mean over "
                   f"categories; best measured value per column in bold.")
        return out


# -- assembling a Table with published figures -----------------------------------------------------
@dataclass
class PaperRow:
    header: list  # row-header cells (str or TextCell)
    measured: list  # per value column: (mean, std) or None
    published: list | None  # per value column: (mean, std|None) or None; None = no published row
    group: Any = None  # a rule is drawn between groups


def _fmt_pub(f: Fig | None) -> TextCell:
    if f is None:
        return TextCell("–", "--")
    if f[1] is None:
        return TextCell(f"{f[0]:.2f}", f"{f[0]:.2f}")
    return TextCell(f"{f[0]:.2f} ± {f[1]:.2f}", f"{f[0]:.2f} $\\pm$ {f[1]:.2f}")


def _fmt_diff(m: Fig | None, p: Fig | None) -> TextCell:
    if m is None or p is None or math.isnan(m[0]):
        return TextCell("–", "--")
    d = m[0] - p[0]
    return TextCell(f"{d:+.2f}", f"${d:+.2f}$")


def _has(cells: Sequence | None) -> bool:
    return cells is not None and any(c is not None for c in cells)


def assemble(title: str, row_headers: list[str], groups: list[tuple[str, int]], columns: list[str],
             rows: Sequence[PaperRow], show: str, notes: list[str]) -> Table:
    """Measured rows (+ published figures under or beside) -> a report Table."""
    if show not in SHOW:
        raise ConfigError(f"--published {show!r}: use one of {', '.join(SHOW)}")
    if show == "none":
        rows = [r for r in rows if _has(r.measured)]
    else:
        rows = [r for r in rows if _has(r.measured) or _has(r.published)]
    out_rows: list[tuple[list, list]] = []
    breaks: list[int] = []
    last_group = object()
    for r in rows:
        if out_rows and r.group != last_group:
            breaks.append(len(out_rows))
        last_group = r.group
        pub = r.published if r.published is not None else [None] * len(columns)
        if show == "none":
            out_rows.append((list(r.header), list(r.measured)))
        elif show == "beside":
            cells = []
            for m, p in zip(r.measured, pub):
                cells += [m, _fmt_pub(p), _fmt_diff(m, p)]
            out_rows.append((list(r.header), cells))
        else:
            if _has(r.measured):
                out_rows.append((list(r.header) + ["measured"], list(r.measured)))
            if _has(r.published):
                out_rows.append((list(r.header) + ["paper"], [_fmt_pub(p) for p in pub]))
            if _has(r.measured) and _has(r.published):
                out_rows.append((list(r.header) + ["diff"], [_fmt_diff(m, p) for m, p in zip(r.measured, pub)]))
    if show == "beside":
        columns = [c2 for c in columns for c2 in (c, f"{c} paper", f"{c} diff")]
        groups = [(g, 3 * n) for g, n in groups]
    if show == "under":
        row_headers = row_headers + ["source"]
    best: list[int | None] = []
    for j in range(len(columns)):
        vals = [(c[j][0], i) for i, (_, c) in enumerate(out_rows)
                if isinstance(c[j], tuple) and not math.isnan(c[j][0])]
        best.append(max(vals)[1] if vals else None)
    return Table(title, row_headers, groups, columns, out_rows, best, notes, breaks)


# -- the three layouts ------------------------------------------------------------------------------
def apt_table1(records: Iterable[Record] | Measured, show: str = "none", metric: str = "pixel_auroc",
               datasets: Sequence[str] | None = None, shots: Sequence[int] | None = None) -> Table:
    """APT Table 1: rows shots x method, columns dataset x {w/o VG, w/ VG}."""
    m = records if isinstance(records, Measured) else Measured.from_records(records, metric)
    pubt = published()["tables"]["apt_table1"]
    use_pub = show != "none" and metric == pubt["metric"]
    pvals = pubt["values"] if use_pub else {}
    datasets = list(datasets or m.datasets(TABLE1_DATASETS))
    shot_list = list(shots or m.shots() or sorted(int(k) for k in pubt["values"]))
    names = list(TABLE1_METHODS) + [n for n in dict.fromkeys(m.names[i] for i in dict.fromkeys(m.df["method"]))
                                    if n not in TABLE1_METHODS] if len(m.df) else list(TABLE1_METHODS)
    rows = []
    for k in shot_list:
        for name in names:
            pub_m = (pvals.get(k) or {}).get(name)
            pub = None
            if pub_m is not None:
                pub = [_pub((pub_m.get(d) or [None, None])[VARIANTS.index(v)]) for d in datasets for v in VARIANTS]
            ids = m.ids_of(name)
            if not ids:
                rows.append(PaperRow([f"{k}-shot", METHOD_LABELS.get(name, name)], [None] * (2 * len(datasets)),
                                     pub, k))
            for mid in ids:
                meas = [m.get(mid, d, k, v) for d in datasets for v in VARIANTS]
                rows.append(PaperRow([f"{k}-shot", m.label(mid)], meas, pub if mid == name else None, k))
    notes = m.notes() + ([source_note("apt_table1")] if use_pub else [])
    title = f"{METRIC_LABELS.get(metric, metric)}: APT Table 1 layout"
    return assemble(title, ["shots", "method"], [(DATASET_LABELS.get(d, d), 2) for d in datasets],
                    [v for _ in datasets for v in VARIANTS], rows, show, notes)


def apt_table2(records: Iterable[Record] | Measured, show: str = "none", metric: str = "pixel_auroc",
               datasets: Sequence[str] | None = None) -> Table:
    """APT Table 2: zero-shot methods vs APT 1-shot (w/ VG)."""
    m = records if isinstance(records, Measured) else Measured.from_records(records, metric)
    pubt = published()["tables"]["apt_table2"]
    use_pub = show != "none" and metric == pubt["metric"]
    pv = pubt["values"] if use_pub else {}
    datasets = list(datasets or m.datasets(("mvtec", "visa")))

    def pub_row(key):
        return [_pub((pv.get(key) or {}).get(d)) for d in datasets] if key in pv else None

    rows = [PaperRow(["AnomalyCLIP (zero-shot)"], [None] * len(datasets), pub_row("anomalyclip"), 0)]
    zero = [i for i in dict.fromkeys(m.df["method"]) if (m.df[(m.df["method"] == i)]["shots"] == 0).any()] \
        if len(m.df) else []
    for mid in zero:
        variants = list(dict.fromkeys(m.df[(m.df["method"] == mid) & (m.df["shots"] == 0)]["variant"]))
        v = "w/o VG" if "w/o VG" in variants else variants[0]
        rows.append(PaperRow([f"{m.label(mid)} (zero-shot{'' if v == 'w/o VG' else ', ' + v})"],
                             [m.get(mid, d, 0, v) for d in datasets], None, 0))
    apt_ids = m.ids_of("apt") or ["apt"]
    for mid in apt_ids:
        lab = m.label(mid) if mid in m.names else "APT"
        rows.append(PaperRow([f"{lab} (1-shot, w/ VG)"], [m.get(mid, d, 1, "w/ VG") for d in datasets],
                             pub_row("apt_1shot") if mid == "apt" else None, 1))
    notes = m.notes() + ([source_note("apt_table2")] if use_pub else [])
    return assemble(f"{METRIC_LABELS.get(metric, metric)}: APT Table 2 layout (zero-shot comparison)",
                    ["method"], [("", len(datasets))], [DATASET_LABELS.get(d, d) for d in datasets], rows, show,
                    notes)


def _switches_of(options: dict[str, Any]) -> tuple | None:
    if not all(s in options for s in SWITCHES):
        return None
    return tuple(bool(options[s]) for s in SWITCHES)


def apt_table3(records: Iterable[Record] | Measured, show: str = "none", metric: str = "pixel_auroc",
               datasets: Sequence[str] | None = None, shots: int | None = None, variant: str | None = None,
               labels: dict[tuple, str] | None = None) -> Table:
    """APT Table 3: rows = (so, mg, gn, tf, la) settings of method "apt", columns = datasets.

    ``labels``: optional row names by switch tuple (shown in a ``setting`` column).
    """
    m = records if isinstance(records, Measured) else Measured.from_records(records, metric)
    pubt = published()["tables"]["apt_table3"]
    use_pub = show != "none" and metric == pubt["metric"]
    shots = pubt["shots"] if shots is None else shots
    variant = variant or pubt["variant"]
    datasets = list(datasets or m.datasets(("mvtec", "visa")))
    settings: list[tuple] = [tuple(bool(r[s]) for s in SWITCHES) for r in pubt["rows"]]
    pub_by = {tuple(bool(r[s]) for s in SWITCHES): r for r in pubt["rows"]}
    ids_by: dict[tuple, list[str]] = {}
    for mid in m.ids_of("apt"):
        sw = _switches_of(m.options.get(mid, {}))
        if sw is not None:
            ids_by.setdefault(sw, []).append(mid)
            if sw not in settings:
                settings.append(sw)
    notes = m.notes()
    rows = []
    for sw in settings:
        marks = [CHECK if on else CROSS for on in sw]
        header = marks + ([labels.get(sw, "")] if labels else [])
        pub = [_pub(pub_by[sw].get(d)) for d in datasets] if use_pub and sw in pub_by else None
        ids = ids_by.get(sw, [])
        if len(ids) > 1:
            notes.append(f"setting {dict(zip(SWITCHES, sw))}: several method ids ({', '.join(ids)}); "
                         f"showing {ids[0]}")
        meas = [m.get(ids[0], d, shots, variant) for d in datasets] if ids else [None] * len(datasets)
        rows.append(PaperRow(header, meas, pub, None))
    if use_pub:
        notes.append(source_note("apt_table3"))
    notes.append("LaTeX: the check mark needs \\usepackage{amssymb}.")
    return assemble(f"{METRIC_LABELS.get(metric, metric)}: APT Table 3 layout (ablation), {shots}-shot, {variant}",
                    [s.upper() for s in SWITCHES] + (["setting"] if labels else []), [("", len(datasets))],
                    [DATASET_LABELS.get(d, d) for d in datasets], rows, show, notes)


def build(layout: str, records: Iterable[Record], show: str = "none", **kw) -> Table:
    fns = {"apt_table1": apt_table1, "apt_table2": apt_table2, "apt_table3": apt_table3}
    if layout not in fns:
        raise ConfigError(f"table layout {layout!r} unknown; known: {', '.join(LAYOUTS)}")
    return fns[layout](list(records), show, **kw)


# -- configs -----------------------------------------------------------------------
def table_spec(config_path: str | Path) -> tuple[str, dict[str, Any], str | None]:
    """(layout, layout keyword arguments, results_dir) from a paper config's ``table:`` key.

    ``table:`` is a layout name or a mapping {layout, metric, datasets (or columns), shots, variant,
    rows}; without ``layout`` the file name (apt_table1/2/3) names it. Table 3 row names come from
    ``table.rows`` / ``published.rows`` entries {label, so, mg, gn, tf, la} when the config has them.
    """
    p = Path(config_path)
    if not p.is_file():
        raise ConfigError(f"--config {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    spec = data.get("table")
    if spec is None:
        raise ConfigError(f"{p}: no 'table:' key naming the layout (one of {', '.join(LAYOUTS)})")
    if isinstance(spec, str):
        spec = {"layout": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{p}: 'table' must be a layout name or a mapping with 'layout'")
    layout = spec.get("layout") or next((name for name in LAYOUTS if name in p.stem), None)
    if layout not in LAYOUTS:
        raise ConfigError(f"{p}: table.layout {layout!r} unknown; use one of {', '.join(LAYOUTS)}")
    kw: dict[str, Any] = {}
    if spec.get("metric"):
        kw["metric"] = spec["metric"]
    ds = spec.get("datasets") or spec.get("columns")
    if ds:
        kw["datasets"] = list(ds)
    if layout == "apt_table3":
        if spec.get("shots") is not None:
            kw["shots"] = int(spec["shots"])
        if spec.get("variant"):
            kw["variant"] = spec["variant"]
        prow = (data.get("published") or {}).get("rows") if isinstance(data.get("published"), dict) else None
        labels = {tuple(bool(r.get(s)) for s in SWITCHES): str(r["label"])
                  for rows in (prow or [], spec.get("rows") or []) for r in rows
                  if isinstance(r, dict) and "label" in r and all(s in r for s in SWITCHES)}
        if labels:
            kw["labels"] = labels
    elif layout == "apt_table1" and spec.get("shots"):
        kw["shots"] = [int(k) for k in spec["shots"]]
    return layout, kw, data.get("results_dir")
