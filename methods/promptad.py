"""PromptAD (Li et al., CVPR 2024): one-class prompt learning for few-shot anomaly detection.

Only text prompts are trained; both CLIP encoders are frozen, so image
features come from the feature cache (one encoder pass per image for every
shot count and seed): the dual-path V-V encoder on all blocks (official code),
giving the original-stream CLS embedding, the V-V patch tokens and the
cloned original-stream outputs of two blocks for the visual memory.

Prompts (token layout in ``fsadbench.methods.common.text_prompts``):

* normal ``[SOS] N_1..N_4 "{class}." [EOS]``, ``n_pro`` learnable contexts N;
* hand-crafted abnormal (the paper's semantic concatenation, SC): each normal context with an
  abnormal state, 8 generic states plus, unless ``generic_only``
  ("promptad-g"), one phrase per defect type of the dataset
  (``broken_large`` -> "with broken large"). Adjective states precede the
  class ("damaged bottle."), "with ..." phrases follow it ("bottle with flaw.");
* learned abnormal ``[SOS] N A "{class}." [EOS]``: n_pro x n_pro_ab prompts,
  prompt i pairs N[i % n_pro] with A[i % n_pro_ab] (official code).

Losses on every training feature f (segmentation: all patch tokens of all
shots; image run: the CLS embeddings), f L2-normalised, prompt anchors the
normalised means of the raw prompt features (official code), see
:func:`promptad_losses`: CE against abnormal negatives (SC's contrastive term)
+ the explicit anomaly margin (EAM) + 0.001 x alignment of learned to
hand-crafted abnormal prompts. ``margin_reduction``: "official" (default) sums
the squared differences of the B x L x E segmentation tokens over the L tokens
(the official TripletLoss sums over dim 1), then relu per image and channel,
mean; "paper" takes the squared distance of each feature (sum over E), relu,
mean over features. For the image run (B x E) both are the paper's form. SGD (lr 0.002, momentum 0.9,
weight decay 5e-4), cosine annealing to 1e-5 over ``epochs`` (100); one step per epoch with all k
shots in one batch; contexts drawn from N(0, 0.02) with a generator seeded by
the cell seed. The last epoch's prompts are used (no model selection).

Inference: t_n / t_a = normalised mean of the raw normal / abnormal prompt
features; text map = softmax(s x tokens . [t_n, t_a])[1] on the patch grid,
s = ``logit_scale``; visual map = mean over ``memory_layers`` (3, 8) of
min (1 - cos) / 2 to the shots' tokens
(``VisualMemory``); "w/ VG" map = 1 / (1/text + 1/visual), "w/o VG" = text
map. Image score: CLS softmax score (w/o VG), harmonic mean 1/(1/max(visual)
+ 1/CLS score) (w/ VG). The harness upsamples and smooths (sigma 4).

Quirks of the official code (read from it; the paper does not state them):

1. raw ``logit_scale`` (about 4.6 trained) as the logit multiplier:
   reproduced, option ``logit_scale="raw"`` (default; it gives the published
   numbers); "exp" is the paper's / CLIP's exp(logit_scale) = 100 (deprecated
   option ``raw_logit_scale`` true/false maps to "raw"/"exp").
2. memory hooks holding a view overwritten by the next block: dropped; the
   memory uses cloned outputs of blocks ``memory_layers`` (default 3, 8;
   deprecated name ``mem_layers``).
3. best epoch chosen on the test set: dropped (never reproduced; the method
   never sees test labels).
4. test images fed as BGR: dropped (every image is RGB).
5. separate classification and segmentation runs: option
   ``separate_image_prompts`` (default on, as the official protocol): a second
   prompt set (``cls_n_pro`` normal contexts) is trained on the CLS embeddings
   and gives the image score; off, the segmentation prompts score both.

Choices where paper and code are silent: defect-type names "good",
"combined", "normal", "ok" give no phrase; a phrase equal to a generic state
is used once; harmonic means clamp their inputs at 1e-12 so a zero distance
gives 0 rather than NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from fsadbench.core.errors import ConfigError, NotApplicable
from fsadbench.core.variants import W_VG, WO_VG
from fsadbench.protocol.method import Method
from fsadbench.methods.common.options import LOGIT_SCALES, int_tuple, resolve_logit_scale
from fsadbench.methods.common.text_prompts import PromptTemplate, PromptTextEncoder, Slot
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction
from fsadbench.methods.common.vv_attention import vv_spec

from fsadbench.methods.common.visual_memory import VisualMemory

GENERIC_STATES = ("damaged", "flawed", "abnormal", "imperfect", "blemished",
                  "with flaw", "with defect", "with damage")
_NOT_DEFECTS = {"good", "combined", "normal", "ok"}
MARGIN_REDUCTIONS = ("official", "paper")


def defect_phrases(defect_types: Sequence[str]) -> tuple[str, ...]:
    """Class-specific abnormal states from defect-type names: "broken_large" -> "with broken large"."""
    out: list[str] = []
    for d in defect_types:
        words = " ".join(d.replace("_", " ").replace("-", " ").split()).lower()
        phrase = f"with {words}"
        if words and words not in _NOT_DEFECTS and phrase not in out and phrase not in GENERIC_STATES:
            out.append(phrase)
    return tuple(out)


def state_sentence(state: str, class_name: str) -> str:
    """Adjective states precede the class, "with ..." phrases follow it."""
    return f"{class_name} {state}." if state.startswith("with ") else f"{state} {class_name}."


def harmonic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PromptAD's fusion 1 / (1/a + 1/b) (inputs clamped at 1e-12)."""
    return 1.0 / (1.0 / a.clamp_min(1e-12) + 1.0 / b.clamp_min(1e-12))


def promptad_losses(f: torch.Tensor, normal: torch.Tensor, hand: torch.Tensor, learned: torch.Tensor,
                    scale: float, margin: float = 0.0, align_weight: float = 0.001,
                    reduction: str = "official") -> dict[str, torch.Tensor]:
    """PromptAD's training objective (official code's train_seg / train_cls).

    f: B x L x E patch tokens (segmentation) or B x E embeddings (image run), L2-normalised;
    normal / hand / learned: the raw prompt features (rows).

    * a_n = norm(mean(normal)); A_j = norm(each of [hand; learned]); a_a = norm(mean([hand; learned]))
    * ce = CE(scale * f . [a_n, A_1..A_m], target 0) over every feature     (normal is class 0)
    * margin, "paper": mean over features of relu(||f - a_n||^2 - ||f - a_a||^2 + margin);
      "official": the same with the squared differences summed over dim 1 of f (the L tokens of
      a B x L x E tensor, the channels of a B x E one), relu and mean over what is left
    * align = ||mean(norm(hand)) - mean(norm(learned))||^2
    * total = ce + margin + align_weight * align
    """
    if reduction not in MARGIN_REDUCTIONS:
        raise ConfigError(f"promptad option 'margin_reduction' must be one of {MARGIN_REDUCTIONS}, got {reduction!r}")
    a_n = F.normalize(normal.mean(dim=0), dim=-1)
    raw_ab = torch.cat([hand, learned])
    a_a = F.normalize(raw_ab.mean(dim=0), dim=-1)
    abnormal = F.normalize(raw_ab, dim=-1)
    flat = f.reshape(-1, f.shape[-1])
    logits = scale * flat @ torch.cat([a_n[None], abnormal]).T
    ce = F.cross_entropy(logits, torch.zeros(flat.shape[0], dtype=torch.long, device=f.device))
    axis = 1 if reduction == "official" else -1
    d_n = (f - a_n).pow(2).sum(dim=axis)
    d_a = (f - a_a).pow(2).sum(dim=axis)
    eam = F.relu(d_n - d_a + margin).mean()
    align = (F.normalize(hand, dim=-1).mean(dim=0) - F.normalize(learned, dim=-1).mean(dim=0)).pow(2).sum()
    return {"ce": ce, "margin": eam, "align": align, "total": ce + eam + align_weight * align}


class PromptSet:
    """Learnable contexts and the prompt list of one PromptAD run."""

    def __init__(self, encoder: PromptTextEncoder, class_name: str, states: Sequence[str],
                 n_ctx: int, n_ctx_ab: int, n_pro: int, n_pro_ab: int, init_std: float,
                 generator: torch.Generator, device: torch.device):
        w = encoder.width
        self.encoder = encoder
        self.n_pro, self.n_pro_ab = n_pro, n_pro_ab
        self.ctx_n = torch.nn.Parameter(
            (torch.randn(n_pro, n_ctx, w, generator=generator) * init_std).to(device))
        self.ctx_a = torch.nn.Parameter(
            (torch.randn(n_pro_ab, n_ctx_ab, w, generator=generator) * init_std).to(device))
        self.normal_tpl = encoder.template([Slot("ctx", n_ctx), f"{class_name}."])
        self.hand_tpls = [encoder.template([Slot("ctx", n_ctx), state_sentence(s, class_name)]) for s in states]
        self.learned_tpl = encoder.template([Slot("ctx", n_ctx), Slot("ab", n_ctx_ab), f"{class_name}."])

    def parameters(self) -> list[torch.nn.Parameter]:
        return [self.ctx_n, self.ctx_a]

    def prompts(self) -> tuple[list[tuple[PromptTemplate, dict]], int, int]:
        """All prompts (normal, hand-crafted, learned abnormal) and the two split points."""
        normal = [(self.normal_tpl, {"ctx": self.ctx_n[j]}) for j in range(self.n_pro)]
        hand = [(t, {"ctx": self.ctx_n[j]}) for j in range(self.n_pro) for t in self.hand_tpls]
        learned = [(self.learned_tpl, {"ctx": self.ctx_n[i % self.n_pro], "ab": self.ctx_a[i % self.n_pro_ab]})
                   for i in range(self.n_pro * self.n_pro_ab)]
        return normal + hand + learned, len(normal), len(normal) + len(hand)

    def features(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw (not normalised) (normal, hand-crafted, learned abnormal) prompt features."""
        prompts, a, b = self.prompts()
        feats = self.encoder.encode(prompts).float()
        return feats[:a], feats[a:b], feats[b:]

    @torch.no_grad()
    def text_pair(self) -> torch.Tensor:
        """[t_n, t_a] (2 x E): normalised means of the raw normal and of all raw abnormal features."""
        normal, hand, learned = self.features()
        t_n = F.normalize(normal.mean(dim=0), dim=-1)
        t_a = F.normalize(torch.cat([hand, learned]).mean(dim=0), dim=-1)
        return torch.stack([t_n, t_a])


class PromptAD(Method):
    name = "promptad"
    feature_specs = ("vv", "prompt-text")
    variants = (WO_VG, W_VG)
    min_shots = 1
    default_sigma = 4.0
    sigma_size = None  # the spec: upsample to the evaluation resolution, then sigma 4
    #: 2: official-code defaults (raw logit_scale, margin over tokens, n_pro x n_pro_ab learned prompts,
    #: anchors from raw prompt features)
    version = 2
    option_aliases = {"mem_layers": "memory_layers",
                      "raw_logit_scale": ("logit_scale", lambda raw: "raw" if raw else "exp")}
    fidelity_notes = (
        "last epoch's prompts; the official code keeps the epoch with the best test-set score (test-set "
        "model selection), so its published numbers are optimistic against these",
        "memory features are cloned outputs of blocks 3 and 8; the official hooks keep a view that the "
        "next block overwrites in place",
        "test images are RGB; the official code feeds test images as BGR and reference images as RGB",
        "fp32 throughout; the official code runs CLIP in fp16",
    )

    @dataclass
    class Options:
        generic_only: bool = False  # "promptad-g": no class-specific defect states
        epochs: int = 100
        lr: float = 0.002
        lr_min: float = 1e-5
        momentum: float = 0.9
        weight_decay: float = 5e-4
        n_ctx: int = 4  # learnable tokens per normal context
        n_ctx_ab: int = 1  # learnable tokens per abnormal context
        n_pro: int = 1  # normal contexts, segmentation run
        n_pro_ab: int = 4  # abnormal contexts
        cls_n_pro: int = 3  # normal contexts, image (classification) run
        separate_image_prompts: bool = True  # quirk 5: separate image-level run
        margin: float = 0.0
        margin_reduction: str = "official"  # "official" (sum over tokens) or "paper" (per-feature distance)
        align_weight: float = 0.001
        init_std: float = 0.02
        logit_scale: Any = "raw"  # quirk 1: "raw" (official code), "exp" (paper / CLIP), or a number
        vv_blocks: tuple[int, ...] | None = None  # None = all blocks (official code)
        memory_layers: tuple[int, ...] = (3, 8)

    def __init__(self, ctx, **options):
        super().__init__(ctx, **options)
        o = self.options
        for field in ("epochs", "n_ctx", "n_ctx_ab", "n_pro", "n_pro_ab", "cls_n_pro"):
            if int(getattr(o, field)) < 1:
                raise ConfigError(f"promptad option {field!r} must be >= 1, got {getattr(o, field)!r}")
        if o.margin_reduction not in MARGIN_REDUCTIONS:
            raise ConfigError(f"promptad option 'margin_reduction' must be one of {MARGIN_REDUCTIONS}, "
                              f"got {o.margin_reduction!r}")
        if not isinstance(o.logit_scale, (int, float)) and o.logit_scale not in LOGIT_SCALES:
            raise ConfigError(f"promptad option 'logit_scale' must be one of {LOGIT_SCALES} or a number, "
                              f"got {o.logit_scale!r}")
        bb = ctx.backbone
        self.mem_layers = bb.check_layers(int_tuple(o.memory_layers, "promptad", "memory_layers"))
        blocks = None if o.vv_blocks is None else bb.check_layers(int_tuple(o.vv_blocks, "promptad", "vv_blocks"))
        self.spec = vv_spec(blocks=blocks, mem_layers=self.mem_layers)
        self.encoder = PromptTextEncoder(bb.model, bb.tokenizer)
        self.scale = resolve_logit_scale(bb.model, o.logit_scale, "promptad")
        self.memory = VisualMemory(self.mem_layers)
        self.history: dict[str, list[dict[str, float]]] = {}
        self.prompt_texts: list[str] = []
        self.text_seg: torch.Tensor | None = None
        self.text_img: torch.Tensor | None = None

    # -- training -------------------------------------------------------------
    def _states(self, category: CategoryInfo) -> tuple[str, ...]:
        if self.options.generic_only:
            return GENERIC_STATES
        return GENERIC_STATES + defect_phrases(category.defect_types)

    def train_prompts(self, f: torch.Tensor, class_name: str, states: Sequence[str], n_pro: int, run: int
                      ) -> tuple[PromptSet, list[dict[str, float]]]:
        """Train one prompt set on normalised features f (B x L x E or B x E); returns it and the per-epoch losses."""
        o = self.options
        gen = torch.Generator().manual_seed(int(self.ctx.seed) * 1000 + run)
        ps = PromptSet(self.encoder, class_name, states, o.n_ctx, o.n_ctx_ab, n_pro, o.n_pro_ab, o.init_std,
                       gen, f.device)
        opt = torch.optim.SGD(ps.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=o.epochs, eta_min=o.lr_min)
        history = []
        with torch.autocast(f.device.type, enabled=False):
            for epoch in range(o.epochs):
                self.ctx.step("epoch", epoch + 1, o.epochs)
                normal, hand, learned = ps.features()
                losses = promptad_losses(f, normal, hand, learned, self.scale, o.margin, o.align_weight,
                                         o.margin_reduction)
                opt.zero_grad(set_to_none=True)
                losses["total"].backward()
                opt.step()
                sched.step()
                history.append({k: float(v.detach()) for k, v in losses.items()})
        return ps, history

    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        if not normals:
            raise NotApplicable("promptad learns prompts from normal shots; it needs at least one (shots >= 1)")
        feats = self.ctx.features.get(normals, self.spec)
        self.memory.fit({l: feats[f"layer{l}"].float() for l in self.mem_layers})
        class_name = " ".join(category.class_name.replace("_", " ").split())
        states = self._states(category)
        tokens = F.normalize(feats["tokens"].float(), dim=-1)  # B x L x E
        seg, self.history["segmentation"] = self.train_prompts(tokens, class_name, states, self.options.n_pro, 0)
        self.text_seg = seg.text_pair()
        self.prompt_texts = [tpl.text for tpl, _ in seg.prompts()[0]]
        if self.options.separate_image_prompts:
            cls = F.normalize(feats["embedding"].float(), dim=-1)
            img, self.history["image"] = self.train_prompts(cls, class_name, states, self.options.cls_n_pro, 1)
            self.text_img = img.text_pair()
        else:
            self.text_img = self.text_seg

    # -- inference ------------------------------------------------------------
    @torch.no_grad()
    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        if self.text_seg is None or self.text_img is None:
            raise ConfigError("promptad: predict() called before fit()")
        feats = self.ctx.features.get(images, self.spec)
        grid = self.ctx.backbone.grid
        tokens = F.normalize(feats["tokens"].float(), dim=-1)
        text_map = (self.scale * tokens @ self.text_seg.T).softmax(dim=-1)[..., 1]  # B x N
        cls = F.normalize(feats["embedding"].float(), dim=-1)
        cls_score = (self.scale * cls @ self.text_img.T).softmax(dim=-1)[:, 1]
        visual = self.memory.score({l: feats[f"layer{l}"].float() for l in self.mem_layers})
        b = tokens.shape[0]
        return {
            WO_VG: Prediction(maps=text_map.reshape(b, *grid), scores=cls_score),
            W_VG: Prediction(maps=harmonic(text_map, visual).reshape(b, *grid),
                                scores=harmonic(visual.max(dim=1).values, cls_score)),
        }

    def describe(self) -> dict[str, Any]:
        o = self.options
        out: dict[str, Any] = {
            **super().describe(),
            "logit_scale": self.scale,
            "logit_scale_kind": {"raw": "raw parameter (official code)", "exp": "exp(logit_scale) (paper / CLIP)"}
            .get(str(o.logit_scale), "fixed number"),
            "margin_reduction": o.margin_reduction,
            "vv_blocks": "all" if o.vv_blocks is None else list(o.vv_blocks),
            "memory_layers": list(self.mem_layers),
            "prompts": self.prompt_texts,
            "model_selection": "last epoch (no test-set selection)",
            "image_score": "separate image-level prompt run" if o.separate_image_prompts
            else "segmentation prompts on the CLS embedding",
        }
        for run, hist in self.history.items():
            if hist:
                out[f"loss_{run}"] = {"first": hist[0]["total"], "last": hist[-1]["total"],
                                      "epochs": len(hist)}
        return out

