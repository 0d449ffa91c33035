"""A plugin package outside the repository, installed for one test: the entry-point tests of registries."""

from __future__ import annotations

import textwrap


def install_plugin(tmp_path, monkeypatch, group: str, entry: str, source: str) -> None:
    """Write the package named in ``entry`` (``name = "package:attr"``, one a line; its ``__init__.py`` is
    ``source``, dedented) under ``tmp_path/"site"`` with the ``.dist-info`` that declares those entry points in
    ``group`` (what pip writes; written here, so no build backend or ``wheel`` is needed), and put that folder
    on ``sys.path`` for this test."""
    package = entry.splitlines()[0].split("=", 1)[1].strip().strip('"').split(":")[0].split(".")[0]
    target = tmp_path / "site"
    (target / package).mkdir(parents=True)
    (target / package / "__init__.py").write_text(textwrap.dedent(source))
    info = target / f"{package}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package.replace('_', '-')}\nVersion: 0.0.1\n")
    lines = [f"{k.strip()} = {v.strip().strip(chr(34))}" for k, v in (ln.split("=", 1) for ln in entry.splitlines())]
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "\n".join(lines) + "\n")  # INI: values unquoted
    monkeypatch.syspath_prepend(str(target))
