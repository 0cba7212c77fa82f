"""Validation and shape inference of a graph, all problems at once.

``analyze(graph)`` returns an ``Analysis``: every problem found (typed, naming node, port or
parameter), each node's output shape and parameter count, and the NetworkX multi-digraph the
scheduler compiles. A problem never stops the analysis; nodes whose inputs are unusable just
get an unknown shape (None).

``analyze(graph, field_shapes)`` also checks the Input and Target nodes against the fields of
the dataset (``{field: (per-sample shape, dtype, ...)}``, e.g. from
``core.datasets.peek_fields``) with the rule training applies (``core.datasets.fit_problems``),
and gives a node with ``"shape": "auto"`` its field's shape. ``analyze_with_dataset`` peeks
at the graph's own dataset for that.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np

from core import catalogue
from core.connections import instant_graph, resolve_ports
from core.datasets.fields import fit_problems
from core.datasets.peek import peek_training_fields
from core.errors import (
    CycleError,
    EdgeError,
    GraphProblem,
    InvalidGraphError,
    NeuroCanvasError,
    ParamError,
    ShapeError,
    SharedWithError,
    UnknownTypeError,
)
from core.fileformat import load_graph
from core.graph import Edge, Graph
from core.layers.base import Layer, Shape, fmt_shape
from core.params import AUTO, resolve_params


@dataclass
class Analysis:
    graph: Graph
    problems: list[GraphProblem] = field(default_factory=list)
    layers: dict[str, Layer] = field(default_factory=dict)  # nodes of a known type
    shapes: dict[str, Shape | None] = field(default_factory=dict)  # output shape per node
    # input port -> edge feeding it, per node (only well-formed edges)
    inputs: dict[str, dict[str, Edge]] = field(default_factory=dict)
    nx_graph: nx.MultiDiGraph = field(default_factory=nx.MultiDiGraph)  # every edge
    instant: nx.DiGraph = field(default_factory=nx.DiGraph)  # edges with no delay
    order: list[str] = field(default_factory=list)  # topological, delay edges ignored
    shared_root: dict[str, str] = field(default_factory=dict)  # node -> owner of its params
    timed: set[str] = field(default_factory=set)  # nodes that run once per time step
    steps: int | None = None  # T of the sequence inputs, for recurrent graphs
    # the dataset's fields the data nodes were checked against (None: not known)
    field_shapes: Mapping[str, tuple] | None = None
    auto_shaped: set[str] = field(default_factory=set)  # data nodes with "shape": "auto"
    # why the graph's dataset could not be peeked at (analyze_with_dataset), if it could not
    dataset_error: NeuroCanvasError | None = None
    # what else stops training (core.readiness fills it; not part of ``ok``)
    not_ready: list[GraphProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def can_train(self) -> bool:
        """Valid, and nothing training needs is missing (as far as ``not_ready`` says)."""
        return not self.problems and not self.not_ready

    @property
    def recurrent(self) -> bool:
        return any(e.delay for e in self.graph.edges) or bool(self.timed)

    def raise_if_invalid(self, file: str | None = None) -> None:
        if self.problems:
            raise InvalidGraphError(self.problems, file=file)

    def problems_of(self, node_id: str) -> list[GraphProblem]:
        return [p for p in self.problems if node_id in p.nodes]

    def param_count(self, node_id: str) -> int:
        """Parameters this node owns (0 for a node that shares another's)."""
        layer = self.layers.get(node_id)
        if layer is None or self.shapes.get(node_id) is None or not layer.in_shapes:
            return 0
        if self.shared_root.get(node_id, node_id) != node_id:
            return 0
        try:
            return layer.param_count()
        except (KeyError, IndexError, TypeError):
            return 0

    def losses(self) -> list[str]:
        return [n for n in self.order if n in self.layers and self.layers[n].is_loss]


def load_valid(path: str) -> Analysis:
    """Load and validate a graph file, raising on any problem (all listed on the error):
    ``GraphFileError`` for a file that is not a graph, ``InvalidGraphError`` else. A graph
    with ``"shape": "auto"`` nodes is analysed with the fields of its dataset."""
    graph = load_graph(path)
    a = analyze_with_dataset(graph, Path(path).resolve().parent, only_if_auto=True)
    a.raise_if_invalid(file=path)
    return a


def has_auto_shapes(graph: Graph) -> bool:
    """Whether an Input or Target of ``graph`` takes its shape from the dataset."""
    for node in graph.nodes.values():
        cls = catalogue.get(node.type)
        if cls is not None and cls.data_role is not None \
                and node.params.get("shape", AUTO) == AUTO:
            return True
    return False


def analyze_with_dataset(graph: Graph, base_dir: str | os.PathLike | None = None, *,
                         only_if_auto: bool = False) -> Analysis:
    """``analyze`` with the fields of the graph's own dataset (``training.dataset``, relative
    paths under ``base_dir``), peeked at without loading it (cached). A dataset that cannot
    be read leaves the fields unknown and is kept as ``dataset_error``. With
    ``only_if_auto``, the dataset is looked at only when a node's shape comes from it."""
    if only_if_auto and not has_auto_shapes(graph):
        return analyze(graph)
    fields, error = peek_training_fields(graph.training, base_dir)
    why = None if error is None else f"the dataset cannot be read ({error})"
    a = analyze(graph, fields, no_dataset=why)
    a.dataset_error = error
    return a


def _cycle_problems(instant: nx.DiGraph) -> list[GraphProblem]:
    """One CycleError per strongly connected set of nodes joined without a delay edge."""
    problems = []
    for comp in nx.strongly_connected_components(instant):
        if len(comp) == 1:
            (n,) = comp
            if not instant.has_edge(n, n):
                continue
        sub = instant.subgraph(comp)
        cycle = [u for u, _ in nx.find_cycle(sub)]
        names = " -> ".join(cycle + [cycle[0]])
        problems.append(CycleError(f"cycle with no delay edge: {names}; make one of its "
                                   "edges a delay edge (delay 1) to make it recurrent",
                                   node=cycle[0], nodes=tuple(cycle)))
    return problems


def analyze(graph: Graph, field_shapes: Mapping[str, tuple] | None = None, *,
            no_dataset: str | None = None) -> Analysis:
    """Validate ``graph`` and infer every node's shape; never raises for graph problems.

    field_shapes: the dataset's ``{field: (per-sample shape, dtype or None[, whole])}``
    (``core.datasets.DatasetFields`` or ``Dataset.field_shapes()``); the data nodes are
    checked against it and ``"auto"`` shapes taken from it. None: the dataset is not known,
    and an ``"auto"`` shape is a problem saying so (``no_dataset`` says why it is not known;
    default: the graph has none).
    """
    a = Analysis(graph, field_shapes=field_shapes)
    probs = a.problems
    params: dict[str, dict] = {}

    # 1. node types and parameters
    for node in graph.nodes.values():
        cls = catalogue.get(node.type)
        if cls is None:
            probs.append(UnknownTypeError(f"unknown node type '{node.type}'"
                                          + catalogue.suggest(node.type), node=node.id))
            continue
        specs = cls.all_params_spec()
        resolved, param_problems = resolve_params(specs, node.params, node.id)
        probs.extend(param_problems)
        params[node.id] = resolved
        # a required parameter that is missing *or* unusable (ill-typed, out of range) has no
        # value to fall back on, so the layer cannot be built or infer its shape
        missing = any(spec.required and name not in resolved for name, spec in specs.items())
        if not missing:
            a.layers[node.id] = cls(node.id, resolved)
        a.inputs[node.id] = {}

    # 2. edges: ends, ports, one edge per input port
    g = a.nx_graph
    g.add_nodes_from(graph.nodes)
    for e in graph.edges:
        bad = False
        for end, nid in (("src", e.src), ("dst", e.dst)):
            if nid not in graph.nodes:
                other = e.dst if end == "src" else e.src
                probs.append(EdgeError(f"edge {e}: no node with id '{nid}'",
                                       node=other if other in graph.nodes else None))
                bad = True
        if bad:
            continue
        src_cls = catalogue.get(graph.nodes[e.src].type)
        dst_cls = catalogue.get(graph.nodes[e.dst].type)
        sp, p1 = resolve_ports(src_cls, params.get(e.src, {}), e, "src")
        dp, p2 = resolve_ports(dst_cls, params.get(e.dst, {}), e, "dst")
        for p in (p1, p2):
            if p:
                probs.append(p)
        g.add_edge(e.src, e.dst, delay=e.delay, src_port=sp, dst_port=dp, edge=e)
        if p1 or p2 or dst_cls is None:
            continue
        if dp in a.inputs[e.dst]:
            first = a.inputs[e.dst][dp]
            probs.append(EdgeError(f"input port already fed by {first.src_ref}; a second edge "
                                   f"from {e.src_ref} is not allowed", node=e.dst, port=dp))
            continue
        a.inputs[e.dst][dp] = e

    # unconnected input ports
    for nid, layer in a.layers.items():
        for port in layer.input_ports(layer.params):
            if port not in a.inputs[nid]:
                probs.append(EdgeError("input port is not connected", node=nid, port=port))

    # 3. cycles without a delay edge
    instant = a.instant = instant_graph(graph.nodes, ((u, v, d["delay"])
                                                      for u, v, d in g.edges(data=True)))
    probs.extend(_cycle_problems(instant))
    if nx.is_directed_acyclic_graph(instant):
        file_order = {n: i for i, n in enumerate(graph.nodes)}  # ties keep the file's order
        a.order = list(nx.lexicographical_topological_sort(instant, key=file_order.__getitem__))
    else:
        a.order = list(graph.nodes)

    # 4. shared_with
    for nid, layer in a.layers.items():
        target = layer.params.get("shared_with")
        if target is None:
            continue
        root, seen = target, {nid}
        while True:
            if root not in graph.nodes:
                probs.append(SharedWithError(f"shared_with names '{root}', which is not a node",
                                             node=nid, param="shared_with"))
                root = None
                break
            if root in seen:
                probs.append(SharedWithError("shared_with forms a loop", node=nid,
                                             param="shared_with"))
                root = None
                break
            seen.add(root)
            nxt = a.layers[root].params.get("shared_with") if root in a.layers else None
            if nxt is None:
                break
            root = nxt
        if root is None:
            continue
        other = a.layers.get(root)
        if other is None or type(other) is not type(layer):
            probs.append(SharedWithError(
                f"shared_with names '{root}' of type {graph.nodes[root].type}; expected a "
                f"{graph.nodes[nid].type}", node=nid, param="shared_with"))
            continue
        mine = {k: v for k, v in layer.params.items() if k != "shared_with"}
        theirs = {k: v for k, v in other.params.items() if k != "shared_with"}
        if mine != theirs:
            diff = sorted(k for k in mine if mine[k] != theirs.get(k))
            probs.append(SharedWithError(
                f"shared_with '{root}' has a different configuration ({', '.join(diff)}); "
                "nodes sharing parameters must have equal parameters", node=nid,
                param="shared_with"))
            continue
        a.shared_root[nid] = root

    # 5. the dataset: "auto" shapes, and fields that do not fit their nodes
    _fit_dataset(a, field_shapes, no_dataset)
    _check_lengths(a, field_shapes)

    # 6. shapes, in topological order; values over delay edges come from the previous pass
    _infer_shapes(a)
    return a


def _fit_dataset(a: Analysis, fields: Mapping[str, tuple] | None, no_dataset: str | None
                 ) -> None:
    graph = a.graph
    data = [n for n in a.order if n in a.layers and a.layers[n].data_role is not None]
    # A shape left at AUTO (no dataset, a missing field, or a refused value, which is a
    # ParamError already) is unknown: the node infers no shape, and nothing after it
    # reports the same problem again.
    for nid in data:
        layer = a.layers[nid]
        if layer.params.get("shape") != AUTO or graph.nodes[nid].params.get("shape", AUTO) \
                != AUTO:
            continue
        a.auto_shaped.add(nid)
        if fields is None:
            why = no_dataset or ("the graph has no dataset" if graph.training.get("dataset")
                                 is None else "the dataset was not read to find it")
            a.problems.append(ShapeError(f"shape comes from the dataset, but {why}",
                                         node=nid, param="shape"))
            continue
        info = fields.get(layer.params["field"])
        if info is not None:
            layer.params["shape"] = tuple(info[0])
    if fields is None:
        return
    uses: dict[str, list] = {}
    for nid in data:
        p = a.layers[nid].params
        if p["shape"] != AUTO or nid in a.auto_shaped:  # AUTO here: its field is missing
            shape = () if p["shape"] == AUTO else p["shape"]
            uses.setdefault(p["field"], []).append((nid, shape, p["dtype"]))
    for p in fit_problems(fields, uses, getattr(fields, "name", "dataset")):
        kind = ShapeError if p.param == "shape" else ParamError
        a.problems.append(kind(p.message, node=p.node, param=p.param))


def _check_lengths(a: Analysis, fields: Mapping[str, tuple] | None) -> None:
    """An Input's ``lengths`` (docs/format.md section 2.6): its shape needs a time axis,
    the dataset field must hold one integer per sample, and the sequence Inputs of one
    recurrent region must name the same field."""
    region: dict[str, str] = {}  # lengths field -> the sequence Input naming it
    for nid in a.order:
        layer = a.layers.get(nid)
        if layer is None or layer.data_role != "input" or not layer.params.get("lengths"):
            continue
        fld, shape = layer.params["lengths"], layer.params.get("shape")
        if shape != AUTO and not shape:
            a.problems.append(ParamError(f"lengths field '{fld}' needs a shape [T, ...] "
                                         "whose first axis is the time axis; found []",
                                         node=nid, param="lengths"))
        if layer.presents_steps():
            region.setdefault(fld, nid)
        if fields is None:
            continue
        info = fields.get(fld)
        where = f"dataset '{getattr(fields, 'name', 'dataset')}'"
        if info is None:
            have = ", ".join(fields) or "none"
            a.problems.append(ParamError(f"lengths field '{fld}' is not in {where} (its "
                                         f"fields: {have})", node=nid, param="lengths"))
            continue
        per = tuple(info[0])
        if per not in ((), (1,)):
            a.problems.append(ParamError(f"lengths field '{fld}' of {where} has per-sample "
                                         f"shape {fmt_shape(per)}, expected [] (one length "
                                         "per sample)", node=nid, param="lengths"))
        kind = None
        if info[1] is not None:
            try:
                kind = np.dtype(info[1]).kind
            except TypeError:
                kind = "?"
        if kind is not None and kind not in "iu":
            a.problems.append(ParamError(f"lengths field '{fld}' of {where} holds {info[1]} "
                                         "values, expected integers", node=nid,
                                         param="lengths"))
    if len(region) > 1:
        names = ", ".join(f"'{f}'" for f in region)
        for nid in region.values():
            a.problems.append(ParamError(f"the sequence Inputs name different lengths fields "
                                         f"({names}); one recurrent part has one length per "
                                         "sample", node=nid, param="lengths"))


def _infer_shapes(a: Analysis) -> None:
    graph = a.graph
    seq_inputs = [n for n in a.order if n in a.layers and a.layers[n].presents_steps()]
    unknown = {n for n in seq_inputs if a.layers[n].params["shape"] == AUTO}  # a problem already
    seq_inputs = [n for n in seq_inputs if n not in unknown]
    steps = {a.layers[n].params["shape"][0] for n in seq_inputs if a.layers[n].params["shape"]}
    if len(steps) > 1:
        for n in seq_inputs:
            a.problems.append(ShapeError(
                "sequence inputs disagree on the number of time steps "
                f"({', '.join(str(t) for t in sorted(steps))})", node=n, param="shape"))
    a.steps = min(steps) if steps else None
    for n in seq_inputs:
        if not a.layers[n].params["shape"]:
            a.problems.append(ShapeError("a sequence input needs a shape [T, ...]", node=n,
                                         param="shape"))

    for layer in a.layers.values():
        if layer.collects_steps:
            layer.steps = a.steps
    shapes: dict[str, Shape | None] = {n: None for n in graph.nodes}
    timed: set[str] = set()
    errors: dict[str, GraphProblem] = {}
    has_delay = any(e.delay for e in graph.edges)
    passes = 3 if has_delay else 1
    for _ in range(passes):
        changed = False
        for nid in a.order:
            layer = a.layers.get(nid)
            if layer is None:
                continue
            ins: dict[str, Shape | None] = {}
            is_timed = layer.presents_steps()
            for port, e in a.inputs[nid].items():
                ins[port] = shapes.get(e.src)
                if e.src in timed or e.delay:
                    is_timed = True
            if layer.collects_steps:
                is_timed = False
            try:
                out = layer.infer(ins)
                errors.pop(nid, None)
            except GraphProblem as p:
                errors[nid] = p
                out = None
            if is_timed:
                timed.add(nid)
            if out != shapes[nid]:
                shapes[nid] = out
                changed = True
            if out is not None and all(s is not None for s in ins.values()):
                layer.in_shapes = dict(ins)
                layer.out_shape = out
        if not changed:
            break
    for nid, layer in a.layers.items():
        src = a.inputs[nid].get("in") if layer.collects_steps else None
        if src is not None and src.src not in timed and not src.delay and nid not in errors:
            errors[nid] = ShapeError("the input of a TimeCollect must run once per time step "
                                     "(downstream of a sequence Input or a delay edge)",
                                     node=nid, port="in")
    # The recurrent part ends at its TimeCollect nodes: what comes after runs once, so a
    # delay edge there (into a loss beside a TimeCollect, or back from after it) has no
    # time steps to delay over.
    after: set[str] = set()
    for nid, layer in a.layers.items():
        if layer.collects_steps:
            after |= {nid} | nx.descendants(a.instant, nid)
    for e in graph.edges:
        if not e.delay or not ({e.src, e.dst} & after) or e.dst not in a.inputs:
            continue
        port = next((p for p, fed in a.inputs[e.dst].items() if fed is e), e.dst_port)
        where = e.dst if e.dst in after else e.src
        errors.setdefault(e.dst, EdgeError(
            f"edge {e}: a delay edge must stay inside the recurrent part, which ends at a "
            f"TimeCollect; '{where}' runs once, after it", node=e.dst, port=port))
    for nid in sorted(timed & after):  # reads a per-step value and a whole-sequence one
        if nid in errors or a.layers[nid].collects_steps:
            continue
        src = next((e for e in a.inputs[nid].values() if e.src in timed and not e.delay
                    and e.src not in after), None)
        if src is not None:
            port = next(p for p, fed in a.inputs[nid].items() if fed is src)
            errors[nid] = EdgeError(
                f"reads '{src.src}', which runs once per time step, and comes after a "
                "TimeCollect, which runs once; put a TimeCollect between them",
                node=nid, port=port)
    timed -= after
    a.problems.extend(errors.values())
    a.shapes = shapes
    a.timed = timed
    if (has_delay or timed) and a.steps is None and not errors and not unknown:
        first = next(iter(timed), None)
        a.problems.append(ShapeError("a recurrent graph needs a sequence Input (sequence "
                                     "set to true) whose shape [T, ...] sets the number of "
                                     "time steps",
                                     node=first))
    # shared parameters must have the same shapes (e.g. Dense on inputs of other widths)
    for nid, root in a.shared_root.items():
        mine, theirs = a.layers[nid], a.layers[root]
        if not mine.in_shapes or not theirs.in_shapes:
            continue
        ps, pr = mine.param_shapes(), theirs.param_shapes()
        if ps != pr:
            diff = ", ".join(f"{k} {fmt_shape(ps.get(k))} vs {fmt_shape(pr.get(k))}"
                             for k in ps if ps.get(k) != pr.get(k))
            a.problems.append(SharedWithError(
                f"cannot share parameters with '{root}': their shapes differ ({diff})",
                node=nid, param="shared_with"))
