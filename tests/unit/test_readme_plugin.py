"""The README's template method is complete: it registers, lists, fits and predicts on the tiny backbone."""

import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from fsadbench.core import registry
from fsadbench.core.types import CategoryInfo

README = Path(__file__).resolve().parents[2] / "README.md"


def template_source() -> str:
    blocks = re.findall(r"```python\n(# my_methods\.py\n.*?)```", README.read_text(), re.S)
    assert len(blocks) == 1, "the README has one template method block starting with '# my_methods.py'"
    return blocks[0]


@pytest.fixture()
def template(monkeypatch):
    fresh = registry.Registry("method", "fsadbench.methods")  # keep the global registry unchanged
    monkeypatch.setattr(registry, "METHODS", fresh)
    module = types.ModuleType("my_methods")
    exec(compile(template_source(), "README.md:my_methods.py", "exec"), module.__dict__)
    return fresh, module


def test_template_method_registers_and_lists(template, capsys):
    from fsadbench.cli import main

    methods, module = template
    assert methods.get("patch-mean")[0] is module.PatchMean
    assert main(["list", "--method", "patch-mean"]) == 0
    out = capsys.readouterr().out
    assert "template method of the fsad-bench README" in out and "layer = 6" in out


def test_template_method_fits_and_predicts(template, method_ctx, tmp_path):
    from fixtures_layouts import random_image_refs

    _, module = template
    m = module.PatchMean(method_ctx, layer=3)
    normals = random_image_refs(tmp_path / "n", 2, 32, 32, seed=1)
    tests = random_image_refs(tmp_path / "t", 3, 32, 32, seed=2)
    m.fit(normals, CategoryInfo("synthetic", "c", "c"))
    pred = m.predict(tests)["w/ VG"]
    grid = method_ctx.backbone.grid
    assert pred.maps.shape == (3, *grid) and pred.scores.shape == (3,)
    assert np.allclose(pred.scores, pred.maps.reshape(3, -1).max(1))
    # hand check of one patch: 1 - cos(token, mean of the unit normal tokens of block 3)
    unit = torch.nn.functional.normalize
    tok = method_ctx.features.get(tests[:1], m.spec)["layer3"][0, 0]
    mean = unit(method_ctx.features.get(normals, m.spec)["layer3"], dim=-1).flatten(0, 1).mean(0)
    expected = 1 - torch.nn.functional.cosine_similarity(tok, mean, dim=0)
    assert pred.maps[0, 0, 0] == pytest.approx(float(expected), abs=1e-5)
    with pytest.raises(Exception, match="needs at least one normal shot"):
        module.PatchMean(method_ctx).fit([], CategoryInfo("synthetic", "c", "c"))
