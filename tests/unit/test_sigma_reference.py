"""Sigma at the reference's resolution (bench/protocol/evaluator.py ``Smoothing``, run/identity.py
``smoothing_for`` / ``protocol_facts``, each method's ``sigma_size``), PaDiM's image score from the smoothed
map, and AnomalyDINO's reference choices (masking table, mask closing, declared departures).

Oracles are the official formulas in our own words: PaDiM main.py l. 172-185 (bilinear upsampling to the
224 px input, scipy's gaussian_filter sigma 4, max), AnomalyDINO src/utils.py l. 25-30 (the map at the test
image's original H x W, then sigma 4) and src/utils.py l. 101-116 / 160-163 (the masking table).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from scipy.ndimage import gaussian_filter

from fsadbench.core.types import CategoryInfo, Prediction, Sample
from fsadbench.core.variants import W_VG
from fsadbench.methods.anomalydino import torch_model as dino_core
from fsadbench.methods.padim.model import PadimMethod, smoothed_max
from fsadbench.protocol.evaluator import ORIGINAL, CategoryEvaluator, Smoothing, gaussian_blur, postprocess
from fsadbench.run import identity as idn
from fsadbench.run.config import PROTOCOL_VERSION, Protocol

#: equivalent survivors of mutation testing (bench/protocol/evaluator.py, the parts added here; the older
#: ones are listed in tests/unit/test_evaluator.py)
EQUIVALENT_MUTANTS: dict[str, str] = {
    "_blur_axis: .to(x.device) -> .to(None) / dropped (kernel, indices)": "device: the CPU tests cannot see one",
    "_blur_axis: x.shape[-2] -> x.shape[+2]": "x is B x 1 x H x W: index 2 is -2",
    "gaussian_blur: s > 0 -> s >= 0": "a sigma of 0 maps to 0.0 either way",
    "gaussian_blur: across=False -> across=None": "None is falsy: the same branch",
    "Smoothing.uniform: at(...)[0] -> [1]": "both axes are equal unless the size is the original one (None then)",
}


# -- the equivalent sigma ------------------------------------------------------------------------------


def test_smoothing_scales_sigma_from_the_reference_size_to_the_evaluation_size():
    assert Smoothing(4.0).at(400) == (4.0, 4.0)  # at the evaluation size: as is
    assert Smoothing(4.0, 224).at(400) == (4.0 * 400 / 224, 4.0 * 400 / 224)  # 7.142857...
    assert Smoothing(4.0, 200).at(400) == (8.0, 8.0)  # hand-checked: twice the pixels, twice the sigma
    assert Smoothing(4.0, ORIGINAL).at(400, (800, 1000)) == (2.0, 1.6)  # down 400/800, across 400/1000
    assert Smoothing(0.0, 224).at(400) == (0.0, 0.0)
    assert Smoothing(4.0, 224).uniform(448) == 8.0 and Smoothing(4.0).uniform(448) == 4.0
    assert Smoothing(4.0, ORIGINAL).uniform(400) is None
    assert Smoothing(4.0).reference() is None
    assert Smoothing(4.0, 518).reference() == {"sigma": 4.0, "image_size": 518}
    assert Smoothing(4.0, ORIGINAL).reference() == {"sigma": 4.0, "image_size": "original"}


def test_gaussian_blur_per_axis_is_scipys_and_one_value_is_both_axes():
    maps = torch.rand(2, 30, 40, generator=torch.Generator().manual_seed(0))
    out = gaussian_blur(maps, (2.0, 1.5))
    for i in range(2):
        want = gaussian_filter(maps[i].double().numpy(), sigma=(2.0, 1.5), mode="reflect", truncate=4.0)
        np.testing.assert_allclose(out[i].numpy(), want, atol=1e-6)
    assert torch.equal(gaussian_blur(maps, 3.0), gaussian_blur(maps, (3.0, 3.0)))
    across = gaussian_blur(maps, (0.0, 2.0))  # an axis with sigma 0 is left alone
    np.testing.assert_allclose(across[0].numpy(), gaussian_filter(maps[0].double().numpy(), (0, 2.0)), atol=1e-6)
    assert torch.equal(gaussian_blur(maps, 0.0), maps) and torch.equal(gaussian_blur(maps, None), maps)


def image(tmp_path, name: str, w: int, h: int) -> Sample:
    path = tmp_path / f"{name}.png"
    Image.new("RGB", (w, h)).save(path)
    return Sample(image_path=path, label=0, mask_path=None)


def test_original_size_smoothing_blurs_each_map_as_the_reference_at_its_image_size(tmp_path):
    samples = [image(tmp_path, "a", 50, 40), image(tmp_path, "b", 20, 20)]  # W x H
    maps = torch.rand(2, 5, 5, generator=torch.Generator().manual_seed(1))
    out = postprocess(maps, 40, Smoothing(4.0, ORIGINAL), samples)
    up = F.interpolate(maps[:, None], size=(40, 40), mode="bilinear", align_corners=False)[:, 0]
    for i, (h, w) in enumerate([(40, 50), (20, 20)]):
        want = gaussian_filter(up[i].double().numpy(), sigma=(4.0 * 40 / h, 4.0 * 40 / w), mode="reflect")
        np.testing.assert_allclose(out[i].numpy(), want, atol=1e-5)
    assert not torch.allclose(out[0], postprocess(maps, 40, 4.0)[0])  # not sigma 4 at the evaluation size
    with pytest.raises(ValueError) as err:
        postprocess(maps, 40, Smoothing(4.0, ORIGINAL), samples[:1])
    assert str(err.value) == "smoothing at the original size needs one sample per map (1 for 2)"
    empty = postprocess(torch.zeros(0, 5, 5), 40, Smoothing(4.0, ORIGINAL), [])
    assert empty.shape == (0, 40, 40)
    assert torch.equal(postprocess(maps, 40, Smoothing(4.0, 20)), postprocess(maps, 40, 8.0))


def test_the_evaluator_applies_the_smoothing_and_reports_the_per_image_range(tmp_path):
    samples = [image(tmp_path, "a", 80, 40), image(tmp_path, "b", 40, 40)]
    pred = Prediction(maps=np.random.default_rng(0).random((2, 4, 4)).astype(np.float32), scores=np.zeros(2))
    ev = CategoryEvaluator(40, Smoothing(4.0, ORIGINAL), aupro=False)
    got = ev.add(pred, samples, [np.zeros((40, 40), bool)] * 2)
    assert torch.equal(got, postprocess(pred.maps, 40, Smoothing(4.0, ORIGINAL), samples))
    assert ev.sigma_applied() == {"y": [4.0, 4.0], "x": [2.0, 4.0]}
    uniform = CategoryEvaluator(40, Smoothing(4.0, 20), aupro=False)
    assert torch.equal(uniform.add(pred, samples, [np.zeros((40, 40), bool)] * 2), postprocess(pred.maps, 40, 8.0))
    assert uniform.sigma_applied() is None
    plain = CategoryEvaluator(40, 2.0, aupro=False)  # a bare number is a sigma at the evaluation size
    assert plain.sigma == Smoothing(2.0) and CategoryEvaluator(40, Smoothing(4.0, ORIGINAL)).sigma_applied() is None


# -- resolution and records ----------------------------------------------------------------------------


def test_smoothing_for_takes_the_protocols_sigma_else_the_methods_at_its_reference_size():
    cls = SimpleNamespace(default_sigma=4.0, sigma_size=224)
    assert idn.smoothing_for(Protocol(sigma=2.5), cls) == Smoothing(2.5)  # --sigma: evaluation pixels
    assert idn.smoothing_for(Protocol(), cls) == Smoothing(4.0, 224)
    assert idn.sigma_for(Protocol(eval_size=448), cls) == 8.0
    assert idn.sigma_for(Protocol(), SimpleNamespace(default_sigma=4.0)) == 4.0  # no declaration: as before
    assert idn.sigma_for(Protocol(), SimpleNamespace(default_sigma=4.0, sigma_size=ORIGINAL)) is None


def test_protocol_facts_name_the_reference_size_only_where_a_method_declares_one():
    plain = idn.protocol_facts(Protocol(), SimpleNamespace(default_sigma=4.0, sigma_size=None))
    assert plain == {"eval_size": 400, "sigma": None, "max_test_images": None, "version": PROTOCOL_VERSION,
                     "sigma_used": 4.0}  # the CLIP methods' records and resume keys are unchanged
    ref = idn.protocol_facts(Protocol(), SimpleNamespace(default_sigma=4.0, sigma_size=224))
    assert ref["sigma_used"] == 4.0 * 400 / 224 and ref["sigma_reference"] == {"sigma": 4.0, "image_size": 224}
    forced = idn.protocol_facts(Protocol(sigma=3.0), SimpleNamespace(default_sigma=4.0, sigma_size=224))
    assert forced["sigma_used"] == 3.0 and "sigma_reference" not in forced


def test_every_method_declares_where_its_reference_smooths():
    from fsadbench.core.registry import METHODS

    want = {"patchcore": 224, "padim": 224, "fastrecon": 224, "spade": 224, "anomalyclip": 518, "anomalydino": ORIGINAL,
            "memory": None, "winclip": None, "apt": None, "promptad": None, "anople": None}
    for name, size in want.items():
        cls, _ = METHODS.get(name)
        assert "sigma_size" in vars(cls) and cls.sigma_size == size, name
        assert cls.default_sigma == 4.0


# -- PaDiM's image score ---------------------------------------------------------------------------------


def reference_padim_scores(dist: np.ndarray, size: int = 224) -> np.ndarray:
    """main.py l. 170-185 in our words: upsample bilinearly to the input, scipy sigma 4 per map, max."""
    up = F.interpolate(torch.tensor(dist)[:, None], size=size, mode="bilinear", align_corners=False)[:, 0].numpy()
    return np.array([gaussian_filter(m, sigma=4).max() for m in up])


def test_padim_image_score_is_the_max_of_the_upsampled_smoothed_map_as_the_reference():
    g = torch.Generator().manual_seed(3)
    dist = torch.rand(3, 56, 56, generator=g) ** 4 * 10  # spiky, so raw max and smoothed max disagree
    got = smoothed_max(dist, 224, 4.0)
    np.testing.assert_allclose(got.numpy(), reference_padim_scores(dist.numpy()), rtol=1e-5)
    assert not torch.allclose(got, dist.flatten(1).amax(dim=1))  # the old score: max of the raw map


def test_padim_method_scores_its_map_by_the_smoothed_max():
    from test_baseline_glue import INFO, ctx_for, refs

    m = PadimMethod(ctx_for())
    m.fit(refs(2), INFO)
    pred = m.predict(refs(3, start=4))[W_VG]
    maps, raw = m.core.predict(m.inputs(refs(3, start=4))[0])
    scores = torch.as_tensor(pred.scores)
    assert torch.equal(torch.as_tensor(pred.maps), maps) and torch.equal(scores, smoothed_max(maps, 224, 4.0))
    assert not torch.allclose(scores, raw)
    assert PadimMethod.version == 2


# -- AnomalyDINO ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dataset, category, masked", [
    ("mvtec", "capsule", True), ("mvtec", "hazelnut", True), ("mvtec", "pill", True), ("mvtec", "screw", True),
    ("mvtec", "toothbrush", True), ("mvtec", "bottle", False), ("mvtec", "metal_nut", False),
    ("mvtec", "carpet", False), ("visa", "candle", True), ("visa", "pcb4", True), ("visa", "pipe_fryum", True),
    ("synthetic", "capsule", False), ("mpdd", "bracket_black", False)])
def test_reference_masking_table(dataset, category, masked):
    assert dino_core.reference_masking(dataset, category) is masked


def test_the_masking_table_is_the_references():
    assert dino_core.MASKED_CATEGORIES["mvtec"] == {"capsule", "hazelnut", "pill", "screw", "toothbrush"}
    assert len(dino_core.MASKED_CATEGORIES["visa"]) == 12 and set(dino_core.MASKED_CATEGORIES) == {"mvtec", "visa"}


def dino(**options):
    from test_baseline_glue import dino as make

    return make(**options)


@pytest.mark.parametrize("option, category, applied", [
    (None, CategoryInfo("mvtec", "screw", "screw"), True), (None, CategoryInfo("mvtec", "bottle", "bottle"), False),
    (None, CategoryInfo("visa", "pcb1", "pcb"), True), (None, CategoryInfo("synthetic", "x", "x"), False),
    (True, CategoryInfo("mvtec", "bottle", "bottle"), True), (False, CategoryInfo("mvtec", "screw", "screw"), False)])
def test_anomalydino_masks_per_the_reference_table_by_default(option, category, applied):
    from test_baseline_glue import refs

    m = dino(rotate_shots=False) if option is None else dino(rotate_shots=False, masking=option)
    assert m.options.masking == ("reference" if option is None else option)
    pca_masks = m.masks  # the fake tokens' PCA masks drop every patch (refused); keep half of them
    m.masks = lambda tokens: pca_masks(tokens) | (torch.arange(tokens.shape[1]) % 2 == 0)
    m.fit(refs(2), category)
    assert m.masking is applied and m.describe()["masking_applied"] is applied
    pred = m.predict(refs(2, start=4))[W_VG]
    tokens = m.maps(refs(2, start=4))[0].float()
    want, _ = m.core.predict(tokens, m.masks(tokens) if applied else None)
    assert torch.equal(torch.as_tensor(pred.maps).flatten(1), want)


def test_anomalydino_before_fit_a_forced_masking_is_known_and_the_table_waits_for_the_category():
    assert dino(masking=True).masking is True and dino(masking=False).masking is False
    assert dino().masking is False


def test_anomalydino_masking_option_refuses_other_words():
    from fsadbench.core.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        dino(masking="always")
    assert str(err.value) == ("anomalydino option 'masking' must be 'reference' (the reference's per-category "
                              "table), true or false; got 'always'")


def test_anomalydino_declares_each_departure_with_the_official_value():
    from fsadbench.methods.anomalydino.model import AnomalyDINOMethod

    notes = AnomalyDINOMethod.fidelity_notes
    for word in ("preprocessing", "rotations of the shots", "position embeddings", "masking 'reference'"):
        (note,) = [n for n in notes if n.startswith(word)]
        assert "official" in note
    assert AnomalyDINOMethod.version == 2 and AnomalyDINOMethod.sigma_size == ORIGINAL


def test_anomalydino_mask_closing_fills_a_gap_narrower_than_the_kernel():
    """A background stripe 3 columns wide: the first 3x3 dilation narrows it to 1 column, which only the
    closing (dilate, then erode; utils l. 170-171) fills. Without it, or with an opening, it stays."""
    h, w = 12, 12
    values = torch.full((h, w), 100.0)
    values[:, 5:8] = 0.0
    tokens = torch.stack([values.reshape(-1), torch.zeros(h * w)], dim=1)  # first component = the values
    mask = dino_core.background_mask(tokens, (h, w))
    assert mask.all()
    dilated_only = F.max_pool2d((values > 50).float()[None, None], 3, stride=1, padding=1)[0, 0] > 0
    assert not dilated_only[:, 6].any()  # the gap the closing has to fill
    wide = torch.full((h, w), 100.0)
    wide[:, :6] = 0.0  # 6 columns at the edge: 5 after the dilation, wider than the kernel: stays open
    kept = dino_core.background_mask(torch.stack([wide.reshape(-1), torch.zeros(h * w)], dim=1), (h, w))
    assert kept[:, 5:].all() and not kept[:, :5].any()
