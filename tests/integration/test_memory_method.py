"""The VG memory score min (1 - cos)/2 and the memory baseline on hand-made cases."""

import math

import pytest
import torch

from fsadbench.methods.common.visual_memory import VisualMemory, min_cosine_distance


def test_min_cosine_distance_hand_case():
    memory = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    query = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0], [0.0, -1.0]])
    got = min_cosine_distance(query, memory, chunk=2)
    want = torch.tensor([0.0, 0.5, (1 - 1 / math.sqrt(2)) / 2, 0.5])
    assert torch.allclose(got, want, atol=1e-6)


def test_visual_memory_means_over_layers():
    mem = VisualMemory(layers=(1, 2))
    # layer 1 memory: e_x ; layer 2 memory: e_y  (k=1 shot, N=1 patch)
    mem.fit({1: torch.tensor([[[1.0, 0.0]]]), 2: torch.tensor([[[0.0, 1.0]]])})
    q = {1: torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), 2: torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])}
    s = mem.score(q)  # patch 0: layer1 0, layer2 0.5 -> 0.25 ; patch 1: 0.5, 0 -> 0.25
    assert torch.allclose(s, torch.tensor([[0.25, 0.25]]))


def test_memory_method_scores_own_shots_zero(method_ctx, tmp_path):
    import numpy as np
    from fixtures_layouts import random_image_refs

    from fsadbench.core.errors import NotApplicable
    from fsadbench.methods.memory import MemoryBank
    from fsadbench.core.types import CategoryInfo

    refs = random_image_refs(tmp_path, 3, 60, 60, prefix="")
    info = CategoryInfo("synthetic", "x", "x")
    m = MemoryBank(method_ctx)
    with pytest.raises(NotApplicable):
        m.fit([], info)
    m.fit(refs[:2], info)
    pred = m.predict(refs)["w/ VG"]
    assert pred.maps.shape == (3, 15, 15)
    assert np.allclose(pred.maps[:2], 0.0, atol=1e-5)  # a shot is its own nearest neighbour
    assert pred.maps[2].max() > 0.0
    assert np.allclose(pred.scores, pred.maps.reshape(3, -1).max(axis=1))
