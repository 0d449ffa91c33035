"""APT end to end on the tiny backbone: LAT plumbing, fit/predict, determinism, cache, Table 3 rows."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from fixtures_methods import StubFeatures

from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.methods.apt.model import APT
from fsadbench.methods.apt.lat import covering_k, locality_mask
from fsadbench.protocol.sampler import image_ref
from fsadbench.core.types import CategoryInfo
from fsadbench.methods.common.vv_attention import encode_image_vv
from fsadbench.methods.common.text_prompts import Slot

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


def test_fit_reports_each_epoch_once(method_ctx, synth):
    info, train, _ = synth["disc"]
    seen = []
    ctx = method_ctx.__class__(**{**method_ctx.__dict__, "progress": lambda *a: seen.append(a)})
    APT(ctx, epochs=4, meta_rounds=2, lr=1e-2, steps_per_epoch=2).fit(train[:1], info)
    assert seen == [("epoch", e, 4) for e in range(1, 5)]


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


TABLE3_SWITCHES = ("so", "mg", "gn", "tf", "la")


def _spy(monkeypatch, module, name, calls):
    """Wrap module.name so each call appends its arguments to calls[name]."""
    real = getattr(module, name)
    calls[name] = []

    def wrapper(*args, **kwargs):
        calls[name].append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _component_calls(monkeypatch, method_ctx, info, train, test, **switches):
    """Fit + predict APT with spies on each Table 3 component; returns the calls and the method."""
    import fsadbench.methods.apt.model as apt_model
    import fsadbench.methods.apt.smgs as smgs

    calls: dict[str, list] = {}
    for name in ("target_focus_scores", "object_mask", "locality_mask", "sample_regions", "train_smgs"):
        _spy(monkeypatch, apt_model, name, calls)
    for name in ("div_loss", "calibrate_groups", "pair_logit"):
        _spy(monkeypatch, smgs, name, calls)
    m = APT(method_ctx, epochs=4, meta_rounds=2, lr=1e-2, **switches)
    m.fit(train[:1], info)
    m.predict(test[:1])
    return calls, m


def test_table3_config_rows_are_valid_option_sets(method_ctx):
    cfg = yaml.safe_load((ROOT / "configs" / "paper" / "apt_table3.yaml").read_text())
    rows = [m["options"] for m in cfg["methods"]]
    assert len(rows) == 6 and cfg["table"]["layout"] == "apt_table3"
    assert all(set(r) == set(TABLE3_SWITCHES) for r in rows)
    assert len({tuple(sorted(r.items())) for r in rows}) == 6
    for r in rows:
        APT.make_options(r)  # every row is a valid option set


@pytest.mark.parametrize("off", [None, "tf", "la", "so", "mg"])
def test_each_switch_removes_exactly_its_component(monkeypatch, method_ctx, synth, off):
    """tf=False never reads the object mask, la=False builds no locality mask, so=False never changes
    the meta prompts, mg=False has no L_div and no calibration; every other component stays."""
    info, train, test = synth["disc"]  # an object category: TF applies
    calls, m = _component_calls(monkeypatch, method_ctx, info, train, test, **({off: False} if off else {}))
    # TF: the object prompt scores the shot's patches, the mask is thresholded and bounds the regions
    tf_reads = len(calls["target_focus_scores"]) + len(calls["object_mask"])
    assert (tf_reads == 0) == (off == "tf")
    bounds = [args[0] for args, _ in calls["sample_regions"]]
    assert len(bounds) == 4  # one synthetic batch per step, 4 epochs x 1 step
    if off == "tf":
        assert all(b.all() for b in bounds)  # noise may go anywhere on the grid
    # LA: the locality mask of eq. 13 is built (once per grid) for the V-V path only when la
    assert (len(calls["locality_mask"]) == 0) == (off == "la")
    assert ("apt_locality" in m.spec.key) == (off != "la")
    # SO: the meta prompts used by L_div change after each meta-round only with so
    metas = [args[1:3] for args, _ in calls["pair_logit"] if not args[1].requires_grad]
    if off == "mg":
        assert metas == []  # no L_div: the meta prompts are never scored
    else:
        assert len(metas) == 4
        changed = [not (torch.equal(a[0], metas[0][0]) and torch.equal(a[1], metas[0][1])) for a in metas]
        assert changed == ([False] * 4 if off == "so" else [False, False, True, True])
    assert m.history.swaps == ([] if off == "so" else [2])
    # MG: L_div and eq. 10 once per step, or not at all
    assert len(calls["div_loss"]) == (0 if off == "mg" else 4)
    assert len(calls["calibrate_groups"]) == (0 if off == "mg" else 4)
    assert (m.history.div == []) == (off == "mg") and (m.history.cos == {}) == (off == "mg")
    assert len(calls["train_smgs"]) == 1 and len(m.history.ano) == 4


def test_gn_off_trains_nothing_and_scores_with_the_meta_prompts(monkeypatch, method_ctx, synth):
    info, train, test = synth["disc"]
    calls, m = _component_calls(monkeypatch, method_ctx, info, train, test, gn=False, so=False, mg=False, tf=False,
                                la=False)
    assert calls["train_smgs"] == [] and calls["sample_regions"] == [] and calls["target_focus_scores"] == []
    assert m.history is None and "tuning" in m.describe()
    (zn, za), _ = m.meta_embeddings(info)
    assert torch.equal(m.z[0], zn) and torch.equal(m.z[1], za)


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
        APT(method_ctx, vv_blocks=[13])
    with pytest.raises(ConfigError, match="vv_blocks"):
        APT(method_ctx, vv_blocks=["x"])
    assert APT(method_ctx, vv_blocks=12).blocks == (12,)  # a single block from the CLI
    with pytest.warns(DeprecationWarning, match="'lat_blocks' is deprecated; use 'vv_blocks'"):
        assert APT(method_ctx, lat_blocks=[7]).blocks == (7,)
    with pytest.raises(ConfigError, match="same setting"):
        APT(method_ctx, lat_blocks=[7], vv_blocks=[8])
    with pytest.raises(NotApplicable):
        APT(method_ctx, **FAST).fit([], info)
    m = APT(method_ctx, vv_blocks=[7, 12], k=1, la=True, blob_radius=[0.1, 0.2])  # lists from YAML
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


def test_prompt_composition_shared_prefix_and_context_init(monkeypatch, method_ctx, synth):
    """LNP = [G] class [N], LAP = [G] class [A] with ONE prefix tensor G, contexts N(0, 0.02^2) drawn from
    the cell's generator, and the learnable prompts (not the meta ones) scoring after the fit."""
    import hashlib

    import fsadbench.methods.apt.model as apt_model

    info, train, test = synth["disc"]
    seen = {}
    real_train, real_encode = apt_model.train_smgs, apt_model.PromptTextEncoder.encode

    def spy_train(params, encode, synth_fn, meta, cfg):
        seen["init"] = {k: v.detach().clone() for k, v in params.items()}
        seen["cfg"] = cfg
        return real_train(params, encode, synth_fn, meta, cfg)

    def spy_encode(self, prompts, normalize=False):
        seen.setdefault("prompts", []).append([(tpl.text, vals) for tpl, vals in prompts])
        return real_encode(self, prompts, normalize)

    monkeypatch.setattr(apt_model, "train_smgs", spy_train)
    monkeypatch.setattr(apt_model.PromptTextEncoder, "encode", spy_encode)
    method_ctx.seed = 5
    m = APT(method_ctx, epochs=2, meta_rounds=1, n_prefix=2, n_normal=3, n_abnormal=1, lr=0.5, lam=0.3)
    m.fit(train[:1], info)
    (t_n, v_n), (t_a, v_a) = seen["prompts"][0]
    assert (t_n, t_a) == ("* * disc * * *", "* * disc *") and m.facts["prompts"] == [t_n, t_a]
    assert v_n is v_a and v_n["prefix"] is v_a["prefix"]  # one shared prefix G
    h = hashlib.sha1(f"apt|5|{info.dataset}|{info.name}".encode()).hexdigest()
    gen = torch.Generator().manual_seed(int(h[:12], 16))
    w = m.text.width
    for name, n in (("prefix", 2), ("normal", 3), ("abnormal", 1)):
        assert torch.equal(seen["init"][name], 0.02 * torch.randn(n, w, generator=gen)), name
    cfg = seen["cfg"]
    assert (cfg.epochs, cfg.meta_rounds, cfg.lr, cfg.lam, cfg.scale) == (2, 1, 0.5, 0.3, m.scale)
    o = m.options
    assert (cfg.mg, cfg.so, cfg.steps_per_epoch, cfg.calibration) == (o.mg, o.so, o.steps_per_epoch, o.calibration)
    # after the fit, z are the learnable prompts' embeddings, not the meta prompts'
    (zn, za), _ = m.meta_embeddings(info)
    assert not torch.allclose(m.z[0], zn, atol=1e-4)
    with torch.no_grad():
        z = real_encode(m.text, [(m.text.template([Slot("prefix", 2), "disc", Slot("normal", 3)]), v_n)])
    assert torch.allclose(m.z[0], z[0], atol=1e-6)
    no_prefix = APT(method_ctx, epochs=1, meta_rounds=1, n_prefix=0)
    no_prefix.fit(train[:1], info)
    assert no_prefix.facts["prompts"][0] == "disc * * * *"
    assert set(seen["init"]) == {"normal", "abnormal"}  # no empty prefix parameter


def test_tf_off_regions_come_from_the_cell_generator(method_ctx, synth):
    """GN without TF draws its blobs from the seeded generator too: two fits, the same prompts."""
    info, train, _ = synth["disc"]
    z = []
    for _ in range(2):
        torch.manual_seed(len(z))  # the global generator must not matter
        m = APT(method_ctx, epochs=3, meta_rounds=1, lr=1e-2, tf=False)
        m.fit(train[:1], info)
        z.append(m.z)
    assert torch.equal(z[0][0], z[1][0]) and torch.equal(z[0][1], z[1][1])


def test_predict_wiring_by_hand(method_ctx):
    """w/o VG = sigmoid(t (cos(F, z_a) - cos(F, z_n))) (eq. 3-4), w/ VG = that + the memory score (Sec. 4),
    image score = max of the map; hand-made features and prompts."""
    from fsadbench.methods.common.visual_memory import VisualMemory

    m = APT(method_ctx, logit_scale=4.0, memory_layers=[2, 6])
    g = torch.Generator().manual_seed(3)
    tokens, layers = torch.randn(2, 225, 3, generator=g), {l: torch.randn(2, 225, 5, generator=g) for l in (2, 6)}

    m.ctx.features = StubFeatures({"tokens": tokens, "layer2": layers[2], "layer6": layers[6]})
    m.z = (torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 2.0, 2.0]))
    bank = {l: torch.randn(1, 9, 5, generator=g) for l in (2, 6)}
    m.memory = VisualMemory((2, 6))
    m.memory.fit(bank)
    pred = m.predict([None, None])
    u = tokens / tokens.norm(dim=-1, keepdim=True)
    s = torch.sigmoid(4.0 * (u @ torch.tensor([0.0, 1.0, 1.0]) / 2 ** 0.5 - u[..., 0]))

    def dist(q, b):
        return (1 - ((q / q.norm(dim=-1, keepdim=True)) @ (b / b.norm(dim=-1, keepdim=True)).T).max(-1).values) / 2
    s_v = (dist(layers[2], bank[2][0]) + dist(layers[6], bank[6][0])) / 2
    assert torch.allclose(torch.from_numpy(pred["w/o VG"].maps).reshape(2, -1), s, atol=1e-6)
    assert torch.allclose(torch.from_numpy(pred["w/ VG"].maps).reshape(2, -1), s + s_v, atol=1e-6)
    for v, mp in (("w/o VG", s), ("w/ VG", s + s_v)):
        assert torch.allclose(torch.from_numpy(pred[v].scores), mp.max(dim=1).values, atol=1e-6)


def test_describe_records_every_choice(method_ctx):
    m = APT(method_ctx)
    d = m.describe()
    assert d["options_resolved"] == {**__import__("dataclasses").asdict(APT.Options())}
    assert d["fidelity_notes"] == list(APT.fidelity_notes) and len(APT.fidelity_notes) == 8
    assert {k: v for k, v in d.items() if k not in ("options_resolved", "fidelity_notes", "logit_scale")} == {
        "feature_spec": 'vv@v1:{"blocks": "all", "mask": "apt_locality_k2", "mem_layers": [3, 8]}',
        "training_budget": {"epochs": 100, "steps_per_epoch": 1, "samples_per_step": "k x 1",
                            "calibration": "per_group"},
        "lat": {"blocks": list(range(1, 13)), "k": 2.0, "mask": "k-neighbour, CLS row/column open (eq. 13)"},
        "cfg": {"region_rule": "blobs",
                "region_detail": "1..max_blobs discs centred on object patches, radius uniform in blob_radius x "
                                 "min(grid), intersected with the object mask",
                "max_blobs": 3, "blob_radius": [0.07, 0.2],
                "noise": "N(0, (noise_sigma/sqrt(D))^2) on l2-normalised features, renormalised",
                "noise_sigma": 1.0, "tf_score": "softmax", "tf_threshold": 0.5},
        "prompt_init": "N(0, 0.02^2) from the cell seed; layout [SOS] G class N|A [EOS]",
        "image_score": "max of the map",
    }
    assert d["logit_scale"] == pytest.approx(min(100.0, float(method_ctx.backbone.model.logit_scale.exp())))
    off = APT(method_ctx, la=False, tf=False).describe()
    assert off["lat"]["mask"] == "none (plain V-V)" and off["cfg"]["region_rule"] == "blobs anywhere (tf=false)"


@pytest.mark.parametrize("bad, msg", [
    ({"epochs": 0}, r"^apt option 'epochs' must be an integer >= 1, got 0$"),
    ({"epochs": True}, r"^apt option 'epochs' must be an integer >= 1, got True$"),
    ({"meta_rounds": 0}, r"^apt option 'meta_rounds' must be an integer >= 1, got 0$"),
    ({"n_prefix": -1}, r"^apt option 'n_prefix' must be an integer >= 0, got -1$"),
    ({"n_normal": 0}, r"^apt option 'n_normal' must be an integer >= 1, got 0$"),
    ({"n_abnormal": 0}, r"^apt option 'n_abnormal' must be an integer >= 1, got 0$"),
    ({"max_blobs": 0}, r"^apt option 'max_blobs' must be an integer >= 1, got 0$"),
    ({"synth_per_shot": 0}, r"^apt option 'synth_per_shot' must be an integer >= 1, got 0$"),
    ({"steps_per_epoch": 1.5}, r"^apt option 'steps_per_epoch' must be an integer >= 1, got 1\.5$"),
    ({"so": 1}, r"^apt option 'so' must be true or false, got 1$"),
    ({"la": "yes"}, r"^apt option 'la' must be true or false, got 'yes'$"),
    ({"lam": -0.1}, r"^apt options 'lam', 'noise_sigma' and 'k' must be >= 0 and 'lr' > 0, got lam=-0\.1, "
                    r"noise_sigma=1\.0, k=2\.0, lr=0\.0001$"),
    ({"lr": 0.0}, r"got lam=1\.0, noise_sigma=1\.0, k=2\.0, lr=0\.0$"),
    ({"noise_sigma": -1.0}, r"noise_sigma=-1\.0"), ({"k": -1}, r"k=-1"),
    ({"blob_radius": [0.0, 0.1]}, r"^apt option 'blob_radius' must be \[low, high\] with 0 < low <= high, "
                                  r"got \[0\.0, 0\.1\]$"),
    ({"blob_radius": [0.2, 0.1]}, r"got \[0\.2, 0\.1\]$"), ({"blob_radius": [0.1, 0.2, 0.3]}, r"got \[0\.1, 0\.2, 0\.3\]$"),
    ({"blob_radius": ["a", 1]}, r"^apt option 'blob_radius' must be \[low, high\], got \['a', 1\]$"),
    ({"calibration": "layer"}, r"^apt option 'calibration' must be one of \('per_group', 'joint'\), got 'layer'$"),
    ({"logit_scale": "log"}, r"^apt option 'logit_scale' must be one of \('exp', 'raw'\) or a number, got 'log'$"),
    ({"logit_scale": -2.0}, r"^apt option 'logit_scale' must be > 0, got -2\.0$"),
    ({"vv_blocks": ["x"]}, r"^apt option 'vv_blocks' must be a list of block numbers"),
    ({"memory_layers": ["x"]}, r"^apt option 'memory_layers' must be a list of block numbers"),
    ({"memory_layers": [3]}, r"^apt option 'memory_layers' must name two blocks \(Sec\. 4\), got \[3\]$"),
    ({"region": "all"}, r"^apt option 'region' must be one of \('blobs', 'object'\), got 'all'$"),
])
def test_option_checks_name_the_option(method_ctx, bad, msg):
    with pytest.raises(ConfigError, match=msg):
        APT(method_ctx, **bad)


def test_boundary_options_are_accepted_and_reach_the_spec(method_ctx):
    for ok in ({"n_prefix": 0}, {"lam": 0.0}, {"noise_sigma": 0.0}, {"k": 0}, {"blob_radius": [0.1, 0.1]},
               {"epochs": 1, "meta_rounds": 1}, {"logit_scale": 0.5}):
        APT(method_ctx, **ok)
    assert '"blocks": [7, 12]' in APT(method_ctx, vv_blocks=[12, 7]).spec.key
    assert '"blocks": [7, 12]' in APT(method_ctx, vv_blocks=[12, 7], la=False).spec.key
    assert APT(method_ctx, la=False).spec.key == 'vv@v1:{"blocks": "all", "mask": null, "mem_layers": [3, 8]}'
    m = APT(method_ctx)
    assert m.z is None and m.facts == {}
    with pytest.raises(RuntimeError, match=r"^APT\.predict\(\) called before fit\(\)$"):
        m.predict([])
    with pytest.raises(NotApplicable, match=r"^apt needs at least one normal shot: CFG noises the shots' features and "
                                            r"VG keeps them \(shots=0 is zero-shot\)$"):
        m.fit([], CategoryInfo("d", "nut", "nut"))


def test_fit_passes_each_option_to_its_component(monkeypatch, method_ctx, synth):
    import fsadbench.methods.apt.model as apt_model

    info, train, _ = synth["disc"]
    calls: dict[str, list] = {}
    for name in ("target_focus_scores", "object_mask", "sample_regions", "train_smgs"):
        _spy(monkeypatch, apt_model, name, calls)
    m = APT(method_ctx, epochs=2, meta_rounds=1, tf_score="minmax", tf_threshold=0.3, logit_scale=7.0, max_blobs=2,
            blob_radius=[0.1, 0.3], region="object", synth_per_shot=2, steps_per_epoch=2, calibration="joint")
    m.fit(train[:1], info)
    (args, kw), = calls["target_focus_scores"]
    z = method_ctx.backbone.encode_text(["This is a photo of disc.", "This is a photo of the background."]).float()
    assert torch.allclose(args[1], z[0]) and torch.allclose(args[2], z[1])
    assert kw == {"scale": 7.0, "rule": "minmax"} and calls["object_mask"][0][0][1] == 0.3
    assert len(calls["sample_regions"]) == 4  # 2 epochs x 2 steps
    args, kw = calls["sample_regions"][0]
    assert args[0].shape[0] == 2 and kw == {"rule": "object", "max_blobs": 2, "blob_radius": (0.1, 0.3)}
    cfg = calls["train_smgs"][0][0][4]
    assert (cfg.steps_per_epoch, cfg.calibration, cfg.scale) == (2, "joint", 7.0)
    tf = m.facts["target_focus"]
    assert tf["rule"] == "minmax" and tf["threshold"] == 0.3 and 0 < tf["object_fraction"] <= 1
    assert tf["empty_mask_fallbacks"] in (0, 1) and set(tf) == {"rule", "threshold", "object_fraction",
                                                                "empty_mask_fallbacks"}
    assert m.facts["class_name"] == "disc" and m.facts["meta_prompts"] == "simple"
    assert m.facts["meta_sentences"] == ["this is a photo of a disc without defect", "this is a photo of a disc with defect"]
    assert m.facts["training"]["epochs_run"] == 2
    for name in calls:
        calls[name] = []
    off = APT(method_ctx, epochs=1, meta_rounds=1, tf=False, max_blobs=2, blob_radius=[0.1, 0.3], region="object")
    off.fit(train[:1], info)
    args, kw = calls["sample_regions"][0]
    assert args[0].all() and kw == {"rule": "blobs", "max_blobs": 2, "blob_radius": (0.1, 0.3)}
    assert off.facts["target_focus"] == "off (tf=false)"
    cx = APT(method_ctx, gn=False, meta_prompts="complex")
    cx.fit(train[:1], CategoryInfo("synthetic", "disc", "disc", defect_types=("good", "hole")))
    assert cx.facts["meta_sentences"] == {"normal": 35, "abnormal": 30} and cx.facts["meta_prompts"] == "complex"
    assert cx.facts["tuning"] == "none (gn=false): the meta templates score the images (Table 3 row 1)"
    (_, _), (sn, sa) = cx.meta_embeddings(CategoryInfo("synthetic", "disc", "disc"))
    assert "a photo of a flawless disc." in sn and "this is a photo of a disc without defect." in sn


# Equivalent mutants (mutmut, methods/apt/model.py), with the reason they cannot be killed:
EQUIVALENT_MUTANTS = {
    "APT.fit (region.to(None), arange device)": "device placement: the CPU tests cannot see a device",
    "APT._object_mask (n = feats.shape[1])": "an all-ones mask: indexing its rows by the shot index gives ones "
                                            "whatever its row count",
    "APT.__init__ (history = '')": "history is always set by fit() before anything reads it",
    "APT.meta_embeddings (normalize dim default / +1)": "dim 1 is the last dim of the n x E sentence embeddings",
    "APT._object_mask / _init_params (device None or omitted, dev = None)": "device placement: the CPU tests cannot "
                                                                            "see a device",
}
