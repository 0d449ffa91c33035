"""Method notes once per method per table (APT Table 3's six settings gave six copies before), and
``--notes full|short|none`` on every command that renders tables (run, report, paper-table) and the API."""

from __future__ import annotations

import pytest

from fsadbench.cli import main
from fsadbench.reports.notes import MethodNote, fidelity_notes, method_notes, shape_notes
from fsadbench.reports.paper.catalog import build
from fsadbench.reports.render import to_latex, to_markdown
from fsadbench.reports.tables import Table, main_table
from fsadbench.results.coverage import ResultSet
from fsadbench.results.records import CellKey, Record, RecordStore
from tests.unit.test_paper_tables import _rec

APT_NOTES = ["no public code: every choice is an option", "image score = max of the map (the paper defines none)"]
SWITCHES = ("so", "mg", "gn", "tf", "la")


def _ablation(notes_of=lambda mid: APT_NOTES, extra=()):
    """APT at six switch settings (Table 3's rows), each its own method id, each with ``notes_of(id)``."""
    recs = []
    for i in range(6):
        opts = {s: j >= i for j, s in enumerate(SWITCHES)}
        mid = "apt" if i == 0 else "apt[" + ",".join(f"{s}=false" for s, on in opts.items() if not on) + "]"
        for ds in ("mvtec", "visa"):
            r = _rec({"name": "apt", "id": mid}, ds, "c1", 1, 0, {"w/o VG": {"pixel_auroc": 0.9 - 0.01 * i}},
                     {**opts, "lam": 1.0})
            r.method["describe"] = {"fidelity_notes": list(notes_of(mid))}
            recs.append(r)
    return recs + list(extra)


def _method_lines(notes):
    return [n for n in notes if n.startswith("method notes")]


def test_apt_table3_prints_the_notes_of_its_six_settings_once():
    t = build("apt_table3", _ablation(), "under")
    assert len(t.rows) >= 6
    assert _method_lines(t.notes) == ["method notes: APT: " + "; ".join(APT_NOTES)]
    for text in (to_markdown(t), to_latex(t)):
        assert text.count("no public code") == 1


def test_a_note_only_some_settings_carry_is_labelled_by_those_settings():
    def notes_of(mid):
        return APT_NOTES + (["SO off: fixed meta prompts"] if "so=false" in mid else [])

    lines = _method_lines(build("apt_table3", _ablation(notes_of), "none").notes)
    assert lines[0] == "method notes: APT: " + "; ".join(APT_NOTES)
    off = [m for m in dict.fromkeys(r.key["method"] for r in _ablation()) if m != "apt"]
    assert len(off) == 5 and lines[1:] == ["method notes: " + ", ".join(off) + ": SO off: fixed meta prompts"]


def test_one_id_keeps_its_label_and_methods_stay_apart():
    recs = [Record(key=CellKey(m, "mvtec", c, 1, 0).__dict__, status="ok", config_hash="h",
                   method={"name": n, "describe": {"fidelity_notes": notes}})
            for m, n, c, notes in (("A", "A", "c1", ["crop 240", "no VG"]), ("A[k=2]", "A", "c1", ["crop 240"]),
                                   ("B", "B", "c1", ["crop 240"]))]
    assert fidelity_notes(recs, str.lower) == ["a: crop 240", "a: no VG", "b: crop 240"]  # 'A': the method's label
    notes = method_notes(recs)
    assert [(n, n.method, n.count) for n in notes] == [("method notes: A: crop 240", "A", 1),
                                                      ("method notes: A: no VG", "A", 1),
                                                      ("method notes: B: crop 240", "B", 1)]
    assert all(isinstance(n, MethodNote) for n in notes)


def _table(notes):
    return Table("t", [], [], [], [], notes=list(notes))


def test_shape_notes_full_short_none():
    wc = MethodNote("method notes: winclip: a; b; c", "winclip", 3)
    base = ["first", *method_notes(_ablation()), wc, "[a] footnote"]
    assert shape_notes(_table(base), "full").notes == base
    short = shape_notes(_table(base), "short").notes
    assert short[0] == "first" and short[-1] == "[a] footnote" and len(short) == 3
    assert short[1].startswith("method notes (") and short[1].endswith(": apt 2, winclip 3.")
    assert "--notes full" in short[1] and "list --method NAME" in short[1]
    assert shape_notes(_table(base), "none").notes == ["first", "[a] footnote"]
    assert shape_notes(_table(["only"]), "short").notes == ["only"]  # nothing to count: no line
    with pytest.raises(Exception, match="--notes 'long': use one of full, short, none"):
        shape_notes(_table(base), "long")


def test_main_table_notes_once_per_method():
    t = main_table(ResultSet(_ablation()))
    assert _method_lines(t.notes) == ["method notes: apt: " + "; ".join(APT_NOTES)]


@pytest.fixture
def folder(tmp_path):
    store = RecordStore(tmp_path / "run")
    for r in _ablation():
        store.write(r)
    return tmp_path / "run"


@pytest.mark.parametrize("mode,full,short", [(None, 1, 0), ("full", 1, 0), ("short", 0, 1), ("none", 0, 0)])
@pytest.mark.parametrize("command", [["report"], ["report", "--format", "latex"], ["report", "--format", "html"],
                                     ["paper-table", "--table", "apt_table3"],
                                     ["paper-table", "--table", "apt_table3", "--format", "latex"]])
def test_notes_flag_of_report_and_paper_table(folder, capsys, command, mode, full, short):
    out = folder / "out.txt"
    args = [*command, "--results-dir", str(folder), "--output", str(out)] + (["--notes", mode] if mode else [])
    assert main(args) == 0
    text = out.read_text()
    assert text.count("no public code") == full
    assert text.count("--notes full prints them") == short


def test_notes_flag_refuses_another_value(folder, capsys):
    for command in (["report"], ["paper-table", "--table", "apt_table3"], ["run", "--dry-run"]):
        with pytest.raises(SystemExit) as e:
            main([*command, "--results-dir", str(folder), "--notes", "long"])
        assert e.value.code == 2
    assert "invalid choice: 'long'" in capsys.readouterr().err


def test_run_and_results_table_take_notes(tmp_path, capsys):
    import fsadbench

    res = fsadbench.run({"methods": ["memory"], "datasets": [{"name": "synthetic", "categories": ["stripes"]}],
                         "shots": [1], "seeds": [0], "protocol": {"max_test_images": 4},
                         "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"},
                         "results_dir": str(tmp_path / "nb")})
    assert "method notes: memory: " in res.table()
    assert "method notes: memory: " not in res.table(notes="none")
    assert res.table(notes="short").count(": memory 2.") == 1
    assert main(["--methods", "memory", "--datasets", "synthetic", "--categories", "stripes", "--shots", "1",
                 "--seeds", "0", "--max-test-images", "4", "--model", "fsad-tiny-vit", "--pretrained", "none",
                 "--results-dir", str(tmp_path / "nb"), "--no-progress", "--notes", "short"]) == 0
    out = capsys.readouterr().out
    assert "method notes: memory: " not in out and "--notes full prints them" in out
