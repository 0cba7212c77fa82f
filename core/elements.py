"""What a graph is made of: nodes, edges, node ids and port references.

Plain data, no behaviour beyond their file form (``to_dict``); ``core.graph.Graph`` holds
them and ``core.fileformat`` reads them from a file.
"""
from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# ``\Z``, not ``$``: ``$`` also matches before a trailing newline. Use with ``fullmatch``.
ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
POS_LIMIT = 1e6  # |x| and |y| of a node's position (docs/format.md section 2.3)


def check_id(node_id: Any) -> str | None:
    """None when ``node_id`` is a valid id, else what is wrong with it."""
    if not isinstance(node_id, str) or not ID_RE.fullmatch(node_id):
        return (f"invalid id {node_id!r}: expected 1 to 64 letters, digits, '_' or '-'")
    return None


@dataclass
class Node:
    id: str
    type: str
    params: dict[str, Any] = field(default_factory=dict)
    pos: tuple[float, float] = (0.0, 0.0)
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, kept verbatim

    def to_dict(self) -> dict:
        d = {"id": self.id, "type": self.type, "params": copy.deepcopy(self.params),
             "pos": [self.pos[0], self.pos[1]]}
        for k, v in self.extra.items():
            d.setdefault(k, copy.deepcopy(v))
        return d


@dataclass
class Edge:
    src: str
    dst: str
    src_port: str | None = None  # None: the node's only output port ("out")
    dst_port: str | None = None  # None: the node's only input port
    delay: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def src_ref(self) -> str:
        return self.src if self.src_port is None else f"{self.src}:{self.src_port}"

    @property
    def dst_ref(self) -> str:
        return self.dst if self.dst_port is None else f"{self.dst}:{self.dst_port}"

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"from": self.src_ref, "to": self.dst_ref}
        if self.delay:
            d["delay"] = self.delay
        for k, v in self.extra.items():
            d.setdefault(k, copy.deepcopy(v))
        return d

    def key(self) -> tuple:
        return (self.src, self.src_port, self.dst, self.dst_port, self.delay)

    def __str__(self) -> str:
        delay = f" (delay {self.delay})" if self.delay else ""
        return f"{self.src_ref} -> {self.dst_ref}{delay}"


def clamp_pos(pos) -> tuple[float, float]:
    """``pos`` as two floats within +-``POS_LIMIT`` (a non-finite coordinate becomes 0)."""
    out = []
    for p in (pos[0], pos[1]):
        try:
            v = float(p)
        except OverflowError:  # an int too large for a float
            v = POS_LIMIT if p > 0 else -POS_LIMIT
        out.append(min(max(v, -POS_LIMIT), POS_LIMIT) if math.isfinite(v) else 0.0)
    return out[0], out[1]


def fresh_id(prefix: str, taken: Iterable[str]) -> str:
    """``prefix<n>`` with n past every id of that form in ``taken``."""
    base = re.sub(r"[^A-Za-z0-9_-]", "", prefix.lower())[:56] or "node"
    n = 0
    for nid in taken:
        m = re.fullmatch(re.escape(base) + r"(\d+)", nid)
        if m:
            n = max(n, int(m.group(1)))
    return f"{base}{n + 1}"


def parse_ref(ref: str) -> tuple[str, str | None]:
    """'node' -> ('node', None); 'node:port' -> ('node', 'port')."""
    if ":" in ref:
        node, port = ref.split(":", 1)
        return node, port
    return ref, None
