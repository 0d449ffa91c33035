"""The APT paper's table layouts (Chen et al. 2025, "Beyond Human-prompting"), driven by published.yaml.

* ``apt_table1`` (Table 1): rows shots x method (the table's ``methods``, then
  any other measured method), columns dataset x variant, pixel AUROC
  mean ± std over seeds.
* ``apt_table2`` (Table 2, zero-shot comparison): the table's ``rows``: a
  published-only row, every method measured at 0 shots ("w/o VG"), and a
  measured (method, shots, variant) row; columns its datasets.
* ``apt_table3`` (Table 3, ablation): one row per setting of the table's
  boolean ``switches`` of its ``method`` (a record's resolved options must
  match the row's switches), columns datasets, at the table's shots and variant.

Columns are always the layout's datasets (then any other measured one); rows
and columns without records show as missing. Each layout returns a
:class:`fsadbench.reports.tables.Table`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from fsadbench.reports.paper.assemble import Measured, PaperRow, assemble
from fsadbench.reports.paper.catalog import Layout, no_options
from fsadbench.reports.paper.comparable import closest_first, row_protocol
from fsadbench.reports.paper.published import (dataset_label, is_measurable, method_label, pub_value, source_name,
                                               source_note, table_data)
from fsadbench.reports.tables import Footnotes, Table, TextCell, auxiliary_note
from fsadbench.results.aggregate import METRIC_LABELS
from fsadbench.results.records import Record

LAYOUTS = ("apt_table1", "apt_table2", "apt_table3")  # this module's layouts (every registered one: catalog)
CHECK = TextCell("✓", "$\\checkmark$")
CROSS = TextCell("×", "$\\times$")


def _measured(records, metric: str) -> Measured:
    return records if isinstance(records, Measured) else Measured.from_records(records, metric)


def _uses_pub(key: str, show: str, metric: str) -> bool:
    return show != "none" and metric == table_data(key)["metric"]


def apt_table1(records: Iterable[Record] | Measured, show: str = "none", metric: str = "pixel_auroc",
               datasets: Sequence[str] | None = None, shots: Sequence[int] | None = None) -> Table:
    """APT Table 1: rows shots x method, columns dataset x variant."""
    m = _measured(records, metric)
    pubt = table_data("apt_table1")
    variants = list(pubt["variants"])
    use_pub = _uses_pub("apt_table1", show, metric)
    pvals = pubt["values"] if use_pub else {}
    datasets = list(datasets or m.datasets(pubt["datasets"]))
    shot_list = list(shots or sorted(set(m.shots()) | {int(k) for k in pubt["values"]}))
    names = list(pubt["methods"]) + [n for n in dict.fromkeys(m.names.values()) if n not in pubt["methods"]]
    foot, problems = Footnotes(), []
    cols = [(d, v) for d in datasets for v in variants]
    rows = []
    for k in shot_list:
        for name in names:
            pub_m = (pvals.get(k) or {}).get(name)
            pub = [pub_value((pub_m.get(d) or [None] * len(variants))[variants.index(v)]) for d, v in cols] \
                if pub_m is not None else None
            ids = m.ids_of(name) or ([name] if is_measurable(name) else [])
            if not ids:
                rows.append(PaperRow([f"{k}-shot", method_label(name)], None, pub, k))
            for mid in ids:
                entries = [m.entry(mid, d, k, v, foot) for d, v in cols]
                rows.append(PaperRow([f"{k}-shot", m.label(mid)], [e for e, _ in entries], pub if mid == name else None,
                                     k, [mk for _, mk in entries], [m.records_of(mid, d, k) for d, _ in cols],
                                     row_protocol(pubt.get("protocol"), None, name)))
    notes = m.notes(problems) + ([source_note("apt_table1")] if use_pub else [])
    return assemble(f"{METRIC_LABELS.get(metric, metric)}: APT Table 1 layout", ["shots", "method"],
                    [(dataset_label(d), len(variants)) for d in datasets], [v for _ in datasets for v in variants],
                    [d for d, _ in cols], rows, show, notes, foot, pubt.get("protocol") or {}, problems)


def apt_table2(records: Iterable[Record] | Measured, show: str = "none", metric: str = "pixel_auroc",
               datasets: Sequence[str] | None = None) -> Table:
    """APT Table 2: the table's rows (published-only, zero-shot methods, one measured few-shot row)."""
    m = _measured(records, metric)
    pubt = table_data("apt_table2")
    use_pub = _uses_pub("apt_table2", show, metric)
    datasets = list(datasets or m.datasets(pubt["datasets"]))
    foot, problems = Footnotes(), []

    def pub_row(spec):
        return [pub_value((spec.get("values") or {}).get(d)) for d in datasets] if use_pub and "values" in spec \
            else None

    def measured_row(mid, k, v, header, pub, group, protocol=None):
        entries = [m.entry(mid, d, k, v, foot) for d in datasets]
        aux = auxiliary_note(m.rs.records, mid, dataset_label)  # "trained on VisA" (transfer methods)
        return PaperRow([f"{header} ({aux})" if aux else header], [e for e, _ in entries], pub, group,
                        [mk for _, mk in entries], [m.records_of(mid, d, k) for d in datasets], protocol)

    named0 = {s["method"] for s in pubt["rows"] if s.get("method") and int(s["shots"]) == 0}
    rows = []
    for spec in pubt["rows"]:
        if spec.get("zero_shot"):
            for mid in m.names:
                recs = [r for r in m.rs.records if r.key["method"] == mid and r.key["shots"] == 0]
                if not recs or m.names[mid] in named0:  # it has its own row
                    continue
                variants = list(dict.fromkeys(v for r in recs for v in r.metrics)) or ["w/o VG"]
                v = "w/o VG" if "w/o VG" in variants else variants[0]
                rows.append(measured_row(mid, 0, v, f"{m.label(mid)} (zero-shot{'' if v == 'w/o VG' else ', ' + v})",
                                         None, 0))
        elif spec.get("method"):
            name, k, v = spec["method"], int(spec["shots"]), spec["variant"]
            for mid in (m.ids_of(name) or [name]):
                header = spec.get("label") if mid == name else f"{m.label(mid)} ({k}-shot, {v})"
                rows.append(measured_row(mid, k, v, header, pub_row(spec) if mid == name else None, k,
                                         row_protocol(pubt.get("protocol"), spec, name)))
        else:
            rows.append(PaperRow([spec["label"]], None, pub_row(spec), 0))
    notes = m.notes(problems) + ([source_note("apt_table2")] if use_pub else [])
    return assemble(f"{METRIC_LABELS.get(metric, metric)}: APT Table 2 layout (zero-shot comparison)", ["method"],
                    [("", len(datasets))], [dataset_label(d) for d in datasets], datasets, rows, show, notes, foot,
                    pubt.get("protocol") or {}, problems, bold_by_group=False)


def apt_table3(records: Iterable[Record] | Measured, show: str = "none", metric: str = "pixel_auroc",
               datasets: Sequence[str] | None = None, shots: int | None = None, variant: str | None = None,
               labels: dict[tuple, str] | None = None, switches: Sequence[str] | None = None,
               method: str | None = None) -> Table:
    """APT Table 3: one row per setting of the table's boolean switches of its method; columns datasets.

    ``labels``: optional row names by switch tuple (shown in a ``setting`` column).
    """
    m = _measured(records, metric)
    pubt = table_data("apt_table3")
    use_pub = _uses_pub("apt_table3", show, metric)
    switches = list(switches or pubt["switches"])
    method = method or pubt["method"]
    shots = int(pubt["shots"] if shots is None else shots)
    variant = variant or pubt["variant"]
    datasets = list(datasets or m.datasets(pubt["datasets"]))
    foot, problems = Footnotes(), []

    def setting(opts: dict[str, Any]) -> tuple | None:
        return tuple(bool(opts[s]) for s in switches) if all(s in opts for s in switches) else None

    pub_by = {setting(r): r for r in pubt["rows"] if setting(r) is not None}
    settings: list[tuple] = list(pub_by)
    ids_by: dict[tuple, list[str]] = {}
    unmatched = []
    for mid in m.ids_of(method):
        sw = setting(m.options.get(mid, {}))
        if sw is None:
            unmatched.append(mid)
            continue
        ids_by.setdefault(sw, []).append(mid)
        if sw not in settings:
            settings.append(sw)
    notes = m.notes(problems)
    if unmatched:
        notes.append(f"not shown: {', '.join(unmatched)} (its records do not state every switch "
                     f"{', '.join(switches)}; rerun to record resolved options)")
    rows = []
    for sw in settings:
        header = [CHECK if on else CROSS for on in sw] + ([labels.get(sw, "")] if labels else [])
        pub = [pub_value(pub_by[sw].get(d)) for d in datasets] if use_pub and sw in pub_by else None
        ids = closest_first(method, ids_by.get(sw, []), m.options)
        if len(ids) > 1:
            notes.append(f"setting {dict(zip(switches, sw))}: several method ids ({', '.join(ids)}); showing {ids[0]}")
        mid = ids[0] if ids else method
        entries = [m.entry(mid, d, shots, variant, foot) if ids else
                   (TextCell("missing", "missing"), foot.mark(f"missing: no {method} record with this setting"))
                   for d in datasets]
        rows.append(PaperRow(header, [e for e, _ in entries], pub, None, [mk for _, mk in entries],
                             [m.records_of(mid, d, shots) if ids else [] for d in datasets],
                             row_protocol(pubt.get("protocol"), None, method, dict(zip(switches, sw)))))
    if use_pub:
        notes.append(source_note("apt_table3"))
    notes.append("LaTeX: the check mark needs \\usepackage{amssymb}.")
    return assemble(f"{METRIC_LABELS.get(metric, metric)}: APT Table 3 layout (ablation), {shots}-shot, {variant}",
                    [s.upper() for s in switches] + (["setting"] if labels else []), [("", len(datasets))],
                    [dataset_label(d) for d in datasets], datasets, rows, show, notes, foot,
                    pubt.get("protocol") or {}, problems)


def _apt_table1_options(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    kw = no_options(spec, config)
    if spec.get("shots"):
        kw["shots"] = [int(k) for k in spec["shots"]]
    return kw


def _apt_table3_options(spec: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """Ablation row names come from ``table.rows`` / ``published.rows`` entries {label, <switch>: bool, ...}."""
    kw = no_options(spec, config)
    if spec.get("shots") is not None:
        kw["shots"] = int(spec["shots"])
    for key in ("variant", "method"):
        if spec.get(key):
            kw[key] = spec[key]
    switches = list(spec.get("switches") or table_data("apt_table3")["switches"])
    if spec.get("switches"):
        kw["switches"] = switches
    prow = (config.get("published") or {}).get("rows") if isinstance(config.get("published"), dict) else None
    labels = {tuple(bool(r.get(s)) for s in switches): str(r["label"])
              for rows in (prow or [], spec.get("rows") or []) for r in rows
              if isinstance(r, dict) and "label" in r and all(s in r for s in switches)}
    if labels:
        kw["labels"] = labels
    return kw


def _layout(key: str, fn, options, description: str) -> Layout:
    t = table_data(key)
    return Layout(key, source_name(t["source"]), t["table"], fn, options, description)


APT_TABLE1 = _layout("apt_table1", apt_table1, _apt_table1_options,
                     "pixel AUROC, rows shots x method, columns dataset x variant")
APT_TABLE2 = _layout("apt_table2", apt_table2, no_options, "zero-shot comparison, MVTec and VisA")
APT_TABLE3 = _layout("apt_table3", apt_table3, _apt_table3_options, "ablation of the APT switches, 1-shot w/o VG")


def build(layout: str, records: Iterable[Record], show: str = "none", **kw) -> Table:
    """Any registered layout (kept here for callers of the APT-only version)."""
    from fsadbench.reports.paper.catalog import build as build_any

    return build_any(layout, records, show, **kw)
