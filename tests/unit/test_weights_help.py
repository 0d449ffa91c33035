"""The weights error names the exact checkpoint, its size and where open_clip looks; a file loads quietly."""

import logging
import re
from pathlib import Path

import torch

from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec
from fsadbench.backbone.weights import checkpoint_facts, weights_help

REPO = "timm/vit_base_patch16_plus_clip_240.laion400m_e31"


def test_remedy_names_file_size_url_and_cache_place(tmp_path):
    text = weights_help("ViT-B-16-plus-240", "laion400m_e32", "no network", str(tmp_path / "weights"))
    assert f"https://huggingface.co/{REPO}/resolve/main/open_clip_pytorch_model.bin" in text
    assert "vit_b_16_plus_240-laion400m_e32-699c4b84.pt" in text  # open_clip's URL for the tag
    # 208,377,345 fp32 parameters = 833.5 MB
    assert "about 834 MB" in text
    assert "--pretrained /path/to/open_clip_pytorch_model.bin" in text
    place = tmp_path / "weights" / f"models--{REPO.replace('/', '--')}"
    assert f"{place}/snapshots/local/open_clip_pytorch_model.bin" in text and f"{place}/refs/main" in text
    assert "--preset smoke" in text


def test_the_cache_place_given_is_where_open_clip_finds_the_file(tmp_path, monkeypatch):
    """Follow the remedy's step 2 with a stand-in file: open_clip (offline) resolves the tag to it."""
    import huggingface_hub.constants as hf_constants
    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

    text = weights_help("ViT-B-16-plus-240", "laion400m_e32", "no network", str(tmp_path))
    target, refs = re.search(r"looks for --pretrained \S+: (\S+) and write 'local' into (\S+)", text).groups()
    Path(target).parent.mkdir(parents=True)
    Path(target).write_bytes(b"stand-in")
    Path(refs).parent.mkdir(parents=True, exist_ok=True)
    Path(refs).write_text("local")
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    assert download_pretrained(get_pretrained_cfg("ViT-B-16-plus-240", "laion400m_e32"), cache_dir=str(tmp_path)) \
        == target


def test_unknown_tag_has_no_checkpoint_facts():
    assert checkpoint_facts("ViT-B-16-plus-240", "no-such-tag") == {}
    text = weights_help("ViT-B-16-plus-240", "no-such-tag", "unknown pretrained tag")
    assert "Remedies:" in text and "huggingface.co" not in text


def test_checkpoint_file_loads_without_open_clips_random_init_message(tmp_path, caplog):
    torch.manual_seed(0)
    ref = Backbone(BackboneSpec(TINY_MODEL, "none"))
    path = tmp_path / "tiny.pt"
    torch.save(ref.model.state_dict(), path)
    caplog.clear()  # building the reference said it, rightly: its weights are random
    with caplog.at_level(logging.WARNING):
        b = Backbone(BackboneSpec(TINY_MODEL, str(path)))
    assert b.weights_source == f"file {path}" and b.fingerprint == ref.fingerprint
    assert "No pretrained weights loaded" not in caplog.text
    assert logging.getLogger().filters == []  # the filter is removed again
