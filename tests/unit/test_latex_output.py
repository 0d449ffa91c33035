"""Every LaTeX output is paper-ready: it compiles with pdflatex, fits the text width, shows its warnings."""

import re
import shutil
import subprocess

import pytest

from fsadbench.cli import main
from fsadbench.reports.export import report_text
from fsadbench.reports.paper.assemble import SHOW
from fsadbench.reports.paper.catalog import build, layout_names
from fsadbench.reports.render import latex_escape, to_latex
from fsadbench.reports.tables import RANDOM_BANNER, Table, TextCell, category_table, main_table
from fsadbench.results.coverage import Figure, ResultSet
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


def _compiles(tmp_path, tex: str) -> subprocess.CompletedProcess:
    (tmp_path / "doc.tex").write_text(PREAMBLE + tex + "\\end{document}\n")
    return subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def _bracket_table() -> Table:
    """Rows opening with ``[`` after a ``\\midrule`` and after a ``\\\\``, unicode symbols in every kind of cell."""
    return Table(title="T → I, α ≠ β", row_headers=["[a] setting"], groups=[("MVTec ↔ VisA", 2)],
                 columns=["[1]", "é"],
                 rows=[(["[text] → visual"], [Figure(90.0, 1.0, {0: 89.0, 1: 91.0}), TextCell("x", "[x]")]),
                       (["[visual] ← text"], [Figure(80.0, float("nan"), {0: 80.0}), None]),
                       ([TextCell("[p]", "[p] $\\to$")], [None, None])],
                 notes=["[a] trained on VisA ⇒ MVTec", "plain note · with µ"])


def test_row_opening_with_a_bracket_is_guarded_from_the_line_before():
    tex = to_latex(_bracket_table())
    lines = tex.splitlines()
    rows = [line for line in lines if line.endswith("\\\\")]
    assert rows[1].startswith("{}[a] setting & [1] & ")  # the header, after \cmidrule
    assert [r[:3] for r in rows[2:]] == ["{}[", "{}[", "{}["]  # after \midrule, after \\, after \\
    assert all(not r.startswith("[") for r in rows)
    t = _bracket_table()
    t.rows[0] = ([" [padded]"], [None, None])  # TeX skips the space before looking for [
    assert "\n{} [padded] & " in to_latex(t)
    assert "{}" + "trained" not in tex and not any(r.startswith("{}") for r in to_latex(main_table(
        ResultSet(_records()))).splitlines())  # only rows that open with [ get the guard


@pytest.mark.parametrize("text, tex", [
    ("T → I", "T $\\rightarrow$ I"), ("T ↔ I", "T $\\leftrightarrow$ I"), ("a ≠ b", "a $\\neq$ b"),
    ("α=0.5, Ω", "$\\alpha$=0.5, $\\Omega$"), ("Α", "A"), ("λΣο", "$\\lambda$$\\Sigma$o"), ("ς", "$\\varsigma$"),
    ("café", "caf\\'{e}"), ("ǘ", "\\'{\\\"{u}}"),
    ("ą", "a"), ("½", "1/2"), ("ﬁ", "fi"), ("中", "?"), ("5 µm", "5 $\\mu$m"), ("ß", "\\ss{}"),
    ("a_b & 100%", "a\\_b \\& 100\\%")])
def test_latex_escape_maps_unicode_to_commands_pdflatex_always_knows(text, tex):
    assert latex_escape(text) == tex
    assert latex_escape(text).isascii()


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_bracket_rows_and_unicode_symbols_compile(tmp_path):
    """Before the guard, ``\\\\`` read ``[text] ...`` as a length (``Missing number``); before the mapping,
    ``↔`` stopped pdflatex (``Unicode character not set up for use with LaTeX``)."""
    odd = "".join(chr(c) for c in [*range(0xA1, 0x180), *range(0x391, 0x3CA), *range(0x2190, 0x21A0)]
                  if chr(c).isprintable())  # every Latin-1/Extended-A letter, Greek, the arrows block
    t = _bracket_table()
    t.rows.append(([odd], [None, None]))
    r = _compiles(tmp_path, to_latex(t))
    assert r.returncode == 0, r.stdout[-2000:]
