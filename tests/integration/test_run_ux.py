"""A user's journey on the tiny backbone: plan and --dry-run, a run with saved maps, the HTML report,
load_results, rescore, fsadbench.run and --log mlflow; progress inside a cell."""

import base64
import json
import re

import pytest

from fsadbench.cli import main
from fsadbench.results.records import RecordStore
from fsadbench.results.scores import CellScores, scores_path

QUICK = ["--methods", "memory,winclip", "--shots", "1", "--seeds", "0", "--categories", "disc",
         "--max-test-images", "8", "--no-progress"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The pipeline check (no --datasets) with maps saved: memory and winclip, one category, 8 test images."""
    tmp = tmp_path_factory.mktemp("ux")
    res = tmp / "res"
    assert main([*QUICK, "--results-dir", str(res), "--cache-dir", str(tmp / "cache"), "--save-maps"]) == 0
    return res, tmp / "cache"


def test_dry_run_prints_the_plan_and_does_nothing(tmp_path, capsys):
    res = tmp_path / "res"
    assert main([*QUICK, "--results-dir", str(res), "--cache-dir", str(tmp_path / "cache"), "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "plan: 2 cell(s): 2 to compute, 0 already done" in err
    assert "datasets: synthetic (disc)" in err and "pipeline check: no --datasets" in err
    assert "methods: memory (defaults), winclip (defaults)" in err
    assert "shots: 1; seeds: 0" in err and "weights: RANDOM init" in err
    assert "SUBSET of at most 8 test images" in err
    # memory and winclip each encode the 8 test images through their own path, plus one shot each
    assert "encoder passes: at most 18 image(s)" in err
    assert not (res / "records").exists()


def test_real_backbone_without_datasets_asks_for_them(tmp_path, capsys):
    assert main(["--methods", "apt", "--pretrained", "laion400m_e32", "--results-dir", str(tmp_path)]) == 2
    assert "add --datasets" in capsys.readouterr().err


def test_plan_counts_cells_already_done(run_dir, capsys):
    res, cache = run_dir
    assert main([*QUICK, "--results-dir", str(res), "--cache-dir", str(cache), "--dry-run"]) == 0
    assert "plan: 2 cell(s): 0 to compute, 2 already done" in capsys.readouterr().err


def test_scores_and_maps_stored_beside_each_record(run_dir):
    res, _ = run_dir
    store = RecordStore(res)
    records = store.records()
    assert len(records) == 2 and all(r.status == "ok" for r in records)
    for r in records:
        s = CellScores.load(scores_path(store.path(r.cell)))
        assert sorted(s.variants) == sorted(r.metrics) and len(s.images) == r.n_test == 8
        assert s.has_maps and s.maps[s.variants[0]].shape == (8, 120, 120) and s.masks.shape == (8, 120, 120)
        assert s.meta["config_hash"] == r.config_hash and s.meta["protocol_version"] == r.protocol["version"]
        assert r.protocol["max_test_images"] == 8 and r.config["save_maps"] is True


def test_html_report_opens_offline_with_the_grid_and_load_results_rows(run_dir):
    import fsadbench
    from html_checks import assert_self_contained, parse_report

    res, _ = run_dir
    assert main(["report", "--results-dir", str(res), "--format", "html", "--metric", "pixel_auroc,image_auroc"]) == 0
    text = (res / "report.html").read_text()
    doc = parse_report(text)
    assert_self_contained(doc)
    assert doc.tags.count("table") >= 2 and "Qualitative results" in text
    imgs = [v for tag, k, v in doc.attrs if tag == "img" and k == "src"]
    assert len(imgs) >= 3  # bars for 2 metrics + the grid
    assert all(base64.b64decode(v.split(",", 1)[1])[:4] == b"\x89PNG" for v in imgs)
    assert "SUBSET: at most 8 test image" in text and "PIPELINE CHECK" in text
    df = fsadbench.load_results(res)
    assert sorted(zip(df["method"], df["variant"])) == [("memory", "w/ VG"), ("winclip", "w/ VG"),
                                                         ("winclip", "w/o VG")]
    assert set(df["max_test_images"]) == {8} and set(df["backbone"]) == {"fsad-tiny-vit"}
    assert df["commit"].notna().all()


def test_report_json_rows_match_the_records(run_dir, capsys):
    import fsadbench

    res, _ = run_dir
    assert main(["report", "--results-dir", str(res), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    df = fsadbench.load_results(res)
    for r in rows:
        hit = df[(df["method"] == r["method"]) & (df["variant"] == r["variant"])]
        assert r["mean"] == pytest.approx(100 * hit["pixel_auroc"].item(), abs=1e-4)  # one category, one seed


def test_rescore_reproduces_and_rewrites_an_old_metric_version(run_dir, tmp_path, capsys):
    import shutil

    from fsadbench.run.config import stable_hash

    res, _ = run_dir
    work = tmp_path / "copy"
    shutil.copytree(res, work)
    assert main(["rescore", "--results-dir", str(work)]) == 0
    assert "0 cell(s) rescored, 2 unchanged, 0 refused" in capsys.readouterr().err  # exact, from the maps
    store = RecordStore(work)
    rec = next(r for r in store if r.key["method"] == "memory")
    fresh_undefined = json.loads(json.dumps(rec.undefined))
    rec.undefined = {**rec.undefined, "w/ VG": {"pixel_auroc": "one class only: no anomalous pixel"}}
    store.write(rec)  # a stale reason, figures unchanged: rewritten with today's reasons
    assert main(["rescore", "--results-dir", str(work)]) == 0
    assert "1 cell(s) rescored, 1 unchanged" in capsys.readouterr().err
    assert store.load(rec.cell).undefined == fresh_undefined
    rec = next(r for r in store if r.key["method"] == "winclip")
    truth, fresh_hash = json.loads(json.dumps(rec.metrics)), rec.config_hash
    rec.metric_version = "fsad-metrics/0 (old)"  # as if written by an older metric code
    rec.identity["metric_version"] = rec.metric_version
    rec.config_hash = stable_hash(rec.identity)
    rec.metrics["w/ VG"]["pixel_auroc"] = 0.5
    store.write(rec)
    assert main(["rescore", "--results-dir", str(work)]) == 0
    assert "1 cell(s) rescored, 1 unchanged" in capsys.readouterr().err
    back = store.load(rec.cell)
    assert back.metrics == truth and back.config_hash == fresh_hash  # what a rerun plans: counted as done
    assert back.provenance["rescored"]["from_metric_version"] == "fsad-metrics/0 (old)"
    back.protocol["version"] = "fsad-protocol/0"  # maps made under another protocol: refused, with the fix
    store.write(back)
    assert main(["rescore", "--results-dir", str(work)]) == 1
    assert re.search(r"winclip.*not rescored: protocol 'fsad-protocol/0'.*--force", capsys.readouterr().err)


def test_rescore_names_a_truncated_scores_file_and_goes_on(run_dir, tmp_path, capsys):
    """Drill of issue 33 (was: rescore aborted with "File is not a zip file", naming no file)."""
    import shutil

    res, _ = run_dir
    work = tmp_path / "copy"
    shutil.copytree(res, work)
    bad = sorted(work.rglob("*.scores.npz"))[0]
    bad.write_bytes(bad.read_bytes()[:100])
    assert main(["rescore", "--results-dir", str(work)]) == 1
    err = capsys.readouterr().err
    assert f"not rescored: scores file {bad} is unreadable (File is not a zip file); recompute the cell with " \
           f"--force" in err and "1 unchanged, 1 refused" in err, err


def test_rescore_without_maps_needs_the_same_metric_version(run_dir, tmp_path, capsys):
    import shutil

    from fsadbench.run.config import stable_hash

    res, _ = run_dir
    work = tmp_path / "copy"
    shutil.copytree(res, work)
    store = RecordStore(work)
    rec = next(r for r in store if r.key["method"] == "memory")
    s = CellScores.load(scores_path(store.path(rec.cell)))
    s.maps = s.masks = None
    s.save(scores_path(store.path(rec.cell)))
    assert main(["rescore", "--results-dir", str(work)]) == 0  # same version: image metrics recomputed, equal
    rec.metric_version = rec.identity["metric_version"] = "old"
    rec.config_hash = stable_hash(rec.identity)
    store.write(rec)
    assert main(["rescore", "--results-dir", str(work)]) == 1
    assert "--force --save-maps" in capsys.readouterr().err


def test_python_api_run_returns_results(run_dir):
    import fsadbench

    res, cache = run_dir
    cfg = {"methods": ["memory"], "datasets": [{"name": "synthetic", "categories": ["disc"],
                                                 "options": {"size": 120, "n_train": 8, "n_test_good": 6,
                                                             "n_test_bad": 10}}],
           "shots": [1], "seeds": [0], "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"},
           "protocol": {"eval_size": 120, "max_test_images": 8}, "results_dir": str(res), "cache_dir": str(cache)}
    out = fsadbench.run(cfg)
    assert isinstance(out, fsadbench.Results) and out.summary.skipped == 1 and out.summary.computed == 0
    assert set(out.frame()["method"]) == {"memory", "winclip"}  # the folder's rows
    table = out.table()  # this config's cells only
    assert "memory" in table and "winclip" not in table and out.ok
    assert "winclip" in out.table(whole_folder=True)  # every record of the folder


def test_log_mlflow_from_the_command_line(run_dir, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    res, cache = run_dir
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main([*QUICK, "--results-dir", str(res), "--cache-dir", str(cache), "--log", "mlflow"]) == 0
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").as_uri())
    exp = client.get_experiment_by_name("fsad-bench")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.params["max_test_images"] == "8" and run.data.metrics["cells/skipped"] == 2
    assert any(k.startswith("pixel_auroc/synthetic/winclip/w_o VG/k1") for k in run.data.metrics)


def test_progress_inside_a_cell_shows_stage_and_eta(monkeypatch):
    from fsadbench.run.executors import base
    from fsadbench.run.config import DatasetSpec, MethodSpec
    from fsadbench.run.plan import Job

    shown = []

    class Bar:
        def set_postfix_str(self, s, refresh=True):
            shown.append(s)

    clock = iter([0.0, 10.0, 10.1, 20.0, 30.0])
    monkeypatch.setattr(base.time, "monotonic", lambda: next(clock))
    p = base.Progress(False, 1, lambda m: None)
    p.bar = Bar()
    p.begin(Job(MethodSpec("apt"), DatasetSpec("mvtec"), ["bottle"], 2, 1))
    assert shown[-1] == "apt mvtec/bottle k=2 s=1"
    p.step("epoch", 1, 100)  # t=0: the stage starts
    p.step("epoch", 10, 100)  # t=10: 10 s for 10 epochs -> 90 s left
    assert shown[-1] == "apt mvtec/bottle k=2 s=1 | epoch 10/100, eta 1:30"
    p.step("epoch", 11, 100)  # t=10.1: throttled
    assert shown[-1].endswith("epoch 10/100, eta 1:30")
    p.step("test images", 1, 4)  # a new stage restarts the clock (t=20)
    p.step("test images", 4, 4)  # the last step is always shown, without an ETA
    assert shown[-1] == "apt mvtec/bottle k=2 s=1 | test images 4/4"


def test_offline_without_the_checkpoint_stops_before_any_cell(tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    rc = main(["--methods", "memory", "--datasets", "synthetic", "--categories", "disc", "--shots", "1",
               "--seeds", "0", "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "NOT in any cache" in err  # the plan says it first
    assert "error: could not load weights 'ViT-B-16-plus-240' / 'laion400m_e32'" in err
    assert "releases/download/v0.2-weights/vit_b_16_plus_240-laion400m_e32-699c4b84.pt" in err  # e32's own file
    assert "laion400m_e31" not in err
    assert not (tmp_path / "r" / "records").exists()
