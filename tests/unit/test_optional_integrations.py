"""Optional integrations are checked before planning: ``--log mlflow`` without MLflow is refused at once."""

from __future__ import annotations

import importlib.util

from fsadbench.cli import main


def test_log_mlflow_without_mlflow_is_refused_before_the_plan(monkeypatch, capsys, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))

    def no_plan(*a, **k):
        raise AssertionError("planned before refusing --log mlflow")

    monkeypatch.setattr("fsadbench.run.plan.Plan.build", no_plan)
    rc = main(["run", "--methods", "memory", "--shots", "1", "--seeds", "0", "--log", "mlflow",
               "--results-dir", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert rc != 0 and "--log mlflow needs MLflow, which is not installed" in err and "pip install" in err
    assert not (tmp_path / "res").exists()
