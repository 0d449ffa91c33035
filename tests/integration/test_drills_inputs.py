"""Drills of issue 26, the weak spots: every message names its field, counts are true, labels are escaped.

Duplicates in any list, a not-applicable cell's reason, the ``normal_source``
hint only where a dataset takes it, ``--results-dir`` naming a file, a plan of
100,000 seeds, labels with ``|``, HTML, formulas and LaTeX specials, alpha-only
masks read by one rule everywhere, an anomalous category without masks,
``status`` finding the last sweep and counting every sweep of a folder,
``list --verbose`` without reST backticks, single-seed figures as "n = 1" and
bar charts from 0.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fixtures_layouts import make_mvtec
from fsadbench.cli import main
from fsadbench.core.errors import NotApplicable
from fsadbench.core.types import CategoryInfo, CategorySplit, Prediction, Sample
from fsadbench.results.records import CellKey, Record, RecordStore

PIPE = ["--methods", "memory", "--categories", "disc", "--shots", "1", "--no-progress"]


def _one_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("note:")]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


# -- duplicates --------------------------------------------------------------------------------------
@pytest.mark.parametrize("flags, fragment", [
    (["--methods", "memory,memory"], "'methods' lists memory twice"),
    (["--categories", "disc,disc"], "'categories' lists disc twice"),
    (["--datasets", "synthetic,synthetic", "--model", "fsad-tiny-vit", "--pretrained", "none"],
     "'datasets' lists synthetic twice"),
])
def test_a_repeated_list_entry_is_refused_before_planning(tmp_path, capsys, flags, fragment):
    rc = main([*PIPE, "--results-dir", str(tmp_path / "res"), "--dry-run", *flags])
    assert fragment in _one_error(capsys, rc)


def test_repeated_method_option_sets_are_one_method_id_and_refused(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("methods:\n  - {name: memory, options: {memory_layers: [3, 8]}}\n"
                   "  - {name: memory, options: {memory_layers: [3, 8]}}\n")
    rc = main(["--config", str(cfg), "--results-dir", str(tmp_path / "res"), "--dry-run", "--no-progress"])
    assert "'methods' lists memory" in _one_error(capsys, rc)


# -- 100,000 seeds ---------------------------------------------------------------------------------------
def test_a_long_seed_list_is_checked_in_linear_time_and_printed_compactly(tmp_path, capsys):
    from fsadbench.run.config import build_config
    from fsadbench.run.preview import int_ranges

    cfg = tmp_path / "seeds.yaml"
    cfg.write_text("seeds: [" + ", ".join(map(str, range(100_000))) + "]\n")
    assert len(build_config("smoke", str(cfg)).seeds) == 100_000  # was quadratic: minutes
    assert int_ranges(range(100_000)) == "0-99999 (100,000 in all)"
    assert int_ranges([1, 2, 4]) == "1, 2, 4" and int_ranges(range(0, 40, 2)).endswith("... (20 in all)")
    rc = main([*PIPE, "--seeds", ",".join(map(str, range(300))), "--results-dir", str(tmp_path / "r"),
               "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 0 and "seeds: 0-299 (300 in all)" in err and max(map(len, err.splitlines())) < 400


# -- not applicable ----------------------------------------------------------------------------------------
def test_a_not_applicable_sweep_prints_the_reason(tmp_path, capsys):
    rc = main([*PIPE, "--shots", "0", "--seeds", "0", "--results-dir", str(tmp_path / "res")])
    out = capsys.readouterr()
    assert rc == 0
    assert "not applicable (1 cell(s)): memory needs at least 1 shot(s); got 0" in out.err
    assert "1 cell(s) not applicable, see above" in out.out


def _empty_train(dataset: str) -> tuple:
    from fsadbench.run.config import DatasetSpec, MethodSpec
    from fsadbench.run.plan import Job

    split = CategorySplit(CategoryInfo(dataset, "c", "c"), Path("."), [], [Sample(Path("t.png"), 0)])
    job = Job(MethodSpec("memory"), DatasetSpec(dataset), ["c"], 1, 0, "category")
    return split, job


@pytest.mark.parametrize("dataset, hint", [("mvtec", False), ("cvc-colondb", True)])
def test_the_normal_source_hint_only_for_datasets_that_take_it(dataset, hint):
    from fsadbench.core.registry import METHODS
    from fsadbench.run.fit import job_shots

    split, job = _empty_train(dataset)
    with pytest.raises(NotApplicable) as e:
        job_shots(split, job, METHODS.get("memory")[0])
    assert ("normal_source" in str(e.value)) == hint
    assert hint or "add normal images to its train folder" in str(e.value)


# -- --results-dir naming a file -------------------------------------------------------------------------
@pytest.mark.parametrize("command", [[*PIPE], ["report"], ["status"], ["figures", "bars", "--dataset", "x", "--shots", "1"]])
def test_a_results_dir_that_is_a_file_says_so(tmp_path, capsys, command):
    f = tmp_path / "results.txt"
    f.write_text("not a folder")
    where = f / "sub" if command == PIPE else f
    line = _one_error(capsys, main([*command, "--results-dir", str(where)]))
    assert f"{f} is a file, not a folder" in line and "permission" not in line.lower(), line


# -- status ------------------------------------------------------------------------------------------------
def _manifest(results_dir: Path, seeds: list[int]) -> None:
    from fsadbench.run.config import build_config
    from fsadbench.run.executors import write_run_manifest

    cfg = build_config("smoke", None, {"methods": ["memory"], "seeds": seeds, "shots": [1],
                                       "results_dir": str(results_dir)}, categories=["disc"])
    write_run_manifest(cfg, "local")


def test_status_finds_the_last_sweep_and_counts_every_sweep_of_a_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _manifest(Path("results/smoke"), [0])
    _manifest(Path("results/smoke"), [1])  # a second sweep into the same folder
    _manifest(Path("results/smoke"), [1])  # the same again: one plan
    assert main(["status"]) == 0
    out = capsys.readouterr()
    assert "showing results/smoke, the most recent sweep under results/" in out.err
    assert "2 sweep configs" in out.out and "2 cell(s): 0 done, 0 running, 0 failed, 2 pending" in out.out
    assert main(["status", "--results-dir", "results/elsewhere"]) == 2
    assert "sweeps found: results/smoke" in capsys.readouterr().err


# -- labels escaped per format ------------------------------------------------------------------------------
LABEL = "=SUM(A1)|<b>x</b> & y_<z>"


@pytest.fixture()
def labelled(tmp_path):
    store = RecordStore(tmp_path / "res")
    for cat in ("c1", "c2"):
        store.write(Record(key=CellKey("memory", "mvtec", cat, 1, 0).__dict__, status="ok", config_hash="h",
                           method={"name": "memory", "id": "memory", "label": LABEL, "variants": ["w/ VG"]},
                           metrics={"w/ VG": {"pixel_auroc": 0.8}},
                           plan={"categories": ["c1", "c2"], "shots": [1], "seeds": [0]},
                           backbone={"model": "x", "pretrained": "p", "random_weights": False},
                           protocol={"version": 1, "eval_size": 400, "sigma": None, "sigma_used": 4,
                                     "max_test_images": None}, metric_version="1",
                           provenance={"git": {"commit": "a" * 40, "dirty": False},
                                       "time_utc": "2026-01-01T00:00:00+00:00"}))
    return tmp_path / "res"


def _report(res: Path, fmt: str, capsys) -> str:
    assert main(["report", "--results-dir", str(res), "--format", fmt, "--output", str(res / f"r.{fmt}")]) == 0
    capsys.readouterr()
    return (res / f"r.{fmt}").read_text()


def test_labels_are_escaped_per_format_and_one_seed_says_n_1(labelled, capsys):
    md = _report(labelled, "markdown", capsys)
    row = next(ln for ln in md.splitlines() if ln.startswith("|") and "80.00" in ln)
    assert row.count(" | ") + 2 == next(ln for ln in md.splitlines() if ln.startswith("|")).count("|")
    assert r"=SUM(A1)\|&lt;b>x&lt;/b>" in row and "<b>" not in md
    assert "80.00 (n = 1)" in row and "± 0.00" not in md
    tex = _report(labelled, "latex", capsys)
    assert r"\textbar{}\textless{}b\textgreater{}x" in tex and "<b>" not in tex and "($n = 1$)" in tex
    csv = _report(labelled, "csv", capsys)
    assert "'=SUM(A1)|<b>x</b> & y_<z>" in csv and ",=SUM" not in csv
    assert csv.splitlines()[0].endswith(",coverage") and csv.splitlines()[1].endswith(",complete")
    html = _report(labelled, "html", capsys)
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html and "80.00 (n = 1)" in html


def test_a_csv_row_carries_its_coverage_note(labelled, capsys):
    store = RecordStore(labelled)
    r = store.load(CellKey("memory", "mvtec", "c2", 1, 0))
    store.write(Record(**{**r.__dict__, "status": "failed", "metrics": {}, "error": "boom"}))
    csv = _report(labelled, "csv", capsys)
    assert "covers 1/2 categories" in csv and "failed: boom" in csv


def test_bar_charts_start_at_zero(labelled):
    from fsadbench.reports.figures import bars_figure

    fig = bars_figure(list(RecordStore(labelled)), "mvtec", 1)
    assert fig.axes[0].get_ylim() == (0.0, 100.0)


# -- masks ----------------------------------------------------------------------------------------------------
def test_an_alpha_only_mask_is_read_by_one_rule_in_check_data_and_the_sweep(tmp_path, capsys):
    from fsadbench.core.io import read_mask
    from fsadbench.protocol.evaluator import gt_mask

    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",), grayscale=())
    mask = root / "bottle" / "ground_truth" / "crack" / "000_mask.png"
    rgba = np.zeros((24, 24, 4), np.uint8)
    rgba[5:10, 5:10, 3] = 255  # opaque black defect on a transparent background
    Image.fromarray(rgba, "RGBA").save(mask)
    assert read_mask(mask).sum() == 25
    assert gt_mask(Sample(root / "bottle" / "test" / "crack" / "000.png", 1, mask_path=mask), 24).sum() == 25
    assert main(["check-data", "--datasets", "mvtec", "--data-root", str(tmp_path / "mvtec"),
                 "--categories", "bottle"]) == 0
    assert "has no anomalous pixel" not in capsys.readouterr().out
    rgba[..., 3] = 255  # a fully opaque black mask is empty: alpha is not an annotation then
    Image.fromarray(rgba, "RGBA").save(mask)
    assert read_mask(mask).sum() == 0


def test_an_anomalous_category_without_masks_names_the_missing_masks():
    from fsadbench.protocol.evaluator import CategoryEvaluator

    ev = CategoryEvaluator(8, 0.0, aupro=False)
    samples = [Sample(Path("n.png"), 0), Sample(Path("a.png"), 1), Sample(Path("b.png"), 1)]
    pred = Prediction(maps=torch.rand(3, 4, 4), scores=torch.tensor([0.1, 0.9, 0.8]))
    ev.add(pred, samples, [np.zeros((8, 8), bool)] * 3)
    metrics, undefined = ev.compute()
    assert metrics["image_auroc"] == 1.0
    assert undefined["pixel_auroc"].startswith("no masks: none of the 2 anomalous test image(s) has a mask file")
    assert "one class only" not in undefined["pixel_auroc"]


# -- listing ----------------------------------------------------------------------------------------------------
def test_list_verbose_has_no_rest_backticks(capsys):
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out and re.search(r"memory: memory: the vision-guidance branch", out)
