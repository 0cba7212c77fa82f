"""Reading and writing the graph file (docs/format.md section 2): versioned JSON, never pickle.

Loading checks the *structure* (is this a graph file at all?) and raises ``GraphFileError``
when it is not. A well-formed graph that is invalid (unknown type, bad shapes, cycles) still
loads: ``core.validate`` reports those problems so an editor can show them.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from core.elements import POS_LIMIT, Edge, Node, check_id, parse_ref
from core.errors import GraphFileError
from core.files import atomic_write
from core.graph import FORMAT, VERSION, Graph

__all__ = ["FORMAT", "VERSION", "graph_from_dict", "loads", "load_graph", "dumps", "save_graph",
           "atomic_write"]
NODE_KEYS = {"id", "type", "params", "pos"}
EDGE_KEYS = {"from", "to", "delay"}


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _where(path: list) -> str:
    """``["params", "shape", 1]`` -> ``"params"."shape"[1]``, every key JSON-quoted."""
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{json.dumps(p)}" for p in path)
    return text.removeprefix(".") or "the top level"


def find_bad_value(value: Any) -> str | None:
    """What in ``value`` (parsed JSON, at any depth) cannot be in a graph file, and where:
    a string or key that is not valid Unicode (a lone surrogate such as ``"\\ud800"``), a
    number that is not finite (``1e999`` parses to inf), or a value JSON has no form for.
    None when all is well."""
    stack: list[tuple[Any, list]] = [(value, [])]
    while stack:
        v, path = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return f"text that is not valid Unicode (a lone surrogate) at {_where(path)}"
        elif isinstance(v, float):
            if not math.isfinite(v):
                return f"a number that is not finite ({v}) at {_where(path)}"
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    return f"a key that is not a string ({k!r}) at {_where(path)}"
                try:
                    k.encode("utf-8")
                except UnicodeEncodeError:
                    return (f"a key that is not valid Unicode (a lone surrogate) in "
                            f"{_where(path)}: {k!r}")
                stack.append((item, path + [k]))
        elif isinstance(v, (list, tuple)):
            stack.extend((item, path + [i]) for i, item in enumerate(v))
        elif v is not None and not isinstance(v, (bool, int)):
            return f"a value JSON cannot hold ({type(v).__name__}) at {_where(path)}"
    return None


def graph_from_dict(data: Any, file: str | None = None) -> Graph:
    """Build a Graph from parsed JSON; ``GraphFileError`` when it is not a graph."""

    def fail(msg: str, node: str | None = None) -> GraphFileError:
        return GraphFileError(msg, file=file, node=node)

    if not isinstance(data, dict):
        raise fail("not a NeuroCanvas graph: expected a JSON object at the top level")
    if data.get("format") != FORMAT:
        raise fail(f"not a NeuroCanvas graph: expected \"format\": \"{FORMAT}\", "
                   f"found {data.get('format')!r}")
    version = data.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail(f"expected \"version\" to be a positive integer, found {version!r}")
    if version > VERSION:
        raise fail(f"this file has format version {version}, newer than this NeuroCanvas "
                   f"understands (up to {VERSION}); please update NeuroCanvas")
    bad = find_bad_value({k: v for k, v in data.items() if k not in ("nodes", "edges")})
    if bad:
        raise fail(f"not a valid graph file: {bad}")
    name = data.get("name", "untitled")
    if not isinstance(name, str):
        raise fail(f"expected \"name\" to be a string, found {name!r}")
    g = Graph(name)
    nodes = data.get("nodes", [])
    if not isinstance(nodes, list):
        raise fail("expected \"nodes\" to be a list")
    for i, nd in enumerate(nodes):
        if not isinstance(nd, dict):
            raise fail(f"node #{i} is not a JSON object")
        nid = nd.get("id")
        problem = check_id(nid)
        if problem:
            raise fail(f"node #{i}: {problem}")
        if nid in g.nodes:
            raise fail("duplicate node id", node=nid)
        bad = find_bad_value(nd)
        if bad:
            raise fail(f"not a valid graph file: {bad}", node=nid)
        ntype = nd.get("type")
        if not isinstance(ntype, str) or not ntype:
            raise fail(f"expected \"type\" to be a string, found {ntype!r}", node=nid)
        params = nd.get("params", {})
        if not isinstance(params, dict):
            raise fail(f"expected \"params\" to be an object, found {params!r}", node=nid)
        pos = nd.get("pos", [0, 0])
        if (not isinstance(pos, list) or len(pos) != 2
                or not all(isinstance(p, (int, float)) and not isinstance(p, bool)
                           for p in pos)):
            raise fail(f"expected \"pos\" to be [x, y], found {pos!r}", node=nid)
        if not all(abs(p) <= POS_LIMIT for p in pos):  # ints compared exactly, no overflow
            raise fail(f"\"pos\" {pos!r} is out of range: each coordinate must be between "
                       f"-{POS_LIMIT:g} and {POS_LIMIT:g}", node=nid)
        extra = {k: v for k, v in nd.items() if k not in NODE_KEYS}
        g.nodes[nid] = Node(nid, ntype, dict(params), (float(pos[0]), float(pos[1])), extra)
    edges = data.get("edges", [])
    if not isinstance(edges, list):
        raise fail("expected \"edges\" to be a list")
    for i, ed in enumerate(edges):
        if not isinstance(ed, dict):
            raise fail(f"edge #{i} is not a JSON object")
        bad = find_bad_value(ed)
        if bad:
            raise fail(f"edge #{i}: not a valid graph file: {bad}")
        src, dst = ed.get("from"), ed.get("to")
        if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
            raise fail(f"edge #{i}: expected \"from\" and \"to\" to be strings like "
                       f"\"node\" or \"node:port\", found {src!r} -> {dst!r}")
        delay = ed.get("delay", 0)
        if isinstance(delay, bool) or not isinstance(delay, int) or delay < 0:
            raise fail(f"edge #{i} ({src} -> {dst}): expected \"delay\" to be an integer "
                       f">= 0, found {delay!r}")
        s, sp = parse_ref(src)
        d, dp = parse_ref(dst)
        extra = {k: v for k, v in ed.items() if k not in EDGE_KEYS}
        g.edges.append(Edge(s, d, sp, dp, delay, extra))
    training = data.get("training", {})
    if not isinstance(training, dict):
        raise fail("expected \"training\" to be an object")
    g.training = training
    g.extra = {k: v for k, v in data.items()
               if k not in {"format", "version", "name", "nodes", "edges", "training"}}
    return g


def loads(text: str, file: str | None = None) -> Graph:
    try:
        data = json.loads(text, parse_constant=_reject_constant)
    except (json.JSONDecodeError, ValueError) as e:
        raise GraphFileError(f"not valid JSON: {e}", file=file) from None
    except RecursionError:  # arrays or objects nested thousands deep: no graph looks so
        raise GraphFileError("not a graph file: JSON nested too deeply", file=file) from None
    return graph_from_dict(data, file)


def load_graph(path: str | os.PathLike) -> Graph:
    """Read a graph file. Raises ``GraphFileError`` naming the file on any problem."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise GraphFileError("no such file", file=str(p)) from None
    except IsADirectoryError:
        raise GraphFileError("is a directory, not a graph file", file=str(p)) from None
    except OSError as e:
        raise GraphFileError(f"cannot read: {e.strerror}", file=str(p)) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise GraphFileError("not UTF-8 text, so not a graph file", file=str(p)) from None
    return loads(text, file=str(p))


def dumps(graph: Graph) -> str:
    """The file text of ``graph``. ``GraphFileError`` (which the editor's save reports) when
    an edit put something in it that a graph file cannot hold: a lone surrogate, a
    non-finite number, a value that is not JSON."""
    data = graph.to_dict()
    for nd in data.get("nodes", []):
        bad = find_bad_value(nd)
        if bad:
            raise GraphFileError(f"cannot save: {bad}", node=str(nd.get("id")))
    bad = find_bad_value(data)
    if bad:
        raise GraphFileError(f"cannot save: {bad}")
    try:
        return json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    except (ValueError, TypeError, RecursionError) as e:
        raise GraphFileError(f"cannot save: {e}") from None


def save_graph(graph: Graph, path: str | os.PathLike) -> None:
    atomic_write(path, dumps(graph).encode("utf-8"))
