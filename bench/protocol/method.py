"""The method interface every plugin implements.

A method sees images (``ImageRef``: path + content digest) and the frozen
backbone through a :class:`MethodContext`; it never sees dataset layouts,
result folders or other cells.

    class MyMethod(Method):
        name = "mine"
        variants = ("w/o VG", "w/ VG")
        def fit(self, normals, category): ...
        def predict(self, images) -> dict[str, Prediction]: ...

``predict`` returns one :class:`Prediction` per declared variant, all from the
same fit (e.g. "w/o VG" and "w/ VG").
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Sequence

from fsadbench.core.errors import ConfigError
from fsadbench.core.types import CategoryInfo, ImageRef, Prediction
from fsadbench.core.variants import VARIANTS
from fsadbench.protocol.optionranges import coerce_numbers, range_error

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from fsadbench.backbone.clip import Backbone
    from fsadbench.backbone.spec import BackboneSpec
    from fsadbench.backbone.features import FeatureStore


@dataclass
class MethodContext:
    """What the harness lends a method for one cell."""

    backbone: "Backbone"
    features: "FeatureStore"
    device: "torch.device"
    seed: int = 0
    batch_size: int = 32
    amp: bool = False  # bf16 autocast on GPU
    log: Any = None  # callable(str) for progress messages
    extra: dict[str, Any] = field(default_factory=dict)
    progress: Any = None  # callable(stage, done, total): progress inside the cell (the run's bar)
    show_values: Any = None  # callable(**values): figures beside that stage on the run's bar

    def say(self, msg: str) -> None:
        if self.log is not None:
            self.log(msg)

    def step(self, stage: str, done: int, total: int) -> None:
        """Report progress inside a fit, e.g. ``ctx.step("epoch", epoch, epochs)``; shown on the run's bar."""
        if self.progress is not None:
            self.progress(stage, done, total)

    def show(self, **values: float) -> None:
        """Figures of the fit so far beside its stage on the run's progress line, e.g. ``ctx.show(loss=0.41)``
        after an epoch; never in the log (the person watching sees them; ``history`` keeps them)."""
        if self.show_values is not None:
            self.show_values(**values)


@functools.lru_cache(maxsize=None)
def option_types(options_cls: type) -> dict[str, Any]:
    """The resolved annotations of an ``Options`` dataclass ({} when they cannot be resolved)."""
    try:
        return typing.get_type_hints(options_cls)
    except Exception:  # noqa: BLE001 - a plugin's annotations naming something not importable: no checks
        return {}


_KINDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
_PLURALS = {bool: "true/false values", int: "integers", float: "numbers", str: "strings"}


def expected_type(value: Any, hint: Any) -> str:
    """'' when ``value`` fits the option annotation ``hint``, else what it should be ("a number";
    "a list of integers; 'x' (item 2) is not one").

    Checked: bool, int, float (an int is a number), str, lists and tuples of these (``tuple[int, ...]``
    also takes a single value, as ``methods/common/options.int_tuple`` does; ``tuple[float, float]`` takes
    exactly 2) and ``X | None`` of these; other annotations (Any, dicts, classes, lists of other types) are
    left to the method, which checks them with its own message.
    """
    want, detail = _expected(value, hint)
    return want + detail


def _fits(value: Any, hint: type) -> bool:
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, str)


def _expected(value: Any, hint: Any) -> tuple[str, str]:
    """(what ``value`` should be, the detail naming its bad item) or ("", "") when it fits ``hint``."""
    args = typing.get_args(hint)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return "", ""
        wants = [_expected(value, a) for a in args if a is not type(None)]
        if any(w == "" for w, _ in wants):
            return "", ""
        return (" or ".join(w for w, _ in wants) + (" or null" if type(None) in args else ""),
                "".join(d for _, d in wants))
    if hint in _KINDS:
        return ("", "") if _fits(value, hint) else (_KINDS[hint], "")
    if origin is tuple and args and args[-1] is not Ellipsis:  # tuple[float, float]
        if not all(a in _KINDS for a in args):
            return "", ""
        want = f"a list of {len(args)} {_PLURALS[args[0]] if len(set(args)) == 1 else 'items'}"
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            return want, ""
        return _bad_item(value, args, want)
    if origin in (list, tuple) and args and args[0] in _KINDS:  # tuple[int, ...], list[str]
        items = value if isinstance(value, (list, tuple)) else [value]  # a single value is a list of one
        return _bad_item(items, [args[0]] * len(items), f"a list of {_PLURALS[args[0]]}")
    return "", ""


def _bad_item(items: Sequence[Any], hints: Sequence[type], want: str) -> tuple[str, str]:
    for i, (item, hint) in enumerate(zip(items, hints), 1):
        if not _fits(item, hint):
            return want, f"; {item!r} (item {i}) is not {_KINDS[hint]}"
    return "", ""


class Method(ABC):
    """Base class. Subclasses declare their options as a dataclass ``Options``."""

    name: ClassVar[str] = "method"
    #: The paper (authors, venue, title) ``list --method`` prints; "" = the first line of the module docstring.
    paper: ClassVar[str] = ""
    variants: ClassVar[tuple[str, ...]] = VARIANTS
    #: True when the frozen image encoder's outputs can be cached and shared.
    uses_feature_cache: ClassVar[bool] = True
    #: The encoder paths (names in ``fsadbench.backbone.features.SPEC_VERSIONS``) the method's
    #: numbers depend on, cached or not; their versions go into the cell hash (``spec_versions``).
    feature_specs: ClassVar[tuple[str, ...]] = ()
    #: minimum shots; 0 means zero-shot works.
    min_shots: ClassVar[int] = 0
    #: "category" (one fit per category), "dataset" (one fit for all categories), "auxiliary" (trained on
    #: another dataset, zero-shot) or "leave_one_out" (trained on the target's other categories, then the
    #: shots per category; :mod:`fsadbench.run.transfer`).
    fit_scope: ClassVar[str] = "category"
    #: Gaussian sigma applied after upsampling, per the paper / reference code, in pixels of ``sigma_size``.
    default_sigma: ClassVar[float] = 4.0
    #: The image size at which the reference applies that Gaussian: None at the evaluation size (the
    #: sigma is used as is), an int S for an S x S image (the evaluator applies sigma * eval_size / S),
    #: or ``"original"`` for each test image's own H x W (per axis). An explicit ``--sigma`` is in
    #: evaluation pixels and ignores it. Recorded as ``protocol.sigma_reference``.
    sigma_size: ClassVar[int | str | None] = None
    #: Departures from the paper / reference code, one short sentence each; ``describe()``
    #: puts them in every record (``method.describe.fidelity_notes``) for report footnotes.
    fidelity_notes: ClassVar[tuple[str, ...]] = ()
    #: Old option names still accepted: old name -> new name, or (new name, value converter).
    #: Using one emits a DeprecationWarning naming the new option.
    option_aliases: ClassVar[Mapping[str, Any]] = {}
    #: The version of the method's semantics: bump it whenever a change can move its numbers with the
    #: same options (part of every cell's resume key, so stale records are recomputed).
    version: ClassVar[int] = 1
    #: What ``predict`` returns: ``("image", "pixel")`` (scores and maps), or ``("image",)`` for an
    #: image-level method (``Prediction.maps`` None; every pixel metric is "n/a, image-level method").
    produces: ClassVar[tuple[str, ...]] = ("image", "pixel")
    #: Paper tables' "few-shot transfer" column: the method is trained on other data (classes or
    #: datasets) before it meets the k shots. False for every method here; "multi-class" (one model
    #: for every category) follows from ``fit_scope_for`` (see ``paper_traits``).
    few_shot_transfer: ClassVar[bool] = False
    #: The backbone kinds (keys of ``fsadbench.backbone.spec.KINDS``) the method can run on; planning refuses
    #: any other before the first cell. A CLIP method needs open_clip's image and text towers.
    backbone_kinds: ClassVar[tuple[str, ...]] = ("open_clip",)
    #: ``fit_scope = "auxiliary"``: the method trains on the auxiliary set's masks, so planning refuses a set
    #: whose anomalous images lack them (``fsadbench.run.transfer.check_auxiliary``).
    auxiliary_needs_masks: ClassVar[bool] = False

    @dataclass
    class Options:
        pass

    def __init__(self, ctx: MethodContext, **options: Any):
        self.ctx = ctx
        self.options = self.make_options(options)

    @classmethod
    def backbone_for(cls, options: Any, sweep: "BackboneSpec") -> "BackboneSpec":
        """The backbone this method's numbers come from, given its resolved ``options`` and the sweep's
        CLIP backbone: the sweep's (the CLIP methods). Methods on their own backbone override it
        (``fsadbench.methods.common.backbone_option``); the run layer keys, loads and records that one."""
        return sweep

    @classmethod
    def backbone_flags(cls, name: str) -> tuple[str, str]:
        """The command-line flags that set the backbone and its weights of this method registered as ``name``:
        the sweep's ``--model`` / ``--pretrained`` (the CLIP methods); a method on its own backbone names its
        options."""
        del name
        return "--model", "--pretrained"

    @classmethod
    def makes_maps(cls) -> bool:
        """Whether ``predict`` returns anomaly maps (``"pixel"`` in :attr:`produces`); a ConfigError when
        ``produces`` is not one of the two declarations."""
        if tuple(cls.produces) not in (("image", "pixel"), ("image",)):
            raise ConfigError(f"method {cls.name!r}: produces must be ('image', 'pixel') or ('image',) "
                              f"(an image-level method), not {cls.produces!r}")
        return "pixel" in cls.produces

    @classmethod
    def fit_scope_for(cls, options: Mapping[str, Any]) -> str:
        """"category" or "dataset" for these options (the runner plans with it)."""
        return cls.fit_scope

    @classmethod
    def auxiliary_fit_key(cls, options: Any, shots: int) -> Any:
        """What a method's training on auxiliary data depends on besides that data, the seed and the backbone
        (the harness shares one training per (method, auxiliary data, seed, backbone, this key)); None:
        nothing else. RegAD trains with the cell's shot count (its official code trains one model per shot)."""
        return None

    @classmethod
    def paper_traits(cls, options: Mapping[str, Any]) -> dict[str, bool]:
        """The comparison columns of paper tables (AnoPLe Table 1): ``multi_class`` (one model for every
        category of a dataset, with these options) and ``few_shot_transfer``."""
        return {"multi_class": cls.fit_scope_for(options) == "dataset", "few_shot_transfer": cls.few_shot_transfer}

    @classmethod
    def canonical_options(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` with deprecated names replaced by the current ones (DeprecationWarning each) and a
        float option written as number text (``1e-9``: YAML 1.1 reads it as a string) read as the number."""
        out = coerce_numbers(options, option_types(cls.Options))
        for old, target in cls.option_aliases.items():
            if old not in out:
                continue
            new, convert = (target, None) if isinstance(target, str) else target
            if new in out:
                raise ConfigError(f"method {cls.name!r}: options {old!r} and {new!r} name the same setting; "
                                  f"give only {new!r} ({old!r} is its deprecated name)")
            value = out.pop(old)
            warnings.warn(f"method {cls.name!r}: option {old!r} is deprecated; use {new!r}",
                          DeprecationWarning, stacklevel=3)
            out[new] = convert(value) if convert is not None else value
        return out

    @classmethod
    def make_options(cls, options: Mapping[str, Any]) -> Any:
        options = cls.canonical_options(options)
        fields = {f.name for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise ConfigError(
                f"method {cls.name!r}: unknown option(s) {unknown}; known options: {sorted(fields) or 'none'}"
            )
        built = cls.Options(**options)
        bad = range_error(cls.name, options, cls.Options, common=False)  # the method's own table
        if bad:
            raise ConfigError(bad)
        return built

    @classmethod
    def check_option_types(cls, options: Mapping[str, Any]) -> None:
        """A ConfigError naming the first option whose value does not fit its annotated type or its declared
        range (planning calls this before any work; a method constructed directly checks the ranges in
        :meth:`make_options` and keeps its own, more specific checks)."""
        hints = option_types(cls.Options)
        defaults = {f.name: f.default for f in dataclasses.fields(cls.Options)}
        for name, value in options.items():  # a deprecated name has no annotation: checked by the method
            expected = expected_type(value, hints.get(name))
            if expected:
                default = defaults.get(name, dataclasses.MISSING)
                shown = "" if default is dataclasses.MISSING else f"; default {default!r}"
                raise ConfigError(f"method {cls.name!r}: option {name!r} must be {expected} (got {value!r}{shown})")
        bad = range_error(cls.name, options, cls.Options)  # ranges: fsadbench.protocol.optionranges
        if bad:
            raise ConfigError(bad)

    @classmethod
    def option_dict(cls, options: Any) -> dict[str, Any]:
        return dataclasses.asdict(options)

    @abstractmethod
    def fit(self, normals: Sequence[ImageRef], category: CategoryInfo) -> None:
        """Learn from k normal images of ``category`` (k may be 0)."""

    @abstractmethod
    def predict(self, images: Sequence[ImageRef]) -> dict[str, Prediction]:
        """Anomaly maps (B x H x W) and scores (B), one Prediction per variant."""

    def fit_dataset(self, normals_by_category: Mapping[str, Sequence[ImageRef]],
                    categories: Mapping[str, CategoryInfo]) -> None:
        """Multi-class fit (``fit_scope == "dataset"``): one model for all categories."""
        from fsadbench.core.errors import MethodError

        raise MethodError(f"{self.name} fits per category; fit_dataset() applies to fit_scope='dataset' methods")

    def set_category(self, category: CategoryInfo) -> None:
        """For dataset-scope methods: the category of the next ``predict`` calls."""

    def describe(self) -> dict[str, Any]:
        """Extra facts for the record: every option value in force (defaults included) and the
        method's fidelity notes; subclasses add the choices a paper left open."""
        return {"options_resolved": dataclasses.asdict(self.options), "fidelity_notes": list(self.fidelity_notes)}
