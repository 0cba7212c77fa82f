"""Parameter specifications of node types: what a parameter accepts and its default.

A spec turns the raw JSON value into the value layers use, or raises ``ParamError`` saying
what was expected and what was found. Specs also tell the GUI which widget fits.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import ParamError

REQUIRED = object()  # default of a parameter the user must give
AUTO = "auto"  # a Shape that comes from the dataset field the node reads
_NAME_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")  # an Identifier, like a node id


def _typename(v: Any) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if v is None:
        return "null"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _shown(v: Any) -> str:
    """A found value as a message quotes it; an object by its keys, not as a Python dict."""
    if isinstance(v, dict):
        keys = ", ".join(str(k) for k in list(v)[:6]) + (", ..." if len(v) > 6 else "")
        return f"an object with keys {keys}" if v else "an empty object"
    return repr(v)


@dataclass(frozen=True)
class ParamSpec:
    default: Any = REQUIRED
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def coerce(self, value: Any) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def fail(self, expected: str, value: Any) -> ParamError:
        if isinstance(value, dict):  # its keys say what it is; the kind would repeat it
            return ParamError(f"expected {expected}, found {_shown(value)}")
        return ParamError(f"expected {expected}, found {_shown(value)} ({_typename(value)})")


@dataclass(frozen=True)
class Int(ParamSpec):
    min: int | None = None
    max: int | None = None

    def coerce(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(self._expected(), value)
        if isinstance(value, float):
            if not value.is_integer():
                raise self.fail(self._expected(), value)
            value = int(value)
        too_low = self.min is not None and value < self.min
        if too_low or (self.max is not None and value > self.max):
            raise self.fail(self._expected(), value)
        return value

    def _expected(self):
        if self.min is not None and self.max is not None:
            return f"an integer from {self.min} to {self.max}"
        if self.min is not None:
            return f"an integer >= {self.min}"
        return "an integer"


@dataclass(frozen=True)
class Float(ParamSpec):
    min: float | None = None
    max: float | None = None
    min_open: bool = False  # min itself excluded
    max_open: bool = False

    def coerce(self, value):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not math.isfinite(value):
            raise self.fail(self._expected(), value)
        v = float(value)
        lo_bad = self.min is not None and (v < self.min or (self.min_open and v == self.min))
        hi_bad = self.max is not None and (v > self.max or (self.max_open and v == self.max))
        if lo_bad or hi_bad:
            raise self.fail(self._expected(), value)
        return v

    def _expected(self):
        lo = "" if self.min is None else ("(" if self.min_open else "[") + f"{self.min}"
        hi = "" if self.max is None else f"{self.max}" + (")" if self.max_open else "]")
        if lo and hi:
            return f"a number in {lo}, {hi}"
        if lo:
            return "a number " + (">" if self.min_open else ">=") + f" {self.min}"
        if hi:
            return "a number " + ("<" if self.max_open else "<=") + f" {self.max}"
        return "a finite number"


@dataclass(frozen=True)
class Bool(ParamSpec):
    def coerce(self, value):
        if not isinstance(value, bool):
            raise self.fail("true or false", value)
        return value


@dataclass(frozen=True)
class Choice(ParamSpec):
    choices: tuple = ()

    def coerce(self, value):
        if value not in self.choices or isinstance(value, bool):
            raise self.fail("one of " + ", ".join(repr(c) for c in self.choices), value)
        return value


@dataclass(frozen=True)
class Identifier(ParamSpec):
    """A short name: letters, digits, '_' and '-' (data fields, node ids)."""

    def coerce(self, value):
        # the whole string must match: no trailing newline, as ``$`` would allow
        if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
            raise self.fail("a name of letters, digits, '_' or '-' (at most 64)", value)
        return value


@dataclass(frozen=True)
class Shape(ParamSpec):
    """A per-sample shape: a list of positive integers (``[]`` for a scalar).

    With ``allow_infer`` one entry may be -1 (Reshape infers it). With ``allow_auto`` the
    string ``"auto"`` (``AUTO``) is accepted as is: the shape of the dataset field the node
    reads, which validation fills in when it knows the dataset.
    """
    allow_infer: bool = False
    allow_auto: bool = False

    def coerce(self, value):
        if self.allow_auto and value == AUTO:
            return AUTO
        expected = "a list of positive integers" + (" (one may be -1)" if self.allow_infer else "")
        if self.allow_auto:
            expected += f", or \"{AUTO}\" for the shape of the dataset field"
        if not isinstance(value, list):
            raise self.fail(expected, value)
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, int):
                raise self.fail(expected, value)
            if v <= 0 and not (self.allow_infer and v == -1):
                raise self.fail(expected, value)
            out.append(v)
        if out.count(-1) > 1:
            raise self.fail(expected, value)
        return tuple(out)


@dataclass(frozen=True)
class IntPair(ParamSpec):
    """An integer or a pair [h, w] of integers, each >= ``min``; coerced to a pair."""
    min: int = 1

    def coerce(self, value):
        expected = f"an integer >= {self.min} or a pair [h, w] of them"
        if isinstance(value, list):
            if len(value) != 2:
                raise self.fail(expected, value)
            vals = value
        else:
            vals = [value, value]
        out = []
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, int) or v < self.min:
                raise self.fail(expected, value)
            out.append(v)
        return tuple(out)


@dataclass(frozen=True)
class Padding(ParamSpec):
    """``"valid"``, ``"same"``, an integer >= 0 or a pair of them."""

    def coerce(self, value):
        if value in ("valid", "same"):
            return value
        try:
            return IntPair(min=0).coerce(value)
        except ParamError:
            raise self.fail("'valid', 'same', an integer >= 0 or a pair [h, w]", value) from None


@dataclass(frozen=True)
class NodeRef(ParamSpec):
    """The id of another node (``shared_with``); checked against the graph by validation."""

    def coerce(self, value):
        return Identifier().coerce(value)


def resolve_params(specs: dict[str, ParamSpec], raw: dict, node_id: str
                   ) -> tuple[dict, list[ParamError]]:
    """Check ``raw`` against ``specs``; return the full parameter dict and every problem.

    Missing optional parameters take their defaults. A parameter with a problem is left out of
    the returned dict (or takes its default when it has one) so inference can go on.
    """
    problems: list[ParamError] = []
    out: dict = {}
    for name in raw:
        if name not in specs:
            known = ", ".join(specs) or "none"
            problems.append(ParamError(f"unknown parameter (this type takes: {known})",
                                       node=node_id, param=name))
    for name, spec in specs.items():
        if name in raw:
            if raw[name] is None and spec.default is None:
                out[name] = None  # null means "the default", e.g. stride = pool_size
                continue
            try:
                out[name] = spec.coerce(raw[name])
                continue
            except ParamError as e:
                problems.append(ParamError(e.message, node=node_id, param=name))
        elif spec.required:
            problems.append(ParamError("missing required parameter", node=node_id, param=name))
        if not spec.required:
            out[name] = spec.default
    return out, problems


__all__ = ["REQUIRED", "AUTO", "ParamSpec", "Int", "Float", "Bool", "Choice", "Identifier",
           "Shape", "IntPair", "Padding", "NodeRef", "resolve_params", "field"]
