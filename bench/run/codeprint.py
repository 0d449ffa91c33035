"""The code fingerprint of a method: what makes a plugin's records follow its code.

A method's numbers depend on its code. Two rules, one per kind of method:

* a **plugin** (a method class outside ``fsadbench``: an entry point, a notebook's class) gets the
  fingerprint of its code in its resume key (``identity.method.code``). The code is the package that
  holds the class's module (that folder and its subfolders, every ``.py`` file), or the module alone
  when it is top-level (``my_methods.py``), or the class's own source when it has no file (a notebook
  cell). Editing it recomputes the method's cells on the next run; the old records move to
  ``superseded/`` and the plan line says "method code changed since N record(s)";
* a **built-in** method keeps ``version`` as its only code identity, so records stay valid across
  releases that do not touch a method (and the committed smoke baseline keeps its keys). Its code
  (its module or package, plus the ``methods/common`` modules it imports) is pinned in
  ``tests/unit/golden/method_code.json`` beside its version: an edit that changes the code fails that
  test until the version is bumped (numbers change: old records are recomputed) or the pin is refreshed
  (numbers cannot change), ``python tests/unit/test_method_code.py --update``.

The fingerprint hashes the normalised source: the syntax tree without docstrings, comments or layout
(``ast.unparse``), so rewording a docstring, a comment or re-indenting does not count; any change of
code does.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import sys
import textwrap
from pathlib import Path

BUILTIN_PACKAGE = "fsadbench"
COMMON = "fsadbench.methods.common"


def normalised_source(source: str) -> str:
    """``source`` as ``ast.unparse`` writes it, every docstring dropped (comments never reach the tree)."""
    tree = ast.parse(textwrap.dedent(source))
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and body \
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def is_builtin(cls: type) -> bool:
    """Whether ``cls`` ships with fsad-bench (its code identity is ``version``, see the module docstring)."""
    return cls.__module__.split(".")[0] == BUILTIN_PACKAGE


def digest(files: dict[str, str]) -> str:
    """sha256 (16 hex digits) over (name, normalised source) pairs in name order."""
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + normalised_source(files[name]).encode() + b"\0")
    return h.hexdigest()[:16]


def package_files(module_name: str) -> dict[str, Path]:
    """The ``.py`` files of a method's code: the package holding ``module_name`` (recursively), or the
    module's own file when it is top-level; {} when the module has no file."""
    module = sys.modules.get(module_name) or importlib.import_module(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return {}
    path = Path(file)
    if getattr(module, "__path__", None) is None and not (module.__package__ or ""):
        return {path.name: path}
    folder = path.parent
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*.py"))}


def plugin_files(cls: type) -> dict[str, Path]:
    """A plugin's code (:func:`package_files` of its module). When the module is no longer importable by name
    (a plugin loaded from a path that has since left ``sys.path``, or dropped from ``sys.modules``), its file
    is read from the class's own functions, so the same class gives the same fingerprint either way."""
    module = sys.modules.get(cls.__module__)
    if module is not None and getattr(module, "__file__", None):
        return package_files(cls.__module__)
    for value in vars(cls).values():
        code = getattr(getattr(value, "__func__", value), "__code__", None)
        if code is not None and Path(code.co_filename).is_file():
            path = Path(code.co_filename)
            if "." not in cls.__module__:  # a top-level module: its file alone
                return {path.name: path}
            return {q.relative_to(path.parent).as_posix(): q for q in sorted(path.parent.rglob("*.py"))}
    return package_files(cls.__module__)


def common_imports(files: dict[str, Path]) -> dict[str, Path]:
    """The ``fsadbench.methods.common`` modules the files import, transitively."""
    out: dict[str, Path] = {}
    todo = list(files.values())
    while todo:
        tree = ast.parse(todo.pop().read_text(encoding="utf-8"))
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        for name in names:
            if name.startswith(COMMON + ".") and name not in out:
                mod = importlib.import_module(name)
                out[name] = Path(mod.__file__)
                todo.append(out[name])
    return out


def builtin_files(cls: type) -> dict[str, Path]:
    """A built-in method's code: its module (or its package under ``methods/``, without ``common``)
    and the ``methods/common`` modules it imports, by module-like name."""
    module = cls.__module__
    parts = module.split(".")
    if parts[:2] == ["fsadbench", "methods"] and len(parts) > 3 and parts[2] != "common":
        pkg = ".".join(parts[:3])
        own = {f"{pkg}.{k[:-3].replace('/', '.')}": v for k, v in package_files(module).items()}
    else:
        own = {module: Path(importlib.import_module(module).__file__)}
    return {**own, **common_imports(own)}


@functools.lru_cache(maxsize=None)
def code_fingerprint(cls: type) -> str:
    """The fingerprint of ``cls``'s code (computed once per class object: a reloaded module is a new
    class); "unknown" when neither a file nor the class's source can be read."""
    try:
        paths = builtin_files(cls) if is_builtin(cls) else plugin_files(cls)
        if paths:
            return digest({k: p.read_text(encoding="utf-8") for k, p in paths.items()})
        return digest({cls.__qualname__: inspect.getsource(cls)})
    except (OSError, TypeError, SyntaxError, ImportError):  # no source anywhere: the version alone
        return "unknown"
