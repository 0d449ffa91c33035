"""Chunked exact kNN and k-center-greedy coreset: hand cases, plain-torch oracles, anomalib's loop as oracle."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fsadbench.methods.common import knn as knn_mod
from fsadbench.methods.common.knn import (CORESET_EPS, DEFAULT_BLOCK, MemoryBank, compute_device, coreset_indices,
                                          jl_dimension, k_center_greedy, knn, sparse_random_projection)

EQUIVALENT_MUTANTS = {
    "knn / coreset_indices / MemoryBank / _Greedy: .to(dev) / .to(query.device) / device= -> None or dropped":
        "device: the CPU tests cannot see a device (meta test covers the choice)",
    "_Greedy.__init__: rows = arange(n) -> None": "read once, by the first activate: min_sq[None] = value writes "
                                                  "every row as min_sq[arange(n)] does",
    "_block_shape: max(1, ...) -> max(2, ...) (query rows)": "2 query rows when 1 would fit: same results, "
                                                             "block exceeded by one row only when block < M",
    "coreset_indices: 0 < n_comp -> 1 < n_comp": "jl_dimension is 0 (one row) or >= 17, never 1",
    "sparse_random_projection: rand < density / < 0.5 -> <=": "equality has probability 0",
    "knn / _merge: topk / sort / F.normalize dim=1 or -1 dropped or +1": "the default is the last dim: 1 of 2-D",
    "knn: if k > 1 -> k >= 1 (sort); sort stable=True -> False / None": "sorting one column; order among equal "
                                                                        "exact distances only",
    "_merge: second 'if k == 1' -> k == 2": "k = 1 then merges by cat + topk(1): the same minimum, first on ties",
    "_exact_l2: max(1, ...) -> max(2, ...)": "2 rows only when a block holds less than one row, when the block "
                                             "itself has one query row",
    "_Greedy.next: while top - outside <= window -> <; fast path gap > window -> >=; near rows >= -> >":
        "equality with the window is measure-zero, and the window keeps slack ((4d + 16) v B for the proven "
        "(4d + 13) v B): either side of it is safe",
    "_Greedy.next: topk(value, 2) -> 3 inside the growth loop": "the active set then has >= 3 rows; the best two "
                                                               "are the same",
}


# ---------------------------------------------------------------- oracles (plain torch, float64)

def spy_norm(monkeypatch, measure=lambda x: tuple(x.shape)) -> list:
    """The list that, from now on, collects ``measure(x)`` of every tensor x given to
    ``torch.linalg.vector_norm``, in call order."""
    seen = []
    real_norm = torch.linalg.vector_norm

    def norm(x, *a, **kw):
        seen.append(measure(x))
        return real_norm(x, *a, **kw)

    monkeypatch.setattr(torch.linalg, "vector_norm", norm)
    return seen


def plain_l2(query, memory, k):
    """torch.cdist + topk in float64: the reference distances and indices."""
    d = torch.cdist(query.double(), memory.double())
    return d.topk(k, dim=1, largest=False)


def plain_cosine(query, memory, k):
    qn, mn = F.normalize(query.double(), dim=1), F.normalize(memory.double(), dim=1)
    return (1.0 - qn @ mn.T).topk(k, dim=1, largest=False)


class AnomalibGreedyOracle:
    """anomalib's KCenterGreedy selection loop (k_center_greedy.py l. 68-141), re-written for the test."""

    def __init__(self, features, size):
        self.features, self.size, self.min_d = features, size, None

    def _update(self, center):
        d = torch.linalg.norm(self.features - self.features[center].squeeze(), ord=2, dim=1, keepdim=True)
        self.min_d = d if self.min_d is None else torch.minimum(self.min_d, d)

    def select(self, start):
        idx, out = torch.tensor(start), [torch.tensor(start)]
        for _ in range(self.size - 1):
            self._update(idx)
            idx = torch.max(self.min_d.squeeze(1), dim=0)[1]
            self.min_d.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
            out.append(idx)
        return torch.stack(out).tolist()


# ---------------------------------------------------------------- knn: hand cases

def test_l2_hand_case():
    memory = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    query = torch.tensor([[0.0, 1.0], [3.0, 3.0], [7.0, 8.0]])
    d, i = knn(query, memory, k=2, metric="l2", device="cpu")
    # (0,1): 1 to m0, sqrt(9+9)=4.2426 to m1 ; (3,3): 1 to m1, sqrt(18) to m0 ; (7,8): 1 to m2, sqrt(16+16) to m1
    assert i.tolist() == [[0, 1], [1, 0], [2, 1]]
    assert torch.allclose(d, torch.tensor([[1.0, math.sqrt(18)], [1.0, math.sqrt(18)], [1.0, math.sqrt(32)]]))


def test_cosine_hand_case():
    memory = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    query = torch.tensor([[3.0, 0.0], [-1.0, 0.0], [1.0, 1.0]])
    d, i = knn(query, memory, k=1, metric="cosine", device="cpu")
    assert i[:, 0].tolist()[0] == 0 and i[1, 0] in (1,)  # (-1, 0): cos 0 to e_y beats cos -1 to e_x
    assert torch.allclose(d[:, 0], torch.tensor([0.0, 1.0, 1 - 1 / math.sqrt(2)]), atol=1e-6)


def test_l2_values_are_exact_where_the_expanded_form_cancels():
    """Far from the origin |m|^2 - 2 q.m loses digits; the returned distance is the difference norm."""
    memory = torch.tensor([[1000.0, 1000.0], [1000.0, 1000.5]])
    query = torch.tensor([[1000.0, 1000.001]])
    d, i = knn(query, memory, k=2, device="cpu")
    want = torch.cdist(query.double(), memory.double())  # of the float32 inputs
    assert i.tolist() == [[0, 1]]
    assert torch.allclose(d.double(), want, rtol=0, atol=1e-7)
    expanded = ((query ** 2).sum() + (memory ** 2).sum(1) - 2 * memory @ query[0]).clamp_min(0).sqrt()
    assert (expanded.double() - want[0]).abs().max() > 5e-4  # what the expanded form alone would return


# ---------------------------------------------------------------- knn: oracles at many block shapes

@pytest.mark.parametrize("metric,oracle", [("l2", plain_l2), ("cosine", plain_cosine)])
@pytest.mark.parametrize("k", [1, 3, 9])
@pytest.mark.parametrize("block", [1, 50, DEFAULT_BLOCK])
def test_knn_equals_plain_cdist_topk(metric, oracle, k, block):
    g = torch.Generator().manual_seed(k * 1000 + block)
    query, memory = torch.randn(37, 16, generator=g), torch.randn(23, 16, generator=g)
    d, i = knn(query, memory, k=k, metric=metric, block=block, device="cpu")
    want = oracle(query, memory, k)
    assert d.shape == i.shape == (37, k) and d.dtype == torch.float32 and i.dtype == torch.long
    assert torch.allclose(d.double(), want.values, atol=1e-5)
    assert torch.equal(i, want.indices)  # continuous random data: no ties
    assert torch.all(d[:, 1:] >= d[:, :-1])


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_knn_with_ties_returns_the_oracle_distances(metric):
    memory = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 1.0]])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    d, i = knn(query, memory, k=3, metric=metric, block=2, device="cpu")
    want = (plain_l2 if metric == "l2" else plain_cosine)(query, memory, 3)
    assert torch.allclose(d.double(), want.values, atol=1e-6)
    got_from_index = (plain_l2 if metric == "l2" else plain_cosine)(query, memory, 5)
    full = torch.cdist(query.double(), memory.double()) if metric == "l2" else \
        1.0 - F.normalize(query.double(), dim=1) @ F.normalize(memory.double(), dim=1).T
    assert torch.allclose(full.gather(1, i), d.double(), atol=1e-6)  # indices point at rows at that distance
    assert got_from_index.values.shape == (3, 5)


def test_k1_ties_across_blocks_keep_the_first_index():
    memory = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 1.0]])
    query = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    for metric in ("l2", "cosine"):
        _, i = knn(query, memory, k=1, metric=metric, block=2, device="cpu")  # blocks {0, 1}, {2, 3}, {4}
        assert i[:, 0].tolist() == [0, 2]


def test_k_winners_are_sorted_by_their_exact_distance():
    """Far from the origin the expanded form ties rows 0.25 and 0.125 away; the exact distances order them."""
    memory = torch.tensor([[1000.0, 1000.25], [1000.0, 999.875]])
    query = torch.tensor([[1000.0, 1000.0]])
    d, i = knn(query, memory, k=2, device="cpu")
    assert i.tolist() == [[1, 0]] and d.tolist() == [[0.125, 0.25]]


def test_knn_accepts_half_and_non_contiguous_input():
    g = torch.Generator().manual_seed(3)
    query, memory = torch.randn(10, 16, generator=g).T, torch.randn(12, 10, generator=g).half()
    d, i = knn(query, memory, k=2, device="cpu")
    want = plain_l2(query, memory.float(), 2)
    assert torch.allclose(d.double(), want.values, atol=1e-5) and torch.equal(i, want.indices)
    d, i = knn(query.half(), memory, k=2, metric="cosine", device="cpu")  # half queries: float32 inside
    want = plain_cosine(query.half().float(), memory.float(), 2)
    assert d.dtype == torch.float32
    assert torch.allclose(d.double(), want.values, atol=1e-5) and torch.equal(i, want.indices)


def test_block_bounds_each_distance_matrix(monkeypatch):
    """No matrix product of the search is larger than the block (the memory bound)."""
    shapes = []
    real_addmm, real_mm = torch.addmm, torch.mm

    def addmm(bias, a, b, **kw):
        shapes.append((a.shape[0], b.shape[1]))
        return real_addmm(bias, a, b, **kw)

    def mm(a, b):
        shapes.append((a.shape[0], b.shape[1]))
        return real_mm(a, b)

    monkeypatch.setattr(torch, "addmm", addmm)
    monkeypatch.setattr(torch, "mm", mm)
    g = torch.Generator().manual_seed(0)
    query, memory = torch.randn(100, 8, generator=g), torch.randn(60, 8, generator=g)
    for metric in ("l2", "cosine"):
        for block in (10, 64, 600, 10_000):
            shapes.clear()
            knn(query, memory, k=4, metric=metric, block=block, device="cpu")
            assert shapes and max(a * b for a, b in shapes) <= max(block, 4)
            assert sum(b for a, b in shapes if a == shapes[0][0]) >= 60  # every memory row is visited
    shapes.clear()
    knn(query, memory, k=1, block=600, device="cpu")
    assert shapes[:3] == [(24, 25), (24, 25), (24, 10)]  # square-ish: isqrt(600) = 24 query rows, 600 // 24 memory
    shapes.clear()
    knn(query[:5], memory, k=1, block=600, device="cpu")
    assert shapes == [(5, 60)]  # few queries: the whole memory in one block
    shapes.clear()
    knn(query, memory[:7], k=1, block=600, device="cpu")
    assert shapes == [(85, 7), (15, 7)]  # a short memory: as many query rows as fit


def test_block_bounds_the_exact_recomputation(monkeypatch):
    sizes = spy_norm(monkeypatch, torch.Tensor.numel)
    g = torch.Generator().manual_seed(1)
    query, memory = torch.randn(30, 8, generator=g), torch.randn(20, 8, generator=g)
    for block, k in ((64, 2), (200, 3), (7, 1)):
        sizes.clear()
        d, _ = knn(query, memory, k=k, block=block, device="cpu")
        assert max(sizes) <= max(block, k * 8) and sum(sizes) == 30 * k * 8
        assert torch.allclose(d.double(), plain_l2(query, memory, k).values, atol=1e-5)
    sizes.clear()
    knn(query, memory, k=2, block=64, device="cpu")
    assert sizes[0] == 4 * 2 * 8  # of the block's 8 query rows (isqrt(64)), 64 // 16 = 4 recomputed at a time
    sizes.clear()
    knn(query, memory, k=2, block=400, device="cpu")
    assert sizes[0] == 20 * 2 * 8  # 400 // 20 = 20 query rows against the whole memory, all recomputed at once


def test_knn_errors_name_the_field():
    q, m = torch.zeros(3, 4), torch.zeros(5, 4)
    with pytest.raises(ValueError, match=r"^knn: metric 'ip' is not one of l2, cosine$"):
        knn(q, m, metric="ip")
    with pytest.raises(ValueError, match=r"^knn: k=6 must be between 1 and the memory size 5$"):
        knn(q, m, k=6)
    with pytest.raises(ValueError, match=r"^knn: k=0 must be between"):
        knn(q, m, k=0)
    with pytest.raises(ValueError, match=r"^knn: query \(3, 4\) and memory \(5, 3\) must be Q x D and M x D$"):
        knn(q, torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"must be Q x D"):
        knn(torch.zeros(3), m)
    with pytest.raises(ValueError, match=r"must be Q x D"):
        knn(q, torch.zeros(5, 4, 1))
    assert knn(q, m, k=5)[0].shape == (3, 5)
    g = torch.Generator().manual_seed(9)
    q, m = torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g)
    d, i = knn(q, m)  # defaults: k = 1, L2
    assert d.shape == (6, 1) and torch.allclose(d.double(), plain_l2(q, m, 1).values, atol=1e-6)


def test_device_choice(monkeypatch):
    t = torch.zeros(2)
    assert compute_device(t, "cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert compute_device(t) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert compute_device(t) == torch.device("cuda")  # CUDA when present
    assert compute_device(t, "cpu") == torch.device("cpu")


def test_knn_agrees_with_the_clip_memory_score():
    """visual_memory.min_cosine_distance is (the cosine kNN at k=1) / 2."""
    from fsadbench.methods.common.visual_memory import min_cosine_distance

    g = torch.Generator().manual_seed(5)
    query, memory = torch.randn(50, 12, generator=g), torch.randn(30, 12, generator=g)
    d, _ = knn(query, memory, k=1, metric="cosine", device="cpu")
    assert torch.allclose(d[:, 0] / 2.0, min_cosine_distance(query, memory), atol=1e-7)


def test_memory_bank_is_prepared_once_and_searches_as_knn():
    g = torch.Generator().manual_seed(8)
    memory, query = torch.randn(9, 4, generator=g).double(), torch.randn(7, 4, generator=g)
    bank = MemoryBank(memory, "l2", device="cpu")
    assert bank.rows.dtype == torch.float32 and bank.device == torch.device("cpu") and bank.metric == "l2"
    assert torch.allclose(bank.sq, (memory.float() ** 2).sum(1))
    for k in (1, 3):
        got, want = bank.search(query, k, block=10), knn(query, memory, k=k, device="cpu")
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    cos = MemoryBank(memory, "cosine", device="cpu")
    assert cos.sq is None and torch.allclose(cos.rows, -F.normalize(memory.float(), dim=1))  # negated unit rows
    d, i = cos.search(query, 2)
    want = plain_cosine(query, memory, 2)
    assert torch.allclose(d.double(), want.values, atol=1e-6) and torch.equal(i, want.indices)
    assert MemoryBank(memory).metric == "l2" and MemoryBank(memory).search(query)[0].shape == (7, 1)  # defaults
    with pytest.raises(ValueError, match=r"^knn: metric 'ip' is not one of l2, cosine$"):
        MemoryBank(memory, "ip")
    one = MemoryBank(memory[:1], device="cpu")  # a one-row memory is a memory
    assert one.search(query)[1].tolist() == [[0]] * 7
    with pytest.raises(ValueError, match=r"^knn: k=1 must be between 1 and the memory size 0$"):
        MemoryBank(memory[:0])
    with pytest.raises(ValueError, match=r"^knn: query \(9,\) and memory \(9,\) must be Q x D and M x D$"):
        MemoryBank(memory[:, 0])
    with pytest.raises(ValueError, match=r"^knn: k=10 must be between 1 and the memory size 9$"):
        bank.search(query, 10)
    with pytest.raises(ValueError, match=r"^knn: query \(7, 3\) and memory \(9, 4\) must be Q x D and M x D$"):
        bank.search(query[:, :3])


def test_memory_bank_searches_transposed_views_without_a_copy(monkeypatch):
    seen = []
    real = torch.addmm

    def addmm(bias, a, b, **kw):
        seen.append(a.is_contiguous())
        return real(bias, a, b, **kw)

    monkeypatch.setattr(torch, "addmm", addmm)
    g = torch.Generator().manual_seed(2)
    grid, memory = torch.randn(5, 12, generator=g), torch.randn(8, 5, generator=g)
    d, i = MemoryBank(memory, device="cpu").search(grid.T)  # 12 x 5 view of a 5 x 12 map
    assert seen == [False]
    want = plain_l2(grid.T, memory, 1)
    assert torch.allclose(d.double(), want.values, atol=1e-6) and torch.equal(i, want.indices)


# ---------------------------------------------------------------- k-center greedy

def test_greedy_hand_case():
    pts = torch.tensor([[0.0], [1.0], [5.0], [10.0]])
    # from 0: farthest is 10 (idx 3); min distances then 0,1,5,0 -> 5 (idx 2); then 0,1,0,0 -> idx 1
    assert k_center_greedy(pts, 4, start=0).tolist() == [0, 3, 2, 1]
    assert k_center_greedy(pts, 2, start=3).tolist() == [3, 0]
    assert k_center_greedy(pts, 1, start=2).tolist() == [2]
    assert k_center_greedy(pts, 1, start=2).dtype == k_center_greedy(pts, 3, start=2).dtype == torch.long


def test_greedy_ties_take_the_first_index_as_anomalib():
    pts = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]])
    # 1 and 2 tie at distance 1: the first; then every min distance is 0 (row 3 duplicates row 0): argmax -> 0
    assert k_center_greedy(pts, 4, start=0).tolist() == [0, 1, 2, 0]
    assert AnomalibGreedyOracle(pts, 4).select(0) == [0, 1, 2, 0]


@pytest.mark.parametrize("n,dim,size,start,block", [(60, 5, 12, 7, DEFAULT_BLOCK), (200, 16, 40, 0, 64),
                                                     (33, 3, 33, 32, 1), (500, 32, 50, 123, 1000)])
def test_greedy_equals_anomalib_loop(n, dim, size, start, block):
    g = torch.Generator().manual_seed(n + size)
    feats = torch.randn(n, dim, generator=g)
    want = AnomalibGreedyOracle(feats, size).select(start)
    assert k_center_greedy(feats, size, start, block).tolist() == want


def test_greedy_in_float64_equals_anomalib_loop_in_float64():
    g = torch.Generator().manual_seed(21)
    feats = torch.randn(150, 7, generator=g).double()
    assert k_center_greedy(feats, 40, 3).tolist() == AnomalibGreedyOracle(feats, 40).select(3)
    ties = torch.randint(-2, 3, (120, 3), generator=g).double()  # exact ties: anomalib's distances in float64
    assert k_center_greedy(ties, 60, 0, 50).tolist() == AnomalibGreedyOracle(ties, 60).select(0)


def test_greedy_errors():
    pts = torch.zeros(4, 2)
    with pytest.raises(ValueError, match=r"^k_center_greedy: n_select=5 must be between 1 and the number of rows 4$"):
        k_center_greedy(pts, 5, 0)
    with pytest.raises(ValueError, match=r"n_select=0"):
        k_center_greedy(pts, 0, 0)
    with pytest.raises(ValueError, match=r"^k_center_greedy: start=4 is not a row index of 4 rows$"):
        k_center_greedy(pts, 2, 4)
    with pytest.raises(ValueError, match=r"start=-1"):
        k_center_greedy(pts, 2, -1)


def test_jl_dimension_and_eps_pinned():
    assert CORESET_EPS == 0.9  # anomalib k_center_greedy.py l. 58
    # 4 ln(3136) / (0.81/2 - 0.729/3) = 32.2029 / 0.162 = 198.78 -> 198 (4-shot WRN-50 memory)
    assert jl_dimension(3136) == 198
    assert jl_dimension(100, eps=0.5) == int(4 * math.log(100) / (0.125 - 0.125 / 3))
    assert jl_dimension(1) == 0


def test_sparse_projection_entries_and_density():
    g = torch.Generator().manual_seed(0)
    p = sparse_random_projection(200, 400, g)
    assert p.shape == (200, 400)
    scale = math.sqrt(math.sqrt(400)) / math.sqrt(200)  # sqrt(1/density)/sqrt(n_components), density 1/20
    values = torch.unique(p).tolist()
    assert len(values) == 3 and values[1] == 0.0 and values == pytest.approx([-scale, 0.0, scale], rel=1e-6)
    assert not torch.equal(p[0] != 0, p[1] != 0)  # each row draws its own entries
    assert ((p > 0).any(0) & (p < 0).any(0)).any()  # and its own signs
    nonzero = (p != 0).float().mean().item()
    assert abs(nonzero - 1 / 20) < 0.005
    assert abs((p > 0).float().sum().item() / (p != 0).float().sum().item() - 0.5) < 0.03
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(sparse_random_projection(200, 400, g2), p)


def test_greedy_window_pinned():
    u, v = 2.0 ** -24, 2.0 ** -53  # float32, float64 unit roundoff
    absolute, relative = knn_mod.greedy_window(10, torch.float32, 3.0)
    assert relative == pytest.approx(2 * (10 + 6) * u, rel=1e-12)  # 2 (d + 6) u
    error = (4 * 10 + 16) * v * 3.0  # E = (4d + 16) v B in float64
    assert absolute == pytest.approx(2 * error + relative * error, rel=1e-12, abs=0)  # 2E + 2 (d + 6) u E
    assert knn_mod.greedy_window(3, torch.float64, 1.0)[0] == pytest.approx(2 * 28 * v * (1 + 9 * v), rel=1e-12,
                                                                          abs=0)
    assert knn_mod.greedy_window(10, torch.float64, 3.0)[1] == pytest.approx(2 * 16 * 2.0 ** -53, rel=1e-12, abs=0)


def test_greedy_near_ties_go_to_anomalib_distances():
    """Far from the origin the expanded form cancels: every step is a near tie, decided by the differences."""
    g = torch.Generator().manual_seed(3)
    feats = 1000.0 + torch.rand(40, 3, generator=g) * 1e-2  # |x|^2 ~ 3e6: float32 steps of 0.25 >> distances^2
    want = AnomalibGreedyOracle(feats, 15).select(4)
    assert k_center_greedy(feats, 15, 4).tolist() == want
    sq = (feats.double() ** 2).sum(1)
    naive = [4]  # the expanded form's own argmax in float32 picks other rows
    min_d = torch.full((40,), math.inf)
    for _ in range(14):
        c = feats[naive[-1]]
        min_d = torch.minimum(min_d, (sq.float() - 2 * feats @ c + sq.float()[naive[-1]]))
        naive.append(int(min_d.argmax()))
    assert naive != want


def test_greedy_float32_ties_are_anomalibs_ties():
    """1 + 2^-26 and 1 + 2^-25 both round to 1 in float32: anomalib ties them and takes the first row."""
    pts = torch.tensor([[-1.0], [2.0 ** -26], [2.0 ** -25]])
    assert k_center_greedy(pts, 2, 0).tolist() == AnomalibGreedyOracle(pts, 2).select(0) == [0, 1]


def test_greedy_exact_distances_in_chunks_of_the_block(monkeypatch):
    pts = torch.tensor([[0.0], [1.0], [-1.0], [2.0], [-2.0]])  # from 0: 2 and -2 tie -> exact distances decide
    want = AnomalibGreedyOracle(pts, 2).select(0)
    sizes = spy_norm(monkeypatch)
    assert k_center_greedy(pts, 2, 0, block=1).tolist() == want == [0, 3]
    assert sizes == [(5, 1), (1, 1, 1), (1, 1, 1)]  # the squares, then the two tied rows one at a time
    sizes.clear()
    assert k_center_greedy(pts, 2, 0).tolist() == want
    assert sizes == [(5, 1), (2, 1, 1)]  # both rows in one block


@pytest.mark.parametrize("seed,n,dim,size", [(0, 120, 6, 60), (1, 300, 4, 100), (2, 90, 2, 90)])
def test_greedy_active_set_catches_up_exactly(monkeypatch, seed, n, dim, size):
    """A tiny active set: every few steps it is refilled and stale rows catch up; integer rows tie often."""
    monkeypatch.setattr(knn_mod, "ACTIVE_MIN", 2)
    monkeypatch.setattr(knn_mod, "ACTIVE_FRACTION", n)
    g = torch.Generator().manual_seed(seed)
    feats = torch.randint(-3, 4, (n, dim), generator=g).float()
    for block in (DEFAULT_BLOCK, 7):
        assert k_center_greedy(feats, size, seed, block).tolist() == AnomalibGreedyOracle(feats, size).select(seed)
    real = torch.randn(n, dim, generator=g)
    assert k_center_greedy(real, size, 1, 5).tolist() == AnomalibGreedyOracle(real, size).select(1)


def test_greedy_catch_up_in_chunks_of_the_block(monkeypatch):
    calls = []
    real_addmm = torch.addmm

    def addmm(bias, a, b, **kw):
        calls.append((a.shape[0], b.shape[1]))
        return real_addmm(bias, a, b, **kw)

    monkeypatch.setattr(knn_mod, "ACTIVE_MIN", 2)
    monkeypatch.setattr(knn_mod, "ACTIVE_FRACTION", 1000)
    monkeypatch.setattr(torch, "addmm", addmm)
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(200, 3, generator=g)
    want = AnomalibGreedyOracle(feats, 30).select(0)
    assert k_center_greedy(feats, 30, 0, block=12).tolist() == want
    assert calls and all(rows * centers <= 12 or rows == 1 for rows, centers in calls)
    assert any(rows > 1 and rows * centers > 6 for rows, centers in calls)  # chunks fill the block
    calls.clear()
    assert k_center_greedy(feats, 30, 0, block=1).tolist() == want
    assert calls and {rows for rows, _ in calls} == {1}


def test_greedy_active_set_schedule(monkeypatch):
    """Activated once after the first step at the target size, doubled while the best is within the window of
    the rows outside, stale rows caught up only with the centers they miss; the fast path on continuous data."""
    log, exact = [], []
    real_activate, real_exact, real_addmm = knn_mod._Greedy.activate, knn_mod._exact_min_distances, torch.addmm

    def activate(self, size, chosen):
        log.append(("activate", size, chosen))
        return real_activate(self, size, chosen)

    def addmm(bias, a, b, **kw):
        log.append(("catch-up", b.shape[1], a.shape[0]))
        return real_addmm(bias, a, b, **kw)

    monkeypatch.setattr(knn_mod._Greedy, "activate", activate)
    monkeypatch.setattr(knn_mod, "_exact_min_distances", lambda *a: exact.append(1) or real_exact(*a))
    monkeypatch.setattr(torch, "addmm", addmm)
    g = torch.Generator().manual_seed(11)
    feats = torch.randn(800, 6, generator=g)  # target max(64, 800 // 8) = 100
    assert k_center_greedy(feats, 120, 7).tolist() == AnomalibGreedyOracle(feats, 120).select(7)
    acts = [e for e in log if e[0] == "activate"]
    assert acts[0] == ("activate", 100, 1) and 1 < len(acts) < 60
    assert all(a[1] in (100, 200, 400, 800) for a in acts)
    grown = [(a, b) for a, b in zip(acts, acts[1:]) if a[2] == b[2]]  # same step: doubled
    assert all(b[1] == min(2 * a[1], 800) for a, b in grown)
    chosen_at, size, caught = 0, 0, {}
    missing = []
    for e in log:
        if e[0] == "activate":
            chosen_at, size = e[2], e[1]
        else:
            missing.append((e[1], chosen_at))
            caught[(chosen_at, size)] = caught.get((chosen_at, size), 0) + e[2]
    assert missing and any(m < c for m, c in missing)  # only the centers a stale row has not seen
    assert caught and all(rows <= size for (_, size), rows in caught.items())  # each stale row caught up once
    assert exact == []  # continuous data: no near tie, every step on the fast path


def test_greedy_window_of_a_run():
    g = torch.Generator().manual_seed(12)
    feats = torch.randn(30, 5, generator=g)
    state = knn_mod._Greedy(feats, 4, 0, DEFAULT_BLOCK)
    absolute, relative = knn_mod.greedy_window(5, torch.float32, float((feats ** 2).sum(1).max()))
    assert state.absolute == pytest.approx(absolute, rel=1e-6, abs=0) and state.relative == relative
    assert state.window(7.0) == pytest.approx(state.absolute + relative * 7.0, rel=1e-12)
    assert state.window(0.5) == pytest.approx(state.absolute + relative * 0.5, rel=1e-12)
    assert state.target == 30  # min(n, max(64, n // 8))


def test_exact_min_distances_chunks_of_the_block(monkeypatch):
    g = torch.Generator().manual_seed(13)
    feats, centers = torch.randn(9, 2, generator=g), torch.randn(3, 2, generator=g)
    rows = torch.tensor([0, 2, 4, 6, 8])
    want = torch.cdist(feats[rows].double(), centers.double()).min(1).values
    sizes = spy_norm(monkeypatch)
    got = knn_mod._exact_min_distances(feats, rows, centers, 12)
    assert sizes == [(2, 3, 2), (2, 3, 2), (1, 3, 2)]  # 12 // (3 centers x 2) = 2 rows at a time
    assert torch.allclose(got.double(), want, atol=1e-6)


def test_coreset_passes_the_block_to_the_greedy(monkeypatch):
    seen = []
    real = knn_mod.k_center_greedy
    monkeypatch.setattr(knn_mod, "k_center_greedy", lambda f, n, s, block: seen.append(block) or real(f, n, s, block))
    big = torch.randn(400, 500)  # jl_dimension(400) = 147 < 500: projected
    coreset_indices(big, 0.01, block=300)
    assert seen == [300]


def test_coreset_runs_on_the_requested_device():
    """The search runs where asked: on the meta device nothing can come back to the CPU."""
    with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
        coreset_indices(torch.randn(20, 3), 0.5, device="meta")
    with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
        knn(torch.randn(4, 3), torch.randn(5, 3), device="meta")


def test_coreset_is_projection_then_greedy_from_a_seeded_start():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(300, 400, generator=g)
    got = coreset_indices(feats, 0.1, seed=4, device="cpu")
    gen = torch.Generator().manual_seed(4)
    proj = sparse_random_projection(jl_dimension(300), 400, gen)
    start = int(torch.randint(300, (1,), generator=gen))
    assert got.tolist() == AnomalibGreedyOracle(feats @ proj.T, 30).select(start)
    assert got.shape == (30,) and len(set(got.tolist())) == 30
    assert torch.equal(coreset_indices(feats, 0.1, seed=4, device="cpu"), got)  # deterministic for a seed
    assert not torch.equal(coreset_indices(feats, 0.1, seed=5, device="cpu"), got)
    assert torch.equal(coreset_indices(feats.double(), 0.1, seed=4, device="cpu"), got)  # float32 inside


def test_coreset_without_projection_when_the_jl_dimension_is_not_smaller():
    g = torch.Generator().manual_seed(2)
    feats = torch.randn(50, 8, generator=g)  # jl_dimension(50) = 96 >= 8
    gen = torch.Generator().manual_seed(0)
    start = int(torch.randint(50, (1,), generator=gen))
    assert coreset_indices(feats, 0.25, device="cpu").tolist() == AnomalibGreedyOracle(feats, 12).select(start)
    square = torch.randn(50, 96, generator=g)  # jl_dimension(50) = 96 = dim: not projected either
    gen = torch.Generator().manual_seed(0)
    start = int(torch.randint(50, (1,), generator=gen))
    assert coreset_indices(square, 0.2, device="cpu").tolist() == AnomalibGreedyOracle(square, 10).select(start)
    one = coreset_indices(torch.ones(1, 3), 1.0, device="cpu")
    assert one.tolist() == [0]


def test_coreset_size_and_errors():
    feats = torch.randn(10, 4)
    assert coreset_indices(feats, 0.39, device="cpu").shape == (3,)  # int(10 * 0.39)
    assert coreset_indices(feats, 1.0, device="cpu").sort().values.tolist() == list(range(10))
    with pytest.raises(ValueError, match=r"^coreset: ratio 0.05 of 10 rows gives 0 rows; use a ratio in \(0, 1\]"):
        coreset_indices(feats, 0.05)
    with pytest.raises(ValueError, match=r"ratio 1.5 of 10 rows gives 15 rows"):
        coreset_indices(feats, 1.5)
    with pytest.raises(ValueError, match=r"ratio -0.5 of 10 rows gives -5 rows"):
        coreset_indices(feats, -0.5)
    with pytest.raises(ValueError, match=r"ratio 0.0 of 10 rows gives 0 rows"):
        coreset_indices(feats, 0.0)


def test_module_constants():
    assert DEFAULT_BLOCK == 1 << 22
    assert knn_mod.METRICS == ("l2", "cosine")


def test_greedy_near_tie_takes_the_farthest_row_not_the_nearest(monkeypatch):
    """Rows 1 and 1 + 2^-23 (the next float32) are 2.4e-7 apart relatively, inside the rounding window
    of the expanded form: the exact distances decide, and the row anomalib picks is the FARTHEST from
    the centers (argmax), not the nearest (argmin would take row 1)."""
    import fsadbench.methods.common.knn as knn_mod

    pts = torch.tensor([[0.0], [1.0], [1.0 + 2.0 ** -23]])
    seen = []
    real = knn_mod._exact_min_distances

    def spy(features, rows, centers, block):
        out = real(features, rows, centers, block)
        seen.append((rows.tolist(), out.tolist()))
        return out

    monkeypatch.setattr(knn_mod, "_exact_min_distances", spy)
    got = k_center_greedy(pts, 2, 0).tolist()
    assert [rows for rows, _ in seen] == [[1, 2]]  # the near-tie branch decided
    (_, dist), = seen
    assert dist[1] > dist[0] > 0  # row 2 is farther from center 0 than row 1
    assert got == AnomalibGreedyOracle(pts, 2).select(0) == [0, 2]
