"""What differs between two runs: their training settings and their graphs, and a run's
short label.

- ``flat_settings``: a training section as ``{"optimizer.lr": 0.001, ...}``, one key per
  setting, so two runs' settings line up key by key;
- ``settings_diff``: the settings that differ, ``(key, in a, in b)``;
- ``graph_diff``: the nodes added and removed, the parameters and types changed, the edges
  added and removed (``GraphDiff``, with ``lines()`` in words);
- ``run_label``: the label a run gets when nobody names it ("adam lr=0.001").

No Qt here: the editor's Compare dialog and the command line both use these.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from core import catalogue
from core.graph import Graph

# what a training setting means when the section leaves it out (docs/format.md section 2.7):
# a missing key and its default are the same setting, so they are no difference
SETTING_DEFAULTS: dict[str, Any] = {
    "validation_split": 0, "batch_size": 32, "epochs": 10, "steps": None, "shuffle": True,
    "seed": 0, "device": "auto", "regularization.l1": 0, "regularization.l2": 0,
}


def flat_settings(settings: dict) -> dict[str, object]:
    """The training section with its objects flattened into dotted keys, in file order:
    ``{"dataset.source": "builtin", "dataset.name": "digits", "optimizer.type": "adam",
    "optimizer.lr": 0.001, "batch_size": 32}``. Lists (``optimizer.betas``) stay values; an
    empty object (``"clip": {}``, no clipping) gives no key."""
    out: dict[str, object] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        else:
            out[prefix] = value

    walk("", settings or {})
    return out


def _norm(value: Any) -> Any:
    """A value as JSON holds it (tuples as lists), for comparing by value."""
    if isinstance(value, tuple | list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _norm(v) for k, v in value.items()}
    return value


def _same(a: Any, b: Any) -> bool:
    """Equal as values: 1 and 1.0 are the same number, true is not 1, [1, 2] is (1, 2)."""
    a, b = _norm(a), _norm(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def settings_diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """The settings of two training sections that differ, as ``(key, value in a, value in
    b)`` with flat keys (``flat_settings``), a's keys first in a's order, then b's new ones.
    A setting one side leaves out reads None; a setting left out on one side and given its
    default on the other (``batch_size`` 32) is no difference."""
    fa, fb = flat_settings(a), flat_settings(b)
    out = []
    for key in list(fa) + [k for k in fb if k not in fa]:
        va, vb = fa.get(key), fb.get(key)
        default = SETTING_DEFAULTS.get(key)
        ea = default if key not in fa and key in SETTING_DEFAULTS else va
        eb = default if key not in fb and key in SETTING_DEFAULTS else vb
        if not _same(ea, eb):
            out.append((key, va, vb))
    return out


# ---- graphs ---------------------------------------------------------------------------------
@dataclass
class GraphDiff:
    """What changed from graph a to graph b. Nodes are matched by id; parameters compared
    by value, a parameter left out standing for its default; edges written
    ``"src.port -> dst.port"`` (a delay edge with `` (delay)`` after it, `` (delay N)`` for
    a delay of N > 1). Positions, labels and the training section are no part of it."""
    added_nodes: list[str] = field(default_factory=list)
    removed_nodes: list[str] = field(default_factory=list)
    changed_params: list[tuple[str, str, object, object]] = field(default_factory=list)
    changed_types: list[tuple[str, str, str]] = field(default_factory=list)
    added_edges: list[str] = field(default_factory=list)
    removed_edges: list[str] = field(default_factory=list)
    # the type of each added or removed node, for lines()
    types: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def empty(self) -> bool:
        return not (self.added_nodes or self.removed_nodes or self.changed_params
                    or self.changed_types or self.added_edges or self.removed_edges)

    def lines(self) -> list[str]:
        """One sentence per change, removals first."""
        out = []
        for nid in self.removed_nodes:
            out.append(f"node '{nid}' ({self.types.get(nid, '?')}) removed")
        for nid in self.added_nodes:
            out.append(f"node '{nid}' ({self.types.get(nid, '?')}) added")
        for nid, ta, tb in self.changed_types:
            out.append(f"node '{nid}': type {ta} -> {tb}")
        for nid, param, va, vb in self.changed_params:
            out.append(f"node '{nid}': {param} {_shown(va)} -> {_shown(vb)}")
        for e in self.removed_edges:
            out.append(f"edge {e} removed")
        for e in self.added_edges:
            out.append(f"edge {e} added")
        return out


def _shown(value: Any) -> str:
    if value is None:
        return "(default)"
    return json.dumps(_norm(value), ensure_ascii=False)


def _params(graph: Graph, nid: str) -> dict[str, Any]:
    """A node's parameters with the defaults of those it leaves out (type known)."""
    node = graph.nodes[nid]
    cls = catalogue.get(node.type)
    out: dict[str, Any] = {}
    if cls is not None:
        for name, spec in cls.all_params_spec().items():
            if not spec.required:
                out[name] = _norm(spec.default)
    out.update({k: _norm(v) for k, v in node.params.items()})
    return out


def _port(graph: Graph, nid: str, port: str | None, end: str) -> str:
    """``node.port``; a port the edge leaves unnamed is the node's only one, when its type
    has exactly one (else the node alone)."""
    if port is None and nid in graph.nodes:
        cls = catalogue.get(graph.nodes[nid].type)
        if cls is not None:
            try:
                ports = cls.output_ports if end == "src" else cls.input_ports(
                    _params(graph, nid))
            except Exception:  # noqa: BLE001 - an invalid parameter: the node alone
                ports = ()
            if len(ports) == 1:
                port = ports[0]
    return nid if port is None else f"{nid}.{port}"


def edge_names(graph: Graph) -> list[str]:
    """Every edge of ``graph`` as ``"src.port -> dst.port"``, in file order."""
    out = []
    for e in graph.edges:
        s = f"{_port(graph, e.src, e.src_port, 'src')} -> {_port(graph, e.dst, e.dst_port, 'dst')}"
        if e.delay:
            s += " (delay)" if e.delay == 1 else f" (delay {e.delay})"
        out.append(s)
    return out


def graph_diff(a: Graph, b: Graph) -> GraphDiff:
    d = GraphDiff()
    d.removed_nodes = [n for n in a.nodes if n not in b.nodes]
    d.added_nodes = [n for n in b.nodes if n not in a.nodes]
    d.types = {n: a.nodes[n].type for n in d.removed_nodes}
    d.types.update({n: b.nodes[n].type for n in d.added_nodes})
    for nid, na in a.nodes.items():
        nb = b.nodes.get(nid)
        if nb is None:
            continue
        if na.type != nb.type:
            d.changed_types.append((nid, na.type, nb.type))
            continue  # its parameters are another type's: the type change says it
        pa, pb = _params(a, nid), _params(b, nid)
        for name in list(pa) + [k for k in pb if k not in pa]:
            if not _same(pa.get(name), pb.get(name)):
                d.changed_params.append((nid, name, pa.get(name), pb.get(name)))
    ea, eb = edge_names(a), edge_names(b)
    d.removed_edges = [e for e in ea if e not in eb]
    d.added_edges = [e for e in eb if e not in ea]
    return d


# ---- labels ---------------------------------------------------------------------------------
def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(_norm(value), ensure_ascii=False)


def _short(key: str, value: Any) -> str:
    """One sweep value in a label: ``optimizer.type=adam`` -> ``adam``,
    ``optimizer.lr=0.01`` -> ``lr=0.01``, ``regularization.l2=0.1`` -> ``l2=0.1``,
    ``clip.norm=1`` -> ``clip=1``; anything else ``key=value``."""
    v = _fmt(value)
    if key == "optimizer.type":
        return v
    if key == "clip.norm":
        return f"clip={v}"
    if key == "clip.value":
        return f"clip_value={v}"
    head, _, tail = key.partition(".")
    if head in ("optimizer", "regularization") and tail:
        return f"{tail}={v}"
    return f"{key}={v}"


def run_label(settings: dict, *, values: dict | None = None) -> str:
    """The label of a run nobody named. With a sweep's ``values``, those values, short
    (``"adam lr=0.01"``, ``"drop1.rate=0.2"``); else the optimizer and its learning rate
    (``"adam lr=0.001"``), plus ``l1=``, ``l2=`` and ``clip=`` when they are set."""
    if values:
        return " ".join(_short(k, v) for k, v in values.items())
    settings = settings or {}
    opt = settings.get("optimizer")
    if not isinstance(opt, dict):
        opt = {"type": "sgd", "lr": 0.01}
    parts = [str(opt.get("type", "sgd"))]
    if opt.get("lr") is not None:
        parts.append(f"lr={_fmt(opt['lr'])}")
    reg = settings.get("regularization")
    if isinstance(reg, dict):
        for k in ("l1", "l2"):
            v = reg.get(k)
            if isinstance(v, int | float) and not isinstance(v, bool) and v > 0:
                parts.append(f"{k}={_fmt(v)}")
    clip = settings.get("clip")
    if isinstance(clip, dict):
        if clip.get("norm") is not None:
            parts.append(f"clip={_fmt(clip['norm'])}")
        elif clip.get("value") is not None:
            parts.append(f"clip_value={_fmt(clip['value'])}")
    return " ".join(parts)
