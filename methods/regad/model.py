"""``regad``: RegAD as a method (the equations are in :mod:`.torch_model`).

Protocol (the official code, MediaBrain-SJTU/RegAD, ``train.py`` / ``test.py``; the harness's
leave-one-out mode, ``fit_scope = "leave_one_out"``, :mod:`fsadbench.run.transfer`):

1. :meth:`RegAD.fit_auxiliary`: trained once per (dataset, held-out category, seed, shot count) on the
   normal train images of the target dataset's OTHER categories (``datasets/mvtec.py`` l. 118-156: every
   ``train/good`` image of every class but ``--obj``). Per epoch each category's images are shuffled and
   cut into batches of ``batch_size`` queries (l. 132-153), each query with k supports drawn uniformly
   from its category, never itself (l. 145-149); the batches' order is shuffled (``train.py`` l. 80).
   Query and supports go through the STN ResNet (its weights trained too, ``train.py`` l. 70), the
   supports' last features averaged over the k (l. 173-179), encoder and predictor on both sides, the
   symmetric negative-cosine loss (l. 181-185); SGD lr 1e-4, momentum 0.9 (l. 33-34, 70-72), the
   cosine schedule set before each epoch (l. 95, 317-322), 50 epochs (l. 30), batches of 32 (l. 31).
   The training's k is the cell's shot count (``train.py`` l. 35, 79: one model per ``--shot``).
2. :meth:`RegAD.fit`: the cell's k shots augmented to 22 k images, their registered layer1-3 features
   (eval mode) give the per-position Gaussian (``test.py`` l. 112-158).
3. :meth:`RegAD.predict`: Mahalanobis distance of each test position (l. 189-205) on layer1's grid;
   the evaluator upsamples it and smooths it with sigma 4 at 224 px (l. 207-213); the image score is the
   max of that smoothed map (l. 82; its min-max normalisation over the test set keeps the order).

Pixels: the official inputs are resized to 224 px and NOT normalised (``datasets/mvtec.py`` l. 34-38:
``Normalize`` commented out): the feature store's ImageNet-normalised pixels are mapped back to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.core.types import AuxiliarySet, CategoryInfo, ImageRef, Prediction
from fsadbench.core.variants import W_VG
from fsadbench.methods.common.backbone_option import BackboneOptions, OwnBackbone
from fsadbench.methods.padim.model import smoothed_max
from fsadbench.methods.regad import torch_model as core
from fsadbench.protocol.method import Method

#: the official defaults (train.py l. 30-38)
OFFICIAL = {"epochs": 50, "batch_size": 32, "lr": 1e-4, "momentum": 0.9, "stn_mode": "rotation_scale"}


def training_batches(groups: Sequence[str], batch_size: int, shots: int,
                     gen: torch.Generator) -> list[tuple[list[int], list[list[int]]]]:
    """One epoch: per category its images shuffled and cut into batches of ``batch_size`` queries, each query
    with ``shots`` supports drawn uniformly from its category but never itself; the batches shuffled.
    Categories with fewer than 2 images give no batch (no support besides the query)."""
    by_cat: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_cat.setdefault(g, []).append(i)
    batches = []
    for members in by_cat.values():
        if len(members) < 2:
            continue
        order = [members[j] for j in torch.randperm(len(members), generator=gen).tolist()]
        for s in range(0, len(order), batch_size):
            queries = order[s:s + batch_size]
            supports = []
            for q in queries:
                others = [m for m in members if m != q]
                supports.append([others[j] for j in torch.randint(len(others), (shots,), generator=gen).tolist()])
            batches.append((queries, supports))
    return [batches[j] for j in torch.randperm(len(batches), generator=gen).tolist()]


class RegAD(OwnBackbone, Method):
    name = "regad"
    paper = "RegAD (Huang et al., ECCV 2022): Registration based Few-Shot Anomaly Detection"
    variants = (W_VG,)
    min_shots = 1
    version = 2  # 2: the ResNet stem and layer1-3 are trained (were left frozen, as the backbone adapter loads them)
    fit_scope = "leave_one_out"
    few_shot_transfer = True  # trained on other categories before it meets the k shots
    uses_feature_cache = False  # the encoder is trained: only pixels are shared
    #: its numbers depend on the torchvision adapter's preprocessing and the ResNet stem + layer1-3 it
    #: copies: what the "layers" path versions (the network on top is pinned with the method's code)
    feature_specs = ("layers",)
    backbone_default = "torchvision:resnet18"  # models/stn.py l. 277-285 (ImageNet weights)
    backbone_tiny = "torchvision:resnet18-tiny"
    backbone_kinds = ("torchvision",)  # it copies a torchvision ResNet's stem and layer1-3 (models/stn.py)
    default_sigma = 4.0  # test.py l. 213
    sigma_size = 224  # test.py l. 207-213: the map upsampled to the 224 px input (train.py l. 32)
    fidelity_notes = (
        "the last epoch's model is kept; the official train.py keeps the epoch scoring best on the held-out "
        "category's test set (l. 103-133)",
        "one support set per seed (the harness's seeded shots), not the official 10 fixed support sets "
        "averaged (test.py l. 67-98)",
        "squash resize to 224 px (the official Resize(224) keeps the aspect ratio; equal on square images)",
        "metrics at the protocol's evaluation size, not at 224 px; the Gaussian (sigma 4 at 224 px) is applied "
        "as the equivalent sigma 4 x eval_size / 224 after upsampling",
    )

    @dataclass
    class Options(BackboneOptions):
        epochs: int = 50  # train.py l. 30
        batch_size: int = 32  # train.py l. 31: queries per step
        lr: float = 1e-4  # train.py l. 33
        momentum: float = 0.9  # train.py l. 34
        stn_mode: str = "rotation_scale"  # train.py l. 38 (models/stn.py l. 19-27 lists the modes)
        reg: float = core.REGULARISER  # test.py l. 157: covariance + reg I
        chunk: int = 256  # positions per step of the Gaussian (memory bound; no effect on the numbers)

    @classmethod
    def paper_traits(cls, options: Any) -> dict[str, bool]:
        """AnoPLe Table 1 counts RegAD multi-class: one category-agnostic model, never trained on the target."""
        return {"multi_class": True, "few_shot_transfer": True}

    @classmethod
    def auxiliary_fit_key(cls, options: Any, shots: int) -> Any:
        return {"train_shots": int(shots)}  # train.py l. 35, 79: one model per --shot

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        checks = [(isinstance(o.epochs, int) and o.epochs >= 1, "epochs", "an integer >= 1 (official: 50)"),
                  (isinstance(o.batch_size, int) and o.batch_size >= 1, "batch_size", "an integer >= 1 (official: 32)"),
                  (o.lr > 0, "lr", "> 0 (official: 0.0001)"),
                  (0 <= o.momentum < 1, "momentum", "in [0, 1) (official: 0.9)"),
                  (o.stn_mode in core.STN_MODES, "stn_mode", f"one of {', '.join(core.STN_MODES)} (official: "
                                                             f"rotation_scale)"),
                  (o.reg > 0, "reg", "> 0 (official: 0.01)"),
                  (isinstance(o.chunk, int) and o.chunk >= 1, "chunk", "an integer >= 1")]
        for ok, name, want in checks:
            if not ok:
                raise ConfigError(f"method 'regad': option {name!r} must be {want}; got {getattr(o, name)!r}")
        bb = ctx.backbone
        self.device = ctx.device
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed)
            self.net = core.RegNet(bb.model, bb.image_size, o.stn_mode).to(self.device)
            self.encoder = core.head(self.net.channels, 3).to(self.device)
            self.predictor = core.head(self.net.channels, 2).to(self.device)
        self.mean = torch.tensor(bb.mean).view(1, 3, 1, 1)
        self.std = torch.tensor(bb.std).view(1, 3, 1, 1)
        self.trained_on: str | None = None
        self.losses: list[float] = []
        self.gaussian: core.Gaussian | None = None

    def pixels(self, images: Sequence[ImageRef]) -> torch.Tensor:
        """B x 3 x S x S in [0, 1] (the official inputs are not normalised), on the method's device."""
        return (self.ctx.features.pixels(list(images)) * self.std + self.mean).to(self.device)

    def modules(self) -> tuple[torch.nn.Module, ...]:
        return self.net, self.encoder, self.predictor

    # -- training on the other categories ------------------------------------------------------------
    def fit_auxiliary(self, aux: AuxiliarySet, shots: int) -> None:
        """Train the STN network, encoder and predictor on ``aux`` (the other categories' normal images)
        with ``shots`` supports per query (the cell's shot count: train.py l. 35, 79)."""
        groups = aux.image_categories or (aux.dataset,) * len(aux.images)
        k = int(shots)
        if k < 1:
            raise NotApplicable("regad needs at least one normal shot (shots=0 is zero-shot)")
        o = self.options
        params = [p for m in self.modules() for p in m.parameters()]
        opt = torch.optim.SGD(params, lr=o.lr, momentum=o.momentum)
        gen = torch.Generator().manual_seed(int(self.ctx.seed))
        for m in self.modules():
            m.train()
        self.losses = []
        for epoch in range(1, o.epochs + 1):
            for group in opt.param_groups:
                group["lr"] = core.cosine_lr(o.lr, epoch, o.epochs)
            batches = training_batches(groups, o.batch_size, k, gen)
            if not batches:
                raise MethodError(f"regad: the training set {aux.dataset!r} has no category with 2 or more "
                                  f"images (a query needs a support besides itself)")
            total = 0.0
            for queries, supports in batches:
                q = self.pixels([aux.images[i] for i in queries])
                s = self.pixels([aux.images[j] for row in supports for j in row])
                zq = self.encoder(self.net(q)[0])
                fs = self.net(s)[0]
                zs = self.encoder(fs.view(len(queries), k, *fs.shape[1:]).mean(1))
                loss = core.registration_loss(self.predictor(zq), zq, self.predictor(zs), zs)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item()
            self.losses.append(total / len(batches))
            self.ctx.step("epoch", epoch, o.epochs)
            self.ctx.show(loss=self.losses[-1])
        if not all(torch.isfinite(torch.tensor(self.losses))):
            raise MethodError(f"regad: the training loss is not finite ({self.losses[-1]}); lower lr")
        self.trained_on = aux.dataset
        self.train_shots = k

    # -- the k shots ---------------------------------------------------------------------------------
    def registered(self, pixels: torch.Tensor) -> torch.Tensor:
        """B x C x H x W: the registered layer1-3 features (eval mode), in batches of the context's size."""
        for m in self.modules():
            m.eval()
        out = []
        with torch.no_grad():
            for s in range(0, pixels.shape[0], max(1, self.ctx.batch_size)):
                out.append(core.embed(self.net(pixels[s:s + self.ctx.batch_size])[1]))
        return torch.cat(out)

    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        """The per-position Gaussian of the k shots' 22 k augmented images' registered features."""
        if not normals:
            raise NotApplicable("regad needs at least one normal shot (shots=0 is zero-shot)")
        if self.trained_on is None:
            raise MethodError("regad: fit() before fit_auxiliary(): the registration network is untrained")
        shots = self.pixels(normals).cpu()
        emb = self.registered(core.augment(shots).to(self.device))
        self.gaussian = core.fit_gaussian(emb, float(self.options.reg), int(self.options.chunk))

    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        if self.gaussian is None:
            raise MethodError("regad: predict() before fit(): no Gaussian of the shots")
        maps = core.mahalanobis(self.registered(self.pixels(images)), self.gaussian, int(self.options.chunk)).cpu()
        return {W_VG: Prediction(maps=maps, scores=smoothed_max(maps, self.sigma_size, self.default_sigma))}

    def describe(self) -> dict[str, Any]:
        b = self.ctx.backbone
        return {**super().describe(), "backbone": b.spec.name, "backbone_weights": b.spec.pretrained,
                "layers": list(core.LAYERS), "trained_on": self.trained_on,
                "train_shots": getattr(self, "train_shots", None),
                "final_loss": self.losses[-1] if self.losses else None,
                "score": "Mahalanobis distance per position of the registered features",
                "image_score": (f"max of the map upsampled to {self.sigma_size} px and smoothed with sigma "
                                f"{self.default_sigma:g} (official test.py l. 82, 207-213)")}
