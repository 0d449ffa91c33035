"""Tables show what the invocation asked for: the run's table, ``Results.table``, the gate and ``compare``.

Pipeline checks all write into ``results/smoke``; a later run's table must neither show the rows of
earlier runs nor footnote seeds or categories only they planned, ``compare --strict`` must not call a
figure incomplete because another method's run planned more seeds, and the gate compares the preset's
cells only.
"""

from __future__ import annotations

from fsadbench.regression.compare import compare
from fsadbench.regression.gate import preset_cells
from fsadbench.regression.sources import side_from_records
from fsadbench.reports.tables import main_table
from fsadbench.results.coverage import ResultSet, Scope
from fsadbench.results.records import CellKey, Record
from fsadbench.run.api import invocation_scope
from fsadbench.run.config import RunConfig, apply_mapping, build_config


def rec(method, cat, seed, value, shots=1, seeds=(0, 1), cats=("c1", "c2"), dataset="synthetic"):
    return Record(key=CellKey(method, dataset, cat, shots, seed).__dict__, status="ok", config_hash="h",
                  method={"name": method, "variants": ["w/ VG"], "describe": {"fidelity_notes": []}},
                  metrics={"w/ VG": {"pixel_auroc": value}}, metric_version="m/1", backbone={"model": "tiny"},
                  protocol={"version": "p/1"}, dataset={"fingerprint": "fp"},
                  plan={"categories": list(cats), "seeds": list(seeds), "shots": [shots]},
                  provenance={"git": {"commit": "b" * 40, "dirty": False}})


def folder():
    """The smoke preset's memory (2 categories x 2 seeds), then a pipeline check of another method on
    3 categories x 3 seeds, into the same folder."""
    smoke = [rec("memory", c, s, 0.8 + 0.01 * s) for c in ("c1", "c2") for s in (0, 1)]
    later = [rec("padim", c, s, 0.7, seeds=(0, 1, 2), cats=("c1", "c2", "c3")) for c in ("c1", "c2", "c3")
             for s in (0, 1, 2)]
    return smoke, later


def rows(table):
    return [h for h, _ in table.rows]


def test_a_scope_keeps_only_its_cells_planned_as_it_planned_them():
    smoke, later = folder()
    everything = ResultSet(smoke + later)
    # the folder view: memory lacks seed 2 and c3, which only padim's run planned
    whole = main_table(everything.select(["memory"]), "pixel_auroc")
    assert whole.problems and "seed 2" in " ".join(whole.notes)
    scope = Scope(("memory", "padim"), (("synthetic", ("c1", "c2")),), (1,), (0,))
    t = main_table(everything.select(scope=scope), "pixel_auroc")
    assert not t.problems and not t.marks  # seed 1 of the smoke run, seed 2 and c3 of padim's: not asked
    assert len(rows(t)) == 2 and not any("seed 1" in n or "seed 2" in n or "c3" in n for n in t.notes)
    t = main_table(everything.select(scope=Scope(("memory",), (("synthetic", None),), (1,), (0,))), "pixel_auroc")
    assert not t.problems and len(rows(t)) == 1  # every category memory's own records planned
    # a category the invocation asked for and did not get is still a gap
    t = main_table(everything.select(scope=Scope(("memory",), (("synthetic", ("c1", "c3")),), (1,), (0,))),
                   "pixel_auroc")
    assert t.problems and "c3" in " ".join(t.notes)
    only_memory = everything.select(scope=Scope(("memory",), (("synthetic", ("c1",)),), (1,), (0, 1)))
    assert sorted((r.key["category"], r.key["seed"]) for r in only_memory.records) == [("c1", 0), ("c1", 1)]
    assert only_memory.categories("synthetic") == ["c1"] and only_memory.seeds("synthetic") == [0, 1]


def test_scope_holds_method_dataset_category_shots_and_seed():
    s = Scope(("memory",), (("synthetic", ("c1",)), ("mvtec", None)), (1, 2), (0,))
    key = CellKey("memory", "synthetic", "c1", 1, 0).__dict__
    assert s.holds(key)
    for field, other in (("method", "apt"), ("dataset", "visa"), ("category", "c2"), ("shots", 4), ("seed", 1)):
        assert not s.holds({**key, field: other}), field
    assert s.holds({**key, "dataset": "mvtec", "category": "anything"})


def test_the_invocation_scope_is_the_configs_cells():
    cfg = apply_mapping(RunConfig(), {"methods": ["memory", {"name": "apt", "options": {"k": 3}}],
                                      "datasets": [{"name": "synthetic", "categories": ["disc"]}, "mvtec"],
                                      "shots": [1, 2], "seeds": [0]}, "test")
    assert invocation_scope(cfg) == Scope(("memory", "apt[k=3]"), (("synthetic", ("disc",)), ("mvtec", None)),
                                          (1, 2), (0,))


def test_compare_plans_each_methods_figure_by_its_own_sweeps():
    smoke, later = folder()
    cmp = compare(side_from_records(smoke), side_from_records(smoke + later), strict=True)
    assert cmp.ok, cmp.reasons()  # before: "1 table figure(s) compare fewer categories ...: head lacks cells"
    assert bool(cmp.tables["complete"].all())
    # a real gap of the method itself still counts
    cmp = compare(side_from_records(smoke), side_from_records(smoke[:-1] + later), strict=True)
    assert not cmp.ok


def test_the_gate_compares_the_presets_cells_only():
    cfg = build_config("smoke")
    ds = cfg.datasets[0]
    asked = [rec(m.id, c, s, 0.8, shots=k, dataset=ds.name) for m in cfg.methods for c in ds.categories
             for k in cfg.shots for s in cfg.seeds]
    other = [rec("padim", "stripes", 0, 0.5, dataset=ds.name), rec("memory", "stripes", 2, 0.5, dataset=ds.name),
             rec("memory", "grain", 0, 0.5, dataset=ds.name), rec("memory", "stripes", 0, 0.5, shots=4,
                                                                  dataset=ds.name)]
    head = preset_cells(side_from_records(asked + other), "smoke")
    assert {r.cell for r in head.records} == {r.cell for r in asked} and len(head.records) == len(asked)
