"""APT end to end on the tiny backbone: LAT plumbing, fit/predict, determinism, cache, Table 3 rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.methods.apt.model import APT
from fsadbench.methods.apt.lat import covering_k, locality_mask
from fsadbench.protocol.sampler import image_ref
from fsadbench.core.types import CategoryInfo
from fsadbench.methods.common.vv_attention import encode_image_vv

FAST = dict(epochs=6, meta_rounds=3, lr=1e-2)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from fsadbench.datasets.synthetic import SyntheticDataset

    ds = SyntheticDataset(cache_dir=tmp_path_factory.mktemp("apt_synth"), size=120, n_train=3, n_test_good=2,
                          n_test_bad=2)
    out = {}
    for cat in ("disc", "stripes"):
        split = ds.load(cat)
        out[cat] = (split.info, [image_ref(s) for s in split.train], [image_ref(s) for s in split.test])
    return out


def _pixels(seed=0):
    return torch.randn(2, 3, 120, 120, generator=torch.Generator().manual_seed(seed))


# -- LAT plumbing (eq. 12-13 on the V-V path) ---------------------------------------------------
def test_lat_with_covering_k_equals_plain_vv(tiny_backbone):
    visual, grid, px = tiny_backbone.model.visual, tiny_backbone.grid, _pixels()
    plain = encode_image_vv(visual, px, "all", (3, 8))
    full = encode_image_vv(visual, px, "all", (3, 8), locality_mask(grid, covering_k(grid)))
    assert torch.allclose(full["tokens"], plain["tokens"], atol=1e-5)
    local = encode_image_vv(visual, px, "all", (3, 8), locality_mask(grid, 1))
    assert not torch.allclose(local["tokens"], plain["tokens"], atol=1e-3)
    # the original path (CLS embedding, VG block outputs) never sees the mask
    assert torch.equal(local["embedding"], plain["embedding"]) and torch.equal(local["layer8"], plain["layer8"])


def test_lat_vv_token_sees_only_its_neighbours(tiny_backbone):
    """With LAT on block 1 only, a V-V patch token depends on the pixels of patches within k (and CLS)."""
    visual, grid = tiny_backbone.model.visual, tiny_backbone.grid
    px = _pixels(1)[:1]
    far = px.clone()
    far[..., 0:8, 0:8] += 3.0  # patch (0, 0); patch (7, 7) is ~9.9 patches away
    p, w = 7 * grid[1] + 7, grid[1]
    mask = locality_mask(grid, 2)
    a = encode_image_vv(visual, px, (1,), (), mask)["tokens"]
    b = encode_image_vv(visual, far, (1,), (), mask)["tokens"]
    assert torch.allclose(a[0, p], b[0, p], atol=1e-6)
    assert not torch.allclose(a[0, 0], b[0, 0], atol=1e-3)  # the changed patch itself moves
    a_plain = encode_image_vv(visual, px, (1,), ())["tokens"]
    b_plain = encode_image_vv(visual, far, (1,), ())["tokens"]
    assert not torch.allclose(a_plain[0, p], b_plain[0, p], atol=1e-6)  # unmasked: global mixing
    assert w == 15


# -- fit / predict -----------------------------------------------------------------------------
def test_fit_predict_variants_and_training_lowers_l_ano(method_ctx, synth):
    info, train, test = synth["disc"]
    m = APT(method_ctx, **FAST)
    m.fit(train[:1], info)
    h = m.history
    assert len(h.ano) == 6 and h.swaps == [2, 4]
    assert h.ano[-1] < h.ano[0]
    preds = m.predict(test)
    assert set(preds) == {"w/o VG", "w/ VG"}
    s, s_vg = preds["w/o VG"], preds["w/ VG"]
    assert s.maps.shape == (len(test), 15, 15) and s_vg.maps.shape == (len(test), 15, 15)
    assert ((s.maps > 0) & (s.maps < 1)).all()  # sigmoid map (eq. 4)
    # S_VG = S + S_v, with S_v the VG memory score of the shot
    feats = method_ctx.features.get(test, m.spec)
    s_v = m.memory.score({l: feats[f"layer{l}"] for l in (3, 8)}).reshape(len(test), 15, 15).numpy()
    assert abs(s_vg.maps - (s.maps + s_v)).max() < 1e-5
    assert (s.scores == s.maps.reshape(len(test), -1).max(axis=1)).all()
    d = m.describe()
    assert d["cfg"]["region_rule"] == "blobs" and d["lat"]["k"] == 2.0 and d["lat"]["blocks"] == list(range(1, 13))
    assert d["target_focus"]["rule"] == "softmax" and d["target_focus"]["threshold"] == 0.5
    assert d["training"]["swaps_after_epochs"] == [2, 4]


def test_deterministic_for_a_seed_and_seed_matters(tiny_backbone, feature_store, synth):
    from fsadbench.protocol.method import MethodContext

    info, train, test = synth["stripes"]
    maps = []
    for seed in (0, 0, 1):
        ctx = MethodContext(backbone=tiny_backbone, features=feature_store, device=torch.device("cpu"), seed=seed)
        m = APT(ctx, **FAST)
        m.fit(train[:2], info)
        maps.append(m.predict(test)["w/o VG"].maps)
        assert m.describe()["target_focus"] == "whole grid (texture category)"
    assert (maps[0] == maps[1]).all()
    assert not (maps[0] == maps[2]).all()
    # frozen encoder behind the cache: each image went through it once over the three fits
    assert feature_store.stats.encoded == len(set(r.digest for r in train[:2] + test))


def test_table3_rows_run_end_to_end(method_ctx, synth):
    cfg = yaml.safe_load((ROOT / "configs" / "paper" / "apt_table3.yaml").read_text())
    rows = [m["options"] for m in cfg["methods"]]
    assert len(rows) == 6 and cfg["table"]["layout"] == "apt_table3"
    info, train, test = synth["disc"]
    maps = {}
    for opts in rows:
        m = APT(method_ctx, **opts, epochs=2, meta_rounds=2, lr=1e-2)
        m.fit(train[:1], info)
        pred = m.predict(test[:2])
        assert all(torch.isfinite(torch.from_numpy(p.maps)).all() for p in pred.values())
        maps[tuple(sorted(opts.items()))] = pred["w/o VG"].maps
        if not opts["gn"]:  # row 1: the meta templates score, nothing is tuned
            assert m.history is None and "tuning" in m.describe()
        else:
            assert len(m.history.div) == (2 if opts["mg"] else 0)
            assert m.history.swaps == ([1] if opts["so"] else [])
    assert len({v.tobytes() for v in maps.values()}) == 6  # every switch changes the result


def test_options_and_errors(method_ctx, synth):
    info, train, _ = synth["disc"]
    with pytest.raises(ConfigError, match="unknown option"):
        APT(method_ctx, kk=2)
    with pytest.raises(ConfigError, match="tf_score"):
        APT(method_ctx, tf_score="otsu")
    with pytest.raises(ConfigError, match="meta_rounds"):
        APT(method_ctx, epochs=3, meta_rounds=4)
    with pytest.raises(ConfigError, match="memory_layers"):
        APT(method_ctx, memory_layers=[3])
    with pytest.raises(ConfigError, match="out of range"):
        APT(method_ctx, lat_blocks=[13])
    with pytest.raises(ConfigError, match="lat_blocks"):
        APT(method_ctx, lat_blocks=["x"])
    assert APT(method_ctx, lat_blocks=12).blocks == (12,)  # a single block from the CLI
    with pytest.raises(NotApplicable):
        APT(method_ctx, **FAST).fit([], info)
    m = APT(method_ctx, lat_blocks=[7, 12], k=1, la=True, blob_radius=[0.1, 0.2])  # lists from YAML
    assert m.describe()["lat"] == {"blocks": [7, 12], "k": 1.0, "mask": "k-neighbour, CLS row/column open (eq. 13)"}
    assert APT(method_ctx, la=False).describe()["lat"]["k"] is None
    assert APT(method_ctx).options.epochs == 100 and APT(method_ctx).options.meta_rounds == 5


def test_meta_prompts_simple_and_complex(method_ctx, tiny_backbone):
    info = CategoryInfo(dataset="d", name="nut", class_name="nut", defect_types=("good", "broken_large"))
    enc = tiny_backbone.encode_text
    (zn, za), (sn, sa) = APT(method_ctx).meta_embeddings(info)
    assert sn == ["this is a photo of a nut without defect"] and sa == ["this is a photo of a nut with defect"]
    assert torch.allclose(zn, enc(sn)[0]) and torch.allclose(za, enc(sa)[0])
    (zn, za), (sn, sa) = APT(method_ctx, meta_prompts="complex").meta_embeddings(info)
    assert len(sn) == 5 * 7 and len(sa) == 5 * 6  # templates x states (+1 abnormal state per defect type)
    assert "a photo of the nut with broken large for visual inspection." in sa
    assert not any("good" in t for t in sa)
    want = torch.nn.functional.normalize(enc(sa), dim=-1).mean(dim=0)
    assert torch.allclose(za, want, atol=1e-6)
    with pytest.raises(ConfigError, match="meta_prompts"):
        APT(method_ctx, meta_prompts="llm")


def test_without_gn_the_meta_prompts_score(method_ctx, synth):
    info, train, test = synth["disc"]
    m = APT(method_ctx, gn=False)
    m.fit(train[:1], info)
    (zn, za), _ = m.meta_embeddings(info)
    assert torch.equal(m.z[0], zn) and torch.equal(m.z[1], za)
    feats = method_ctx.features.get(test, m.spec)["tokens"]
    want = torch.sigmoid(m.scale * (torch.nn.functional.normalize(feats, dim=-1)
                                    @ (torch.nn.functional.normalize(za, dim=0)
                                       - torch.nn.functional.normalize(zn, dim=0))))
    got = torch.from_numpy(m.predict(test)["w/o VG"].maps).reshape(len(test), -1)
    assert torch.allclose(got, want, atol=1e-5)  # eq. 3-4 with CLIP's logit scale
