"""Drills of issue 17: every hostile input and fault once found by hand, reproduced and now handled.

Numbers refer to the issue's list of failures. Process hygiene (1), the
sweep's signal handling (7, SIGINT/SIGTERM) and the unwritable results folder
are drilled in test_drills_run.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fixtures_layouts import make_mvtec, random_image_refs
from fsadbench.cli import main
from fsadbench.core.errors import ConfigError, DataError, StorageError, error_line, error_summary, error_text
from fsadbench.core.io import atomic_write_text, image_info, read_mask, read_rgb

SWEEP = ["--preset", "smoke", "--methods", "memory", "--categories", "disc", "--shots", "1", "--seeds", "0,1",
         "--no-progress"]


def _run(results: Path, cache: Path, *extra: str) -> int:
    return main([*SWEEP, "--results-dir", str(results), "--cache-dir", str(cache), *extra])


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """One tiny finished sweep (memory, synthetic/disc, 1-shot, seeds 0 and 1): 2 records."""
    root = tmp_path_factory.mktemp("drills")
    assert _run(root / "res", root / "cache") == 0
    assert len(list((root / "res" / "records").rglob("*.json"))) == 2
    return root


@pytest.fixture()
def results(swept, tmp_path):
    """A private copy of the finished sweep's results folder, and the shared cache."""
    shutil.copytree(swept / "res", tmp_path / "res")
    return tmp_path / "res", swept / "cache"


def _records(res: Path) -> list[Path]:
    return sorted((res / "records").rglob("*.json"))


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


# -- 2: image modes ---------------------------------------------------------------------------------
GRAD16 = (np.arange(12, dtype=np.uint32).reshape(3, 4) * 5957).astype(np.uint16)  # 0 .. 65527


def _save(path: Path, im: Image.Image) -> Path:
    im.save(path)
    return path


def _mode_cases(tmp: Path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[..., 3] = [[255, 0], [128, 51]]
    pal = Image.new("P", (2, 2))
    pal.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    pal.putdata([0, 1, 1, 0])
    pal_t = pal.copy()
    pal_t.info["transparency"] = 1
    la = np.stack([np.full((2, 2), 100, np.uint8), np.array([[255, 0], [255, 0]], np.uint8)], -1)
    return {
        # 16-bit gray: scaled, round(v * 255 / 65535) -- no longer clipped to a white image
        "I;16": (_save(tmp / "g16.png", Image.fromarray(GRAD16)),
                 np.round(GRAD16.astype(float) * 255 / 65535)),
        "I": (_save(tmp / "g32.tif", Image.fromarray(GRAD16.astype(np.int32))),
              np.round(GRAD16.astype(float) * 255 / 65535)),
        "F in 0..1": (_save(tmp / "f1.tif", Image.fromarray(np.array([[0, 0.5], [1, 0.25]], np.float32))),
                      np.array([[0, 128], [255, 64]])),
        "F in 0..255": (_save(tmp / "f255.tif", Image.fromarray(np.array([[0, 7.4], [200, 255]], np.float32))),
                        np.array([[0, 7], [200, 255]])),
        "1": (_save(tmp / "b.png", Image.fromarray(np.array([[0, 1], [1, 0]], bool))), np.array([[0, 255], [255, 0]])),
        "RGBA over black": (_save(tmp / "a.png", Image.fromarray(rgba, "RGBA")),
                            np.array([[200, 0], [100, 40]])),
        "LA over black": (_save(tmp / "la.png", Image.fromarray(la, "LA")), np.array([[100, 0], [100, 0]])),
        "P": (_save(tmp / "p.png", pal), np.array([[0, 10], [10, 0]])),
        "P with transparency": (_save(tmp / "pt.png", pal_t), np.array([[0, 0], [0, 0]])),
        "CMYK": (_save(tmp / "c.tif", Image.new("CMYK", (2, 2), (0, 0, 0, 0))), np.full((2, 2), 255)),
    }


def test_2_every_pil_mode_reads_as_the_right_8bit_rgb(tmp_path):
    for name, (path, want_first_channel) in _mode_cases(tmp_path).items():
        im = read_rgb(path)
        arr = np.asarray(im)
        assert im.mode == "RGB" and arr.dtype == np.uint8, name
        assert arr[..., 0].tolist() == np.asarray(want_first_channel).astype(int).tolist(), name
    assert np.asarray(read_rgb(tmp_path / "p.png"))[0, 1].tolist() == [10, 20, 30]  # palette colours kept


@pytest.mark.parametrize("make, fragment", [
    (lambda p: Image.fromarray(np.array([[0, 70000]], np.int32)).save(p / "x.tif"), "beyond 16 bits"),
    (lambda p: Image.fromarray(np.array([[0, 900.0]], np.float32)).save(p / "x.tif"), "float image"),
    (lambda p: Image.fromarray(np.array([[np.nan, 1]], np.float32)).save(p / "x.tif"), "NaN"),
    (lambda p: Image.new("LAB", (2, 2)).save(p / "x.tif"), "mode LAB"),
    (lambda p: (p / "x.tif").write_bytes(b"not an image"), "cannot be read"),
])
def test_2_an_image_without_a_defined_mapping_is_an_error_naming_the_file(tmp_path, make, fragment):
    make(tmp_path)
    with pytest.raises(DataError, match=fragment) as e:
        read_rgb(tmp_path / "x.tif")
    assert str(tmp_path / "x.tif") in str(e.value)


def test_2_masks_in_every_mode_nonzero_is_anomalous(tmp_path):
    m16 = np.zeros((2, 3), np.uint16)
    m16[0, 1] = 1  # a 0/1 mask saved as 16-bit
    Image.fromarray(m16).save(tmp_path / "m16.png")
    Image.fromarray(np.array([[0, 0.5, 0]], np.float32)).save(tmp_path / "mf.tif")
    la = np.zeros((1, 3, 2), np.uint8)
    la[0, 2] = (255, 0)  # anomalous even where fully transparent: alpha is ignored
    Image.fromarray(la, "LA").save(tmp_path / "mla.png")
    assert read_mask(tmp_path / "m16.png").tolist() == [[False, True, False], [False, False, False]]
    assert read_mask(tmp_path / "mf.tif").tolist() == [[False, True, False]]
    assert read_mask(tmp_path / "mla.png").tolist() == [[False, False, True]]


def test_2_a_16bit_dataset_is_read_scaled_and_check_data_reports_its_modes(tmp_path, capsys, tiny_backbone):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle",), grayscale=())
    img = root / "bottle" / "train" / "good" / "000.png"
    grad = (np.linspace(0, 65535, 24 * 24).reshape(24, 24)).astype(np.uint16)
    Image.fromarray(grad).save(img)
    assert image_info(img).label == "I;16 16-bit (scaled to 8-bit)"
    px = tiny_backbone.load_pixels([img])
    assert float(px.std()) > 0.1  # a gradient, not the flat white image it once was
    assert main(["check-data", "--datasets", "mvtec", "--data-root", str(tmp_path / "mvtec"),
                 "--categories", "bottle"]) == 0
    out = capsys.readouterr().out
    assert "images: I;16 16-bit (scaled to 8-bit) x 1, RGB 8-bit x 7" in out and "masks: L 8-bit x 3" in out


# -- 3 and 5: user input validated at the boundary ----------------------------------------------------
def test_3_a_yaml_string_of_categories_is_one_category(tmp_path):
    from fsadbench.run.config import build_config

    f = tmp_path / "c.yaml"
    f.write_text("datasets:\n  - name: mvtec\n    categories: bottle\n")
    assert build_config(None, str(f)).datasets[0].categories == ["bottle"]


@pytest.mark.parametrize("yaml_text, fragment", [
    ("shots: [1.7]\n", "'shots' must be a list of integers >= 0.*1.7"),
    ("shots: [-1]\n", "'shots' must be a list of integers >= 0.*-1"),
    ("shots: [1, 1]\n", "'shots' lists 1 twice"),
    ("seeds: [true]\n", "'seeds' must be a list of integers"),
    ("seeds: zero\n", "'seeds' must be a list of integers"),
    ("datasets:\n  - {name: mvtec, categories: [1]}\n", "'datasets.mvtec.categories' entry 0 is 1"),
    ("datasets:\n  - {name: mvtec, categories: ../other/bottle}\n", "not a plain folder name"),
    ("datasets:\n  - {name: mvtec, options: [1]}\n", "'datasets.mvtec.options' must be a mapping"),
    ("batch_size: big\n", "'batch_size' must be an integer"),
    ("protocol: {sigma: -1}\n", "'protocol.sigma' must be a number >= 0"),
    ("protocol: {eval_size: 0}\n", "'protocol.eval_size' must be >= 1"),
    ("amp: yes please\n", "'amp' must be true or false"),
    ("results_dir: [a]\n", "'results_dir' must be a non-empty string"),
])
def test_3_bad_config_values_are_refused_naming_the_field(tmp_path, yaml_text, fragment):
    from fsadbench.run.config import build_config

    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=fragment):
        build_config(None, str(f))


@pytest.mark.parametrize("flags, fragment", [
    (["--shots", "-1"], "'shots' must be a list of integers >= 0"),
    (["--shots", "1.7"], "'shots' must be a list of integers >= 0"),
    (["--seeds", "0,x"], "'seeds' must be a list of integers"),
    (["--categories", "../other/bottle"], "--categories: 'categories' entry '../other/bottle' is not a plain"),
    (["--categories", "/etc"], "not a plain folder name"),
    (["--categories", "disc,.."], "not a plain folder name"),
    (["--categories", "a\\b"], "not a plain folder name"),
])
def test_3_5_bad_command_line_values_fail_in_one_line_before_any_work(tmp_path, capsys, flags, fragment):
    res = tmp_path / "res"
    rc = main(["--preset", "smoke", "--results-dir", str(res), "--cache-dir", str(tmp_path / "c"),
               "--no-progress", *flags])
    err = capsys.readouterr().err
    assert rc == 2 and len(_lines(err)) == 1 and err.startswith("error: ")
    assert re.search(fragment, err), err
    assert not res.exists()  # refused before the first cell (nothing written)


def test_5_a_category_outside_the_data_root_is_never_read(tmp_path, capsys):
    make_mvtec(tmp_path / "data" / "mvtec", categories=("bottle",))
    make_mvtec(tmp_path / "other", categories=("bottle",))  # beside the data root
    rc = main(["--methods", "memory", "--datasets", "mvtec", "--data-root", str(tmp_path / "data"),
               "--categories", "../../other/bottle", "--model", "fsad-tiny-vit", "--pretrained", "none",
               "--results-dir", str(tmp_path / "res"), "--no-progress"])
    assert rc == 2 and "not a plain folder name" in capsys.readouterr().err
    assert not (tmp_path / "res").exists()
    rc = main(["check-data", "--datasets", "mvtec", "--data-root", str(tmp_path / "data"),
               "--categories", str(tmp_path / "other" / "bottle")])
    assert rc == 2 and "not a plain folder name" in capsys.readouterr().err


# -- 4: record and claim files validated on load ---------------------------------------------------------
@pytest.mark.slow
def test_4_a_record_of_the_wrong_shape_is_named_set_aside_and_its_cell_redone(results, capsys, caplog):
    res, cache = results
    bad = _records(res)[0]
    rel = bad.relative_to(res)
    for command in (["report", "--results-dir", str(res)], ["status", "--results-dir", str(res)]):
        bad.write_text("[1, 2]")
        caplog.clear()
        assert main(command) == 0
        assert str(bad) in caplog.text and "corrupt" in caplog.text
        assert not bad.exists() and (res / "corrupt" / rel).read_text() == "[1, 2]"
    out = capsys.readouterr().out
    assert "1 done" in out and "1 pending" in out  # status counts the set-aside cell as pending
    bad.write_text("[1, 2]")
    assert _run(res, cache) == 0  # the sweep sets it aside and recomputes exactly that cell
    assert json.loads(bad.read_text())["status"] == "ok"


@pytest.mark.slow
def test_4_bad_metrics_never_pass_compare_strict(results, swept, capsys):
    res, _ = results
    p = _records(res)[0]
    for bad_metrics in ("oops", {"w/ VG": "oops"}, {"w/ VG": {"pixel_auroc": "0.9"}}, {"w/ VG": {"pixel_auroc": 7}}):
        d = json.loads((swept / "res" / p.relative_to(res)).read_text())
        d["metrics"] = bad_metrics
        p.write_text(json.dumps(d))
        assert main(["compare", str(swept / "res"), str(res), "--strict"]) == 1, bad_metrics
        assert main(["compare", str(res), str(swept / "res"), "--strict"]) == 0  # set aside: only in HEAD now
    capsys.readouterr()


@pytest.mark.slow
def test_4_a_truncated_record_is_named_by_report_and_status(results, caplog):
    res, _ = results
    bad = _records(res)[1]
    bad.write_text(bad.read_text()[:100])
    assert main(["report", "--results-dir", str(res)]) == 0
    assert f"{bad} is corrupt (not valid JSON" in caplog.text
    bad.write_text("{")
    caplog.clear()
    assert main(["status", "--results-dir", str(res)]) == 0
    assert str(bad) in caplog.text


def test_4_an_invalid_claim_is_named_and_set_aside_once_old(tmp_path, caplog):
    from fsadbench.run.claims import ClaimInfo, ClaimStore

    store = ClaimStore(tmp_path)
    for name, text in (("a.claim", "[1]"), ("b.claim", '{"pid": "12", "host": "h", "token": "t", "started": 1, '
                                                        '"heartbeat": 1, "cells": "abc"}')):
        p = store.dir / "m" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        assert ClaimInfo.read(p) is None
    assert store.live() == [] and (store.dir / "m" / "a.claim").exists()  # young: maybe being written
    for p in (store.dir / "m").iterdir():
        os.utime(p, (1, 1))
    assert store.live() == []
    assert sorted(p.name for p in (tmp_path / "corrupt" / "claims" / "m").iterdir()) == ["a.claim", "b.claim"]
    assert str(store.dir / "m" / "a.claim") in caplog.text


# -- 6: history never hands record contents to git as options -------------------------------------------------
@pytest.mark.slow
def test_6_a_commit_field_is_never_a_git_option(results, tmp_path, monkeypatch, capsys):
    import fsadbench.core.gitinfo as gitinfo  # every git call goes through it

    res, _ = results
    calls = []
    real = subprocess.run
    monkeypatch.setattr(gitinfo.subprocess, "run", lambda args, **kw: calls.append(args) or real(args, **kw))
    monkeypatch.chdir(tmp_path)
    for p, commit in zip(_records(res), ("--output=Z", "abc1234")):
        d = json.loads(p.read_text())
        d["provenance"]["git"]["commit"] = commit
        p.write_text(json.dumps(d))
    assert main(["history", "--method", "memory", "--dataset", "synthetic", "--results-dir", str(res)]) == 0
    assert not (tmp_path / "Z").exists() and not any("--output" in " ".join(c) for c in calls)
    assert calls == [["git", "log", "-1", "--format=%s", "--end-of-options", "abc1234", "--"]]
    capsys.readouterr()


# -- 7: full disk and read-only folders -----------------------------------------------------------------------
def _enospc_after(n_bytes: int, monkeypatch) -> None:
    real = os.write
    budget = [n_bytes]

    def write(fd, data):
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[:budget[0]]))
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


def test_7_enospc_mid_write_leaves_no_partial_file_and_names_the_folder(tmp_path, monkeypatch):
    target = tmp_path / "records" / "r.json"
    atomic_write_text(target, '{"old": true}')
    _enospc_after(10, monkeypatch)
    with pytest.raises(StorageError, match="no space left on the device holding") as e:
        atomic_write_text(target, '{"new": "' + "x" * 1000 + '"}')
    assert str(target.parent) in str(e.value) and e.value.errno == errno.ENOSPC
    assert target.read_text() == '{"old": true}'  # the previous file is intact
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]  # no temp file left


def test_7_enospc_at_fsync_and_a_read_only_folder_are_one_line_errors(tmp_path, monkeypatch):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", no_space)
        with pytest.raises(StorageError, match="no space left"):
            atomic_write_text(tmp_path / "a" / "x.json", "{}")
    assert list((tmp_path / "a").iterdir()) == []

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(StorageError) as e:
        atomic_write_text(tmp_path / "b" / "x.json", "{}")
    assert str(e.value).startswith(f"cannot write to {tmp_path / 'b'} (x.json): Read-only file system")
    assert "\n" not in str(e.value)


@pytest.mark.slow
def test_7_a_full_disk_during_a_sweep_ends_in_one_line_naming_the_folder(tmp_path, swept, monkeypatch, capsys):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    rc = _run(tmp_path / "res", swept / "cache")
    err_lines = [ln for ln in _lines(capsys.readouterr().err) if ln.startswith("error")]
    assert rc == 2 and len(err_lines) == 1 and str(tmp_path / "res") in err_lines[0]
    assert "no space left" in err_lines[0]
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing partial anywhere


# -- 8 and 10: one line per failure, cause first; no unsafe advice ---------------------------------------------
@pytest.fixture()
def boom_method():
    from fsadbench.core.registry import METHODS
    from fsadbench.protocol.method import Method

    class Boom(Method):
        name = "drill-boom"
        variants = ("w/ VG",)

        def fit(self, normals, category):
            raise DataError("the shots of this cell are unusable\nExpected layout:\n  root/\n    train/good/")

        def predict(self, images):  # pragma: no cover - never reached
            raise AssertionError

    if "drill-boom" not in METHODS:
        METHODS.add("drill-boom", Boom)
    return "drill-boom"


@pytest.mark.slow
def test_8_failed_cells_show_their_cause_not_the_last_line_of_the_help(tmp_path, swept, boom_method, capsys):
    rc = main([*SWEEP, "--methods", boom_method, "--results-dir", str(tmp_path / "res"),
               "--cache-dir", str(swept / "cache")])
    err = capsys.readouterr().err
    failed = [ln for ln in err.splitlines() if ln.startswith("FAILED")]
    assert rc == 1 and len(failed) == 2
    assert all(ln.endswith(": the shots of this cell are unusable") for ln in failed)
    rec = json.loads(_records(tmp_path / "res")[0].read_text())
    assert rec["error"].startswith("the shots of this cell are unusable\n") and "Traceback" in rec["error"]
    assert main(["status", "--results-dir", str(tmp_path / "res")]) == 0
    out = capsys.readouterr().out
    assert out.count(": the shots of this cell are unusable") == 2 and "train/good" not in out


def test_8_error_lines_put_the_cause_first():
    try:
        raise ValueError("the real cause\nmore detail")
    except ValueError as exc:
        text = error_text(exc)
    assert error_line(text) == "ValueError: the real cause" and "Traceback" in text
    old = "Traceback (most recent call last):\n  File x\nKeyError: 'k'"  # a record from before error_text
    assert error_line(old) == "KeyError: 'k'"


def test_10_top_level_errors_are_one_line_unless_debug(monkeypatch, capsys):
    import fsadbench.cli as cli
    import fsadbench.cli.listing  # noqa: F401 - the command modules patched below
    import fsadbench.cli.report  # noqa: F401

    def explode(argv):
        raise ValueError("bad thing happened\nsecond line")

    monkeypatch.setattr(cli.listing, "main", explode)
    assert main(["list"]) == 1
    err = capsys.readouterr().err
    assert _lines(err) == ["error: ValueError: bad thing happened (rerun with --debug for the traceback)"]
    assert main(["list", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and _lines(err)[-1] == "error: ValueError: bad thing happened"


def test_10_ctrl_c_at_top_level_is_one_line_and_exit_130(monkeypatch, capsys):
    import fsadbench.cli as cli
    import fsadbench.cli.listing  # noqa: F401 - the command modules patched below
    import fsadbench.cli.report  # noqa: F401

    def interrupted(argv):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli.report, "main", interrupted)
    assert main(["report"]) == 130
    assert _lines(capsys.readouterr().err) == ["interrupted; finished cells are kept, rerun the same command "
                                               "to resume"]


def test_10_a_pickled_checkpoint_is_refused_without_suggesting_weights_only_false(tmp_path, capsys):
    import argparse

    import torch

    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": argparse.Namespace(x=1)}, ckpt)
    rc = main(["--preset", "smoke", "--methods", "memory", "--pretrained", str(ckpt), "--categories", "disc",
               "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "c"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc in (1, 2) and "never unpickles" in err and "weights_only=False" not in err
    assert "set to `False`" not in err
    try:
        torch.load(ckpt, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's own text advises weights_only=False
        assert "False" not in error_summary(exc) and "False" not in error_text(exc).split("\n\n")[0]
        assert "set to `False` will" not in error_text(exc)


# -- 9: feature cache ---------------------------------------------------------------------------------------
def test_9_a_corrupt_cache_entry_is_recomputed_and_replaced(tmp_path, tiny_backbone):
    import torch

    from fsadbench.backbone.features import FeatureStore, token_spec

    refs = random_image_refs(tmp_path / "img", 2, 24, 24)
    spec = token_spec((3,))
    first = FeatureStore(tiny_backbone, cache_dir=tmp_path / "cache").get(refs, spec)
    entries = sorted((tmp_path / "cache" / "features").rglob("*.pt"))
    assert len(entries) == 2
    entries[0].write_bytes(b"garbage")
    store = FeatureStore(tiny_backbone, cache_dir=tmp_path / "cache")
    again = store.get(refs, spec)
    assert store.stats.encoded == 1 and store.stats.disk_hits == 1
    assert all(torch.allclose(first[k], again[k], atol=1e-5) for k in first)
    assert set(torch.load(entries[0], weights_only=True)) == set(first)  # replaced on disk
    third = FeatureStore(tiny_backbone, cache_dir=tmp_path / "cache")
    third.get(refs, spec)
    assert third.stats.disk_hits == 2 and third.stats.encoded == 0


def test_9_an_unwritable_cache_degrades_to_memory_with_one_warning(tmp_path, tiny_backbone, caplog):
    from fsadbench.backbone.features import FeatureStore, token_spec

    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "features").write_text("a file where the cache folder should be")
    refs = random_image_refs(tmp_path / "img", 3, 24, 24)
    store = FeatureStore(tiny_backbone, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="fsadbench"):
        out = store.get(refs, token_spec((3,)))
        store.get(refs[:1] + random_image_refs(tmp_path / "more", 1, 24, 24, seed=7), token_spec((3,)))
    assert out["layer3"].shape[0] == 3 and store.disk_writable is False
    warnings = [r for r in caplog.records if "feature cache not written" in r.getMessage()]
    assert len(warnings) == 1 and str(tmp_path / "cache" / "features") in warnings[0].getMessage()
    assert store.stats.memory_hits == 1


# -- 11: determinism across thread counts -------------------------------------------------------------------
@pytest.mark.slow
def test_11_records_carry_the_thread_count_that_produced_them(swept):
    """Full-tensor reductions split work by thread count, so the count is part of a number's provenance."""
    import torch

    for p in _records(swept / "res"):
        assert json.loads(p.read_text())["provenance"]["device"]["torch_threads"] == torch.get_num_threads()
