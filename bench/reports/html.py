"""One self-contained HTML report of a results folder (opens offline: inline CSS, images as data URIs).

Sections: notes (random weights, subsets, failed cells), the main table of each
metric, per-category bar charts with error bars (std over seeds), per-category
tables, the qualitative grid when the run saved maps (``--save-maps``), and the
provenance (commits, backbones, protocol, packages, devices). Nothing is
fetched from the network: no scripts, no external stylesheets or fonts.
"""

from __future__ import annotations

import base64
import html
import math
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

from fsadbench.reports.export import coverage_notes
from fsadbench.reports.notes import shape_notes
from fsadbench.reports.tables import Table, TextCell, category_table, main_table
from fsadbench.results.aggregate import METRIC_LABELS, records_frame
from fsadbench.results.coverage import Figure, ResultSet
from fsadbench.results.records import STATUS_OK, Record

CSS = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.9em}th,td{padding:.25em .6em;text-align:center}
thead th{border-bottom:1px solid #444}table{border-top:2px solid #222;border-bottom:2px solid #222}
tr.break td{border-top:1px solid #999}td.rh{text-align:left}.note{background:#fff6d5;padding:.4em .8em;
border-left:4px solid #e0b000;margin:.3em 0}.warn{background:#fde2e1;border-color:#c0392b}
img{max-width:100%}code{background:#f3f3f3;padding:0 .2em}dl{display:grid;grid-template-columns:max-content auto;
gap:.2em 1em}dt{font-weight:600}caption{font-weight:600;text-align:left;padding:.3em 0}"""


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def img_tag(png: bytes, alt: str) -> str:
    return f'<img src="{data_uri(png)}" alt="{esc(alt)}">'


def _entry(c, bold: bool, close: bool, mark: str | None) -> str:
    if isinstance(c, TextCell):
        s = esc(c.md)
    elif not isinstance(c, Figure) or math.isnan(c.mean):
        s = "&ndash;"
    else:
        s = (f"{c.mean:.2f} (n = 1)" if c.n_seeds == 1
             else f"{c.mean:.2f} &plusmn; {0.0 if math.isnan(c.std) else c.std:.2f}")
        s = f"<b>{s}</b>" if bold else s
    return s + (" &dagger;" if close else "") + (f" <sup>{esc(mark)}</sup>" if mark else "")


def table_html(t: Table) -> str:
    """A :class:`Table` as an HTML table (header groups, bold best, dagger, footnote marks, notes below)."""
    nrh = len(t.row_headers)
    head1 = "".join("<th></th>" for _ in range(nrh)) + "".join(
        f'<th colspan="{span}">{esc(g)}</th>' for g, span in t.groups)
    head2 = "".join(f"<th>{esc(h)}</th>" for h in t.row_headers) + "".join(f"<th>{esc(c)}</th>" for c in t.columns)
    body = []
    for ri, (rh, cells) in enumerate(t.rows):
        cls = ' class="break"' if ri in t.breaks else ""
        tds = "".join(f'<td class="rh">{esc(h.md if isinstance(h, TextCell) else h)}</td>' for h in rh)
        tds += "".join(f"<td>{_entry(c, (ri, j) in t.bold, (ri, j) in t.close, t.marks.get((ri, j)))}</td>"
                       for j, c in enumerate(cells))
        body.append(f"<tr{cls}>{tds}</tr>")
    notes = "".join(f'<p class="note">{esc(n)}</p>' for n in t.notes)
    if t.close:
        notes = '<p class="note">&dagger; not significantly worse than the best (one-sided paired t over seeds)</p>' \
            + notes
    return (f"<table><caption>{esc(t.title)}</caption><thead><tr>{head1}</tr><tr>{head2}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{notes}")


def _bars_png(records: Sequence[Record], dataset: str, shots: int, metric: str) -> bytes | None:
    from fsadbench.core.errors import ConfigError
    from fsadbench.reports.figures import bars_figure, figure_bytes

    try:
        return figure_bytes(bars_figure(records, dataset, shots, metric))  # in memory: no temp files
    except ConfigError:  # the metric is undefined in every category (e.g. test-only sets)
        return None


def qualitative_png(records: Sequence[Record], results_dir: str | Path, n_images: int = 4) -> bytes | None:
    """The qualitative grid of the first cell (dataset, category, shots, seed) whose records saved maps.

    Rows: up to ``n_images`` anomalous test images evenly spaced (normals when there is none); columns:
    image | ground truth | each method x variant's map as evaluated. None when no record saved maps.
    """
    import numpy as np

    from fsadbench.reports.figures import draw_grid, figure_bytes
    from fsadbench.results.records import RecordStore
    from fsadbench.results.scores import CellScores, scores_path

    store = RecordStore(results_dir)
    groups: dict[tuple, list[tuple[Record, Path]]] = {}
    for r in records:
        sp = scores_path(store.path(r.cell))
        if r.status == STATUS_OK and sp.is_file():
            k = r.key
            groups.setdefault((k["dataset"], k["category"], k["shots"], k["seed"]), []).append((r, sp))
    for key in sorted(groups):
        cells = [(r, CellScores.load(sp)) for r, sp in groups[key]]
        cells = [(r, c) for r, c in cells if c.has_maps]
        if not cells:
            continue
        first = cells[0][1]
        pool = [i for i in range(len(first.images)) if first.labels[i] == 1] or list(range(len(first.images)))
        idx = sorted(set(np.linspace(0, len(pool) - 1, min(n_images, len(pool))).round().astype(int).tolist()))
        pick = [pool[i] for i in idx]
        size = first.masks.shape[-1]
        columns = []
        for r, c in cells:
            if c.images != first.images:  # another test list (e.g. another --max-test-images): not comparable
                continue
            label = (r.method or {}).get("label") or r.key["method"]
            columns += [(f"{label} {v}", c.maps[v][pick]) for v in c.variants]
        images = [_thumbnail(first.images[i], size) for i in pick]
        random = any((r.backbone or {}).get("random_weights") for r, _ in cells)
        title = f"{key[0]}/{key[1]}, {key[2]}-shot, seed {key[3]}" + (" (RANDOM weights)" if random else "")
        fig = draw_grid(images, [first.masks[i] for i in pick], [_row_label(first.images[i]) for i in pick],
                        columns, title)
        return figure_bytes(fig)
    return None


def _row_label(path: str) -> str:
    p = Path(path)
    return f"{p.parent.name}/{p.stem}"  # e.g. the defect type's folder and the file


def _thumbnail(path: str, size: int):
    import numpy as np
    from PIL import Image

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB").resize((size, size), Image.BICUBIC))
    except OSError:  # the data moved since the run: the maps are still shown
        return None


def provenance_html(records: Sequence[Record]) -> str:
    """Where the numbers came from: commits, backbones, protocol, metric version, packages, devices, times."""
    ok = [r for r in records if r.status == STATUS_OK] or list(records)

    def counted(values: Iterable[str]) -> str:
        c = Counter(values)
        return "<br>".join(f"<code>{esc(v)}</code> ({n} cell{'s' if n > 1 else ''})" for v, n in c.most_common())

    def commit(r: Record) -> str:
        g = (r.provenance or {}).get("git") or {}
        return (g.get("commit") or "unknown")[:12] + (" (dirty)" if g.get("dirty") else "")

    def backbone(r: Record) -> str:
        b = r.backbone or {}
        return f"{b.get('model')} / {b.get('pretrained')}" + (" RANDOM" if b.get("random_weights") else "") + (
            f", {b['weights_source']}" if b.get("weights_source") else "")

    def protocol(r: Record) -> str:
        p = r.protocol or {}
        return (f"{p.get('version', '?')}: eval_size {p.get('eval_size')}, sigma {p.get('sigma_used')}"
                + (f", max_test_images {p['max_test_images']}" if p.get("max_test_images") else ""))

    newest = max(ok, key=lambda r: str((r.provenance or {}).get("time_utc", "")))
    packages = ", ".join(f"{k} {v}" for k, v in ((newest.provenance or {}).get("packages") or {}).items() if v)
    times = sorted(str((r.provenance or {}).get("time_utc", "")) for r in ok if (r.provenance or {}).get("time_utc"))
    rows = [("commit", counted(map(commit, ok))), ("backbone", counted(map(backbone, ok))),
            ("protocol", counted(map(protocol, ok))), ("metric version", counted(r.metric_version for r in ok)),
            ("device", counted(str(((r.provenance or {}).get("device") or {}).get("gpu")
                                    or ((r.provenance or {}).get("device") or {}).get("device")) for r in ok)),
            ("packages (newest record)", esc(packages) or "unknown"),
            ("time (UTC)", esc(f"{times[0]} to {times[-1]}") if times else "unknown")]
    return "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def html_report(records: Sequence[Record], metrics: Sequence[str] = ("pixel_auroc",), title: str = "fsad-bench report",
                source: str = "", grid_png: bytes | None = None, per_category: bool = True,
                notes: str = "full") -> str:
    """The whole report as one HTML document (a string); ``notes``: the method notes, full, short or none."""
    records = list(records)
    df = records_frame(records)
    rs = ResultSet(records)
    parts = [f"<h1>{esc(title)}</h1>"]
    if source:
        parts.append(f"<p>Records: <code>{esc(source)}</code> ({len(records)} cell record(s), "
                     f"{len(df)} cell x variant row(s))</p>")
    parts += [f'<p class="note warn">{esc(n)}</p>' for n in coverage_notes(records)]
    if df.empty:
        parts.append('<p class="note warn">No successful records: nothing to tabulate.</p>')
    for m in metrics if not df.empty else ():
        label = METRIC_LABELS.get(m, m)
        parts.append(f"<h2>{esc(label)}</h2>")
        parts.append(table_html(shape_notes(main_table(rs, m), notes)))
        for d in dict.fromkeys(df["dataset"]):
            for k in sorted(df[df["dataset"] == d]["shots"].unique()):
                png = _bars_png(records, d, int(k), m)
                if png is not None:
                    parts.append(f"<h3>{esc(d)}, {int(k)}-shot, per category</h3>{img_tag(png, f'{label} {d} {k}-shot')}")
                if per_category:
                    parts.append("<details><summary>per-category table</summary>"
                                 + table_html(category_table(rs, d, int(k), m)) + "</details>")
    if grid_png is not None:
        parts.append(f"<h2>Qualitative results</h2>{img_tag(grid_png, 'qualitative grid')}")
    if records:
        parts.append(f"<h2>Provenance</h2>{provenance_html(records)}")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f"<style>{CSS}</style></head><body>\n{body}\n</body></html>\n")
