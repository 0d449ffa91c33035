"""Option helpers shared by the methods: block lists from YAML/CLI and CLIP's logit scale.

One option name per concept across methods: ``memory_layers`` (the blocks whose
patch tokens form the visual memory), ``vv_blocks`` (the blocks of the dual-path
V-V encoder), ``logit_scale`` (the multiplier of cosine logits).
"""

from __future__ import annotations

from typing import Any

from fsadbench.core.errors import ConfigError

#: ``logit_scale`` choices: CLIP's exp(logit_scale) (capped at 100, CLIP's training clamp; 100 for a
#: trained model), or the raw parameter (about 4.6 for a trained model: PromptAD's official code).
LOGIT_SCALES = ("exp", "raw")


def int_tuple(value: Any, method: str, name: str, what: str = "block numbers, e.g. [3, 8]") -> tuple[int, ...]:
    """A block list from YAML / CLI: ``[3, 8]``, ``(3, 8)`` or a single ``8`` -> (3, 8) / (8,); an item that is
    not a whole number (``'x'``, ``3.5``, ``true``, ``[3]``) is a ConfigError naming it."""
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for i, v in enumerate(items, 1):
        try:
            if isinstance(v, bool) or (isinstance(v, float) and not v.is_integer()):
                raise ValueError(v)
            out.append(int(v))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{method} option {name!r} must be a list of {what}; {v!r} (item {i}) is not an "
                              f"integer (got {value!r})") from exc
    return tuple(out)


def resolve_logit_scale(model: Any, how: Any, method: str) -> float:
    """The cosine-logit multiplier: "exp" -> min(exp(logit_scale), 100), "raw" -> logit_scale, a number -> it."""
    if isinstance(how, (int, float)) and not isinstance(how, bool):
        if not how > 0:
            raise ConfigError(f"{method} option 'logit_scale' must be > 0, got {how!r}")
        return float(how)
    param = model.logit_scale.detach().float()
    if how == "exp":
        return float(param.exp().clamp(max=100.0))
    if how == "raw":
        return float(param)
    raise ConfigError(f"{method} option 'logit_scale' must be one of {LOGIT_SCALES} or a positive number, got {how!r}")
