"""Every LaTeX output is paper-ready: it compiles with pdflatex, fits the text width, shows its warnings."""

import re
import shutil
import subprocess

import pytest

from fsadbench.cli import main
from fsadbench.reports.export import report_text
from fsadbench.reports.paper.assemble import SHOW
from fsadbench.reports.paper.catalog import build, layout_names
from fsadbench.reports.render import to_latex
from fsadbench.reports.tables import RANDOM_BANNER, category_table, main_table
from fsadbench.results.coverage import ResultSet
from fsadbench.results.records import CellKey, Record, RecordStore

PREAMBLE = "\\documentclass{article}\n\\usepackage{booktabs,graphicx,amssymb}\n\\begin{document}\n"


def _records(random=False, max_test_images=None):
    recs = []
    for name in ("winclip", "promptad", "apt"):
        for dataset in ("mvtec", "visa", "mpdd", "sdd", "cvc-colondb"):
            for shots in (1, 2, 4):
                for seed in (0, 1):
                    for cat in ("c_1", "c2"):  # an underscore to escape
                        v = 0.8 + 0.01 * seed + 0.02 * shots
                        recs.append(Record(
                            key=CellKey(name, dataset, cat, shots, seed).__dict__, status="ok", config_hash="h",
                            method={"name": name, "id": name, "label": name, "options": {}},
                            metrics={"w/o VG": {"pixel_auroc": v}, "w/ VG": {"pixel_auroc": v + 0.05}},
                            backbone={"model": "ViT-B-16-plus-240", "random_weights": random},
                            protocol={"max_test_images": max_test_images}))
    return recs


def every_latex_output(tmp_path) -> dict[str, str]:
    """name -> LaTeX text of each table the harness writes (report and paper-table, all layouts and modes)."""
    out = {}
    rs = ResultSet(_records(random=True))
    out["main"] = to_latex(main_table(rs))
    out["category"] = to_latex(category_table(rs, "mvtec", 1))
    store = RecordStore(tmp_path / "run")
    for r in _records(max_test_images=5):
        store.write(r)
    out["report"] = report_text(tmp_path / "run", "latex", ["pixel_auroc"], per_category=True)
    for layout in layout_names():  # every registered layout: APT, AnoPLe, installed plugins
        for show in SHOW:
            out[f"{layout}-{show}"] = to_latex(build(layout, _records(), show))
            out[f"{layout}-{show}-published-only"] = to_latex(build(layout, [], show))
    return out


def _strip_escaped(tex: str) -> str:
    return re.sub(r"\\[{}%]", "", tex)


def test_latex_structure_fits_width_and_shows_notes(tmp_path):
    for name, tex in every_latex_output(tmp_path).items():
        body = _strip_escaped(tex)
        assert body.count("{") == body.count("}"), name
        assert tex.count("\\begin{table}") == tex.count("\\end{table}") >= 1, name
        assert tex.count("\\begin{tabular}") == tex.count("\\resizebox{") == tex.count("\\end{tabular}}"), name
        visible = "\n".join(line for line in tex.splitlines() if not line.lstrip().startswith("%"))
        assert "\\footnotesize" in visible, name  # every table carries at least the metric note, visibly
    tex = every_latex_output(tmp_path)
    assert "PIPELINE CHECK" in tex["main"].split("\\end{tabular}")[1]  # below the table, not a comment
    assert "SUBSET: at most 5 test image" in tex["report"]
    assert "c\\_1" in tex["category"]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_every_latex_output_compiles_without_overfull_boxes(tmp_path):
    outputs = every_latex_output(tmp_path)
    doc = PREAMBLE + "\n\\clearpage\n".join(outputs.values()) + "\n\\end{document}\n"
    (tmp_path / "tables.tex").write_text(doc)
    r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert r.returncode == 0, log[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in log  # the published-beside tables were up to 1,576 pt too wide


def test_paper_table_output_without_records_holds_only_the_table(tmp_path, capsys):
    out = tmp_path / "t.tex"
    assert main(["paper-table", "--table", "apt_table1", "--results-dir", str(tmp_path / "empty"),
                 "--format", "latex", "--published", "beside", "--output", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("% needs \\usepackage") and "published figures only" not in text
    assert "no records in" in capsys.readouterr().err
    if shutil.which("pdflatex"):
        (tmp_path / "doc.tex").write_text(PREAMBLE + text + "\\end{document}\n")
        r = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:]


def test_random_banner_is_a_visible_note():
    tex = to_latex(main_table(ResultSet(_records(random=True))))
    note = tex[tex.index("\\footnotesize"):]
    assert RANDOM_BANNER.split(":")[0] in note
