"""An image-level method (InCTRL, tiny training) through a sweep: its records, the shots a reused
auxiliary fit meets, and "n/a, image-level method" for every pixel metric in every table format and
in the AnoPLe Table 1 layout, never a figure."""

from __future__ import annotations

import json

import pytest

from fixtures_transfer import SYN, transfer_config
from fsadbench.core.types import IMAGE_LEVEL, PIXEL_METRICS
from fsadbench.results.records import RecordStore
from fsadbench.run import sweep
from fsadbench.run.config import DatasetSpec, MethodSpec

TINY = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4, "train_shots": 1}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from fsadbench.methods.inctrl.model import InCTRL

    tmp = tmp_path_factory.mktemp("img")
    seen, fits = [], []
    real_predict, real_fit = InCTRL.predict, InCTRL.fit_auxiliary
    InCTRL.predict = lambda self, images: (seen.append(len(self.prompts[self.current][1]["embedding"])),
                                           real_predict(self, images))[1]
    InCTRL.fit_auxiliary = lambda self, aux: (fits.append(aux.dataset), real_fit(self, aux))[1]
    try:
        cfg = transfer_config(tmp, methods=[MethodSpec("inctrl", dict(TINY)), MethodSpec("memory", {})],
                              datasets=[DatasetSpec("synthetic", categories=["stripes", "disc"], options=dict(SYN))],
                              shots=[1, 2])
        s = sweep(cfg)
    finally:
        InCTRL.predict, InCTRL.fit_auxiliary = real_predict, real_fit
    assert s.failed == 0 and s.computed == 8
    return cfg.results_dir, seen, fits


def test_records_say_image_level(folder):
    recs = list(RecordStore(folder[0]))
    inctrl = [r for r in recs if r.key["method"].startswith("inctrl")]
    assert len(inctrl) == 4
    for r in inctrl:
        m, u = r.metrics["w/ VG"], r.undefined["w/ VG"]
        assert r.method["outputs"] == ["image"] and m["image_auroc"] is not None
        assert all(m[k] is None and u[k] == IMAGE_LEVEL for k in PIXEL_METRICS)
    assert all("outputs" not in r.method for r in recs if r.key["method"] == "memory")  # unchanged records


def test_a_reused_auxiliary_fit_meets_each_jobs_shots(folder):
    _, seen, fits = folder
    assert fits == ["synthetic-aux"]  # one training for both shot counts
    assert sorted(set(seen)) == [1, 2] and seen[0] == 1 and seen[-1] == 2  # k=2 cells scored with 2 prompts


def _render(folder, fmt, per_category=False):
    from fsadbench.reports.export import render_report

    return render_report(folder, fmt, ["pixel_auroc", "image_auroc"], per_category=per_category).text


@pytest.mark.parametrize("fmt", ["markdown", "latex", "html"])
def test_tables_say_na_image_level(folder, fmt):
    from fsadbench.reports.export import render_report

    text = _render(folder[0], fmt, per_category=True)
    assert text.count(IMAGE_LEVEL) >= 2 + 4  # main table (2 shot rows) + per-category tables (2 x 2 categories)
    pixel = render_report(folder[0], fmt, ["pixel_auroc"]).text
    lines = [tr.split("</tr>")[0] for tr in pixel.split("<tr")] if fmt == "html" else pixel.splitlines()
    rows = [ln for ln in lines if "inctrl" in ln and ("|" in ln or "&" in ln or "<td" in ln)]
    assert len(rows) == 2  # one per shot count
    assert all(IMAGE_LEVEL in ln for ln in rows)
    assert all("(n = 1)" not in ln.split("inctrl")[1].split("memory")[0] for ln in rows)  # no figure in them


def test_exports_say_na_image_level(folder):
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(_render(folder[0], "csv"))))
    pix = [r for r in rows if r["method"].startswith("inctrl") and r["metric"] == "pixel_auroc"]
    assert len(pix) == 2 and all(r["coverage"] == IMAGE_LEVEL and r["mean"] == "" and r["n_seeds"] == "0"
                                 for r in pix)
    img = [r for r in rows if r["method"].startswith("inctrl") and r["metric"] == "image_auroc"]
    assert len(img) == 2 and all(r["mean"] != "" and r["coverage"] == "complete" for r in img)
    data = json.loads(_render(folder[0], "json"))
    pj = [r for r in data["rows"] if r["method"].startswith("inctrl") and r["metric"] == "pixel_auroc"]
    assert len(pj) == 2 and all(r["mean"] is None and r["coverage"] == IMAGE_LEVEL for r in pj)
    memory = [r for r in rows if r["method"] == "memory" and r["metric"] == "pixel_auroc"]
    assert len(memory) == 2 and all(r["mean"] != "" for r in memory)


def test_anople_table1_row_is_measured_and_pixel_columns_na(folder):
    from fsadbench.reports.paper.anople import TABLE1

    recs = list(RecordStore(folder[0]))
    t = TABLE1.build(recs, show="beside")
    row = next(cells for head, cells in t.rows if head[0] == "InCTRL")
    texts = [getattr(c, "md", None) for c in row]
    assert texts.count(IMAGE_LEVEL) == 2  # the synthetic block's P 1-shot and 2-shot (4-shot: no record)
    assert "missing" in texts and "94.00 ± 1.50" in texts  # the published figure beside
    assert [c.md for c in next(h for h, _ in t.rows if h[0] == "InCTRL")[1:]] == ["×", "✓"]
