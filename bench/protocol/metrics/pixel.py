"""Streaming pixel metrics for one category with bounded memory (package docstring: the bound).

:class:`PixelMetrics` keeps normal-pixel scores as sorted float32 chunks
(:class:`NegativeStore`, numpy on CPU or torch on an accelerator) and anomalous
pixels with their region ids, then builds one :class:`RankSummary` for pixel
AUROC / AP / F1-max and AUPRO.
"""

from __future__ import annotations

import numpy as np

from fsadbench.core.errors import DataError
from fsadbench.protocol.metrics.aupro import label_regions, pro_area
from fsadbench.protocol.metrics.ranking import RankSummary, UndefinedMetric, as_array, distinct

DEFAULT_CHUNK_PIXELS = 1 << 24  # 64 MiB of float32 per sorted chunk of normal pixels


class NegativeStore:
    """Normal-pixel scores as sorted chunks (numpy on CPU, torch on an accelerator).

    New values wait in ``pending`` until ``chunk`` of them are there, then are
    concatenated and sorted once (in place for numpy), so each value is stored
    once and only one chunk is ever copied at a time.
    """

    def __init__(self, chunk: int, device=None):
        if chunk < 1:
            raise ValueError(f"chunk_pixels must be >= 1, got {chunk}")
        self.chunk = int(chunk)
        self.device = device  # None: numpy; a torch.device: torch tensors there
        self.pending: list = []
        self.n_pending = 0
        self.chunks: list = []
        self.n = 0

    def add(self, values) -> None:
        k = int(values.numel() if self.device is not None else values.size)
        if k == 0:
            return
        self.pending.append(values)
        self.n_pending += k
        self.n += k
        if self.n_pending >= self.chunk:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        if self.device is None:
            # the pieces are the store's own copies (``a[~mask]``): a single one is sorted in place
            block = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending)
            self.pending.clear()
            block.sort()
        else:
            import torch

            block = torch.cat(self.pending) if len(self.pending) > 1 else self.pending[0]
            self.pending.clear()
            block = torch.sort(block).values
        self.n_pending = 0
        self.chunks.append(block)

    def count(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(#stored < u, #stored <= u)`` for each value of ``u`` (int64)."""
        self.flush()
        lt = np.zeros(u.size, dtype=np.int64)
        le = np.zeros(u.size, dtype=np.int64)
        if self.device is None:
            for ch in self.chunks:
                lt += np.searchsorted(ch, u, side="left")
                le += np.searchsorted(ch, u, side="right")
        else:
            import torch

            ut = torch.from_numpy(np.ascontiguousarray(u)).to(self.device)
            for ch in self.chunks:
                lt += torch.searchsorted(ch, ut, right=False).cpu().numpy()
                le += torch.searchsorted(ch, ut, right=True).cpu().numpy()
        return lt, le


def resolve_backend(device, backend: str | None):
    """None for numpy, else the torch.device to keep normal pixels on."""
    if backend not in (None, "numpy", "torch"):
        raise ValueError(f"backend must be 'numpy', 'torch' or None (auto), got {backend!r}")
    if backend == "numpy":
        return None
    import torch

    if device is None:
        dev = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    else:
        dev = torch.device(device)
    if backend == "torch":
        return dev
    # auto: torch on an accelerator, numpy on CPU (numpy's sort is the faster one there)
    return None if dev.type == "cpu" else dev


class PixelMetrics:
    """Streaming pixel AUROC / AP / F1-max / AUPRO for one category (module doc: bound).

    ``add(amap, mask)`` takes one H x W map (numpy or torch; stored as float32)
    and its boolean mask (None = all normal). ``device=None`` uses CUDA when
    present, else numpy on CPU; ``backend`` forces 'numpy' or 'torch'.
    ``chunk_pixels`` sets the sorted-chunk size of normal pixels.
    """

    def __init__(self, device=None, fpr_limit: float = 0.3, aupro: bool = True, *,
                 backend: str | None = None, chunk_pixels: int = DEFAULT_CHUNK_PIXELS):
        if not 0.0 < float(fpr_limit) <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        self.fpr_limit = float(fpr_limit)
        self.with_aupro = bool(aupro)
        self.device = resolve_backend(device, backend)
        self._neg = NegativeStore(chunk_pixels, self.device)
        self._pos: list[np.ndarray] = []        # float32 scores of anomalous pixels, per image
        self._ids: list[np.ndarray] = []        # their 1-based region id within the image
        self._sizes: list[np.ndarray] = []      # region sizes of that image
        self._n_regions = 0
        self._n_maps = 0

    @property
    def n_pixels(self) -> int:
        return self._neg.n + sum(p.size for p in self._pos)

    def add(self, amap, mask) -> None:
        where = f"map #{self._n_maps}"
        if self.device is not None and hasattr(amap, "detach"):
            a_t = amap.detach().to(self.device, dtype=torch_float32())
            shape = tuple(a_t.shape)
        else:
            a = as_array(amap)
            if a.dtype != np.float32:
                a = a.astype(np.float32)
            shape = a.shape
        g = np.zeros(shape, dtype=bool) if mask is None else as_array(mask)
        if g.dtype != bool:
            g = g != 0
        if len(shape) != 2 or g.shape != shape:
            raise DataError(f"{where}: anomaly map is {shape} but its mask is {g.shape}; both must be the same "
                            "H x W (resize the mask to the map, as the evaluator does)")
        if self.device is not None:
            import torch

            if not hasattr(amap, "detach"):
                a_t = torch.from_numpy(a).to(self.device)
            if bool(torch.isnan(a_t).any()):
                raise FloatingPointError(f"{where}: anomaly map has NaN values; fix the method's output")
            g_t = torch.from_numpy(g).to(self.device)
            self._neg.add(a_t[~g_t])
            pos = a_t[g_t].cpu().numpy()
        else:
            if np.isnan(a).any():
                raise FloatingPointError(f"{where}: anomaly map has NaN values; fix the method's output")
            self._neg.add(a[~g])
            pos = a[g]
        self._n_maps += 1
        if pos.size == 0:
            return
        self._pos.append(pos)
        if self.with_aupro:
            ids, n = label_regions(g)
            dtype = np.uint8 if n < 256 else (np.uint16 if n < 65536 else np.int32)
            self._ids.append(ids[g].astype(dtype))
            self._sizes.append(np.bincount(ids.ravel(), minlength=n + 1)[1:])
            self._n_regions += n

    def _summary(self) -> RankSummary:
        self._neg.flush()  # before the positive-side arrays exist: peaks do not add up
        if self._pos:
            pos = np.concatenate(self._pos) if len(self._pos) > 1 else self._pos[0].copy()
        else:
            pos = np.zeros(0, np.float32)
        pos.sort()
        u, c = distinct(pos)
        n_pos = pos.size
        del pos
        lt, le = self._neg.count(u)
        return RankSummary(u, c, lt, le, n_pos, self._neg.n)

    def _region_weight_sums(self, u: np.ndarray) -> np.ndarray:
        """Sum of ``1 / (R |r(p)|)`` over the anomalous pixels p with score ``u[j]``, per j."""
        sw = np.zeros(u.size, dtype=np.float64)
        for pos, ids, sizes in zip(self._pos, self._ids, self._sizes):
            w = 1.0 / (self._n_regions * sizes.astype(np.float64))
            np.add.at(sw, np.searchsorted(u, pos), w[ids.astype(np.intp) - 1])
        return sw

    def aupro_value(self, summary: RankSummary | None = None) -> float:
        """AUPRO of what was added; raises UndefinedMetric (see module doc)."""
        if not self.with_aupro:
            raise ValueError("this PixelMetrics was built with aupro=False")
        s = self._summary() if summary is None else summary
        if s.n_pos == 0:
            raise UndefinedMetric("no anomalous region in the masks")
        return pro_area(s, self._region_weight_sums(s.u), self.fpr_limit)

    def compute(self) -> dict:
        """Dict of pixel_auroc, pixel_ap, pixel_f1_max, aupro (None when undefined) and ``undefined`` reasons."""
        s = self._summary()
        out: dict = {}
        undefined: dict[str, str] = {}
        jobs = [("pixel_auroc", lambda: s.auroc("pixel")),
                ("pixel_ap", lambda: s.average_precision("pixel")),
                ("pixel_f1_max", lambda: s.f1_max("pixel"))]
        if self.with_aupro:
            jobs.append(("aupro", lambda: self.aupro_value(s)))
        for key, fn in jobs:
            try:
                out[key] = fn()
            except UndefinedMetric as exc:
                out[key] = None
                undefined[key] = exc.reason
        out["undefined"] = undefined
        return out


def torch_float32():
    import torch

    return torch.float32
