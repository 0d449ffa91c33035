"""The smoke regression gate: a fresh smoke run must reproduce results/baselines/smoke exactly.

The smoke run (synthetic data, tiny random backbone, CPU) is deterministic, so
any change beyond 0.001 pp in any metric of any baseline cell is a real change.
If the change is intended, update the baseline and commit it:

    python run_bench.py baseline --preset smoke

Cells the smoke preset gained since the baseline (new methods) are listed as
new and do not fail.
"""

from pathlib import Path

import pytest

from fsadbench.compare import BASELINES_DIR, gate, run_preset

REPO = Path(__file__).resolve().parent.parent
BASELINE = REPO / BASELINES_DIR / "smoke"


def test_smoke_matches_committed_baseline(tmp_path, monkeypatch):
    if not (BASELINE / "records").is_dir():
        pytest.fail(f"no committed smoke baseline at {BASELINE}; create it with "
                    f"`python run_bench.py baseline --preset smoke` and commit results/baselines/smoke")
    cache = tmp_path / "cache"
    monkeypatch.setenv("FSADBENCH_CACHE", str(cache))
    summary = run_preset("smoke", tmp_path / "head", cache)
    assert summary.failed == 0, "smoke cells failed:\n" + "\n".join(summary.failures)
    c = gate("smoke", tmp_path / "head", BASELINE)
    report = c.to_markdown()
    assert c.ok, ("the smoke benchmark no longer matches results/baselines/smoke. If the change is intended, "
                  "run `python run_bench.py baseline --preset smoke` and commit the folder.\n\n" + report)
    assert len(c.cells) > 0 and not c.only_base
