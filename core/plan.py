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

from core.layers.base import Layer
from core.validate import Analysis


@dataclass
class Step:
    node_id: str
    layer: Layer
    sources: list[str]  # node feeding each input port, in input_ports order
    delays: list[int] = field(default_factory=list)  # delay of the edge into each port
    feed: str | None = None  # dataset field, for Input and Target nodes
    free_after: list[str] = field(default_factory=list)  # values dropped after this step
    backward: bool = False  # does a gradient have to flow through this step?
    timed: bool = False  # runs once per time step (inside the recurrent region)


@dataclass
class Plan:
    """Steps in execution order: ``pre`` once, ``region`` once per time step t = 0..T-1,
    then ``post`` once (it starts with the TimeCollect nodes). A feedforward graph has only
    ``pre``."""
    pre: list[Step]
    region: list[Step]
    post: list[Step]
    losses: list[str]
    outputs: list[str]  # node values returned by forward besides the losses
    fields: dict[str, str]  # node id of each Input/Target -> its dataset field
    T: int = 0  # time steps of the region
    max_delay: int = 0
    free_after_region: list[str] = field(default_factory=list)  # static values used in it

    @property
    def steps(self) -> list[Step]:
        return self.pre + self.region + self.post


def compile_plan(analysis: Analysis, outputs: list[str] | None = None,
                 with_losses: bool = True) -> Plan:
    """Plan the computation of ``outputs`` (node ids) and, with ``with_losses``, every loss."""
    analysis.raise_if_invalid()
    outputs = list(outputs or [])
    losses = analysis.losses() if with_losses else []
    targets = set(outputs) | set(losses)
    needed = set(targets)
    for t in targets:  # over delay edges too: a delayed value is still needed
        needed |= nx.ancestors(analysis.nx_graph, t)
    order = [n for n in analysis.order if n in needed]

    # the recurrent region, and what comes after its TimeCollect nodes
    timed = analysis.timed & needed
    after: set[str] = set()
    for nid in order:
        if analysis.layers[nid].collects_steps:
            after |= {nid} | nx.descendants(analysis.instant, nid)

    pre: list[Step] = []
    region: list[Step] = []
    post: list[Step] = []
    fields: dict[str, str] = {}
    for nid in order:
        # A plan gets its own layer instances: a network writes its parameters and
        # needs_input_grad into them, and two networks built from one Analysis must not
        # overwrite each other's.
        layer = copy.copy(analysis.layers[nid])
        ports = layer.input_ports(layer.params)
        edges = [analysis.inputs[nid][p] for p in ports]
        feed = None
        if layer.data_role is not None:
            feed = layer.params["field"]
            fields[nid] = feed
        step = Step(nid, layer, [e.src for e in edges], [e.delay for e in edges], feed,
                    timed=nid in timed)
        (region if step.timed else post if nid in after else pre).append(step)
    steps = pre + region + post

    mark_backward(steps, {s.node_id for s in steps if s.layer.param_shapes()})

    # Last forward use of each static value; kept values (outputs, losses) are never freed.
    # Values inside the region are keyed per time step and freed by the network once no
    # delay edge can reach back to them.
    plan = Plan(pre, region, post, losses, outputs, fields, analysis.steps or 0,
                max((d for s in steps for d in s.delays), default=0))
    last_use: dict[str, Step] = {}
    for s in steps:
        for src in s.sources:
            if src not in timed:
                last_use[src] = s
    for nid, s in last_use.items():
        if nid in targets:
            continue
        if s.timed:
            plan.free_after_region.append(nid)
        else:
            s.free_after.append(nid)
    return plan


def mark_backward(steps: list[Step], seeds: set[str]) -> set[str]:
    """Set which steps run backward: gradient flows through a step when it is one of
    ``seeds`` (the nodes with parameters) or when one of them lies behind it (through delay
    edges too, hence the repeat until nothing changes). A layer need not compute the
    gradient of an input no seed lies behind. Returns the nodes that run backward."""
    trainable = set(seeds)
    changed = True
    while changed:
        changed = False
        for s in steps:
            if s.node_id not in trainable and any(src in trainable for src in s.sources):
                trainable.add(s.node_id)
                changed = True
    for s in steps:
        s.backward = s.node_id in trainable
        s.layer.needs_input_grad = [src in trainable for src in s.sources]
    return trainable
