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
import dataclasses
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
    # a step the network adds itself (the Carry of a state at a padded step): not a node's
    # call, so observers are not told of it
    internal: bool = False


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
    # Sequence lengths (docs/format.md section 2.6): the dataset field of the region's
    # lengths (from its sequence Input), or None; and every lengths field the network
    # feeds, with the Input node that names it and the T of its time axis.
    lengths: str | None = None
    length_fields: dict[str, tuple[str, int]] = field(default_factory=dict)

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
    region_lengths, length_fields = _lengths(analysis, steps)

    # Last forward use of each static value; kept values (outputs, losses) are never freed.
    # Values inside the region are keyed per time step and freed by the network once no
    # delay edge can reach back to them.
    plan = Plan(pre, region, post, losses, outputs, fields, analysis.steps or 0,
                max((d for s in steps for d in s.delays), default=0),
                lengths=region_lengths, length_fields=length_fields)
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


def fuse_relu_pool(plan: Plan) -> Plan:
    """``plan`` with each ReLU whose only consumer is a 2x2 MaxPool2D (``ReluMaxPool.pairs``)
    run in one call with that pool, together with the Conv2D before it when the ReLU is
    that convolution's only consumer (``core.layers.fused``: ``ConvReluMaxPool``,
    ``ReluMaxPool``), on the same layer instances; ``plan`` itself when there is none. The
    absorbed nodes' own values never exist, so only a pass that looks at nothing but losses
    and outputs may use it (the network's training and prediction, not its observers,
    checks or per-node timers). Nodes that are outputs, and the recurrent region, are left
    alone."""
    from core.layers.fused import ConvReluMaxPool, ReluMaxPool

    users: dict[str, list[Step]] = {}
    for s in plan.steps:
        for src in set(s.sources):
            users.setdefault(src, []).append(s)
    kept = set(plan.outputs) | set(plan.losses)

    def only_user(s: Step, by_id: dict[str, Step]) -> Step | None:
        u = users.get(s.node_id, [])
        if s.node_id in kept or len(u) != 1 or u[0].node_id not in by_id \
                or u[0].sources != [s.node_id]:
            return None
        return u[0]

    def rebuild(steps: list[Step]) -> list[Step]:
        by_id = {s.node_id: s for s in steps}
        fuse: dict[str, list[Step]] = {}  # pool node -> the steps it absorbs, in order
        for s in steps:
            pool = only_user(s, by_id)
            if pool is None or not ReluMaxPool.pairs(s.layer, pool.layer):
                continue
            conv = by_id.get(s.sources[0])
            if conv is not None and ConvReluMaxPool.leads(conv.layer) \
                    and only_user(conv, by_id) is s:
                fuse[pool.node_id] = [conv, s]
            else:
                fuse[pool.node_id] = [s]
        absorbed = {a.node_id for group in fuse.values() for a in group}
        out = []
        for s in steps:
            group = fuse.get(s.node_id)
            if s.node_id in absorbed:
                continue
            if group is None:
                out.append(s)
                continue
            layers = [a.layer for a in group] + [s.layer]
            layer = ConvReluMaxPool(*layers) if len(group) == 2 else ReluMaxPool(*layers)
            freed = [f for a in [*group, s] for f in a.free_after if f not in absorbed]
            out.append(Step(s.node_id, layer, list(group[0].sources), list(group[0].delays),
                            None, freed, backward=s.backward))
        return out

    pre, post = rebuild(plan.pre), rebuild(plan.post)
    if len(pre) == len(plan.pre) and len(post) == len(plan.post):
        return plan
    return dataclasses.replace(plan, pre=pre, post=post)


def _lengths(analysis: Analysis, steps: list[Step]
             ) -> tuple[str | None, dict[str, tuple[str, int]]]:
    """Follow each Input's ``lengths`` along its time axis and tell the layers that use it.

    A sequence Input's lengths apply to the whole recurrent region (its TimeCollect nodes
    and the losses inside it). Outside the region a value carries the lengths of its input
    while its first axis is still that input's time axis T: through layers that keep it
    (an Embedding of tokens [T] -> [T, D], a Dense on [T, F], an RNN/LSTM/GRU with
    return_sequences, a TimeCollect "all"), not past one that drops it (a recurrent layer
    giving its last state, a Flatten). The RNN, LSTM, GRU and TimeCollect layers get the
    field as ``lengths_field``. Returns the region's field and every field fed."""
    carried: dict[str, tuple[str, int]] = {}  # node -> (field, T) of its first axis
    fields: dict[str, tuple[str, int]] = {}
    region = None
    for s in steps:
        lay = s.layer
        if lay.data_role == "input" and lay.params.get("lengths"):
            f, t_len = lay.params["lengths"], int(lay.params["shape"][0])
            fields.setdefault(f, (s.node_id, t_len))
            if s.timed:
                region = region or f
            else:
                carried[s.node_id] = (f, t_len)
    for s in steps:
        lay = s.layer
        if s.timed or lay.data_role is not None:
            continue
        if lay.collects_steps:
            got = (region, analysis.steps or 0) if region else None
        else:
            got = next((carried[src] for src in s.sources if src in carried), None)
        if got is None:
            continue
        if getattr(lay, "uses_lengths", False):
            lay.lengths_field = got[0]
            keeps = lay.keeps_time_axis()
        else:
            out = analysis.shapes.get(s.node_id) or ()
            keeps = len(out) >= 1 and out[0] == got[1]
        if keeps:
            carried[s.node_id] = got
    return region, fields


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
