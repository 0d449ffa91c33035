"""Drills of issue 26, class 2: every output goes through the atomic writer.

``report --output`` in every format, ``compare`` / ``history`` / ``paper-table
--output``, figures: on a full disk (ENOSPC), a read-only folder (EROFS) or
beyond the process's file-size limit (EFBIG, ``ulimit -f``) the previous file
stays whole, no temp file is left, and the error is the one-line "cannot
write" message, never ``OSError: [Errno ...]``. Files are created following
the umask (mkstemp's 0600 was unreadable to a group sharing a results folder),
and a reader that goes away (``compare ... | head``) is not an error.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fsadbench.cli import main
from fsadbench.core.io import atomic_write_text

BASELINE = Path(__file__).resolve().parents[2] / "results" / "baselines" / "smoke"
OLD = b"previous complete file\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """A private copy of the committed smoke baseline (records of memory, winclip, apt)."""
    dst = tmp_path_factory.mktemp("outputs") / "res"
    shutil.copytree(BASELINE, dst)
    return dst


def _commands(res: Path, out: Path) -> dict[str, list[str]]:
    r = ["--results-dir", str(res)]
    return {
        "markdown": ["report", *r, "--output", str(out)],
        "latex": ["report", *r, "--format", "latex", "--output", str(out)],
        "csv": ["report", *r, "--format", "csv", "--output", str(out)],
        "json": ["report", *r, "--format", "json", "--output", str(out)],
        "html": ["report", *r, "--format", "html", "--output", str(out)],
        "compare": ["compare", str(res), str(res), "--output", str(out)],
        "history": ["history", "--method", "memory", "--dataset", "synthetic", *r, "--output", str(out)],
        "paper": ["paper-table", "--table", "apt_table1", *r, "--output", str(out)],
        "figure": ["figures", "bars", "--dataset", "synthetic", "--shots", "1", *r, "--output", str(out)],
    }


def _no_space_after(n: int, monkeypatch) -> None:
    real = os.write
    budget = [n]

    def write(fd, data):
        if fd <= 2:
            return real(fd, data)
        if budget[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real(fd, bytes(data[:budget[0]]))  # a part goes out, then the disk is full
        budget[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)


def _error_line(capsys) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error")]
    assert len(err) == 1, err
    assert "Errno" not in err[0] and "OSError" not in err[0] and "Traceback" not in err[0]
    return err[0]


@pytest.mark.parametrize("kind", ["markdown", "latex", "csv", "json", "html", "compare", "history", "paper",
                                  "figure"])
def test_a_full_disk_keeps_the_previous_output_whole(results, tmp_path, monkeypatch, capsys, kind):
    out = tmp_path / "o" / ("fig.png" if kind == "figure" else "out.txt")
    out.parent.mkdir()
    out.write_bytes(OLD)
    _no_space_after(20, monkeypatch)
    rc = main(_commands(results, out)[kind])
    line = _error_line(capsys)
    assert rc == 2 and line.startswith(f"error: no space left on the device holding {out.parent}"), line
    assert out.read_bytes() == OLD  # never a partial file
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temp file left


@pytest.mark.parametrize("kind", ["html", "figure"])
def test_a_read_only_folder_is_the_one_line_cannot_write_message(results, tmp_path, monkeypatch, capsys, kind):
    out = tmp_path / "ro" / ("fig" if kind == "figure" else "report.html")

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr("tempfile.mkstemp", read_only)
    rc = main(_commands(results, out)[kind])
    line = _error_line(capsys)
    assert rc == 2 and line.startswith(f"error: cannot write to {out.parent}") and "Read-only" in line, line


def test_the_file_size_limit_is_the_one_line_cannot_write_message(results, tmp_path):
    out = tmp_path / "report.html"
    out.write_bytes(OLD)
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)); "
            "from fsadbench.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.run([sys.executable, "-c", code, "report", "--results-dir", str(results), "--format", "html",
                        "--output", str(out)], capture_output=True, text=True, timeout=120)
    err = [ln for ln in p.stderr.splitlines() if ln.startswith("error")]
    assert p.returncode == 2 and len(err) == 1, p.stderr
    assert err[0].startswith(f"error: cannot write to {tmp_path}") and "file-size limit" in err[0], err
    assert out.read_bytes() == OLD and sorted(x.name for x in tmp_path.iterdir()) == ["report.html"]


def test_an_output_path_that_is_a_folder_or_under_a_file_is_one_line(results, tmp_path, capsys):
    (tmp_path / "dir.md").mkdir()
    assert main(["report", "--results-dir", str(results), "--output", str(tmp_path / "dir.md")]) == 2
    assert "it is a folder; give a file name" in _error_line(capsys)
    (tmp_path / "f").write_text("x")
    assert main(["report", "--results-dir", str(results), "--output", str(tmp_path / "f" / "out.md")]) == 2
    assert f"{tmp_path / 'f'} is a file, not a folder" in _error_line(capsys)


@pytest.mark.parametrize("mask, mode", [(0o002, 0o664), (0o022, 0o644)])
def test_files_follow_the_umask(tmp_path, mask, mode):
    old = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "r.json").stat().st_mode) == mode


@pytest.mark.slow
def test_a_sweep_writes_records_scores_and_run_json_group_readable(tmp_path):
    old = os.umask(0o002)
    try:
        rc = main(["--preset", "smoke", "--methods", "memory", "--categories", "disc", "--shots", "1", "--seeds",
                   "0", "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"),
                   "--no-progress"])
        assert main(["report", "--results-dir", str(tmp_path / "res"), "--output",
                     str(tmp_path / "res" / "t.md")]) == 0
    finally:
        os.umask(old)
    assert rc == 0
    files = [p for p in (tmp_path / "res").rglob("*") if p.is_file()]
    kinds = {p.name if p.name in ("run.json", "t.md") else "".join(p.suffixes) for p in files}
    assert {"run.json", "t.md", ".json", ".scores.npz"} <= kinds, kinds
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {"0o664"}


def test_a_reader_that_goes_away_is_not_an_error(results):
    code = "import sys; from fsadbench.cli import main; sys.exit(main(sys.argv[1:]))"
    p = subprocess.Popen([sys.executable, "-c", code, "compare", str(results), str(results), "--all-cells"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # `| head` that has already exited
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0 and err.strip() == "", err


SIGTERM_MID_WRITE = """
import os, signal, sys
import fsadbench.cli as cli
import fsadbench.cli.report as report
from fsadbench.core.io import atomic_write_text


def killed_mid_write(argv):  # a report whose table write is cut by SIGTERM after the temporary file exists
    os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGTERM)
    atomic_write_text(os.path.join(sys.argv[2], "table.md"), "| a |" * 1000)
    return 0


setattr(report, sys.argv[1], killed_mid_write)
sys.exit(cli.main([{"main": "report", "rescore_main": "rescore"}[sys.argv[1]]]))
"""


@pytest.mark.parametrize("fn", ["main", "rescore_main"])
def test_sigterm_during_report_or_rescore_leaves_no_temporary_file(tmp_path, fn):
    """report / rescore killed by SIGTERM mid-write: the temporary file is removed, one line, exit 143 (seen
    failing: the process died at once, -15, leaving a .tmp- file beside the outputs)."""
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-c", SIGTERM_MID_WRITE, fn, str(out)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 143, proc.stderr[-1500:]
    assert sorted(p.name for p in out.iterdir()) == []
    assert proc.stderr.strip().splitlines()[-1] == ("interrupted (signal 15); no file was left half-written, rerun "
                                                    "the same command")
