"""A plugin package outside the repository, installed for one test: the entry-point tests of registries."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def install_plugin(tmp_path, monkeypatch, group: str, entry: str, source: str) -> None:
    """Write the package named in ``entry`` (``name = "package:attr"``; its ``__init__.py`` is ``source``,
    dedented) declaring that entry point in ``group``, pip-install it into a folder under ``tmp_path`` and
    put that folder on ``sys.path`` for this test."""
    package = entry.split("=", 1)[1].strip().strip('"').split(":")[0]
    pkg = tmp_path / "plugin_src"
    (pkg / package).mkdir(parents=True)
    (pkg / package / "__init__.py").write_text(textwrap.dedent(source))
    (pkg / "pyproject.toml").write_text("\n".join([
        "[build-system]", 'requires = ["setuptools>=68"]', 'build-backend = "setuptools.build_meta"',
        "[project]", f'name = "{package.replace("_", "-")}"', 'version = "0.0.1"',
        f'[project.entry-points."{group}"]', entry, ""]))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(pkg)], check=True)
    monkeypatch.syspath_prepend(str(target))
