"""Architecture checks: layers import only downward, no private names across modules, torch-free datasets."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"bench": "fsadbench", "methods": "fsadbench.methods", "datasets": "fsadbench.datasets"}
# lowest first; a module may import from its own layer and any layer below it
LAYERS = ["core", "backbone", "datasets", "protocol", "methods", "results", "run", "reports", "regression", "cli"]


def modules() -> dict[str, Path]:
    out = {}
    for folder, pkg in ROOTS.items():
        for path in (REPO / folder).rglob("*.py"):
            rel = path.relative_to(REPO / folder).with_suffix("").parts
            name = ".".join((pkg, *rel))
            out[name.removesuffix(".__init__")] = path
    return out


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) < 2 or parts[0] != "fsadbench":
        return None
    return parts[1] if parts[1] in LAYERS else None


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, imported module, imported names) of every import, lazy ones inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((node.lineno, a.name, []) for a in node.names)
    return out


MODULES = modules()


def test_the_walker_sees_every_layer():
    seen = {layer_of(m) for m in MODULES}
    assert set(LAYERS) <= seen, f"layers without modules: {set(LAYERS) - seen}"


def test_no_import_from_a_higher_layer():
    bad = []
    for mod, path in MODULES.items():
        src = layer_of(mod)
        if src is None:
            continue
        for line, target, _ in imports(path):
            dst = layer_of(target)
            if dst is not None and LAYERS.index(dst) > LAYERS.index(src):
                bad.append(f"{path.relative_to(REPO)}:{line}: {src} imports {target} ({dst})")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_private_name_imported_across_modules():
    bad = []
    for mod, path in MODULES.items():
        for line, target, names in imports(path):
            if not target.startswith("fsadbench"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            private += [p for p in target.split(".") if p.startswith("_") and p != "__init__"]
            if private:
                bad.append(f"{path.relative_to(REPO)}:{line}: from {target} import {', '.join(private)}")
    assert not bad, "private imports across modules:\n" + "\n".join(bad)


FILE_NAMES = {"path", "open", "read_rgb", "load_image", "load_pixels", "read_bytes", "read_text", "write_bytes",
              "write_text", "atomic_write_bytes"}


def file_access(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every file-touching name in a module: FILE_NAMES, torch.save / torch.load."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            torch_io = node.attr in ("save", "load") and getattr(node.value, "id", "") == "torch"
            if node.attr in FILE_NAMES or torch_io:
                out.append((node.lineno, node.attr))
        elif isinstance(node, ast.Name) and node.id in FILE_NAMES:
            out.append((node.lineno, node.id))
    return out


def test_methods_never_touch_files():
    """A method gets pixels and features from the feature store: no paths, file reads or writes."""
    bad = []
    for mod, path in MODULES.items():
        if layer_of(mod) != "methods":
            continue
        tree = ast.parse(path.read_text(), str(path))
        bad += [f"{path.relative_to(REPO)}:{line}: {name}" for line, name in file_access(tree)]
        bad += [f"{path.relative_to(REPO)}:{line}: imports {t}" for line, t, _ in imports(path)
                if t.split(".")[0] in ("pathlib", "os", "shutil", "PIL") or t == "fsadbench.core.io"]
    assert not bad, "methods reaching for files (use ctx.features.pixels / get):\n" + "\n".join(bad)


def test_file_access_finds_what_the_old_anople_loader_did():
    old = "def f(refs):\n    return [load_image(r.path) for r in refs] + [torch.load(p) for p in refs]\n"
    assert sorted(n for _, n in file_access(ast.parse(old))) == ["load", "load_image", "path"]


def test_modules_stay_small():
    big = {str(p.relative_to(REPO)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > 350}
    assert not big, f"modules over 350 lines (split where the concerns part): {big}"


@pytest.mark.parametrize("module", ["fsadbench.datasets.mvtec", "fsadbench.datasets.synthetic",
                                    "fsadbench.core.registry", "fsadbench.results.records"])
def test_torch_free_imports(module):
    code = f"import sys, {module}; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False", f"importing {module} loads torch"
