"""Feature cache: content-keyed, shared across calls and processes, counts encoder passes."""

import pytest
import torch
from fixtures_layouts import random_image_refs

from fsadbench.backbone.features import FeatureStore, token_spec
from fsadbench.protocol.sampler import file_digest
from fsadbench.core.types import ImageRef

pytestmark = pytest.mark.openclip_floor  # CI runs these against the oldest supported open_clip too


def _images(tmp_path, n, seed=0):
    return random_image_refs(tmp_path, n, 40, 40, seed=seed, prefix=f"img{seed}_")


def test_hits_after_first_pass(tiny_backbone, tmp_path):
    refs = _images(tmp_path, 5)
    store = FeatureStore(tiny_backbone, cache_dir=tmp_path / "c", batch_size=2)
    spec = token_spec((3, 8))
    a = store.get(refs, spec)
    assert store.stats.encoded == 5 and store.stats.batches == 3
    b = store.get(refs[::-1], spec)
    assert store.stats.encoded == 5 and store.stats.memory_hits == 5
    assert torch.equal(a["layer3"][0], b["layer3"][-1])
    # a new process (new store) on the same folder reads the disk entries
    store2 = FeatureStore(tiny_backbone, cache_dir=tmp_path / "c")
    c = store2.get(refs, spec)
    assert store2.stats.encoded == 0 and store2.stats.disk_hits == 5
    assert torch.equal(a["tokens"], c["tokens"])


def test_key_is_content_not_path(tiny_backbone, tmp_path):
    refs = _images(tmp_path, 1)
    copy = tmp_path / "elsewhere.png"
    copy.write_bytes(refs[0].path.read_bytes())
    store = FeatureStore(tiny_backbone, cache_dir=None)
    spec = token_spec((3,))
    store.get(refs, spec)
    store.get([ImageRef(copy, file_digest(copy), "elsewhere.png")], spec)
    assert store.stats.encoded == 1


def test_other_spec_misses(tiny_backbone, tmp_path):
    refs = _images(tmp_path, 2)
    store = FeatureStore(tiny_backbone, cache_dir=None)
    store.get(refs, token_spec((3,)))
    store.get(refs, token_spec((4,)))
    assert store.stats.encoded == 4


def test_cached_values_equal_direct_encoder(tiny_backbone, tmp_path):
    refs = _images(tmp_path, 2)
    store = FeatureStore(tiny_backbone, cache_dir=tmp_path / "c")
    got = store.get(refs, token_spec((8,)))
    px = tiny_backbone.load_pixels([r.path for r in refs])
    ref = tiny_backbone.encode_image_tokens(px, (8,))
    assert torch.allclose(got["layer8"], ref["layer8"], atol=1e-6)
