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
    with pytest.raises(NotApplicable, match=r"^memory needs at least one normal shot \(shots=0 is zero-shot\)$"):
        m.fit([], info)
    m.fit(refs[:2], info)
    pred = m.predict(refs)["w/ VG"]
    assert pred.maps.shape == (3, 15, 15)
    assert np.allclose(pred.maps[:2], 0.0, atol=1e-5)  # a shot is its own nearest neighbour
    assert pred.maps[2].max() > 0.0
    assert np.allclose(pred.scores, pred.maps.reshape(3, -1).max(axis=1))


def test_memory_defaults_alias_and_wiring_by_hand(method_ctx):
    import dataclasses

    import numpy as np

    from fsadbench.core.types import CategoryInfo
    from fsadbench.methods.memory import MemoryBank

    # blocks 3 and 8 (1-indexed): PromptAD's memory blocks (spec promptad.md quirk 2), APT Sec. 4 "two layers"
    assert dataclasses.asdict(MemoryBank.Options()) == {"memory_layers": (3, 8)}
    with pytest.warns(DeprecationWarning, match="'layers' is deprecated; use 'memory_layers'"):
        assert MemoryBank(method_ctx, layers=[2, 9]).layers == (2, 9)
    m = MemoryBank(method_ctx, memory_layers=[4, 6])
    assert m.spec.name == "tokens" and dict(m.spec.params) == {"layers": (4, 6)}  # plain pass, not V-V
    g = torch.Generator().manual_seed(0)
    shots = {f"layer{l}": torch.randn(2, 225, 5, generator=g) for l in (4, 6)}
    query = {f"layer{l}": torch.randn(1, 225, 5, generator=g) for l in (4, 6)}

    class Stub:
        def __init__(self):
            self.next = shots

        def get(self, images, spec):
            return self.next

    m.ctx.features = Stub()
    m.fit([None, None], CategoryInfo("synthetic", "x", "x"))
    m.ctx.features.next = query
    pred = m.predict([None])["w/ VG"]

    def dist(q, bank):
        qn = q / q.norm(dim=-1, keepdim=True)
        bn = bank / bank.norm(dim=-1, keepdim=True)
        return (1 - (qn @ bn.T).max(dim=-1).values) / 2

    want = (dist(query["layer4"][0], shots["layer4"].reshape(-1, 5))
            + dist(query["layer6"][0], shots["layer6"].reshape(-1, 5))) / 2
    assert np.allclose(pred.maps.reshape(-1), want.numpy(), atol=1e-6)
    assert pred.scores[0] == pytest.approx(float(want.max()), abs=1e-6)
    d = m.describe()
    assert d == {"options_resolved": {"memory_layers": (4, 6)}, "fidelity_notes": list(MemoryBank.fidelity_notes),
                 "memory_layers": [4, 6], "score": "min (1 - cos)/2, mean over blocks",
                 "image_score": "max of the map"}
    from fsadbench.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^memory option 'memory_layers' must be a list of block numbers"):
        MemoryBank(method_ctx, memory_layers=["x"])


def test_visual_memory_bank_layout_and_empty():
    mem = VisualMemory(layers=(5,))
    assert mem.empty
    mem.fit({5: torch.arange(24.0).reshape(2, 3, 4), 6: torch.zeros(1, 1, 4)})
    assert set(mem.bank) == {5} and mem.bank[5].shape == (6, 4) and not mem.empty  # k x N flattened
    assert torch.equal(mem.bank[5][3], torch.tensor([12.0, 13.0, 14.0, 15.0]))
    mem.fit({5: torch.zeros(0, 3, 4)})
    assert mem.empty


def test_min_cosine_distance_keeps_the_query_device():
    q, m = torch.randn(5, 3), torch.randn(4, 3)
    out = min_cosine_distance(q.to("meta"), m.to("meta"), chunk=2)
    assert out.device.type == "meta" and out.shape == (5,)
    assert VisualMemory((1,)).bank == {}


# Equivalent mutants (mutmut, methods/common/visual_memory.py), with the reason they cannot be killed:
EQUIVALENT_MUTANTS = {
    "min_cosine_distance: chunk default 4096 -> 4097": "chunking never changes the result",
    "min_cosine_distance: normalize(query / memory, dim default / +1)": "dim 1 is the last dim of the 2-D inputs",
    "min_cosine_distance: range step omitted (1 instead of chunk)": "overlapping chunks write the same values",
}
