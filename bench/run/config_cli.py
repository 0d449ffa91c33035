"""``run_bench.py run`` flags -> RunConfig, built once (:meth:`RunConfig.from_cli`)."""

from __future__ import annotations

from typing import Any, Mapping

from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL
from fsadbench.core.errors import ConfigError
from fsadbench.core.validate import parse_categories
from fsadbench.run.config import PIPELINE_CHECK, PRESETS, RunConfig, build_config, load_yaml

_CLI_KEYS = ("methods", "datasets", "shots", "seeds", "data_root", "results_dir", "cache_dir", "device", "batch_size")


def config_from_cli(args: Any) -> RunConfig:
    """Defaults < --preset < --config < flags < --categories < --method-option, built once.

    ``args`` holds the flags of ``run`` by their dest names (methods, datasets, categories, shots, seeds,
    data_root, results_dir, cache_dir, device, batch_size, amp, save_maps, model, pretrained, eval_size, sigma,
    max_test_images, preset, config, method_option); absent or None ones are not set. When no layer
    names datasets, the run is the pipeline check (the smoke preset's synthetic set and tiny RANDOM
    backbone, with the given methods, shots and seeds; ``preset`` = ``pipeline-check``); on a real
    backbone that is refused, since it would spend hours on synthetic images.
    """
    a = dict(args) if isinstance(args, Mapping) else dict(vars(args))
    g = a.get
    overrides: dict[str, Any] = {k: g(k) for k in _CLI_KEYS}
    overrides["amp"] = g("amp") or None
    overrides["save_maps"] = g("save_maps") or None
    overrides["train_on"] = g("train_on") or None
    backbone = {k: g(k) for k in ("model", "pretrained") if g(k)}
    if backbone:
        overrides["backbone"] = backbone
    protocol = {k: g(k) for k in ("eval_size", "sigma", "max_test_images") if g(k) is not None}
    if protocol:
        overrides["protocol"] = protocol
    preset, config_file = g("preset"), g("config")
    if preset and preset not in PRESETS:
        raise ConfigError(f"--preset {preset!r}: unknown; known presets: {sorted(PRESETS)}")
    layers = [PRESETS.get(preset or "", {}), load_yaml(config_file) if config_file else {}, overrides]
    base = None
    if not any(layer.get("datasets") for layer in layers):
        bb = {k: v for layer in layers for k, v in (layer.get("backbone") or {}).items()}
        real = (str(bb["pretrained"]).lower() not in ("none", "random", "") if "pretrained" in bb
                else bb.get("model", TINY_MODEL) != TINY_MODEL)
        if real:
            raise ConfigError(f"no datasets given for a run on {bb.get('model', DEFAULT_MODEL)} / "
                              f"{bb.get('pretrained', DEFAULT_PRETRAINED)}: add --datasets NAME[,NAME] --data-root "
                              f"DIR (e.g. --datasets mvtec --data-root /data); without --datasets, --model and "
                              f"--pretrained the run is the offline pipeline check")
        smoke = PRESETS["smoke"]
        base = {k: smoke[k] for k in ("datasets", "backbone", "protocol", "results_dir")}
    cats = parse_categories(g("categories"), "--categories") if g("categories") else None
    cfg = build_config(preset, config_file, overrides, list(g("method_option") or []), cats, base)
    if base is not None:
        cfg.preset = PIPELINE_CHECK
    return cfg
