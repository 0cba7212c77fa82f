"""The in-memory graph: nodes, edges, training settings, and change events.

No Qt here. A GUI observes the graph by ``subscribe``-ing a callback that receives
``GraphEvent`` objects; every mutation goes through a method below and emits one event, so
undo commands can call these methods and the view follows (STYLE.md, "the view observes the
model"). Ids are chosen by the user or by ``unique_id`` and never change unless renamed.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.connections import check_connection
from core.elements import Edge, Node, check_id, clamp_pos, fresh_id, parse_ref
from core.errors import GraphEditError

# The file format this model is written as (docs/format.md section 2); core.fileformat
# reads it and refuses a newer version.
FORMAT = "neurocanvas.graph"
VERSION = 1

__all__ = ["FORMAT", "VERSION", "Graph", "GraphEvent", "Node", "Edge", "check_id", "fresh_id",
           "parse_ref"]

@dataclass
class GraphEvent:
    """kind: node_added, node_removed, edge_added, edge_removed, param_changed,
    node_renamed, node_moved, node_extra_changed, training_changed, name_changed, reset."""
    kind: str
    node: Node | None = None
    edge: Edge | None = None
    node_id: str | None = None
    old: Any = None
    new: Any = None
    name: str | None = None


class Graph:
    """A network drawn as nodes and edges. See docs/format.md section 2 for the file format."""

    def __init__(self, name: str = "untitled"):
        self.name = name
        self.nodes: dict[str, Node] = {}  # insertion order = file order
        self.edges: list[Edge] = []
        self.training: dict[str, Any] = {}
        self.extra: dict[str, Any] = {}  # unknown top-level keys
        self._listeners: list[Callable[[GraphEvent], None]] = []

    # ---- events ------------------------------------------------------------------------
    def subscribe(self, fn: Callable[[GraphEvent], None]) -> None:
        self._listeners.append(fn)

    def unsubscribe(self, fn: Callable[[GraphEvent], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _emit(self, event: GraphEvent) -> None:
        for fn in list(self._listeners):
            fn(event)

    # ---- queries -----------------------------------------------------------------------
    def node(self, node_id: str) -> Node:
        try:
            return self.nodes[node_id]
        except KeyError:
            raise GraphEditError(f"no node with id '{node_id}'") from None

    def edges_of(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.src == node_id or e.dst == node_id]

    def in_edges(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == node_id]

    def out_edges(self, node_id: str) -> list[Edge]:
        return [e for e in self.edges if e.src == node_id]

    def unique_id(self, prefix: str) -> str:
        """A fresh id ``prefix<n>`` past every id of that form already in the graph."""
        return fresh_id(prefix, self.nodes)

    # ---- edits (each emits one event) ----------------------------------------------------
    def add_node(self, node: Node, index: int | None = None) -> Node:
        """Add a node, at the end of the file order or (undoing a delete) at ``index``."""
        problem = check_id(node.id)
        if problem:
            raise GraphEditError(problem, node=str(node.id))
        if node.id in self.nodes:
            raise GraphEditError("a node with this id already exists", node=node.id)
        if index is None or index >= len(self.nodes):
            self.nodes[node.id] = node
        else:
            items = list(self.nodes.items())
            items.insert(max(index, 0), (node.id, node))
            self.nodes = dict(items)
        self._emit(GraphEvent("node_added", node=node, node_id=node.id))
        return node

    def remove_node(self, node_id: str) -> tuple[Node, list[Edge]]:
        """Remove a node and its edges; returns both so an undo can put them back."""
        node = self.node(node_id)
        removed = self.edges_of(node_id)
        for e in removed:
            self.remove_edge(e)
        del self.nodes[node_id]
        self._emit(GraphEvent("node_removed", node=node, node_id=node_id))
        return node, removed

    def add_edge(self, edge: Edge, index: int | None = None) -> Edge:
        """Add an edge as it is (loading, undo; ``index`` puts it back where it was in the
        file order). ``connect`` is the checked edit."""
        if index is None:
            self.edges.append(edge)
        else:
            self.edges.insert(max(index, 0), edge)
        self._emit(GraphEvent("edge_added", edge=edge))
        return edge

    def connect(self, src: str, dst: str, *, src_port: str | None = None,
                dst_port: str | None = None, delay: int = 0) -> Edge:
        """Connect an output port to an input port; refuses what can never be right.

        Port names are checked against the node types, and a cycle with no delay edge is
        refused, by ``core.connections.check_connection``.
        """
        check_connection(self, src, dst, src_port=src_port, dst_port=dst_port, delay=delay)
        return self.add_edge(Edge(src, dst, src_port, dst_port, delay))

    def remove_edge(self, edge: Edge) -> None:
        for i, e in enumerate(self.edges):
            if e is edge:
                del self.edges[i]
                self._emit(GraphEvent("edge_removed", edge=edge))
                return
        raise GraphEditError(f"no edge {edge}")

    def disconnect(self, src: str, dst: str, *, src_port: str | None = None,
                   dst_port: str | None = None) -> Edge:
        for e in self.edges:
            if (e.src, e.dst) == (src, dst) and e.src_port == src_port and e.dst_port == dst_port:
                self.remove_edge(e)
                return e
        raise GraphEditError(f"no edge from '{src}' to '{dst}'")

    def set_param(self, node_id: str, name: str, value: Any) -> None:
        """Set a parameter; ``value`` None removes it (the default applies)."""
        node = self.node(node_id)
        old = node.params.get(name)
        if value is None:
            node.params.pop(name, None)
        else:
            node.params[name] = copy.deepcopy(value)
        self._emit(GraphEvent("param_changed", node=node, node_id=node_id, name=name,
                              old=old, new=value))

    def set_pos(self, node_id: str, pos: tuple[float, float]) -> None:
        node = self.node(node_id)
        old = node.pos
        node.pos = clamp_pos(pos)  # within +-POS_LIMIT, like a file's (format.md 2.3)
        self._emit(GraphEvent("node_moved", node=node, node_id=node_id, old=old, new=node.pos))

    def set_extra(self, node_id: str, key: str, value: Any) -> None:
        """Set (or with None remove) a free-form key of a node, such as a label or colour."""
        node = self.node(node_id)
        old = node.extra.get(key)
        if value is None:
            node.extra.pop(key, None)
        else:
            node.extra[key] = value
        self._emit(GraphEvent("node_extra_changed", node=node, node_id=node_id, name=key,
                              old=old, new=value))

    def rename(self, old_id: str, new_id: str) -> None:
        """Give a node a new id; edges and ``shared_with`` references follow."""
        node = self.node(old_id)
        problem = check_id(new_id)
        if problem:
            raise GraphEditError(problem, node=old_id, param="id")
        if new_id in self.nodes and new_id != old_id:
            raise GraphEditError(f"id '{new_id}' is already taken", node=old_id, param="id")
        if new_id == old_id:
            return
        self.nodes = {(new_id if k == old_id else k): v for k, v in self.nodes.items()}
        node.id = new_id
        for e in self.edges:
            if e.src == old_id:
                e.src = new_id
            if e.dst == old_id:
                e.dst = new_id
        for other in self.nodes.values():
            if other.params.get("shared_with") == old_id:
                other.params["shared_with"] = new_id
        self._emit(GraphEvent("node_renamed", node=node, node_id=new_id, old=old_id, new=new_id))

    def set_training(self, training: dict[str, Any]) -> None:
        old = self.training
        self.training = copy.deepcopy(training)
        self._emit(GraphEvent("training_changed", old=old, new=self.training))

    def set_name(self, name: str) -> None:
        old, self.name = self.name, name
        self._emit(GraphEvent("name_changed", old=old, new=name))

    # ---- whole-graph -------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The graph as its file stores it (docs/format.md section 2)."""
        d: dict[str, Any] = {"format": FORMAT, "version": VERSION, "name": self.name,
                             "nodes": [n.to_dict() for n in self.nodes.values()],
                             "edges": [e.to_dict() for e in self.edges]}
        if self.training:
            d["training"] = copy.deepcopy(self.training)
        for k, v in self.extra.items():
            d.setdefault(k, copy.deepcopy(v))
        return d

    def replace_with(self, other: Graph) -> None:
        """Take over the contents of ``other`` (open a file into a document); one event."""
        self.name, self.nodes, self.edges = other.name, other.nodes, other.edges
        self.training, self.extra = other.training, other.extra
        self._emit(GraphEvent("reset"))

    def copy(self) -> Graph:
        """A deep copy with no listeners: a probe to try an edit on."""
        g = Graph(self.name)
        g.nodes = copy.deepcopy(self.nodes)
        g.edges = copy.deepcopy(self.edges)
        g.training = copy.deepcopy(self.training)
        g.extra = copy.deepcopy(self.extra)
        return g
