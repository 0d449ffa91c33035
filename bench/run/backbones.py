"""Every backbone of a sweep, checked before the first cell: which methods run on it, whether they can,
and whether its weights can be had.

:func:`used_backbones` maps each backbone some method of the sweep runs on (``Method.backbone_for``: the
sweep's CLIP for the CLIP methods, a method's own otherwise) to those methods; the sweep's CLIP is not
there when no method uses it. :func:`check_backbones` refuses, in one message each, every method whose
backbone is not of a kind it declares (``Method.backbone_kinds``; ConfigError, one line per method) and
every checkpoint that cannot be had (WeightsError: all of them, each with its URL or file and the flags
that pass it for the methods in question). The executors call it after planning (the command line and
``fsadbench.run`` alike) and ``run --dry-run`` after printing the plan.

The backbone layer answers for one spec at a time: :func:`fsadbench.backbone.load.backbone_kind`,
:func:`fsadbench.backbone.load.check_backbone_weights` (and the plan's
:func:`fsadbench.backbone.load.weights_text`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from fsadbench.core.errors import ConfigError, WeightsError
from fsadbench.run.config import MethodSpec, RunConfig
from fsadbench.run.identity import method_backbone, resolve_method

if TYPE_CHECKING:  # pragma: no cover
    from fsadbench.backbone.spec import BackboneSpec
    from fsadbench.run.plan import Plan


def used_backbones(cfg: RunConfig,
                   methods: Iterable[MethodSpec] | None = None) -> dict["BackboneSpec", list[MethodSpec]]:
    """Each backbone the ``methods`` (default: the sweep's) run on -> those methods, in the sweep's order."""
    out: dict["BackboneSpec", list[MethodSpec]] = {}
    for m in cfg.methods if methods is None else methods:
        out.setdefault(method_backbone(cfg, m), []).append(m)
    return out


def flag_text(flag: str, value: str) -> str:
    """``--model`` + ``X`` -> "--model X"; ``--method-option m.backbone=`` + ``X`` -> "--method-option m.backbone=X"."""
    return f"{flag}{value}" if flag.endswith("=") else f"{flag} {value}"


def weights_option(cfg: RunConfig, methods: Iterable[MethodSpec]) -> str:
    """The flags that pass a checkpoint file for the backbone of ``methods``, ``{file}`` where the path goes:
    ``--model M --pretrained {file}`` for the sweep's, ``--method-option NAME.backbone_weights={file}`` for a
    method's own (each method's, joined by "and")."""
    from fsadbench.protocol.method import Method

    parts: list[str] = []
    for m in methods:
        cls, _ = resolve_method(m)
        model_flag, weights_flag = cls.backbone_flags(m.name)
        text = flag_text(weights_flag, "{file}")
        if (model_flag, weights_flag) == Method.backbone_flags(m.name):  # the sweep's: its model goes with it
            text = f"{flag_text(model_flag, cfg.model)} {text}"
        parts += [text] if text not in parts else []
    return " and ".join(parts)


def incompatible(cfg: RunConfig, methods: Iterable[MethodSpec] | None = None) -> list[str]:
    """One line per method of ``methods`` (default: the sweep's) whose backbone is not of a kind it accepts,
    and per backbone naming a model its family lacks."""
    from fsadbench.backbone.load import backbone_kind
    from fsadbench.backbone.spec import KINDS

    lines: list[str] = []
    for spec, ms in used_backbones(cfg, methods).items():
        try:
            kind = backbone_kind(spec)
        except ConfigError as exc:
            lines.append(f"{exc} (used by {', '.join(m.id for m in ms)})")
            continue
        for m in ms:
            cls, _ = resolve_method(m)
            if kind not in cls.backbone_kinds:
                needs = " or ".join(KINDS[k] for k in cls.backbone_kinds)
                lines.append(f"method {m.id!r} cannot use backbone {spec.name}, {KINDS[kind]}: it needs {needs}; "
                             f"choose one with {flag_text(cls.backbone_flags(m.name)[0], 'NAME')}")
    return lines


def missing_weights(cfg: RunConfig, methods: Iterable[MethodSpec]) -> list[str]:
    """The WeightsError text of every backbone of ``methods`` whose checkpoint cannot be had."""
    from fsadbench.backbone.load import check_backbone_weights

    cache = str(cfg.resolved_cache_dir / "weights")
    out: list[str] = []
    for spec, ms in used_backbones(cfg, methods).items():
        try:
            check_backbone_weights(spec, cache, option=weights_option(cfg, ms))
        except WeightsError as exc:
            out.append(str(exc))
    return out


def check_backbones(cfg: RunConfig, plan: "Plan") -> None:
    """Before any cell: refuse every method of the sweep on a backbone it cannot use (one ConfigError, one
    line each), then every checkpoint the methods still to run cannot get (one WeightsError naming them
    all; a single one keeps its own text)."""
    bad = incompatible(cfg)
    if bad:
        raise ConfigError("\n".join(bad))
    todo = list({j.method.id: j.method for j in plan.todo}.values())
    missing = missing_weights(cfg, todo)
    if len(missing) == 1:
        raise WeightsError(missing[0])
    if missing:
        blocks = [f"[{i}/{len(missing)}] " + text.replace("\n", "\n      ") for i, text in enumerate(missing, 1)]
        raise WeightsError(f"{len(missing)} backbone checkpoints cannot be loaded; nothing was run. Each, with "
                           f"its file and remedies:\n" + "\n".join(blocks))
