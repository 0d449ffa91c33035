"""The recorded commit is the one of the repository the user runs in, not the installed package's."""

import shutil
import subprocess
from pathlib import Path

import pytest

from fsadbench.core.provenance import git_state, provenance

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
PACKAGE_REPO = Path(__file__).resolve().parents[2]


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


def test_commit_comes_from_the_working_repository(tmp_path, monkeypatch):
    work = tmp_path / "my-experiments"
    work.mkdir()
    _git(work, "init", "-q")
    (work / "plugin.py").write_text("x = 1\n")
    _git(work, "add", "plugin.py")
    _git(work, "commit", "-qm", "my plugin")
    head = _git(work, "rev-parse", "HEAD")
    monkeypatch.chdir(work)
    g = provenance("cpu")["git"]
    assert g["commit"] == head and g["dirty"] is False and Path(g["repo"]) == work.resolve()
    (work / "plugin.py").write_text("x = 2\n")
    sub = work / "configs"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert git_state()["commit"] == head and git_state()["dirty"] is True  # a sub-folder: the same checkout


def test_outside_any_repository_the_package_checkout_is_recorded(tmp_path, monkeypatch):
    if not (PACKAGE_REPO / ".git").exists():
        pytest.skip("the package is not a git checkout here")
    monkeypatch.chdir(tmp_path)
    if subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True).returncode == 0:
        pytest.skip("the temporary folder is inside a git repository")
    assert git_state()["commit"] == _git(PACKAGE_REPO, "rev-parse", "HEAD")


def test_results_written_under_results_do_not_make_the_tree_dirty(tmp_path):
    """A run writing into a tracked results folder (the smoke baseline) records the code it ran as clean."""
    from fsadbench.core.gitinfo import tree_state

    (tmp_path / "results" / "baselines").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "baselines" / "r.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "code and a baseline")
    (tmp_path / "results" / "baselines" / "r.json").write_text('{"new": 1}\n')
    assert tree_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert tree_state(tmp_path)["dirty"] is True
