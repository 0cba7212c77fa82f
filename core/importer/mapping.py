"""A traced module (``torch.fx``) as a NeuroCanvas graph: one node per module call or
operation, in the order ``forward`` runs them.

What each ``torch.nn`` module becomes is read back from the module's attributes here; the
node it gives is then written back to a constructor by ``core.export.torch_layers`` (the
exporter's one table) and that module's attributes must equal the user's, so the two
directions cannot drift apart: a Conv2d with ``dilation=2`` or a BatchNorm with
``momentum=None`` is refused naming the attribute, not imported as something else. Weights
go through the same table (``from_torch``).
"""
from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.elements import ID_RE, Edge, Node
from core.export import torch_layers
from core.graph import Graph
from core.importer.errors import TorchImportError
from core.importer.loops import Loop, find_loop, step_slice
from core.importer.trace import Traced
from core.layers.activations import ELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from core.layers.base import Layer
from core.layers.conv import Conv2D, resolve_padding
from core.layers.dense import Dense
from core.layers.embedding import Embedding
from core.layers.io import Input
from core.layers.merge import Add, Concat, Multiply
from core.layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from core.layers.recurrent import GRU, LSTM, RNN
from core.layers.regularization import BatchNorm, Dropout
from core.layers.shape_ops import Flatten, Reshape
from core.layers.timecollect import TimeCollect

RECURRENT = (RNN, LSTM, GRU)


@dataclass
class Val:
    """What a traced value is in the graph being built.

    kind: "tensor" (node ``node``'s output), "meta" (a size, a constant: no node), "rec"
    (the tuple a recurrent module returns), "seq" (its output sequence), "state" (its last
    state h_n, ``[1, B, H]``), "hc" (an LSTM's (h_n, c_n)), "pad" (an F.pad waiting for the
    convolution it belongs to), "gap" (an adaptive average pool to 1x1, ``[C, 1, 1]``,
    waiting to be flattened), "zeros" (an initial recurrent state), "folded" (a step of a
    loop other than the one imported), "stacked" (``torch.stack`` of a value's steps)."""
    kind: str
    node: str | None = None
    extra: Any = None


@dataclass
class Built:
    graph: Graph
    owners: dict[str, tuple[str, type[Layer]]]  # node id -> (module path, layer class)
    outputs: list[str]  # node ids of forward's outputs, in order
    origin: dict[str, str] = field(default_factory=dict)  # node id -> fx node name
    notes: list[str] = field(default_factory=list)


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _one_or_pair(v) -> int | list[int]:
    a, b = _pair(v)
    return a if a == b else [a, b]


class Mapper:
    def __init__(self, traced: Traced, model, shapes, dtypes, name: str):
        import torch

        self.torch = torch
        self.t = traced
        self.model = model
        self.shapes = shapes
        self.dtypes = dtypes
        self.graph = Graph(name)
        self.vals: dict[str, Val] = {}
        self.owners: dict[str, tuple[str, type[Layer]]] = {}
        self.module_node: dict[str, str] = {}  # module path -> the node owning it
        self.origin: dict[str, str] = {}
        self.notes: list[str] = []
        self.rec_seq_used: set[str] = set()
        self.rec_last_used: set[str] = set()
        users: dict[str, int] = {}
        for n in traced.gm.graph.nodes:
            for u in n.users:
                users[n.name] = users.get(n.name, 0) + (1 if u.op != "output" else 1)
        self.users = users
        # names assigned on exactly one source line: usable as node ids
        lines: dict[str, set[str]] = {}
        for fx_name, var in traced.assigned.items():
            lines.setdefault(var, set()).add(traced.where.get(fx_name, ""))
        self.unique_vars = {v for v, ls in lines.items() if len(ls) == 1}
        self.fx_nodes = {n.name: n for n in traced.gm.graph.nodes}
        self.loop: Loop | None = find_loop(traced.gm, traced.inputs)
        self.pending: list[tuple[str, str | None, int, int]] = []  # dst, port, j, delay
        self.collected: dict[tuple[str, str], str] = {}  # (node, mode) -> TimeCollect id

    # ---- helpers -------------------------------------------------------------------------
    def where(self, n) -> str | None:
        return self.t.where.get(n.name)

    def refuse(self, n, message: str, op: str | None = None):
        raise TorchImportError(message, op=op, where=self.where(n))

    def shape(self, n) -> tuple[int, ...] | None:
        """The per-sample shape of fx node ``n``'s tensor value (None: not a tensor)."""
        meta = n.meta.get("tensor_meta") if hasattr(n, "meta") else None
        if meta is None or not hasattr(meta, "shape"):
            return None
        return tuple(meta.shape)[1:]

    def full_shape(self, n) -> tuple[int, ...] | None:
        meta = n.meta.get("tensor_meta")
        return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None

    def op_name(self, n) -> str:
        if n.op == "call_module":
            mod = self.model.get_submodule(n.target)
            return f"{_torch_path(type(mod))} (module '{n.target}')"
        if n.op == "call_method":
            return f"Tensor.{n.target}"
        if n.op == "call_function":
            return _function_name(n.target)
        if n.op == "get_attr":
            return f"the attribute self.{n.target}"
        return n.op

    def fresh(self, candidates: list[str | None]) -> str:
        for c in candidates:
            if c is None:
                continue
            c = re.sub(r"[^A-Za-z0-9_-]", "_", c)[:64]
            if ID_RE.fullmatch(c) and c not in self.graph.nodes:
                return c
        base = re.sub(r"[^A-Za-z0-9_-]", "_", next(c for c in candidates if c))[:56] or "node"
        i = 1
        while f"{base}_{i}" in self.graph.nodes:
            i += 1
        return f"{base}_{i}"

    def add(self, n, cls: type[Layer], params: dict, sources: list[str],
            prefer: str | None = None, own: bool = True) -> str:
        """A node for fx node ``n`` (``own``: named after it, else only ``prefer``)."""
        var = self.t.assigned.get(n.name)
        var = var if var in self.unique_vars else None
        nid = self.fresh([prefer, var, n.name] if own else [prefer])
        self.graph.add_node(Node(nid, cls.type_name, params))
        self.origin[nid] = n.name
        ports = [None] if len(sources) == 1 else [f"in{i}" for i in range(len(sources))]
        for src, port in zip(sources, ports, strict=True):
            if src.startswith("\0"):  # read over a delay edge: resolved after the cell
                _, j, d = src.split("\0")
                self.pending.append((nid, port, int(j), int(d)))
            else:
                self.graph.add_edge(Edge(src, nid, None, port))
        return nid

    def tensor(self, n, arg) -> str:
        """The node id holding the tensor fx argument ``arg``, or a refusal naming ``n``."""
        fx = self.torch.fx
        if not isinstance(arg, fx.Node):
            self.refuse(n, f"{self.op_name(n)} with a constant operand ({arg!r}) has no "
                        "NeuroCanvas node", self.op_name(n))
        v = self.vals[arg.name]
        if self.loop is not None and arg.name in self.loop.index:
            return self._loop_value(n, arg)
        if v.kind == "stacked":
            return self.collect(n, v.node, "all")
        if v.kind == "tensor":
            return v.node
        if v.kind == "seq":
            self.rec_seq_used.add(v.node)
            return v.node
        if v.kind == "gap":  # a [C, 1, 1] value used as such
            return self.add(n, Reshape, {"shape": list(self.shape(arg))}, [v.node],
                            prefer=f"{v.node}_reshape", own=False)
        what = {"rec": "the tuple an RNN/LSTM/GRU module returns (take [0], the outputs)",
                "state": "the last state h_n of a recurrent module, [1, B, H] (use h_n[-1])",
                "hc": "the (h_n, c_n) tuple of an LSTM",
                "pad": "F.pad outside a convolution's padding",
                "meta": "a value that is not a tensor of the network",
                "zeros": "a tensor of zeros (only a recurrent state may start from one)",
                "stacked": "stacked steps", "tuple": "a NamedTuple"}[v.kind]
        self.refuse(n, f"{self.op_name(n)} of {what} has no NeuroCanvas node",
                    self.op_name(n))
        raise AssertionError  # refuse raises

    # ---- a folded time loop ---------------------------------------------------------------
    def _loop_value(self, n, arg) -> str:
        """The node (or a pending delay edge) for a value of the time loop read by ``n``."""
        loop = self.loop
        k, j = loop.index[arg.name]
        if n.name in loop.index:  # inside the cell
            d = loop.last - k
            if d == 0:
                return self.vals[arg.name].node
            self._check_zero_start(n, arg, d)
            return f"\0{j}\0{d}"
        if k != loop.last:
            self.refuse(n, f"{self.op_name(n)} reads the value of step {k} of the time loop "
                        "after it; only the last step, all steps stacked or their mean can "
                        "leave a recurrent cell", self.op_name(n))
        return self.collect(n, self.vals[arg.name].node, "last")

    def _check_zero_start(self, n, arg, d: int) -> None:
        """At the first step, what the cell reads over a delay must be zeros."""
        loop = self.loop
        kn, jn = loop.index[n.name]
        first = self.fx_nodes[loop.copies[0][jn]]
        mine: list = []
        theirs: list = []
        self.torch.fx.node.map_arg((n.args, n.kwargs), mine.append)
        self.torch.fx.node.map_arg((first.args, first.kwargs), theirs.append)
        where = mine.index(arg) if arg in mine else -1
        start = theirs[where] if 0 <= where < len(theirs) else None
        if start is None or self.vals.get(start.name, Val("meta")).kind != "zeros":
            self.refuse(n, f"the recurrent state {self.op_name(n)} reads from {d} step"
                        f"{'s' * (d > 1)} back does not start from zeros; NeuroCanvas's delay "
                        "edges do", self.op_name(n))

    def collect(self, n, nid: str, mode: str) -> str:
        key = (nid, mode)
        if key not in self.collected:
            params = {} if mode == "last" else {"mode": mode}
            self.collected[key] = self.add(n, TimeCollect, params, [nid],
                                           prefer=f"{nid}_{mode}", own=mode == "mean")
        return self.collected[key]

    # ---- the walk --------------------------------------------------------------------------
    def run(self) -> Built:
        fx = self.torch.fx
        outputs: list[str] = []
        for i, nid in enumerate(self.t.inputs):
            node = self.fx_nodes[nid]
            if nid in self.t.lengths:  # no node: the lengths parameter of an Input
                self.vals[nid] = Val("lengths", extra=str(node.target))
                continue
            params = {"shape": list(self.shapes[i]), "field": str(node.target),
                      "dtype": self.dtypes[i]}
            if self.loop is not None and nid in self.loop.sequences:
                params["sequence"] = True
            if not ID_RE.fullmatch(params["field"]):
                params["field"] = self.fresh([params["field"]])
            oid = self.fresh([str(node.target)])
            self.graph.add_node(Node(oid, Input.type_name, params))
            self.origin[oid] = nid
            self.vals[nid] = Val("tensor", oid)
        for n in self.t.gm.graph.nodes:
            if n.op == "placeholder":
                if n.name not in self.vals:
                    self.vals[n.name] = Val("meta")
                continue
            if self.loop is not None and n.name in self.loop.index:
                if self.loop.index[n.name][0] != self.loop.last:
                    self.vals[n.name] = Val("folded")
                    continue
                s = step_slice(n, set(self.t.inputs))
                if s is not None:  # x[:, t]: the sequence Input's value at the step
                    self.vals[n.name] = self.vals[s[0]]
                    continue
            if n.op == "output":
                found: list = []
                fx.node.map_arg(n.args, found.append)
                while any(self.vals[a.name].kind == "tuple" for a in found):
                    flat: list = []
                    for a in found:
                        if self.vals[a.name].kind == "tuple":
                            fx.node.map_arg(self.vals[a.name].extra, flat.append)
                        else:
                            flat.append(a)
                    found = flat
                for arg in found:
                    if self.full_shape(arg) is None:
                        continue
                    oid = self.tensor(n, arg)
                    if oid not in outputs:
                        outputs.append(oid)
                continue
            shape = self.full_shape(n)
            if n.op == "call_module":
                self.vals[n.name] = self.call_module(n)
            elif n.op in ("call_function", "call_method"):
                self.vals[n.name] = self.call(n)
            elif n.op == "get_attr":
                self.refuse(n, f"forward reads the parameter or buffer self.{n.target} "
                            "directly; only modules and the operations of docs/import.md "
                            "can be imported", f"self.{n.target}")
            if shape is None and self.vals[n.name].kind == "tensor" \
                    and n.meta.get("tensor_meta") is None:
                self.vals[n.name] = Val("meta")
        for dst, port, j, d in self.pending:
            src = self.vals[self.loop.template(j)].node
            self.graph.add_edge(Edge(src, dst, None, port, d))
        for nid in self.rec_last_used:
            if nid in self.rec_seq_used:
                self.refuse(self.fx_nodes[self.origin[nid]],
                            f"both the output sequence and the last state of '{nid}' are "
                            "used; a NeuroCanvas recurrent node gives one of them")
            self.graph.nodes[nid].params.pop("return_sequences")  # the default: the last state
        if not outputs:
            raise TorchImportError("forward returns no tensor")
        return Built(self.graph, self.owners, outputs, self.origin, self.notes)

    # ---- modules ---------------------------------------------------------------------------
    def call_module(self, n) -> Val:
        mod = self.model.get_submodule(n.target)
        handler = MODULES.get(type(mod))
        if handler is None:
            if isinstance(mod, self.torch.nn.AdaptiveAvgPool2d):
                if _pair(mod.output_size) != (1, 1):
                    self.refuse(n, f"{self.op_name(n)} to {mod.output_size} has no NeuroCanvas "
                                "node (only to 1x1: GlobalAvgPool2D)", self.op_name(n))
                return self.gap(n)
            self.refuse(n, f"{self.op_name(n)} has no NeuroCanvas node", self.op_name(n))
        if len(n.args) != 1 or n.kwargs:
            extra = "an initial state" if handler.cls in RECURRENT else "more than one input"
            self.refuse(n, f"{self.op_name(n)} is called with {extra}; NeuroCanvas's node "
                        "takes one input", self.op_name(n))
        arg = n.args[0]
        pad = None
        if isinstance(arg, self.torch.fx.Node) and self.vals[arg.name].kind == "pad" \
                and handler.cls is Conv2D:
            pad = self.vals[arg.name].extra
            src = self.vals[arg.name].node
            in_node = self.fx_nodes[self.vals[arg.name].extra[1]]
            in_shape = self.shape(in_node)
            pad = pad[0]
        else:
            src = self.tensor(n, arg)
            in_shape = self.shape(arg)
        params = handler.params(mod, in_shape, pad, self, n)
        owner = self.module_node.get(n.target)
        if owner is not None:  # a module called again: shares the first call's parameters
            if handler.has_params:
                params["shared_with"] = owner
            nid = self.add(n, handler.cls, params, [src])
        else:
            nid = self.add(n, handler.cls, params, [src], prefer=n.target.replace(".", "_"))
            self.module_node[n.target] = nid
            if handler.has_params:
                self.owners[nid] = (n.target, handler.cls)
        self._check_module(n, mod, handler, nid, in_shape)
        if handler.cls in RECURRENT:
            return Val("rec", nid)
        return Val("tensor", nid)

    def _check_module(self, n, mod, handler, nid, in_shape) -> None:
        """The node, written back to a module by the exporter's table, is the user's."""
        cls = handler.cls
        layer = cls(nid, _resolved(cls, self.graph.nodes[nid].params))
        layer.in_shapes = {"in": tuple(in_shape) if in_shape is not None else ()}
        source = torch_layers.module_source(layer)
        if source is None:
            return
        nn = self.torch.nn
        theirs = eval(source, {"nn": nn})  # noqa: S307 - text our own exporter wrote
        ours_attrs, mine = _attrs(theirs), _attrs(mod)
        for key in handler.ignore:
            ours_attrs.pop(key, None)
            mine.pop(key, None)
        for key in sorted(set(ours_attrs) | set(mine)):
            if _norm(ours_attrs.get(key)) != _norm(mine.get(key)):
                self.refuse(n, f"{self.op_name(n)} has {key}={mine.get(key)!r}; NeuroCanvas's "
                            f"{cls.type_name} computes it only with {key}="
                            f"{ours_attrs.get(key)!r}", self.op_name(n))
        for pname in ("weight", "bias"):
            a, b = getattr(mod, pname, None), getattr(theirs, pname, None)
            if (a is None) != (b is None):
                self.refuse(n, f"{self.op_name(n)}: {'no ' if a is None else ''}{pname} is "
                            f"not what {cls.type_name} has", self.op_name(n))

    def gap(self, n) -> Val:
        src = self.tensor(n, n.args[0])
        nid = self.add(n, GlobalAvgPool2D, {}, [src])
        return Val("gap", nid)

    # ---- functions and methods ----------------------------------------------------------------
    def call(self, n) -> Val:
        if n.op == "call_function" and isinstance(n.target, type) \
                and issubclass(n.target, tuple) and hasattr(n.target, "_fields"):
            return Val("tuple", extra=list(n.args) + list(n.kwargs.values()))  # a NamedTuple
        key = n.target if n.op == "call_function" else f".{n.target}"
        handler = FUNCTIONS.get(key)
        if handler is None and n.op == "call_function":  # an export's helpers, by name
            handler = {"last_valid": _lengths_last, "valid_steps": _lengths_steps}.get(
                getattr(n.target, "__name__", ""))
        if handler is None:
            self.refuse(n, f"{self.op_name(n)} has no NeuroCanvas node", self.op_name(n))
        return handler(self, n)

    def arg(self, n, i: int, name: str, default=None):
        if len(n.args) > i:
            return n.args[i]
        return n.kwargs.get(name, default)


# ---- module handlers --------------------------------------------------------------------------
@dataclass(frozen=True)
class ModuleHandler:
    cls: type[Layer]
    params: Callable  # (module, in_shape, pad, mapper, fx node) -> node params
    has_params: bool = False
    ignore: tuple[str, ...] = ("inplace",)


def _conv_params(mod, in_shape, pad, m: Mapper, n) -> dict:
    k, s = _pair(mod.kernel_size), _pair(mod.stride)
    p: dict[str, Any] = {"filters": mod.out_channels, "kernel_size": _one_or_pair(k)}
    if s != (1, 1):
        p["stride"] = _one_or_pair(s)
    hw = tuple(in_shape[1:]) if in_shape is not None and len(in_shape) == 3 else (0, 0)
    if isinstance(mod.padding, str):
        pads = resolve_padding(mod.padding, hw, k, s)
    else:
        ph, pw = _pair(mod.padding)
        pads = ((ph, ph), (pw, pw))
    if pad is not None:  # F.pad(x, (left, right, top, bottom)) just before
        if pads != ((0, 0), (0, 0)) or len(pad) != 4:
            m.refuse(n, "F.pad before a padded convolution has no NeuroCanvas node", "F.pad")
        left, right, top, bottom = pad
        pads = ((top, bottom), (left, right))
    if pads == ((0, 0), (0, 0)):
        pass  # "valid", the default
    elif pads == resolve_padding("same", hw, k, s):
        p["padding"] = "same"
    elif pads[0][0] == pads[0][1] and pads[1][0] == pads[1][1]:
        p["padding"] = _one_or_pair((pads[0][0], pads[1][0]))
    else:
        m.refuse(n, f"the padding {pads} is neither symmetric nor 'same'", "F.pad")
    if mod.bias is None:
        p["bias"] = False
    return p


def _pool_params(mod, in_shape, pad, m, n) -> dict:
    k = _pair(mod.kernel_size)
    s = _pair(mod.stride) if mod.stride is not None else k
    p: dict[str, Any] = {"pool_size": _one_or_pair(k)}
    if s != k:
        p["stride"] = _one_or_pair(s)
    if _pair(mod.padding) != (0, 0):
        p["padding"] = _one_or_pair(mod.padding)
    return p


def _bn_params(mod, in_shape, pad, m: Mapper, n) -> dict:
    if in_shape is None or len(in_shape) not in (1, 3):
        m.refuse(n, f"{m.op_name(n)} of per-sample shape {list(in_shape or ())}: BatchNorm "
                 "normalises [F] features or [C, H, W] images", m.op_name(n))
    p: dict[str, Any] = {}
    if mod.momentum != 0.1:
        p["momentum"] = mod.momentum
    if mod.eps != 1e-5:
        p["eps"] = mod.eps
    return p


def _rec_params(mod, in_shape, pad, m, n) -> dict:
    p: dict[str, Any] = {"units": mod.hidden_size, "return_sequences": True}
    if getattr(mod, "nonlinearity", "tanh") == "relu":
        p["activation"] = "relu"
    return p


def _embedding_params(mod, in_shape, pad, m: Mapper, n) -> dict:
    if mod.padding_idx is not None:
        m.notes.append(f"'{n.target}': padding_idx={mod.padding_idx} is not kept: NeuroCanvas "
                       "trains that row like the others (the forward pass is the same)")
    return {"num_embeddings": mod.num_embeddings, "dim": mod.embedding_dim}


def _none(mod, in_shape, pad, m, n) -> dict:
    return {}


def _flatten_params(mod, in_shape, pad, m: Mapper, n) -> dict:
    if mod.start_dim != 1 or mod.end_dim != -1:
        m.refuse(n, f"{m.op_name(n)}(start_dim={mod.start_dim}, end_dim={mod.end_dim}): "
                 "only start_dim=1, end_dim=-1 is a Flatten", m.op_name(n))
    return {}


def _softmax_params(mod, in_shape, pad, m: Mapper, n) -> dict:
    return {"axis": _sample_axis(m, n, mod.dim, "dim")}


def _sample_axis(m: Mapper, n, dim, what: str) -> int:
    """A dim of the batched tensor as a per-sample axis (0 the first after the batch)."""
    if dim is None:
        m.refuse(n, f"{m.op_name(n)} without {what} has no NeuroCanvas node (give {what})",
                 m.op_name(n))
    if dim == 0:
        m.refuse(n, f"{m.op_name(n)} along {what}=0, the batch axis, has no NeuroCanvas node",
                 m.op_name(n))
    return dim - 1 if dim > 0 else dim


def _module_handlers() -> dict:
    from torch import nn

    return {
        nn.Linear: ModuleHandler(Dense, lambda mod, *_: {"units": mod.out_features}
                                 | ({} if mod.bias is not None else {"bias": False}), True),
        nn.Conv2d: ModuleHandler(Conv2D, _conv_params, True, ("inplace", "padding",
                                                             "_reversed_padding_repeated_twice")),
        nn.MaxPool2d: ModuleHandler(MaxPool2D, _pool_params),
        nn.AvgPool2d: ModuleHandler(AvgPool2D, _pool_params),
        nn.Flatten: ModuleHandler(Flatten, _flatten_params),
        nn.Dropout: ModuleHandler(Dropout, lambda mod, *_: {"rate": float(mod.p)}),
        nn.BatchNorm1d: ModuleHandler(BatchNorm, _bn_params, True),
        nn.BatchNorm2d: ModuleHandler(BatchNorm, _bn_params, True),
        nn.Embedding: ModuleHandler(Embedding, _embedding_params, True,
                                    ("inplace", "padding_idx")),
        nn.RNN: ModuleHandler(RNN, _rec_params, True),
        nn.LSTM: ModuleHandler(LSTM, _rec_params, True),
        nn.GRU: ModuleHandler(GRU, _rec_params, True),
        nn.Identity: ModuleHandler(Identity, _none),
        nn.ReLU: ModuleHandler(ReLU, _none),
        nn.Tanh: ModuleHandler(Tanh, _none),
        nn.Sigmoid: ModuleHandler(Sigmoid, _none),
        nn.LeakyReLU: ModuleHandler(LeakyReLU, lambda mod, *_: {
            "negative_slope": float(mod.negative_slope)}),
        nn.ELU: ModuleHandler(ELU, lambda mod, *_: {"alpha": float(mod.alpha)}),
        nn.Softmax: ModuleHandler(Softmax, _softmax_params),
    }


MODULES: dict = {}


# ---- function and method handlers ----------------------------------------------------------
def _activation(cls: type[Layer], extra: Callable | None = None) -> Callable:
    def handle(m: Mapper, n) -> Val:
        src = m.tensor(n, n.args[0] if n.args else n.kwargs.get("input"))
        params = extra(m, n) if extra else {}
        return Val("tensor", m.add(n, cls, params, [src]))
    return handle


def _merge(cls: type[Layer], fn_names: tuple) -> Callable:
    """a + b (+ c ...): one node with as many inputs, where an inner sum feeds only it."""
    def handle(m: Mapper, n) -> Val:
        if n.op == "call_function" and n.target in (m.torch.add, m.torch.mul) \
                and "alpha" in n.kwargs:
            m.refuse(n, f"{m.op_name(n)} with alpha has no NeuroCanvas node", m.op_name(n))
        a, b = n.args[0], n.args[1] if len(n.args) > 1 else n.kwargs.get("other")
        fx = m.torch.fx
        sources: list[str] = []
        for arg in (a, b):
            inner = arg if isinstance(arg, fx.Node) else None
            nid = m.tensor(n, arg)
            node = m.graph.nodes[nid]
            if inner is not None and node.type == cls.type_name and len(inner.users) == 1 \
                    and m.origin.get(nid) == inner.name:
                # fold the inner merge into this one
                ins = [e.src for e in sorted(m.graph.in_edges(nid), key=lambda e: e.dst_port)]
                for e in list(m.graph.in_edges(nid)):
                    m.graph.remove_edge(e)
                m.graph.remove_node(nid)
                m.origin.pop(nid, None)
                sources += ins
            else:
                sources.append(nid)
        shapes = {m.shape(x) for x in (a, b) if isinstance(x, fx.Node)}
        if len(shapes) > 1:
            m.refuse(n, f"{m.op_name(n)} of shapes {' and '.join(str(list(s)) for s in shapes)} "
                     f"broadcasts; {cls.type_name} takes inputs of one shape", m.op_name(n))
        return Val("tensor", m.add(n, cls, {"inputs": len(sources)}
                                   if len(sources) != 2 else {}, sources))
    return handle


def _cat(m: Mapper, n) -> Val:
    tensors = m.arg(n, 0, "tensors")
    dim = m.arg(n, 1, "dim", 0)
    if not isinstance(tensors, (list, tuple)) or len(tensors) < 2:
        m.refuse(n, f"{m.op_name(n)} of fewer than two tensors", m.op_name(n))
    axis = _sample_axis(m, n, dim, "dim")
    sources = [m.tensor(n, t) for t in tensors]
    params: dict[str, Any] = {}
    if len(sources) != 2:
        params["inputs"] = len(sources)
    if axis != -1:
        params["axis"] = axis
    return Val("tensor", m.add(n, Concat, params, sources))


def _batch_kept(m: Mapper, n) -> bool:
    src = n.args[0]
    full_in, full_out = m.full_shape(src), m.full_shape(n)
    return bool(full_in and full_out and full_out[0] == full_in[0]
                and math.prod(full_in[1:]) == math.prod(full_out[1:]))


def _reshape_like(m: Mapper, n) -> Val:
    src_arg = n.args[0] if n.args else n.kwargs.get("input")
    v = m.vals[src_arg.name] if hasattr(src_arg, "name") else None
    out = m.shape(n)
    if v is not None and v.kind == "state" and out is not None \
            and m.full_shape(n)[0] == m.full_shape(src_arg)[1]:
        return _last_state(m, n, v)  # h_n.squeeze(0), h_n.view(B, H)
    if not _batch_kept(m, n):
        m.refuse(n, f"{m.op_name(n)} that moves the batch axis has no NeuroCanvas node (keep "
                 "axis 0 as the batch)", m.op_name(n))
    if v is not None and v.kind == "gap" and len(out) == 1:
        return Val("tensor", v.node)  # adaptive pool to 1x1, then flattened: GlobalAvgPool2D
    src = m.tensor(n, src_arg)
    if len(out) == 1 and (_is_flatten(m, n) or _written_shape(m, n, out) == [-1]):
        # flatten(1), also of a [F] value (a Flatten as written), or view(B, -1)
        return Val("tensor", m.add(n, Flatten, {}, [src]))
    if out == m.shape(src_arg):
        return Val("tensor", src)
    return Val("tensor", m.add(n, Reshape, {"shape": _written_shape(m, n, out)}, [src]))


def _written_shape(m: Mapper, n, out) -> list[int]:
    """The per-sample shape as the code writes it, ``-1`` included, where it is written as
    ``x.reshape(B, 2, -1)`` with B the batch size (a size taken from a tensor); else the
    shape the trace found."""
    if n.target not in ("view", "reshape") and n.target is not m.torch.reshape:
        return list(out)
    dims = list(n.args[1:]) if n.op == "call_method" else list(m.arg(n, 1, "shape") or [])
    if len(dims) == 1 and isinstance(dims[0], (list, tuple)):
        dims = list(dims[0])
    if len(dims) != len(out) + 1 or isinstance(dims[0], int):
        return list(out)
    rest = dims[1:]
    if rest == [-1]:  # x.view(x.size(0), -1)
        return rest
    if all(isinstance(d, int) for d in rest) and rest.count(-1) <= 1 \
            and all(d == o or d == -1 for d, o in zip(rest, out, strict=True)):
        return rest
    return list(out)


def _is_flatten(m: Mapper, n) -> bool:
    if n.target in ("flatten",) or n.target is getattr(m.torch, "flatten", None):
        start = m.arg(n, 1, "start_dim", 0)
        end = m.arg(n, 2, "end_dim", -1)
        return start == 1 and end == -1
    return False


def _flatten(m: Mapper, n) -> Val:
    start = m.arg(n, 1, "start_dim", 0)
    if start == 0:
        m.refuse(n, f"{m.op_name(n)} from dim 0 merges the batch axis; flatten from dim 1",
                 m.op_name(n))
    return _reshape_like(m, n)


def _squeeze(m: Mapper, n) -> Val:
    dim = m.arg(n, 1, "dim")
    src = n.args[0]
    v = m.vals[src.name] if hasattr(src, "name") else None
    if v is not None and v.kind == "state" and dim == 0:
        return _last_state(m, n, v)
    if dim is None or dim == 0:
        m.refuse(n, f"{m.op_name(n)} without a dim other than 0 could drop the batch axis",
                 m.op_name(n))
    return _reshape_like(m, n)


def _with_lengths(m: Mapper, n) -> Val:
    """``last_valid(seq, lengths)`` / ``valid_steps(seq, lengths)`` of an export: the
    recurrent node on variable-length sequences; the Input it reads gets ``lengths``."""
    src, lens = n.args[0], n.args[1]
    v = m.vals[src.name] if isinstance(src, m.torch.fx.Node) else Val("meta")
    lv = m.vals[lens.name] if isinstance(lens, m.torch.fx.Node) else Val("meta")
    if v.kind != "seq" or lv.kind != "lengths":
        m.refuse(n, f"{m.op_name(n)} is read back only on a recurrent module's output "
                 "sequence and an input of lengths", m.op_name(n))
    todo, seen = [v.node], set()
    while todo:  # the Inputs the recurrent node reads, through the nodes before it
        nid = todo.pop()
        if nid in seen:
            continue
        seen.add(nid)
        node = m.graph.nodes[nid]
        if node.type == Input.type_name:
            node.params["lengths"] = lv.extra
        todo += [e.src for e in m.graph.edges if e.dst == nid]
    return v


def _lengths_last(m: Mapper, n) -> Val:
    return _last_state(m, n, _with_lengths(m, n))


def _lengths_steps(m: Mapper, n) -> Val:
    return _with_lengths(m, n)


def _last_state(m: Mapper, n, v: Val) -> Val:
    m.rec_last_used.add(v.node)
    return Val("tensor", v.node)


def _getitem(m: Mapper, n) -> Val:
    src, idx = n.args
    fx = m.torch.fx
    v = m.vals[src.name] if isinstance(src, fx.Node) else Val("meta")
    if v.kind == "meta":
        return Val("meta")
    if v.kind == "rec":
        if idx == 0:
            return Val("seq", v.node)
        if idx == 1:
            lstm = m.graph.nodes[v.node].type == LSTM.type_name
            return Val("hc" if lstm else "state", v.node)
    if v.kind == "hc" and idx == 0:
        return Val("state", v.node)
    if v.kind == "state" and idx in (0, -1):
        return _last_state(m, n, v)
    if v.kind == "seq" and _is_last_step(idx):
        return _last_state(m, n, v)
    if v.kind == "hc" and idx == 1:
        m.refuse(n, "the cell state c_n of an LSTM has no NeuroCanvas port (use h_n or the "
                 "outputs)", "c_n")
    m.refuse(n, f"indexing {_index_text(idx)} has no NeuroCanvas node", "indexing")
    raise AssertionError


def _is_last_step(idx) -> bool:
    """``[:, -1]`` or ``[:, -1, :]``: the last step of a batch-first sequence."""
    if not isinstance(idx, tuple) or len(idx) not in (2, 3):
        return False
    full = slice(None, None, None)
    return idx[0] == full and idx[1] == -1 and (len(idx) == 2 or idx[2] == full)


def _index_text(idx) -> str:
    def one(i):
        if isinstance(i, slice):
            return ":".join("" if x is None else str(x) for x in (i.start, i.stop)) \
                + ("" if i.step is None else f":{i.step}")
        return "..." if i is Ellipsis else str(i)
    parts = idx if isinstance(idx, tuple) else (idx,)
    return "[" + ", ".join(one(i) for i in parts) + "]"


def _stack(m: Mapper, n) -> Val:
    """``torch.stack(steps, dim=1)`` of one value at every step of the time loop."""
    tensors = m.arg(n, 0, "tensors")
    dim = m.arg(n, 1, "dim", 0)
    loop = m.loop
    if loop is not None and isinstance(tensors, (list, tuple)) and dim == 1 \
            and len(tensors) == loop.T and all(getattr(t, "name", None) in loop.index
                                               for t in tensors):
        steps = [loop.index[t.name] for t in tensors]
        if [k for k, _ in steps] == list(range(loop.T)) and len({j for _, j in steps}) == 1:
            return Val("stacked", m.vals[loop.template(steps[0][1])].node)
    m.refuse(n, f"{m.op_name(n)} other than of one value at every step of a time loop, "
             "along dim 1, has no NeuroCanvas node", m.op_name(n))
    raise AssertionError


def _zeros(m: Mapper, n) -> Val:
    return Val("zeros")


def _meta(m: Mapper, n) -> Val:
    return Val("meta")


def _same(m: Mapper, n) -> Val:
    """.contiguous(), .float(), .long(): the value itself (our Embedding takes whole floats,
    and computes in float32)."""
    return m.vals[n.args[0].name]


def _mean(m: Mapper, n) -> Val:
    dims = m.arg(n, 1, "dim")
    keep = m.arg(n, 2, "keepdim", False)
    v = m.vals.get(getattr(n.args[0], "name", ""))
    if v is not None and v.kind == "stacked" and dims in (1, (1,), [1]) and not keep:
        return Val("tensor", m.collect(n, v.node, "mean"))
    full = m.full_shape(n.args[0])
    if full is not None and len(full) == 4 and not keep and dims is not None \
            and {d % 4 for d in (dims if isinstance(dims, (list, tuple)) else [dims])} == {2, 3}:
        return Val("tensor", m.add(n, GlobalAvgPool2D, {}, [m.tensor(n, n.args[0])]))
    m.refuse(n, f"{m.op_name(n)} other than over the two image axes of [B, C, H, W] has no "
             "NeuroCanvas node", m.op_name(n))
    raise AssertionError


def _adaptive_avg(m: Mapper, n) -> Val:
    size = m.arg(n, 1, "output_size")
    if _pair(size) != (1, 1):
        m.refuse(n, f"{m.op_name(n)} to {size} has no NeuroCanvas node (only to 1x1)",
                 m.op_name(n))
    return m.gap(n)


def _pad(m: Mapper, n) -> Val:
    pad = tuple(m.arg(n, 1, "pad"))
    mode = m.arg(n, 2, "mode", "constant")
    value = m.arg(n, 3, "value", None)
    if mode != "constant" or value not in (None, 0, 0.0):
        m.refuse(n, f"{m.op_name(n)} with mode={mode!r}, value={value!r} has no NeuroCanvas "
                 "node", m.op_name(n))
    return Val("pad", m.tensor(n, n.args[0]), (pad, n.args[0].name))


def _dropout(m: Mapper, n) -> Val:
    p = m.arg(n, 1, "p", 0.5)
    return Val("tensor", m.add(n, Dropout, {"rate": float(p)}, [m.tensor(n, n.args[0])]))


def _softmax(m: Mapper, n) -> Val:
    dim = m.arg(n, 1, "dim")
    return Val("tensor", m.add(n, Softmax, {"axis": _sample_axis(m, n, dim, "dim")},
                               [m.tensor(n, n.args[0])]))


def _functional_pool(cls: type[Layer]) -> Callable:
    def handle(m: Mapper, n) -> Val:
        k = _pair(m.arg(n, 1, "kernel_size"))
        s = m.arg(n, 2, "stride", None)
        s = k if s in (None, []) else _pair(s)
        pad = _pair(m.arg(n, 3, "padding", 0))
        extra = {k_: v for k_, v in n.kwargs.items() if k_ not in ("kernel_size", "stride",
                                                                   "padding", "input")}
        if any(v not in (False, 1, None, True) for v in extra.values()) or \
                extra.get("ceil_mode") or extra.get("return_indices") \
                or extra.get("divisor_override") or extra.get("count_include_pad") is False \
                or len(n.args) > 4:
            m.refuse(n, f"{m.op_name(n)} with {extra or n.args[4:]} has no NeuroCanvas node",
                     m.op_name(n))
        p: dict[str, Any] = {"pool_size": _one_or_pair(k)}
        if s != k:
            p["stride"] = _one_or_pair(s)
        if pad != (0, 0):
            p["padding"] = _one_or_pair(pad)
        return Val("tensor", m.add(n, cls, p, [m.tensor(n, n.args[0])]))
    return handle


def _function_handlers() -> dict:
    import torch
    import torch.nn.functional as F

    relu, tanh, sigm = _activation(ReLU), _activation(Tanh), _activation(Sigmoid)
    add, mul = _merge(Add, ("add",)), _merge(Multiply, ("mul",))
    leaky = _activation(LeakyReLU, lambda m, n: {"negative_slope": float(
        m.arg(n, 1, "negative_slope", 0.01))})
    elu = _activation(ELU, lambda m, n: {"alpha": float(m.arg(n, 1, "alpha", 1.0))})
    table: dict[Any, Callable] = {
        operator.add: add, torch.add: add, ".add": add, operator.iadd: add,
        operator.mul: mul, torch.mul: mul, ".mul": mul, operator.imul: mul,
        torch.cat: _cat, torch.concat: _cat,
        torch.flatten: _flatten, ".flatten": _flatten,
        ".view": _reshape_like, ".reshape": _reshape_like, torch.reshape: _reshape_like,
        ".squeeze": _squeeze, torch.squeeze: _squeeze,
        ".unsqueeze": _squeeze, torch.unsqueeze: _squeeze,
        torch.relu: relu, F.relu: relu, ".relu": relu,
        torch.tanh: tanh, F.tanh: tanh, ".tanh": tanh,
        torch.sigmoid: sigm, F.sigmoid: sigm, ".sigmoid": sigm,
        F.leaky_relu: leaky, F.elu: elu,
        F.softmax: _softmax, torch.softmax: _softmax, ".softmax": _softmax,
        F.dropout: _dropout,
        ".mean": _mean, torch.mean: _mean,
        F.adaptive_avg_pool2d: _adaptive_avg,
        F.max_pool2d: _functional_pool(MaxPool2D), F.avg_pool2d: _functional_pool(AvgPool2D),
        F.pad: _pad,
        operator.getitem: _getitem,
        ".size": _meta, getattr: _meta, ".dim": _meta,
        torch.stack: _stack, ".new_zeros": _zeros, torch.zeros: _zeros,
        torch.zeros_like: _zeros,
        ".contiguous": _same, ".float": _same, ".long": _same, ".int": _same,
        torch.fx._symbolic_trace._assert_is_none: _meta,
    }
    return table


FUNCTIONS: dict = {}


def handlers_ready() -> None:
    """Fill the tables (they need torch, imported only when an import runs)."""
    if not MODULES:
        MODULES.update(_module_handlers())
        FUNCTIONS.update(_function_handlers())


# ---- small helpers -------------------------------------------------------------------------
def _torch_path(cls) -> str:
    mod = cls.__module__
    if mod.startswith("torch.nn"):
        return f"nn.{cls.__name__}"
    return f"{mod}.{cls.__qualname__}"


def _function_name(fn) -> str:
    symbols = {operator.add: "+", operator.sub: "-", operator.mul: "*", operator.truediv: "/",
               operator.matmul: "@", operator.pow: "**", operator.neg: "unary -",
               operator.floordiv: "//", operator.mod: "%"}
    if fn in symbols:
        return f"the operator {symbols[fn]}"
    import torch.nn.functional as F

    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", repr(fn))
    if mod.startswith("torch.nn.functional") or getattr(F, name, None) is fn:
        return f"F.{name}"
    if mod.startswith("torch") or mod == "" or mod == "builtins":
        return f"torch.{name}" if mod.startswith("torch") else name
    return f"{mod}.{name}"


def _attrs(mod) -> dict:
    """The constructor settings of a module: its public plain attributes."""
    out = {}
    for k, v in vars(mod).items():
        if k.startswith("_") or k == "training":
            continue
        if isinstance(v, (int, float, str, bool, tuple, list, type(None))):
            out[k] = v
    return out


def _norm(v):
    if isinstance(v, list):
        v = tuple(v)
    if isinstance(v, tuple) and v and all(x == v[0] for x in v):
        return v[0]
    return v


def _resolved(cls: type[Layer], params: dict) -> dict:
    """A node's parameters with the defaults filled in, as its layer reads them."""
    from core.params import resolve_params

    resolved, problems = resolve_params(cls.all_params_spec(), params, "node")
    if problems:
        raise TorchImportError(str(problems[0]))
    return resolved
