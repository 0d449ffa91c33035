"""Results follow the code: a plugin's code fingerprint is in its resume key; a built-in's code is pinned.

A plugin (a method class outside fsadbench) recomputes its cells after an edit of its package, and the
plan says so; layout, comments and docstrings do not count. A built-in method keeps ``version`` as its
code identity (records stay valid across releases that do not touch it, the smoke baseline keeps its
keys); its normalised code is pinned here beside its version, so an edit fails until the version is
bumped (numbers can change) or the pin refreshed (they cannot):

    python tests/unit/test_method_code.py --update
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from fsadbench.core.builtin import BUILTIN_METHODS
from fsadbench.core.registry import METHODS, Entry
from fsadbench.run.codeprint import builtin_files, code_fingerprint, digest, is_builtin, normalised_source

GOLDEN = Path(__file__).parent / "golden" / "method_code.json"

PLUGIN = '''
"""A plugin method in a package of its own."""
import torch

from fsadbench.core.types import Prediction
from fsadbench.protocol.method import Method

from .helpers import SCALE


class Plug(Method):
    name = "codeplug"
    paper = "test plugin"
    variants = ("w/ VG",)

    def fit(self, normals, category):
        pass

    def predict(self, images):
        maps = self.ctx.features.pixels(images).mean(1) * SCALE  # one channel mean per pixel
        return {"w/ VG": Prediction(maps=maps, scores=maps.flatten(1).amax(1))}
'''


def builtin_pins() -> dict[str, dict]:
    """{registered class "module:attr": {"version", "code"}} of every built-in method class."""
    out = {}
    for target, _ in BUILTIN_METHODS.values():
        name = target
        cls = METHODS.get(next(n for n, (t, _) in BUILTIN_METHODS.items() if t == target))[0]
        out[name] = {"version": int(cls.version), "code": code_fingerprint(cls)}
    return dict(sorted(out.items()))


def test_normalised_source_ignores_layout_comments_and_docstrings_but_not_code():
    a = 'def f(x):\n    """Doc."""\n    return x + 1\n'
    b = 'def f(x):  # a comment\n\n    """Other words."""\n    return (x +   1)\n'
    c = 'def f(x):\n    return x + 2\n'
    assert normalised_source(a) == normalised_source(b) == "def f(x):\n    return x + 1"
    assert normalised_source(c) != normalised_source(a)
    assert normalised_source('"""Module doc."""\nX = 1\n') == "X = 1"
    assert normalised_source('def g():\n    """Only a doc."""\n') == "def g():\n    pass"
    assert digest({"m": a}) == digest({"m": b}) != digest({"m": c})
    assert digest({"m": a}) != digest({"n": a})  # the file name counts (a moved function is a change)


def test_builtin_code_is_pinned_with_its_version():
    pins = json.loads(GOLDEN.read_text())
    now = builtin_pins()
    assert set(pins) == set(now), "run `python tests/unit/test_method_code.py --update`"
    for target, pin in pins.items():
        if now[target] != pin:
            pytest.fail(f"{target}: code {pin['code']} -> {now[target]['code']} (version {pin['version']} -> "
                        f"{now[target]['version']}). If its numbers can change, bump the method's `version` "
                        "(records of the old code are then recomputed); either way refresh the pin with "
                        "`python tests/unit/test_method_code.py --update`")


def test_builtin_code_covers_its_package_and_the_common_modules_it_imports():
    patchcore = METHODS.get("patchcore")[0]
    files = builtin_files(patchcore)
    assert {"fsadbench.methods.patchcore.model", "fsadbench.methods.patchcore.torch_model",
            "fsadbench.methods.common.knn", "fsadbench.methods.common.baseline"} <= set(files)
    assert "fsadbench.methods.common.perlin" not in files and "fsadbench.methods.padim.model" not in files
    memory = builtin_files(METHODS.get("memory")[0])
    assert "fsadbench.methods.memory" in memory and "fsadbench.methods.common.visual_memory" in memory
    assert "fsadbench.methods.promptad" not in memory


def test_builtin_resume_key_has_no_code_a_plugin_key_has_it(plugin):
    from fsadbench.run.config import RunConfig, apply_mapping
    from fsadbench.run.identity import static_identity
    from fsadbench.run.plan import Job

    assert is_builtin(METHODS.get("memory")[0]) and not is_builtin(plugin())
    cfg = apply_mapping(RunConfig(), {"methods": ["memory", "codeplug"], "datasets": ["synthetic"]}, "test")
    ds = cfg.datasets[0]
    assert "code" not in static_identity(cfg, Job(cfg.methods[0], ds, ["disc"], 1, 0))["method"]
    assert static_identity(cfg, Job(cfg.methods[1], ds, ["disc"], 1, 0))["method"]["code"] == \
        code_fingerprint(plugin())


@pytest.fixture()
def plugin(tmp_path, monkeypatch):
    """Writes the package ``codeplug`` (model + helpers) and registers it; calling the fixture's value
    (re)imports it after an edit (a new class, as a fresh process would see) and returns the class."""
    pkg = tmp_path / "src" / "codeplug"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "model.py").write_text(textwrap.dedent(PLUGIN))
    (pkg / "helpers.py").write_text("SCALE = 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "src"))

    def load():
        for m in [m for m in sys.modules if m == "codeplug" or m.startswith("codeplug.")]:
            monkeypatch.delitem(sys.modules, m)
        monkeypatch.setitem(METHODS._entries, "codeplug", Entry("codeplug", "codeplug.model:Plug"))
        return METHODS.get("codeplug")[0]

    load.package = pkg
    load()
    return load


def test_plugin_fingerprint_follows_its_package_not_its_layout(plugin):
    first = code_fingerprint(plugin())
    model = plugin.package / "model.py"
    model.write_text(model.read_text().replace("pass", "pass  # nothing to learn") + "\n\n# the end\n")
    assert code_fingerprint(plugin()) == first  # a comment and blank lines: same code
    (plugin.package / "helpers.py").write_text("SCALE = 2.0\n")  # a helper module of the package
    assert code_fingerprint(plugin()) != first


def test_a_plugin_no_longer_importable_by_name_keeps_its_fingerprint(plugin, tmp_path, monkeypatch):
    """A process that registered a plugin from a path and then dropped the path and the module (status after a
    run, a notebook) fingerprints the same files: the class's functions name them. Seen failing: "unknown",
    so every record of the run read as "from another config"."""
    from fsadbench.run.codeprint import plugin_files

    cls = plugin()
    expected = digest({k: p.read_text() for k, p in plugin_files(cls).items()})
    assert set(plugin_files(cls)) == {"__init__.py", "model.py", "helpers.py"}
    for m in [m for m in sys.modules if m == "codeplug" or m.startswith("codeplug.")]:
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path / "src")])
    code_fingerprint.cache_clear()
    assert set(plugin_files(cls)) == {"__init__.py", "model.py", "helpers.py"}
    assert code_fingerprint(cls) == expected != "unknown"


def test_editing_a_plugin_recomputes_its_cells_and_the_plan_says_so(plugin, tmp_path):
    import fsadbench

    cfg = {"methods": ["codeplug"], "shots": [1], "seeds": [0],
           "datasets": [{"name": "synthetic", "categories": ["disc"],
                         "options": {"size": 64, "n_train": 2, "n_test_good": 2, "n_test_bad": 2}}],
           "backbone": {"model": "fsad-tiny-vit", "pretrained": "none"}, "protocol": {"eval_size": 32},
           "results_dir": str(tmp_path / "res"), "cache_dir": str(tmp_path / "cache")}
    lines: list[str] = []
    assert fsadbench.run(cfg, log=lines.append).summary.computed == 1
    again = fsadbench.run(cfg, log=lines.append).summary
    assert (again.computed, again.skipped) == (0, 1)  # unchanged code resumes
    (plugin.package / "helpers.py").write_text("SCALE = 3.0\n")
    plugin()
    lines.clear()
    edited = fsadbench.run(cfg, log=lines.append).summary
    assert (edited.computed, edited.skipped) == (1, 0)
    assert any("method code changed since 1 record(s) of codeplug: recomputed" in x for x in lines), lines
    assert any("method.code:" in x for x in lines), lines  # the superseded record names the change
    assert len(list((tmp_path / "res" / "superseded").rglob("*.json"))) >= 1


if __name__ == "__main__" and sys.argv[1:] == ["--update"]:
    GOLDEN.write_text(json.dumps(builtin_pins(), indent=1) + "\n")
    print(f"wrote {GOLDEN}")
