"""The grid layouts' whole Table model (rows, cells, marks, bold, notes) from fixed records, pinned.

The figures and diffs of these cases are checked by hand in test_paper_grid.py; this pins everything else
a reader sees (headers, trait columns, groups and rules, footnotes, notes, bold) so a change to any of it
is deliberate. Regenerate only for an intended change: ``python -m tests.unit.test_paper_grid_golden --write``.
"""

import json
import sys
from pathlib import Path

import pytest

from fsadbench.core.builtin import BUILTIN_METHODS
from fsadbench.reports.paper.catalog import build
from fsadbench.reports.paper.grid import build_grid, grid_layout
from tests.unit.test_paper_apt_golden import dump
from tests.unit.test_paper_grid import MVTEC, anople_records

GOLDEN = Path(__file__).parent / "golden" / "grid_layouts.json"
WRN = {"model": "wide_resnet50_2", "pretrained": "IMAGENET1K_V1", "family": "torchvision", "random_weights": False}
MAPLE = BUILTIN_METHODS["maple-draem"][1]

INLINE = {"source": "Someone 2031", "table": "Table 7", "title": "inline", "datasets": ["mvtec", "visa"],
          "protocol": {"model": "ViT-B-16-plus-240", "seeds": 3, "eval_size": 400}, "shots": 2, "variant": "w/ VG",
          "metric": "image_auroc", "headers": ["part", "setting"], "traits": ["multi_class", "few_shot_transfer", "odd"],
          "extra_methods": True,
          "columns": [{"label": "I", "shots": 1}, {"metric": "pixel_auroc", "label": "P", "variant": "w/o VG", "shots": 1},
                      {"metric": "pixel_auroc"}],
          "rows": [{"group": "x", "label": ["(x)", {"md": "T → I", "tex": "T $\\to$ I", "text": "T -> I"}],
                    "method": "anople", "options": {"interaction": "text_to_visual"},
                    "values": {"mvtec": [[80.0, 1.0], 81.0, None]}},
                   {"group": "x", "label": ["(x)", "default"], "method": "anople", "values": {"mvtec": [90.0, 91.0, 92.0]}},
                   {"group": "y", "label": ["(y)", "theirs"], "method": "theirs", "multi_class": True,
                    "values": {"visa": [70.0, None, 71.0]}},
                   {"group": "y", "label": ["(y)", "spade"], "method": "spade", "protocol": {"model": "wide_resnet50_2"},
                    "values": {"mvtec": [80.0, 90.0, 91.0]}}]}


BARE = {"source": "Bare 2032", "table": "Table 1", "datasets": ["mvtec"],  # every optional key left out
        "columns": [{"label": None}, {"metric": "my_metric"}],
        "rows": [{"label": "AnoPLe", "method": "anople", "values": {"mvtec": [91.0, 50.0]}},
                 {"label": ["x", {"md": "y", "tex": "y"}], "method": "anople", "options": {"epochs": 1}},
                 {"label": "Theirs", "values": {"mvtec": [80.0, None]}}]}


def table1_recs():
    return (anople_records(seeds=range(5)) + anople_records("anople[epochs=1]", {"epochs": 1}, 0.8, 0.8)
            + anople_records("memory", {}, 0.7, 0.75, name="memory", seeds=range(2))
            + anople_records("spade", {}, 0.8, 0.9, name="spade", seeds=range(5), backbone=WRN))


def table2_recs():
    return (anople_records("maple-draem", dict(MAPLE), 0.86, 0.31, name="maple-draem")
            + anople_records("maple-draem[interaction=bidirectional]", {**MAPLE, "interaction": "bidirectional"},
                             name="maple-draem")
            + anople_records(seeds=range(2)) + anople_records("anople-oc", {"multi_class": False}, name="anople-oc",
                                                              categories=MVTEC[:3]))


def table3_recs():
    return (anople_records() + anople_records("anople[interaction=text]", {"interaction": "text"}, 0.8, 0.85)
            + anople_records("anople[crop_grid=1,view_signal=false]", {"crop_grid": 1, "view_signal": False}, 0.84,
                             0.88)
            + anople_records("anople[align=mean,epochs=1]", {"align": "mean", "epochs": 1}, 0.9, 0.9))


def inline_recs():
    """w/ VG figures 1 pp above w/o VG; two one-class AnoPLe ids that fill no row."""
    recs = table3_recs()[:45] + anople_records("anople[interaction=text_to_visual]",
                                               {"interaction": "text_to_visual"}, 0.79, 0.8) \
        + anople_records("spade", {}, 0.8, 0.9, name="spade", backbone=WRN) \
        + anople_records("memory", {}, 0.7, 0.75, name="memory") \
        + anople_records("anople[multi_class=false]", {"multi_class": False}, seeds=[0]) \
        + anople_records("anople[epochs=1,multi_class=false]", {"multi_class": False, "epochs": 1}, seeds=[0])
    for r in recs:
        r.metrics["w/ VG"] = {k: v + 0.01 for k, v in r.metrics["w/ VG"].items()}
    return recs


CASES = {"anople_table1": [("t1", table1_recs, {"datasets": ["mvtec"]}), ("all", table1_recs, {}),
                           ("aupro", table1_recs, {"metric": "aupro", "datasets": ["mvtec"]})],
         "anople_table2": [("t2", table2_recs, {"datasets": ["mvtec"]}), ("none", list, {})],
         "anople_table3": [("t3", table3_recs, {"datasets": ["mvtec"]})],
         "anople_table5": [("px", table3_recs, {"metric": "pixel_auroc", "datasets": ["mvtec"]})],
         "inline": [("in", inline_recs, {}), ("inpx", inline_recs, {"metric": "pixel_auroc"})],
         "bare": [("b", table3_recs, {}), ("bm", table3_recs, {"metric": "other_metric"})]}


def all_cases():
    return {f"{layout}/{name}/{show}": (layout, recs, show, kw) for layout, cs in CASES.items()
            for name, recs, kw in cs for show in ("none", "under", "beside")}


def current(key):
    layout, recs, show, kw = all_cases()[key]
    if layout in ("inline", "bare"):
        return dump(build_grid(INLINE if layout == "inline" else BARE, recs(), show, **kw))
    return dump(build(layout, recs(), show, **kw))


@pytest.mark.parametrize("key", sorted(all_cases()))
def test_grid_layout_output_unchanged(key):
    golden = json.loads(GOLDEN.read_text())
    assert current(key) == golden[key]


def test_grid_layout_objects():
    """A layout built at call time (plugins build theirs when imported): its data, name and arguments."""
    lay = grid_layout("anople_table2")
    assert (lay.name, lay.table, lay.description) == ("anople_table2", "Table 2", table_data_title("anople_table2"))
    assert lay.paper.startswith("Lee, Jang, Yoon 2024")
    assert dump(lay.build(table2_recs())) == dump(build("anople_table2", table2_recs(), "none"))
    assert dump(lay.build(table2_recs(), datasets=["visa"], metric="pixel_auroc")) == dump(
        build("anople_table2", table2_recs(), "none", datasets=["visa"], metric="pixel_auroc"))
    with pytest.raises(Exception, match=r"^table layout 'anople_table2': unknown argument\(s\) \['shots', 'x'\]; "
                                        r"it takes metric, datasets$"):
        lay.build([], "none", x=1, shots=2)
    own = grid_layout("mine", INLINE)
    assert (own.name, own.paper, own.table, own.description) == ("mine", "Someone 2031", "Table 7", "inline")
    assert grid_layout("mine", INLINE, "said").description == "said"
    assert grid_layout("bare", BARE).description == ""
    assert dump(own.build(inline_recs(), "under")) == dump(build_grid(INLINE, inline_recs(), "under"))
    assert own.options({"columns": ["visa"], "x": 1}, {}) == {"datasets": ["visa"]}


def table_data_title(name):
    from fsadbench.reports.paper.published import table_data

    return table_data(name)["title"]


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(json.dumps({k: current(k) for k in sorted(all_cases())}, sort_keys=True, indent=0) + "\n")
