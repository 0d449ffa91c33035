"""Drills of issue 26, class 1: resource bombs and hostile config files.

A few hundred bytes of nested YAML aliases (a "billion laughs") in a config file
or a ``--method-option`` value (before: planning hung while memory grew past
gigabytes), and an image whose header claims 30000 x 30000 pixels, are refused in one line naming the file and key / the file; a check or
a sweep goes on past a too-large image. Also the config weak spots: YAML syntax
errors, binary files and folders given as ``--config``, duplicate keys, and a
method option of the wrong type.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from fixtures_layouts import make_mvtec
from fsadbench.cli import main
from fsadbench.core.errors import ConfigError, DataError
from fsadbench.core.io import image_info, read_mask, read_rgb

LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9))


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _one_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err
    assert rc == 2 and len(_lines(err)) == 1 and err.startswith("error: "), err
    return err


# -- aliases ------------------------------------------------------------------------------------------
def test_a_billion_laughs_config_is_refused_at_once_naming_file_and_key(tmp_path, capsys):
    cfg = tmp_path / "bomb.yaml"
    cfg.write_text(f"methods: [memory]\nshots: [1]\n{LAUGHS.replace('l8:', 'seeds:')}")
    assert len(LAUGHS) < 1000  # 9 ** 9 = 387 million items once expanded
    rc = main(["--config", str(cfg), "--results-dir", str(tmp_path / "res"), "--no-progress", "--dry-run"])
    err = _one_error(capsys, rc)
    assert str(cfg) in err and "key 'l1[0]'" in err and "alias" in err
    assert not (tmp_path / "res").exists()


def test_an_alias_in_a_method_option_value_is_refused_naming_the_option(tmp_path, capsys):
    value = "{" + ", ".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else '1'] * 9)}]" for i in range(9)) + "}"
    rc = main(["--methods", "memory", "--method-option", f"memory.memory_layers={value}",
               "--results-dir", str(tmp_path / "res"), "--no-progress", "--dry-run"])
    err = _one_error(capsys, rc)
    assert "--method-option memory.memory_layers" in err and "alias" in err


def test_a_merge_key_and_a_paper_config_with_aliases_are_refused(tmp_path, capsys):
    cfg = tmp_path / "merge.yaml"
    cfg.write_text("base: &b {eval_size: 100}\nprotocol:\n  <<: *b\n")
    err = _one_error(capsys, main(["--config", str(cfg), "--dry-run", "--no-progress"]))
    assert "alias" in err and str(cfg) in err
    cfg.write_text(f"table: apt_table1\n{LAUGHS}")
    err = _one_error(capsys, main(["paper-table", "--config", str(cfg)]))
    assert "alias" in err and str(cfg) in err


# -- config files that are not YAML -----------------------------------------------------------------------
@pytest.mark.parametrize("make, fragment", [
    (lambda p: p.write_text("methods: [memory\nshots: 1\n"), r"not valid YAML \(.* at line \d+, column \d+\)"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), "is a binary file, not YAML"),
    (lambda p: p.write_bytes(b"shots: [1]\n# caf\xe9\n"), "is not UTF-8 text"),
    (lambda p: p.mkdir(), "is a folder; give a YAML file"),
    (lambda p: p.write_text("shots: [1]\nseeds: [0]\nshots: [2]\n"), "duplicate key 'shots'"),
    (lambda p: p.write_text("protocol: {eval_size: 100, eval_size: 120}\n"), "duplicate key 'protocol.eval_size'"),
])
def test_a_config_that_is_not_yaml_is_one_line_naming_the_file(tmp_path, capsys, make, fragment):
    import re

    cfg = tmp_path / "c.yaml"
    make(cfg)
    err = _one_error(capsys, main(["--config", str(cfg), "--dry-run", "--no-progress"]))
    assert re.search(fragment, err) and str(cfg) in err, err
    assert "Error" not in err.split(":")[0]  # no raw exception name such as ScannerError


@pytest.mark.parametrize("option, fragment", [
    ("winclip.temperature=hot", "option 'temperature' must be a number (got 'hot'; default 0.07)"),
    ("winclip.class_name=3", "option 'class_name' must be a string"),
    ("winclip.class_name=[a]", "option 'class_name' must be a string"),
    ("winclip.scales=[2,x]", "option 'scales' must be a list of integers; 'x' (item 2) is not an integer "
                             "(got [2, 'x']; default (2, 3))"),
    ("winclip.scales=[2,3.5]", "option 'scales' must be a list of integers; 3.5 (item 2) is not an integer"),
])
def test_a_wrong_typed_method_option_names_the_option_and_type(tmp_path, capsys, option, fragment):
    rc = main(["--methods", "winclip", "--method-option", option, "--results-dir", str(tmp_path / "res"),
               "--no-progress", "--dry-run"])
    err = _one_error(capsys, rc)
    assert fragment in err and "winclip" in err, err


def test_aliases_and_duplicates_are_refused_by_the_loader_itself():
    from fsadbench.core.yamlsafe import load_text

    assert load_text("a: &x 1\nb: 2\n", "t") == {"a": 1, "b": 2}  # an anchor alone is harmless
    with pytest.raises(ConfigError, match="t: key 'b' uses a YAML alias"):
        load_text("a: &x 1\nb: *x\n", "t")
    with pytest.raises(ConfigError, match="duplicate key 'a.b'"):
        load_text("a: {b: 1, c: 2, b: 3}\n", "t")


# -- decompression bombs ------------------------------------------------------------------------------------
def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_bomb(path: Path, side: int = 30000) -> Path:
    """A 100-byte PNG whose header claims side x side 8-bit gray pixels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
                     + _chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _chunk(b"IEND", b""))
    return path


def test_a_too_large_image_or_mask_is_a_data_error_naming_the_file(tmp_path):
    bomb = write_bomb(tmp_path / "bomb.png")
    assert bomb.stat().st_size < 200
    for read in (image_info, read_rgb, read_mask):
        with pytest.raises(DataError, match=f"file {bomb} is too large to decode safely"):
            read(bomb)
    big = write_bomb(tmp_path / "big.png", side=9500)  # beyond PIL's warning limit, under its error limit
    with pytest.raises(DataError, match="90,250,000 pixels"):
        read_rgb(big)


def test_check_data_names_the_bomb_and_checks_every_other_category(tmp_path, capsys):
    root = make_mvtec(tmp_path / "mvtec", categories=("bottle", "grid"))
    write_bomb(root / "bottle" / "test" / "crack" / "000.png")
    write_bomb(root / "grid" / "ground_truth" / "crack" / "000_mask.png")
    rc = main(["check-data", "--datasets", "mvtec", "--data-root", str(tmp_path / "mvtec")])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"error: image file {root / 'bottle' / 'test' / 'crack' / '000.png'} is too large" in out
    assert f"error: mask file {root / 'grid' / 'ground_truth' / 'crack' / '000_mask.png'} is too large" in out


def test_a_sweep_names_the_bomb_in_its_failed_line_and_goes_on(tmp_path, capsys):
    root = make_mvtec(tmp_path / "data" / "mvtec", categories=("bottle", "grid"))
    bomb = write_bomb(root / "bottle" / "test" / "crack" / "000.png")
    rc = main(["--methods", "memory", "--datasets", "mvtec", "--categories", "bottle,grid",
               "--data-root", str(tmp_path / "data"), "--model", "fsad-tiny-vit", "--pretrained", "none", "--shots", "1", "--seeds", "0",
               "--results-dir", str(tmp_path / "res"), "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    out = capsys.readouterr()
    text = out.out + out.err
    assert rc == 1
    failed = [ln for ln in text.splitlines() if "FAILED" in ln]
    assert len(failed) == 1 and "mvtec/bottle" in failed[0] and f"image file {bomb} is too large" in failed[0], text
    assert "1 cell(s) computed, 0 already done, 1 failed" in text  # grid went on


def test_option_type_rules_hand_checked():
    from typing import Any

    from fsadbench.protocol.method import expected_type

    ok = [(0.5, float), (2, float), (3, int), (True, bool), ("x", str), (None, int | None), ({"a": 1}, dict),
          ("anything", Any), ([2, 3], tuple[int, ...]), (2, tuple[int, ...]), (None, tuple[int, ...] | None),
          ((0.1, 1), tuple[float, float]), (["a"], list[str]), (["x"], tuple[dict, ...])]  # dicts: the method's
    assert [expected_type(v, h) for v, h in ok] == [""] * len(ok)
    bad = [("hot", float, "a number"), (True, float, "a number"), (2.0, int, "an integer"), (True, int, "an integer"),
           (1, bool, "true or false"), (5, str, "a string"), ("x", int | None, "an integer or null"),
           ([2, "x"], tuple[int, ...], "a list of integers; 'x' (item 2) is not an integer"),
           ([True], tuple[int, ...], "a list of integers; True (item 1) is not an integer"),
           ([[3]], tuple[int, ...] | None, "a list of integers or null; [3] (item 1) is not an integer"),
           ([0.1], tuple[float, float], "a list of 2 numbers"), (0.1, tuple[float, float], "a list of 2 numbers"),
           ([0.1, "a"], tuple[float, float], "a list of 2 numbers; 'a' (item 2) is not a number"),
           ([1], tuple[int, str], "a list of 2 items"), ([1, 2], tuple[int, str], "a list of 2 items; 2 (item 2) "
                                                                                      "is not a string"),
           ([1], list[str], "a list of strings; 1 (item 1) is not a string")]
    assert [expected_type(v, h) for v, h, _ in bad] == [w for _, _, w in bad]
