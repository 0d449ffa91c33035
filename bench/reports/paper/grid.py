"""The data-driven paper layout: rows of (method, options), columns of (dataset, metric, shots, variant).

A layout's data (a ``tables:`` entry of published.yaml, or a plugin's own mapping)::

    source: anople2024            # a published.yaml ``sources`` key, or the paper's name
    table: "Table 3"
    title: "ablation"
    protocol: {model: ..., pretrained: ..., seeds: 3}   # what a figure must match to be diffed
    shots: 1                      # default of every column
    variant: "w/o VG"             # default of every column
    datasets: [mvtec, visa]       # column blocks, in order (then any other measured dataset)
    columns:                      # the columns of each dataset block
      - {metric: image_auroc, label: I-AUROC}      # (+ shots, variant)
    headers: [setting]            # row-header titles; a row's ``label``: one per title (or a string),
                                  # each a string or {md, tex, text: plain for notes}
    traits: [multi_class, few_shot_transfer]       # optional ✓/✗ header columns (Method.paper_traits)
    extra_methods: false          # true: every other measured method gets a row too
    rows:
      - label: Text
        method: anople            # a registered name; none (or not registered): published figures only
        options: {interaction: text}
        group: a                  # rows of one group compete for bold; a rule between groups
        values: {mvtec: [85.0, 88.4], visa: [77.9, 92.6]}   # per dataset, one per column (null: none)
        protocol: {model: ..., pretrained: ...}   # optional: this row's published setting when not the
                                  # table's (a baseline on its own backbone), merged over ``protocol``

A record fills a row when its method name is the row's and its resolved options
agree with the row on every *switch* of that method in this layout (the option
names any row of the method sets) and on the options its registry alias sets
(``maple-draem``'s), the row's value or else the method's default (registry
default options over the ``Options`` defaults). Other options (epochs, ...)
still fill the row, so a short CI sweep fills the same rows, but its diff is
"n/c" naming them (:mod:`fsadbench.reports.paper.comparable`: every row's
protocol carries the options it stands for). Several method ids for one row:
the one with the fewest options off their defaults is shown (a method's plain
row is its default, not an ablation of it) and a note names the rest; an id
that fills no row is named in a note.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from fsadbench.core.errors import ConfigError
from fsadbench.reports.paper.assemble import MISSING_ROW, Measured, PaperRow, assemble
from fsadbench.reports.paper.catalog import Layout, no_options
from fsadbench.reports.paper.comparable import as_json, closest_first, fill_keys, method_class, row_protocol
from fsadbench.reports.paper.published import (dataset_label, is_measurable, pub_value, source_name, source_note,
                                               table_data)
from fsadbench.reports.tables import Footnotes, Table, TextCell
from fsadbench.results.aggregate import METRIC_LABELS

CHECK = TextCell("✓", "$\\checkmark$")
CROSS = TextCell("×", "$\\times$")
TRAIT_TITLES = {"multi_class": "multi-class", "few_shot_transfer": "few-shot transfer"}


def switches_of(rows: Sequence[dict[str, Any]]) -> dict[str, list[str]]:
    """Method name -> the option names its rows set (the layout's switches of that method)."""
    out: dict[str, list[str]] = {}
    for r in rows:
        if r.get("method"):
            keys = out.setdefault(r["method"], [])
            keys += [k for k in (r.get("options") or {}) if k not in keys]
    return out


def matching_ids(m: Measured, row: dict[str, Any], switches: Sequence[str]) -> list[str]:
    """The measured method ids whose resolved options agree with ``row`` on every switch and on the options
    of the method's registry alias, those with the fewest options off the method's defaults first."""
    name = row["method"]
    _, defaults = method_class(name)
    opts = as_json(dict(row.get("options") or {}))
    want = {k: opts.get(k, defaults.get(k)) for k in fill_keys(name, switches)}
    ids = [mid for mid in m.ids_of(name)
           if all(as_json(m.options.get(mid, {}).get(k, defaults.get(k))) == v for k, v in want.items())]
    return closest_first(name, ids, m.options)


def trait_cells(traits: Sequence[str], row: dict[str, Any], name: str | None, options: dict[str, Any]) -> list:
    """✓/✗ per trait: the method's ``paper_traits`` when it is registered, else the row's data."""
    cls, defaults = method_class(name) if name else (None, {})
    have = cls.paper_traits({**defaults, **options}) if cls is not None else row
    return [CHECK if have.get(t) else CROSS if t in have else TextCell("?", "?") for t in traits]


def build_grid(data: dict[str, Any], records: Iterable | Measured, show: str = "none", metric: str | None = None,
               datasets: Sequence[str] | None = None) -> Table:
    """The layout described by ``data`` (module docstring) from records. ``metric``: every column's
    metric instead of the layout's (published figures then only where they are of that metric)."""
    first = (data["columns"][0].get("metric") if data.get("columns") else None) or "pixel_auroc"
    m = records if isinstance(records, Measured) else Measured.from_records(records, metric or first)
    cols = [{"metric": data.get("metric", "pixel_auroc"), "shots": data.get("shots", 1),
             "variant": data.get("variant", "w/o VG"), **c} for c in data["columns"]]
    datasets = list(datasets or m.datasets(data["datasets"]))
    several = len({int(c["shots"]) for c in cols}) > 1

    def relabel(c: dict[str, Any]) -> dict[str, Any]:
        """Another metric than the layout's: the column is named by it (and its shots when they vary)."""
        if not metric or metric == c["metric"]:
            return c
        return {**c, "metric": metric, "label": METRIC_LABELS.get(metric, metric) + (
            f" {c['shots']}-shot" if several else "")}

    flat = [(d, j, relabel(c), show != "none" and (metric or c["metric"]) == c["metric"])
            for d in datasets for j, c in enumerate(cols)]
    traits = list(data.get("traits") or [])
    foot, problems, shown_by = Footnotes(), [], []
    switches = switches_of(data["rows"])
    notes_extra: list[str] = []

    def pub_row(row):
        if "values" not in row:
            return None
        vals = row["values"] or {}
        return [pub_value((vals.get(d) or [None] * len(cols))[j]) if use else None for d, j, _, use in flat]

    def measured(mid, header, pub, group, found=True):
        entries = [m.entry(mid, d, int(c["shots"]), c["variant"], foot, c["metric"]) if found else
                   (MISSING_ROW, foot.mark(f"missing: no {mid} record with this row's setting"))
                   for d, _, c, _ in flat]
        return PaperRow(header, [e for e, _ in entries], pub, group, [mk for _, mk in entries],
                        [m.records_of(mid, d, int(c["shots"])) if found else [] for d, _, c, _ in flat])

    rows, named, filled = [], set(), set()
    for row in data["rows"]:
        parts = row["label"] if isinstance(row["label"], list) else [row["label"]]
        label = [TextCell(x["md"], x["tex"]) if isinstance(x, dict) else str(x) for x in parts]
        text = " ".join(x.get("text", x["md"]) if isinstance(x, dict) else str(x) for x in parts)
        name = row.get("method")
        named.add(name)
        ids = matching_ids(m, row, switches.get(name, [])) if name else []
        mid = ids[0] if ids else name
        header = list(label) + trait_cells(traits, row, name if name and is_measurable(name) else None,
                                           m.options.get(mid, row.get("options") or {}) if ids else
                                           dict(row.get("options") or {}))
        if not name or not is_measurable(name):
            rows.append(PaperRow(header, None, pub_row(row), row.get("group", 0)))
            continue
        if len(ids) > 1:
            notes_extra.append(f"row {text}: several method ids ({', '.join(ids)}); showing {ids[0]}")
        if ids:
            shown_by.append(f"{text} = {mid}")
        filled.update(ids)
        rows.append(measured(mid, header, pub_row(row), row.get("group", 0), bool(ids)))
        rows[-1].protocol = row_protocol(data.get("protocol"), row, name, row.get("options"))
    if data.get("extra_methods"):
        for mid, name in m.names.items():
            if name not in named:
                rows.append(measured(mid, [m.label(mid)] + [""] * (len(data.get("headers") or ["method"]) - 1)
                                     + trait_cells(traits, {}, name, m.options.get(mid, {})), None, "other"))
    used = list(dict.fromkeys(c["metric"] for _, _, c, _ in flat))
    notes = m.notes(problems, " / ".join(METRIC_LABELS.get(x, x) for x in used))
    if shown_by:
        notes.append("rows measured by: " + "; ".join(shown_by) + ".")
    unfilled = [mid for mid, name in m.names.items() if name in named and is_measurable(name) and mid not in filled]
    if unfilled:
        notes.append(f"not shown: {', '.join(unfilled)} (options that match no row of this layout).")
    notes += notes_extra
    if show != "none":
        notes.append(source_note("", data))
    if traits:
        notes.append("LaTeX: the check mark needs \\usepackage{amssymb}.")
    headers = list(data.get("headers") or ["method"]) + [TRAIT_TITLES.get(t, t) for t in traits]
    title = f"{data.get('title') or ''}: {source_name(data['source']).split(':')[0]}, {data['table']} layout"
    return assemble(title, headers, [(dataset_label(d), len(cols)) for d in datasets],
                    [c.get("label") or METRIC_LABELS.get(c["metric"], c["metric"]) for _, _, c, _ in flat],
                    [d for d, _, _, _ in flat], rows, show, notes, foot, data.get("protocol") or {}, problems,
                    bold_by_group=True)


REQUIRED = {"source": "the paper: a published.yaml sources key or its name", "table": 'e.g. "Table 3"',
            "columns": "a list of {metric, label, shots, variant}", "rows": "a list of {label, method, options}"}


def check_data(name: str, data: Any) -> None:
    """A ConfigError naming the layout and the first missing key (was: a bare KeyError)."""
    if not isinstance(data, dict):
        raise ConfigError(f"table layout {name!r}: its data is a {type(data).__name__}, not a mapping")
    for key, what in REQUIRED.items():
        if key not in data:
            raise ConfigError(f"table layout {name!r}: its data has no {key!r} ({what}); add it")
    for i, row in enumerate(data["rows"] or []):
        if not isinstance(row, dict) or "label" not in row:
            raise ConfigError(f"table layout {name!r}: row {i + 1} of its data has no 'label' (the row's "
                              f"header: a string, or one per headers entry); add it")


def grid_layout(name: str, data: dict[str, Any] | None = None, description: str = "") -> Layout:
    """A Layout over ``data`` (default: published.yaml's ``tables[name]``, read when it is built)."""
    def get() -> dict[str, Any]:
        return data if data is not None else table_data(name)

    def build(records, show="none", **kw) -> Table:
        unknown = sorted(set(kw) - {"metric", "datasets"})
        if unknown:
            raise ConfigError(f"table layout {name!r}: unknown argument(s) {unknown}; it takes metric, datasets")
        return build_grid(get(), records, show, **kw)

    d = get()
    check_data(name, d)
    return Layout(name, source_name(d["source"]), d["table"], build, no_options, description or d.get("title", ""))
