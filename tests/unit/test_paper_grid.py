"""Grid paper layouts from hand-made records: row matching by switches, diffs, traits, errors.

EQUIVALENT_MUTANTS lists the surviving mutants of reports/paper/grid.py that cannot change behaviour.
"""

import pytest

from fsadbench.core.builtin import BUILTIN_METHODS
from fsadbench.core.errors import ConfigError
from fsadbench.reports.paper.catalog import build, get_layout
from fsadbench.reports.paper.grid import build_grid
from fsadbench.reports.tables import TextCell
from tests.unit.test_paper_tables import MVTEC, PAPER_BB, _note_of, _rec

OPT = 'Measured.options holds every measured id (ids come from m.ids_of / m.names): the default is never read'
SW = 'switches_of() has an entry for every row naming a method: the default is never read'
PROTO = 'the table protocol handed to assemble() is unread: every measured grid row carries its row_protocol'
SRC = 'source_note() reads its first argument only when no data is given; build_grid always gives data'
OTHER = "the extra rows' group only has to differ from the layout's own groups (rule and bold block)"
EQUIVALENT_MUTANTS = {
    "grid.x_matching_ids__mutmut_32": OPT,
    "grid.x_matching_ids__mutmut_34": OPT,
    "grid.x_build_grid__mutmut_353": OPT,
    "grid.x_build_grid__mutmut_354": OPT,
    "grid.x_build_grid__mutmut_356": OPT,
    "grid.x_build_grid__mutmut_247": OPT,
    "grid.x_build_grid__mutmut_248": OPT,
    "grid.x_build_grid__mutmut_250": OPT,
    "grid.x_build_grid__mutmut_251": OPT,
    "grid.x_build_grid__mutmut_252": OPT,
    "grid.x_build_grid__mutmut_253": OPT,
    "grid.x_build_grid__mutmut_254": OPT,
    "grid.x_build_grid__mutmut_223": SW,
    "grid.x_build_grid__mutmut_225": SW,
    "grid.x_build_grid__mutmut_443": PROTO,
    "grid.x_build_grid__mutmut_471": PROTO,
    "grid.x_build_grid__mutmut_472": PROTO,
    "grid.x_build_grid__mutmut_473": PROTO,
    "grid.x_build_grid__mutmut_474": PROTO,
    "grid.x_build_grid__mutmut_398": SRC,
    "grid.x_build_grid__mutmut_402": SRC,
    "grid.x_build_grid__mutmut_357": OTHER,
    "grid.x_build_grid__mutmut_358": OTHER,
    "grid.x_build_grid__mutmut_333": OTHER,
}

DEFAULTS = {"interaction": "bidirectional", "align": "weighted", "crop_grid": 2, "view_signal": True,
            "pseudo_anomalies": "both", "state_word": "abnormal", "epochs": 60}


def anople_records(mid="anople", opts=None, image=0.90, pixel=0.91, categories=MVTEC, seeds=range(3),
                   name="anople", backbone=PAPER_BB):
    """Category i adds 0.001 * (i - 7) to both metrics, seed s adds 0.002 * s."""
    return [_rec({"name": name, "id": mid}, "mvtec", c, 1, s,
                 {v: {"image_auroc": image + 0.001 * (i - 7) + 0.002 * s,
                      "pixel_auroc": pixel + 0.001 * (i - 7) + 0.002 * s} for v in ("w/o VG", "w/ VG")},
                 {**DEFAULTS, **(opts or {})}, backbone=backbone)
            for i, c in enumerate(categories) for s in seeds]


def _rows(t):
    return {tuple(h if isinstance(h, str) else h.md for h in r[0]): r[1] for r in t.rows}


def test_table3_rows_take_the_records_of_their_switch_and_diff_when_comparable():
    recs = anople_records() + anople_records("anople[interaction=text]", {"interaction": "text"}, 0.80, 0.85)
    t = build("anople_table3", recs, "under", datasets=["mvtec"])
    rows = _rows(t)
    # default: 90.2 / 91.2 (seeds add 0, 0.2, 0.4 pp); paper 91.1 / 90.6
    d = rows[("(a)", "T ↔ I (default)", "measured")]
    assert (d[0].mean, d[1].mean) == pytest.approx((90.2, 91.2)) and d[0].complete
    assert [c.md for c in rows[("(a)", "T ↔ I (default)", "diff")]] == ["-0.90", "+0.60"]
    txt = rows[("(a)", "Text", "measured")]
    assert (txt[0].mean, txt[1].mean) == pytest.approx((80.2, 85.2))
    assert [c.md for c in rows[("(a)", "Text", "diff")]] == ["-4.80", "-3.20"]  # paper 85.0 / 88.4
    assert rows[("(a)", "Image", "measured")][0].md == "missing"  # no record with interaction=visual
    # (b) and (c)'s default rows are the same records
    assert rows[("(c)", "align with weighted sum (default)", "measured")][0].mean == pytest.approx(90.2)
    assert any("(a) Text = anople[interaction=text]" in n for n in t.notes)
    # bold within each part: Text is not the best of (a) in image AUROC, the default is
    i = list(rows).index(("(a)", "T ↔ I (default)", "measured"))
    assert (i, 0) in t.bold and (list(rows).index(("(a)", "Text", "measured")), 0) not in t.bold


def test_incomparable_measurements_get_no_diff_and_a_note():
    recs = anople_records(seeds=range(2)) + anople_records(categories=MVTEC[:3], mid="anople-oc", name="anople-oc",
                                                           opts={"multi_class": False})
    t = build("anople_table2", recs, "beside", datasets=["mvtec"])
    rows = _rows(t)
    assert rows[("AnoPLe",)][2].md == "n/c" and rows[("AnoPLe*",)][2].md == "n/c"
    assert any("2 seed(s) vs the protocol's 3" in n for n in t.notes)
    assert any("no diff (not comparable): covers 3/15 categories" in n for n in t.notes)
    assert rows[("AnoPLe",)][1].md == "91.10" and rows[("MaPLe+DRAEM",)][1].md == "86.20"
    assert rows[("MaPLe+DRAEM",)][0].md == "missing"  # registered (the alias), not measured here


def test_table1_traits_published_rows_and_extra_methods():
    recs = anople_records() + anople_records("memory", {}, name="memory")
    t = build("anople_table1", recs, "none", datasets=["mvtec"])
    rows = {r[0][0]: r for r in t.rows}
    assert "AnomalyGPT" not in rows  # published only (not registered): not shown without published figures
    assert rows["RegAD"][1][0].md == "missing"  # registered now: its row shows, unmeasured in these records
    assert rows["SPADE"][1][0].md == "missing"  # registered here, so its row shows, unmeasured in these records
    assert [c.md for c in rows["AnoPLe"][0][1:]] == ["✓", "×"]
    assert rows["Memory bank"][0][1].md == "×"  # another measured method gets its own row, traits from its class
    u = build("anople_table1", recs, "under", datasets=["mvtec"])
    regad = {r[0][-1]: r[1] for r in u.rows if r[0][0] == "RegAD"}  # registered: paper, measured, diff rows
    assert regad["paper"][1].md == "85.70" and regad["measured"][1].md == "missing" and len(regad) == 3
    gpt = [r for r in u.rows if r[0][0] == "AnomalyGPT"]  # not registered: the published row only
    assert len(gpt) == 1 and gpt[0][0][-1] == "paper"
    spade = {r[0][-1]: r[1] for r in u.rows if r[0][0] == "SPADE"}
    assert spade["paper"][0].md == "81.00 ± 2.00" and spade["measured"][0].md == "missing"
    anople = {r[0][-1]: r[1] for r in u.rows if r[0][0] == "AnoPLe"}
    assert anople["measured"][0].mean == pytest.approx(90.2) and anople["measured"][3].mean == pytest.approx(91.2)
    assert anople["measured"][1].md == "missing"  # 2-shot column: no record
    assert anople["paper"][0].md == "94.10 ± 2.10"


def test_metric_override_keeps_published_figures_of_that_metric_only():
    t = build("anople_table5", anople_records(), "under", metric="pixel_auroc", datasets=["mvtec"])
    paper = _rows(t)[("pixel + latent (default)", "paper")]
    assert paper[0].md == "–" and paper[1].md == "90.60"
    assert _rows(t)[("pixel + latent (default)", "measured")][0].mean == pytest.approx(91.2)
    assert t.columns == ["pixel AUROC", "P-AUROC"]  # the image column is renamed after the metric it shows
    t1 = build("anople_table1", anople_records(), "none", metric="aupro", datasets=["mvtec"])
    assert t1.columns[:2] == ["AUPRO 1-shot", "AUPRO 2-shot"]


def test_errors_name_the_layout_and_the_fix(monkeypatch):
    with pytest.raises(ConfigError, match="unknown argument"):
        build("anople_table2", [], "none", shots=2)
    with pytest.raises(ConfigError, match="registered layouts: .*anople_table1"):
        get_layout("anople_table9")
    from fsadbench.core import registry

    reg = registry.Registry("layout", "fsadbench.layouts")
    reg.add("not_a_layout", "fsadbench.reports.paper.grid:build_grid")
    monkeypatch.setattr(registry, "LAYOUTS", reg)
    with pytest.raises(ConfigError, match="is a function, not a fsadbench.reports.paper.catalog.Layout"):
        get_layout("not_a_layout")


def test_grid_from_inline_data_with_string_labels_and_unregistered_methods():
    data = {"source": "Someone 2031", "table": "Table 7", "datasets": ["mvtec"],
            "columns": [{"metric": "image_auroc", "label": "I"}],
            "rows": [{"label": "Theirs", "method": "no-such-method", "values": {"mvtec": [[50.0, 1.0]]}},
                     {"label": "AnoPLe", "method": "anople", "values": {"mvtec": [None]}}]}
    t = build_grid(data, anople_records(), "beside")
    rows = _rows(t)
    assert rows[("Theirs",)][0] is None and rows[("Theirs",)][1].md == "50.00 ± 1.00"
    assert rows[("AnoPLe",)][0].mean == pytest.approx(90.2) and rows[("AnoPLe",)][2] == TextCell("–", "--")
    assert t.title.endswith("Someone 2031, Table 7 layout") and t.columns == ["I", "I paper", "I diff"]


def test_published_only_baselines_become_measured_rows_once_registered(monkeypatch):
    """SPADE / PaDiM / PatchCore rows fill from records because methods of those names exist (issue 24);
    without the registration the same records leave SPADE a published-only row."""
    from fsadbench.core import registry

    recs = anople_records("spade", {}, 0.70, 0.80, name="spade")
    after = build("anople_table1", recs, "under", datasets=["mvtec"])
    reg = registry.Registry("method", "fsadbench.methods")
    for name in registry.METHODS.names():
        if name != "spade":
            reg.add(name, registry.METHODS.entry(name).target, registry.METHODS.entry(name).options)
    with monkeypatch.context() as m:
        m.setattr(registry, "METHODS", reg)
        before = build("anople_table1", recs, "under", datasets=["mvtec"])
    assert [r[0][-1] for r in before.rows if r[0][0] == "SPADE"] == ["paper"]  # published only
    after = build("anople_table1", recs, "under", datasets=["mvtec"])
    spade = {r[0][-1]: r for r in after.rows if r[0][0] == "SPADE"}
    assert set(spade) == {"measured", "paper", "diff"}
    assert spade["measured"][1][0].mean == pytest.approx(70.2)
    assert [c.md for c in spade["measured"][0][1:3]] == ["×", "×"]  # traits from the registered class
    assert not any(r[0][0] == "spade" for r in after.rows)  # not repeated as an extra method


def test_a_row_protocol_decides_its_diff():
    """SPADE's published figure is diffed against records on its own backbone (WRN-50 / ImageNet), not the
    table's CLIP one; on the CLIP backbone the same records are not comparable."""
    wrn = {"model": "wide_resnet50_2", "pretrained": "IMAGENET1K_V1", "family": "torchvision"}
    own = anople_records("spade", {}, 0.80, 0.90, name="spade", seeds=range(5), backbone=wrn)
    row = {r[0][0] + "/" + r[0][-1]: r[1] for r in build("anople_table1", own, "under", datasets=["mvtec"]).rows}
    # measured 80.40 (seeds add 0, 0.2, ..., 0.8 pp), paper 81.0
    assert row["SPADE/measured"][0].mean == pytest.approx(80.4) and row["SPADE/diff"][0].md == "-0.60"
    clip = anople_records("spade", {}, 0.80, 0.90, name="spade", seeds=range(5))
    t = build("anople_table1", clip, "under", datasets=["mvtec"])
    row = {r[0][0] + "/" + r[0][-1]: r[1] for r in t.rows}
    assert row["SPADE/diff"][0].md == "n/c"
    assert any("vs the paper's wide_resnet50_2/IMAGENET1K_V1" in n for n in t.notes)


MAPLE = BUILTIN_METHODS["maple-draem"][1]


def test_an_alias_with_changed_options_does_not_fill_its_row():
    """maple-draem with interaction=bidirectional is AnoPLe's coupling, not MaPLe+DRAEM: it fills no row and a
    note names it; the alias as registered fills the row."""
    changed = anople_records("maple-draem[interaction=bidirectional]", {**MAPLE, "interaction": "bidirectional"},
                             0.80, 0.40, name="maple-draem")
    t = build("anople_table2", changed, "under", datasets=["mvtec"])
    rows = [r for r in t.rows if r[0][0] == "MaPLe+DRAEM"]
    assert [r[0][-1] for r in rows] == ["measured", "paper", "diff"]
    assert [c.md for c in rows[0][1]] == ["missing", "missing"]
    assert any(n.startswith("not shown: maple-draem[interaction=bidirectional] (options that match no row")
               for n in t.notes)
    plain = anople_records("maple-draem", dict(MAPLE), 0.86, 0.31, name="maple-draem")
    t = build("anople_table2", changed + plain, "under", datasets=["mvtec"])
    rows = _rows(t)
    assert rows[("MaPLe+DRAEM", "measured")][0].mean == pytest.approx(86.2)
    assert [c.md for c in rows[("MaPLe+DRAEM", "diff")]] == ["+0.00", "+1.20"]  # paper 86.2 / 30.0
    assert any("MaPLe+DRAEM = maple-draem;" in n or n.endswith("MaPLe+DRAEM = maple-draem.") for n in t.notes)


def test_the_id_closest_to_the_defaults_fills_a_row_and_a_note_names_the_others():
    """Both ids match the default row; the one that ran the defaults fills it, though its id sorts later and
    its records come last."""
    short = anople_records("anople[epochs=1]", {"epochs": 1}, 0.70, 0.70)
    full = anople_records("anople[lr_prompt=0.001]", {"lr_prompt": 0.001})  # the default, set explicitly
    t = build("anople_table2", short + full, "under", datasets=["mvtec"])
    rows = _rows(t)
    assert rows[("AnoPLe", "measured")][0].mean == pytest.approx(90.2)
    assert [c.md for c in rows[("AnoPLe", "diff")]] == ["-0.90", "+0.60"]
    assert "row AnoPLe: several method ids (anople[lr_prompt=0.001], anople[epochs=1]); showing " \
           "anople[lr_prompt=0.001]" in t.notes


def test_a_short_sweep_fills_its_row_but_gets_no_diff():
    """A CI sweep with epochs=1 fills the rows of its switches; every diff is n/c naming the option."""
    recs = anople_records("anople[epochs=1]", {"epochs": 1}) + anople_records(
        "anople[epochs=1,interaction=text]", {"epochs": 1, "interaction": "text"}, 0.80, 0.85)
    t = build("anople_table3", recs, "under", datasets=["mvtec"])
    rows = _rows(t)
    assert rows[("(a)", "Text", "measured")][0].mean == pytest.approx(80.2)
    i = list(rows).index(("(a)", "Text", "diff"))
    assert rows[("(a)", "Text", "diff")][0].md == "n/c"
    assert _note_of(t, i, 0).endswith("options off the row's protocol: epochs=1 (protocol 60)")
    j = list(rows).index(("(a)", "T ↔ I (default)", "diff"))
    assert [c.md for c in t.rows[j][1]] == ["n/c", "n/c"] and "epochs=1" in _note_of(t, j, 1)
    # the same records with the default epochs: diffs against the row's own options
    for r in recs:
        r.method["options"]["epochs"] = 60
    rows = _rows(build("anople_table3", recs, "under", datasets=["mvtec"]))
    assert [c.md for c in rows[("(a)", "Text", "diff")]] == ["-4.80", "-3.20"]


def test_a_one_class_anople_does_not_fill_the_multi_class_row():
    oc = anople_records("anople[multi_class=false]", {"multi_class": False})
    t = build("anople_table2", oc, "none", datasets=["mvtec"])
    rows = _rows(t)
    assert rows[("AnoPLe",)][0].md == "missing" and rows[("AnoPLe*",)][0].md == "missing"
    assert any(n.startswith("not shown: anople[multi_class=false]") for n in t.notes)


def test_catalog_errors_and_the_metric_key(monkeypatch, tmp_path):
    from fsadbench.core import registry
    from fsadbench.reports.paper.catalog import no_options

    assert no_options({"metric": "aupro", "columns": ["visa"]}, {}) == {"metric": "aupro", "datasets": ["visa"]}
    assert no_options({"metric": "", "datasets": []}, {}) == {}
    with pytest.raises(ConfigError, match=r"registered layouts: anople_table1, anople_table2, "):
        get_layout("anople_table9")
    reg = registry.Registry("layout", "fsadbench.layouts")
    reg.add("broken", "no_such_module_here:X")
    monkeypatch.setattr(registry, "LAYOUTS", reg)
    with pytest.raises(ConfigError, match="no_such_module_here") as exc:
        get_layout("broken")
    assert str(exc.value) != "None"
