"""AnoPLe's option checks (``anople/model.py`` lists the options and their sources).

The ablation switches' values: ``interaction`` (``prompts.INTERACTIONS``, Table 3 (a)),
``align`` (Table 3 (c)), ``pseudo_anomalies`` (Table 5), ``state_word`` (a word, or
``prompts.STATE_ENSEMBLE`` for Table 4's ensemble).
"""

from __future__ import annotations

from typing import Any

from fsadbench.core.errors import ConfigError
from fsadbench.methods.anople.prompts import INTERACTIONS, STATE_ENSEMBLE
from fsadbench.methods.anople.views import CROP_SOURCES

ALIGN_MODES = ("none", "mean", "weighted")
PSEUDO_ANOMALIES = ("pixel", "latent", "both")


def check_options(o: Any, n_layers: int, method: str) -> None:
    """One ConfigError naming the first option out of its range, what it must be and its value."""
    checks = [
        (o.epochs >= 1, "epochs", "an integer >= 1 (the paper: 60)"),
        (1 <= o.depth <= n_layers, "depth", f"between 1 and the encoder's {n_layers} blocks (the paper: 9)"),
        (o.crop_grid >= 1, "crop_grid", "an integer >= 1 (the paper: 2, i.e. 4 crops)"),
        (o.decoder_scale >= 1, "decoder_scale", "an integer >= 1"),
        (o.texture in ("noise", "normal"), "texture", "'noise' or 'normal'"),
        (o.crop_source in CROP_SOURCES, "crop_source", f"one of {CROP_SOURCES}"),
        (o.class_text in ("average", "own"), "class_text", "'average' or 'own'"),
        (o.interaction in INTERACTIONS, "interaction", f"one of {INTERACTIONS}"),
        (o.align in ALIGN_MODES, "align", f"one of {ALIGN_MODES}"),
        (o.pseudo_anomalies in PSEUDO_ANOMALIES, "pseudo_anomalies", f"one of {PSEUDO_ANOMALIES}"),
        (bool(str(o.state_word).strip()), "state_word", f"a word, or {STATE_ENSEMBLE!r} for the ensemble"),
        (0.0 <= o.beta_max <= 1.0, "beta_max", "in [0, 1]"),
        (o.latent_sigma >= 0, "latent_sigma", ">= 0"),
        (0.0 <= o.label_smoothing < 1.0, "label_smoothing", "in [0, 1)"),
        (o.align_tau > 0, "align_tau", "> 0"),
        (o.warmup_epochs >= 0, "warmup_epochs", ">= 0"),
    ]
    for name in ("n_ctx_text", "n_ctx_visual"):
        n = getattr(o, name)
        checks.append((n is None or n >= 0, name, "None (the paper's length) or an integer >= 0"))
    for ok, field_name, want in checks:
        if not ok:
            raise ConfigError(f"method {method!r} option {field_name}: must be {want}, got {getattr(o, field_name)!r}")
