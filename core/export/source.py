"""Writing Python source safely: identifiers, literals, comments, docstrings, line wrapping.

Everything a graph file holds (node ids, the graph name, labels, paths, parameter values)
reaches exported code only through these functions: as an identifier made of letters,
digits and '_' that is no keyword and shadows nothing the code uses, as a string literal
written by ``repr`` (which escapes quotes, backslashes, newlines and every other
unprintable character), or as comment and docstring text escaped the same way, so no file
can end a comment or a string early and make exported code run anything.
"""
from __future__ import annotations

import builtins
import keyword
import re
import textwrap
from collections.abc import Iterable
from typing import Any

LINE = 100  # longest line of exported code (the project's ruff line-length)
INDENT = "    "
MAX_NAME = 40  # identifiers from ids of up to 64 characters are cut, so lines stay short


class Namer:
    """Unique Python identifiers for names from a file (node ids, dataset fields).

    A name keeps its letters, digits and '_' ('-' becomes '_'); one that starts with a digit
    or '_', is a keyword, a builtin or a ``reserved`` name gets a prefix or a suffix, and a
    name already given gets ``_2``, ``_3``...
    """

    def __init__(self, reserved: Iterable[str] = ()):
        self.used = set(reserved) | set(keyword.kwlist) | set(keyword.softkwlist) \
            | set(dir(builtins))

    def __call__(self, wanted: str, prefix: str = "n") -> str:
        base = re.sub(r"[^A-Za-z0-9_]", "_", wanted)[:MAX_NAME] or prefix
        if base[0].isdigit() or base[0] == "_":
            base = f"{prefix}_{base.lstrip('_')}"
        if base in self.used:
            base = f"{base}_"
        name, n = base, 1
        while name in self.used:
            n += 1
            name = f"{base}{n}"
        self.used.add(name)
        return name


def literal(value: Any) -> str:
    """``value`` (JSON data: dict, list, str, int, float, bool, None; tuples too) as a
    Python literal on one line."""
    if isinstance(value, str):
        return string(value)
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, tuple):
        inner = ", ".join(literal(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"not JSON data: {type(value).__name__}")


def string(value: str) -> str:
    """A double-quoted Python string literal of ``value``: quotes and backslashes escaped,
    every unprintable character (newlines included) as its escape sequence."""
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return '"' + "".join(out) + '"'


def text(value: str, limit: int = 60) -> str:
    """``value`` made safe for a comment or a docstring: on one line, with every
    unprintable character, quote and backslash escaped as in a string literal, and cut to
    at most ``limit`` characters (between characters of ``value``, never inside an escape)."""
    out = ""
    for ch in value:
        piece = repr(ch)[1:-1].replace('"', '\\"').replace("'", "\\'")
        if len(out) + len(piece) > limit:
            return out + "..."
        out += piece
    return out


def quoted(value: str, limit: int = 60) -> str:
    """``value`` in double quotes, made safe by ``text``."""
    return f'"{text(value, limit)}"'


def wrapped_literal(value: Any, indent: str, prefix: str = "", suffix: str = "") -> list[str]:
    """``prefix + literal(value) + suffix`` as lines of at most ``LINE`` characters where
    possible: containers break one item per line, long strings split into adjacent literals."""
    one = indent + prefix + literal(value) + suffix
    if len(one) <= LINE:
        return [one]
    inner = indent + INDENT
    if isinstance(value, str):
        chunks = [inner + string(c) for c in _string_chunks(value, LINE - len(inner) - 2)]
        if prefix.endswith("(") and suffix.startswith(")"):  # the call's own parentheses
            return [indent + prefix] + chunks + [indent + suffix]
        return [indent + prefix + "("] + chunks + [indent + ")" + suffix]
    if isinstance(value, dict):
        items = list(value.items())
        opening, closing = "{", "}"
    elif isinstance(value, (list, tuple)):
        items = [(None, v) for v in value]
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
    else:
        return [one]
    lines = [indent + prefix + opening]
    for key, v in items:
        head = "" if key is None else f"{literal(key)}: "
        if key is not None and len(inner + head) > LINE // 2:  # a long key: value below it
            lines.extend(wrapped_literal(key, inner, "", ":"))
            lines.extend(wrapped_literal(v, inner + INDENT, "", ","))
        else:
            lines.extend(wrapped_literal(v, inner, head, ","))
    lines.append(indent + closing + suffix)
    return lines


def _string_chunks(value: str, width: int) -> list[str]:
    """``value`` cut into pieces whose ``repr`` fits in ``width`` (at least one character
    each, so an escape sequence is never cut)."""
    chunks, current = [], ""
    for ch in value:
        if current and len(string(current + ch)) > width:
            chunks.append(current)
            current = ""
        current += ch
    chunks.append(current)
    return chunks


def call(head: str, args: list[str], indent: str, tail: str = "") -> list[str]:
    """``head(args)tail`` (``head`` ending in the callee, e.g. ``"y = self.fc"``) on one
    line, or with one argument per line when that is too long."""
    one = f"{indent}{head}({', '.join(args)}){tail}"
    if len(one) <= LINE or not args:
        return [one]
    return [f"{indent}{head}("] + [f"{indent}{INDENT}{a}," for a in args] \
        + [f"{indent}){tail}"]


def statement(code: str, indent: str, comment: str = "") -> list[str]:
    """One line of ``code`` with an end-of-line comment, or the comment on its own line
    above when both do not fit. ``comment`` must already be safe (``text``)."""
    if not comment:
        return [indent + code]
    one = f"{indent}{code}  # {comment}"
    if len(one) <= LINE:
        return [one]
    return [f"{indent}# {comment}"[:LINE], indent + code]


def docstring(lines: list[str], indent: str) -> list[str]:
    """A docstring of ``lines`` (safe text: see ``text``), each wrapped at spaces to fit."""
    out: list[str] = []
    for i, line in enumerate(lines):
        lead = indent + ('"""' if i == 0 else "")
        body = line.lstrip(" ")
        extra = " " * (len(line) - len(body))
        out += textwrap.wrap(body, LINE - 3, initial_indent=lead + extra,
                             subsequent_indent=indent + extra,
                             break_long_words=False, break_on_hyphens=False) or [lead]
    if len(out[-1]) + 3 <= LINE and len(out) == 1:
        return [out[-1] + '"""']
    return out + [indent + '"""']
