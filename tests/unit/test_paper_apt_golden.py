"""The APT layouts on the layout plugin point give exactly the Table model they gave before it.

tests/unit/golden/apt_layouts.json was written by the APT-only layout code (before the catalog
and the grid layouts existed) from the records below; the model (rows, cells, marks, bold,
notes) is compared, not the rendered text, so renderer changes do not touch it. It was rewritten
once by that same APT-only code after Table 2 gained its measured AnomalyCLIP row (issue 25), so
it still pins the catalog move against the code before it. Regenerate only
for an intended change: ``python -m tests.unit.test_paper_apt_golden``.
"""

import json
import sys
from pathlib import Path

import pytest

from fsadbench.reports.paper.catalog import build
from fsadbench.reports.tables import TextCell
from fsadbench.results.coverage import Figure
from tests.unit.test_paper_tables import comparable_records, table1_records, table2_records, table3_records

GOLDEN = Path(__file__).parent / "golden" / "apt_layouts.json"


def _cell(c):
    if c is None or isinstance(c, str):
        return c
    if isinstance(c, TextCell):
        return ["text", c.md, c.tex]
    if isinstance(c, Figure):
        return ["fig", round(c.mean, 9), None if c.std is None else round(c.std, 9), c.complete, c.n_seeds]
    return repr(c)


def dump(t):
    return {"title": t.title, "row_headers": t.row_headers, "groups": [list(g) for g in t.groups],
            "columns": t.columns, "rows": [[[_cell(h) for h in r[0]], [_cell(c) for c in r[1]]] for r in t.rows],
            "notes": t.notes, "breaks": t.breaks, "bold": sorted(map(list, t.bold)),
            "close": sorted(map(list, t.close)), "marks": sorted([list(k) + [v] for k, v in t.marks.items()]),
            "problems": t.problems}


CASES = {"apt_table1": [("t1", table1_records, {}), ("cmp", comparable_records, {"datasets": ["mvtec"]}),
                        ("none", list, {})],
         "apt_table2": [("t2", table2_records, {}), ("cmp", comparable_records, {"datasets": ["mvtec"]}),
                        ("none", list, {})],
         "apt_table3": [("t3", table3_records, {}), ("t3lab", table3_records, {"labels": {(True,) * 5: "APT"}}),
                        ("none", list, {})]}


def all_cases():
    return {f"{layout}/{name}/{show}": (layout, recs, show, kw) for layout, cs in CASES.items()
            for name, recs, kw in cs for show in ("none", "under", "beside")}


def current(key):
    layout, recs, show, kw = all_cases()[key]
    return dump(build(layout, recs(), show, **kw))


@pytest.mark.parametrize("key", sorted(all_cases()))
def test_apt_layout_output_unchanged(key):
    golden = json.loads(GOLDEN.read_text())
    assert current(key) == golden[key]


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.write_text(json.dumps({k: current(k) for k in sorted(all_cases())}, sort_keys=True, indent=0) + "\n")
