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
from fsadbench.protocol.optionranges import Range

ALIGN_MODES = ("none", "mean", "weighted")
PSEUDO_ANOMALIES = ("pixel", "latent", "both")


#: the number options' ranges (``Options.ranges``: checked at planning and when the method is built,
#: :mod:`fsadbench.protocol.optionranges`); ``depth`` depends on the encoder: :func:`check_options`
RANGES = {
    "epochs": Range(ge=1, why="(the paper: 60)"),
    # crop_grid^2 crops of a crop_grid-x resize per shot and step: 64 (8 x 8) grew the process past 16 GB
    "crop_grid": Range(ge=1, le=4, why="(the paper: 2, i.e. 4 crops; 4 = 16 crops of a 4x resize)"),
    "decoder_scale": Range(ge=1),
    "beta_max": Range(ge=0, le=1),
    "latent_sigma": Range(ge=0),
    "label_smoothing": Range(ge=0, lt=1),
    "align_tau": Range(gt=0),
    "lr_prompt": Range(gt=0),
    "lr_decoder": Range(gt=0),
    "momentum": Range(ge=0, lt=1),
    "weight_decay": Range(ge=0),
    "warmup_epochs": Range(ge=0),
    "n_ctx_text": Range(ge=0, why="(or null: the paper's length)"),
    "n_ctx_visual": Range(ge=0, why="(or null: the paper's length)"),
}


def check_options(o: Any, n_layers: int, method: str) -> None:
    """One ConfigError naming the first option out of its range, what it must be and its value (the
    number ranges of :data:`RANGES` are checked before, when the options are made)."""
    checks = [
        (1 <= o.depth <= n_layers, "depth", f"between 1 and the encoder's {n_layers} blocks (the paper: 9)"),
        (o.texture in ("noise", "normal"), "texture", "'noise' or 'normal'"),
        (o.crop_source in CROP_SOURCES, "crop_source", f"one of {CROP_SOURCES}"),
        (o.class_text in ("average", "own"), "class_text", "'average' or 'own'"),
        (o.interaction in INTERACTIONS, "interaction", f"one of {INTERACTIONS}"),
        (o.align in ALIGN_MODES, "align", f"one of {ALIGN_MODES}"),
        (o.pseudo_anomalies in PSEUDO_ANOMALIES, "pseudo_anomalies", f"one of {PSEUDO_ANOMALIES}"),
        (bool(str(o.state_word).strip()), "state_word", f"a word, or {STATE_ENSEMBLE!r} for the ensemble"),
    ]
    for ok, field_name, want in checks:
        if not ok:
            raise ConfigError(f"method {method!r} option {field_name}: must be {want}, got {getattr(o, field_name)!r}")
