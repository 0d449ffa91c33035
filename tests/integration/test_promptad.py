"""PromptAD: losses, prompt layout, fusion, training and the feature cache (methods/promptad.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.methods.promptad import (GENERIC_STATES, PromptAD, defect_phrases, harmonic, promptad_losses,
                                        state_sentence)
from fsadbench.core.types import CategoryInfo, ImageRef


def test_losses_hand_case():
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    normal = torch.tensor([[1.0, 0.0]])
    hand = torch.tensor([[0.0, 1.0]])
    learned = torch.tensor([[0.6, 0.8]])
    out = promptad_losses(f, normal, hand, learned, scale=2.0, margin=1.5, align_weight=0.5)
    # a_n = (1, 0); A = [(0, 1), (0.6, 0.8)]; a_a = (0.3, 0.9) / sqrt(0.9)
    ce0 = math.log(math.exp(2.0) + math.exp(0.0) + math.exp(1.2)) - 2.0  # f0 . [a_n, A] = (1, 0, 0.6)
    ce1 = math.log(math.exp(0.0) + math.exp(2.0) + math.exp(1.6)) - 0.0  # f1 . [a_n, A] = (0, 1, 0.8)
    assert out["ce"].item() == pytest.approx((ce0 + ce1) / 2, abs=1e-5)
    a_a1 = 0.9 / math.sqrt(0.9)
    a_a0 = 0.3 / math.sqrt(0.9)
    # ||f - a||^2 = 2 - 2 f.a for unit vectors
    m0 = max(0.0, 0.0 - (2 - 2 * a_a0) + 1.5)
    m1 = max(0.0, 2.0 - (2 - 2 * a_a1) + 1.5)
    assert out["margin"].item() == pytest.approx((m0 + m1) / 2, abs=1e-5)
    assert out["align"].item() == pytest.approx(0.6 ** 2 + 0.2 ** 2, abs=1e-6)
    assert out["total"].item() == pytest.approx((ce0 + ce1) / 2 + (m0 + m1) / 2 + 0.5 * 0.4, abs=1e-5)


def test_margin_zero_is_relu_of_distance_gap():
    f = torch.tensor([[1.0, 0.0]])
    out = promptad_losses(f, torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 1.0]]),
                          scale=1.0)
    assert out["margin"].item() == 0.0  # f sits on a_n: the gap is negative
    out = promptad_losses(f, torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor([[1.0, 0.0]]),
                          scale=1.0)
    assert out["margin"].item() == pytest.approx(2.0)  # ||f - a_n||^2 = 2, ||f - a_a||^2 = 0


def test_states_and_fusion():
    assert defect_phrases(("good", "broken_large", "combined", "scratch", "flaw", "broken_large")) == (
        "with broken large", "with scratch")
    assert state_sentence("damaged", "metal nut") == "damaged metal nut."
    assert state_sentence("with broken large", "bottle") == "bottle with broken large."
    assert len(GENERIC_STATES) == 8
    got = harmonic(torch.tensor([0.5, 1.0, 0.0]), torch.tensor([0.5, 0.25, 0.3]))
    assert torch.allclose(got, torch.tensor([0.25, 0.2, 0.0]), atol=1e-6)


def _refs(tmp_path, n, seed):
    from PIL import Image

    from fsadbench.protocol.sampler import file_digest

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = tmp_path / f"img{seed}_{i}.png"
        base = np.full((60, 60, 3), 120, np.uint8)
        base[::4] = 200
        Image.fromarray(np.clip(base + rng.integers(0, 20, base.shape), 0, 255).astype(np.uint8)).save(p)
        out.append(ImageRef(p, file_digest(p), p.name))
    return out


INFO = CategoryInfo("synthetic", "stripes", "stripes", defect_types=("good", "hole", "broken_large"))


def test_prompt_layout(method_ctx):
    m = PromptAD(method_ctx, epochs=1, n_pro=2, n_pro_ab=3)
    states = m._states(INFO)
    assert states == GENERIC_STATES + ("with hole", "with broken large")
    gen = torch.Generator().manual_seed(0)
    from fsadbench.methods.promptad import PromptSet

    ps = PromptSet(m.encoder, "stripes", states, 4, 1, 2, 3, 0.02, gen, torch.device("cpu"))
    prompts, a, b = ps.prompts()
    assert (a, b, len(prompts)) == (2, 2 + 2 * 10, 2 + 20 + 3)
    texts = [tpl.text for tpl, _ in prompts]
    assert texts[0] == "* * * * stripes." and texts[2] == "* * * * damaged stripes."
    assert "* * * * stripes with broken large." in texts and texts[-1] == "* * * * * stripes."
    learned = prompts[b:]
    assert [tpl.slots["ab"].tolist() for tpl, _ in learned] == [[5]] * 3
    assert learned[0][0].eot == 8 and int(learned[0][0].ids.argmax()) == 8  # SOS, 4 ctx, ab, stripes, ., EOT
    # prompt i pairs ctx_n[i % n_pro] with ctx_a[i % n_pro_ab]
    for i, (_, vals) in enumerate(learned):
        assert vals["ctx"].data_ptr() == ps.ctx_n[i % 2].data_ptr()
        assert vals["ab"].data_ptr() == ps.ctx_a[i % 3].data_ptr()
    g = PromptAD(method_ctx, generic_only=True)
    assert g._states(INFO) == GENERIC_STATES


@pytest.fixture(scope="module")
def synthetic_disc(tmp_path_factory):
    from fsadbench.datasets.synthetic import SyntheticDataset
    from fsadbench.protocol.sampler import file_digest

    ds = SyntheticDataset(root=tmp_path_factory.mktemp("synth"), size=64, n_train=2, n_test_good=1, n_test_bad=2)
    split = ds.load("disc")

    def refs(samples):
        return [ImageRef(s.image_path, file_digest(s.image_path), s.rel_path) for s in samples]

    return split.info, refs(split.train), refs(split.test)


def test_fit_lowers_loss_deterministic_and_predicts(method_ctx, synthetic_disc):
    info, shots, test = synthetic_disc
    assert info.defect_types  # class-specific states come from the dataset
    m = PromptAD(method_ctx, epochs=10)  # the paper's optimiser settings, fewer epochs
    with pytest.raises(NotApplicable):
        m.fit([], info)
    with pytest.raises(ConfigError, match="before fit"):
        m.predict(test)
    m.fit(shots, info)
    for run in ("segmentation", "image"):
        hist = m.history[run]
        assert len(hist) == 10 and hist[-1]["total"] < 0.9 * hist[0]["total"]
    assert any("disc with" in t and "flaw" not in t and "defect" not in t and "damage" not in t
               for t in m.prompt_texts)
    preds = m.predict(test)
    assert set(preds) == {"w/o VG", "w/ VG"}
    for p in preds.values():
        assert p.maps.shape == (3, 15, 15) and p.scores.shape == (3,)
        assert np.isfinite(p.maps).all() and np.isfinite(p.scores).all()
    assert ((preds["w/o VG"].maps > 0) & (preds["w/o VG"].maps < 1)).all()
    again = PromptAD(method_ctx, epochs=10)
    again.fit(shots, info)
    assert torch.equal(again.text_seg, m.text_seg) and torch.equal(again.text_img, m.text_img)
    assert np.array_equal(again.predict(test)["w/ VG"].maps, preds["w/ VG"].maps)
    method_ctx.seed = 1
    other = PromptAD(method_ctx, epochs=10)
    other.fit(shots, info)
    assert not torch.equal(other.text_seg, m.text_seg)
    d = m.describe()
    assert d["loss_segmentation"]["epochs"] == 10 and d["vv_blocks"] == "all"


def test_shared_image_prompts_and_raw_scale(method_ctx, tmp_path):
    shots, test = _refs(tmp_path, 1, 2), _refs(tmp_path, 2, 3)
    m = PromptAD(method_ctx, epochs=2, separate_image_prompts=False, raw_logit_scale=True, generic_only=True)
    assert m.scale == pytest.approx(float(method_ctx.backbone.model.logit_scale))
    m.fit(shots, INFO)
    assert m.text_img is m.text_seg and "image" not in m.history
    assert len(m.prompt_texts) == 1 + 8 + 4
    pred = m.predict(test)["w/ VG"]
    assert pred.maps.shape == (2, 15, 15)
    with pytest.raises(ConfigError, match="epochs"):
        PromptAD(method_ctx, epochs=0)


def test_sweep_encodes_each_image_once(method_ctx, tmp_path):
    """3 shot counts x 3 seeds: one encoder pass per image (train pool + test), the rest from the cache."""
    from fsadbench.protocol.sampler import sample_shots
    from fsadbench.core.types import Sample

    pool, test = _refs(tmp_path, 4, 4), _refs(tmp_path, 3, 5)
    samples = [Sample(r.path, 0, rel_path=r.rel_path) for r in pool]
    by_path = {r.path: r for r in pool}
    used = set()
    for k in (1, 2, 3):
        for seed in (0, 1, 2):
            method_ctx.seed = seed
            shots = [by_path[s.image_path] for s in sample_shots(samples, k, seed)]
            used.update(r.digest for r in shots)
            m = PromptAD(method_ctx, epochs=1, separate_image_prompts=False)
            m.fit(shots, INFO)
            m.predict(test)
    assert method_ctx.features.stats.encoded == len(used) + len(test)
