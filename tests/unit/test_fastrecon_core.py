"""FastRecon functional core: the closed form on hand-solved cases, the embedding, the official greedy coreset,
the chunked residual map, and an oracle port of the official main.py (own words) on random features."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fixtures_maps import pyramid
from scipy.spatial.distance import cdist

from fsadbench.methods.fastrecon import torch_model as fr
from fsadbench.methods.fastrecon.torch_model import (FastRecon, Reconstructor, coreset, embed, fit_reconstructor,
                                                     inverse_gram, pool_rows, position_mean, reconstruct,
                                                     residual_map, weights)

EQUIVALENT_MUTANTS = {
    "residual_map: dev = None, .to(dev, ...) -> .to(None, ...) or .to(float32) (support, mean, inverse, query "
    "pieces), torch.empty(device=dev) -> device=None, .to(embedding.device) -> .to(None)": "device placement: the "
    "CPU tests have one device (dtypes are pinned by test_residual_map_takes_float64_inputs_to_float32)",
    "embed: mode='nearest' dropped": "nearest is F.interpolate's default mode",
}


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


# -- the closed form, by hand ------------------------------------------------------------------------


def test_defaults_follow_the_official_code():
    assert fr.LAYERS == ("layer2", "layer3")  # main.py l. 245-246
    assert fr.NEIGHBOURHOOD == 3  # l. 343, 379
    assert fr.LAMBDA == 2.0  # l. 453
    assert fr.CORESET_RATIO == 0.01  # README command
    assert fr.CORESET_START == 0  # kcenter_greedy.py l. 105-110
    assert fr.DEFAULT_CHUNK == 1 << 22
    f = FastRecon()
    assert (f.lam, f.coreset_ratio, f.chunk, f.reconstructor) == (2.0, 0.01, 1 << 22, None)


def test_inverse_gram_of_a_2x2_support_by_hand():
    # S = [[1, 1], [0, 1]]: S S^T = [[2, 1], [1, 1]], det 1, inverse [[1, -1], [-1, 2]]
    inv = inverse_gram(t([[1, 1], [0, 1]]))
    assert inv.dtype == torch.float64 and torch.equal(inv, t([[1, -1], [-1, 2]]))


def test_closed_form_2x2_by_hand_full_span_gives_the_regularised_target():
    # S = diag(1, 2): G^-1 = diag(1, 1/4); q = [3, 4], mu = [1, 0], lambda = 2:
    # q + 2 mu = [5, 4]; (q + 2 mu) S^T = [5, 8]; times G^-1 = [5, 2]; / 3 -> W = [5/3, 2/3]; W S = [5/3, 4/3]
    s, q, mu = t([[1, 0], [0, 2]]), t([[3, 4]]), t([[1, 0]])
    inv = inverse_gram(s)
    assert torch.allclose(weights(q, mu, s, inv, 2.0), t([[5 / 3, 2 / 3]]), atol=1e-12)
    assert torch.allclose(reconstruct(q, mu, s, inv, 2.0), t([[5 / 3, 4 / 3]]), atol=1e-12)
    # lambda = 0 and a non-orthogonal S = [[1, 1], [0, 1]]: W = [5, 3] [[1, -1], [-1, 2]] = [2, 1]; W S = q
    s2, q2 = t([[1, 1], [0, 1]]), t([[2, 3]])
    assert torch.allclose(weights(q2, mu, s2, inverse_gram(s2), 0.0), t([[2, 1]]), atol=1e-12)
    assert torch.allclose(reconstruct(q2, mu, s2, inverse_gram(s2), 0.0), q2, atol=1e-12)


def test_closed_form_3x3_by_hand():
    # S = [[1,0,0],[1,1,0],[0,0,2]]: G = [[1,1,0],[1,2,0],[0,0,4]], G^-1 = [[2,-1,0],[-1,1,0],[0,0,1/4]]
    # q = [1,2,3], mu = [3,0,0], lambda = 1: q + mu = [4,2,3]; (q + mu) S^T = [4,6,6]; times G^-1 = [2,2,1.5];
    # / 2 -> W = [1, 1, 0.75]; W S = [2, 1, 1.5]
    s, q, mu = t([[1, 0, 0], [1, 1, 0], [0, 0, 2]]), t([[1, 2, 3]]), t([[3, 0, 0]])
    inv = inverse_gram(s)
    assert torch.allclose(inv, t([[2, -1, 0], [-1, 1, 0], [0, 0, 0.25]]), atol=1e-12)
    assert torch.allclose(weights(q, mu, s, inv, 1.0), t([[1, 1, 0.75]]), atol=1e-12)
    assert torch.allclose(reconstruct(q, mu, s, inv, 1.0), t([[2, 1, 1.5]]), atol=1e-12)


def test_closed_form_with_fewer_support_rows_than_channels_is_a_projection():
    # S spans the first two axes: Q_hat = projection of (q + lambda mu) / (1 + lambda) = [0.5, 1, 0]
    s, q, mu = t([[1, 0, 0], [0, 1, 0]]), t([[1, 2, 3]]), t([[0, 0, 6]])
    assert torch.allclose(reconstruct(q, mu, s, inverse_gram(s), 1.0), t([[0.5, 1, 0]]), atol=1e-12)


def test_closed_form_minimises_the_regularised_objective():
    """W is the stationary point of |q - W S|^2 + lambda |mu - W S|^2: the gradient vanishes there."""
    g = torch.Generator().manual_seed(3)
    s, q, mu = (torch.randn(n, 7, generator=g, dtype=torch.float64) for n in (4, 5, 5))
    w = weights(q, mu, s, inverse_gram(s), 2.0).requires_grad_(True)
    loss = ((q - w @ s) ** 2).sum() + 2.0 * ((mu - w @ s) ** 2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-9


def test_inverse_gram_refuses_dependent_rows():
    with pytest.raises(ValueError, match=r"^fastrecon: the 2 support rows \(2 channels\) are linearly dependent, "
                                         r"so S S\^T has no inverse for the closed form; lower coreset_ratio$"):
        inverse_gram(t([[1, 2], [1, 2]]))
    with pytest.raises(ValueError, match=r"the 3 support rows \(2 channels\)"):
        inverse_gram(t([[1, 0], [0, 1], [1, 1]]))  # more rows than channels: S S^T has rank 2
    with pytest.raises(ValueError, match=r"the 5 support rows \(3 channels\)"):  # LU's rounding misses rank 3 < 5
        inverse_gram(torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64))


# -- embedding, pool, mean, coreset ------------------------------------------------------------------


def official_embedding(maps: list[torch.Tensor]) -> torch.Tensor:
    """main.py l. 343-345 with embedding_concat l. 119-132, in other words: 3x3 average, then each layer2
    sub-position of an s x s block gets the layer3 cell of that block (unfold, concat, fold)."""
    x, y = (F.avg_pool2d(m, 3, 1, 1) for m in maps)
    b, c1, h1, w1 = x.shape
    _, c2, h2, w2 = y.shape
    s = h1 // h2
    cols = F.unfold(x, kernel_size=s, stride=s).view(b, c1, s * s, h2, w2)
    z = torch.cat([cols, y[:, :, None].expand(b, c2, s * s, h2, w2)], dim=1)
    return F.fold(z.reshape(b, -1, h2 * w2), kernel_size=s, output_size=(h1, w1), stride=s)


def test_embed_is_the_official_concat_of_averaged_layers():
    g = torch.Generator().manual_seed(0)
    maps = pyramid(g, 2, [(3, 8), (5, 4)])
    out = embed(maps)
    assert out.shape == (2, 8, 8, 8) and torch.allclose(out, official_embedding(maps), atol=1e-6)
    # by hand: a 2 x 2 map [[1, 2], [3, 4]]: every 3 x 3 window with zero padding holds all four -> 10 / 9
    one = embed([torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[[[9.0]]]])])
    assert torch.allclose(one[0, 0], torch.full((2, 2), 10 / 9)) and torch.allclose(one[0, 1], torch.ones(2, 2))


def test_embed_needs_maps():
    with pytest.raises(ValueError, match=r"^fastrecon.embed: no feature maps \(expected layer2 and layer3\)$"):
        embed([])


def test_pool_rows_and_position_mean_by_hand():
    emb = torch.arange(2 * 2 * 1 * 2, dtype=torch.float32).reshape(2, 2, 1, 2)  # k=2, C=2, H=1, W=2
    # shot 0: channel 0 = [0, 1], channel 1 = [2, 3]; shot 1: channel 0 = [4, 5], channel 1 = [6, 7]
    assert pool_rows(emb).tolist() == [[0, 2], [1, 3], [4, 6], [5, 7]]
    assert position_mean(emb).tolist() == [[2, 4], [3, 5]]


def official_greedy(rows: np.ndarray, n: int) -> list[int]:
    """kcenter_greedy.py as it runs in FastRecon (unfitted projection -> raw rows; argmax(None) = 0 first)."""
    picks, min_d = [], None
    for _ in range(n):
        ind = int(np.argmax(min_d)) if min_d is not None else 0
        d = cdist(rows, rows[[ind]])
        min_d = d if min_d is None else np.minimum(min_d, d)
        picks.append(ind)
    return picks


def test_coreset_by_hand_and_against_the_official_greedy():
    rows = torch.tensor([[0.0], [1.0], [5.0], [2.0]])
    # from row 0 (0): farthest is 5, then min distances [0, 1, 0, 2] -> 2; int(4 * 0.75) = 3 rows
    assert coreset(rows, 0.75).tolist() == [[0.0], [5.0], [2.0]]
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(200, 6, generator=g)
    want = official_greedy(feats.double().numpy(), 20)
    assert torch.equal(coreset(feats, 0.1), feats[want])
    assert torch.equal(coreset(feats, 0.1, block=64), feats[want])
    assert coreset(feats, 1.0).shape == (200, 6)


def test_coreset_and_fit_hand_the_block_to_the_greedy(monkeypatch):
    seen = []
    real = fr.k_center_greedy

    def spy(rows, size, start, block):
        seen.append((rows.shape[0], size, start, block))
        return real(rows, size, start, block)

    monkeypatch.setattr(fr, "k_center_greedy", spy)
    coreset(torch.randn(20, 4), 0.5, block=33)
    fit_reconstructor(torch.randn(1, 8, 2, 5), ratio=0.4, block=9)
    assert seen == [(20, 10, 0, 33), (10, 4, 0, 9)]


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5, 0.004])
def test_coreset_refuses_a_ratio_that_keeps_no_row_or_more_than_all(ratio):
    with pytest.raises(ValueError, match=rf"^fastrecon: coreset_ratio {ratio} of 200 support rows keeps "
                                         rf"{int(200 * ratio)} rows; use a ratio in \(0, 1\]"):
        coreset(torch.zeros(200, 3), ratio)


# -- fit, chunked residual map, predict --------------------------------------------------------------


def test_fit_reconstructor_keeps_coreset_inverse_mean_lambda_and_grid():
    g = torch.Generator().manual_seed(2)
    emb = torch.randn(2, 40, 3, 4, generator=g)  # 24 rows of 40 channels
    rec = fit_reconstructor(emb, ratio=0.5, lam=3.0)
    assert torch.equal(rec.support, coreset(pool_rows(emb), 0.5)) and rec.support.shape == (12, 40)
    assert torch.allclose(rec.inverse, torch.linalg.inv(rec.support.double() @ rec.support.double().T))
    assert torch.equal(rec.mean, position_mean(emb)) and rec.lam == 3.0 and rec.grid == (3, 4)
    with pytest.raises(ValueError, match=r"coreset_ratio 0.01 of 24 support rows keeps 0 rows"):
        fit_reconstructor(emb)  # the default ratio
    default = fit_reconstructor(torch.randn(1, 150, 10, 10, generator=g))  # 100 rows: int(100 * 0.01) = 1
    assert default.support.shape == (1, 150) and default.lam == 2.0


def plain_map(emb: torch.Tensor, rec: Reconstructor) -> torch.Tensor:
    """One image at a time, all rows at once, float64 (no chunking)."""
    out = []
    for x in emb.double():
        q = pool_rows(x[None])
        q_hat = reconstruct(q, rec.mean.double(), rec.support.double(), rec.inverse, rec.lam)
        out.append((q - q_hat).norm(dim=1).reshape(emb.shape[2:]))
    return torch.stack(out).float()


@pytest.mark.parametrize("chunk", [1, 40, 40 * 5, 40 * 12, 40 * 12 * 2, 40 * 12 * 3 - 1, fr.DEFAULT_CHUNK])
def test_residual_map_is_the_same_for_every_chunk(chunk):
    g = torch.Generator().manual_seed(4)
    shots, tests = torch.randn(2, 40, 3, 4, generator=g), torch.randn(5, 40, 3, 4, generator=g)
    rec = fit_reconstructor(shots, ratio=0.5, lam=2.0)
    got = residual_map(tests, rec, chunk)
    assert got.shape == (5, 3, 4) and got.dtype == torch.float32
    assert torch.allclose(got, plain_map(tests, rec), rtol=1e-5, atol=1e-5)


def test_residual_map_uses_each_positions_own_mean():
    # one channel-orthogonal support row; mu differs per position, so the reconstruction does too
    rec = Reconstructor(support=torch.tensor([[1.0, 0.0]]), inverse=t([[1.0]]),
                        mean=torch.tensor([[3.0, 0.0], [0.0, 0.0]]), lam=1.0, grid=(1, 2))
    q = torch.zeros(1, 2, 1, 2)  # both positions' rows are 0
    # position 0: target [3, 0] / 2 -> Q_hat [1.5, 0], residual 1.5; position 1: Q_hat 0, residual 0
    assert residual_map(q, rec, chunk=2).tolist() == [[[1.5, 0.0]]]


def test_residual_map_takes_float64_inputs_to_float32():
    rec = Reconstructor(support=t([[1.0, 0.0]]), inverse=t([[1.0]]), mean=t([[3.0, 0.0], [0.0, 0.0]]), lam=1.0,
                        grid=(1, 2))
    got = residual_map(torch.zeros(1, 2, 1, 2, dtype=torch.float64), rec)
    assert got.dtype == torch.float32 and got.tolist() == [[[1.5, 0.0]]]


@pytest.mark.parametrize("chunk, pieces", [
    (1, [(1, 1)] * 24),  # one row at a time: 2 images x 12 positions
    (8 * 5, [(1, 5), (1, 5), (1, 2)] * 2),  # 5 rows: parts of one image
    (8 * 12 * 2, [(2, 12)]),  # two whole images in one product
    (8 * 12 * 2 - 1, [(1, 12), (1, 12)]),  # one row short of two images: one image at a time
])
def test_residual_map_pieces_are_bounded_by_the_chunk(monkeypatch, chunk, pieces):
    seen = []
    real = fr.reconstruct

    def spy(q, *args):
        seen.append(tuple(q.shape[:2]))
        return real(q, *args)

    monkeypatch.setattr(fr, "reconstruct", spy)
    rec = fit_reconstructor(torch.randn(1, 8, 3, 4), ratio=0.5)
    residual_map(torch.randn(2, 8, 3, 4), rec, chunk)
    assert seen == pieces


def test_residual_map_refuses_another_grid_or_width():
    rec = fit_reconstructor(torch.randn(1, 8, 2, 3), ratio=1.0)
    with pytest.raises(ValueError, match=r"^fastrecon: test embedding 8 x 3 x 2 does not match the fitted 8 x 2 x 3$"):
        residual_map(torch.randn(1, 8, 3, 2), rec)
    with pytest.raises(ValueError, match=r"test embedding 9 x 2 x 3 does not match"):
        residual_map(torch.randn(1, 9, 2, 3), rec)


def official_scores(shot_maps, test_maps, ratio: float, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """main.py l. 337-410 in other words, all shots in one training batch: pool = the batch's rows, mu = the
    batch mean per position, greedy coreset, then per test image W from the inverse of (1 + lam) S S^T,
    Q_hat = W S, |Q - Q_hat| norm per row, max as image score."""
    emb = official_embedding(shot_maps)
    b, c, h, w = emb.shape
    rows = emb.permute(0, 2, 3, 1).reshape(-1, c)
    sc = rows[official_greedy(rows.double().numpy(), int(rows.shape[0] * ratio))]
    mu = emb.reshape(b, c, -1).mean(0).T
    maps, scores = [], []
    test = official_embedding(test_maps)
    for i in range(test.shape[0]):
        q = test[i:i + 1].permute(0, 2, 3, 1).reshape(-1, c)
        temp = sc @ sc.T + lam * (sc @ sc.T)
        wgt = (q @ sc.T + lam * (mu @ sc.T)) @ torch.linalg.inv(temp)
        patch = torch.norm(torch.abs(q - wgt @ sc), dim=1)
        maps.append(patch.reshape(h, w).numpy())
        scores.append(float(patch.max()))
    return np.stack(maps), np.array(scores)


@pytest.mark.parametrize("shots, ratio, lam", [(1, 0.25, 2.0), (3, 0.1, 2.0), (2, 0.2, 0.5)])
def test_fastrecon_matches_the_official_oracle_on_random_features(shots, ratio, lam):
    g = torch.Generator().manual_seed(10 + shots)
    layers = [(24, 8), (40, 4)]  # C = 64, a 8 x 8 grid
    shot_maps, test_maps = pyramid(g, shots, layers), pyramid(g, 4, layers)
    model = FastRecon(lam=lam, coreset_ratio=ratio)
    model.fit(shot_maps)
    maps, scores = model.predict(test_maps)
    want_maps, want_scores = official_scores(shot_maps, test_maps, ratio, lam)
    assert model.reconstructor.support.shape[0] == int(shots * 64 * ratio)
    assert np.allclose(maps.numpy(), want_maps, rtol=1e-4, atol=1e-4)
    assert np.allclose(scores.numpy(), want_scores, rtol=1e-4, atol=1e-4)
    assert torch.equal(scores, maps.flatten(1).amax(dim=1))


def test_fastrecon_predict_before_fit_and_chunk_and_options_reach_the_core(monkeypatch):
    with pytest.raises(ValueError, match=r"^fastrecon: predict before fit \(no support rows of the shots\)$"):
        FastRecon().predict([torch.zeros(1, 2, 2, 2)])
    seen = {}
    real = fr.residual_map

    def spy(emb, rec, chunk):
        seen["chunk"], seen["lam"], seen["rows"] = chunk, rec.lam, rec.support.shape[0]
        return real(emb, rec, chunk)

    monkeypatch.setattr(fr, "residual_map", spy)
    g = torch.Generator().manual_seed(5)
    model = FastRecon(lam=0.5, coreset_ratio=0.5, chunk=7)
    model.fit(pyramid(g, 1, [(6, 4), (6, 2)]))
    model.predict(pyramid(g, 1, [(6, 4), (6, 2)]))
    assert seen == {"chunk": 7, "lam": 0.5, "rows": 8}


def test_distribution_term_pulls_the_reconstruction_towards_the_mean():
    """lambda -> infinity: Q_hat -> the projection of mu; lambda = 0: the projection of Q."""
    g = torch.Generator().manual_seed(6)
    s, q, mu = (torch.randn(n, 9, generator=g, dtype=torch.float64) for n in (3, 1, 1))
    inv = inverse_gram(s)
    proj = s.T @ inv @ s
    assert torch.allclose(reconstruct(q, mu, s, inv, 0.0), q @ proj, atol=1e-10)
    assert torch.allclose(reconstruct(q, mu, s, inv, 1e9), mu @ proj, atol=1e-7)
    assert math.isclose(float(reconstruct(q, mu, s, inv, 1.0).norm()), float(((q + mu) / 2 @ proj).norm()),
                        rel_tol=1e-10)
