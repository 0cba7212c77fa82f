"""What each node type is in PyTorch: one entry per type, in one table.

An entry says which ``torch.nn`` module a node becomes (its constructor, as source text),
the expression ``forward`` computes it with, and where each of its parameters and buffers
goes in that module's ``state_dict`` (NeuroCanvas keeps Dense and recurrent weights as
``[in, out]``, PyTorch as ``[out, in]``: those are stored transposed). The exporter writes
code from it; the tests and benchmarks copy weights between NeuroCanvas and PyTorch with
``to_torch`` / ``from_torch``, so all of them agree on one mapping. Adding a node type is
its layer file plus one entry here; a test checks that every registered type has one.

This module imports no torch: it writes text and moves NumPy arrays.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from core.layers.activations import ELU, Identity, LeakyReLU, ReLU, Sigmoid, Softmax, Tanh
from core.layers.base import Layer
from core.layers.conv import Conv2D, resolve_padding
from core.layers.dense import Dense
from core.layers.embedding import Embedding
from core.layers.io import Input, Target
from core.layers.losses import (
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    HingeLoss,
    MSELoss,
    TripletLoss,
)
from core.layers.merge import Add, Concat, Multiply
from core.layers.pooling import AvgPool2D, GlobalAvgPool2D, MaxPool2D
from core.layers.recurrent import GRU, LSTM, RNN
from core.layers.regularization import BatchNorm, Dropout
from core.layers.shape_ops import Flatten, Reshape
from core.layers.timecollect import TimeCollect
from kernels.backend import to_host

if TYPE_CHECKING:  # the writer calls the entries; they only read it
    from core.export.pytorch import ModelWriter
    from core.plan import Step


@dataclass
class Expr:
    """What a node computes, so that a long statement can be wrapped: ``head(args)tail``,
    ``args`` joined by ``op`` (``" + "``), or ``args[0]`` alone when ``head`` is None."""
    head: str | None
    args: list[str]
    tail: str = ""
    op: str = ""


# module(layer) -> constructor source; expr(writer, step, input values) -> Expr
ModuleFn = Callable[[Layer], str]
ExprFn = Callable[["ModelWriter", "Step", list[str]], Expr]


@dataclass(frozen=True)
class TorchEntry:
    """How one node type is exported.

    module: the ``nn`` module constructor of a node, or None for a node ``forward`` computes
    inline (shape operations, merges, losses).
    expr: the expression of its value in ``forward``; the default calls its module on its
    one input.
    params: our parameter or buffer name -> (name in the module's state_dict, stored
    transposed?).
    reinit: NeuroCanvas chooses this module's initialisation (He or Glorot weights, zero
    biases), which the exported ``reset_parameters`` repeats; other modules keep
    PyTorch's, as NeuroCanvas does.
    data: a data node: an argument of ``forward``, not a statement.
    packs: with sequence lengths it runs on ``pack_padded_sequence`` (``Model(packed=...)``
    chooses; a built-in recurrent layer).
    """
    module: ModuleFn | None = None
    expr: ExprFn | None = None
    params: Mapping[str, tuple[str, bool]] = field(default_factory=dict)
    reinit: bool = False
    data: bool = False
    packs: bool = False


def _pair(v) -> str:
    v = tuple(v)
    return str(v[0]) if v[0] == v[1] else f"({v[0]}, {v[1]})"


def array_axis(axis: int) -> int:
    """A per-sample axis as an axis of the batched tensor."""
    return axis + 1 if axis >= 0 else axis


def _module_call(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    return Expr(f"self.{w.attr_of(step.node_id)}", [ins[0]])


# ---- modules ---------------------------------------------------------------------------------
def _linear(layer: Layer) -> str:
    p = layer.params
    bias = "" if p["bias"] else ", bias=False"
    return f"nn.Linear({layer.in_shapes['in'][-1]}, {p['units']}{bias})"


def conv_padding(layer: Layer) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) padding of a Conv2D node."""
    p = layer.params
    _, h, w = layer.in_shapes["in"]
    return resolve_padding(p["padding"], (h, w), p["kernel_size"], p["stride"])


def _conv2d(layer: Layer) -> str:
    p = layer.params
    c = layer.in_shapes["in"][0]
    args = [str(c), str(p["filters"]), f"kernel_size={_pair(p['kernel_size'])}"]
    if tuple(p["stride"]) != (1, 1):
        args.append(f"stride={_pair(p['stride'])}")
    (top, bottom), (left, right) = conv_padding(layer)
    if top == bottom and left == right and (top, left) != (0, 0):
        args.append(f"padding={_pair((top, left))}")
    if not p["bias"]:
        args.append("bias=False")
    return f"nn.Conv2d({', '.join(args)})"


def _conv_expr(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    (top, bottom), (left, right) = conv_padding(step.layer)
    if top != bottom or left != right:  # asymmetric 'same' padding: pad first
        w.uses_f = True
        return Expr(f"self.{w.attr_of(step.node_id)}",
                    [f"F.pad({ins[0]}, ({left}, {right}, {top}, {bottom}))"])
    return _module_call(w, step, ins)


def _pool(torch_name: str) -> ModuleFn:
    def module(layer: Layer) -> str:
        p = layer.params
        pool = tuple(p["pool_size"])
        args = [_pair(pool)]
        if p["stride"] is not None and tuple(p["stride"]) != pool:
            args.append(f"stride={_pair(p['stride'])}")
        if tuple(p["padding"]) != (0, 0):
            args.append(f"padding={_pair(p['padding'])}")
        return f"nn.{torch_name}({', '.join(args)})"
    return module


def _batchnorm(layer: Layer) -> str:
    p, shape = layer.params, layer.in_shapes["in"]
    args = [str(shape[0])]
    if p["eps"] != 1e-5:
        args.append(f"eps={p['eps']!r}")
    if p["momentum"] != 0.1:
        args.append(f"momentum={p['momentum']!r}")
    return f"nn.BatchNorm{'1d' if len(shape) == 1 else '2d'}({', '.join(args)})"


def _recurrent(torch_name: str) -> ModuleFn:
    def module(layer: Layer) -> str:
        p = layer.params
        extra = ", nonlinearity=\"relu\"" if p.get("activation") == "relu" else ""
        return f"nn.{torch_name}({layer.in_shapes['in'][-1]}, {p['units']}, " \
               f"batch_first=True{extra})"
    return module


def _recurrent_expr(w: ModelWriter, step: Step, ins: list[str], state: str = "[1][0]"
                    ) -> Expr:
    """The module on the whole sequence; with sequence lengths (docs/format.md section 2.6)
    on ``pack_padded_sequence(x, lengths, batch_first, enforce_sorted=False)``: the last
    state ``state`` of the returned (h_n, ...) is each sample's last valid one, and the
    padded outputs are zeros, as ours."""
    module = f"self.{w.attr_of(step.node_id)}"
    seq = step.layer.params["return_sequences"]
    lens = w.lengths_arg(getattr(step.layer, "lengths_field", None))
    if lens is None:
        return Expr(module, [ins[0]], "[0]" if seq else "[0][:, -1]")
    x, steps = ins[0], step.layer.in_shapes["in"][0]
    # Model(packed=False): the whole padded sequence, then each sample's valid steps taken
    # out of it (padding comes after them, so they are the same values): what torch.fx,
    # torch.export and ONNX can trace, at the cost of computing the padded steps
    if not seq:
        return Expr(None, [f"{module}(pack({x}, {lens})){state}",
                           f"last_valid({module}({x})[0], {lens})"], op=" if self.packed else ")
    return Expr(None, [f"unpack({module}(pack({x}, {lens}))[0], {steps})",
                       f"valid_steps({module}({x})[0], {lens})"], op=" if self.packed else ")


def _lstm_expr(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    return _recurrent_expr(w, step, ins, "[1][0][0]")  # (output, (h_n, c_n))


def _embedding_expr(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    idx = ins[0] if w.is_int(step.sources[0]) else f"{ins[0]}.long()"
    return Expr(f"self.{w.attr_of(step.node_id)}", [idx])


# ---- inline expressions -------------------------------------------------------------------
def _flatten(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    flat = "flatten(1)" if step.layer.in_shapes["in"] else "reshape(-1, 1)"
    return Expr(None, [f"{ins[0]}.{flat}"])


def _reshape(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    return Expr(f"{ins[0]}.reshape",
                [f"{ins[0]}.shape[0]"] + [str(d) for d in w.shape(step.node_id)])


def _time_collect(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    steps = w.step_lists[step.sources[0]]
    lens = w.lengths_arg(getattr(step.layer, "lengths_field", None))
    mode = step.layer.params["mode"]
    if lens is not None:  # each sample's valid steps (docs/format.md section 2.6)
        stacked = f"torch.stack({steps}, dim=1)"
        k = len(w.shape(step.sources[0]))
        if mode == "last":
            return Expr(None, [f"{stacked}[{w.rows_var}, {lens} - 1]"])
        masked = f"{stacked} * {w.valid_var}[:, :{', None' * k}]"
        if mode == "all":
            return Expr(None, [masked])
        return Expr(None, [f"({masked}).sum(dim=1) / {lens}[:{', None' * k}]"])
    code = {"last": f"{steps}[-1]", "all": f"torch.stack({steps}, dim=1)",
            "mean": f"torch.stack({steps}, dim=1).mean(dim=1)"}[mode]
    return Expr(None, [code])


def _loss(fn: Callable[[ModelWriter, Step, list[str]], Expr]) -> ExprFn:
    def expr(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
        w.uses_f = True
        return fn(w, step, ins)
    return expr


def _targets(w: ModelWriter, step: Step, ins: list[str]) -> tuple[str, str]:
    """The target as a float tensor of pred's dtype, and as class indices (int64: torch's
    losses refuse int32 indices, which forward documents for an int32 Target)."""
    pred, target = ins
    tsrc = step.sources[1]
    as_float = target if not w.is_int(tsrc) else f"{target}.to({pred}.dtype)"
    int64 = w.is_int(tsrc) and w.a.layers[tsrc].params["dtype"] == "int64"
    as_long = target if int64 else f"{target}.long()"
    return as_float, as_long


def _mse(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    return Expr("F.mse_loss", [ins[0], _targets(w, step, ins)[0]])


def _bce(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    as_float = _targets(w, step, ins)[0]
    same = w.shape(step.sources[0]) == w.shape(step.sources[1])
    tgt = as_float if same else f"{as_float}.reshape({ins[0]}.shape)"
    return Expr("F.binary_cross_entropy_with_logits", [ins[0], tgt])


def _hinge(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    margin = repr(step.layer.params["margin"])
    if w.shape(step.sources[0]) in ((), (1,)):
        w.uses_hinge = True
        return Expr("binary_hinge_loss", [ins[0], ins[1], margin])
    return Expr("F.multi_margin_loss", [ins[0], _targets(w, step, ins)[1], f"margin={margin}"])


def _cross_entropy(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    # class indices, or probabilities of pred's shape; positions of a [..., C] prediction
    # are flattened into the batch (the class axis is last)
    pred = ins[0]
    pshape, tshape = w.shape(step.sources[0]), w.shape(step.sources[1])
    as_float, as_long = _targets(w, step, ins)
    probs = tshape == pshape
    if len(pshape) == 1:
        return Expr("F.cross_entropy", [pred, as_float if probs else as_long])
    tgt = f"{as_float}.flatten(0, -2)" if probs else f"{as_long}.flatten()"
    return Expr("F.cross_entropy", [f"{pred}.flatten(0, -2)", tgt])


def _triplet(w: ModelWriter, step: Step, ins: list[str]) -> Expr:
    return Expr("F.triplet_margin_loss", ins + [f"margin={step.layer.params['margin']!r}"])


_RECURRENT = {"W_ih": ("weight_ih_l0", True), "W_hh": ("weight_hh_l0", True),
              "b_ih": ("bias_ih_l0", False), "b_hh": ("bias_hh_l0", False)}

#: node type -> how it is exported
TORCH: dict[type[Layer], TorchEntry] = {
    Input: TorchEntry(data=True),
    Target: TorchEntry(data=True),
    Dense: TorchEntry(_linear, params={"W": ("weight", True), "b": ("bias", False)},
                      reinit=True),
    Conv2D: TorchEntry(_conv2d, _conv_expr, {"W": ("weight", False), "b": ("bias", False)},
                       reinit=True),
    MaxPool2D: TorchEntry(_pool("MaxPool2d")),
    AvgPool2D: TorchEntry(_pool("AvgPool2d")),
    GlobalAvgPool2D: TorchEntry(expr=lambda w, s, ins: Expr(None, [f"{ins[0]}.mean(dim=(2, 3))"])),
    Flatten: TorchEntry(expr=_flatten),
    Reshape: TorchEntry(expr=_reshape),
    Dropout: TorchEntry(lambda layer: f"nn.Dropout(p={layer.params['rate']!r})"),
    BatchNorm: TorchEntry(_batchnorm, params={
        "gamma": ("weight", False), "beta": ("bias", False),
        "running_mean": ("running_mean", False), "running_var": ("running_var", False)}),
    Identity: TorchEntry(expr=lambda w, s, ins: Expr(None, [ins[0]])),
    ReLU: TorchEntry(lambda layer: "nn.ReLU()"),
    Sigmoid: TorchEntry(lambda layer: "nn.Sigmoid()"),
    Tanh: TorchEntry(lambda layer: "nn.Tanh()"),
    LeakyReLU: TorchEntry(lambda layer: "nn.LeakyReLU(negative_slope="
                          f"{layer.params['negative_slope']!r})"),
    ELU: TorchEntry(lambda layer: f"nn.ELU(alpha={layer.params['alpha']!r})"),
    Softmax: TorchEntry(lambda layer: f"nn.Softmax(dim={array_axis(layer.params['axis'])})"),
    Embedding: TorchEntry(lambda layer: f"nn.Embedding({layer.params['num_embeddings']}, "
                          f"{layer.params['dim']})", _embedding_expr,
                          {"W": ("weight", False)}),
    RNN: TorchEntry(_recurrent("RNN"), _recurrent_expr, _RECURRENT, packs=True),
    LSTM: TorchEntry(_recurrent("LSTM"), _lstm_expr, _RECURRENT, packs=True),
    GRU: TorchEntry(_recurrent("GRU"), _recurrent_expr, _RECURRENT, packs=True),
    TimeCollect: TorchEntry(expr=_time_collect),
    Add: TorchEntry(expr=lambda w, s, ins: Expr(None, ins, op=" + ")),
    Multiply: TorchEntry(expr=lambda w, s, ins: Expr(None, ins, op=" * ")),
    Concat: TorchEntry(expr=lambda w, s, ins: Expr(
        "torch.cat", [f"[{', '.join(ins)}]", f"dim={array_axis(s.layer.params['axis'])}"])),
    MSELoss: TorchEntry(expr=_loss(_mse)),
    CrossEntropyLoss: TorchEntry(expr=_loss(_cross_entropy)),
    BinaryCrossEntropyLoss: TorchEntry(expr=_loss(_bce)),
    HingeLoss: TorchEntry(expr=_loss(_hinge)),
    TripletLoss: TorchEntry(expr=_loss(_triplet)),
}


def entry(layer: Layer | type[Layer]) -> TorchEntry:
    """The export entry of a layer (instance or class)."""
    cls = layer if isinstance(layer, type) else type(layer)
    try:
        return TORCH[cls]
    except KeyError:
        raise KeyError(f"no PyTorch export for node type {cls.type_name}") from None


def module_source(layer: Layer) -> str | None:
    """The constructor of the module a node becomes, or None for one computed inline."""
    e = entry(layer)
    return e.module(layer) if e.module is not None else None


def expression(writer: ModelWriter, step: Step, ins: list[str]) -> Expr:
    e = entry(step.layer)
    return (e.expr or _module_call)(writer, step, ins)


# ---- weights between the two layouts -------------------------------------------------------
def torch_names(layer: Layer | type[Layer]) -> Mapping[str, tuple[str, bool]]:
    """Our parameter and buffer names -> (state_dict name in the module, transposed?)."""
    return entry(layer).params


def to_torch(layer: Layer | type[Layer], arrays: Mapping[str, Any], suffix: str | None = None
             ) -> dict[str, np.ndarray]:
    """One node's arrays (our names and layouts, on the host or the GPU) as its module's
    state_dict entries, host arrays.

    suffix: for recurrent layers, the end of PyTorch's names to use instead of ``_l0``
    (``""`` for an ``nn.LSTMCell``'s ``weight_ih``)."""
    out = {}
    for name, value in arrays.items():
        torch_name, transposed = torch_names(layer)[name]
        if suffix is not None and torch_name.endswith("_l0"):
            torch_name = torch_name[:-3] + suffix
        a = to_host(value)
        out[torch_name] = np.ascontiguousarray(a.T if transposed else a)
    return out


def from_torch(layer: Layer | type[Layer], tensors: Mapping[str, Any], suffix: str | None = None
               ) -> dict[str, np.ndarray]:
    """The inverse of ``to_torch``: a module's arrays (NumPy, or anything ``np.asarray``
    takes) under our names and layouts, as host arrays; names the layer does not have are
    left out."""
    out = {}
    for name, (torch_name, transposed) in torch_names(layer).items():
        if suffix is not None and torch_name.endswith("_l0"):
            torch_name = torch_name[:-3] + suffix
        if torch_name in tensors:
            a = np.asarray(tensors[torch_name])
            out[name] = np.ascontiguousarray(a.T if transposed else a)
    return out
