"""Which backbone a method runs on: the sweep's CLIP, or its own (default, tiny in the pipeline check, options)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from fsadbench.backbone.spec import BackboneSpec
from fsadbench.core.errors import ConfigError
from fsadbench.methods.common.backbone_option import BackboneOptions, OwnBackbone
from fsadbench.protocol.method import Method

#: equivalent survivors of mutation testing (module: methods/common/backbone_option.py)
EQUIVALENT_MUTANTS: dict[str, str] = {}

TINY_SWEEP = BackboneSpec("fsad-tiny-vit", "none")
REAL_SWEEP = BackboneSpec("ViT-B-16-plus-240", "laion400m_e32")


class Own(OwnBackbone):
    name = "own"
    backbone_default = "torchvision:wide_resnet50_2"
    backbone_tiny = "torchvision:wide_resnet50_2-tiny"


class Clipish(OwnBackbone):
    name = "clipish"
    backbone_default = "open_clip:ViT-L-14-336@518"
    backbone_tiny = "fsad-tiny-vit"
    backbone_weights_default = "openai"


def opts(**kw):
    return BackboneOptions(**kw)


def test_option_defaults_are_empty():
    assert BackboneOptions() == BackboneOptions(backbone="", backbone_weights="")


def test_the_base_method_uses_the_sweeps_backbone():
    assert Method.backbone_for(object(), REAL_SWEEP) is REAL_SWEEP


def test_pipeline_check_runs_the_tiny_config_with_random_weights():
    assert Own.backbone_for(opts(), TINY_SWEEP) == BackboneSpec("wide_resnet50_2-tiny", "none", family="torchvision")


def test_real_sweep_runs_the_reference_backbone_with_the_family_weights():
    assert Own.backbone_for(opts(), REAL_SWEEP) == BackboneSpec("wide_resnet50_2", "IMAGENET1K_V1",
                                                                family="torchvision")


def test_a_random_sweep_on_a_real_model_keeps_the_reference_architecture_random():
    spec = Own.backbone_for(opts(), BackboneSpec("ViT-B-16-plus-240", "none"))
    assert spec == BackboneSpec("wide_resnet50_2", "none", family="torchvision")
    # a tiny sweep model with real weights is no pipeline check: the reference backbone
    assert Own.backbone_for(opts(), BackboneSpec("fsad-tiny-vit", "/w.pt")).model == "wide_resnet50_2"


def test_options_override_model_and_weights():
    spec = Own.backbone_for(opts(backbone="resnet18@256", backbone_weights="/ckpt.pth"), TINY_SWEEP)
    assert spec == BackboneSpec("resnet18", "/ckpt.pth", family="torchvision", image_size=256)
    assert Own.backbone_for(opts(backbone="resnet18"), REAL_SWEEP).pretrained == "IMAGENET1K_V1"
    assert Own.backbone_for(opts(backbone="timm:vit_small_patch14_dinov2"), REAL_SWEEP).pretrained == "lvd142m"
    # a tiny config asked for by option is random unless a file is given
    assert Own.backbone_for(opts(backbone="resnet18-tiny"), REAL_SWEEP).pretrained == "none"
    assert Own.backbone_for(opts(backbone="resnet18-tiny", backbone_weights="/f.pt"), REAL_SWEEP).pretrained == "/f.pt"


def test_a_clip_method_may_name_its_own_open_clip_model():
    spec = Clipish.backbone_for(opts(), REAL_SWEEP)
    assert spec == BackboneSpec("ViT-L-14-336", "openai", family="open_clip", image_size=518)
    assert Clipish.backbone_for(opts(), TINY_SWEEP) == BackboneSpec("fsad-tiny-vit", "none")
    with pytest.raises(ConfigError, match=r"^method 'own': backbone open_clip:ViT-L-14 needs backbone_weights "
                                          r"\(an open_clip tag, a checkpoint file, or none\)"):
        Own.backbone_for(opts(backbone="open_clip:ViT-L-14"), REAL_SWEEP)


def test_bad_text_names_the_method_option():
    with pytest.raises(ConfigError, match=r"^method 'own' option backbone: 'keras:x'"):
        Own.backbone_for(opts(backbone="keras:x"), REAL_SWEEP)


def test_options_dataclass_inherits():
    @dataclass
    class O(BackboneOptions):
        k: int = 3

    assert O().backbone == "" and O(backbone="resnet18").k == 3
