"""Backbone: block outputs are copies, checkpoint files load through the user path, clear weight errors."""

import pytest
import torch

from fsadbench.backbone.clip import TINY_MODEL, Backbone, BackboneSpec
from fsadbench.core.errors import ConfigError, WeightsError

pytestmark = pytest.mark.openclip_floor  # CI runs these against the oldest supported open_clip too


def test_tokens_match_open_clip(tiny_backbone):
    x = torch.randn(2, 3, 120, 120)
    out = tiny_backbone.encode_image_tokens(x, layers=(3, 8))
    ref = tiny_backbone.model.encode_image(x)
    assert torch.allclose(out["embedding"], ref, atol=1e-5)
    assert out["tokens"].shape == (2, 225, 64)
    assert out["layer3"].shape == (2, 225, 64)


def test_block_outputs_are_copies_of_the_manual_pass(tiny_backbone):
    """Block 3's output equals a manual pass through blocks 1..3 and owns its memory (no CLS, no view)."""
    x = torch.randn(1, 3, 120, 120)
    v = tiny_backbone.model.visual
    out = tiny_backbone.encode_image_tokens(x, layers=(3,))
    with torch.no_grad():
        h = tiny_backbone.image_tower.embed(x)
        for blk in v.transformer.resblocks[:3]:
            h = blk(h)
    assert torch.equal(out["layer3"], h[:, 1:])
    t = out["layer3"]
    assert t.is_contiguous() and t.untyped_storage().nbytes() == t.numel() * t.element_size()


def test_layers_out_of_range(tiny_backbone):
    with pytest.raises(ConfigError, match="1..12"):
        tiny_backbone.check_layers([0, 13])


def test_checkpoint_file_roundtrip(tmp_path, tiny_backbone):
    """A random-weight checkpoint saved to disk loads through the same code users take."""
    ckpt = tmp_path / "tiny.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in tiny_backbone.model.state_dict().items()}}, ckpt)
    bb = Backbone(BackboneSpec(TINY_MODEL, str(ckpt)))
    assert bb.fingerprint == tiny_backbone.fingerprint
    assert bb.describe()["weights_source"].startswith("file ")
    assert not bb.is_random


def test_checkpoint_with_pickled_object_is_refused(tmp_path):
    import argparse
    import pickle

    ckpt = tmp_path / "evil.pt"
    torch.save({"state_dict": argparse.Namespace(x=1)}, ckpt)  # an arbitrary object: refused by weights_only
    with pytest.raises(WeightsError, match="never unpickles") as e:
        Backbone(BackboneSpec(TINY_MODEL, str(ckpt)))
    assert isinstance(e.value.__cause__, pickle.UnpicklingError)
    assert "False" not in str(e.value)  # never the advice to retry with weights_only=False


@pytest.mark.parametrize("text", ["version https://git-lfs.github.com/spec/v1\n", "<html>Not Found</html>\n"])
def test_a_text_file_given_as_a_checkpoint_is_called_not_a_checkpoint(tmp_path, text):
    """An LFS pointer or an error page saved as the checkpoint is 'not a checkpoint file', not 'holds Python
    objects' (seen failing: torch's unpickler calls any text an unsupported pickle)."""
    from fsadbench.backbone.weights import read_state_dict

    f = tmp_path / "ViT-B-16.pt"
    f.write_text(text)
    with pytest.raises(WeightsError) as e:
        read_state_dict(f)
    assert str(e.value).startswith(f"checkpoint {f} is not a checkpoint file")
    assert repr(text.encode()[:2]) in str(e.value) and "Python objects" not in str(e.value)


def test_missing_checkpoint_names_remedies(tmp_path):
    with pytest.raises(WeightsError) as e:
        Backbone(BackboneSpec(TINY_MODEL, str(tmp_path / "nope.pt")))
    assert "--preset smoke" in str(e.value) and "--pretrained /path" in str(e.value)


def test_unfetchable_tag_names_both_remedies(monkeypatch):
    import fsadbench.backbone.checkpoints as ckpt

    monkeypatch.setattr(ckpt, "reachable", lambda *a, **k: False)
    with pytest.raises(WeightsError) as e:
        Backbone(BackboneSpec("ViT-B-16-plus-240", "laion400m_e32"))
    msg = str(e.value)
    assert "cannot be reached (offline)" in msg and "--preset smoke" in msg and "--pretrained /path" in msg


def test_unknown_model():
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        Backbone(BackboneSpec("ViT-nope", "none"))


def test_random_init_is_deterministic():
    a = Backbone(BackboneSpec(TINY_MODEL, "none"))
    b = Backbone(BackboneSpec(TINY_MODEL, "none"))
    assert a.fingerprint == b.fingerprint and a.is_random
