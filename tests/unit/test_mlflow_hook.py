"""--log mlflow: a real MLflow run in a local file store (skipped when MLflow is not installed)."""

import os

import pytest

from fsadbench.results.records import RecordStore
from fsadbench.run.config import build_config

mlflow = pytest.importorskip("mlflow")


def test_sweep_logged_to_a_local_file_store(tmp_path, monkeypatch):
    from test_exports import make_record  # the fixed records of the export tests

    from fsadbench.run.summary import RunSummary
    from fsadbench.tracking import log_mlflow

    monkeypatch.chdir(tmp_path)  # the default store is ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    store = RecordStore(tmp_path / "run")
    for r in (make_record("a", "bottle", 0, 0.80, 0.90), make_record("a", "grid", 0, 0.60, 0.70),
              make_record("a", "bottle", 1, 0.90, 0.95), make_record("a", "grid", 1, 0.70, 0.85)):
        store.write(r)
    cfg = build_config(overrides={"methods": "a", "datasets": "mvtec", "shots": "1", "seeds": "0,1",
                                  "results_dir": str(tmp_path / "run")})
    run_id = log_mlflow(cfg, RunSummary(computed=4, encoded_images=12))
    assert (tmp_path / "mlruns").is_dir()
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").as_uri())
    run = client.get_run(run_id)
    assert run.data.params["methods"] == "a" and run.data.params["seeds"] == "0,1"
    assert run.data.metrics["cells/computed"] == 4 and run.data.metrics["encoder/images"] == 12
    assert run.data.metrics["pixel_auroc/mvtec/a/w_o VG/k1/mean"] == pytest.approx(75.0)  # as in the tables
    assert run.data.metrics["pixel_auroc/mvtec/a/w_o VG/k1/std"] == pytest.approx(5.0)
    assert not any(k.startswith("image_auroc/mvtec/a/w_o VG") for k in run.data.metrics)  # undefined: not logged
    assert run.data.tags["fsadbench.version"]
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"tables.md", "summary.csv", "records.csv"} <= artifacts
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # the file-store opt-in is not left behind


def test_metric_keys_keep_one_separator():
    from fsadbench.tracking import metric_key

    assert metric_key("pixel_auroc", "mvtec", "apt[k=2]", "w/ VG", "k1") == "pixel_auroc/mvtec/apt_k_2_/w_ VG/k1"
