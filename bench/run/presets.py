"""The named run configs of ``--preset`` (the layers of :func:`fsadbench.run.config.build_config`)."""

from __future__ import annotations

from typing import Any

from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL

PRESETS: dict[str, dict[str, Any]] = {
    # Offline pipeline check: synthetic data, tiny RANDOM backbone, a few cells.
    "smoke": {
        # apt with its paper defaults (100 epochs: about 3 s a cell here)
        "methods": ["memory", "winclip", "apt"],
        "datasets": [{"name": "synthetic", "categories": ["stripes", "disc"],
                      "options": {"size": 120, "n_train": 8, "n_test_good": 6, "n_test_bad": 10}}],
        "shots": [1, 2],
        "seeds": [0, 1],
        "backbone": {"model": TINY_MODEL, "pretrained": "none"},
        "protocol": {"eval_size": 120},
        "results_dir": "results/smoke",
    },
    # The paper protocol (APT Table 1 shots) on the real backbone.
    "paper": {
        "shots": [1, 2, 4],
        "seeds": [0, 1, 2, 3, 4],
        "backbone": {"model": DEFAULT_MODEL, "pretrained": DEFAULT_PRETRAINED},
        "protocol": {"eval_size": 400},
    },
}
