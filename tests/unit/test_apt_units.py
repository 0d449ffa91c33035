"""APT equations on hand-computed cases: locality mask, losses, KL, calibration, meta rounds, CFG."""

from __future__ import annotations

import math

import pytest
import torch

from fsadbench.core.errors import ConfigError
from fsadbench.methods.apt.cfg import add_noise, object_mask, sample_regions, target_focus_scores
from fsadbench.methods.apt.lat import covering_k, locality_mask
from fsadbench.methods.apt.smgs import (SMGSConfig, ano_loss, bernoulli_kl_logits, calibrate, div_loss,
                                        meta_swap_epochs, pair_logit, train_smgs)

NEG = float("-inf")


# -- eq. 13: locality mask ------------------------------------------------------------
def _open(mask, i, j, grid):
    """Open patches (row, col) seen by patch (i, j)."""
    w = grid[1]
    row = mask[1 + i * w + j, 1:]
    return {(p // w, p % w) for p in range(row.numel()) if row[p] == 0}


def test_locality_mask_3x3_k1():
    g = (3, 3)
    m = locality_mask(g, 1)
    assert m.shape == (10, 10)
    assert torch.all(m[0] == 0) and torch.all(m[:, 0] == 0)  # CLS row and column open
    assert _open(m, 0, 0, g) == {(0, 0), (0, 1), (1, 0)}
    assert _open(m, 1, 1, g) == {(1, 1), (0, 1), (1, 0), (1, 2), (2, 1)}
    assert m[1 + 0, 1 + 4] == NEG  # (0,0)-(1,1): sqrt(2) > 1
    assert int((m[1:, 1:] == 0).sum()) == 9 + 2 * 12  # self + both directions of the 12 grid edges


def test_locality_mask_diagonals_zero_and_orientation():
    g = (3, 3)
    assert _open(locality_mask(g, 1.5), 1, 1, g) == {(a, b) for a in range(3) for b in range(3)}
    m0 = locality_mask(g, 0)
    assert torch.equal(m0[1:, 1:] == 0, torch.eye(9, dtype=torch.bool))
    # non-square grid, row-major: (0,2) is token 1+2 and (1,0) token 1+3, distance sqrt(5) ~ 2.236
    g2 = (2, 3)
    assert locality_mask(g2, 2)[3, 4] == NEG
    assert locality_mask(g2, 2.24)[3, 4] == 0
    assert locality_mask(g2, 2.24)[4, 3] == 0
    assert torch.all(locality_mask(g2, covering_k(g2)) == 0)
    with pytest.raises(ConfigError, match="'k'"):
        locality_mask(g, -1)
    assert locality_mask(g, 1).dtype == torch.float32  # the default
    m64 = locality_mask(g, 1, dtype=torch.float64)  # the dtype the attention logits run in
    assert m64.dtype == torch.float64 and torch.equal(m64.float(), locality_mask(g, 1))
    assert locality_mask(g, 1, n_prefix=2).shape == (11, 11)  # two open prefix tokens


# -- eq. 3-4, 6-7 ------------------------------------------------------------------------
def test_pair_logit_is_scaled_difference_of_cosines():
    f = torch.tensor([[[3.0, 4.0]]])  # normalised -> (0.6, 0.8)
    d = pair_logit(f, torch.tensor([2.0, 0.0]), torch.tensor([0.0, 5.0]), scale=10.0)
    assert d.item() == pytest.approx(10 * (0.8 - 0.6))


def test_ano_loss_hand_case():
    d = torch.tensor([[0.0, math.log(3.0)]])  # S'_a = (0.5, 0.75), S'_n = (0.5, 0.25)
    # M'_a = (0, 1): BCE_a = (-ln .5 - ln .75)/2 ; M'_n = (1, 0): BCE_n = (-ln .5 - ln(1-.25))/2
    want = (-math.log(0.5) - math.log(0.75)) / 2 * 2
    assert ano_loss(d, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(want, rel=1e-6)
    # the mask is the ANOMALY mask: swapping it changes the loss (-ln .5 - ln .25)/2 * 2
    want_sw = (-math.log(0.5) - math.log(0.25)) / 2 * 2
    assert ano_loss(d, torch.tensor([[1.0, 0.0]])).item() == pytest.approx(want_sw, rel=1e-6)
    # batch mean of per-image means
    db = torch.cat([d, d])
    mb = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    assert ano_loss(db, mb).item() == pytest.approx((want + want_sw) / 2, rel=1e-6)


# -- eq. 8-9: KL(S^M || S') ---------------------------------------------------------------
def test_kl_direction_meta_is_the_target():
    d_meta = torch.tensor([[0.0]])  # p = 0.5
    d = torch.tensor([[math.log(3.0)]])  # q_a = 0.75, q_n = 0.25
    kl_pq = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # KL(p||q) = 0.143841
    kl_qp = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)  # reverse = 0.130812
    assert bernoulli_kl_logits(d_meta, d).item() == pytest.approx(kl_pq, rel=1e-6)
    assert abs(kl_pq - kl_qp) > 0.01
    assert div_loss(d_meta, d).item() == pytest.approx(2 * kl_pq, rel=1e-6)  # LNP + LAP terms
    # no gradient reaches the meta prompts' maps
    dm = d_meta.clone().requires_grad_(True)
    dl = d.clone().requires_grad_(True)
    div_loss(dm, dl).backward()
    assert dm.grad is None and dl.grad is not None
    assert div_loss(d, d).item() == pytest.approx(0.0, abs=1e-7)


# -- eq. 10: gradient calibration ---------------------------------------------------------------
def test_calibration_branches_lambda_and_groups():
    ga = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([2.0, 0.0]), torch.zeros(2)]
    gd = [torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 3.0]), torch.tensor([-1.0, 0.0])]
    out, cs = calibrate(ga, gd, lam=1.0)
    r = 1 / math.sqrt(2)
    assert cs[0] == pytest.approx(-r) and cs[1] == pytest.approx(r) and cs[2] == 0.0 and cs[3] == 0.0
    # C < 0: g_ano - lam*C*g_div = (1,0) + r*(-1,1)
    assert torch.allclose(out[0], torch.tensor([1 - r, r]))
    assert torch.equal(out[1], ga[1])  # C > 0: untouched
    assert torch.equal(out[2], ga[2])  # C == 0: untouched
    assert torch.equal(out[3], ga[3])  # zero gradient: no direction, untouched
    half, _ = calibrate(ga, gd, lam=0.5)
    assert torch.allclose(half[0], torch.tensor([1 - r / 2, r / 2]))
    zero, _ = calibrate(ga, gd, lam=0.0)
    assert torch.equal(zero[0], ga[0])
    # per group: the same pair merged into ONE group has a different cosine than each alone
    merged, c_m = calibrate([torch.cat(ga[:2])], [torch.cat(gd[:2])], lam=1.0)
    assert c_m[0] == pytest.approx(0.0) and torch.equal(merged[0], torch.cat(ga[:2]))


# -- eq. 11: meta rounds ---------------------------------------------------------------------
def test_meta_swap_epochs():
    assert meta_swap_epochs(100, 5) == (20, 40, 60, 80)
    assert meta_swap_epochs(10, 3) == (3, 7)
    assert meta_swap_epochs(5, 1) == ()
    for bad in [(5, 0), (3, 4), (0, 1)]:
        with pytest.raises(ConfigError):
            meta_swap_epochs(*bad)


def _toy(seed=0):
    """A text-free stand-in: z_n = g + n, z_a = g + a; patches along e0 (normal) or e1 (noised)."""
    torch.manual_seed(seed)
    params = {k: (0.1 * torch.randn(4)).requires_grad_(True) for k in ("prefix", "normal", "abnormal")}

    def encode():
        return params["prefix"] + params["normal"], params["prefix"] + params["abnormal"]

    feats = torch.zeros(1, 6, 4)
    feats[0, :4, 0] = 1.0
    feats[0, 4:, 1] = 1.0
    feats[0, :, 2] = 0.3
    mask = torch.tensor([[0, 0, 0, 0, 1, 1]], dtype=torch.float32)
    seen = {}

    def synth(epoch):
        seen[epoch] = {k: v.detach().clone() for k, v in params.items()}
        return feats, mask

    meta = (torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0, 0.0]))
    return params, encode, synth, meta, seen


def test_meta_round_swap_exactly_at_boundaries():
    params, encode, synth, meta, seen = _toy()
    cfg = SMGSConfig(epochs=6, meta_rounds=3, lr=0.05, scale=10.0)
    hist, (zm_n, zm_a) = train_smgs(params, encode, synth, meta, cfg)
    assert hist.swaps == [2, 4]
    assert hist.meta_version == [0, 0, 1, 1, 2, 2]
    # right after a swap the meta prompts ARE the learnable ones: L_div is 0 at epochs 3 and 5 only
    assert hist.div[2] == 0.0 and hist.div[4] == 0.0
    assert all(hist.div[i] > 0.0 for i in (0, 1, 3, 5))
    # the final meta prompts are the learnable prompts as they stood at the end of epoch 4
    p5 = seen[5]
    assert torch.allclose(zm_n, p5["prefix"] + p5["normal"]) and torch.allclose(zm_a, p5["prefix"] + p5["abnormal"])
    assert set(hist.cos) == {"prefix", "normal", "abnormal"} and all(len(v) == 6 for v in hist.cos.values())


def test_without_so_meta_stays_and_without_mg_no_div():
    params, encode, synth, meta, _ = _toy()
    hist, zm = train_smgs(params, encode, synth, meta, SMGSConfig(epochs=4, meta_rounds=2, lr=0.05, so=False))
    assert hist.swaps == [] and torch.equal(zm[0], meta[0]) and torch.equal(zm[1], meta[1])
    params, encode, synth, meta, _ = _toy()
    hist, _ = train_smgs(params, encode, synth, meta, SMGSConfig(epochs=4, meta_rounds=2, lr=0.05, mg=False,
                                                                   so=False))
    assert hist.div == [] and hist.cos == {} and len(hist.ano) == 4


def test_toy_training_lowers_l_ano_and_is_deterministic():
    runs = []
    for _ in range(2):
        params, encode, synth, meta, _ = _toy()
        hist, _ = train_smgs(params, encode, synth, meta, SMGSConfig(epochs=30, meta_rounds=3, lr=0.05, scale=10.0))
        runs.append((hist.ano, {k: v.detach() for k, v in params.items()}))
    assert runs[0][0][-1] < runs[0][0][0] - 0.1
    assert runs[0][0] == runs[1][0] and all(torch.equal(runs[0][1][k], runs[1][1][k]) for k in runs[0][1])


# -- CFG: target focus, regions, noise -------------------------------------------------------------
def _hand_map():
    r = 1 / math.sqrt(2)
    # patches: object, object, background, background, half-way
    return torch.tensor([[[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 0], [0, 3.0, 0], [r, r, 0]]])


def test_target_focus_mask_on_hand_made_map():
    f, z_obj, z_bg = _hand_map(), torch.tensor([1.0, 0, 0]), torch.tensor([0, 1.0, 0])
    s = target_focus_scores(f, z_obj, z_bg, scale=100.0, rule="softmax")
    assert s[0, 4].item() == pytest.approx(0.5)  # a tie is NOT above the 0.5 threshold
    m, fb = object_mask(s)
    assert m.tolist() == [[True, True, False, False, False]] and fb == 0
    m_mm, _ = object_mask(target_focus_scores(f, z_obj, rule="minmax"))
    assert m_mm.tolist() == [[True, True, False, False, True]]  # (0.707 - 0) / (1 - 0) > 0.5
    raw = target_focus_scores(f, z_obj, rule="raw")
    assert torch.allclose(raw, torch.tensor([[1.0, 1.0, 0.0, 0.0, 1 / math.sqrt(2)]]))
    # nothing above threshold -> whole grid, counted
    m_bg, fb = object_mask(target_focus_scores(f[:, 2:4], z_obj, z_bg, rule="softmax"))
    assert m_bg.tolist() == [[True, True]] and fb == 1
    with pytest.raises(ConfigError, match="tf_score"):
        target_focus_scores(f, z_obj, z_bg, rule="otsu")


def test_regions_inside_object_and_deterministic():
    grid = (6, 6)
    obj = torch.zeros(3, 36, dtype=torch.bool)
    obj[:, 14:16] = True  # two patches of row 2
    obj[1] = True  # a whole-image (texture) mask
    obj[2, :] = False
    obj[2, 35] = True  # a single patch
    a = sample_regions(obj, grid, torch.Generator().manual_seed(3))
    b = sample_regions(obj, grid, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert not (a & ~obj).any() and a.any(dim=1).all()
    assert a[1].sum() < 36  # some normal patches remain in the texture sample
    assert a[2].tolist() == obj[2].tolist()
    assert torch.equal(sample_regions(obj, grid, torch.Generator(), rule="object"), obj)


def test_noise_only_inside_region_and_unit_norm():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(2, 5, 16, generator=g)
    region = torch.tensor([[True, False, False, True, False], [False] * 5])
    out = add_noise(f, region, sigma=1.0, gen=torch.Generator().manual_seed(1))
    fn = torch.nn.functional.normalize(f, dim=-1)
    assert torch.allclose(out.norm(dim=-1), torch.ones(2, 5))
    assert torch.allclose(out[~region], fn[~region])
    assert (out[region] - fn[region]).norm(dim=-1).min() > 0.1
    assert torch.allclose(add_noise(f, region, 0.0, torch.Generator()), fn)


# -- defaults, reductions, what the optimiser receives --------------------------------------------------
def test_defaults_pinned_to_their_sources():
    import dataclasses

    from fsadbench.methods.apt.model import APT

    assert dataclasses.asdict(APT.Options()) == {
        "so": True, "mg": True, "gn": True, "tf": True, "la": True,  # full APT: Table 3, last row
        "lam": 1.0,  # Sec. 4: "meta-guiding weight lambda = 1"
        "epochs": 100,  # Sec. 4: "100 epochs"
        "meta_rounds": 5,  # Sec. 4: "5 meta-rounds"
        "lr": 1e-4,  # Sec. 4: Adam, initial learning rate 1e-4, cosine annealing
        "n_prefix": 4, "n_normal": 4, "n_abnormal": 4,  # choice (papers give no lengths): CoOp's 4
        "k": 2.0,  # choice: LAT radius (Sec. 3.5 leaves k open)
        "vv_blocks": (),  # () = every block, as PromptAD's official code (vv-attention spec)
        "memory_layers": (3, 8),  # Sec. 4: "two intermediate layers"; blocks as PromptAD's
        "noise_sigma": 1.0,  # choice: Sec. 3.4 gives no sigma (units of 1/sqrt(D), cfg.py)
        "tf_score": "softmax",  # choice: the raw inner product rarely exceeds 0.5 (cfg.py)
        "tf_threshold": 0.5,  # Sec. 3.4: M_obj = F.z_obj > 0.5
        "region": "blobs", "max_blobs": 3, "blob_radius": (0.07, 0.2),  # choice: region rule (cfg.py)
        "synth_per_shot": 1, "steps_per_epoch": 1,  # choice: an epoch = one pass over the k shots (model.py)
        "calibration": "per_group",  # choice: eq. 10 per context group G / N / A
        "logit_scale": "exp",  # choice: CLIP's temperature (the paper writes S = sigma(S_a - S_n))
        "meta_prompts": "simple",  # Sec. 3.3: "this is a photo of a [object] with/without defect"
    }


def test_div_loss_is_a_mean_over_locations():
    d_meta = torch.tensor([[0.0, 0.0]])
    d = torch.tensor([[math.log(3.0), 0.0]])  # location 2 matches the meta prompts: KL 0
    kl = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert div_loss(d_meta, d).item() == pytest.approx(2 * kl / 2, rel=1e-6)  # (KL_n + KL_a), mean over H x W
    assert div_loss(torch.cat([d_meta, d_meta]), torch.cat([d, d_meta])).item() == pytest.approx(kl / 2, rel=1e-6)


def test_joint_calibration_uses_one_cosine_over_all_groups():
    from fsadbench.methods.apt.smgs import calibrate_groups

    ga = [torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])]
    gd = [torch.tensor([-1.0, 0.0]), torch.tensor([0.0, 3.0])]
    per, c_per = calibrate_groups(ga, gd, 1.0, "per_group")
    assert c_per == [pytest.approx(-1.0), pytest.approx(1.0)]
    assert torch.allclose(per[0], torch.tensor([0.0, 0.0])) and torch.equal(per[1], ga[1])
    joint, c = calibrate_groups(ga, gd, 1.0, "joint")
    cj = (0 - 1 + 0 + 3) / (math.sqrt(2) * math.sqrt(10))  # > 0: nothing calibrated
    assert c == [pytest.approx(cj)] * 2 and torch.equal(joint[0], ga[0]) and torch.equal(joint[1], ga[1])
    gd2 = [torch.tensor([-1.0, 0.0]), torch.tensor([0.0, -3.0])]
    joint, c = calibrate_groups(ga, gd2, 0.5, "joint")
    cj = -4 / (math.sqrt(2) * math.sqrt(10))
    assert torch.allclose(torch.cat(joint), torch.cat(ga) - 0.5 * cj * torch.cat(gd2))
    with pytest.raises(ConfigError, match="calibration"):
        calibrate_groups(ga, gd, 1.0, "layer")


@pytest.mark.parametrize("steps_per_epoch", [1, 2])
def test_optimiser_receives_the_calibrated_gradient_and_the_schedule_steps(monkeypatch, steps_per_epoch):
    """Adam.step sees grad L_ano calibrated against grad L_div by eq. 10 (computed here by hand from the
    parameters before the step), at lr 0.05 * (1 + cos(pi t / T)) / 2 for step t of T = epochs x steps."""
    log = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            ps = self.param_groups[0]["params"]
            log.append({"lr": self.param_groups[0]["lr"], "grads": [p.grad.clone() for p in ps],
                        "before": [p.detach().clone() for p in ps]})
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    params, encode, synth, meta, _ = _toy(1)
    meta = (meta[1], meta[0])  # meta prompts that contradict the masks: C < 0, eq. 10 calibrates
    cfg = SMGSConfig(epochs=3, meta_rounds=1, lr=0.05, scale=10.0, lam=0.7, steps_per_epoch=steps_per_epoch)
    hist, _ = train_smgs(params, encode, synth, meta, cfg)
    total = 3 * steps_per_epoch
    assert len(log) == total and len(hist.ano) == 3
    assert [e["lr"] for e in log] == pytest.approx([0.025 * (1 + math.cos(math.pi * t / total))
                                                    for t in range(total)])
    feats, mask = synth(0)
    calibrated = 0
    for e in log:
        g_, n_, a_ = (t.clone().requires_grad_(True) for t in e["before"])
        d = pair_logit(feats, g_ + n_, g_ + a_, 10.0)
        d_meta = pair_logit(feats, meta[0], meta[1], 10.0)
        l_ano = ano_loss(d, mask)
        l_div = div_loss(d_meta, d)
        ga = torch.autograd.grad(l_ano, (g_, n_, a_), retain_graph=True)
        gd = torch.autograd.grad(l_div, (g_, n_, a_))
        for got, x, y in zip(e["grads"], ga, gd):
            c = float(x @ y / (x.norm() * y.norm()))
            want = x - 0.7 * c * y if c < 0 else x
            calibrated += c < 0
            assert torch.allclose(got, want, atol=1e-6)
    assert calibrated > 0  # the calibration branch was exercised


def test_without_mg_the_optimiser_receives_plain_grad_l_ano(monkeypatch):
    log = []

    class RecordingAdam(torch.optim.Adam):
        def step(self, closure=None):
            ps = self.param_groups[0]["params"]
            log.append(([p.grad.clone() for p in ps], [p.detach().clone() for p in ps]))
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    params, encode, synth, meta, _ = _toy(2)
    train_smgs(params, encode, synth, meta, SMGSConfig(epochs=2, meta_rounds=1, lr=0.05, scale=10.0, mg=False))
    feats, mask = synth(0)
    for grads, before in log:
        g_, n_, a_ = (t.clone().requires_grad_(True) for t in before)
        ga = torch.autograd.grad(ano_loss(pair_logit(feats, g_ + n_, g_ + a_, 10.0), mask), (g_, n_, a_))
        assert all(torch.allclose(x, y, atol=1e-7) for x, y in zip(grads, ga))


def test_covering_k_and_mask_dtype():
    assert covering_k((3, 5)) == pytest.approx(math.sqrt(4 + 16)) and covering_k((15, 15)) == pytest.approx(14 * 2 ** 0.5)
    assert covering_k((1, 1)) == 0.0
    m = locality_mask((2, 3), 1, dtype=torch.float64)
    assert m.dtype == torch.float64 and m[1:, 1:].dtype == torch.float64 and int(torch.isinf(m).sum()) == 36 - 6 - 2 * 7  # 6 patches: self and 7 grid edges open


# Equivalent mutants (mutmut), with the reason they cannot be killed:
EQUIVALENT_MUTANTS = {
    # methods/apt/lat.py
    "lat.locality_mask: meshgrid indexing None / omitted": "meshgrid's default indexing is 'ij'",
    "lat.locality_mask: d2.to(None)": "comparing the int64 squared distances with a float is exact too",
    "lat.locality_mask: float('-INF')": "float('-INF') is float('-inf')",
    "lat.locality_mask: patch zeros dtype None / omitted": "the 0 / -inf patch is copied into the mask of `dtype`: "
                                                           "exact in any float dtype",
    # methods/apt/cfg.py
    "cfg.target_focus_scores: normalize(z_obj / z_bg, dim=None)": "normalising a 1-D prompt embedding over all dims "
                                                                  "is over its one dim",
    "cfg.target_focus_scores: min / max dim=+1": "dim=+1 is dim=-1 for the B x N scores",
    "cfg.object_mask: any(dim=+1)": "dim=+1 is dim=-1 for the B x N scores",
    "cfg.sample_regions: meshgrid indexing None / omitted": "meshgrid's default indexing is 'ij'",
    "cfg.sample_regions: zeros_like dtype None / omitted": "zeros_like of the bool object mask is bool already",
    "cfg.sample_regions: randint(n) for randint(0, n)": "randint(n) is randint(0, n)",
    "cfg.sample_regions: out.to(None)": "the region returns to the input's device; CPU tests cannot see a device",
    "cfg.add_noise: noise.to(None)": "noise.to(None) keeps the device: CPU tests cannot see a device",
    "cfg.add_noise: region .to(None)": "a bool region times a float tensor is that float dtype anyway",
    # methods/apt/smgs.py
    "smgs.pair_logit: normalize(z_n / z_a, dim=None)": "normalising a 1-D prompt embedding over all dims is over its "
                                                       "one dim",
    "smgs.ano_loss: reduction / mean over dim None, +1, -2": "mean over H x W then over the batch = mean over both "
                                                             "(every image has the same H x W)",
    "smgs.div_loss: mean over dim None, +1, -2": "mean over H x W then over the batch = mean over both",
    "smgs.calibrate: c <= 0": "C == 0 calibrates by 0 * g_div: g_ano unchanged either way",
    "smgs.train_smgs: CosineAnnealingLR eta_min omitted": "CosineAnnealingLR's default eta_min is 0",
    "smgs.train_smgs: zero_grad(set_to_none None / False)": "every grad is set before the next step: zeroed or None "
                                                            "makes no difference",
}


# -- CFG pinned against the formulas, the draws replicated ----------------------------------------------
def test_target_focus_defaults_minmax_per_image_and_errors():
    f = torch.tensor([[[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], [[0.8, 0.6], [0.0, 1.0], [0.6, 0.8]]])
    z_obj, z_bg = torch.tensor([2.0, 0.0]), torch.tensor([0.0, 3.0])
    soft = target_focus_scores(f, z_obj, z_bg)  # defaults: softmax rule, scale 100
    want = torch.sigmoid(100.0 * (f[..., 0] - f[..., 1]))
    assert torch.allclose(soft, want, atol=1e-6)
    near = torch.tensor([[[0.6, 0.59], [0.59, 0.6]]])  # cosines 0.0119 apart: the scale shows
    gap = 0.01 / (0.6 ** 2 + 0.59 ** 2) ** 0.5
    assert torch.allclose(target_focus_scores(near, z_obj, z_bg), torch.sigmoid(torch.tensor([[gap, -gap]]) * 100),
                          atol=1e-5)
    mm = target_focus_scores(f, z_obj, rule="minmax")  # per image: (s - min) / (max - min)
    assert torch.allclose(mm, torch.tensor([[1.0, 0.6, 0.0], [1.0, 0.0, 0.75]]), atol=1e-6)
    flat = target_focus_scores(torch.tensor([[[0.6, 0.8], [0.8, 0.6]]]), torch.tensor([1.0, 0.0]), rule="minmax")
    assert torch.allclose(flat, torch.tensor([[0.0, 1.0]]), atol=1e-6)  # a 0.2 range is stretched to [0, 1]
    same = target_focus_scores(torch.tensor([[[1.0, 0.0], [1.0, 0.0]]]), z_obj, rule="minmax")
    assert torch.equal(same, torch.zeros(1, 2))  # no range: 0 / 1e-12, not NaN
    with pytest.raises(ValueError, match=r"^target_focus_scores: rule 'softmax' needs the background prompt "
                                         r"embedding z_bg$"):
        target_focus_scores(f, z_obj)


def test_object_mask_falls_back_per_image():
    m, fb = object_mask(torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.2, 0.3]]))
    assert m.tolist() == [[True, False, False], [True, True, True]] and fb == 1


def _replicate_regions(obj, grid, seed, max_blobs, blob_radius):
    """sample_regions written out: per image n ~ randint(1, max_blobs), per blob a centre drawn from the
    object patches, a radius from U, the disc d^2 <= r^2, union, then & obj."""
    g = torch.Generator().manual_seed(seed)
    h, w = grid
    out = []
    for b in range(obj.shape[0]):
        where = [p for p in range(h * w) if obj[b, p]]
        region = set()
        for _ in range(int(torch.randint(1, max_blobs + 1, (1,), generator=g))):
            c = where[int(torch.randint(0, len(where), (1,), generator=g))]
            u = float(torch.rand((), generator=g))
            r = max(1.0, (blob_radius[0] + u * (blob_radius[1] - blob_radius[0])) * min(h, w))
            region |= {p for p in range(h * w) if (p // w - c // w) ** 2 + (p % w - c % w) ** 2 <= r * r}
        out.append([p in region and bool(obj[b, p]) for p in range(h * w)])
    return torch.tensor(out)


def test_regions_equal_the_written_out_rule():
    grid = (20, 20)
    obj = torch.ones(4, 400, dtype=torch.bool)
    obj[1, :200] = False  # object: the bottom half
    obj[2] = False
    obj[2, 210] = True  # a single-patch object
    for seed in range(6):
        got = sample_regions(obj, grid, torch.Generator().manual_seed(seed), max_blobs=3, blob_radius=(0.1, 0.25))
        assert torch.equal(got, _replicate_regions(obj, grid, seed, 3, (0.1, 0.25))), seed
    # defaults: 1..3 blobs of radius 0.07..0.2 x min(grid); a radius below one patch is one patch (d^2 <= 1)
    counts = []
    for seed in range(40):
        got = sample_regions(torch.ones(1, 1600, dtype=torch.bool), (40, 40), torch.Generator().manual_seed(seed),
                             blob_radius=(0.001, 0.001))
        assert torch.equal(got, _replicate_regions(torch.ones(1, 1600, dtype=torch.bool), (40, 40), seed, 3,
                                                   (0.001, 0.001)))
        counts.append(int(got.sum()))
    assert min(counts) <= 5 and max(counts) > 10 and max(counts) <= 15  # 1 to 3 plus-shaped discs of 5 patches
    with pytest.raises(ConfigError, match=r"^apt option 'region' must be one of \('blobs', 'object'\), got 'all'$"):
        sample_regions(obj, grid, torch.Generator(), rule="all")


def test_noise_formula_with_the_draw_replicated():
    feats = torch.randn(2, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    region = torch.tensor([[True, False, True], [False, False, True]])
    out = add_noise(feats, region, 0.7, torch.Generator().manual_seed(4))
    f = feats / feats.norm(dim=-1, keepdim=True)
    noise = torch.randn(f.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * (0.7 / 5 ** 0.5)
    want = f + noise * region[..., None]
    want = want / want.norm(dim=-1, keepdim=True)
    assert out.dtype == torch.float64 and torch.allclose(out, want, atol=1e-12)


def test_smgs_edge_cases_and_history_summary():
    from fsadbench.methods.apt.smgs import SMGSHistory, anomaly_map, calibrate_groups

    f = torch.tensor([[[3.0, 4.0], [0.0, 10.0]]])  # rows of different norms: each is normalised on its own
    d = pair_logit(f, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), scale=2.0)
    assert torch.allclose(d, torch.tensor([[2 * (0.8 - 0.6), 2 * (1.0 - 0.0)]]))
    assert torch.allclose(anomaly_map(torch.tensor([0.0, math.log(3.0)])), torch.tensor([0.5, 0.75]))
    bool_mask = torch.tensor([[False, True]])
    assert ano_loss(d, bool_mask).item() == pytest.approx(ano_loss(d, bool_mask.float()).item())
    # calibration: lambda defaults to 1, a zero g_div has no direction (C = 0), groups must pair up
    ga, gd = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0])], [torch.tensor([-1.0, 1.0]), torch.zeros(2)]
    out, cs = calibrate(ga, gd)
    assert torch.allclose(out[0], torch.tensor([1 - 0.5 ** 0.5, 0.5 ** 0.5])) and cs[1] == 0.0
    by_default = calibrate_groups(ga, gd)  # "per_group", lambda 1 by default
    assert by_default[1] == cs and all(torch.equal(a, b) for a, b in zip(by_default[0], out))
    with pytest.raises(ValueError):
        calibrate(ga, gd[:1])
    three_a = [torch.tensor([1.0]), torch.tensor([2.0, 3.0]), torch.tensor([4.0, 5.0, 6.0])]
    three_d = [torch.tensor([-1.0]), torch.tensor([-1.0, -1.0]), torch.tensor([-1.0, 0.0, 0.0])]
    joint, c = calibrate_groups(three_a, three_d, 1.0, "joint")
    flat = torch.cat(three_a) - c[0] * torch.cat(three_d)
    assert c[0] < 0 and [t.tolist() for t in joint] == [flat[:1].tolist(), flat[1:3].tolist(), flat[3:].tolist()]
    # meta rounds: one epoch is valid, as many rounds as epochs is valid
    assert meta_swap_epochs(1, 1) == () and meta_swap_epochs(3, 3) == (1, 2)
    with pytest.raises(ConfigError, match=r"^apt option 'epochs' must be >= 1, got 0$"):
        meta_swap_epochs(0, 1)
    with pytest.raises(ConfigError, match=r"^apt option 'meta_rounds' must be between 1 and epochs \(3\), got 4$"):
        meta_swap_epochs(3, 4)
    h = SMGSHistory(ano=[0.9, 0.7, 0.5], div=[0.2, 0.15, 0.1], cos={"prefix": [-0.5, 0.3], "normal": [0.1, 0.0]},
                    swaps=[1])
    assert h.summary() == {"epochs_run": 3, "swaps_after_epochs": [1], "l_ano_first": 0.9, "l_ano_last": 0.5,
                           "l_div_first": 0.2, "l_div_last": 0.1,
                           "calibrated_fraction": {"prefix": 0.5, "normal": 0.0}}  # C = 0 calibrates nothing
    assert SMGSHistory().summary() == {"epochs_run": 0, "swaps_after_epochs": []}


def test_train_smgs_unused_group_epoch_means_and_steps_check(monkeypatch):
    import fsadbench.methods.apt.smgs as smgs

    params, encode, synth, meta, _ = _toy(3)
    params["unused"] = torch.zeros(4, requires_grad=True)  # a context no prompt uses: zero gradient
    losses = {"ano": [], "div": []}
    real_ano, real_div = smgs.ano_loss, smgs.div_loss
    monkeypatch.setattr(smgs, "ano_loss", lambda *a: losses["ano"].append(float(real_ano(*a).detach())) or real_ano(*a))
    monkeypatch.setattr(smgs, "div_loss", lambda *a: losses["div"].append(float(real_div(*a).detach())) or real_div(*a))
    hist, _ = train_smgs(params, encode, synth, (meta[1], meta[0]),
                         SMGSConfig(epochs=2, meta_rounds=1, lr=0.05, steps_per_epoch=2, calibration="joint",
                                    scale=5.0))
    assert torch.equal(params["unused"].detach(), torch.zeros(4))
    assert len(set(losses["ano"])) == 4 and min(losses["ano"]) > 1e-3  # not saturated: every step differs
    assert hist.ano == pytest.approx([sum(losses["ano"][:2]) / 2, sum(losses["ano"][2:]) / 2])
    assert hist.div == pytest.approx([sum(losses["div"][:2]) / 2, sum(losses["div"][2:]) / 2])
    assert all(isinstance(c, float) for v in hist.cos.values() for c in v) and len(hist.cos["prefix"]) == 4
    assert len({tuple(v) for v in hist.cos.values()}) == 1  # joint: one C for every group
    assert len(set(hist.cos["prefix"])) > 1 and any(c != 0 for c in hist.cos["prefix"])
    with pytest.raises(ConfigError, match=r"^apt option 'steps_per_epoch' must be >= 1, got 0$"):
        train_smgs(params, encode, synth, meta, SMGSConfig(epochs=2, meta_rounds=1, steps_per_epoch=0))
