"""The smoke regression gate: a fresh smoke run must reproduce results/baselines/smoke exactly.

The smoke run (synthetic data, tiny random backbone, CPU) is deterministic, so
any change beyond 0.001 pp in any metric of any baseline cell is a real change.
If the change is intended, update the baseline and commit it:

    python run_bench.py baseline --preset smoke

Cells the smoke preset gained since the baseline (new methods) are listed as
new and do not fail.
"""

import json
import shutil
from pathlib import Path

import pytest

from fsadbench.regression.gate import BASELINES_DIR, gate, run_preset

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / BASELINES_DIR / "smoke"


@pytest.fixture(scope="module")
def smoke_head(tmp_path_factory):
    if not (BASELINE / "records").is_dir():
        pytest.fail(f"no committed smoke baseline at {BASELINE}; create it with "
                    f"`python run_bench.py baseline --preset smoke` and commit results/baselines/smoke")
    tmp = tmp_path_factory.mktemp("smoke")
    summary = run_preset("smoke", tmp / "head", tmp / "cache")  # a fresh cache: nothing reused
    assert summary.failed == 0, "smoke cells failed:\n" + "\n".join(summary.failures)
    return tmp / "head"


def test_smoke_matches_committed_baseline(smoke_head):
    c = gate("smoke", smoke_head, BASELINE)
    assert c.ok, ("the smoke benchmark no longer matches results/baselines/smoke. If the change is intended, "
                  "run `python run_bench.py baseline --preset smoke` and commit the folder.\n\n" + c.to_markdown())
    assert len(c.cells) > 0 and not c.only_base


def test_gate_catches_a_changed_cell_and_lets_new_cells_pass(smoke_head, tmp_path):
    fake = tmp_path / "baseline"
    shutil.copytree(BASELINE, fake)
    files = sorted((fake / "records").rglob("*.json"))
    # a cell missing from the baseline = a cell new in head: listed, passes
    files[0].unlink()
    c = gate("smoke", smoke_head, fake)
    assert c.ok and len(c.only_head) == 1
    # a metric 0.01 pp off in the baseline: the strict gate fails and names the cell
    d = json.loads(files[1].read_text())
    variant = next(iter(d["metrics"]))
    d["metrics"][variant]["pixel_auroc"] -= 1e-4
    files[1].write_text(json.dumps(d))
    c = gate("smoke", smoke_head, fake)
    assert not c.ok and len(c.cell_changes) == 1
    assert c.cell_changes.iloc[0]["category"] == d["key"]["category"]
