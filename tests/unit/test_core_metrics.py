"""The metric engine's edges as a caller meets them: why a metric is undefined (the reason a table prints),
inputs refused with a message that says what to fix, tensors that still carry a gradient, empty inputs.
The values themselves are checked against oracles in test_metrics.py.

EQUIVALENT_MUTANTS lists, by mutmut name, the surviving mutants of protocol/metrics/{ranking,aupro,pixel}.py
that cannot change behaviour.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fsadbench.protocol.metrics.ranking import (UndefinedMetric, auroc, average_precision, distinct, f1_max,
                                                image_metrics, summary_flat)


@pytest.mark.parametrize("fn,reason", [
    (auroc, "one class only: no anomalous sample"),
    (average_precision, "no anomalous sample: recall undefined"),
    (f1_max, "no anomalous sample: F1 undefined"),
])
def test_undefined_metrics_say_why(fn, reason):
    with pytest.raises(UndefinedMetric) as err:
        fn([0.1, 0.2], [0, 0])
    assert err.value.reason == reason and str(err.value) == reason
    with pytest.raises(UndefinedMetric, match="^one class only: no normal sample$"):
        auroc([0.1, 0.2], [1, 1])


def test_image_metrics_name_images_in_their_reasons():
    got = image_metrics([0.1, 0.2], [0, 0])
    assert got == {"image_auroc": None, "image_ap": None, "image_f1_max": None,
                   "undefined": {"image_auroc": "one class only: no anomalous image",
                                 "image_ap": "no anomalous image: recall undefined",
                                 "image_f1_max": "no anomalous image: F1 undefined"}}


def test_bad_inputs_are_refused_saying_what_to_fix():
    with pytest.raises(ValueError, match=r"^scores has 3 values but labels has 2: pass one label per score$"):
        auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match=r"^scores must be numeric, got dtype <U1$"):
        auroc(np.array(["a", "b"]), [0, 1])
    with pytest.raises(ValueError, match=r"^labels must be 0/1 or bool \(1 = anomalous\), got values outside "
                                         r"\{0, 1\}$"):
        auroc([0.1, 0.2], [0, 2])
    with pytest.raises(FloatingPointError, match="scores contain 1 NaN value"):
        auroc([0.1, float("nan")], [0, 1])


def test_a_tensor_that_carries_a_gradient_is_scored():
    s = torch.tensor([0.1, 0.9, 0.4], requires_grad=True)
    assert auroc(s, torch.tensor([0, 1, 1])) == pytest.approx(1.0)


def test_distinct_values_and_counts_including_none():
    u, c = distinct(np.array([1.0, 1.0, 2.0, 5.0, 5.0, 5.0]))
    assert u.tolist() == [1.0, 2.0, 5.0] and c.tolist() == [2, 1, 3]
    u, c = distinct(np.array([], dtype=np.float32))
    assert u.size == 0 and c.size == 0 and c.dtype == np.int64 and u.dtype == np.float32
    s = summary_flat([0.3, 0.3, 0.1], [1, 0, 0])
    assert (s.lt.tolist(), s.le.tolist()) == ([1], [2])  # negatives < / <= the positive score


def test_aupro_undefined_says_why():
    from fsadbench.protocol.metrics.aupro import aupro, pro_area
    from fsadbench.protocol.metrics.ranking import RankSummary

    maps = [np.array([[0.1, 0.9], [0.2, 0.3]])]
    with pytest.raises(UndefinedMetric, match="^no anomalous region in the masks$"):
        aupro(maps, [np.zeros((2, 2), bool)])
    with pytest.raises(UndefinedMetric, match="^no normal pixel: FPR undefined$"):
        aupro(maps, [np.ones((2, 2), bool)])
    empty = np.zeros(0)
    with pytest.raises(UndefinedMetric, match="^no anomalous region in the masks$"):
        pro_area(RankSummary(empty, empty, empty, empty, 0, 4), empty, 0.3)
    with pytest.raises(ValueError, match="^2 maps but 1 masks: pass one mask per map$"):
        aupro(maps * 2, [np.ones((2, 2), bool)])



@pytest.mark.parametrize("block", [None, 1, 2])
@pytest.mark.parametrize("limit,area", [
    (1.0, 0.3 + 0.4 + 2.0 + 0.55 + 1.8),    # to N = 10: the flat tail at p = 0.6 counts (7 -> 10)
    (0.65, 0.3 + 0.4 + 2.0 + 0.2625),       # L = 6.5 inside step 3's slope: PRO(6.5) = 0.55
    (0.15, 0.3 + 0.175),                    # L = 1.5 inside step 2's slope: PRO(1.5) = 0.4
    (0.05, 0.15),                           # L = 0.5 inside step 2's flat part, at 0.3
])
def test_pro_area_integrates_the_polyline_of_its_counts(monkeypatch, block, limit, area):
    from fsadbench.protocol.metrics.aupro import pro_area
    from fsadbench.protocol.metrics.ranking import RankSummary

    if block is not None:
        monkeypatch.setattr(RankSummary, "BLOCK", block)
    # 10 negatives; positives at 0.2, 0.5, 0.9 with region weights 0.1, 0.2, 0.3 (a PRO that ends at 0.6, as
    # for a part of the regions). From the top: 0.9 (0 negatives >= it) lifts PRO to 0.3 at x = 0; 0.5 (1
    # negative above, 2 >= it) to 0.5 over x 1 -> 2; 0.2 (6 above, 7 >= it) to 0.6 over x 6 -> 7.
    s = RankSummary(np.array([0.2, 0.5, 0.9]), np.array([1, 1, 1]), np.array([3, 8, 10]), np.array([4, 9, 10]),
                    3, 10)
    assert pro_area(s, np.array([0.1, 0.2, 0.3]), limit) == pytest.approx(area / (limit * 10), abs=1e-12)


def test_aupro_of_lists_runs_on_the_cpu_even_where_an_accelerator_is_present(monkeypatch):
    # PixelMetrics(device=None) would pick CUDA when present; aupro() asks for the CPU (numpy) backend
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    m = np.array([[0.5, 0.5, 0.5, 0.0]], np.float32)
    g = np.array([[True, False, False, False]])
    from fsadbench.protocol.metrics.aupro import aupro

    assert aupro([m], [g], fpr_limit=1.0) == pytest.approx(2 / 3 * 0.5 + 1 / 3, abs=1e-12)


# -- the streaming pixel accumulator ----------------------------------------------------------------------
def test_the_backend_is_numpy_on_the_cpu_unless_torch_is_asked_for():
    from fsadbench.protocol.metrics.pixel import resolve_backend

    assert resolve_backend("cpu", None) is None and resolve_backend("cpu", "numpy") is None
    assert resolve_backend("cpu", "torch") == torch.device("cpu")
    # an accelerator keeps normal pixels there unless numpy is asked for (naming a device needs no device)
    assert resolve_backend("cuda", None) == torch.device("cuda") and resolve_backend("cuda", "numpy") is None
    if not torch.cuda.is_available():
        assert resolve_backend(None, None) is None and resolve_backend(None, "torch") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"^backend must be 'numpy', 'torch' or None \(auto\), got 'jax'$"):
        resolve_backend("cpu", "jax")


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_the_negative_store_counts_below_and_at_each_value_across_chunks(backend):
    from fsadbench.protocol.metrics.pixel import NegativeStore, resolve_backend

    dev = resolve_backend("cpu", backend)
    store = NegativeStore(3, dev)
    as_t = (lambda a: torch.tensor(a, dtype=torch.float32)) if dev is not None else \
        (lambda a: np.array(a, np.float32))
    store.add(as_t([0.5, 0.1]))
    assert store.chunks == [] and store.n_pending == 2  # waits for a whole chunk
    store.add(as_t([]))
    store.add(as_t([0.3]))
    assert len(store.chunks) == 1 and store.n_pending == 0 and store.n == 3  # exactly a chunk: sorted
    store.add(as_t([0.5, 0.2]))
    assert len(store.chunks) == 1 and store.n_pending == 2
    lt, le = store.count(np.array([0.1, 0.3, 0.5, 0.9], np.float32))
    assert lt.tolist() == [0, 2, 3, 5] and le.tolist() == [1, 3, 5, 5]
    assert lt.dtype == np.int64 and le.dtype == np.int64
    assert len(store.chunks) == 2  # count flushed the rest
    with pytest.raises(ValueError, match="^chunk_pixels must be >= 1, got 0$"):
        NegativeStore(0)
    one = NegativeStore(1, dev)
    one.add(as_t([0.4]))
    assert one.chunk == 1 and len(one.chunks) == 1


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_pixel_metrics_by_hand_on_either_backend(backend):
    from fsadbench.protocol.metrics.pixel import PixelMetrics

    # two maps: 8 pixels, 2 anomalous (0.8 in map 0, 0.4 in map 1); normals 0.1 0.2 0.3 0.5 0.6 0.0
    m0, m1 = np.array([[0.1, 0.8], [0.2, 0.3]]), np.array([[0.5, 0.4], [0.6, 0.0]])
    g0, g1 = np.array([[0, 1], [0, 0]]), np.array([[0, 255], [0, 0]])  # any nonzero is anomalous
    acc = PixelMetrics("cpu", backend=backend, chunk_pixels=2)
    assert acc.device == (torch.device("cpu") if backend == "torch" else None)
    acc.add(torch.tensor(m0, dtype=torch.float64), g0)
    acc.add(m1, g1)
    acc.add(np.zeros((2, 2)), None)  # no mask: every pixel normal
    assert acc.n_pixels == 12
    got = acc.compute()
    # AUROC: 0.8 beats all 10 normals, 0.4 beats 8 of them (0.5, 0.6 above) -> 18 / 20
    assert got["pixel_auroc"] == pytest.approx(18 / 20)
    # AP: at 0.8 precision 1 (recall 1/2); at 0.4 precision 2/4 -> (1 + 0.5) / 2
    assert got["pixel_ap"] == pytest.approx(0.75)
    # F1 at 0.8: 2*1 / (1 + 0 + 2) = 2/3; at 0.4: 2*2 / (2 + 2 + 2) = 2/3
    assert got["pixel_f1_max"] == pytest.approx(2 / 3)
    assert got["undefined"] == {} and 0.0 < got["aupro"] <= 1.0


def test_pixel_metrics_undefined_and_refused_inputs_name_the_map():
    from fsadbench.core.errors import DataError
    from fsadbench.protocol.metrics.pixel import PixelMetrics

    acc = PixelMetrics("cpu")
    acc.add(np.zeros((2, 2)), None)
    acc.add(np.zeros((2, 2)), np.zeros((2, 2)))
    got = acc.compute()
    assert got == {"pixel_auroc": None, "pixel_ap": None, "pixel_f1_max": None, "aupro": None,
                   "undefined": {"pixel_auroc": "one class only: no anomalous pixel",
                                 "pixel_ap": "no anomalous pixel: recall undefined",
                                 "pixel_f1_max": "no anomalous pixel: F1 undefined",
                                 "aupro": "no anomalous region in the masks"}}
    with pytest.raises(DataError, match=r"^map #2: anomaly map is \(2, 3\) but its mask is \(2, 2\); both must be "
                                        r"the same H x W \(resize the mask to the map, as the evaluator does\)$"):
        acc.add(np.zeros((2, 3)), np.zeros((2, 2), bool))
    with pytest.raises(DataError, match=r"anomaly map is \(2,\) but its mask is \(2,\)"):
        acc.add(np.zeros(2), np.zeros(2, bool))
    for backend in ("numpy", "torch"):
        with pytest.raises(FloatingPointError, match="^map #0: anomaly map has NaN values; fix the method's output$"):
            PixelMetrics("cpu", backend=backend).add(np.array([[np.nan, 0.0]]), None)
    plain = PixelMetrics("cpu", aupro=False)
    plain.add(np.array([[0.1, 0.9]]), np.array([[False, True]]))
    assert "aupro" not in plain.compute() and plain.compute()["pixel_auroc"] == 1.0
    with pytest.raises(ValueError, match="^this PixelMetrics was built with aupro=False$"):
        plain.aupro_value()
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"^fpr_limit must be in \\(0, 1\\], got {bad}$"):
            PixelMetrics("cpu", fpr_limit=bad)
    assert PixelMetrics("cpu", fpr_limit=1.0).fpr_limit == 1.0


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_maps_are_scored_as_float32(backend, as_tensor):
    from fsadbench.protocol.metrics.pixel import PixelMetrics

    # 0.1 and 0.1 + 1e-10 differ in float64 but are one float32: a tie, AUROC 1/2, not 1
    amap = np.array([[0.1, 0.1 + 1e-10]])
    acc = PixelMetrics("cpu", backend=backend)
    acc.add(torch.from_numpy(amap) if as_tensor else amap, np.array([[False, True]]))
    assert acc.compute()["pixel_auroc"] == 0.5


def test_aupro_weighs_regions_equally_whatever_their_size():
    from fsadbench.protocol.metrics.pixel import PixelMetrics

    # one map, two regions: a big one (3 pixels, scored 0.9) and a small one (1 pixel, scored 0.2);
    # normals 0.1 x 12. At FPR 0 the PRO is already 1/2 (the big region whole), not 3/4 (its pixel share).
    amap = np.full((4, 4), 0.1)
    mask = np.zeros((4, 4), bool)
    amap[0, 0:3], mask[0, 0:3] = 0.9, True
    amap[3, 3], mask[3, 3] = 0.2, True
    acc = PixelMetrics("cpu", fpr_limit=1.0)
    acc.add(amap, mask)
    # PRO(x) = 1/2 on [0, 0], then 1 once 0.2 is passed (all 12 normals below it): area over FPR [0, 1] = 1
    assert acc.compute()["aupro"] == pytest.approx(1.0)
    low = PixelMetrics("cpu", fpr_limit=1.0)
    amap[3, 3] = 0.05  # the small region now below every normal: PRO 1/2 until FPR 1
    low.add(amap, mask)
    assert low.compute()["aupro"] == pytest.approx(0.5)


def test_aupro_of_more_than_255_regions_of_different_sizes_matches_the_sweep():
    from test_metrics import oracle_aupro

    from fsadbench.protocol.metrics.pixel import PixelMetrics

    rng = np.random.default_rng(0)
    mask = np.zeros((51, 48), bool)
    for i in range(17):
        for j in range(16):  # 272 regions (region ids past 255), of 1 and 2 pixels
            mask[3 * i, 3 * j: 3 * j + 1 + ((16 * i + j) % 3 == 0)] = True
    amap = rng.integers(0, 8, mask.shape) / 8
    acc = PixelMetrics("cpu")
    acc.add(amap, mask)
    assert acc.compute()["aupro"] == pytest.approx(oracle_aupro([amap], [mask]), abs=1e-9)

    assert sum(i.nbytes for i in acc._ids) == 2 * int(mask.sum())  # past 255 regions: 2-byte region ids


def test_a_single_pending_piece_is_sorted_in_place_not_copied():
    from fsadbench.protocol.metrics.pixel import NegativeStore

    store = NegativeStore(3)  # numpy: the pieces are the store's own arrays (PixelMetrics passes a[~mask])
    piece = np.array([0.5, 0.1, 0.3], np.float32)
    store.add(piece)
    assert store.chunks[0] is piece and piece.tolist() == sorted(piece.tolist())



def test_a_single_pending_piece_is_not_concatenated_on_torch_either(monkeypatch):
    from fsadbench.protocol.metrics.pixel import NegativeStore

    cats = []
    real_cat = torch.cat
    monkeypatch.setattr(torch, "cat", lambda xs, *a, **k: cats.append(len(xs)) or real_cat(xs, *a, **k))
    store = NegativeStore(2, torch.device("cpu"))
    store.add(torch.tensor([0.5, 0.25]))  # one piece fills the chunk: sorted as is, no copy made first
    store.add(torch.tensor([0.75]))
    store.add(torch.tensor([0.125]))     # two pieces: concatenated once
    assert cats == [2] and [c.tolist() for c in store.chunks] == [[0.25, 0.5], [0.125, 0.75]]


def test_compute_ranks_the_stored_pixels_once_for_all_four_metrics(monkeypatch):
    from fsadbench.protocol.metrics.pixel import PixelMetrics

    calls = []
    real = PixelMetrics._summary
    monkeypatch.setattr(PixelMetrics, "_summary", lambda self: calls.append(1) or real(self))
    acc = PixelMetrics("cpu")
    acc.add(np.array([[0.1, 0.9], [0.4, 0.3]]), np.array([[0, 1], [0, 0]]))
    got = acc.compute()
    assert len(calls) == 1 and got["aupro"] == pytest.approx(1.0) and got["pixel_auroc"] == 1.0

def test_where_cuda_is_present_the_default_device_is_cuda_and_a_named_device_wins(monkeypatch):
    from fsadbench.protocol.metrics.pixel import PixelMetrics, resolve_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend(None, None) == torch.device("cuda")
    assert resolve_backend(None, "torch") == torch.device("cuda")
    assert resolve_backend(None, "numpy") is None and resolve_backend("cpu", None) is None
    assert PixelMetrics("cpu").device is None and PixelMetrics().device == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert PixelMetrics("cuda", backend="torch").device == torch.device("cuda")  # nothing is allocated yet


def _dotted(rows: int, cols: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """A map and mask of rows x cols separate regions, one per 3 x 3 cell, of 1 or 2 pixels, random levels."""
    mask = np.zeros((3 * rows, 3 * cols), bool)
    mask[::3, ::3] = True
    mask[::3, 1::3] = rng.random((rows, cols)) < 0.4
    amap = (rng.integers(0, 6, mask.shape) / 6 + 0.3 * mask).astype(np.float32)
    return amap, mask


def test_aupro_of_more_than_65535_regions_in_one_map_equals_the_same_regions_over_two_maps():
    import warnings

    from fsadbench.protocol.metrics.pixel import PixelMetrics

    amap, mask = _dotted(260, 256, np.random.default_rng(0))  # 66560 regions: ids past 65535 in one map
    whole, halves = PixelMetrics("cpu"), PixelMetrics("cpu")
    whole.add(amap, mask)
    assert sum(i.nbytes for i in whole._ids) == 4 * int(mask.sum())  # 4-byte region ids
    for rows in (slice(0, 390), slice(390, None)):  # cut between region rows: the same regions, per image
        halves.add(amap[rows], mask[rows])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no stray warning (e.g. a divide by zero over an empty region)
        got, want = whole.compute(), halves.compute()
    assert got["aupro"] == pytest.approx(want["aupro"], abs=1e-12) and got["undefined"] == {}


EQUIVALENT_MUTANTS = {
    # ranking.py by name (mutmut 3.8.1, 2026-12-03: 229/234 killed, these 5 survive)
    "fsadbench.protocol.metrics.ranking.x_scores_labels__mutmut_8":
        "kind not in 'XXfiubXX': a dtype kind is one character and numpy has no kind 'X'",
    "fsadbench.protocol.metrics.ranking.x_distinct__mutmut_4":
        "sorted_values[:1] on an empty array (n == 0) is empty, as [:0]",
    "fsadbench.protocol.metrics.ranking.x_distinct__mutmut_12":
        "np.empty(n, dtype=None): the 0/1 floats mark the same first positions for flatnonzero",
    "fsadbench.protocol.metrics.ranking.x_distinct__mutmut_14":
        "as _12 (dtype argument dropped)",
    "fsadbench.protocol.metrics.ranking.x_summary_flat__mutmut_17":
        "np.searchsorted's default side is 'left'",
    # aupro.py by name (mutmut 3.8.1, 2026-12-03: 138/150 killed, these 12 survive)
    "fsadbench.protocol.metrics.aupro.x_label_regions__mutmut_6":
        "np.asarray(mask, dtype=None): ndimage.label takes any nonzero pixel as foreground",
    "fsadbench.protocol.metrics.aupro.x_label_regions__mutmut_8":
        "as _6 (dtype argument dropped)",
    "fsadbench.protocol.metrics.aupro.x_label_regions__mutmut_10":
        "np.ones((3, 3), dtype=None): any nonzero structure element is a neighbour",
    "fsadbench.protocol.metrics.aupro.x_label_regions__mutmut_12":
        "as _10 (dtype argument dropped)",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_18":
        "e_last starts at 1.0: it only enters e_prev[0] of the first step, of height p_prev[0] = 0",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_20":
        "astype(None) is float64 (E_j)",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_25":
        "astype(None) is float64 (G_j)",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_49":
        "searchsorted side 'left': a step ending exactly at L is cut at L, the same trapezoid",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_53":
        "slice(None, full) is slice(0, full)",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_55":
        "slice(full) is slice(0, full)",
    "fsadbench.protocol.metrics.aupro.x_pro_area__mutmut_85":
        "lim >= g[j]: at lim == g[j] the added trapezoid has width 0 (and e[j] > lim there)",
    "fsadbench.protocol.metrics.aupro.x_aupro__mutmut_13":
        "aupro=True dropped: it is PixelMetrics' default",
    # pixel.py by name (mutmut 3.8.1, 2026-12-03: 346/368 killed, these 22 survive)
    "fsadbench.protocol.metrics.pixel.xǁNegativeStoreǁcount__mutmut_19":
        "np.searchsorted's default side is 'left'",
    "fsadbench.protocol.metrics.pixel.xǁNegativeStoreǁcount__mutmut_33":
        "ut.to(None): device placement, the CPU either way on the CPU",
    "fsadbench.protocol.metrics.pixel.xǁNegativeStoreǁcount__mutmut_43":
        "torch.searchsorted's default is right=False",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_11":
        "amap.to(None, dtype=float32): device placement, the CPU either way on the CPU",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_13":
        "as _11 (device argument dropped)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_27":
        "np.zeros(shape, dtype=None) for a missing mask: turned into a bool mask (g != 0) right after",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_29":
        "as _27 (dtype argument dropped)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_53":
        "torch.from_numpy(a).to(None): device placement, the CPU either way on the CPU",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_59":
        "as _53 (the mask)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_80":
        "uint8 ids for n <= 256: with 256 regions id 256 wraps to 0 and w[0 - 1] is w[255], its own weight",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_81":
        "as _80 (n < 257)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_84":
        "uint16 ids for n <= 65536: id 65536 wraps to 0 and w[-1] is its own weight (as _80)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_85":
        "as _84 (n < 65537)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_92":
        "bincount without minlength: id n is present, so the count has n + 1 entries anyway",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁadd__mutmut_93":
        "as _92 (minlength n - 1 is below the length anyway)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_summary__mutmut_3":
        "np.concatenate of one piece is a copy of it, as .copy()",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_summary__mutmut_5":
        "as _3 (`>= 1`)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_summary__mutmut_10":
        "np.zeros(0, None): an empty array, no value to rank either way",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_summary__mutmut_12":
        "as _10 (dtype argument dropped)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_region_weight_sums__mutmut_3":
        "np.zeros(dtype=None) is float64",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_region_weight_sums__mutmut_5":
        "as _3 (dtype argument dropped)",
    "fsadbench.protocol.metrics.pixel.xǁPixelMetricsǁ_region_weight_sums__mutmut_16":
        "astype(None) is float64",
}
