"""Which edges can exist: the ports an edge end names, and edges refused outright.

``resolve_ports`` finds the port an edge end means (a node's only port when it names none)
or says what is wrong; ``check_connection`` is the check behind ``Graph.connect``: it
refuses an unknown port, a second edge into an input port and a cycle with no delay edge,
with an error that says why. Validation (``core.validate``) reports the same problems for a
whole graph read from a file.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import networkx as nx

from core import catalogue
from core.elements import Edge
from core.errors import CycleError, EdgeError, GraphEditError, GraphProblem
from core.layers.base import Layer
from core.params import resolve_params

if TYPE_CHECKING:
    from core.graph import Graph


def resolve_ports(layer_cls: type[Layer] | None, params: dict, edge: Edge, end: str
                  ) -> tuple[str | None, GraphProblem | None]:
    """The port an edge end names, or a problem. ``end`` is 'src' or 'dst'."""
    node = edge.src if end == "src" else edge.dst
    port = edge.src_port if end == "src" else edge.dst_port
    if layer_cls is None:
        return port, None
    ports = layer_cls.output_ports if end == "src" else layer_cls.input_ports(params)
    kind = "output" if end == "src" else "input"
    if port is None:
        if len(ports) == 1:
            return ports[0], None
        if not ports:
            return None, EdgeError(f"edge {edge}: a {layer_cls.type_name} node has no {kind} "
                                   "port", node=node)
        return None, EdgeError(f"edge {edge}: this {layer_cls.type_name} has several {kind} "
                               f"ports ({', '.join(ports)}); name one, e.g. '{node}:{ports[0]}'",
                               node=node)
    if port not in ports:
        have = ", ".join(ports) if ports else "none"
        return None, EdgeError(f"edge {edge}: no {kind} port '{port}' "
                               f"(a {layer_cls.type_name} has: {have})", node=node, port=port)
    return port, None


def instant_graph(nodes, edges) -> nx.DiGraph:
    """The nodes joined by the edges that carry a value within one time step: every
    ``(src, dst, delay)`` of ``edges`` with no delay. Execution order and the cycle checks
    work on it; a cycle here is one with no delay edge on it."""
    g = nx.DiGraph()
    g.add_nodes_from(nodes)
    g.add_edges_from((u, v) for u, v, delay in edges if not delay)
    return g


def check_connection(graph: Graph, src: str, dst: str, *, src_port: str | None = None,
                     dst_port: str | None = None, delay: int = 0) -> None:
    """Raise a typed error saying why this edge cannot be added; return None when it can."""
    for nid in (src, dst):
        if nid not in graph.nodes:
            raise GraphEditError(f"no node with id '{nid}'")
    e = Edge(src, dst, src_port, dst_port, delay)
    src_node, dst_node = graph.nodes[src], graph.nodes[dst]
    src_cls, dst_cls = catalogue.get(src_node.type), catalogue.get(dst_node.type)

    def raw_params(node):
        cls = catalogue.get(node.type)
        return resolve_params(cls.all_params_spec(), node.params, node.id)[0] if cls else {}

    _, p = resolve_ports(src_cls, raw_params(src_node), e, "src")
    if p:
        raise p
    dp, p = resolve_ports(dst_cls, raw_params(dst_node), e, "dst")
    if p:
        raise p
    for other in graph.in_edges(dst):
        op, _ = resolve_ports(dst_cls, raw_params(dst_node), other, "dst")
        if op == dp:
            raise EdgeError(f"input port is already fed by {other.src_ref}; disconnect it first",
                            node=dst, port=dp)
    if delay == 0:
        instant = instant_graph(graph.nodes, ((x.src, x.dst, x.delay) for x in graph.edges))
        if src == dst or nx.has_path(instant, dst, src):
            path = [src] if src == dst else nx.shortest_path(instant, dst, src)
            names = " -> ".join(path + [dst])
            raise CycleError(f"this edge would close a cycle with no delay edge ({names}); "
                             "make it a delay edge to build a recurrent network",
                             node=dst, nodes=tuple(path))
