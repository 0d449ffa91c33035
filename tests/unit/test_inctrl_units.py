"""InCTRL's equations, each with a hand-checked case, and an oracle: the official scoring
(mala-lab/InCTRL open_clip/model.py l.495-592) ported in our own words, loops and all, compared with
the harness's pieces on random tensors at batch size 1 (the official test batch)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fsadbench.core.errors import MethodError
from fsadbench.methods.inctrl import head as H
from fsadbench.methods.inctrl import residual as R
from fsadbench.methods.inctrl import train as T

EQUIVALENT_MUTANTS = {
    "state_features: F.normalize(f, dim=-1) -> dim=+1 / no dim": "f is P x E: dim 1 is the last, and the default",
    "state_features: F.normalize(f.mean(0), dim=-1) -> dim=None": "a 1-D vector: its norm is over all of it",
    "text_prior: F.normalize(e, dim=-1) -> dim=+1 / no dim": "e is B x E: dim 1 is the last, and the default",
    "text_prior: states.to(e.device) -> .to(None)": "to(None) keeps the device; one device in the tests (CPU)",
    "text_prior: softmax(dim=-1) -> dim=+1": "the logits are B x 2: dim 1 is the last",
    "Adapter: bias=False -> bias=None": "nn.Linear adds a bias only for a true value",
    "draw_prompts: replace=False -> replace=None": "numpy reads a false value: without replacement either way",
}


# -- residual --------------------------------------------------------------------------------------
def test_official_blocks_and_scaling():
    assert R.OFFICIAL_LAYERS == (7, 9, 11) and R.OFFICIAL_BLOCKS == 12 and R.TEXT_SCALE == 100.0
    assert R.scaled((7, 9, 11), 12) == (7, 9, 11)
    assert R.scaled((7, 9, 11), 24) == (14, 18, 22)
    assert R.scaled((7, 9, 11), 6) == (4, 5, 6)  # 3.5 -> 4 (half up), 4.5 -> 5, 5.5 -> 6
    assert R.scaled((1,), 4) == (1,)  # 0.33 -> 0 -> at least 1


def test_prompt_texts_industrial_and_semantic():
    assert len(R.TEMPLATES) == 22 and len(set(R.TEMPLATES)) == 22 and "a cropped photo of a {}." in R.TEMPLATES
    normal, anomalous = R.prompt_texts("metal nut")
    assert len(normal) == 7 * 22 and len(anomalous) == 4 * 22
    assert "a photo of a flawless metal nut." in normal and "a photo of the metal nut with defect." in anomalous
    assert normal[0] == R.TEMPLATES[0].format("metal nut")  # states outer, templates inner
    assert R.prompt_texts("dog") == (["a photo of dog for anomaly detection."],
                                     ["a photo without dog for anomaly detection."])
    assert all(R.prompt_texts(c)[0] == [f"a photo of {c} for anomaly detection."] for c in R.SEMANTIC_CLASSES)
    assert len(R.SEMANTIC_CLASSES) == 11 and R.class_words("metal_nut") == "metal nut"
    assert R.class_words("pcb1") == "pcb1"


def test_state_features_normalise_each_prompt_then_the_mean():
    table = {"n1": [3.0, 4.0], "n2": [0.0, 2.0], "a1": [1.0, 0.0]}

    def encode(prompts):
        return torch.tensor([table[p] for p in prompts])

    orig = R.prompt_texts
    R.prompt_texts = lambda name: {"x": (["n1", "n2"], ["a1"])}[name]
    try:
        s = R.state_features(encode, "x")
    finally:
        R.prompt_texts = orig
    # normals: (0.6, 0.8) and (0, 1) -> mean (0.3, 0.9) -> / sqrt(0.9)
    assert torch.allclose(s[0], torch.tensor([0.3, 0.9]) / math.sqrt(0.9))
    assert torch.allclose(s[1], torch.tensor([1.0, 0.0]))


def test_text_prior_hand_checked():
    states = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    emb = torch.tensor([[2.0, 0.0], [0.0, 5.0], [1.0, 1.0], [3.0, 1.0]])
    p = R.text_prior(emb, states)
    c = 1 / math.sqrt(10)
    want = [1 / (1 + math.exp(100)), 1 / (1 + math.exp(-100)), 0.5, 1 / (1 + math.exp(100 * (3 * c - c)))]
    assert torch.allclose(p, torch.tensor(want), atol=1e-7)


def test_text_prior_normalises_each_row():
    states = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), dim=-1)
    p = R.text_prior(torch.tensor([[0.3, 0.31], [10.0, 0.0]]), states)
    d = 100 * (0.31 - 0.3) / math.hypot(0.3, 0.31)
    assert torch.allclose(p[0], torch.tensor(1 / (1 + math.exp(-d))), atol=1e-6)


def test_patch_residual_hand_checked():
    # two layers; query patches vs the union of every shot's patches (min over all of them)
    q = {1: torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]), 2: torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])}
    shots = {1: torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[-1.0, 0.0], [0.0, -1.0]]]),
             2: torch.tensor([[[0.0, 1.0], [0.0, 1.0]], [[-1.0, 0.0], [-1.0, 0.0]]])}
    m = R.patch_residual(q, shots, (1, 2))
    # layer 1: patch 0 matches (1,0): 0; patch 1 best cos 1/sqrt2 -> (1 - 0.7071) / 2
    # layer 2: both patches best cos 0 -> 0.5
    l1 = torch.tensor([0.0, (1 - 1 / math.sqrt(2)) / 2])
    assert torch.allclose(m, ((l1 + 0.5) / 2).unsqueeze(0), atol=1e-6)
    assert torch.allclose(R.patch_residual(q, shots, (1,)), l1.unsqueeze(0), atol=1e-6)


def test_residual_of_each_uses_each_querys_own_prompts():
    g = torch.Generator().manual_seed(0)
    q = {3: torch.randn(2, 4, 5, generator=g)}
    s = {3: torch.randn(2, 3, 4, 5, generator=g)}
    out = R.residual_of_each(q, s, (3,))
    for i in range(2):
        assert torch.allclose(out[i], R.patch_residual({3: q[3][i:i + 1]}, {3: s[3][i]}, (3,))[0])
    assert not torch.allclose(out[1], R.patch_residual({3: q[3][1:2]}, {3: s[3][0]}, (3,))[0])


# -- head ------------------------------------------------------------------------------------------
def test_adapter_and_head_shapes_and_layers():
    a = H.Adapter(8, 4)
    lin = [m for m in a.fc if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features, m.bias) for m in lin] == [(8, 2, None), (2, 8, None)]
    assert sum(isinstance(m, torch.nn.ReLU) for m in a.fc) == 2
    assert (a(-torch.ones(3, 8)) >= 0).all()  # ReLU last
    h = H.ScoringHead(6)
    assert (h.projection1.in_features, h.projection1.out_features, h.projection2.out_features,
            h.projection3.out_features) == (6, 128, 64, 1)
    assert h.bn2.num_features == 128 and h.bn3.num_features == 64


def test_scoring_head_order_hand_checked():
    torch.manual_seed(0)
    h = H.ScoringHead(3).eval()
    x = torch.randn(4, 3)
    z = F.relu(h.projection1(x))
    z = (z - h.bn2.running_mean) / torch.sqrt(h.bn2.running_var + h.bn2.eps) * h.bn2.weight + h.bn2.bias
    z = F.relu(h.projection2(z))
    z = (z - h.bn3.running_mean) / torch.sqrt(h.bn3.running_var + h.bn3.eps) * h.bn3.weight + h.bn3.bias
    assert torch.allclose(h(x), torch.sigmoid(h.projection3(z)), atol=1e-6)


def test_reductions_and_image_residual_by_hand():
    assert H.Adapter(8).fc[0].out_features == 2 and H.HolisticHead(8, 3).adapter.fc[0].out_features == 2
    assert H.HolisticHead(8, 3, reduction=2).adapter.fc[0].out_features == 4
    hh = H.HolisticHead(4, 3)
    with torch.no_grad():
        hh.adapter.fc[0].weight.copy_(torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
        hh.adapter.fc[2].weight.copy_(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    q = torch.tensor([[1.0, 0.0, 2.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    s = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]], [[3.0, 0.0, 0.0, 0.0], [-1.0, 0.0, 0.0, 0.0]]])
    # adapter(x) = relu(x0) * [1, 2, 3, 4]
    want = torch.tensor([[-0.5, -1.0, -1.5, -2.0], [-0.5, -1.0, -1.5, -2.0]])
    assert torch.allclose(hh.image_residual(q, s), want)


def test_holistic_inputs_hand_checked():
    hh = H.HolisticHead(4, 3)
    patch = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.5, 0.25]])
    x = hh.holistic_input(patch, torch.tensor([0.5, 0.25]), torch.tensor([[0.125], [1.0]]))
    assert torch.allclose(x, torch.tensor([[0.725, 0.825, 0.925], [1.25, 1.75, 1.5]]))
    q = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    s = torch.tensor([[[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]])
    want = (hh.adapter(s[0, 0]) + hh.adapter(s[0, 1])) / 2 - hh.adapter(q[0])
    assert torch.allclose(hh.image_residual(q, s)[0], want)


def test_holistic_forward_is_mean_of_head_and_max():
    torch.manual_seed(1)
    hh = H.HolisticHead(4, 3).eval()
    patch, text = torch.rand(2, 3), torch.rand(2)
    q, s = torch.randn(2, 4), torch.randn(2, 2, 4)
    final, image = hh(patch, text, q, s)
    img = hh.image_head(hh.image_residual(q, s))
    hol = hh.holistic_head(text[:, None] + img + patch).squeeze(1)
    assert torch.allclose(image, img.squeeze(1)) and image.shape == (2,)
    assert torch.allclose(final, (hol + patch.max(dim=1).values) / 2)


def test_focal_loss_hand_checked():
    p, y = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.0])
    bce = torch.tensor([math.log(2), 2 + math.log(1 + math.exp(-2))])
    want = ((1 - torch.exp(-bce)) ** 2 * bce).mean()
    assert torch.allclose(H.focal_loss(p, y), want)
    assert torch.allclose(H.focal_loss(p, y, alpha=0.5, gamma=1), (0.5 * (1 - torch.exp(-bce)) * bce).mean())


# -- oracle: the official forward at batch size 1, in our words --------------------------------------
def official_score(tok, layers_q, tok_n, layers_n, states, head):
    """One query: tok (E), layers_q [L x N x D], tok_n (K x E), layers_n [L x (K N) x D]; loops as there."""
    per_layer = []
    for lq, ln in zip(layers_q, layers_n):
        ln = ln / ln.norm(dim=-1, keepdim=True)
        col = []
        for k in range(lq.shape[0]):
            t = lq[k] / lq[k].norm()
            col.append((0.5 * (1 - t @ ln.T)).min())
        per_layer.append(torch.stack(col))
    fmap = torch.stack(per_layer).mean(dim=0)
    img = tok / tok.norm()
    text = (100 * img @ states.T).softmax(dim=-1)[1]
    ref = head.adapter(tok_n).mean(dim=0, keepdim=True) - head.adapter(tok[None])
    ref_score = head.image_head(ref)
    hl = head.holistic_head(text + ref_score + fmap[None]).squeeze(1)
    return (hl + fmap.max()) / 2


def test_oracle_official_scoring_matches():
    torch.manual_seed(3)
    n, d, e, k = 9, 6, 5, 2
    head = H.HolisticHead(e, n).eval()
    for bn in (head.image_head.bn2, head.image_head.bn3, head.holistic_head.bn2, head.holistic_head.bn3):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
    states = F.normalize(torch.randn(2, e), dim=-1)
    for _ in range(3):
        tok, tok_n = torch.randn(e), torch.randn(k, e)
        q = {l: torch.randn(1, n, d) for l in (2, 4, 5)}
        s = {l: torch.randn(k, n, d) for l in (2, 4, 5)}
        want = official_score(tok, [q[l][0] for l in (2, 4, 5)], tok_n, [s[l].reshape(-1, d) for l in (2, 4, 5)],
                              states, head)
        with torch.no_grad():
            patch = R.patch_residual(q, s, (2, 4, 5))
            final, _ = head(patch, R.text_prior(tok[None], states), tok[None], tok_n[None])
        assert torch.allclose(final[0], want, atol=1e-6)


# -- training draws --------------------------------------------------------------------------------
def test_balanced_batches_half_normal_then_anomalous():
    labels = [0, 1, 0, 1, 1, 0, 0]
    out = list(T.balanced_batches(labels, 5, 4, np.random.default_rng(0)))
    assert len(out) == 4 and all(len(b) == 5 for b in out)
    assert all([labels[i] for i in b] == [0, 0, 1, 1, 1] for b in out)
    normals = [i for b in out for i in b[:2]]
    assert sorted(normals[:4]) == [0, 2, 5, 6]  # one pass over the normals before any repeats
    anomalies = [i for b in out for i in b[2:]]
    assert sorted(anomalies[:3]) == [1, 3, 4] and sorted(anomalies[3:6]) == [1, 3, 4]
    with pytest.raises(MethodError, match="0 anomalous"):
        next(T.balanced_batches([0, 0], 2, 1, np.random.default_rng(0)))
    with pytest.raises(MethodError, match="0 normal and 2 anomalous"):
        next(T.balanced_batches([1, 1], 2, 1, np.random.default_rng(0)))


def test_class_stream_permutes_each_pass():
    s = T.class_stream([4, 5, 6], np.random.default_rng(1))
    first, second = [next(s) for _ in range(3)], [next(s) for _ in range(3)]
    assert sorted(first) == sorted(second) == [4, 5, 6]


def test_draw_prompts_same_category_normals_without_replacement():
    cats = ["a", "a", "b", "a", "b", "a"]
    labels = [0, 1, 0, 0, 0, 0]
    for seed in range(5):
        p = T.draw_prompts(1, cats, labels, 3, np.random.default_rng(seed))
        assert sorted(p) == [0, 3, 5]
        p = T.draw_prompts(2, cats, labels, 2, np.random.default_rng(seed))
        assert sorted(p) == [2, 4]  # a normal query may draw itself
    drawn = {tuple(T.draw_prompts(0, cats, labels, 1, np.random.default_rng(s))) for s in range(20)}
    assert drawn == {(0,), (3,), (5,)}
    with pytest.raises(MethodError, match="'b' has 2 normal image\\(s\\), fewer than train_shots=3"):
        T.draw_prompts(2, cats, labels, 3, np.random.default_rng(0))


def test_train_heads_loop_counts_and_optimizer():
    calls = []
    lin = torch.nn.Linear(1, 1)

    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = lin

    head = Head()

    def loss_of(queries, prompts):
        calls.append((list(queries), [list(p) for p in prompts]))
        return (lin(torch.ones(1, 1)) ** 2).sum()

    seen = []
    hist = T.train_heads(head, loss_of, [0, 1, 0, 1], ["a", "a", "a", "a"], shots=1, epochs=2, steps=3,
                         batch_size=2, lr=0.1, weight_decay=0.0, seed=0, report=lambda e, l: seen.append(e))
    assert len(calls) == 6 and len(hist) == 2 and seen == [1, 2] and not head.training
    assert all(len(q) == 2 and all(len(p) == 1 for p in ps) for q, ps in calls)
    assert hist[1] < hist[0]  # the optimizer steps
    again = []
    T.train_heads(head, lambda q, p: (again.append((list(q), [list(x) for x in p])), loss_of(q, p))[1],
                  [0, 1, 0, 1], ["a", "a", "a", "a"], shots=1, epochs=2, steps=3, batch_size=2, lr=0.1,
                  weight_decay=0.0, seed=0)
    assert again == calls[6:]  # the draws come from the seed
    w0 = lin.weight.detach().clone()
    T.train_heads(head, loss_of, [0, 1], ["a", "a"], shots=1, epochs=1, steps=1, batch_size=2, lr=0.0,
                  weight_decay=0.0, seed=0)
    assert torch.equal(lin.weight, w0)


def test_train_heads_history_report_and_optimizer_settings(monkeypatch):
    made = {}
    real = torch.optim.AdamW

    def adamw(params, **kw):
        made.update(kw)
        return real(params, **kw)

    monkeypatch.setattr(T.torch.optim, "AdamW", adamw)
    lin = torch.nn.Linear(1, 1)
    losses = iter([0.5, 1.0, 3.0, 2.0])
    seen = []
    hist = T.train_heads(lin, lambda q, p: lin.weight.sum() * 0 + next(losses), [0, 1], ["a", "a"], shots=1,
                         epochs=2, steps=2, batch_size=2, lr=0.25, weight_decay=0.125, seed=3,
                         report=lambda e, l: seen.append((e, l)))
    assert hist == [0.75, 2.5] and seen == [(1, 0.75), (2, 2.5)]
    assert made == {"lr": 0.25, "betas": (0.9, 0.999), "weight_decay": 0.125}
