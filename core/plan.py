"""Compile a validated graph into an execution plan, once.

The plan is the NetworkX topological order (delay edges ignored) restricted to the nodes the
requested outputs depend on, with for every step: where its inputs come from, which
activations can be dropped after it (their last consumer in the forward pass, unless they
are kept as outputs), and whether backward must run for it. Backward needs only what each
layer put in its cache, so every other activation is freed as soon as the forward pass is
done with it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field

import networkx as nx

from core.errors import NeuroCanvasError
from core.layers.base import Layer
from core.validate import Analysis


@dataclass
class Step:
    node_id: str
    layer: Layer
    sources: list[str]  # node feeding each input port, in input_ports order
    feed: str | None = None  # dataset field, for Input and Target nodes
    free_after: list[str] = field(default_factory=list)  # values dropped after this step
    backward: bool = False  # does a gradient have to flow through this step?


@dataclass
class Plan:
    steps: list[Step]
    losses: list[str]
    outputs: list[str]  # node values returned by forward besides the losses
    fields: dict[str, str]  # node id of each Input/Target -> its dataset field


def compile_plan(analysis: Analysis, outputs: list[str] | None = None,
                 with_losses: bool = True) -> Plan:
    """Plan the computation of ``outputs`` (node ids) and, with ``with_losses``, every loss."""
    analysis.raise_if_invalid()
    if analysis.recurrent:
        raise NeuroCanvasError("recurrent graphs (delay edges or sequence inputs) cannot be "
                               "executed yet; validation and shapes work, unrolling comes next")
    graph = analysis.graph
    outputs = list(outputs or [])
    losses = analysis.losses() if with_losses else []
    targets = set(outputs) | set(losses)
    dag = nx.DiGraph()
    dag.add_nodes_from(graph.nodes)
    dag.add_edges_from((e.src, e.dst) for e in graph.edges if not e.delay)
    needed = set(targets)
    for t in targets:
        needed |= nx.ancestors(dag, t)
    order = [n for n in analysis.order if n in needed]

    steps: list[Step] = []
    fields: dict[str, str] = {}
    for nid in order:
        # A plan gets its own layer instances: a network writes its parameters and
        # needs_input_grad into them, and two networks built from one Analysis must not
        # overwrite each other's.
        layer = copy.copy(analysis.layers[nid])
        ports = layer.input_ports(layer.params)
        sources = [analysis.inputs[nid][p].src for p in ports]
        feed = None
        if layer.type_name in ("Input", "Target"):
            feed = layer.params["field"]
            fields[nid] = feed
        steps.append(Step(nid, layer, sources, feed))

    # Gradient flows through a step when it has parameters, or feeds something that does
    # reach a loss from a parametrised node: mark nodes with a parametrised ancestor.
    has_params = {s.node_id for s in steps if s.layer.param_shapes()}
    trainable = set()
    for s in steps:
        if s.node_id in has_params or any(src in trainable for src in s.sources):
            trainable.add(s.node_id)
    for s in steps:
        s.backward = s.node_id in trainable
        # a layer need not compute the gradient of an input no parameter lies behind
        s.layer.needs_input_grad = [src in trainable for src in s.sources]

    # last forward use of each value; kept values (outputs, losses) are never freed
    last_use: dict[str, int] = {}
    for i, s in enumerate(steps):
        for src in s.sources:
            last_use[src] = i
    for nid, i in last_use.items():
        if nid not in targets:
            steps[i].free_after.append(nid)
    return Plan(steps, losses, outputs, fields)
