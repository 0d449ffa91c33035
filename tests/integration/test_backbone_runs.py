"""Sweeps with methods on several backbones: records, resume keys, the folder rule, tables, weights check.

Synthetic data; the pipeline check's tiny random backbones (seconds per run).
"""

from __future__ import annotations

import json

import pytest

from fsadbench.core.errors import ConfigError
from fsadbench.results.records import RecordStore
from fsadbench.run import sweep
from fsadbench.run.config import DatasetSpec, MethodSpec, Protocol, RunConfig

SYN = {"size": 64, "n_train": 3, "n_test_good": 2, "n_test_bad": 2}


def _cfg(tmp_path, methods=("patchcore", "memory"), **kw) -> RunConfig:
    base = dict(methods=[MethodSpec(m) if isinstance(m, str) else m for m in methods],
                datasets=[DatasetSpec("synthetic", categories=["disc"], options=dict(SYN))],
                shots=[1], seeds=[0], model="fsad-tiny-vit", pretrained="none", protocol=Protocol(eval_size=32),
                results_dir=str(tmp_path / "res"), cache_dir=str(tmp_path / "cache"), device="cpu", batch_size=8)
    base.update(kw)
    return RunConfig(**base)


@pytest.fixture(scope="module")
def two_backbones(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bb")
    summary = sweep(_cfg(tmp))
    return tmp, summary


def records(tmp):
    return {r.key["method"]: r for r in RecordStore(tmp / "res").records()}


def test_each_record_names_its_methods_backbone(two_backbones):
    tmp, summary = two_backbones
    assert summary.failed == 0
    recs = records(tmp)
    pc, mem = recs["patchcore"], recs["memory"]
    assert pc.backbone["family"] == "torchvision" and pc.backbone["model"] == "wide_resnet50_2-tiny"
    assert pc.backbone["random_weights"] is True and pc.backbone["precision"] == "fp32"
    assert mem.backbone["family"] == "open_clip" and mem.backbone["model"] == "fsad-tiny-vit"
    assert pc.schema_version == 3 and pc.method["describe"]["backbone"] == "torchvision:wide_resnet50_2-tiny"


def test_resume_keys_name_the_family_only_off_open_clip(two_backbones):
    recs = records(two_backbones[0])
    assert recs["patchcore"].identity["backbone"] == {"model": "wide_resnet50_2-tiny", "pretrained": "none",
                                                      "weights": "random-init:0", "precision": "fp32",
                                                      "family": "torchvision"}
    # a CLIP method's key is what it was before backbones had families: its old records stay done
    assert recs["memory"].identity["backbone"] == {"model": "fsad-tiny-vit", "pretrained": "none",
                                                   "weights": "random-init:0", "precision": "fp32"}


def test_several_backbones_share_a_folder_and_resume(two_backbones):
    tmp, _ = two_backbones
    again = sweep(_cfg(tmp))
    assert again.skipped == 2 and again.computed == 0


def test_one_backbone_per_method_per_folder(two_backbones, monkeypatch):
    from fsadbench.methods.patchcore.model import PatchCoreMethod

    tmp, _ = two_backbones
    monkeypatch.setattr(PatchCoreMethod, "backbone_tiny", "torchvision:resnet18-tiny")
    with pytest.raises(ConfigError, match=r"holds 1 record\(s\) of another run: patchcore backbone.model: folder has "
                                          r"'wide_resnet50_2-tiny', this run 'resnet18-tiny'\. A results folder "
                                          r"holds one comparable run \(one backbone per method\)"):
        sweep(_cfg(tmp, methods=("patchcore",)))
    # the memory records (another method, another backbone) are no conflict
    assert sweep(_cfg(tmp, methods=("memory",))).skipped == 1


def test_the_resume_key_follows_the_methods_backbone(tmp_path, monkeypatch):
    from fsadbench.methods.patchcore.model import PatchCoreMethod
    from fsadbench.run.identity import static_identity
    from fsadbench.run.plan import Job

    cfg = _cfg(tmp_path, methods=("patchcore",))
    job = Job(cfg.methods[0], cfg.datasets[0], ["disc"], 1, 0)
    before = static_identity(cfg, job)
    monkeypatch.setattr(PatchCoreMethod, "backbone_tiny", "torchvision:resnet18-tiny@96")
    after = static_identity(cfg, job)
    assert before["backbone"]["model"] == "wide_resnet50_2-tiny" and "image_size" not in before["backbone"]
    assert after["backbone"]["model"] == "resnet18-tiny" and after["backbone"]["image_size"] == 96
    opt = _cfg(tmp_path, methods=(MethodSpec("patchcore", {"backbone_weights": str(tmp_path)}),))
    (tmp_path / "w.pt").write_bytes(b"w")
    opt.methods[0].options["backbone_weights"] = str(tmp_path / "w.pt")
    ident = static_identity(opt, Job(opt.methods[0], opt.datasets[0], ["disc"], 1, 0))["backbone"]
    assert ident["weights"].startswith("file-sha1:") and ident["pretrained"] == str(tmp_path / "w.pt")


def test_a_schema_2_record_loads_as_open_clip_and_stays_done(tmp_path):
    cfg = _cfg(tmp_path, methods=("memory",))
    sweep(cfg)
    path = next((tmp_path / "res" / "records").rglob("*.json"))
    d = json.loads(path.read_text())
    d["schema_version"] = 2
    d["backbone"].pop("family")
    path.write_text(json.dumps(d))
    r = RecordStore(tmp_path / "res").records()[0]
    assert r.migrated_from == 2 and r.backbone["family"] == "open_clip" and r.backbone["model"] == "fsad-tiny-vit"
    assert sweep(cfg).skipped == 1


def test_tables_name_each_rows_backbone(two_backbones):
    from fsadbench.reports.render import to_markdown
    from fsadbench.reports.tables import ResultSet, category_table, main_table

    recs = RecordStore(two_backbones[0] / "res").records()
    t = main_table(ResultSet(recs))
    assert t.row_headers == ["shots", "method", "backbone"]
    assert "| shots | method | backbone |" in " ".join(to_markdown(t).split()).replace(" :", ":")
    rows = {r[0][1]: r[0][2] for r in main_table(ResultSet(recs)).rows}
    assert rows == {"patchcore": "wide_resnet50_2-tiny", "memory": "fsad-tiny-vit"}
    t = main_table(ResultSet([r for r in recs if r.key["method"] == "memory"]))
    assert t.row_headers == ["shots", "method"] and "backbone of every row: fsad-tiny-vit." in t.notes
    notes = category_table(ResultSet(recs), "synthetic", 1).notes
    assert "backbones: memory = fsad-tiny-vit; patchcore = wide_resnet50_2-tiny." in notes or \
        "backbones: patchcore = wide_resnet50_2-tiny; memory = fsad-tiny-vit." in notes


def test_mixing_is_named_only_within_one_method(two_backbones):
    import dataclasses

    from fsadbench.results.comparability import describe_mixed, mixed

    recs = RecordStore(two_backbones[0] / "res").records()
    assert mixed(recs) == {}
    pc = next(r for r in recs if r.key["method"] == "patchcore")
    other = dataclasses.replace(pc, key={**pc.key, "category": "c2"}, backbone={**pc.backbone, "model": "resnet18-tiny"})
    mix = mixed([*recs, other])
    assert list(mix) == ["backbone"] and len(mix["backbone"]) == 2
    assert describe_mixed(mix)[0].startswith("backbone of one method (family, model, pretrained, weights fingerprint, "
                                             "precision) differs between records: ('patchcore', 'torchvision', ")


def test_plan_has_one_line_per_backbone_with_its_methods(tmp_path):
    from fsadbench.run.plan import Plan
    from fsadbench.run.preview import plan_text
    from fsadbench.run.resources import DataSource

    cfg = _cfg(tmp_path, methods=("patchcore", "anomalydino", "memory", "padim"))
    data = DataSource(cfg)
    lines = plan_text(cfg, Plan.build(cfg, data, RecordStore(cfg.results_dir)), data).splitlines()
    random = "weights: RANDOM init (a pipeline check, not a benchmark)"
    assert [ln for ln in lines if ln.startswith("  backbone")] == [
        f"  backbone: torchvision:wide_resnet50_2-tiny (patchcore, padim); {random}",
        f"  backbone: timm:dinov2-tiny (anomalydino); {random}",
        f"  backbone: open_clip:fsad-tiny-vit (memory); {random}"]


def test_offline_weights_are_refused_before_any_cell_naming_the_method(tmp_path, monkeypatch, capsys):
    import torch

    from fsadbench.backbone import torchvision_family
    from fsadbench.cli import main

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision_family, "reachable", lambda host: False)
    args = ["--methods", "patchcore", "--datasets", "synthetic", "--categories", "disc", "--shots", "1",
            "--seeds", "0", "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"),
            "--model", "fsad-tiny-vit", "--pretrained", "openai-nope.pt", "--no-progress"]
    (tmp_path / "openai-nope.pt").write_bytes(b"x")
    args[args.index("openai-nope.pt")] = str(tmp_path / "openai-nope.pt")
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "could not load weights 'torchvision:wide_resnet50_2' / 'IMAGENET1K_V1'" in err
    assert "--method-option patchcore.backbone_weights=/path/to/wide_resnet50_2-95faca4d.pth" in err
    assert not (tmp_path / "res" / "records").exists()


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No network and empty caches for every family (torch hub, the Hugging Face hub, open_clip)."""
    import huggingface_hub.constants as hf_constants
    import torch

    from fsadbench.backbone import torchvision_family

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision_family, "reachable", lambda host: False)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    for var in ("HF_HOME", "HF_HUB_CACHE", "TORCH_HOME"):
        monkeypatch.setenv(var, str(tmp_path / "empty"))
    return tmp_path


THREE = ["https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",  # patchcore's
         "https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors",  # anomalydino's
         "--method-option patchcore.backbone_weights=/path/to/wide_resnet50_2-95faca4d.pth",
         "--method-option anomalydino.backbone_weights=/path/to/model.safetensors",
         "--model ViT-B-16-plus-240 --pretrained /path/to/"]  # winclip's: the sweep's CLIP


@pytest.mark.parametrize("dry_run", [False, True])
def test_the_cli_names_every_missing_checkpoint_at_once(offline, capsys, dry_run):
    from fsadbench.cli import main

    args = ["--methods", "patchcore,anomalydino,winclip", "--datasets", "synthetic", "--categories", "disc",
            "--shots", "1", "--seeds", "0", "--max-test-images", "2", "--results-dir", str(offline / "res"),
            "--cache-dir", str(offline / "cache"), "--no-progress"] + (["--dry-run"] if dry_run else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "error: 3 backbone checkpoints cannot be loaded; nothing was run." in err
    assert all(text in err for text in THREE), [t for t in THREE if t not in err]
    assert not (offline / "res" / "records").exists()


def test_the_api_raises_naming_every_missing_checkpoint(offline):
    import fsadbench
    from fsadbench.core.errors import WeightsError

    cfg = _cfg(offline, methods=("patchcore", "anomalydino", "winclip"), model="ViT-B-16-plus-240",
               pretrained="laion400m_e32")
    with pytest.raises(WeightsError) as err:
        fsadbench.run(cfg)
    assert all(text in str(err.value) for text in THREE)
    assert not (offline / "res" / "records").exists() and not (offline / "res" / "run.json").exists()


def test_a_backbone_a_method_cannot_use_is_refused_before_any_cell(tmp_path):
    bad = [MethodSpec("patchcore", {"backbone": "timm:dinov2-tiny"}), MethodSpec("memory")]
    with pytest.raises(ConfigError, match=r"^method 'patchcore\[backbone=timm:dinov2-tiny\]' cannot use backbone "
                                          r"timm:dinov2-tiny, a timm ViT \(patch tokens by block\): it needs a "
                                          r"torchvision ResNet-style CNN"):
        sweep(_cfg(tmp_path, methods=bad))
    assert not (tmp_path / "res" / "records").exists()


def test_the_dry_run_refuses_every_unusable_backbone_in_one_message(tmp_path, capsys):
    from fsadbench.cli import main

    args = ["--methods", "patchcore,anomalyclip,padim,winclip", "--categories", "disc", "--shots", "1", "--seeds",
            "0", "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--dry-run",
            "--method-option", "patchcore.backbone=timm:dinov2-tiny", "--method-option",
            "anomalyclip.backbone=timm:dinov2-tiny", "--method-option", "padim.backbone=open_clip:fsad-tiny-vit"]
    assert main(args) == 2
    err = capsys.readouterr().err.splitlines()
    refused = [ln.removeprefix("error: ").split(" cannot use")[0] for ln in err if " cannot use backbone " in ln]
    assert refused == ["method 'patchcore[backbone=timm:dinov2-tiny]'", "method 'anomalyclip[backbone=timm:dinov2-tiny]'",
                       "method 'padim[backbone=open_clip:fsad-tiny-vit]'"]


def test_a_sweep_without_clip_methods_does_not_advertise_the_clip_download(tmp_path):
    from fsadbench.run.plan import Plan
    from fsadbench.run.preview import plan_text
    from fsadbench.run.resources import DataSource

    cfg = _cfg(tmp_path, methods=("padim",), model="ViT-B-16-plus-240", pretrained="laion400m_e32")
    data = DataSource(cfg)
    text = plan_text(cfg, Plan.build(cfg, data, RecordStore(cfg.results_dir)), data)
    assert [ln for ln in text.splitlines() if "backbone" in ln] == [
        "  backbone: torchvision:wide_resnet50_2 (padim); weights: torchvision tag IMAGENET1K_V1 = "
        "wide_resnet50_2-95faca4d.pth, NOT in any cache: downloaded on first use from "
        "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth; sha256 on first load"]
