"""The APT training-budget benchmark (benchmarks/apt_budget.py): parsing, movement, report, a tiny run."""

from __future__ import annotations

import pytest
import torch

from benchmarks import apt_budget


def test_parse_budgets_and_context_movement():
    assert apt_budget.parse_budgets("1x1, 10x4,2") == [(1, 1), (10, 4), (2, 1)]
    start = {"prefix": torch.tensor([3.0, 4.0]), "normal": torch.tensor([1.0, 0.0])}
    end = {"prefix": torch.tensor([3.0, 4.5]), "normal": torch.tensor([1.0, 0.0])}
    assert apt_budget.context_movement(start, end) == {"prefix": pytest.approx(0.1), "normal": 0.0}


def test_tiny_run_reports_every_budget():
    args = apt_budget._parser().parse_args(["--budgets", "1x1,2x1", "--epochs", "2", "--categories", "disc",
                                            "--test-images", "2", "--image-size", "64", "--eval-size", "64"])
    rows = apt_budget.run(args)
    assert [r["budget"] for r in rows] == ["1x1", "2x1"] and [r["steps"] for r in rows] == [2, 4]
    assert all(0.0 <= r["auroc"] <= 1.0 and r["move_prefix"] > 0 for r in rows)
    assert rows[1]["move_normal"] > rows[0]["move_normal"]  # twice the Adam steps move the contexts further
    text = apt_budget.report(rows)
    assert "| 2x1 | 4 |" in text and "pixel AUROC w/o VG" in text
