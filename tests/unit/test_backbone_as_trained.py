"""Every default backbone is built as its weights were trained, names its one checkpoint file, loads a file at
any size, and finds weights in the standard caches first (issue 32). No weights are downloaded: the open_clip
models are built on the meta device through :func:`build_clip` with the file step patched out."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from fsadbench.backbone import checkpoints, clip
from fsadbench.backbone.checkpoints import Found, find_checkpoint, open_clip_source
from fsadbench.backbone.load import checkpoint_identity, load_backbone
from fsadbench.backbone.spec import BackboneSpec, parse_backbone
from fsadbench.core.errors import WeightsError

E32 = "vit_b_16_plus_240-laion400m_e32-699c4b84.pt"
E31_REPO = "timm/vit_base_patch16_plus_clip_240.laion400m_e31"


def _fake_file_step(monkeypatch, tmp_path):
    """Replace only the file step of the user path (fetch + read + load): the build is the real one."""
    f = tmp_path / "stand-in.bin"
    f.write_bytes(b"stand-in")
    monkeypatch.setattr(clip, "fetch_checkpoint", lambda source, cache_dir, remedy: Found(f, "test"))
    monkeypatch.setattr(clip, "read_state_dict", lambda path: {})
    monkeypatch.setattr(clip, "load_clip_state", lambda *a, **k: None)


# model, tag, @size, activation, image size, grid (hand-checked: size / patch)
OPEN_CLIP_DEFAULTS = [
    ("ViT-B-16-plus-240", "laion400m_e32", None, "GELU", 240, 15),  # the sweep's default
    ("ViT-L-14-336", "openai", 518, "QuickGELU", 518, 37),  # AnomalyCLIP's default
    ("ViT-L-14-336", "openai", None, "QuickGELU", 336, 24),
    ("ViT-B-32", "openai", None, "QuickGELU", 224, 7),
]


@pytest.mark.openclip_floor
@pytest.mark.parametrize("model, tag, size, act, image_size, grid", OPEN_CLIP_DEFAULTS)
def test_open_clip_default_backbones_are_built_as_trained(monkeypatch, tmp_path, model, tag, size, act,
                                                          image_size, grid):
    import open_clip

    _fake_file_step(monkeypatch, tmp_path)
    spec = BackboneSpec(model, tag, image_size=size)
    with torch.device("meta"):
        built = clip.build_clip(spec, device="meta")
    m = built.model
    assert type(m.visual.transformer.resblocks[0].mlp.gelu).__name__ == act  # both towers
    assert type(m.transformer.resblocks[-1].mlp.gelu).__name__ == act
    assert clip.activation_name(m) == act
    assert tuple(m.visual.image_size) == (image_size, image_size)
    width = m.visual.positional_embedding.shape[1]
    assert tuple(m.visual.positional_embedding.shape) == (grid * grid + 1, width)
    cfg = open_clip.get_pretrained_cfg(model, tag)
    assert built.preprocess == {k: cfg[k] for k in ("mean", "std", "interpolation")}
    if "quick_gelu" in cfg or act == "GELU":  # open_clip >= 2.29 says it in the tag's config
        assert bool(cfg.get("quick_gelu")) == (act == "QuickGELU")
    assert built.checkpoint["local_path"] == str(tmp_path / "stand-in.bin")
    assert built.checkpoint["sha256"] == hashlib.sha256(b"stand-in").hexdigest()


@pytest.mark.openclip_floor
def test_random_weights_build_is_unchanged():
    """Random weights take no tag options: the model's own activation (GELU for ViT-B-32)."""
    with torch.device("meta"):
        built = clip.build_clip(BackboneSpec("ViT-B-32", "none"), device="meta")
    assert clip.activation_name(built.model) == "GELU" and built.checkpoint is None and built.preprocess == {}


def _tiny_tag(monkeypatch, cfg):
    """open_clip's config with one more tag, ``fsad-tiny-vit`` / ``t1``."""
    import open_clip

    clip.register_model_configs()
    get, tags = open_clip.get_pretrained_cfg, open_clip.list_pretrained_tags_by_model
    monkeypatch.setattr(open_clip, "get_pretrained_cfg",
                        lambda m, t: dict(cfg) if (m, t) == ("fsad-tiny-vit", "t1") else get(m, t))
    monkeypatch.setattr(open_clip, "list_pretrained_tags_by_model",
                        lambda m: tags(m) + (["t1"] if m == "fsad-tiny-vit" else []))


@pytest.mark.openclip_floor
def test_a_tag_in_the_harness_cache_loads_as_trained_at_another_size(monkeypatch, tmp_path):
    torch.manual_seed(0)
    ref = clip.Backbone(BackboneSpec("fsad-tiny-vit", "none"))
    _tiny_tag(monkeypatch, {"url": "https://example.invalid/tiny-t1.pt", "quick_gelu": True,
                            "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "interpolation": "bilinear"})
    f = tmp_path / "tiny-t1.pt"
    torch.save(ref.model.state_dict(), f)
    b = clip.Backbone(BackboneSpec("fsad-tiny-vit", "t1", image_size=96), cache_dir=str(tmp_path))
    assert b.activation == "QuickGELU" and b.image_size == 96 and b.grid == (12, 12)
    assert (b.mean, b.std, b.interpolation) == ((0.5,) * 3, (0.25,) * 3, "bilinear")
    d = b.describe()
    assert d["activation"] == "QuickGELU"
    assert d["checkpoint"] == {"file": "tiny-t1.pt", "address": "https://example.invalid/tiny-t1.pt",
                               "local_path": str(f), "found_in": "harness cache",
                               "sha256": hashlib.sha256(f.read_bytes()).hexdigest(), "hash": "sha256 of the local file"}
    assert "random_weights" in d and d["random_weights"] is False
    assert "checkpoint" not in ref.describe() and "activation" not in ref.describe()  # random records unchanged


@pytest.mark.openclip_floor
def test_a_checkpoint_file_loads_at_another_size_like_open_clips_loader(tmp_path):
    from open_clip.model import resize_pos_embed

    torch.manual_seed(0)
    ref = clip.Backbone(BackboneSpec("fsad-tiny-vit", "none"))  # 120 px, patch 8: 15 x 15
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    b = load_backbone(parse_backbone("fsad-tiny-vit@96", str(path)))
    assert b.grid == (12, 12) and b.model.visual.positional_embedding.shape[0] == 145
    oracle = {"visual.positional_embedding": ref.model.visual.positional_embedding.clone()}
    resize_pos_embed(oracle, b.model)
    assert torch.equal(b.model.visual.positional_embedding, oracle["visual.positional_embedding"])
    assert torch.equal(b.model.visual.conv1.weight, ref.model.visual.conv1.weight)
    assert b.describe()["checkpoint"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert b.describe()["checkpoint"]["found_in"] == "file given"


def test_e32_resolves_to_its_own_release_file_and_e31_keeps_its_hub_copy():
    e32 = open_clip_source("ViT-B-16-plus-240", "laion400m_e32")
    assert (e32.file, e32.hf_repo, e32.expected_sha256) == (E32, "", "699c4b84")
    assert e32.url == f"https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/{E32}"
    e31 = open_clip_source("ViT-B-16-plus-240", "laion400m_e31")
    assert e31.hf_repo == E31_REPO and e31.file == "open_clip_pytorch_model.bin"


def test_no_two_tags_of_a_model_resolve_to_one_file():
    import open_clip

    seen: dict[tuple, str] = {}
    for model, tag in open_clip.list_pretrained():
        s = open_clip_source(model, tag)
        key = (model, s.hf_repo, s.file, "" if s.hf_repo else s.url)
        assert key not in seen, f"{model}: {tag} and {seen[key]} name one file"
        seen[key] = tag


def test_a_tag_pointing_at_another_tags_copy_without_a_file_of_its_own_is_refused(monkeypatch):
    import open_clip

    get = open_clip.get_pretrained_cfg
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda m, t: (
        {"hf_hub": f"{E31_REPO}/"} if (m, t) == ("ViT-B-16-plus-240", "laion400m_e32") else get(m, t)))
    with pytest.raises(WeightsError, match="laion400m_e32.*points at .*laion400m_e31.*use --pretrained laion400m_e31"):
        open_clip_source("ViT-B-16-plus-240", "laion400m_e32")


def test_checkpoint_identity_before_and_after_the_file_is_there(tmp_path):
    spec = BackboneSpec("ViT-B-16-plus-240", "laion400m_e32")
    before = checkpoint_identity(spec, str(tmp_path))
    assert before["file"] == E32 and before["sha256"] is None and before["hash"].startswith("hash on first load")
    (tmp_path / E32).write_bytes(b"e32 bytes")
    after = checkpoint_identity(spec, str(tmp_path))
    assert after["sha256"] == hashlib.sha256(b"e32 bytes").hexdigest() and after["found_in"] == "harness cache"
    assert checkpoint_identity(BackboneSpec("ViT-B-16-plus-240", "none")) is None
    dino = checkpoint_identity(parse_backbone("vit_small_patch14_dinov2@448", "lvd142m"))
    assert dino["address"] == "https://huggingface.co/timm/vit_small_patch14_dinov2.lvd142m/resolve/main/model.safetensors"


def _hf_tree(root: Path, repo: str, file: str, data: bytes) -> Path:
    repo_dir = root / ("models--" + repo.replace("/", "--"))
    (repo_dir / "snapshots" / "local").mkdir(parents=True)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("local")
    f = repo_dir / "snapshots" / "local" / file
    f.write_bytes(data)
    return f


@pytest.mark.parametrize("env", ["HF_HUB_CACHE", "HF_HOME"])
def test_the_standard_hugging_face_cache_is_searched_before_the_harness_cache(tmp_path, monkeypatch, env):
    std = tmp_path / "std" / ("hub" if env == "HF_HOME" else "")
    monkeypatch.delenv("HF_HUB_CACHE")
    monkeypatch.setenv(env, str(tmp_path / "std"))
    harness = tmp_path / "harness"
    for family_spec, repo, file in [(BackboneSpec("ViT-B-16-plus-240", "laion400m_e31"), E31_REPO,
                                     "open_clip_pytorch_model.bin"),
                                    (parse_backbone("vit_small_patch14_dinov2", "lvd142m"),
                                     "timm/vit_small_patch14_dinov2.lvd142m", "model.safetensors")]:
        in_harness = _hf_tree(harness, repo, file, b"h")
        ident = checkpoint_identity(family_spec, str(harness))
        assert (ident["local_path"], ident["found_in"]) == (str(in_harness), "harness cache")
        in_std = _hf_tree(std, repo, file, b"s")
        ident = checkpoint_identity(family_spec, str(harness))
        assert (ident["local_path"], ident["found_in"]) == (str(in_std), "huggingface cache")
    from fsadbench.backbone import timm_family
    assert timm_family.tag_checkpoint(parse_backbone("vit_small_patch14_dinov2", "lvd142m"), str(harness)) == \
        std / "models--timm--vit_small_patch14_dinov2.lvd142m" / "snapshots" / "local" / "model.safetensors"


def test_torch_hubs_cache_is_searched_before_the_harness_cache(tmp_path, monkeypatch):
    from fsadbench.backbone import torchvision_family

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = parse_backbone("wide_resnet50_2", "IMAGENET1K_V1")
    name = "wide_resnet50_2-95faca4d.pth"
    (tmp_path / "harness").mkdir()
    (tmp_path / "harness" / name).write_bytes(b"h")
    assert torchvision_family.tag_checkpoint(spec, str(tmp_path / "harness")) == tmp_path / "harness" / name
    (tmp_path / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "torch" / "hub" / "checkpoints" / name).write_bytes(b"t")
    hit = find_checkpoint(checkpoints.torchvision_source("wide_resnet50_2", "IMAGENET1K_V1"), str(tmp_path / "harness"))
    assert hit == Found(tmp_path / "torch" / "hub" / "checkpoints" / name, "torch hub cache")
    assert checkpoint_identity(spec, str(tmp_path / "harness"))["found_in"] == "torch hub cache"


def test_remedies_name_the_option_that_sets_the_backbone(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoints, "reachable", lambda *a, **k: False)
    spec = BackboneSpec("ViT-L-14-336", "openai", image_size=518)
    with pytest.raises(WeightsError) as own:
        load_backbone(spec, cache_dir=str(tmp_path), option="--method-option anomalyclip.backbone_weights={file}")
    assert "pass the file: --method-option anomalyclip.backbone_weights=/path/to/" in str(own.value)
    assert "--model ViT-L-14-336 --pretrained" not in str(own.value)
    assert "QuickGELU" in str(own.value)
    with pytest.raises(WeightsError) as sweep:
        load_backbone(BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"), cache_dir=str(tmp_path))
    assert f"pass the file: --model ViT-B-16-plus-240 --pretrained /path/to/{E32}" in str(sweep.value)
    from fsadbench.backbone import torchvision_family

    monkeypatch.setattr(torchvision_family, "reachable", lambda host: False)
    with pytest.raises(WeightsError, match="pass the file: --method-option patchcore.backbone_weights=/path/to/wide"):
        load_backbone(parse_backbone("wide_resnet50_2", "IMAGENET1K_V1"),
                      option="--method-option patchcore.backbone_weights={file}")


def test_vision_default_backbones_follow_their_tag_configs(tmp_path, monkeypatch):
    """AnomalyDINO's DINOv2 at 448 and the baselines' WRN-50-2: size, grid, preprocessing and file per their
    library's config for the tag (random init, the file step patched out)."""
    import timm
    import torchvision

    from fsadbench.backbone import timm_family, torchvision_family, vision

    f = tmp_path / "stand-in.bin"
    f.write_bytes(b"x")
    monkeypatch.setattr(timm_family, "tag_checkpoint", lambda *a, **k: f)
    monkeypatch.setattr(torchvision_family, "tag_checkpoint", lambda *a, **k: f)
    monkeypatch.setattr(vision, "read_state_dict", lambda path: {})
    monkeypatch.setattr(vision.VisionBackbone, "load_weights", lambda self, model, sd, path: None)
    dino = load_backbone(parse_backbone("vit_small_patch14_dinov2@448", "lvd142m"))
    cfg = timm.models.get_pretrained_cfg("vit_small_patch14_dinov2.lvd142m").to_dict()
    assert dino.image_size == 448 and dino.grid == (32, 32) and dino.model.pos_embed.shape[1] == 1 + 32 * 32
    assert (dino.mean, dino.std, dino.interpolation) == (tuple(cfg["mean"]), tuple(cfg["std"]), cfg["interpolation"])
    assert dino.describe()["checkpoint"]["hf_repo"] == "timm/vit_small_patch14_dinov2.lvd142m"
    wrn = load_backbone(parse_backbone("wide_resnet50_2", "IMAGENET1K_V1"))
    tf = torchvision.models.get_model_weights("wide_resnet50_2")["IMAGENET1K_V1"].transforms()
    assert (list(wrn.mean), list(wrn.std), wrn.interpolation) == (tf.mean, tf.std, tf.interpolation.value)
    assert wrn.image_size == tf.crop_size[0] == 224
    assert wrn.describe()["checkpoint"]["address"] == "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"


def test_a_torchscript_release_file_is_refused_without_being_deserialised(tmp_path, monkeypatch):
    """OpenAI's .pt files are TorchScript archives: refused with the tag and the conversion as remedies, and
    torch.jit.load is never called on a user's file (the harness reads plain tensors only)."""
    from fsadbench.backbone.weights import read_state_dict
    from fsadbench.core.errors import WeightsError

    m = torch.nn.Linear(2, 3)
    torch.jit.save(torch.jit.script(m), str(tmp_path / "ViT-X.pt"))

    def boom(*a, **k):
        raise AssertionError("torch.jit.load called on a user's file")

    monkeypatch.setattr(torch.jit, "load", boom)
    with pytest.raises(WeightsError) as err:
        read_state_dict(tmp_path / "ViT-X.pt")
    text = str(err.value)
    assert str(tmp_path / "ViT-X.pt") in text and "TorchScript" in text
    assert "--pretrained openai" in text and "state_dict()" in text
    torch.save(m.state_dict(), tmp_path / "plain.pt")  # a plain state dict still loads
    assert set(read_state_dict(tmp_path / "plain.pt")) == {"weight", "bias"}


def test_a_random_clip_is_built_without_open_clips_random_init_warning(caplog):
    """The harness says RANDOM itself (log NOTE, every table); open_clip's own 'No pretrained weights loaded'
    warning would be a second, unexplained line in every pipeline check."""
    import logging

    from fsadbench.backbone.clip import build_clip
    from fsadbench.core.defaults import TINY_MODEL

    with caplog.at_level(logging.INFO):
        build_clip(BackboneSpec(TINY_MODEL, "none"))
    assert not [r for r in caplog.records if "No pretrained weights loaded" in r.getMessage()]
