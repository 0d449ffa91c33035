"""Config: presets < file < CLI, method options, clear errors for bad keys."""

import pytest

from fsadbench.run.config import MethodSpec, build_config
from fsadbench.core.errors import ConfigError


def test_layers_of_precedence(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("methods:\n  - name: apt\n    label: APT full\n    options: {k: 2}\nshots: [1]\nseeds: 0,1\n")
    cfg = build_config("smoke", str(f), {"seeds": "5"}, ["apt.la=false"])
    assert cfg.model == "fsad-tiny-vit" and cfg.pretrained == "none"  # from the preset
    assert cfg.shots == [1] and cfg.seeds == [5]
    assert cfg.methods[0].options == {"k": 2, "la": False} and cfg.methods[0].display == "APT full"


def test_method_id_is_stable():
    assert MethodSpec("apt").id == "apt"
    assert MethodSpec("apt", {"la": False, "k": 2}).id == "apt[k=2,la=false]"


def test_deprecated_option_names_become_the_current_ones_once(recwarn):
    """One warning at configuration time, and the method id of the current name (same cells, same rows)."""
    import warnings

    warnings.simplefilter("always")
    cfg = build_config("smoke", None, {"methods": "anople,memory"}, ["anople.mem_layers=7,8", "memory.memory_layers=3"])
    dep = [w for w in recwarn if issubclass(w.category, DeprecationWarning)]
    assert [str(w.message) for w in dep] == ["method 'anople': option 'mem_layers' is deprecated; use 'memory_layers'"]
    assert cfg.methods[0].id == build_config("smoke", None, {"methods": "anople"},
                                             ["anople.memory_layers=7,8"]).methods[0].id
    assert "memory_layers" in cfg.methods[0].options and "mem_layers" not in cfg.methods[0].options
    assert cfg.methods[1].options == {"memory_layers": 3}
    assert build_config("smoke", None, {"methods": "not_installed"}).methods[0].id == "not_installed"
    with pytest.raises(ConfigError, match="name the same setting"):
        build_config("smoke", None, {"methods": "anople"}, ["anople.mem_layers=7", "anople.memory_layers=8"])


@pytest.mark.parametrize("yaml_text, fragment", [
    ("shotz: [1]\n", "unknown key"),
    ("shots: [one]\n", "list of integers"),
    ("protocol: {eval: 3}\n", "unknown protocol key"),
    ("methods:\n  - {name: apt, opts: {}}\n", "unknown keys"),
])
def test_bad_config_names_the_field(tmp_path, yaml_text, fragment):
    f = tmp_path / "c.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError, match=fragment):
        build_config(None, str(f))


def test_bad_method_option_syntax():
    with pytest.raises(ConfigError, match="METHOD.OPTION=VALUE"):
        build_config(None, None, {"methods": "memory"}, ["memory-layers=3"])
    with pytest.raises(ConfigError, match="not in this run"):
        build_config(None, None, {"methods": "memory"}, ["apt.k=3"])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="smoke"):
        build_config("nope")


def test_dataset_root_under_options_is_refused_with_the_fix():
    from fsadbench.run.config import _dataset_specs

    with pytest.raises(ConfigError, match=r"sets 'root' under 'options'.*\{name: \.\.\., root: \.\.\.\}"):
        _dataset_specs([{"name": "folder", "options": {"root": "/data/mine"}}], "x.yaml")
