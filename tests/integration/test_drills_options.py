"""Drills of issue 33, the options: absurd values refused at planning, one line naming option, value, range.

Ranges are declared once (``Options.ranges`` tables and the common names of
:mod:`fsadbench.protocol.optionranges`) and checked by one function, the same for
a run, a ``--dry-run`` and the Python API. Before: ``anople.crop_grid=64`` grew
the process until the kernel killed it, ``padim.reg=-1`` bolded a 50.00,
``padim.n_features=0`` ran with 550 channels, ``.nan`` stopped on a JSON error,
``1e-9`` was "not a number", ``@13`` and ``@²`` raw torch / int() errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest

from fsadbench.cli import main
from fsadbench.core.errors import ConfigError
from fsadbench.protocol.optionranges import COMMON_RANGES, Range, coerce_numbers, declared_ranges, range_error

PIPE = ["--categories", "disc", "--shots", "1", "--seeds", "0", "--no-progress"]


def _one_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert rc == 2 and len(lines) == 1, err
    return lines[0]


BAD = [
    ("anople.crop_grid=64", "method 'anople': option 'crop_grid' must be >= 1 and <= 4"),
    ("anople.crop_grid=1000", "(got 1000)"),
    ("padim.reg=-1", "method 'padim': option 'reg' must be > 0 (got -1)"),
    ("padim.reg=0", "option 'reg' must be > 0 (got 0)"),
    ("padim.n_features=0", "method 'padim': option 'n_features' must be >= 1 (got 0)"),
    ("padim.reg=.nan", "method 'padim': option 'reg' must be a finite number (got nan)"),
    ("anople.beta_max=.inf", "option 'beta_max' must be a finite number (got inf)"),
    ("anople.lr_prompt=-1", "method 'anople': option 'lr_prompt' must be > 0 (got -1)"),
    ("anople.momentum=-0.5", "option 'momentum' must be >= 0 and < 1 (got -0.5)"),
    ("promptad.momentum=-0.1", "method 'promptad': option 'momentum' must be >= 0 and < 1"),
    ("anople.weight_decay=-1", "option 'weight_decay' must be >= 0 (got -1)"),
    ("promptad.weight_decay=-1", "method 'promptad': option 'weight_decay' must be >= 0"),
    ("patchcore.target_dim=0", "method 'patchcore': option 'target_dim' must be >= 1 (got 0)"),
    ("anomalydino.backbone=dinov2-tiny@²", "the size after '@' must be a whole number of pixels (digits 0-9)"),
    ("anomalydino.backbone=dinov2-tiny@13", "image size 13 is below the model's patch size 14"),
]


@pytest.mark.parametrize("option, fragment", BAD)
def test_an_absurd_option_is_one_line_at_planning(tmp_path, capsys, option, fragment):
    rc = main(["--methods", option.split(".")[0], "--method-option", option, *PIPE,
               "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--dry-run"])
    assert fragment in _one_error(capsys, rc)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").rglob("*.json"))


@pytest.mark.parametrize("option, fragment", [BAD[2], BAD[4], BAD[5]])  # not crop_grid: if this
# regressed, a run with 64 would take the shared machine down with it
def test_a_run_and_the_python_api_refuse_the_same_way(tmp_path, capsys, option, fragment):
    import fsadbench

    rc = main(["--methods", option.split(".")[0], "--method-option", option, *PIPE,
               "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache")])
    assert fragment in _one_error(capsys, rc)  # before any cell
    name, _, rest = option.partition(".")
    key, _, value = rest.partition("=")
    value = {"-1": -1, "0": 0, ".nan": float("nan")}[value]
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        fsadbench.run({"model": "fsad-tiny-vit", "pretrained": "none", "methods": [{"name": name, "options": {key: value}}],
                       "datasets": [{"name": "synthetic", "categories": ["disc"]}], "shots": [1], "seeds": [0],
                       "results_dir": str(tmp_path / "api"), "cache_dir": str(tmp_path / "cache")})
    assert not (tmp_path / "api").exists() or not any((tmp_path / "api").rglob("*.json"))


def test_a_yaml_float_without_a_dot_is_a_number(tmp_path, capsys):
    rc = main(["--methods", "padim", "--method-option", "padim.reg=1e-9", *PIPE,
               "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 0 and "padim[reg=1e-09]" in err, err  # was: must be a number (got '1e-9')
    cfg = tmp_path / "c.yaml"
    cfg.write_text("methods:\n  - {name: padim, options: {reg: 1e-2}}\n")
    rc = main(["--config", str(cfg), *PIPE, "--results-dir", str(tmp_path / "r2"), "--cache-dir",
               str(tmp_path / "cache"), "--dry-run"])
    assert rc == 0 and "padim[reg=0.01]" in capsys.readouterr().err


def test_the_method_built_directly_checks_its_own_table(method_ctx):
    from fsadbench.methods.anople.model import AnoPLe

    with pytest.raises(ConfigError, match=r"option 'crop_grid' must be >= 1 and <= 4 .*\(got 64\)"):
        AnoPLe(method_ctx, crop_grid=64)
    with pytest.raises(ConfigError, match="option 'lr_prompt' must be > 0"):
        AnoPLe(method_ctx, lr_prompt=-1.0)


# -- the checker, hand-checked ---------------------------------------------------------------------------
def test_range_text_and_bounds_hand_checked():
    r = Range(ge=1, le=4, why="(x)")
    assert r.text() == ">= 1 and <= 4 (x)" and [r.holds(v) for v in (0, 1, 4, 4.5)] == [False, True, True, False]
    o = Range(gt=0, lt=1)
    assert o.text() == "> 0 and < 1" and [o.holds(v) for v in (0, 0.5, 1)] == [False, True, False]


def test_tables_merge_over_the_common_names_and_nan_anywhere_is_refused():
    @dataclass
    class Base:
        lr: float = 0.1
        a: int = 1
        ranges: ClassVar = {"a": Range(ge=1)}

    @dataclass
    class Sub(Base):
        b: tuple[float, ...] = (0.5,)
        ranges: ClassVar = {"a": Range(ge=2), "b": Range(ge=0)}

    assert declared_ranges(Sub) == {"lr": COMMON_RANGES["lr"], "a": Range(ge=2), "b": Range(ge=0)}
    assert declared_ranges(Sub, common=False) == {"a": Range(ge=2), "b": Range(ge=0)}
    assert range_error("m", {"a": 2, "b": [0.1, 3], "lr": 1e-3}, Sub) == ""
    assert range_error("m", {"a": 1}, Sub) == "method 'm': option 'a' must be >= 2 (got 1)"
    assert range_error("m", {"b": [0.1, -1]}, Sub) == "method 'm': option 'b' must be >= 0 (got [0.1, -1])"
    assert range_error("m", {"b": [float("inf")]}, Sub) == "method 'm': option 'b' must be a finite number (got [inf])"
    assert range_error("m", {"lr": 0}, Sub) == "method 'm': option 'lr' must be > 0 (got 0)"
    assert range_error("m", {"lr": 0}, Sub, common=False) == ""
    assert range_error("m", {"a": None, "lr": True}, Sub) == ""  # null and non-numbers: the type check's
    hints = {"lr": float, "x": float | None, "s": str}
    assert coerce_numbers({"lr": "1e-9", "x": "-2.5E3", "s": "1e-9", "y": "1e-9"}, hints) == \
        {"lr": 1e-9, "x": -2500.0, "s": "1e-9", "y": "1e-9"}
    assert coerce_numbers({"lr": "fast", "x": "1e"}, hints) == {"lr": "fast", "x": "1e"}
