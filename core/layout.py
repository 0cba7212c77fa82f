"""Automatic layout of a graph drawing: layers left to right by topological generation.

Delay edges are ignored for layering (a recurrent cycle would otherwise have no order), so a
drawn cell reads left to right with its feedback edges running back. Within a layer, nodes
are ordered by the mean position of their predecessors (one barycentre sweep), which removes
most crossings in the graphs people draw. No Qt here: the editor applies the positions
through its undo stack.
"""
from __future__ import annotations

import networkx as nx

from core.connections import instant_graph
from core.graph import Graph

COLUMN_GAP = 260.0  # horizontal distance between layers (scene units)
ROW_GAP = 150.0  # vertical distance between nodes of one layer


def layered_layout(graph: Graph, *, origin: tuple[float, float] = (0.0, 0.0),
                   column_gap: float = COLUMN_GAP, row_gap: float = ROW_GAP
                   ) -> dict[str, tuple[float, float]]:
    """Positions (top-left corner of each node) for every node of ``graph``.

    Cycles without a delay edge are invalid, but a user may still ask for a layout: each
    strongly connected set is laid out as one unit of the condensation.
    """
    instant = instant_graph(graph.nodes, ((e.src, e.dst, e.delay) for e in graph.edges))
    cond = nx.condensation(instant)  # a DAG even when the drawing is invalid
    generations = list(nx.topological_generations(cond))
    comp_layer = {comp: i for i, gen in enumerate(generations) for comp in gen}
    # A source that feeds only late nodes (a Target beside its loss) sits just before them.
    for comp in cond.nodes:
        succ = [comp_layer[s] for s in cond.successors(comp)]
        if cond.in_degree(comp) == 0 and succ:
            comp_layer[comp] = min(succ) - 1
    layer_of = {nid: comp_layer[comp] for comp in cond.nodes
                for nid in cond.nodes[comp]["members"]}

    # Order within each layer by the barycentre of predecessors' rows; ties keep file order.
    file_order = {nid: i for i, nid in enumerate(graph.nodes)}
    row: dict[str, float] = {}
    columns: list[list[str]] = []
    for i in range(len(generations)):
        ids = [nid for nid in graph.nodes if layer_of[nid] == i]

        def key(nid: str) -> tuple[float, int]:
            preds = [row[p] for p in instant.predecessors(nid) if p in row]
            return (sum(preds) / len(preds) if preds else float(file_order[nid]),
                    file_order[nid])

        ids.sort(key=key)
        for r, nid in enumerate(ids):
            row[nid] = float(r)
        columns.append(ids)

    tallest = max((len(c) for c in columns), default=0)
    ox, oy = origin
    pos: dict[str, tuple[float, float]] = {}
    for i, ids in enumerate(columns):
        top = oy + (tallest - len(ids)) * row_gap / 2.0  # centre each column
        for r, nid in enumerate(ids):
            pos[nid] = (ox + i * column_gap, top + r * row_gap)
    return pos
