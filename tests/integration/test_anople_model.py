"""AnoPLe after training: the visual memory and the text each category is scored with, recomputed
from the trained prompts (methods/anople/model.py: _finish, _category_text, _tokens)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from fixtures_layouts import random_image_refs

from fsadbench.core.errors import MethodError, NotApplicable
from fsadbench.core.types import CategoryInfo
from fsadbench.methods.anople.model import AnoPLe
from fsadbench.methods.anople.prompts import encode_image_prompted, encode_text_prompted, slot_sentences

CATS = {"a": CategoryInfo("synthetic", "a", "metal nut"), "b": CategoryInfo("synthetic", "b", "wood")}


@pytest.fixture(scope="module")
def shots(tmp_path_factory):
    d = tmp_path_factory.mktemp("anople_shots")
    return {"a": random_image_refs(d, 3, 50, 70, seed=1, prefix="a"),
            "b": random_image_refs(d, 2, 64, 64, seed=2, prefix="b")}


def _fit(method_ctx, shots, **opts):
    m = AnoPLe(method_ctx, epochs=1, depth=2, crop_grid=2, memory_layers=(2, 5), **opts)
    with torch.enable_grad():
        m.fit_dataset(shots, CATS)
    return m


@torch.no_grad()
def test_memory_bank_is_each_categorys_shots_on_the_whole_image_signal(method_ctx, shots):
    method_ctx.batch_size = 2  # category "a" has 3 shots: two batches
    m = _fit(method_ctx, shots)
    assert set(m.memories) == {"a", "b"}
    for c, refs in shots.items():
        px = method_ctx.features.pixels(refs)
        sig = m.learner.signal[torch.full((len(refs),), 4)]  # c_{N+1}: the whole image
        out = encode_image_prompted(m.model, px, m.learner.visual_prompts(), sig, (2, 5))
        want = ((out.layers[2] + out.layers[5]) / 2).reshape(-1, out.layers[2].shape[-1])
        mem = m.memories[c]
        assert mem.layers == (0,) and torch.allclose(mem.bank[0], want, atol=1e-5), c
    assert not m.learner.training and not m.decoder.training  # frozen for inference


@torch.no_grad()
def test_text_average_over_training_classes_and_own(method_ctx, shots):
    m = _fit(method_ctx, shots)
    tokens = method_ctx.backbone.tokenizer([s for c in ("metal nut", "wood")
                                            for s in slot_sentences(c, m.learner.text_slots, "abnormal")])
    emb = F.normalize(encode_text_prompted(m.model, tokens, m.learner.text_prompts()), dim=-1).reshape(2, 2, -1)
    assert torch.allclose(m._train_text, emb, atol=1e-5)
    avg = F.normalize(emb.mean(dim=0), dim=-1)  # sec. 3.4.2: the average over the training classes
    for c in CATS:
        m.set_category(CATS[c])
        assert torch.allclose(m._category_text(), avg, atol=1e-5)
    own = _fit(method_ctx, shots, class_text="own")
    for k, c in enumerate(CATS):
        own.set_category(CATS[c])
        assert torch.allclose(own._category_text(), own._train_text[k], atol=1e-6)
    assert not torch.allclose(own._train_text[0], own._train_text[1], atol=1e-3)


def test_tokens_hold_one_stand_in_per_slot_and_the_state_word(method_ctx, shots):
    m = AnoPLe(method_ctx, n_ctx_text=2, n_ctx_visual=3, state_word="damaged")
    m._setup([CATS["a"]])
    assert _sentences_of(m, ["metal nut", "wood"]) == [
        "X X X X X metal nut.", "X X X X X damaged metal nut.", "X X X X X wood.", "X X X X X damaged wood."]


def _sentences_of(m, classes):
    """The sentences class_texts hands the tokenizer (which is wrapped to record them)."""
    seen, real = [], m.ctx.backbone.tokenizer
    m.ctx.backbone.tokenizer = lambda sents: seen.append(list(sents)) or real(sents)
    try:
        m.class_texts(classes, m.learner.text_prompts())
    finally:
        m.ctx.backbone.tokenizer = real
    return seen[0]


def test_fit_errors_name_what_is_missing(method_ctx, shots):
    m = AnoPLe(method_ctx)
    with pytest.raises(NotApplicable, match=r"no shots for \['b'\]"):
        m.fit_dataset({"a": shots["a"], "b": []}, CATS)
    with pytest.raises(NotApplicable, match="no shots for any category"):
        m.fit_dataset({}, CATS)
    with pytest.raises(MethodError, match=r"no CategoryInfo for \['c'\]"):
        m.fit_dataset({"a": shots["a"], "c": shots["b"]}, CATS)


def test_setup_builds_learner_and_decoder_from_the_options(method_ctx):
    bb = method_ctx.backbone
    m = AnoPLe(method_ctx, depth=5, n_ctx_text=2, n_ctx_visual=4, crop_grid=3, decoder_scale=3)
    m._setup([CATS["a"]])
    pl = m.learner
    assert (pl.depth, pl.n_text, pl.n_visual) == (5, 2, 4)
    assert pl.ctx_text.shape[-1] == bb.model.transformer.width and pl.ctx_visual.shape[-1] == bb.width
    assert pl.signal.shape == (10, bb.width)  # 3 x 3 crops + the image
    d = m.decoder
    assert d.scale == 3 and d.conv1.in_channels == bb.width and d.conv3.out_channels == bb.embed_dim
    off = AnoPLe(method_ctx, view_signal=False, crop_grid=3)
    off._setup([CATS["a"]])
    assert off.learner.signal is None and off.n_views == 10
    # parameters drawn under the cell seed, the global generator left as it was
    torch.manual_seed(123)
    before = torch.get_rng_state()
    again = AnoPLe(method_ctx, depth=5, n_ctx_text=2, n_ctx_visual=4, crop_grid=3, decoder_scale=3)
    again._setup([CATS["a"]])
    assert torch.equal(torch.get_rng_state(), before)
    for a, b in zip(m.learner.parameters(), again.learner.parameters()):
        assert torch.equal(a, b)
    other = AnoPLe(method_ctx.__class__(**{**method_ctx.__dict__, "seed": 3}), depth=5)
    other._setup([CATS["a"]])
    assert not torch.allclose(other.learner.ctx_text[:, :2], m.learner.ctx_text[:, :2])


def test_predict_needs_a_trained_category_set(method_ctx, shots):
    m = _fit(method_ctx, shots)  # fit_dataset trains; the category is chosen by set_category
    with pytest.raises(MethodError, match=r"^AnoPLe.predict\(\) before fit\(\) / set_category\(\)$"):
        m.predict(shots["a"][:1])
    m.set_category(CATS["b"])
    assert m.predict(shots["a"][:1])["w/o VG"].maps.shape == (1, 30, 30)


@torch.no_grad()
def test_amp_changes_nothing_on_cpu_and_no_signal_runs(method_ctx, shots):
    """``amp`` is bf16 autocast on CUDA only; on CPU the numbers are the fp32 ones, bit for bit."""
    amp_ctx = method_ctx.__class__(**{**method_ctx.__dict__, "amp": True})
    out = []
    for ctx in (method_ctx, amp_ctx):
        m = AnoPLe(ctx, multi_class=False, epochs=1, depth=2, crop_grid=1)
        with torch.enable_grad():
            m.fit(shots["b"], CATS["b"])
        out.append(m.predict(shots["a"][:2]))
    for v in out[0]:
        assert torch.equal(torch.as_tensor(out[0][v].maps), torch.as_tensor(out[1][v].maps))
    m = AnoPLe(method_ctx, multi_class=False, epochs=1, depth=2, crop_grid=2, view_signal=False)
    with torch.enable_grad():
        m.fit(shots["b"], CATS["b"])
    pred = m.predict(shots["a"][:2])["w/ VG"]
    assert m.learner.signal is None and pred.maps.shape == (2, 30, 30)


def test_memory_layers_error_names_method_and_option(method_ctx):
    from fsadbench.core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^anople option 'memory_layers' must be a list of block numbers"):
        AnoPLe(method_ctx, memory_layers=["x"])
