"""Shared method option helpers (methods/common/options.py), option aliases and variant names."""

from __future__ import annotations

import math
import re
import types
from dataclasses import dataclass

import pytest
import torch

from fsadbench.core.errors import ConfigError
from fsadbench.core.variants import VARIANTS, W_VG, WO_VG
from fsadbench.methods.common.options import LOGIT_SCALES, int_tuple, resolve_logit_scale
from fsadbench.protocol.method import Method


def test_variant_names():
    assert (WO_VG, W_VG) == VARIANTS == ("w/o VG", "w/ VG") and Method.variants == VARIANTS


def test_int_tuple_lists_single_values_and_errors():
    assert int_tuple([3, "8"], "m", "memory_layers") == (3, 8)
    assert int_tuple((2,), "m", "vv_blocks") == (2,)
    assert int_tuple(8, "m", "vv_blocks") == (8,)  # a single block from the CLI
    assert int_tuple("7", "m", "vv_blocks") == (7,)
    assert int_tuple([2.0], "m", "vv_blocks") == (2,)  # a whole number written as a float
    with pytest.raises(ConfigError, match=r"^apt option 'vv_blocks' must be a list of block numbers, e\.g\. "
                                          r"\[3, 8\]; 'x' \(item 1\) is not an integer \(got \['x'\]\)$"):
        int_tuple(["x"], "apt", "vv_blocks")
    for bad, item in (([2, 3.5], "3.5 (item 2)"), ([True], "True (item 1)"), ([1, [3]], "[3] (item 2)"),
                      (None, "None (item 1)")):
        with pytest.raises(ConfigError, match=re.escape(f"must be a list of window sizes; {item} is not an")):
            int_tuple(bad, "m", "scales", what="window sizes")


def _model(raw: float):
    return types.SimpleNamespace(logit_scale=torch.nn.Parameter(torch.tensor(raw)))


def test_logit_scale_choices():
    assert LOGIT_SCALES == ("exp", "raw")
    ln = math.log(1 / 0.07)
    assert resolve_logit_scale(_model(ln), "exp", "m") == pytest.approx(1 / 0.07, rel=1e-6)
    assert resolve_logit_scale(_model(ln), "raw", "m") == pytest.approx(ln, rel=1e-6)
    assert resolve_logit_scale(_model(math.log(500.0)), "exp", "m") == 100.0  # CLIP's clamp
    assert resolve_logit_scale(_model(ln), 0.5, "m") == 0.5 and resolve_logit_scale(_model(ln), 3, "m") == 3.0
    for bad in (0, -1.0):
        with pytest.raises(ConfigError, match=rf"^m option 'logit_scale' must be > 0, got {bad!r}$"):
            resolve_logit_scale(_model(ln), bad, "m")
    with pytest.raises(ConfigError, match=r"^m option 'logit_scale' must be one of \('exp', 'raw'\) or a positive "
                                          r"number, got 'log'$"):
        resolve_logit_scale(_model(ln), "log", "m")
    with pytest.raises(ConfigError):
        resolve_logit_scale(_model(ln), True, "m")  # a bool is not a number here


class _Toy(Method):
    name = "toy"
    option_aliases = {"old": "new", "flag": ("mode", lambda v: "on" if v else "off")}

    @dataclass
    class Options:
        new: int = 1
        mode: str = "off"

    def fit(self, normals, category):
        pass

    def predict(self, images):
        return {}


def test_option_aliases_warn_convert_and_conflict():
    with pytest.warns(DeprecationWarning, match=r"^method 'toy': option 'old' is deprecated; use 'new'$"):
        assert _Toy.make_options({"old": 5}).new == 5
    with pytest.warns(DeprecationWarning, match="'flag' is deprecated; use 'mode'"):
        assert _Toy.canonical_options({"flag": True}) == {"mode": "on"}
    with pytest.raises(ConfigError, match=r"options 'old' and 'new' name the same setting; give only 'new'"):
        _Toy.make_options({"old": 1, "new": 2})
    assert _Toy.canonical_options({"new": 3}) == {"new": 3}
    t = _Toy(ctx=None, new=4)
    assert t.describe() == {"options_resolved": {"new": 4, "mode": "off"}, "fidelity_notes": []}


# Equivalent mutants (mutmut, methods/common/options.py):
EQUIVALENT_MUTANTS = {
    "int_tuple: raise ValueError(v) -> ValueError(None)": "the ValueError is only a signal: the ConfigError it "
                                                         "becomes names the item itself",
}
