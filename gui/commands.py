"""Undo commands: one QUndoCommand per kind of edit.

Every command changes only the model (``core.graph.Graph``); the canvas, the inspector and
the problems panel follow the model's change events. Deleting is undone by putting the very
same node and edge objects back at their old places in the file order, so an undo gives back
exactly the file that was there before.
"""
from __future__ import annotations

import copy
from typing import Any

from PySide6.QtGui import QUndoCommand

from core.graph import Edge, Graph, Node

MOVE_MERGE_ID = 1001  # keyboard nudges of the same nodes merge into one step


class GraphCommand(QUndoCommand):
    def __init__(self, graph: Graph, text: str):
        super().__init__(text)
        self.graph = graph


class InsertItems(GraphCommand):
    """Add nodes and edges (a node from the palette, a paste, a duplicate)."""

    def __init__(self, graph: Graph, nodes: list[Node], edges: list[Edge], text: str):
        super().__init__(graph, text)
        self.nodes, self.edges = nodes, edges

    def redo(self):
        for n in self.nodes:
            self.graph.add_node(n)
        for e in self.edges:
            self.graph.add_edge(e)

    def undo(self):
        for e in reversed(self.edges):
            self.graph.remove_edge(e)
        for n in reversed(self.nodes):
            self.graph.remove_node(n.id)


class DeleteItems(GraphCommand):
    """Remove nodes (with every edge touching them) and edges."""

    def __init__(self, graph: Graph, node_ids: list[str], edges: list[Edge], text: str):
        super().__init__(graph, text)
        self.node_ids = [nid for nid in graph.nodes if nid in set(node_ids)]
        gone = set(self.node_ids)
        chosen = {id(e) for e in edges}
        self.edges = [e for e in graph.edges
                      if id(e) in chosen or e.src in gone or e.dst in gone]
        self._nodes: list[tuple[int, Node]] = []
        self._edges: list[tuple[int, Edge]] = []

    def redo(self):
        order = list(self.graph.nodes)
        self._nodes = [(order.index(nid), self.graph.nodes[nid]) for nid in self.node_ids]
        self._edges = [(self._index(e), e) for e in self.edges]
        for _, e in sorted(self._edges, key=lambda t: -t[0]):
            self.graph.remove_edge(e)
        for _, n in sorted(self._nodes, key=lambda t: -t[0]):
            self.graph.remove_node(n.id)

    def _index(self, edge: Edge) -> int:
        return next(i for i, e in enumerate(self.graph.edges) if e is edge)

    def undo(self):
        for i, n in sorted(self._nodes, key=lambda t: t[0]):
            self.graph.add_node(n, index=i)
        for i, e in sorted(self._edges, key=lambda t: t[0]):
            self.graph.add_edge(e, index=i)


class MoveNodes(GraphCommand):
    """Move nodes: ``moves`` maps node id to (old position, new position). One drag of the
    mouse is one command; keyboard nudges of the same selection merge."""

    def __init__(self, graph: Graph, moves: dict[str, tuple[tuple[float, float],
                                                            tuple[float, float]]],
                 text: str = "Move", merge: bool = False):
        super().__init__(graph, text)
        self.moves = dict(moves)
        self.merge = merge

    def id(self):
        return MOVE_MERGE_ID if self.merge else -1

    def mergeWith(self, other):
        if not (isinstance(other, MoveNodes) and other.merge
                and set(other.moves) == set(self.moves)):
            return False
        for nid, (_, new) in other.moves.items():
            self.moves[nid] = (self.moves[nid][0], new)
        return True

    def redo(self):
        for nid, (_, new) in self.moves.items():
            self.graph.set_pos(nid, new)

    def undo(self):
        for nid, (old, _) in self.moves.items():
            self.graph.set_pos(nid, old)


class Connect(GraphCommand):
    """Add an edge, first removing the edge that fed the same input port, if any."""

    def __init__(self, graph: Graph, edge: Edge, replaces: Edge | None, text: str):
        super().__init__(graph, text)
        self.edge, self.replaces = edge, replaces
        self._replaced_at: int | None = None

    def redo(self):
        if self.replaces is not None:
            self._replaced_at = next(i for i, e in enumerate(self.graph.edges)
                                     if e is self.replaces)
            self.graph.remove_edge(self.replaces)
        self.graph.add_edge(self.edge)

    def undo(self):
        self.graph.remove_edge(self.edge)
        if self.replaces is not None:
            self.graph.add_edge(self.replaces, index=self._replaced_at)


class SetParam(GraphCommand):
    """Set (or with None clear) one parameter of a node."""

    def __init__(self, graph: Graph, node_id: str, name: str, old: Any, new: Any, text: str):
        super().__init__(graph, text)
        self.node_id, self.name = node_id, name
        self.old, self.new = copy.deepcopy(old), copy.deepcopy(new)

    def redo(self):
        self.graph.set_param(self.node_id, self.name, self.new)

    def undo(self):
        self.graph.set_param(self.node_id, self.name, self.old)


class SetExtra(GraphCommand):
    """Set a free-form key of a node, such as its label."""

    def __init__(self, graph: Graph, node_id: str, key: str, old: Any, new: Any, text: str):
        super().__init__(graph, text)
        self.node_id, self.key, self.old, self.new = node_id, key, old, new

    def redo(self):
        self.graph.set_extra(self.node_id, self.key, self.new)

    def undo(self):
        self.graph.set_extra(self.node_id, self.key, self.old)


class Rename(GraphCommand):
    def __init__(self, graph: Graph, old_id: str, new_id: str):
        super().__init__(graph, f"Rename {old_id} to {new_id}")
        self.old_id, self.new_id = old_id, new_id

    def redo(self):
        self.graph.rename(self.old_id, self.new_id)

    def undo(self):
        self.graph.rename(self.new_id, self.old_id)


class SetTraining(GraphCommand):
    """Replace the graph's training settings (dataset, optimizer, batch size, ...)."""

    def __init__(self, graph: Graph, old: dict, new: dict, text: str = "Training settings"):
        super().__init__(graph, text)
        self.old, self.new = copy.deepcopy(old), copy.deepcopy(new)

    def redo(self):
        self.graph.set_training(self.new)

    def undo(self):
        self.graph.set_training(self.old)


class SetName(GraphCommand):
    def __init__(self, graph: Graph, old: str, new: str):
        super().__init__(graph, "Rename graph")
        self.old, self.new = old, new

    def redo(self):
        self.graph.set_name(self.new)

    def undo(self):
        self.graph.set_name(self.old)
