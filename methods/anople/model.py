"""AnoPLe (Lee et al. 2024): few-shot anomaly detection by bidirectional prompt learning on normals only.

Two registered variants of this class:

* ``anople`` (``multi_class=True``, the paper's "AnoPLe"): ONE model trained
  on the shots of every category of a dataset (``fit_scope = "dataset"``);
* ``anople-oc`` (``multi_class=False``, "AnoPLe*"): one model per category.

Pieces (paper sections; the details are in each module's docstring):

* deep prompts in both encoders, depth 9, coupled through f_{v->t} / f_{t->v}
  (sec. 3.2, eq. 5-6), multi-view signal c (sec. 3.3.2): ``anople/prompts.py``;
  context lengths text/visual 3/3 (MVTec and any other dataset) or 5/8 (VisA)
  (sec. 4.2); text "[ctx] {class}." / "[ctx] abnormal {class}." (eq. 1-2);
  w = mean over the training classes of the normalised per-class embeddings
  (sec. 3.4.2; ``class_text="own"``: each image's own class);
* training views and pixel pseudo anomalies (sec. 3.1, 3.3.2, suppl. 6.1):
  ``anople/views.py``: the image plus the 4 crops of its 480 x 480 resize of
  the original file (``crop_source``), crop i on c_i, the whole image on
  c_{N+1}; DRAEM Perlin blends with ``texture`` "noise" (default) or "normal"
  (another shot); test: the whole image on c_{N+1} only;
* latent anomalies z+ + N(mu, sigma^2) on the L2-normalised image embedding,
  renormalised (SimpleNet's mu 0, sigma 0.015: the paper gives none);
* decoder D (sec. 3.3.1) and losses (eq. 7-11: dice + focal, image CE with
  label smoothing 0.003 on latent anomalies, alignment with tau 2; total =
  sum): ``anople/prompts.py``, ``anople/losses.py``; logits use CLIP's
  exp(logit_scale) as 1/tau in eq. 8;
* optimiser (suppl. 6.2): SGD, momentum 0.9, weight decay 1e-5, batch 1 (one
  shot and its pseudo anomaly, all views in one encoder batch), lr 1e-3
  (prompt learner) / 2e-4 (decoder), linear warm-up from zero over
  ``warmup_epochs`` (1; no length given), then constant; 60 epochs, an epoch
  = every shot of every training category once, in a seeded random order;
* ablation switches, each default the paper's last row: ``interaction`` (Table
  3 (a), ``prompts.py``), ``crop_grid`` (1: no multi-scale) and ``view_signal``
  (3 (b)), ``align`` (3 (c): none, mean of D(z), weighted = eq. 10),
  ``state_word`` (Table 4; "cpe": WinCLIP's 7 + 4 state templates, embeddings
  averaged per state), ``pseudo_anomalies`` (Table 5, ``train.py``),
  ``decoder`` (False: projected patch tokens; the ``maple-draem`` alias);
* inference (eq. 12-14, suppl. 6.3): "w/o VG" = the decoder map (abnormal
  probability, 2x grid); "w/ VG" = its harmonic mean with the memory map
  (min (1 - cos)/2 to the k shots' patch features averaged over blocks 7-10,
  VisA 7-9, option ``memory_layers``, deprecated ``mem_layers``; bilinearly
  upsampled); image score = harmonic mean of the image's abnormal probability and the map's maximum.

No feature cache: the visual prompts change the image encoder, so its
outputs depend on the trained prompts (``uses_feature_cache = False``).
Deterministic for a seed on CPU: parameters are initialised under
``manual_seed(seed)`` in a forked RNG, and every random draw (order, masks,
textures, latent noise) comes from one CPU generator seeded by the cell seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError, MethodError, NotApplicable
from fsadbench.protocol.method import Method
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction

from fsadbench.methods.anople.losses import image_score, fuse_map, pixel_logits, unit
from fsadbench.methods.anople.train import step_losses, train_epochs
from fsadbench.backbone.towers import TextTower
from fsadbench.methods.anople.options import RANGES, check_options
from fsadbench.methods.anople.prompts import (Decoder, PromptLearner, encode_image_prompted, encode_text_prompted,
                                              project_patches, state_sentences)
from fsadbench.methods.anople.views import PixelSpace, views_original, views_upsampled
from fsadbench.methods.common.options import int_tuple
from fsadbench.methods.common.visual_memory import VisualMemory
from fsadbench.core.variants import W_VG, WO_VG

# sec. 4.2 / suppl. 6.3: (text contexts, visual contexts), memory blocks
_PAPER_CTX = {"visa": (5, 8)}
_DEFAULT_CTX = (3, 3)
_PAPER_MEM = {"visa": (7, 8, 9)}
_DEFAULT_MEM = (7, 8, 9, 10)


class AnoPLe(Method):
    name = "anople"
    feature_specs = ("anople-prompted",)
    variants = (WO_VG, W_VG)
    uses_feature_cache = False
    #: 2: training crops from the original file at crop_grid x S (crop_source="original")
    version = 2
    option_aliases = {"mem_layers": "memory_layers"}
    fidelity_notes = (
        "no public code: every choice the paper leaves open is an option, recorded in options_resolved",
        "pseudo-anomaly texture is Perlin colour noise (texture='noise'); DRAEM's DTD texture set is not shipped",
        "latent noise N(0, 0.015^2) on the normalised image embedding (SimpleNet's default; the paper gives none)",
        "decoder kernels 3-3-1 with ReLUs and hidden width d_t (the paper gives three convolutions only)",
        "warm-up over one epoch, then a constant learning rate (the paper gives neither length nor schedule)",
        "MaPLe+DRAEM (Table 2) is the alias maple-draem of these options: text -> vision coupled prompts with no "
        "own visual contexts, pixel pseudo anomalies only, no crops, no signal c, no alignment loss, no decoder",
    )
    min_shots = 1
    default_sigma, sigma_size = 4.0, None  # the papers' protocol it compares with: sigma 4 at the evaluation size
    fit_scope = "dataset"

    # built by fit: the prompt-side parameters, the decoder, each category's class name and, with
    # crop_source "original", its shots at crop_grid x S (the training crops' source)
    learner: PromptLearner
    decoder: Decoder | None
    class_names: dict[str, str]
    crop_pixels: dict[str, torch.Tensor]

    @dataclass
    class Options:
        multi_class: bool = True
        epochs: int = 60
        depth: int = 9
        n_ctx_text: int | None = None  # None: 3 (5 on VisA)
        n_ctx_visual: int | None = None  # None: 3 (8 on VisA)
        crop_grid: int = 2  # training views: crop_grid^2 crops of a crop_grid-x resize (+ the image); 1 = none
        crop_source: str = "original"  # crops of the original file at crop_grid x S, or the "upsampled" S tensor
        view_signal: bool = True  # the multi-view signal c
        decoder_scale: int = 2
        texture: str = "noise"  # "noise" or "normal"
        beta_max: float = 0.8
        latent_mu: float = 0.0
        latent_sigma: float = 0.015
        label_smoothing: float = 0.003
        align_tau: float = 2.0
        lr_prompt: float = 1e-3
        lr_decoder: float = 2e-4
        momentum: float = 0.9
        weight_decay: float = 1e-5
        warmup_epochs: float = 1.0
        memory_layers: tuple[int, ...] | None = None  # None: 7-10 (7-9 on VisA)
        class_text: str = "average"  # "average" over training classes or the image's "own"
        state_word: str = "abnormal"  # Table 4; "cpe": the ensemble of state templates
        interaction: str = "bidirectional"  # Table 3 (a): text, visual, independent, text_to_visual, ...
        align: str = "weighted"  # Table 3 (c): none, mean, weighted (eq. 10)
        pseudo_anomalies: str = "both"  # Table 5: pixel, latent, both
        decoder: bool = True  # the decoder D (False: projected patch tokens; the maple-draem alias)
        ranges: ClassVar[Mapping[str, Any]] = RANGES  # options.RANGES

    @classmethod
    def fit_scope_for(cls, options: Mapping[str, Any]) -> str:
        return "dataset" if options.get("multi_class", True) else "category"

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        self.fit_scope = "dataset" if o.multi_class else "category"
        check_options(o, ctx.backbone.n_layers, self.name)
        if o.memory_layers is not None:
            o.memory_layers = int_tuple(o.memory_layers, self.name, "memory_layers")
            try:
                ctx.backbone.check_layers(o.memory_layers)
            except ConfigError as exc:
                raise ConfigError(f"method {self.name!r} option memory_layers: {exc}") from exc
        self.device = ctx.device
        self.memories: dict[str, VisualMemory] = {}
        self.history: list[dict[str, float]] = []
        self.category: CategoryInfo | None = None  # set by set_category, for a trained category only
        self.mem_layers: tuple[int, ...] = ()
        self.n_ctx: tuple[int, int] = _DEFAULT_CTX
        self.n_views = o.crop_grid ** 2 + 1 if o.crop_grid > 1 else 1

    # -- helpers ----------------------------------------------------------------------------
    @property
    def model(self):
        return self.ctx.backbone.model

    @property
    def scale(self) -> float:
        return float(self.model.logit_scale.exp().item())

    def autocast(self):
        """bf16 autocast with ``amp`` on a CUDA device; on CPU ``amp`` changes nothing."""
        on = self.ctx.amp and self.device.type == "cuda"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=on)

    def class_texts(self, class_names: Sequence[str], prompts: torch.Tensor) -> torch.Tensor:
        """C x 2 x E normalised text embeddings (normal, abnormal) per class; with several sentences per
        state (the ensemble) the mean of their normalised embeddings, normalised."""
        per = [state_sentences(c, self.learner.text_slots, self.options.state_word) for c in class_names]
        sents = [s for normal, abnormal in per for s in normal + abnormal]
        emb = unit(encode_text_prompted(self.model, self.ctx.backbone.tokenizer(sents).to(self.device),
                                        prompts).float())
        out, i = [], 0
        for normal, abnormal in per:
            for n in (len(normal), len(abnormal)):
                out.append(unit(emb[i:i + n].mean(dim=0)) if n > 1 else emb[i])
                i += n
        return torch.stack(out).reshape(len(class_names), 2, -1)

    def pick_text(self, per_class: torch.Tensor, index: int) -> torch.Tensor:
        """2 x E text for a class: the average over classes (sec. 3.4.2) or the class's own."""
        if self.options.class_text == "own":
            return per_class[index]
        return unit(per_class.mean(dim=0))

    def encode(self, pixels: torch.Tensor, signal_index: torch.Tensor, layers: Sequence[int] = ()):
        """The prompted image encoder; image b gets the multi-view signal c_{signal_index[b] + 1}."""
        sig = self.learner.signal[signal_index.to(self.device)] if self.learner.signal is not None else None
        return encode_image_prompted(self.model, pixels, self.learner.visual_prompts(), sig, layers)

    def pixel_features(self, out) -> torch.Tensor:
        """B x E x H' x W' for the pixel logits: D(z), or (``decoder=False``) the projected patch tokens."""
        grid = self.ctx.backbone.grid
        return self.decoder(out.patches, grid) if self.decoder else project_patches(self.model, out.patches, grid)

    def _memory_features(self, out) -> torch.Tensor:
        """Patch features averaged over the memory blocks (suppl. 6.3): B x N x d_v."""
        return torch.stack([out.layers[l].float() for l in self.mem_layers]).mean(dim=0)

    def _setup(self, infos: Sequence[CategoryInfo]) -> None:
        o, bb = self.options, self.ctx.backbone
        ds = infos[0].dataset.lower()
        paper_t, paper_v = _PAPER_CTX.get(ds, _DEFAULT_CTX)
        self.n_ctx = (paper_t if o.n_ctx_text is None else o.n_ctx_text,
                      paper_v if o.n_ctx_visual is None else o.n_ctx_visual)
        mem = o.memory_layers if o.memory_layers is not None else _PAPER_MEM.get(ds, _DEFAULT_MEM)
        self.mem_layers = bb.check_layers(mem)
        d_t = TextTower(self.model).width
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.ctx.seed)
            self.learner = PromptLearner(d_t, bb.width, self.n_ctx[0], self.n_ctx[1], o.depth,
                                         n_signals=self.n_views if o.view_signal else 0,
                                         interaction=o.interaction).to(self.device)
            self.decoder = Decoder(bb.width, bb.embed_dim, scale=o.decoder_scale).to(self.device) \
                if o.decoder else None

    # -- training -------------------------------------------------------------------------------
    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        self.fit_dataset({category.name: normals}, {category.name: category})
        self.set_category(category)

    def fit_dataset(self, normals_by_category: Mapping[str, Sequence[ImageRef]],
                    categories: Mapping[str, CategoryInfo]) -> None:
        names = list(normals_by_category)
        empty = [c for c in names if not normals_by_category[c]]
        if not names or empty:
            raise NotApplicable(f"AnoPLe trains on normal shots; no shots for {empty or 'any category'} "
                                f"(shots=0 is zero-shot)")
        missing = [c for c in names if c not in categories]
        if missing:
            raise MethodError(f"AnoPLe.fit_dataset: no CategoryInfo for {missing}")
        infos = [categories[c] for c in names]
        self._setup(infos)
        self.class_names = {c: categories[c].class_name for c in names}
        pixels = {c: self.ctx.features.pixels(list(normals_by_category[c])) for c in names}
        self.crop_pixels = {}
        if self.options.crop_source == "original" and self.options.crop_grid > 1:
            size = self.options.crop_grid * self.ctx.backbone.image_size  # the paper: 480 = 2 x 240
            self.crop_pixels = {c: self.ctx.features.pixels(list(normals_by_category[c]), size=size) for c in names}
        train_epochs(self, names, pixels)
        self._finish(names, pixels)

    def training_views(self, c: str, i: int, pixels: Mapping[str, torch.Tensor],
                       gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Training views of shot i of category c and of its pseudo anomaly, with their masks (views.py);
        crops of the original file come from ``crop_pixels`` (decoded once per fit by the feature store)."""
        o, space = self.options, PixelSpace(self.ctx.backbone.mean, self.ctx.backbone.std)
        if o.crop_source == "original" and o.crop_grid > 1:
            big = self.crop_pixels[c]
            return views_original(pixels[c][i], big[i], big, gen, o.crop_grid, o.texture, o.beta_max, space)
        return views_upsampled(pixels[c][i], pixels[c], gen, o.crop_grid, o.texture, o.beta_max, space)

    def step_loss(self, views: torch.Tensor, masks: torch.Tensor, text: torch.Tensor,
                  gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Losses (eq. 7-11) for one shot and its pseudo anomaly (``anople/train.py``)."""
        return step_losses(self, views, masks, text, gen)

    @torch.no_grad()
    def _finish(self, names: list[str], pixels: Mapping[str, torch.Tensor]) -> None:
        """Freeze prompts, build each category's visual memory from its shots (suppl. 6.3)."""
        self.learner.eval()
        if self.decoder is not None:
            self.decoder.eval()
        with self.autocast():
            per_class = self.class_texts([self.class_names[c] for c in names], self.learner.text_prompts())
        self._train_text = per_class
        self._train_names = names
        for c in names:
            feats = []
            for s in range(0, pixels[c].shape[0], max(1, self.ctx.batch_size)):
                px = pixels[c][s:s + self.ctx.batch_size].to(self.device)
                with self.autocast():
                    out = self.encode(px, torch.full((px.shape[0],), self.n_views - 1), self.mem_layers)
                feats.append(self._memory_features(out))
            mem = VisualMemory((0,))
            mem.fit({0: torch.cat(feats)})
            self.memories[c] = mem

    # -- inference ------------------------------------------------------------------------------------
    def set_category(self, category: CategoryInfo) -> None:
        if category.name not in self.memories:
            raise MethodError(f"AnoPLe: category {category.name!r} was not among the trained categories "
                              f"{sorted(self.memories)}; fit_dataset() must include it")
        self.category = category

    @torch.no_grad()
    def _category_text(self) -> torch.Tensor:
        """2 x E text for the current category (a trained one: ``set_category`` checks): the
        training-class average, or its own embeddings."""
        return self.pick_text(self._train_text, self._train_names.index(self.category.name))

    @torch.no_grad()
    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        if self.category is None:  # set_category accepts trained categories only
            raise MethodError("AnoPLe.predict() before fit() / set_category()")
        text = self._category_text()
        memory = self.memories[self.category.name]
        grid = self.ctx.backbone.grid
        out_maps = {v: [] for v in self.variants}
        out_scores = {v: [] for v in self.variants}
        step = max(1, self.ctx.batch_size)
        for s in range(0, len(images), step):
            px = self.ctx.features.pixels(list(images[s:s + step])).to(self.device)
            with self.autocast():
                out = self.encode(px, torch.full((px.shape[0],), self.n_views - 1), self.mem_layers)
                feats = self.pixel_features(out)
            feats = feats.float()
            dec = F.softmax(pixel_logits(feats, text, self.scale), dim=1)[:, 1]  # B x H' x W'
            emb = F.normalize(out.embedding.float(), dim=-1)
            prob = F.softmax(self.scale * emb @ text.T, dim=-1)[:, 1]
            mem = memory.score({0: self._memory_features(out)}).reshape(px.shape[0], 1, *grid)
            mem = F.interpolate(mem, size=dec.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            fused = fuse_map(dec, mem)
            for variant, m in ((WO_VG, dec), (W_VG, fused)):
                out_maps[variant].append(m.cpu())
                out_scores[variant].append(image_score(prob, m).cpu())
        return {v: Prediction(maps=torch.cat(out_maps[v]), scores=torch.cat(out_scores[v])) for v in self.variants}

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "training_view_source": {"original": "crops of the original file at crop_grid x S",
                                     "upsampled": "crops of the bilinearly upsampled S x S tensor"}[
                self.options.crop_source],
            "setting": "multi-class (one model per dataset)" if self.options.multi_class
            else "one-class (one model per category)",
            "feature_cache": "not used: the visual prompts change the image encoder",
            "context_lengths": {"text": self.n_ctx[0], "visual": self.n_ctx[1]},
            "memory_layers": list(self.mem_layers),
            "training_views": self.n_views,
            "pseudo_anomaly_texture": {"noise": "Perlin colour noise (no texture set available)",
                                       "normal": "another normal shot of the category, flipped/rotated"}[
                self.options.texture],
            "latent_noise": {"mu": self.options.latent_mu, "sigma": self.options.latent_sigma,
                             "on": "L2-normalised image embedding"},
            "text_embeddings": self.options.class_text,
            "loss_history": self.history,
        }
