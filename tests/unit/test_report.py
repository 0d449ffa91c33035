"""Tables from fixed records: values, layout, bold best, LaTeX structure."""

import re

import pytest

from fsadbench.results.aggregate import records_frame, summary
from fsadbench.results.records import CellKey, Record, RecordStore
from fsadbench.reports.tables import main_table, to_latex, to_markdown, category_table


def _records(random=False):
    recs = []
    # method A: two categories, two seeds; method B: one seed
    vals = {
        ("A", "c1", 0): (0.80, 0.90), ("A", "c2", 0): (0.60, 0.70),
        ("A", "c1", 1): (0.90, 0.95), ("A", "c2", 1): (0.70, 0.85),
        ("B", "c1", 0): (0.85, 0.99), ("B", "c2", 0): (0.75, 0.97),
    }
    for (m, c, s), (wo, w) in vals.items():
        recs.append(Record(key=CellKey(m, "mvtec", c, 1, s).__dict__, status="ok", config_hash="h",
                           method={"name": m, "label": m},
                           metrics={"w/o VG": {"pixel_auroc": wo}, "w/ VG": {"pixel_auroc": w}},
                           backbone={"model": "x", "random_weights": random}))
    recs.append(Record(key=CellKey("A", "mvtec", "c3", 1, 0).__dict__, status="failed", config_hash="h",
                       error="boom"))
    return recs


def test_summary_means_over_categories_then_seeds():
    df = records_frame(_records())
    s = summary(df, "pixel_auroc").set_index(["method", "variant"])
    # A w/o VG: seed0 mean(0.8,0.6)=0.7, seed1 mean(0.9,0.7)=0.8 -> 75.0 ± 5.0 (ddof 0)
    assert s.loc[("A", "w/o VG"), "mean"] == pytest.approx(75.0)
    assert s.loc[("A", "w/o VG"), "std"] == pytest.approx(5.0)
    assert s.loc[("B", "w/ VG"), "mean"] == pytest.approx(98.0)
    assert s.loc[("B", "w/ VG"), "std"] == pytest.approx(0.0)


def test_markdown_layout_and_bold():
    md = to_markdown(main_table(records_frame(_records())))
    lines = [l for l in md.splitlines() if l.startswith("|")]
    assert lines[0].replace(" ", "") == "|shots|method|mvtecw/oVG|mvtecw/VG|"
    row_a = next(l for l in lines if "| A " in l or "|A|" in l.replace(" ", ""))
    row_b = next(l for l in lines if "| B " in l or "|B|" in l.replace(" ", ""))
    assert "75.00 ± 5.00" in row_a and "**80.00 ± 0.00**" in row_b  # B best w/o VG (0.85+0.75)/2
    assert "**98.00 ± 0.00**" in row_b
    assert "PIPELINE CHECK" not in md


def test_random_weights_are_labelled():
    md = to_markdown(main_table(records_frame(_records(random=True))))
    assert md.splitlines()[2].startswith("> PIPELINE CHECK")


def test_latex_parses_as_tabular_with_right_column_count():
    tex = to_latex(main_table(records_frame(_records())))
    spec = re.search(r"\\begin\{tabular\}\{([lc]+)\}", tex).group(1)
    assert spec == "llcc"
    body = tex[tex.index("\\midrule"):tex.index("\\bottomrule")]
    rows = [r for r in body.split("\\\\") if "&" in r]
    assert rows and all(r.count("&") == len(spec) - 1 for r in rows)
    assert "\\toprule" in tex and "\\multicolumn{2}{c}{mvtec}" in tex and "\\cmidrule(lr){3-4}" in tex
    assert "\\textbf{80.00}" in tex
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1


def test_latex_compiles_if_pdflatex_present(tmp_path):
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed; the structural LaTeX test above covers the column count")
    tex = to_latex(main_table(records_frame(_records())))
    doc = "\\documentclass{article}\\usepackage{booktabs,graphicx,amssymb}\\begin{document}" + tex + "\\end{document}"
    (tmp_path / "t.tex").write_text(doc)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True)
    assert r.returncode == 0, r.stdout[-2000:]


def test_per_category_table():
    df = records_frame(_records())
    t = category_table(df, "mvtec", 1)
    md = to_markdown(t)
    assert "c1" in md and "c2" in md and "c3" not in md  # the failed cell has no row


def test_report_metric_all_renders_every_metric_and_unknown_is_refused(tmp_path):
    from fsadbench.cli.common import parse_metrics
    from fsadbench.reports.export import report_text
    from fsadbench.core.errors import BenchError

    store = RecordStore(tmp_path)
    for r in _records():
        if r.status == "ok":
            r.metrics = {v: {**m, "image_ap": 0.5, "image_f1_max": 0.6} for v, m in r.metrics.items()}
        store.write(r)
    assert parse_metrics("all")[:2] == ["pixel_auroc", "image_auroc"] and "image_f1_max" in parse_metrics("all")
    text = report_text(str(tmp_path), metric=parse_metrics("image_ap,pixel_auroc"))
    assert text.index("**image AP**") < text.index("**pixel AUROC**")
    assert "50.00 ± 0.00" in text and "85.00 ± 5.00" in text  # A w/ VG: seeds 0.80, 0.90
    with pytest.raises(BenchError, match="unknown.*choose from"):
        parse_metrics("pixel_auroc,nope")
