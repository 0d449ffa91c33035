"""The command line: top-level help and version, list --verbose, RunConfig.from_cli, shared flags."""

import argparse

import pytest

from fsadbench import __version__
from fsadbench.cli import COMMANDS, main
from fsadbench.core.errors import ConfigError
from fsadbench.run.config import PIPELINE_CHECK, PRESETS, RunConfig


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert f"\n  {name} " in out
    assert "--version" in out


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fsad-bench {__version__}"


def test_every_command_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        assert f"run_bench.py {name}" in capsys.readouterr().out


def test_output_is_spelled_the_same_everywhere(capsys):
    """Every command that writes a file takes --output (figures also keeps its old --out)."""
    import importlib

    writers = {"report", "compare", "baseline", "history", "paper-table"}
    for name in writers:
        module, fn, _ = COMMANDS[name]
        mod = importlib.import_module(f"fsadbench.cli.{module}")
        parser = {"main": getattr(mod, "build_parser", None), "compare_main": getattr(mod, "compare_parser", None),
                  "baseline_main": getattr(mod, "baseline_parser", None),
                  "history_main": getattr(mod, "history_parser", None)}[fn]()
        assert "--output" in parser._option_string_actions, name
    fig = importlib.import_module("fsadbench.cli.figures").build_parser()
    assert fig.parse_args(["bars", "--dataset", "d", "--shots", "1", "--output", "f/x"]).output == "f/x"
    assert fig.parse_args(["grid", "--category", "c", "--output", "f/y"]).output == "f/y"
    assert fig.parse_args(["grid", "--category", "c", "--out", "f/z"]).output == "f/z"


def test_unknown_command(capsys):
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_deprecated_option_is_one_note_line(capsys, tmp_path):
    import warnings

    argv = ["--methods", "memory", "--method-option", "memory.layers=3", "--shots", "1", "--seeds", "0",
            "--results-dir", str(tmp_path / "r"), "--dry-run"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Python's default for DeprecationWarning: the CLI still says it
        assert main(argv) == 0
    out = capsys.readouterr()
    notes = [line for line in out.err.splitlines() if line.startswith("note:")]
    assert notes == ["note: method 'memory': option 'layers' is deprecated; use 'memory_layers'"]
    assert "memory[memory_layers=3]" in out.err  # the plan (stderr) names the current option


def test_list_verbose_shows_options_defaults_and_paper(capsys):
    assert main(["list", "--verbose"]) == 0
    out = capsys.readouterr().out
    assert "apt: APT: Adaptive Prompt Tuning" in out and "Chen et al. 2025" in out
    assert "winclip: WinCLIP and WinCLIP+ (Jeong et al., CVPR 2023)" in out
    assert "scales      = (2, 3)" in out  # winclip's option with its default
    assert "generic_only" in out and "(set by 'promptad-g')" in out
    assert "mvtec: MVTec AD (Bergmann et al., CVPR 2019)" in out and "bottle" in out
    assert main(["list", "--method", "anople-oc"]) == 0
    assert "fit per category" in capsys.readouterr().out  # the registered options decide the scope


# -- RunConfig.from_cli ----------------------------------------------------------------------------------
def _ns(**kw):
    return argparse.Namespace(**kw)


def test_from_cli_without_datasets_is_the_pipeline_check():
    cfg = RunConfig.from_cli(_ns(methods="apt,winclip", shots="1,2,4"))
    smoke = PRESETS["smoke"]
    assert cfg.preset == PIPELINE_CHECK
    assert [d.name for d in cfg.datasets] == ["synthetic"] and cfg.datasets[0].categories == ["stripes", "disc"]
    assert (cfg.model, cfg.pretrained) == (smoke["backbone"]["model"], "none")
    assert [m.name for m in cfg.methods] == ["apt", "winclip"] and cfg.shots == [1, 2, 4]
    assert cfg.results_dir == smoke["results_dir"] and cfg.protocol.eval_size == 120


@pytest.mark.parametrize("flags", [{"pretrained": "laion400m_e32"}, {"model": "ViT-B-16"}, {"preset": "paper"}])
def test_from_cli_real_backbone_without_datasets_asks_for_them(flags):
    with pytest.raises(ConfigError, match="--datasets"):
        RunConfig.from_cli(_ns(methods="apt", **flags))


def test_from_cli_builds_everything_once():
    cfg = RunConfig.from_cli({"methods": "memory", "datasets": "mvtec,visa", "categories": "bottle, grid",
                              "eval_size": 224, "sigma": 2.0, "max_test_images": 5, "model": "fsad-tiny-vit",
                              "pretrained": "none", "method_option": ["memory.layers=[2, 4]"], "amp": False})
    assert cfg.preset is None and [d.name for d in cfg.datasets] == ["mvtec", "visa"]
    assert all(d.categories == ["bottle", "grid"] for d in cfg.datasets)
    assert (cfg.protocol.eval_size, cfg.protocol.sigma, cfg.protocol.max_test_images) == (224, 2.0, 5)
    assert cfg.methods[0].options == {"memory_layers": [2, 4]} and cfg.amp is False  # old name made current
    assert cfg.results_dir == "results/run"  # the same default report, status and figures read
    from fsadbench.cli.common import DEFAULT_RESULTS_DIR

    assert DEFAULT_RESULTS_DIR == RunConfig().results_dir


def test_from_cli_config_file_with_datasets_keeps_its_backbone(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("datasets: [mvtec]\nbackbone: {model: ViT-B-16, pretrained: openai}\n")
    cfg = RunConfig.from_cli({"config": str(f), "shots": "1"})
    assert (cfg.model, cfg.pretrained, cfg.shots) == ("ViT-B-16", "openai", [1])


def test_from_cli_unknown_preset():
    with pytest.raises(ConfigError, match="unknown; known presets"):
        RunConfig.from_cli({"preset": "nope"})
