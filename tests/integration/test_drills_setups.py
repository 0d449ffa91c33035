"""Drills of issue 33, the results folder: records of two setups never supersede each other silently.

Two runners started into one empty folder with the same method id and different
backbones moved each other's records to ``superseded/`` and reported failed cells
without a cause; now the first to start writes the method's setup
(:mod:`fsadbench.run.setups`) and the second is refused at planning with the reason.
"""

from __future__ import annotations

from fsadbench.cli import main
from fsadbench.results.records import RecordStore
from fsadbench.run.executors.local import LocalExecutor

PIPE = ["--methods", "memory", "--categories", "disc", "--shots", "1", "--seeds", "0", "--no-progress",
        "--pretrained", "none"]


def _runner(tmp_path, model, *extra):
    return main([*PIPE, "--model", model, "--results-dir", str(tmp_path / "res"), "--cache-dir",
                 str(tmp_path / "cache"), *extra])


def test_a_second_runner_with_another_backbone_is_refused_while_the_first_runs(tmp_path, monkeypatch, capsys):
    seen = {}
    real = LocalExecutor._run

    def first_runs(self, res, todo, force, progress):
        if "second" not in seen:  # the first runner has planned, no record yet: the second starts now
            seen["second"] = _runner(tmp_path, "ViT-B-32")
            seen["second_dry"] = _runner(tmp_path, "ViT-B-32", "--dry-run")
            seen["err"] = capsys.readouterr().err
        return real(self, res, todo, force, progress)

    monkeypatch.setattr(LocalExecutor, "_run", first_runs)
    assert _runner(tmp_path, "fsad-tiny-vit") == 0
    assert seen["second"] == 2 and seen["second_dry"] == 2
    errors = [ln for ln in seen["err"].splitlines() if ln.startswith("error: ")]
    assert len(errors) == 2 and all("method memory is set up differently there by pid" in e for e in errors)
    assert "backbone.model: folder has 'fsad-tiny-vit', this run 'ViT-B-32'" in errors[0]
    assert "use another --results-dir, or --force" in errors[0]
    store = RecordStore(tmp_path / "res")
    assert [r.status for r in store] == ["ok"] and store.superseded() == []  # was: each moved the other's


def test_the_same_setup_resumes_and_force_replaces_the_setup(tmp_path, capsys):
    assert _runner(tmp_path, "fsad-tiny-vit") == 0
    assert _runner(tmp_path, "fsad-tiny-vit") == 0  # the same setup: resume, no refusal
    setups = list((tmp_path / "res" / "setups").glob("*.json"))
    assert len(setups) == 1 and '"model": "fsad-tiny-vit"' in setups[0].read_text()
    assert not list((tmp_path / "res" / "setups").glob(".tmp-*"))
    capsys.readouterr()


def test_a_setup_without_records_still_refuses_and_force_takes_over(tmp_path, capsys):
    from fsadbench.run.config import build_config
    from fsadbench.run.plan import method_setups
    from fsadbench.run.setups import record_setups

    cfg = build_config(None, None, {"methods": "memory", "model": "ViT-B-32", "pretrained": "none",
                                    "results_dir": str(tmp_path / "res")})
    record_setups(cfg.results_dir, method_setups(cfg))  # a runner started, killed before any record
    assert _runner(tmp_path, "fsad-tiny-vit", "--dry-run") == 2
    assert "backbone.model: folder has 'ViT-B-32', this run 'fsad-tiny-vit'" in capsys.readouterr().err
    assert _runner(tmp_path, "fsad-tiny-vit", "--force") == 0
    assert '"model": "fsad-tiny-vit"' in next((tmp_path / "res" / "setups").glob("*.json")).read_text()
    assert _runner(tmp_path, "fsad-tiny-vit") == 0
