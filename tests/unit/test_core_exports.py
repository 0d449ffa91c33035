"""The CSV / JSON exports, checked against figures computed by hand from hand-made records.

Method A on mvtec (1 shot), two categories, two seeds, two variants; cell (c2, seed 1) failed. Method
=B (a name a spreadsheet would run as a formula) is not applicable. By hand, in %:

* w/o VG: seed 0 = (80 + 50) / 2 = 65, seed 1 = 60 (c1 only) -> 62.5 ± 2.5 over 2 seeds;
* w/ VG:  seed 0 = (90 + 70) / 2 = 80, seed 1 = 90 (c1 only) -> 85.0 ± 5.0 over 2 seeds;
* per category: c1 w/o VG (80, 60) -> 70 ± 10; c2 has seed 0 only.

EQUIVALENT_MUTANTS lists the surviving mutants of reports/export.py that cannot change behaviour.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np
import pandas as pd
import pytest

from fsadbench.reports.export import (SUMMARY_COLUMNS, coverage_notes, csv_safe, load_records, render_report,
                                      report_text, summary_long, to_csv, to_json, with_coverage)
from fsadbench.results.aggregate import records_frame
from fsadbench.results.records import CellKey, Record, RecordStore

FAILED_C2 = "covers 1/2 seeds; missing: seed 1 (failed: OSError: disk)"
FAILED_DS = "covers 2/2 categories x 2/2 seeds (some cells missing); missing: c2 seed 1 (failed: OSError: disk)"


def rec(m, c, s, vals, status="ok", error=None, shots=1, dataset="mvtec", label=None, cap=None, image=0.5):
    return Record(key=CellKey(m, dataset, c, shots, s).__dict__, status=status, config_hash="h",
                  method={"name": m, "label": label},
                  metrics={v: {"pixel_auroc": x, "image_auroc": image} for v, x in vals.items()}
                  if status == "ok" else {},
                  backbone={"model": "x"}, error=error, protocol={"max_test_images": cap} if cap else {},
                  provenance={"git": {"commit": "c" * 40, "dirty": False}})


def _records():
    return [rec("A", "c1", 0, {"w/o VG": 0.8, "w/ VG": 0.9}), rec("A", "c1", 1, {"w/o VG": 0.6, "w/ VG": 0.9}),
            rec("A", "c2", 0, {"w/o VG": 0.5, "w/ VG": 0.7}),
            rec("A", "c2", 1, {}, status="failed", error="Traceback\nOSError: disk"),
            rec("=B", "c1", 0, {}, status="not_applicable", error="needs 1 shot"),
            rec("=B", "c2", 0, {}, status="not_applicable", error="needs 1 shot")]


ROWS = [  # level, variant, category, mean, std, n_seeds, coverage
    ("dataset", "w/ VG", "", 85.0, 5.0, 2, FAILED_DS),
    ("dataset", "w/o VG", "", 62.5, 2.5, 2, FAILED_DS),
    ("category", "w/ VG", "c1", 90.0, 0.0, 2, "complete"),
    ("category", "w/ VG", "c2", 70.0, 0.0, 1, FAILED_C2),
    ("category", "w/o VG", "c1", 70.0, 10.0, 2, "complete"),
    ("category", "w/o VG", "c2", 50.0, 0.0, 1, FAILED_C2),
]


def _rows(df):
    return [(r.level, r.variant, r.category, pytest.approx(r.mean), pytest.approx(r.std), int(r.n_seeds),
             r.coverage) for r in df.itertuples()]


def test_summary_rows_and_their_coverage_by_hand():
    recs = _records()
    rows = with_coverage(summary_long(records_frame(recs), ["pixel_auroc"], categories=True), recs)
    assert list(rows.columns) == SUMMARY_COLUMNS + ["coverage"]
    assert _rows(rows) == ROWS
    assert set(rows["metric"]) == {"pixel_auroc"} and set(rows["method"]) == {"A"} and set(rows["label"]) == {"A"}
    assert set(rows["dataset"]) == {"mvtec"} and set(rows["shots"]) == {1}
    # without categories: the dataset rows only
    assert _rows(with_coverage(summary_long(records_frame(recs), ["pixel_auroc"]), recs)) == ROWS[:2]


def test_several_metrics_in_the_order_asked_and_nothing_for_an_empty_frame():
    recs = _records()
    rows = summary_long(records_frame(recs), ["image_auroc", "pixel_auroc"])
    assert list(rows["metric"]) == ["image_auroc", "image_auroc", "pixel_auroc", "pixel_auroc"]
    assert list(rows["mean"])[:2] == pytest.approx([50.0, 50.0])
    for empty in (summary_long(records_frame([]), ["pixel_auroc"], categories=True),
                  summary_long(records_frame(recs), [])):
        assert empty.empty and list(empty.columns) == SUMMARY_COLUMNS


def test_a_figure_with_no_defined_seed_is_not_a_row():
    recs = [rec("A", "c1", 0, {"w/o VG": None}), rec("A", "c1", 1, {"w/o VG": None})]
    assert summary_long(records_frame(recs), ["pixel_auroc"], categories=True).empty
    recs.append(rec("A", "c2", 0, {"w/o VG": 0.4}))
    rows = with_coverage(summary_long(records_frame(recs), ["pixel_auroc"], categories=True), recs)
    assert _rows(rows) == [
        ("dataset", "w/o VG", "", 40.0, 0.0, 1,
         "covers 1/2 categories x 1/2 seeds; missing: category c1 (pixel_auroc undefined), seed 1 (no record)"),
        ("category", "w/o VG", "c2", 40.0, 0.0, 1, "covers 1/2 seeds; missing: seed 1 (no record)")]


def test_with_coverage_of_no_rows_adds_an_empty_column():
    out = with_coverage(pd.DataFrame(columns=SUMMARY_COLUMNS), _records())
    assert out.empty and list(out.columns) == SUMMARY_COLUMNS + ["coverage"]


def test_coverage_notes_count_failed_and_not_applicable_cells_per_method():
    recs = _records() + [rec("C", "c1", 0, {}, status="failed", error="x"),
                         rec("A", "c1", 0, {"w/o VG": 0.5}, dataset="visa", cap=20)]
    assert coverage_notes(recs) == [
        "SUBSET: at most 20 test image(s) per category (--max-test-images); not comparable with figures over the "
        "full test sets.",
        "2 cell(s) failed, left out of the tables: A (1), C (1)",
        "2 cell(s) not applicable, left out of the tables: =B (2)"]
    assert coverage_notes([r for r in recs if r.status == "ok" and not r.protocol]) == []


@pytest.mark.parametrize("text", ["=SUM(A1)", "+1", "-1", "@x", "\tx", "\rx"])
def test_a_text_cell_a_spreadsheet_would_run_gets_a_quote(text):
    assert csv_safe(text) == "'" + text


def test_plain_text_and_numbers_are_left_alone():
    assert csv_safe("apt") == "apt" and csv_safe("a=b") == "a=b" and csv_safe(-1.5) == -1.5 and csv_safe("") == ""


def test_csv_by_hand():
    recs = [rec("A", "c1", 0, {"w/o VG": 1 / 3}, label="=HYPERLINK(x)"),
            rec("A", "c1", 1, {"w/o VG": 2 / 3}, label="=HYPERLINK(x)")]
    rows = summary_long(records_frame(recs), ["pixel_auroc"])
    assert to_csv(rows) == ("level,metric,method,label,variant,dataset,shots,category,mean,std,n_seeds\n"
                            "dataset,pixel_auroc,A,'=HYPERLINK(x),w/o VG,mvtec,1,,50.0000,16.6667,2\n")
    # numeric columns stay numbers even when negative
    assert to_csv(pd.DataFrame({"d": [-1.25], "t": ["-x"]})) == "d,t\n-1.2500,'-x\n"


def test_json_by_hand_nan_is_null_and_meta_comes_first():
    rows = pd.DataFrame({"method": ["A", "B"], "mean": [1 / 3, math.nan]})
    text = to_json(rows, ["note 1"], results_dir="r", metrics=["m"])
    assert text.endswith("}\n")
    data = json.loads(text)
    assert list(data) == ["results_dir", "metrics", "notes", "rows"]
    assert data == {"results_dir": "r", "metrics": ["m"], "notes": ["note 1"],
                    "rows": [{"method": "A", "mean": 0.333333}, {"method": "B", "mean": None}]}
    assert json.loads(to_json(rows)) == {"notes": [], "rows": data["rows"]}
    assert text.startswith('{\n "results_dir": "r",\n')


@pytest.fixture
def results(tmp_path):
    store = RecordStore(tmp_path / "run")
    for r in _records() + [rec("A", "c1", 0, {"w/o VG": 0.3}, dataset="visa")]:
        store.write(r)
    return tmp_path / "run"


def test_load_records_filters_by_method_and_dataset(results):
    recs, df = load_records(results)
    assert len(recs) == 7 and len(df) == 7  # 3 ok mvtec records x 2 variants + 1 visa
    recs, df = load_records(results, methods=["=B"])
    assert {r.key["method"] for r in recs} == {"=B"} and df.empty
    recs, df = load_records(results, datasets=["visa"])
    assert [r.key["dataset"] for r in recs] == ["visa"] and list(df["pixel_auroc"]) == [0.3]
    recs, _ = load_records(results, methods=["A"], datasets=["mvtec"])
    assert len(recs) == 4


def test_report_csv_and_json_carry_the_figures_coverage_and_notes(results):
    rep = render_report(results, "csv", "pixel_auroc", datasets=["mvtec"], per_category=True)
    got = list(csv.DictReader(io.StringIO(rep.text)))
    assert [(r["level"], r["variant"], r["category"], float(r["mean"]), float(r["std"]), int(r["n_seeds"]),
             r["coverage"]) for r in got] == ROWS
    assert rep.problems == ["pixel AUROC: 2 figure(s) incomplete, missing or failed",
                            "mvtec 1-shot per category: 2 figure(s) incomplete, missing or failed"]
    data = json.loads(report_text(results, "json", ["pixel_auroc"], datasets=["mvtec"]))
    assert data["results_dir"] == str(results) and data["metrics"] == ["pixel_auroc"]
    assert data["notes"] == ["1 cell(s) failed, left out of the tables: A (1)",
                             "2 cell(s) not applicable, left out of the tables: =B (2)"]
    assert [(r["level"], r["variant"], r["mean"]) for r in data["rows"]] == [("dataset", "w/ VG", 85.0),
                                                                             ("dataset", "w/o VG", 62.5)]


def test_report_markdown_and_latex_are_the_tables_and_nothing_ok_says_so(results, tmp_path):
    md = render_report(results, "markdown", datasets=["visa"])
    assert md.text.startswith("**pixel AUROC**") and md.problems == []
    assert "\\begin{tabular}" in report_text(results, "latex", datasets=["visa"])
    assert render_report(results, "json", methods=["=B"]).text == ""
    assert render_report(results, "json", methods=["=B"]).problems == ["no successful records"]
    assert report_text(tmp_path / "nothing", "csv") == ""


def test_report_defaults_are_the_markdown_pixel_auroc_main_table(results):
    text = report_text(results)
    assert text.startswith("**pixel AUROC**") and "per category" not in text
    assert text == render_report(results).text == report_text(results, "markdown", "pixel_auroc")
    assert "per category" in report_text(results, per_category=True)
    assert "**image AUROC**" in report_text(results, metric="image_auroc")


def test_method_and_dataset_filters_reach_the_tables_and_the_rows(tmp_path):
    store = RecordStore(tmp_path)
    for r in _records() + [rec("D", c, s, {"w/o VG": 0.4}) for c in ("c1", "c2") for s in (0, 1)]:
        store.write(r)
    everything = render_report(tmp_path, "csv")
    assert everything.problems == ["pixel AUROC: 2 figure(s) incomplete, missing or failed"]
    only_d = render_report(tmp_path, "csv", methods=["D"])
    assert only_d.problems == [] and set(r["method"] for r in csv.DictReader(io.StringIO(only_d.text))) == {"D"}
    assert set(r["method"] for r in csv.DictReader(io.StringIO(report_text(tmp_path, "csv", methods=["D"])))) == {"D"}
    per_cat = report_text(tmp_path, "csv", methods=["D"], per_category=True)
    assert [r["level"] for r in csv.DictReader(io.StringIO(per_cat))] == ["dataset", "category", "category"]


def test_html_report_names_its_title_and_source_and_shows_saved_maps(results):
    from fsadbench.results.scores import CellScores, scores_path

    html = report_text(results, "html")
    assert "<h1>fsad-bench report</h1>" in html and f"<code>{results}</code>" in html
    assert "Qualitative results" not in html
    assert "<h1>My run</h1>" in report_text(results, "html", title="My run")
    assert "<h1>My run</h1>" in render_report(results, "html", title="My run").text
    assert "<h1>fsad-bench report</h1>" in render_report(results, "html").text
    key = CellKey("A", "mvtec", "c1", 1, 0)
    masks = np.zeros((2, 4, 4), bool)
    masks[1, 1:3, 1:3] = True
    CellScores(["w/o VG"], ["/gone/0.png", "/gone/1.png"], np.array([0, 1]), np.array([True, True]),
               {"w/o VG": np.array([0.1, 0.9])}, {"w/o VG": np.random.default_rng(0).random((2, 4, 4))},
               masks).save(scores_path(RecordStore(results).path(key)))
    assert "Qualitative results" in report_text(results, "html")


EQUIVALENT_MUTANTS = {
    "export.summary_long: pd.concat(parts, ignore_index=None / False / absent)":
        "the index is reset (drop=True) after the n_seeds filter, so the concatenated index is never read",
    "export.to_csv: to_csv(index=None) for index=False": "pandas reads None as no index, like False",
    "export.to_csv: float_format '%.4F' for '%.4f'":
        "differs only for inf (INF); means and stds of fractions in [0, 1] are finite, NaN is written empty",
}
