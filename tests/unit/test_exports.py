"""report --format csv/json/html and fsadbench.load_results, from fixed records."""

import base64
import csv
import io
import json
import sys

import pytest
from html_checks import assert_self_contained, parse_report

from fsadbench.cli import main
from fsadbench.results.records import CellKey, Record, RecordStore


def make_record(method, cat, seed, wo, w, status="ok", **extra):
    return Record(key=CellKey(method, "mvtec", cat, 1, seed).__dict__, status=status, config_hash="h",
                  method={"name": method, "id": method, "label": method.upper(), "options": {"k": 2}},
                  metrics={"w/o VG": {"pixel_auroc": wo, "image_auroc": None},
                           "w/ VG": {"pixel_auroc": w, "image_auroc": 0.5}} if status == "ok" else {},
                  backbone={"model": "ViT-B-16-plus-240", "pretrained": "laion400m_e32", "random_weights": False},
                  protocol={"eval_size": 400, "sigma_used": 4.0, "version": "fsad-protocol/1"},
                  provenance={"git": {"commit": "abc123def4567890", "dirty": False}, "time_utc": f"2025-01-0{seed + 1}",
                              "packages": {"torch": "2.3"}, "device": {"device": "cpu"}},
                  metric_version="m1", n_test=10, **extra)


@pytest.fixture()
def results(tmp_path):
    store = RecordStore(tmp_path / "run")
    for r in (make_record("a", "bottle", 0, 0.80, 0.90), make_record("a", "grid", 0, 0.60, 0.70),
              make_record("a", "bottle", 1, 0.90, 0.95), make_record("a", "grid", 1, 0.70, 0.85),
              make_record("b", "bottle", 0, 0.85, 0.99), make_record("b", "grid", 0, 0.75, 0.97),
              make_record("b", "cable", 0, 0, 0, status="failed", error="boom")):
        store.write(r)
    return tmp_path / "run"


def test_csv_rows_are_the_table_numbers(results, capsys):
    assert main(["report", "--results-dir", str(results), "--format", "csv", "--per-category"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    top = {(r["method"], r["variant"]): r for r in rows if r["level"] == "dataset"}
    # a w/o VG: seed 0 mean(0.8, 0.6) = 70, seed 1 mean(0.9, 0.7) = 80 -> 75 ± 5 over seeds (ddof 0)
    assert float(top[("a", "w/o VG")]["mean"]) == pytest.approx(75.0)
    assert float(top[("a", "w/o VG")]["std"]) == pytest.approx(5.0) and top[("a", "w/o VG")]["n_seeds"] == "2"
    assert float(top[("b", "w/ VG")]["mean"]) == pytest.approx(98.0)
    cat = {(r["method"], r["variant"], r["category"]): r for r in rows if r["level"] == "category"}
    assert float(cat[("a", "w/ VG", "grid")]["mean"]) == pytest.approx(77.5)
    assert set(rows[0]) >= {"metric", "dataset", "shots", "label", "mean", "std", "n_seeds"}


def test_json_has_rows_and_coverage_notes(results, tmp_path):
    out = tmp_path / "r.json"
    assert main(["report", "--results-dir", str(results), "--format", "json", "--metric", "pixel_auroc,image_auroc",
                 "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {r["metric"] for r in data["rows"]} == {"pixel_auroc", "image_auroc"}
    wo = [r for r in data["rows"] if r["metric"] == "image_auroc" and r["variant"] == "w/o VG"]
    assert all(r["mean"] is None for r in wo)  # undefined stays null, never 0 or 0.5
    assert any("1 cell(s) failed" in n and "b (1)" in n for n in data["notes"])


def test_csv_and_json_name_the_auxiliary_set_only_when_a_method_trained_on_one(results, tmp_path, capsys):
    assert main(["report", "--results-dir", str(results), "--format", "csv", "--per-category"]) == 0
    plain = capsys.readouterr().out
    assert "auxiliary" not in plain.splitlines()[0]  # no transfer method: the columns of every other export
    store = RecordStore(results)
    for seed in (0, 1):  # "z" trained on visa for the mvtec target (as --train-on visa records it)
        r = make_record("z", "bottle", seed, 0.6, 0.7)
        r.method["auxiliary"] = {"name": "visa", "options": {}, "label": "trained on visa", "same_as_target": False}
        store.write(r)
    assert main(["report", "--results-dir", str(results), "--format", "csv", "--per-category"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].startswith("level,metric,method,label,variant,dataset,auxiliary,shots,")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert {(r["method"], r["auxiliary"]) for r in rows} == {("a", ""), ("b", ""), ("z", "visa")}
    assert len(rows) == len(list(csv.DictReader(io.StringIO(plain)))) + 4  # z: dataset + category rows, 2 variants
    out = tmp_path / "r.json"
    assert main(["report", "--results-dir", str(results), "--format", "json", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert {(r["method"], r["auxiliary"]) for r in data["rows"]} == {("a", ""), ("b", ""), ("z", "visa")}


def test_html_report_is_self_contained_with_tables_bars_and_provenance(results):
    out = results / "report.html"
    assert main(["report", "--results-dir", str(results), "--format", "html"]) == 0  # default file
    text = out.read_text()
    doc = parse_report(text)
    assert_self_contained(doc)
    assert doc.tags.count("table") >= 2  # main table + per-category table
    imgs = [v for tag, k, v in doc.attrs if tag == "img" and k == "src"]
    assert imgs and all(v.startswith("data:image/png;base64,") for v in imgs)
    assert base64.b64decode(imgs[0].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    body = " ".join(doc.text)
    assert "abc123def456" in body and "ViT-B-16-plus-240" in body  # provenance
    assert "1 cell(s) failed" in body  # coverage note
    assert "75.00 ± 5.00" in body


def test_report_on_a_missing_folder_names_the_default_and_the_smoke_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["report"]) == 2
    err = capsys.readouterr().err
    assert "results/run" in err and "--preset smoke" in err and "results/smoke" in err


def test_load_results_one_row_per_cell_and_variant(results):
    import fsadbench

    df = fsadbench.load_results(results)
    assert len(df) == 6 * 2  # 6 ok cells x 2 variants; the failed cell has no row
    row = df[(df["method"] == "a") & (df["category"] == "grid") & (df["seed"] == 1) & (df["variant"] == "w/ VG")]
    assert row["pixel_auroc"].item() == pytest.approx(0.85)
    assert row["commit"].item() == "abc123def4567890" and row["backbone"].item() == "ViT-B-16-plus-240"
    assert row["options"].item() == {"k": 2} and row["eval_size"].item() == 400
    assert df["image_auroc"].isna().sum() == 6  # undefined -> NaN
    with pytest.raises(Exception, match="no records"):
        fsadbench.load_results(results / "nope")


def test_import_fsadbench_is_light():
    import subprocess

    code = "import sys, fsadbench; assert 'torch' not in sys.modules and 'pandas' not in sys.modules; " \
           "fsadbench.load_results; assert 'pandas' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
