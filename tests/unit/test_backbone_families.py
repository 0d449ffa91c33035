"""Backbone families: the spec's text form, the torchvision and timm adapters behind one interface,
weights (random, file, tag offline), preprocessing, and the cache identity naming the family."""

from __future__ import annotations

from pathlib import Path

import os

import pytest
import torch
from PIL import Image

from fsadbench.backbone import timm_family, torchvision_family
from fsadbench.backbone.load import check_backbone_weights, load_backbone
from fsadbench.backbone.spec import (DEFAULT_WEIGHTS, FAMILIES, KNOWN_FAMILY, BackboneSpec, is_random, is_tiny,
                                     looks_like_file, parse_backbone)
from fsadbench.backbone.vision import IMAGENET_MEAN, IMAGENET_STD, VisionBackbone, weights_remedy
from fsadbench.core.errors import ConfigError, WeightsError

#: equivalent survivors of mutation testing (module: fsadbench/backbone/*), one line each with the reason
EQUIVALENT_MUTANTS = {
    "fsadbench.backbone.vision.xǁVisionBackboneǁ__init____mutmut_1": "every adapter passes its device on",
    "fsadbench.backbone.vision.xǁVisionBackboneǁ__init____mutmut_2": "every adapter passes its device on",
    "fsadbench.backbone.vision.xǁVisionBackboneǁ__init____mutmut_31": "model.to(None) keeps a CPU model on the CPU",
    "fsadbench.backbone.vision.xǁVisionBackboneǁload_weights__mutmut_4": "load_state_dict's strict default is True",
    "fsadbench.backbone.torchvision_family.x_tag_checkpoint__mutmut_8": "rsplit('/') then [-1]: the same file name",
    "fsadbench.backbone.torchvision_family.x_tag_checkpoint__mutmut_11": "rsplit('/', 2)[-1]: the same file name",
    "fsadbench.backbone.torchvision_family.x_tag_checkpoint__mutmut_12": "rsplit('/', 1)[1] of two parts is [-1]",
    "fsadbench.backbone.torchvision_family.xǁTorchvisionBackboneǁbuild__mutmut_8": "get_model's weights default is None",
    "fsadbench.backbone.torchvision_family.xǁTorchvisionBackboneǁencode__mutmut_9": "pixels.to(None) stays on the CPU",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁencode__mutmut_28": "pixels.to(None) stays on the CPU",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁbuild__mutmut_2": "create_model's pretrained default is False",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁbuild__mutmut_4": "create_model's pretrained default is False",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁbuild__mutmut_11": "create_model's pretrained default is False",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁbuild__mutmut_13": "create_model's pretrained default is False",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁbuild__mutmut_14": "only img_size is ever passed to a CNN (no "
                                                                     "tiny CNN config carries other kwargs)",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_33": "every timm model has a pretrained_cfg: "
                                                                        "getattr's default is never read",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_36": "as _33",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_9": "a name list_models lacks is_model judges",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_41": "every timm pretrained_cfg names its "
                                                                        "interpolation: the default is never read",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_43": "as _41",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_46": "as _41",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_47": "as _41",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_49": "timm models have both a patch embedding "
                                                                        "and prefix tokens or neither",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_64": "square inputs: img_size[1] == [0]",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_67": "square patches: patch_size[1] == [0]",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_76": "every timm pretrained_cfg has input_size",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_77": "as _76",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_78": "as _76",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_81": "as _76",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_82": "as _76",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_83": "as _76",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_84": "as _76",
    "fsadbench.backbone.timm_family.xǁTimmBackboneǁ__init____mutmut_85": "as _76",
    "fsadbench.backbone.load.x_load_backbone__mutmut_26": "as _23",
    "fsadbench.backbone.load.x_load_backbone__mutmut_23": "open_clip reads cache_dir only for a tag download "
                                                         "(test_weights_help checks open_clip's own cache place)",
}


# -- the spec --------------------------------------------------------------------------------------
def test_families_known_names_and_default_weights():
    assert FAMILIES == ("open_clip", "timm", "torchvision")
    assert KNOWN_FAMILY == {"wide_resnet50_2": "torchvision", "resnet18": "torchvision",
                            "wide_resnet50_2-tiny": "torchvision", "resnet18-tiny": "torchvision",
                            "vit_small_patch14_dinov2": "timm", "dinov2-tiny": "timm"}
    # torchvision's IMAGENET1K_V1 = wide_resnet50_2(pretrained=True) of the reference codes; timm's DINOv2 tag
    assert DEFAULT_WEIGHTS == {"torchvision": "IMAGENET1K_V1", "timm": "lvd142m"}


@pytest.mark.parametrize("text, family, model, size", [
    ("wide_resnet50_2", "torchvision", "wide_resnet50_2", None),
    ("dinov2-tiny", "timm", "dinov2-tiny", None),
    ("timm:vit_small_patch14_dinov2@448", "timm", "vit_small_patch14_dinov2", 448),
    ("torchvision:resnet50", "torchvision", "resnet50", None),
    ("open_clip:ViT-L-14-336@518", "open_clip", "ViT-L-14-336", 518),
    ("ViT-B-16-plus-240", "open_clip", "ViT-B-16-plus-240", None),  # any other bare name is open_clip
    ("  resnet18@64 ", "torchvision", "resnet18", 64),
    ("timm:hf-hub:timm/x", "timm", "hf-hub:timm/x", None),  # the first ':' ends the family (timm hub names)
])
def test_parse_backbone(text, family, model, size):
    spec = parse_backbone(text, "none")
    assert (spec.family, spec.model, spec.image_size, spec.pretrained, spec.init_seed) == (family, model, size,
                                                                                          "none", 0)


@pytest.mark.parametrize("text, why", [("jax:resnet", "not \\[family:\\]model"), ("timm:", "not \\[family:\\]model"),
                                       ("timm:x@big", "whole number"), ("timm:x@-3", "whole number")])
def test_parse_backbone_refuses_bad_text_naming_where(text, why):
    with pytest.raises(ConfigError, match=f"^method 'x' option backbone: .*{why}"):
        parse_backbone(text, "none", where="method 'x' option backbone")


def test_parse_backbone_default_where_and_examples():
    with pytest.raises(ConfigError, match=r"^backbone: 'a:b' is not \[family:\]model\[@size\] with family one of "
                                          r"open_clip, timm, torchvision \(e.g. torchvision:wide_resnet50_2"):
        parse_backbone("a:b", "none")


def test_spec_checks_family_and_size_and_names_itself():
    assert BackboneSpec() == BackboneSpec("ViT-B-16-plus-240", "laion400m_e32", 0, "open_clip", None)
    with pytest.raises(ConfigError, match="^backbone family 'keras' is unknown; one of open_clip, timm, torchvision"):
        BackboneSpec("m", "none", family="keras")
    with pytest.raises(ConfigError, match="^backbone 'm': image size must be >= 1 pixel, got 0"):
        BackboneSpec("m", "none", family="timm", image_size=0)
    assert BackboneSpec("m", "none", family="timm", image_size=1).image_size == 1
    assert BackboneSpec("m", "x", family="timm", image_size=448).name == "timm:m@448"
    assert BackboneSpec("m", "x", family="torchvision").name == "torchvision:m"
    assert BackboneSpec("m", "NONE").is_random and not BackboneSpec("m", "tag").is_random


def test_random_tiny_and_file_words():
    assert all(is_random(w) for w in ("none", "None", "random", "RANDOM", ""))
    assert not is_random("imagenet")
    assert is_tiny("fsad-tiny-vit") and is_tiny("dinov2-tiny") and not is_tiny("tiny-vit") \
        and not is_tiny("wide_resnet50_2")
    assert all(looks_like_file(p) for p in ("a/b", "a\\b", "w.pt", "w.pth", "w.bin", "w.safetensors"))
    assert not looks_like_file("IMAGENET1K_V1") and not looks_like_file("lvd142m")


# -- torchvision ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def wrn(tiny_vision_backbones):
    return tiny_vision_backbones["wide_resnet50_2-tiny"]


def test_torchvision_tiny_layers_channels_and_strides(wrn, tiny_vision_backbones):
    assert wrn.family == "torchvision" and wrn.layer_names == ("layer1", "layer2", "layer3", "layer4")
    assert wrn.image_size == 128 and wrn.grid is None and wrn.interpolation == "bilinear"
    px = torch.randn(2, 3, 128, 128)
    out = wrn.encode(px, ["layer3", "layer2"])
    assert list(out) == ["layer3", "layer2"]  # the names asked for, in that order
    assert out["layer2"].shape == (2, 512, 16, 16) and out["layer3"].shape == (2, 1024, 8, 8)  # WRN channels
    r18 = tiny_vision_backbones["resnet18-tiny"]
    maps = r18.encode(px, ["layer1", "layer2", "layer3"])
    assert [tuple(m.shape[1:]) for m in maps.values()] == [(64, 32, 32), (128, 16, 16), (256, 8, 8)]
    assert wrn.encode(px, []) == {}


def test_torchvision_encode_is_the_model_forward_and_stops_at_the_deepest_layer(wrn):
    m = wrn.model
    px = torch.randn(1, 3, 128, 128)
    seen = []
    hooks = [getattr(m, n).register_forward_hook(lambda mod, i, o, n=n: seen.append(n)) for n in
             ("layer1", "layer2", "layer3", "layer4")]
    try:
        out = wrn.encode(px, ["layer2"])
    finally:
        for h in hooks:
            h.remove()
    assert seen == ["layer1", "layer2"]
    with torch.no_grad():
        ref = m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(px))))))
    assert torch.equal(out["layer2"], ref)


def test_unknown_layer_names_the_known_ones(wrn):
    with pytest.raises(ConfigError, match=r"^layers \['block3'\] unknown: torchvision:wide_resnet50_2-tiny has "
                                          r"layer1, layer2, layer3, layer4$"):
        wrn.check_layers(["layer2", "block3"])
    assert wrn.check_layers(("layer1",)) == ("layer1",)


def test_preprocessing_is_a_squash_resize_with_imagenet_statistics():
    wrn = load_backbone(parse_backbone("resnet18-tiny", "none"))
    img = Image.fromarray((torch.arange(60 * 40 * 3) % 251).reshape(60, 40, 3).to(torch.uint8).numpy())
    got = wrn.preprocess(img)
    from torchvision.transforms import functional as TF

    resized = TF.resize(img, [128, 128], interpolation=TF.InterpolationMode.BILINEAR)
    want = TF.normalize(TF.to_tensor(resized), IMAGENET_MEAN, IMAGENET_STD)
    assert got.shape == (3, 128, 128) and torch.equal(got, want)  # no crop: the whole 60 x 40 image
    assert wrn.preprocess(img, 32).shape == (3, 32, 32) and 32 in wrn._transforms
    assert wrn.preprocess(img, 32).shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="^image size must be >= 1 pixel, got 0"):
        wrn.preprocess(img, 0)
    assert wrn.preprocess(img, 1).shape == (3, 1, 1)
    assert wrn.mean == (0.485, 0.456, 0.406) and wrn.std == (0.229, 0.224, 0.225)


def test_load_pixels_decodes_files(wrn, tmp_path):
    p = tmp_path / "a.png"
    Image.new("RGB", (50, 30), (10, 200, 30)).save(p)
    px = wrn.load_pixels([p, p], 64)
    assert px.shape == (2, 3, 64, 64) and torch.equal(px[0], wrn.preprocess(Image.open(p).convert("RGB"), 64))


def test_key_and_describe_name_family_model_weights_size_release():
    import torchvision

    wrn = load_backbone(parse_backbone("wide_resnet50_2-tiny", "none"))
    release = torchvision.__version__.split("+")[0]
    assert wrn.key == f"torchvision|wide_resnet50_2-tiny|{wrn.fingerprint}|128|torchvision-{release}"
    d = wrn.describe()
    assert d == {"family": "torchvision", "model": "wide_resnet50_2-tiny", "pretrained": "none",
                 "weights_source": "random init (seed 0)", "random_weights": True,
                 "weights_fingerprint": wrn.fingerprint, "image_size": 128, "grid": None,
                 "preprocess": {"resize": "squash (no crop, so maps align with masks)", "interpolation": "bilinear",
                                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}}
    assert not wrn.model.training and not any(p.requires_grad for p in wrn.model.parameters())
    assert wrn.device == torch.device("cpu") and wrn.encode(torch.zeros(1, 3, 32, 32), ["layer1"])["layer1"].shape \
        == (1, 256, 8, 8)


def test_random_weights_follow_the_init_seed(wrn):
    again = load_backbone(parse_backbone("wide_resnet50_2-tiny", "none"))
    other = load_backbone(BackboneSpec("wide_resnet50_2-tiny", "none", init_seed=1, family="torchvision"))
    assert again.fingerprint == wrn.fingerprint != other.fingerprint
    assert other.weights_source == "random init (seed 1)"


def test_tiny_configurations_are_one_block_per_stage_at_small_width():
    wrn, r18 = torchvision_family.tiny_model("wide_resnet50_2-tiny"), torchvision_family.tiny_model("resnet18-tiny")
    assert torchvision_family.tiny_model("wide_resnet50_2") is None
    for m in (wrn, r18):
        assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    # Bottleneck width = planes * width_per_group / 64 = planes / 4; outputs 4 x planes, as the WRN's
    assert [getattr(wrn, f"layer{i}")[0].conv1.out_channels for i in range(1, 5)] == [16, 32, 64, 128]
    assert [getattr(wrn, f"layer{i}")[0].conv3.out_channels for i in range(1, 5)] == [256, 512, 1024, 2048]
    assert [getattr(r18, f"layer{i}")[0].conv2.out_channels for i in range(1, 5)] == [64, 128, 256, 512]
    assert type(r18.layer1[0]).__name__ == "BasicBlock" and type(wrn.layer1[0]).__name__ == "Bottleneck"


def test_adapter_defaults_device_cache_and_release(tmp_path):
    import torchvision

    from fsadbench.backbone.torchvision_family import TorchvisionBackbone

    b = TorchvisionBackbone(parse_backbone("resnet18-tiny", "none"))
    assert b.device == torch.device("cpu") and b.cache_dir is None
    assert b.library_version == torchvision.__version__.split("+")[0] and "+" not in b.library_version
    assert b.key.endswith(f"|128|torchvision-{b.library_version}")
    assert TorchvisionBackbone(parse_backbone("resnet18-tiny", "none"), cache_dir=str(tmp_path)).cache_dir == \
        str(tmp_path)
    real = load_backbone(parse_backbone("resnet18", "none"))
    assert real.image_size == 224 and real.weights_source == "random init (seed 0)"


def test_size_override_and_default_sizes():
    assert load_backbone(parse_backbone("resnet18-tiny@64", "none")).image_size == 64
    assert torchvision_family.DEFAULT_SIZE == 224 and torchvision_family.TINY_SIZE == 128


def test_checkpoint_file_loads_with_weights_only(wrn, tmp_path, monkeypatch):
    path = tmp_path / "wrn.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in wrn.model.state_dict().items()}}, path)
    calls = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(k) or real(*a, **k))
    b = load_backbone(BackboneSpec("wide_resnet50_2-tiny", str(path), family="torchvision", init_seed=5))
    assert calls and all(k.get("weights_only") is True for k in calls)
    assert b.fingerprint == wrn.fingerprint and b.weights_source == f"file {path}" and not b.is_random
    assert b.describe()["pretrained"] == str(path)


def test_checkpoint_of_another_model_names_the_file(tmp_path, tiny_vision_backbones):
    path = tmp_path / "r18.pt"
    torch.save(tiny_vision_backbones["resnet18-tiny"].model.state_dict(), path)
    with pytest.raises(WeightsError, match=f"^checkpoint {path} does not fit backbone "
                                           f"'torchvision:wide_resnet50_2-tiny': ") as err:
        load_backbone(BackboneSpec("wide_resnet50_2-tiny", str(path), family="torchvision"))
    text = str(err.value)
    why = text[text.index("-tiny': ") + 8:text.rindex("\nPass the backbone")]
    assert why.startswith("30 missing key(s): layer1.0.conv3.weight, ")  # the names first
    assert "tensor(s) of another shape: " in why and "more)" in why and len(why) < 1200
    assert text.endswith("\nPass the backbone the checkpoint was trained as.")


def test_a_mismatched_state_dict_names_the_keys_first():
    from fsadbench.backbone.weights import key_mismatch

    model = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Linear(3, 1))
    sd = dict(model.state_dict())
    assert key_mismatch(model, sd) == ""
    sd.pop("1.bias")
    sd["2.weight"] = torch.zeros(1)
    sd["0.weight"] = torch.zeros(4, 2)
    assert key_mismatch(model, sd) == ("1 missing key(s): 1.bias; 1 unexpected key(s): 2.weight; 1 tensor(s) of "
                                       "another shape: 0.weight (4, 2) (model (3, 2))")
    many = {f"x{i}": torch.zeros(1) for i in range(6)}
    assert key_mismatch(model, {**model.state_dict(), **many}, shown=2) == (
        "6 unexpected key(s): x0, x1, ... (4 more)")


def test_a_checkpoint_missing_or_adding_a_tensor_is_refused(tmp_path, tiny_vision_backbones):
    sd = dict(tiny_vision_backbones["resnet18-tiny"].model.state_dict())
    for name, bad in (("missing", {k: v for k, v in sd.items() if k != "fc.bias"}), ("extra", {**sd, "x": sd["fc.bias"]})):
        path = tmp_path / f"{name}.pt"
        torch.save(bad, path)
        with pytest.raises(WeightsError, match="does not fit backbone"):  # a strict load
            load_backbone(BackboneSpec("resnet18-tiny", str(path), family="torchvision"))


def test_missing_checkpoint_file(tmp_path):
    with pytest.raises(WeightsError, match=f"^checkpoint file {tmp_path}/no.pth does not exist "
                                           r"\(backbone torchvision:resnet18-tiny\); pass an existing file"):
        load_backbone(BackboneSpec("resnet18-tiny", str(tmp_path / "no.pth"), family="torchvision"))


def test_torchvision_tag_offline_names_file_url_and_cache_place(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torchvision_family, "reachable", lambda host: host != "download.pytorch.org")
    spec = parse_backbone("wide_resnet50_2", "IMAGENET1K_V1")
    with pytest.raises(WeightsError) as err:
        load_backbone(spec)
    text = str(err.value)
    assert text.splitlines()[0] == ("could not load weights 'torchvision:wide_resnet50_2' / 'IMAGENET1K_V1': "
                                    "no network and not in the local cache")
    assert "  https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth" in text.splitlines()
    assert "METHOD.backbone_weights=/path/to/wide_resnet50_2-95faca4d.pth" in text
    assert f"looks for it: {tmp_path}/hub/checkpoints/wide_resnet50_2-95faca4d.pth" in text
    with pytest.raises(WeightsError):  # the pre-run check says the same before any cell
        check_backbone_weights(spec)


def test_torchvision_tag_found_in_the_hub_cache_is_loaded(tmp_path, monkeypatch, tiny_vision_backbones):
    r18 = tiny_vision_backbones["resnet18-tiny"]
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import torchvision

    url = torchvision.models.get_model_weights("resnet18")["IMAGENET1K_V1"].url
    target = tmp_path / "checkpoints" / url.rsplit("/", 1)[-1]
    target.parent.mkdir()
    full = torchvision.models.resnet18()
    torch.save(full.state_dict(), target)
    assert torchvision_family.tag_checkpoint(parse_backbone("resnet18", "IMAGENET1K_V1")) == target
    check_backbone_weights(parse_backbone("resnet18", "IMAGENET1K_V1"))  # cached: passes
    b = load_backbone(parse_backbone("resnet18@64", "IMAGENET1K_V1"))
    assert b.weights_source == f"torchvision tag IMAGENET1K_V1 ({target})" and b.image_size == 64
    assert b.fingerprint != r18.fingerprint


@pytest.mark.parametrize("hub, premade", [("a/b", False), ("hub", True)])
def test_torchvision_downloads_into_the_hub_cache_when_reachable(tmp_path, monkeypatch, hub, premade):
    tmp_path = tmp_path / hub  # a hub folder not made yet, or one whose checkpoints folder exists already
    if premade:
        (tmp_path / "checkpoints").mkdir(parents=True)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    monkeypatch.setattr(torchvision_family, "reachable", lambda host: host == "download.pytorch.org")
    got = []
    monkeypatch.setattr(torch.hub, "download_url_to_file",
                        lambda url, dst, progress: got.append((url, dst, progress)) or Path(dst).write_bytes(b"x"))
    path = torchvision_family.tag_checkpoint(parse_backbone("resnet18", "IMAGENET1K_V1"))
    assert got == [("https://download.pytorch.org/models/resnet18-f37072fd.pth", str(path), False)]
    assert path == tmp_path / "checkpoints" / "resnet18-f37072fd.pth" and path.is_file()


def test_torchvision_unknown_weights_model_and_shape():
    with pytest.raises(WeightsError, match="^backbone torchvision:resnet18: unknown torchvision weights 'V9'; "
                                           "e.g. IMAGENET1K_V1"):
        torchvision_family.tag_checkpoint(parse_backbone("resnet18", "V9"))
    with pytest.raises(ConfigError, match="^backbone torchvision:resnet9000: torchvision has no model 'resnet9000'"):
        load_backbone(parse_backbone("torchvision:resnet9000", "none"))
    with pytest.raises(ConfigError, match="^backbone torchvision:squeezenet1_1: not a ResNet-style model"):
        load_backbone(parse_backbone("torchvision:squeezenet1_1", "none"))


# -- timm -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dino(tiny_vision_backbones):
    return tiny_vision_backbones["dinov2-tiny"]


def test_timm_vit_tokens_grid_and_names(dino):
    assert dino.family == "timm" and dino.is_vit and dino.image_size == 112 and dino.grid == (8, 8)
    assert dino.layer_names == ("block1", "block2", "block3", "block4") and dino.interpolation == "bicubic"
    out = dino.encode(torch.randn(2, 3, 112, 112), ["block4", "block2"])
    assert list(out) == ["block4", "block2"] and out["block4"].shape == (2, 64, 48)  # prefix (class) token dropped
    assert dino.encode(torch.randn(1, 3, 112, 112), ()) == {}


def test_timm_tokens_are_normed_block_outputs_without_prefix(dino):
    m = dino.model
    px = torch.randn(1, 3, 112, 112)
    seen = {}
    h = m.blocks[2].register_forward_hook(lambda mod, i, o: seen.update(x=o))
    try:
        got = dino.encode(px, ["block3"])["block3"]
    finally:
        h.remove()
    assert m.num_prefix_tokens == 1
    assert torch.allclose(got, m.norm(seen["x"])[:, 1:], atol=1e-6)


def test_timm_preprocessing_is_bicubic(dino):
    from torchvision.transforms import functional as TF

    fresh = load_backbone(parse_backbone("dinov2-tiny", "none"))
    img = Image.fromarray((torch.arange(30 * 50 * 3) % 253).reshape(30, 50, 3).to(torch.uint8).numpy())
    want = TF.normalize(TF.to_tensor(TF.resize(img, [112, 112], interpolation=TF.InterpolationMode.BICUBIC)),
                        IMAGENET_MEAN, IMAGENET_STD)
    assert torch.equal(fresh.preprocess(img), want)


def test_timm_size_override_and_describe(dino):
    big = load_backbone(parse_backbone("dinov2-tiny@140", "none"))
    assert big.image_size == 140 and big.grid == (10, 10)
    assert dino.describe()["grid"] == [8, 8] and dino.describe()["family"] == "timm"
    assert dino.key.startswith(f"timm|dinov2-tiny|{dino.fingerprint}|112|timm-")
    assert timm_family.TINY == {"dinov2-tiny": ("vit_small_patch14_dinov2",
                                                dict(img_size=112, embed_dim=48, depth=4, num_heads=3))}


def test_timm_cnn_stages_give_maps():
    b = load_backbone(parse_backbone("timm:resnet10t@64", "none"))
    assert not b.is_vit and b.grid is None and b.image_size == 64
    assert b.layer_names == ("stage1", "stage2", "stage3", "stage4", "stage5")
    out = b.encode(torch.randn(1, 3, 64, 64), ["stage3"])
    assert out["stage3"].ndim == 4 and out["stage3"].shape[-1] == 8


def test_timm_file_weights_go_through_the_models_checkpoint_filter(dino, tmp_path):
    path = tmp_path / "dino.pth"
    torch.save(dino.model.state_dict(), path)
    same = load_backbone(BackboneSpec("dinov2-tiny", str(path), family="timm"))
    assert same.fingerprint == dino.fingerprint
    bigger = load_backbone(BackboneSpec("dinov2-tiny", str(path), family="timm", image_size=140))
    assert bigger.model.pos_embed.shape[1] == 1 + 100  # position embeddings resampled 8x8 -> 10x10


def test_timm_unknown_model():
    with pytest.raises(ConfigError, match="^backbone timm:no_such_net: timm has no model 'no_such_net'"):
        load_backbone(parse_backbone("timm:no_such_net", "none"))


def test_timm_tag_offline_names_file_url_and_cache_place(tmp_path, monkeypatch):
    spec = parse_backbone("vit_small_patch14_dinov2", "lvd142m")
    with pytest.raises(WeightsError) as err:
        load_backbone(spec, cache_dir=str(tmp_path))  # HF_HUB_OFFLINE=1 in the tests
    text = str(err.value)
    repo = Path(os.environ["HF_HUB_CACHE"]) / "models--timm--vit_small_patch14_dinov2.lvd142m"  # the standard cache
    assert text.splitlines()[0] == ("could not load weights 'timm:vit_small_patch14_dinov2' / 'lvd142m': "
                                    "no network and not in the local cache")
    assert "  https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors" \
        in text.splitlines()
    assert f"{repo}/snapshots/local/model.safetensors and write 'local' into {repo}/refs/main" in text
    with pytest.raises(WeightsError):
        check_backbone_weights(spec, str(tmp_path))


def test_timm_tag_in_the_cache_place_the_remedy_names_is_found(tmp_path, dino):
    spec = parse_backbone("dinov2-tiny", "lvd142m")
    with pytest.raises(WeightsError) as err:
        timm_family.tag_checkpoint(spec, str(tmp_path))
    import re

    target, refs = re.search(r"looks for it: (\S+) and write 'local' into (\S+)", str(err.value)).groups()
    assert "timm--vit_small_patch14_dinov2.lvd142m" in target
    from safetensors.torch import save_file

    Path(target).parent.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in dino.model.state_dict().items()}, target)
    Path(refs).parent.mkdir(parents=True, exist_ok=True)
    Path(refs).write_text("local")
    assert timm_family.tag_checkpoint(spec, str(tmp_path)) == Path(target)
    b = load_backbone(spec, cache_dir=str(tmp_path))
    assert b.fingerprint == dino.fingerprint and b.weights_source == f"timm tag lvd142m ({target})"


def test_timm_download_failure_is_one_weights_error(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm_family, "reachable", lambda host: host == "huggingface.co")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: (_ for _ in ()).throw(OSError("403")))
    with pytest.raises(WeightsError, match=r"^could not load weights 'timm:dinov2-tiny' / 'x': download failed "
                                           r"\(403\)"):
        timm_family.tag_checkpoint(parse_backbone("dinov2-tiny", "x"), str(tmp_path))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, file, cache_dir: str(tmp_path / file))
    assert timm_family.tag_checkpoint(parse_backbone("dinov2-tiny", "x"), str(tmp_path)) == tmp_path / \
        "model.safetensors"


# -- one entry point ---------------------------------------------------------------------------------------
def test_load_backbone_dispatches_by_family(tiny_backbone):
    from fsadbench.backbone.clip import Backbone
    from fsadbench.backbone.timm_family import TimmBackbone
    from fsadbench.backbone.torchvision_family import TorchvisionBackbone

    assert isinstance(load_backbone(parse_backbone("resnet18-tiny", "none")), TorchvisionBackbone)
    assert isinstance(load_backbone(parse_backbone("dinov2-tiny", "none")), TimmBackbone)
    clip = load_backbone(BackboneSpec("fsad-tiny-vit", "none"))
    assert isinstance(clip, Backbone) and clip.fingerprint == tiny_backbone.fingerprint
    assert clip.key.startswith("open_clip|fsad-tiny-vit|") and clip.describe()["family"] == "open_clip"


ABSTRACT = ("build", "tag_checkpoint", "layer_names", "encode")


def test_the_family_interface_is_abstract_and_both_families_implement_it():
    from fsadbench.backbone.timm_family import TimmBackbone
    from fsadbench.backbone.torchvision_family import TorchvisionBackbone

    assert VisionBackbone.__abstractmethods__ == frozenset(ABSTRACT)
    assert isinstance(VisionBackbone.__dict__["layer_names"], property)
    for family in (TorchvisionBackbone, TimmBackbone):
        assert not family.__abstractmethods__, family


@pytest.mark.parametrize("missing", ABSTRACT)
def test_a_family_missing_one_member_fails_at_construction(missing):
    from fsadbench.backbone.torchvision_family import TorchvisionBackbone

    members = {name: TorchvisionBackbone.__dict__[name] for name in ABSTRACT if name != missing}
    partial = type("Partial", (VisionBackbone,), {"family": "torchvision", **members})
    with pytest.raises(TypeError, match=missing):
        partial(parse_backbone("resnet18-tiny", "none"))


def test_open_clip_size_override():
    b = load_backbone(BackboneSpec("fsad-tiny-vit", "none", image_size=128))
    assert b.image_size == 128 and b.grid == (16, 16) and "|128|" in b.key


def test_check_weights_passes_random_and_files_and_delegates_clip_tags(tmp_path, monkeypatch):
    f = tmp_path / "w.pt"
    f.write_bytes(b"x")
    check_backbone_weights(parse_backbone("wide_resnet50_2", "none"))
    check_backbone_weights(parse_backbone("wide_resnet50_2", str(f)))
    import fsadbench.backbone.weights as weights

    seen = []
    monkeypatch.setattr(weights, "check_weights", lambda m, p, c, option=None: seen.append((m, p, c, option)))
    check_backbone_weights(BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"), "/c")
    check_backbone_weights(BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"), "/c", option="--x={file}")
    assert seen == [("ViT-B-16-plus-240", "laion400m_e32", "/c", None),
                    ("ViT-B-16-plus-240", "laion400m_e32", "/c", "--x={file}")]


def test_weights_remedy_text():
    text = weights_remedy(BackboneSpec("m", "t", family="timm"), "why", "https://u/f.bin", "f.bin", "/cache/f.bin")
    assert text.splitlines() == [
        "could not load weights 'timm:m' / 't': why", "The checkpoint for this tag:", "  https://u/f.bin",
        "Remedies:", "  1. download it on a machine with internet and pass the file: "
                     "--method-option METHOD.backbone_weights=/path/to/f.bin",
        "  2. or put it where timm looks for it: /cache/f.bin",
        "  3. or run the offline pipeline check with random weights: python run_bench.py --preset smoke"]


# -- a fresh adapter (mutation testing maps tests to the code they call, so no session fixture here) --------
def test_fresh_timm_vit_attributes():
    import timm

    from fsadbench.backbone.timm_family import TimmBackbone

    b = TimmBackbone(parse_backbone("dinov2-tiny", "none"))
    assert b.device == torch.device("cpu") and b.library_version == timm.__version__ and b.is_vit
    assert b.grid == (8, 8) and all(type(g) is int for g in b.grid) and b.layer_names[-1] == "block4"
    assert b.interpolation == "bicubic" and b.key.endswith(f"|112|timm-{timm.__version__}")


def test_fresh_timm_cnn_reads_its_pretrained_cfg(tmp_path):
    b = load_backbone(parse_backbone("timm:resnet18.tv_in1k", "none"))
    assert b.interpolation == "bilinear" and b.image_size == 224 and not b.is_vit  # resnet18.tv_in1k's cfg
    assert load_backbone(parse_backbone("timm:resnet10t", "none")).image_size == 176  # its cfg's input size
    path = tmp_path / "r10.pth"  # timm's resnet module has no checkpoint filter: the file loads as it is
    torch.save(load_backbone(parse_backbone("timm:resnet10t@64", "none")).model.state_dict(), path)
    again = load_backbone(BackboneSpec("resnet10t", str(path), family="timm", image_size=64))
    assert again.weights_source == f"file {path}"
    torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match=f"^checkpoint {tmp_path}/bad.pth does not fit backbone 'timm:resnet10t@64'"):
        load_backbone(BackboneSpec("resnet10t", str(tmp_path / "bad.pth"), family="timm", image_size=64))


def test_timm_model_without_forward_intermediates_is_refused(monkeypatch):
    import timm

    class Bare(torch.nn.Module):
        feature_info = [1, 2]
        pretrained_cfg = {"interpolation": "bilinear", "input_size": (3, 32, 32)}

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(1, 1)

    monkeypatch.setattr(timm, "create_model", lambda *a, **k: Bare())
    with pytest.raises(ConfigError, match="^backbone timm:resnet10t: this timm model has no forward_intermediates$"):
        load_backbone(parse_backbone("timm:resnet10t", "none"))


def test_timm_offline_without_the_offline_flag_is_said_before_any_download(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm_family, "reachable", lambda host: False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("no download offline"))
    with pytest.raises(WeightsError) as err:
        timm_family.tag_checkpoint(parse_backbone("dinov2-tiny", "x"), str(tmp_path))
    assert "no network and not in the local cache" in str(err.value)
    assert "--method-option METHOD.backbone_weights=/path/to/model.safetensors" in str(err.value)


def test_timm_download_passes_repo_and_cache_and_names_the_remedy_on_failure(tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(timm_family, "reachable", lambda host: True)
    seen = []
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda repo, file, cache_dir: seen.append((repo, file, cache_dir)) or "/got/it")
    assert timm_family.tag_checkpoint(parse_backbone("dinov2-tiny", "lvd142m"), "/c") == Path("/got/it")
    assert seen == [("timm/vit_small_patch14_dinov2.lvd142m", "model.safetensors", "/c")]
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        lambda *a, **k: (_ for _ in ()).throw(OSError("x" * 300)))
    with pytest.raises(WeightsError) as err:
        timm_family.tag_checkpoint(parse_backbone("dinov2-tiny", "lvd142m"), str(tmp_path))
    text = str(err.value)
    assert f"download failed ({'x' * 200})" in text.splitlines()[0]
    assert "  https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors" in text
    assert "/path/to/model.safetensors" in text and "refs/main" in text


def test_load_backbone_passes_device_and_cache_dir(tmp_path):
    for name in ("resnet18-tiny", "dinov2-tiny"):
        b = load_backbone(parse_backbone(name, "none"), device="cpu:0", cache_dir=str(tmp_path))
        assert b.device == torch.device("cpu", 0) and b.cache_dir == str(tmp_path)
    clip = load_backbone(BackboneSpec("fsad-tiny-vit", "none"), device="cpu:0")
    assert clip.device == torch.device("cpu", 0)


def test_check_weights_looks_in_the_given_cache(tmp_path, dino):
    from safetensors.torch import save_file

    spec = parse_backbone("dinov2-tiny", "lvd142m")
    repo = tmp_path / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (repo / "snapshots" / "local").mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in dino.model.state_dict().items()},
              str(repo / "snapshots" / "local" / "model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("local")
    check_backbone_weights(spec, str(tmp_path))  # found: no error
    with pytest.raises(WeightsError):
        check_backbone_weights(spec, str(tmp_path / "elsewhere"))

