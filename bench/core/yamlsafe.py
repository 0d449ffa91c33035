"""User YAML (config files, ``--method-option`` values) read with bounds: no aliases, no duplicate keys.

``yaml.safe_load`` executes no code, but it still accepts two things a user
config never needs and that hurt:

* aliases (``&a`` / ``*a``): a few hundred bytes of nested aliases stand for
  millions of items once anything walks the value (hashing the config,
  printing the plan), so planning hangs while memory grows (a "billion
  laughs"). An alias is refused with one line naming the file and the key
  where it is used; write the value out instead.
* duplicate keys: the last one silently wins. Refused, naming the key.

The check runs on PyYAML's node graph before any Python object is built, and
stops at the first node reached twice, so it costs one pass over the text.
Syntax errors, binary files and undecodable text are one :class:`ConfigError`
line too (never a raw ``yaml.scanner.ScannerError``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from fsadbench.core.errors import ConfigError


#: libyaml's parser when PyYAML was built with it (same nodes, same safe constructor; 20x faster on a
#: long list such as 100,000 seeds), else the pure-Python one
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _key_text(node: yaml.Node) -> str:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else f"<{node.tag.rsplit(':', 1)[-1]}>"


def _check(node: yaml.Node, where: str, path: str, seen: set[int]) -> None:
    """Walk the composed node graph; refuse a node reached twice (an alias) and duplicate mapping keys."""
    stack = [(node, path)]
    while stack:
        n, p = stack.pop()
        if id(n) in seen:
            raise ConfigError(f"{where}: key '{p or '<top>'}' uses a YAML alias (*name); aliases are not "
                              f"accepted in configs (they can expand to millions of items): write the value out")
        seen.add(id(n))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(n, yaml.MappingNode):
            keys: set[str] = set()
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag.endswith(":merge"):
                    raise ConfigError(f"{where}: key '{p or '<top>'}' uses a YAML merge key (<<); merge keys "
                                      f"need aliases, which configs do not accept: write the keys out")
                name = _key_text(k)
                if name in keys:
                    raise ConfigError(f"{where}: duplicate key '{f'{p}.' if p else ''}{name}' (YAML keeps only "
                                      f"the last one); remove one of them")
                keys.add(name)
                children += [(k, p), (v, f"{p}.{name}" if p else name)]
        elif isinstance(n, yaml.SequenceNode):
            children = [(item, f"{p}[{i}]") for i, item in enumerate(n.value)]
        stack.extend(reversed(children))  # document order: the first alias met is the one named


def _syntax_line(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{at}"


def load_text(text: str, where: str) -> Any:
    """The single YAML document ``text`` as Python values; ``where`` names the source in errors."""
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check(node, where, "", set())
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({_syntax_line(exc)}); fix the syntax") from exc
    finally:
        loader.dispose()


def load_file(path: str | Path, what: str = "config file") -> Any:
    """A user YAML file by :func:`load_text`; a missing file, a folder or a binary file is one line."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{what} {p} is a folder; give a YAML file")
    if not p.is_file():
        raise ConfigError(f"{what} {p} does not exist")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {p} cannot be read ({exc.strerror or exc})") from exc
    if b"\x00" in raw:
        raise ConfigError(f"{what} {p} is a binary file, not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {p} is not UTF-8 text (byte {exc.start}); save it as UTF-8 YAML") from exc
    return load_text(text, f"{what} {p}")
