"""What a dataclass's fields mean, read from the comments beside them in its source.

A method's ``Options`` and the run config document each field where it is declared: a trailing comment
(``k: int = 2  # shots per category``) or ``#:`` lines just above it; a field without either takes the
plain ``#`` heading above its group (``# SMGS schedule (Sec. 4)`` for ``epochs``, ``lr``, ...). :func:`field_comments` collects
them (base classes first, so a subclass's comment wins), for ``list --method`` and the generated config
reference; a class whose source cannot be read (a notebook cell) has no comments.
"""

from __future__ import annotations

import inspect
import io
import re
import textwrap
import tokenize

_FIELD = re.compile(r"^([A-Za-z_]\w*)\s*:")


def _comments_of(cls: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    trailing: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            trailing[tok.start[0]] = tok.string
    lines = source.splitlines()
    start = next((i for i, line in enumerate(lines) if line.lstrip().startswith("class ")), 0)
    body_indent = None
    out: dict[str, str] = {}
    above: list[str] = []  # "#:" lines: the next field's
    group: list[str] = []  # plain "#" lines: a heading for the fields after it without a comment of their own
    heading = True  # the last non-field line was a comment (consecutive "#" lines form one heading)
    for no, line in enumerate(lines[start + 1:], start + 2):  # decorators and the class line skipped
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if not stripped:
            above, group = [], []
            continue
        if body_indent is None:
            body_indent = indent
        if indent != body_indent:  # inside a method or a continuation line
            continue
        if stripped.startswith("#:"):
            above.append(stripped[2:].strip())
            continue
        if stripped.startswith("#"):
            group = (group if heading else []) + [stripped.lstrip("#").strip()]
            heading = True
            continue
        heading = False
        m = _FIELD.match(stripped)
        if m:
            own = " ".join(above + ([trailing[no].lstrip("#").strip()] if no in trailing else []))
            text = own or " ".join(group)
            if text:
                out[m.group(1)] = text
        above = []
    return out


def field_comments(cls: type) -> dict[str, str]:
    """``{field: comment}`` of a (dataclass) class and its bases; fields without a comment are absent."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object:
            continue
        out.update(_comments_of(klass))
    return out
