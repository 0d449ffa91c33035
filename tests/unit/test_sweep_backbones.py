"""Every backbone of a sweep, checked before the first cell (fsadbench.run.backbones and what it asks of the
backbone layer): which backbones the methods use, the kinds each method declares, the flags that pass a
file for each backbone, all missing checkpoints in one message, and the plan's weights text.

No test downloads: the weights lookups are pointed at empty temporary folders or replaced.
"""

from __future__ import annotations

import pytest

from fsadbench.backbone import load
from fsadbench.backbone.spec import KINDS, BackboneSpec, parse_backbone
from fsadbench.core.errors import ConfigError, WeightsError
from fsadbench.run.backbones import (check_backbones, flag_text, incompatible, missing_weights, used_backbones,
                                     weights_option)
from fsadbench.run.config import MethodSpec, RunConfig
from fsadbench.run.identity import backbone_identity, method_backbone, sweep_backbone

EQUIVALENT_MUTANTS = {
    "fsadbench.run.backbones.x_weights_option__mutmut_14":
        "Method.backbone_flags(None): the sweep's flags do not depend on the name (it is deleted unread)",
    "fsadbench.backbone.load.x_known_open_clip__mutmut_14": "get_close_matches without n=3: 3 is difflib's default",
}


def cfg_of(*methods, model="ViT-B-16-plus-240", pretrained="laion400m_e32", tmp=None) -> RunConfig:
    kw = {"cache_dir": str(tmp)} if tmp is not None else {}
    return RunConfig(methods=[MethodSpec(m) if isinstance(m, str) else m for m in methods], model=model,
                     pretrained=pretrained, **kw)


class FakePlan:
    def __init__(self, methods):
        self.todo = [type("J", (), {"method": m})() for m in methods]


# -- names -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text, meant", [
    ("RESNET18-TINY", "torchvision:resnet18-tiny"), ("Wide_ResNet50_2", "torchvision:wide_resnet50_2"),
    ("DINOV2-tiny", "timm:dinov2-tiny"), ("Timm:vit_small_patch14_dinov2@448", "timm:vit_small_patch14_dinov2"),
    ("Open_Clip:ViT-B-16", "open_clip:ViT-B-16"), ("TORCHVISION:resnet18", "torchvision:resnet18")])
def test_a_known_name_in_another_case_is_refused_with_the_name_meant(text, meant):
    with pytest.raises(ConfigError, match=f"^where: {text!r}: names are case-sensitive; did you mean {meant}\\?$"):
        parse_backbone(text, "none", where="where")


def test_exact_names_still_parse_and_other_bare_names_stay_open_clip():
    assert parse_backbone("resnet18-tiny", "none").family == "torchvision"
    assert parse_backbone("ViT-B-16", "openai") == BackboneSpec("ViT-B-16", "openai")
    assert parse_backbone("open_clip:ViT-L-14-336@518", "openai") == BackboneSpec("ViT-L-14-336", "openai",
                                                                                   image_size=518)


def test_the_sweeps_model_is_read_as_family_model_size():
    spec = sweep_backbone(cfg_of("winclip", model="open_clip:fsad-tiny-vit", pretrained="none"))
    assert spec == BackboneSpec("fsad-tiny-vit", "none")
    plain = cfg_of("winclip", model="fsad-tiny-vit", pretrained="none")
    assert backbone_identity(plain, spec) == backbone_identity(plain, sweep_backbone(plain))  # same resume key
    assert sweep_backbone(cfg_of("winclip", model="ViT-L-14-336@518")).image_size == 518
    assert sweep_backbone(cfg_of("winclip", model="timm:resnet10t")).family == "timm"
    with pytest.raises(ConfigError, match=r"^backbone model \(--model\): 'RESNET18-TINY': .*torchvision:resnet18-tiny"):
        sweep_backbone(cfg_of("winclip", model="RESNET18-TINY"))


# -- kinds -------------------------------------------------------------------------------------------------
def test_backbone_kind_of_each_family_without_weights():
    assert load.backbone_kind(parse_backbone("timm:dinov2-tiny", "none")) == "timm-vit"
    assert load.backbone_kind(parse_backbone("timm:vit_small_patch14_dinov2@448", "lvd142m")) == "timm-vit"
    assert load.backbone_kind(parse_backbone("timm:resnet10t", "none")) == "timm-cnn"
    assert load.backbone_kind(parse_backbone("wide_resnet50_2", "IMAGENET1K_V1")) == "torchvision"
    assert load.backbone_kind(BackboneSpec("fsad-tiny-vit", "none")) == "open_clip"  # the shipped config
    assert load.backbone_kind(BackboneSpec("ViT-L-14-336", "openai", image_size=518)) == "open_clip"
    assert set(KINDS) == {"open_clip", "torchvision", "timm-cnn", "timm-vit"}


def test_a_model_its_family_lacks_is_refused_by_name():
    with pytest.raises(ConfigError, match="^backbone timm:no_such_net: timm has no model 'no_such_net'"):
        load.backbone_kind(parse_backbone("timm:no_such_net", "none"))
    with pytest.raises(ConfigError, match=r"^backbone open_clip:ViT-B-16-plsu: open_clip has no model "
                                          r"'ViT-B-16-plsu'; did you mean ViT-B-16-plus[ -]"):
        load.backbone_kind(BackboneSpec("ViT-B-16-plsu", "none"))
    with pytest.raises(ConfigError, match="did you mean torchvision:wide_resnet50_2"):
        load.backbone_kind(BackboneSpec("wide_resnet50-2", "none"))
    with pytest.raises(ConfigError, match="has no model 'vit-b-16'; did you mean ViT-B-16[ ?]"):  # the case
        load.backbone_kind(BackboneSpec("vit-b-16", "none"))
    with pytest.raises(ConfigError, match=r"has no model 'zzzz'; \(open_clip.list_models\(\)"):  # nothing close
        load.backbone_kind(BackboneSpec("zzzz", "none"))


def test_the_names_meant_are_the_three_closest_at_ratio_075(monkeypatch):
    import open_clip

    load.known_open_clip("fsad-tiny-vit")  # the shipped configs registered first
    monkeypatch.setattr(open_clip, "list_models", lambda: ["ViT-B-16", "ViT-S-16", "ViT-M-16", "ViT-L-16", "RN50"])
    with pytest.raises(ConfigError, match=r"^backbone open_clip:vit-b-16: open_clip has no model 'vit-b-16'; did you "
                                          r"mean ViT-B-16 or ViT-S-16 or ViT-M-16\? \(open_clip.list_models"):
        load.known_open_clip("vit-b-16")
    with pytest.raises(ConfigError, match=r"has no model 'vit-x-99'; \(open_clip"):  # ratio 0.625: no hint
        load.known_open_clip("vit-x-99")
    load.known_open_clip("RN50")


def test_load_backbone_hands_the_cache_folder_to_the_open_clip_adapter(monkeypatch):
    from fsadbench.backbone import clip

    monkeypatch.setattr(clip, "Backbone", lambda spec, device, cache_dir, option: (spec, device, cache_dir, option))
    spec = BackboneSpec("ViT-B-16", "openai")
    assert load.load_backbone(spec, device="cpu", cache_dir="/c") == (spec, "cpu", "/c", None)
    assert load.load_backbone(spec, "cpu", "/c", option="--x={file}") == (spec, "cpu", "/c", "--x={file}")


def test_each_method_declares_the_kinds_it_runs_on():
    from fsadbench.core.registry import METHODS

    declared = {name: METHODS.get(name)[0].backbone_kinds for name in METHODS.names()}
    assert declared.pop("anomalydino") == ("timm-vit",)
    for name in ("patchcore", "padim", "spade", "fastrecon"):
        assert declared.pop(name) == ("torchvision", "timm-cnn")
    assert declared.pop("regad") == ("torchvision",)  # a torchvision ResNet's stem and layers, copied
    assert set(declared.values()) == {("open_clip",)}  # the CLIP methods, anomalyclip on its own open_clip


@pytest.mark.parametrize("method, backbone, kind, needs, flag", [
    ("patchcore", "timm:dinov2-tiny", "timm-vit", "a torchvision ResNet-style CNN", "--method-option patchcore.backbone="),
    ("anomalyclip", "timm:dinov2-tiny", "timm-vit", "an open_clip CLIP model", "--method-option anomalyclip.backbone="),
    ("padim", "open_clip:fsad-tiny-vit", "open_clip", "a torchvision", "--method-option padim.backbone="),
    ("anomalydino", "resnet18-tiny", "torchvision", "a timm ViT", "--method-option anomalydino.backbone=")])
def test_a_backbone_its_method_cannot_use_is_one_line(method, backbone, kind, needs, flag):
    spec = MethodSpec(method, {"backbone": backbone, "backbone_weights": "none"})
    lines = incompatible(cfg_of(spec, "memory", model="fsad-tiny-vit", pretrained="none"), [spec])
    assert lines == [f"method {spec.id!r} cannot use backbone {parse_backbone(backbone, 'none').name}, {KINDS[kind]}: "
                     f"it needs {lines[0].split('it needs ')[1].split(';')[0]}; choose one with {flag}NAME"]
    assert f"it needs {needs}" in lines[0]


def test_incompatible_reads_the_methods_given_and_goes_on_after_an_unknown_model():
    pc = MethodSpec("patchcore", {"backbone": "timm:dinov2-tiny"})
    dino = MethodSpec("anomalydino", {"backbone": "timm:no_such_net"})
    pd = MethodSpec("padim", {"backbone": "fsad-tiny-vit", "backbone_weights": "none"})
    cfg = cfg_of(dino, pc, pd, model="fsad-tiny-vit", pretrained="none")
    padim_line = ("method 'padim[backbone=fsad-tiny-vit,backbone_weights=none]' cannot use backbone "
                  "open_clip:fsad-tiny-vit, an open_clip CLIP model (image and text towers): it needs a torchvision "
                  "ResNet-style CNN (feature maps layer1..layer4) or a timm CNN (feature maps by stage); choose one "
                  "with --method-option padim.backbone=NAME")
    assert incompatible(cfg, [pd]) == [padim_line]
    lines = incompatible(cfg)  # all the sweep's, on past the unknown model
    assert len(lines) == 3 and lines[2] == padim_line
    assert lines[0].startswith("backbone timm:no_such_net: timm has no model 'no_such_net'")
    assert lines[1].startswith("method 'patchcore[backbone=timm:dinov2-tiny]' cannot use backbone timm:dinov2-tiny")


def test_the_sweeps_backbone_is_refused_for_every_clip_method_naming_model():
    cfg = cfg_of("winclip", "memory", "patchcore", model="timm:resnet10t", pretrained="none")
    assert incompatible(cfg, cfg.methods) == [
        f"method '{m}' cannot use backbone timm:resnet10t, a timm CNN (feature maps by stage): it needs an "
        f"open_clip CLIP model (image and text towers); choose one with --model NAME" for m in ("winclip", "memory")]


def test_an_unknown_model_names_the_methods_using_it():
    cfg = cfg_of("winclip", "apt", model="ViT-B-16-plsu", pretrained="none")
    (line,) = incompatible(cfg, cfg.methods)
    assert line.startswith("backbone open_clip:ViT-B-16-plsu: open_clip has no model") and line.endswith(
        " (used by winclip, apt)")


# -- which backbones, which flags ----------------------------------------------------------------------------
def test_only_the_backbones_some_method_uses():
    assert list(used_backbones(cfg_of("padim"))) == [parse_backbone("wide_resnet50_2", "IMAGENET1K_V1")]
    assert list(used_backbones(cfg_of("anomalyclip"))) == [BackboneSpec("ViT-L-14-336", "openai", image_size=518)]
    cfg = cfg_of("winclip", "patchcore", "apt", "padim")
    assert {s.name: [m.id for m in ms] for s, ms in used_backbones(cfg).items()} == {
        "open_clip:ViT-B-16-plus-240": ["winclip", "apt"], "torchvision:wide_resnet50_2": ["patchcore", "padim"]}
    assert list(used_backbones(cfg, [MethodSpec("apt")])) == [BackboneSpec("ViT-B-16-plus-240", "laion400m_e32")]


def test_the_flags_that_pass_a_file_name_the_option_that_sets_each_backbone():
    cfg = cfg_of("winclip", model="open_clip:ViT-B-16")
    assert weights_option(cfg, [MethodSpec("winclip"), MethodSpec("apt")]) == "--model open_clip:ViT-B-16 --pretrained {file}"
    assert weights_option(cfg, [MethodSpec("patchcore"), MethodSpec("patchcore", {"coreset_ratio": 0.1}),
                                MethodSpec("padim")]) == (
        "--method-option patchcore.backbone_weights={file} and --method-option padim.backbone_weights={file}")
    assert weights_option(cfg, [MethodSpec("anomalyclip")]) == "--method-option anomalyclip.backbone_weights={file}"
    assert flag_text("--model", "X") == "--model X" and flag_text("--m a.b=", "X") == "--m a.b=X"


def test_the_flags_name_the_method_as_registered():
    from fsadbench.methods.patchcore.model import PatchCoreMethod
    from fsadbench.protocol.method import Method

    assert PatchCoreMethod.backbone_flags("pc2") == ("--method-option pc2.backbone=",
                                                     "--method-option pc2.backbone_weights=")
    assert Method.backbone_flags("winclip") == ("--model", "--pretrained")


# -- missing weights -----------------------------------------------------------------------------------------
def test_a_missing_checkpoint_path_is_a_missing_file_in_every_family(tmp_path):
    for text in ("resnet18", "timm:resnet10t", "open_clip:ViT-B-16"):
        spec = parse_backbone(text, str(tmp_path / "no.pth"))
        with pytest.raises(WeightsError, match=f"^checkpoint file {tmp_path}/no.pth does not exist "
                                               f"\\(backbone {spec.name}\\); pass an existing file, a tag, or none$"):
            load.check_backbone_weights(spec)
    with pytest.raises(WeightsError, match=r"\(backbone torchvision:resnet18\) \(set by --method-option "
                                           f"padim.backbone_weights={tmp_path}/no.pth\\); pass"):
        load.check_backbone_weights(parse_backbone("resnet18", str(tmp_path / "no.pth")),
                                    option="--method-option padim.backbone_weights={file}")


def test_an_open_clip_remedy_names_the_option_given(tmp_path, monkeypatch):
    from fsadbench.backbone import checkpoints, weights

    monkeypatch.setattr(checkpoints, "reachable", lambda *a, **k: False)  # offline, empty caches (conftest)
    with pytest.raises(WeightsError) as err:
        load.check_backbone_weights(BackboneSpec("ViT-L-14-336", "openai"), str(tmp_path),
                                    option="--method-option anomalyclip.backbone_weights={file}")
    assert ("  1. download it on a machine with internet and pass the file: "
            "--method-option anomalyclip.backbone_weights=/path/to/open_clip_pytorch_model.bin"
            ) in str(err.value).splitlines()
    with pytest.raises(WeightsError) as err:  # the default: the sweep's flags
        weights.check_weights("ViT-L-14-336", "openai", str(tmp_path))
    assert "pass the file: --model ViT-L-14-336 --pretrained /path/to/open_clip_pytorch_model.bin" in str(err.value)


def test_a_family_tag_remedy_names_the_option_given(tmp_path, monkeypatch):
    import torch

    from fsadbench.backbone import torchvision_family
    from fsadbench.backbone.vision import with_option

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision_family, "reachable", lambda host: False)
    option = "--method-option patchcore.backbone_weights={file} and --method-option padim.backbone_weights={file}"
    with pytest.raises(WeightsError) as err:
        load.check_backbone_weights(parse_backbone("wide_resnet50_2", "IMAGENET1K_V1"), option=option)
    f = "/path/to/wide_resnet50_2-95faca4d.pth"
    assert (f"  1. download it on a machine with internet and pass the file: --method-option "
            f"patchcore.backbone_weights={f} and --method-option padim.backbone_weights={f}") in str(err.value).splitlines()
    assert "METHOD" not in str(err.value)
    with pytest.raises(WeightsError, match="pass the file: --method-option METHOD.backbone_weights=/path/to/"):
        load.check_backbone_weights(parse_backbone("wide_resnet50_2", "IMAGENET1K_V1"))  # no option: as before
    assert with_option("a --method-option METHOD.backbone_weights=/p/f.bin b", "--x={file}") == "a --x=/p/f.bin b"


def fake_check(missing):
    """check_backbone_weights that fails for the specs named in ``missing`` and records its calls."""
    calls = []

    def check(spec, cache_dir=None, option=None):
        calls.append((spec.name, option))
        if spec.name in missing:
            raise WeightsError(f"could not load weights {spec.name}\nRemedies:\n  1. {option.format(file='F')}")

    return check, calls


def test_every_missing_checkpoint_is_named_in_one_message(monkeypatch, tmp_path):
    check, calls = fake_check({"torchvision:wide_resnet50_2", "timm:vit_small_patch14_dinov2@448",
                               "open_clip:ViT-B-16-plus-240"})
    monkeypatch.setattr(load, "check_backbone_weights", check)
    cfg = cfg_of("patchcore", "anomalydino", "winclip", "padim", tmp=tmp_path)
    with pytest.raises(WeightsError) as err:
        check_backbones(cfg, FakePlan(cfg.methods))
    assert str(err.value).splitlines() == [
        "3 backbone checkpoints cannot be loaded; nothing was run. Each, with its file and remedies:",
        "[1/3] could not load weights torchvision:wide_resnet50_2", "      Remedies:",
        "        1. --method-option patchcore.backbone_weights=F and --method-option padim.backbone_weights=F",
        "[2/3] could not load weights timm:vit_small_patch14_dinov2@448", "      Remedies:",
        "        1. --method-option anomalydino.backbone_weights=F",
        "[3/3] could not load weights open_clip:ViT-B-16-plus-240", "      Remedies:",
        "        1. --model ViT-B-16-plus-240 --pretrained F"]
    assert len(calls) == 3  # one check per backbone, not per method


def test_one_missing_checkpoint_keeps_its_own_text_and_only_methods_still_to_run_are_checked(monkeypatch, tmp_path):
    check, calls = fake_check({"torchvision:wide_resnet50_2", "open_clip:ViT-B-16-plus-240"})
    monkeypatch.setattr(load, "check_backbone_weights", check)
    cfg = cfg_of("patchcore", "winclip", tmp=tmp_path)
    with pytest.raises(WeightsError) as err:
        check_backbones(cfg, FakePlan([MethodSpec("winclip")]))  # patchcore's cells are all done
    assert str(err.value) == ("could not load weights open_clip:ViT-B-16-plus-240\nRemedies:\n"
                              "  1. --model ViT-B-16-plus-240 --pretrained F")
    assert calls == [("open_clip:ViT-B-16-plus-240", "--model ViT-B-16-plus-240 --pretrained {file}")]
    check_backbones(cfg, FakePlan([]))  # nothing to run: nothing to load
    assert missing_weights(cfg, []) == [] and len(calls) == 1
    seen = []
    monkeypatch.setattr(load, "check_backbone_weights", lambda spec, cache_dir=None, option=None: seen.append(cache_dir))
    check_backbones(cfg, FakePlan(cfg.methods))
    assert seen == [str(tmp_path / "weights")] * 2  # the harness's weights cache


def test_an_unusable_backbone_is_refused_before_the_weights_are_looked_for(monkeypatch):
    monkeypatch.setattr(load, "check_backbone_weights", lambda *a, **k: pytest.fail("weights looked for"))
    bad = [MethodSpec("patchcore", {"backbone": "timm:dinov2-tiny"}), MethodSpec("padim", {"backbone": "ViT-B-16",
                                                                                "backbone_weights": "openai"})]
    cfg = cfg_of(*bad, "winclip")
    with pytest.raises(ConfigError) as err:
        check_backbones(cfg, FakePlan([]))  # every method of the sweep, whether or not its cells are done
    lines = str(err.value).splitlines()
    assert [ln.split(" cannot use")[0] for ln in lines] == ["method 'patchcore[backbone=timm:dinov2-tiny]'",
                                                            "method 'padim[backbone=ViT-B-16,backbone_weights=openai]'"]


# -- the plan's weights text ----------------------------------------------------------------------------------
def test_weights_text_says_where_each_backbones_weights_come_from(tmp_path):
    import hashlib

    f = tmp_path / "w.pth"
    f.write_bytes(b"x" * 1_500_000)  # 1.5 MB: rounds to 2 (1.4999985 would round to 1)
    sha = hashlib.sha256(f.read_bytes()).hexdigest()
    assert load.weights_text(BackboneSpec("ViT-B-16", "none")) == "RANDOM init (a pipeline check, not a benchmark)"
    assert load.weights_text(parse_backbone("resnet18", str(f))) == f"file {f} (2 MB, sha256 {sha[:16]})"
    assert load.weights_text(parse_backbone("resnet18", str(tmp_path / "n.pt"))) == \
        f"file {tmp_path}/n.pt, which does NOT exist"
    # tags: the one file, not cached (empty caches: conftest), with its address; open_clip with its size
    assert load.weights_text(parse_backbone("wide_resnet50_2", "IMAGENET1K_V1"), str(tmp_path)) == (
        "torchvision tag IMAGENET1K_V1 = wide_resnet50_2-95faca4d.pth, NOT in any cache: downloaded on first use "
        "from https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth; sha256 on first load")
    assert load.weights_text(parse_backbone("timm:vit_small_patch14_dinov2", "lvd142m"), str(tmp_path)) == (
        "timm tag lvd142m = model.safetensors, NOT in any cache: downloaded on first use from "
        "https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors; "
        "sha256 on first load")
    e32 = load.weights_text(BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"), str(tmp_path))
    assert e32.startswith("open_clip tag laion400m_e32 = vit_b_16_plus_240-laion400m_e32-699c4b84.pt, NOT in any")
    assert "e31" not in e32 and ", about 834 MB; sha256 on first load" in e32
    # found in a cache: which one, where, and the file's sha256
    hit = tmp_path / "harness" / "vit_b_16_plus_240-laion400m_e32-699c4b84.pt"
    hit.parent.mkdir()
    hit.write_bytes(b"e32")
    assert load.weights_text(BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"), str(tmp_path / "harness")) == (
        f"open_clip tag laion400m_e32 = vit_b_16_plus_240-laion400m_e32-699c4b84.pt, found in the harness cache "
        f"({hit}), sha256 {hashlib.sha256(b'e32').hexdigest()[:16]}")


def test_a_cells_backbone_is_built_with_the_flags_that_set_it(tmp_path, monkeypatch):
    """In a cell, a method's own backbone names --method-option NAME.backbone_weights in its remedies, the
    sweep's CLIP --model/--pretrained (what planning prints, in case the file vanished in between)."""
    from fsadbench.backbone import load as load_mod
    from fsadbench.run.resources import Resources

    seen = {}
    monkeypatch.setattr(load_mod, "load_backbone",
                        lambda spec, device, cache_dir, option: seen.setdefault(spec, option) and None
                        or type("B", (), {"is_random": False})())
    cfg = cfg_of("patchcore", "winclip", tmp=tmp_path)
    res = Resources(cfg)
    res.backbone_of(method_backbone(cfg, cfg.methods[0]))
    res.backbone_of(sweep_backbone(cfg))
    assert list(seen.values()) == ["--method-option patchcore.backbone_weights={file}",
                                   "--model ViT-B-16-plus-240 --pretrained {file}"]
