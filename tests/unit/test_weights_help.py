"""The weights error names the exact checkpoint, its size and where open_clip looks; a file loads quietly."""

import logging
import re
from pathlib import Path

import torch

from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec
from fsadbench.backbone.weights import checkpoint_facts, weights_help

REPO = "timm/vit_base_patch16_plus_clip_240.laion400m_e31"
E32 = "vit_b_16_plus_240-laion400m_e32-699c4b84.pt"


def test_remedy_names_file_size_url_and_cache_place(tmp_path):
    """laion400m_e32 names its own release file, never the e31 hub copy open_clip's config points at."""
    text = weights_help("ViT-B-16-plus-240", "laion400m_e32", "no network", str(tmp_path / "weights"))
    assert REPO not in text and "laion400m_e31" not in text
    assert f"https://github.com/mlfoundations/open_clip/releases/download/v0.2-weights/{E32}" in text
    # 208,377,345 fp32 parameters = 833.5 MB
    assert "about 834 MB" in text
    assert f"--pretrained /path/to/{E32}" in text
    assert f"{tmp_path / 'weights' / E32}" in text
    assert "--preset smoke" in text


def test_e31_keeps_its_hub_copy(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    text = weights_help("ViT-B-16-plus-240", "laion400m_e31", "no network", str(tmp_path / "weights"))
    assert f"https://huggingface.co/{REPO}/resolve/main/open_clip_pytorch_model.bin" in text
    place = tmp_path / "hf" / f"models--{REPO.replace('/', '--')}"
    assert f"{place}/snapshots/local/open_clip_pytorch_model.bin" in text and f"{place}/refs/main" in text


def test_the_cache_place_given_is_where_the_tag_finds_the_file(tmp_path):
    """Follow the remedy's step 2 with a stand-in file: the tag resolves to it."""
    from fsadbench.backbone.weights import cached_checkpoint

    text = weights_help("ViT-B-16-plus-240", "laion400m_e32", "no network", str(tmp_path))
    target = re.search(r"looked for \(--pretrained \S+\): (\S+)", text).group(1)
    Path(target).write_bytes(b"stand-in")
    assert cached_checkpoint("ViT-B-16-plus-240", "laion400m_e32", str(tmp_path)) == target


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
