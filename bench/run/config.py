"""The resolved configuration of a sweep: YAML file + presets + CLI overrides.

Everything that can change a number is in here and goes, resolved, into every
record (``RunConfig.to_dict``); ``cell_hash`` is what resume compares.

YAML shape (all keys optional)::

    methods:                      # or a list of names: [apt, winclip]
      - name: apt
        label: "APT"
        options: {k: 2}
    datasets:                     # or a list of names
      - name: mvtec
        root: /data/mvtec_anomaly_detection
        categories: [bottle, cable]
        options: {}
    shots: [1, 2, 4]
    seeds: [0, 1, 2]
    backbone: {model: ViT-B-16-plus-240, pretrained: laion400m_e32}
    protocol: {eval_size: 400, sigma: null}   # null sigma = each method's paper value
    data_root: /data
    results_dir: results/run
    device: auto
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import yaml

from fsadbench.core.defaults import DEFAULT_MODEL, DEFAULT_PRETRAINED, TINY_MODEL, default_cache_dir  # noqa: F401
from fsadbench.core.errors import ConfigError, RegistryError
from fsadbench.core.validate import int_list, int_value, mapping, opt_str, parse_categories, refuse_repeats
from fsadbench.core.yamlsafe import load_file, load_text

PROTOCOL_VERSION = "fsad-protocol/1"


@dataclass
class MethodSpec:
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def id(self) -> str:
        """Stable identity: the name, plus the options when any are set (``apt[k=2,la=false]``)."""
        if not self.options:
            return self.name
        parts = ",".join(f"{k}={_fmt(v)}" for k, v in sorted(self.options.items()))
        return f"{self.name}[{parts}]"

    @property
    def display(self) -> str:
        return self.label or self.id


@dataclass
class DatasetSpec:
    name: str
    root: str | None = None
    categories: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class Protocol:
    eval_size: int = 400  # evaluation resolution (PromptAD / WinCLIP report at 400)
    sigma: float | None = None  # Gaussian sigma after upsampling; None = the method's paper value
    max_test_images: int | None = None  # for quick checks only; recorded


@dataclass
class RunConfig:
    methods: list[MethodSpec] = field(default_factory=lambda: [MethodSpec("memory")])
    datasets: list[DatasetSpec] = field(default_factory=lambda: [DatasetSpec("synthetic")])
    shots: list[int] = field(default_factory=lambda: [1, 2, 4])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_PRETRAINED
    protocol: Protocol = field(default_factory=Protocol)
    data_root: str | None = None
    results_dir: str = "results/run"
    cache_dir: str | None = None
    device: str = "auto"
    batch_size: int = 32
    amp: bool = False
    preset: str | None = None
    save_maps: bool = False  # also store each cell's maps at eval size beside its record (changes no number)
    #: the zero-shot transfer pairing (fsadbench.run.transfer): target dataset -> auxiliary dataset the
    #: methods with fit_scope "auxiliary" train on ("*": every target, from --train-on NAME)
    train_on: dict[str, str] = field(default_factory=dict)
    train_on_target: bool = False  # allow training on the evaluated dataset itself (said in every table)

    # -- serialisation ---------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))

    @property
    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir) if self.cache_dir else default_cache_dir()

    @classmethod
    def from_cli(cls, args: Any) -> "RunConfig":
        """The config of ``run_bench.py run`` flags (an argparse Namespace or a mapping); see :func:`config_from_cli`."""
        from fsadbench.run.config_cli import config_from_cli

        return config_from_cli(args)


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return "-".join(_fmt(x) for x in v)
    return str(v)


def stable_hash(obj: Any) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# -- parsing ---------------------------------------------------------------------
def parse_value(text: str, where: str = "option value") -> Any:
    """CLI option values: YAML scalars (``2``, ``true``, ``[3, 8]``, ``0.5``); text that is not YAML stays
    a string. Aliases and duplicate keys are refused (:mod:`fsadbench.core.yamlsafe`)."""
    try:
        return load_text(text, where)
    except ConfigError as exc:
        if isinstance(exc.__cause__, yaml.YAMLError):
            return text
        raise


def _method_specs(value: Any, where: str) -> list[MethodSpec]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'methods' must be a list of names or of {{name, options, label}} mappings")
    out = []
    for m in value:
        if isinstance(m, str):
            out.append(MethodSpec(m.strip()))
        elif isinstance(m, Mapping) and "name" in m:
            extra = set(m) - {"name", "options", "label"}
            if extra:
                raise ConfigError(f"{where}: method entry {m['name']!r} has unknown keys {sorted(extra)}; "
                                  f"allowed: name, options, label")
            out.append(MethodSpec(opt_str(m["name"], "methods.name", where, False),
                                  mapping(m.get("options"), f"methods.{m['name']}.options", where),
                                  opt_str(m.get("label"), f"methods.{m['name']}.label", where)))
        else:
            raise ConfigError(f"{where}: method entry {m!r} needs a 'name'")
    return out


def _dataset_specs(value: Any, where: str) -> list[DatasetSpec]:
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, list):
        raise ConfigError(f"{where}: 'datasets' must be a list of names or of {{name, root, categories, options}}")
    out = []
    for d in value:
        if isinstance(d, str):
            out.append(DatasetSpec(d.strip()))
        elif isinstance(d, Mapping) and "name" in d:
            extra = set(d) - {"name", "root", "categories", "options"}
            if extra:
                raise ConfigError(f"{where}: dataset entry {d['name']!r} has unknown keys {sorted(extra)}")
            name = opt_str(d["name"], "datasets.name", where, False)
            opts = mapping(d.get("options"), f"datasets.{name}.options", where)
            for reserved in ("root", "data_root", "cache_dir"):
                if reserved in opts:
                    raise ConfigError(f"{where}: dataset {d['name']!r} sets {reserved!r} under 'options'; "
                                      + ("write it as the entry's own key: {name: ..., root: ...}"
                                         if reserved == "root" else f"give it as --{reserved.replace('_', '-')}"))
            cats = d.get("categories")
            cats = parse_categories(cats, where, f"datasets.{name}.categories") if cats is not None else None
            out.append(DatasetSpec(name, opt_str(d.get("root"), f"datasets.{name}.root", where), cats or None, opts))
        else:
            raise ConfigError(f"{where}: dataset entry {d!r} needs a 'name'")
    return out


_SCALARS = {  # RunConfig field -> (kind, minimum)
    "data_root": ("path", None), "results_dir": ("str", None), "cache_dir": ("path", None),
    "device": ("str", None), "model": ("str", None), "pretrained": ("str", None), "preset": ("path", None),
    "batch_size": ("int", 1), "amp": ("bool", None), "save_maps": ("bool", None),
    "train_on_target": ("bool", None),
}


def _scalar(key: str, value: Any, where: str) -> Any:
    kind, minimum = _SCALARS[key]
    if kind == "int":
        return int_value(value, key, where, minimum)
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: '{key}' must be true or false (got {value!r})")
        return value
    return opt_str(value, key, where, allow_none=kind == "path")


def _protocol(cfg: RunConfig, value: Any, where: str) -> Protocol:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: 'protocol' must be a mapping")
    pk = {f.name for f in fields(Protocol)}
    bad = sorted(set(value) - pk)
    if bad:
        raise ConfigError(f"{where}: unknown protocol key(s) {bad}; known: {sorted(pk)}")
    p = {**asdict(cfg.protocol), **value}
    p["eval_size"] = int_value(p["eval_size"], "protocol.eval_size", where, 1)
    if p["max_test_images"] is not None:
        p["max_test_images"] = int_value(p["max_test_images"], "protocol.max_test_images", where, 1)
    s = p["sigma"]
    if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float)) or not math.isfinite(s) or s < 0):
        raise ConfigError(f"{where}: 'protocol.sigma' must be a number >= 0, or null for each method's paper value "
                          f"(got {s!r})")
    return Protocol(**p)


def _train_on(value: Any, where: str) -> dict[str, str]:
    """``train_on: visa`` (every target) or ``{mvtec: visa, visa: mvtec}`` (per target)."""
    if isinstance(value, str) and value.strip():
        return {"*": value.strip()}
    if isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                          for k, v in value.items()):
        return {k: v.strip() for k, v in value.items()}
    raise ConfigError(f"{where}: 'train_on' must be a dataset name (e.g. visa) or a mapping target -> "
                      f"auxiliary dataset (e.g. {{mvtec: visa, visa: mvtec}}); got {value!r}")


def apply_mapping(cfg: RunConfig, data: Mapping[str, Any], where: str) -> RunConfig:
    known = {f.name for f in fields(RunConfig)} | {"backbone"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known keys: {sorted(known)}")
    for key, value in data.items():
        if key == "methods":
            cfg.methods = _method_specs(value, where)
        elif key == "datasets":
            cfg.datasets = _dataset_specs(value, where)
        elif key in ("shots", "seeds"):
            setattr(cfg, key, int_list(value, key, where))
        elif key == "backbone":
            if not isinstance(value, Mapping) or set(value) - {"model", "pretrained"}:
                raise ConfigError(f"{where}: 'backbone' takes {{model, pretrained}}")
            cfg.model = _scalar("model", value.get("model", cfg.model), where)
            pretrained = value.get("pretrained", cfg.pretrained)
            cfg.pretrained = _scalar("pretrained", "none" if pretrained is None else str(pretrained), where)
        elif key == "protocol":
            cfg.protocol = _protocol(cfg, value, where)
        elif key == "train_on":
            cfg.train_on = _train_on(value, where)
        else:
            setattr(cfg, key, _scalar(key, value, where))
    return cfg


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    data = load_file(p) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: the top level must be a mapping")
    data.pop("published", None)  # paper configs may carry published figures beside the sweep
    data.pop("table", None)  # and the layout they regenerate
    return data


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


def build_config(preset: str | None = None, config_file: str | None = None,
                  overrides: Mapping[str, Any] | None = None,
                  method_options: list[str] | None = None, categories: list[str] | None = None,
                  base: Mapping[str, Any] | None = None) -> RunConfig:
    """Defaults < base < preset < config file < CLI overrides < --categories < --method-option."""
    cfg = RunConfig()
    if base:
        cfg = apply_mapping(cfg, base, "pipeline check")
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"--preset {preset!r}: unknown; known presets: {sorted(PRESETS)}")
        cfg = apply_mapping(cfg, PRESETS[preset], f"preset {preset}")
        cfg.preset = preset
    if config_file:
        cfg = apply_mapping(cfg, load_yaml(config_file), f"config {config_file}")
    if overrides:
        cfg = apply_mapping(cfg, {k: v for k, v in overrides.items() if v is not None}, "command line")
    for d in cfg.datasets if categories else ():  # --categories applies to every dataset
        d.categories = list(categories)
    for item in method_options or []:
        target, sep, value = item.partition("=")
        mname, dot, opt = target.partition(".")
        if not sep or not dot:
            raise ConfigError(f"--method-option {item!r}: expected METHOD.OPTION=VALUE, e.g. apt.k=2")
        hits = [m for m in cfg.methods if m.name == mname]
        if not hits:
            raise ConfigError(f"--method-option {item!r}: method {mname!r} is not in this run "
                              f"({', '.join(m.name for m in cfg.methods)})")
        for m in hits:
            m.options[opt] = parse_value(value, f"--method-option {target}")
    if not cfg.methods or not cfg.datasets or not cfg.shots or not cfg.seeds:
        raise ConfigError("a run needs at least one method, dataset, shot count and seed")
    cfg.methods = [canonical_method(m) for m in cfg.methods]
    refuse_repeats([m.id for m in cfg.methods], "methods", "run config")
    refuse_repeats([d.name for d in cfg.datasets], "datasets", "run config")
    return cfg


def canonical_method(spec: MethodSpec) -> MethodSpec:
    """``spec`` with deprecated option names replaced by the current ones, once, at configuration
    time: one DeprecationWarning per run (not one per cell) and one method id for one setting."""
    from fsadbench.core.registry import METHODS

    try:
        cls, _ = METHODS.get(spec.name)
    except RegistryError:  # not installed here: planning says so, reports of its records still work
        return spec
    options = cls.canonical_options(spec.options)
    return spec if options == spec.options else replace(spec, options=options)


PIPELINE_CHECK = "pipeline-check"  # RunConfig.preset of a run without datasets (see config_from_cli)
