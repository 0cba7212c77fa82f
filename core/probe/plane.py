"""The input plane: the model's prediction, and each unit's activation, over a grid of the
two features of an Input (decision boundaries and unit maps, as TensorFlow Playground).

``plane_grid`` runs the network in evaluation mode (Dropout off, BatchNorm on its running
statistics) on ``nx x ny`` points in a few batched forward passes, through a twin network that
shares the trained arrays (``core.probe.nets.shared_twin``): no weight, buffer or random
generator of the network changes.

Grid layout: ``xs`` [nx] (feature 0) and ``ys`` [ny] (feature 1) are ``numpy.linspace`` over
the ranges; every map is ``[ny, nx]`` with ``map[j, i]`` at ``(xs[i], ys[j])``, so row 0 is the
lowest y (flip it to draw with y upwards).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from core.errors import DataError, NeuroCanvasError
from core.layers.base import fmt_shape
from core.network import Network
from core.probe.nets import (
    check_node,
    data_sources,
    first_loss_pred,
    pack,
    shared_twin,
    unpack,
)
from core.training.metrics import Classifier, classification_heads
from kernels import backend

MAX_UNITS = 64
CHUNK = 16384  # grid points per forward pass


@dataclass
class PlaneMaps:
    """The prediction (and a node's unit maps) over the input plane; see the module doc for
    the grid layout. ``kind`` "classes": ``classes`` [ny, nx] int64, ``confidence`` [ny, nx]
    (the predicted class's probability, in [1/C, 1]) and ``probabilities`` [ny, nx, C]
    (softmax of the scores, or sigmoid for a binary loss, C = 2). ``kind`` "values"
    (regression): ``values`` [ny, nx, K], the K outputs of the predicted node.
    ``units`` [U, ny, nx]: the first U <= 64 of ``unit_count`` units of ``unit_node`` (a
    channel's mean over its image for a [C, H, W] output). The points are the data to draw
    on top: ``*_points`` [n, 2], ``*_labels`` [n] (class index, or target value for
    regression; absent where unknown)."""
    input_node: str
    output: str
    kind: str  # "classes" or "values"
    xs: np.ndarray
    ys: np.ndarray
    classes: np.ndarray | None = None
    confidence: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    values: np.ndarray | None = None
    unit_node: str | None = None
    units: np.ndarray | None = None
    unit_count: int = 0
    step: int = -1  # optimizer steps done when it was computed (-1: not from a Trainer)
    points: dict[str, np.ndarray] = field(default_factory=dict)  # train_points, val_labels..

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Every array in one flat dict for an ``.npz`` archive (metadata as "meta")."""
        meta = {"input_node": self.input_node, "output": self.output, "kind": self.kind,
                "unit_node": self.unit_node, "unit_count": self.unit_count,
                "step": self.step}
        arrays = {"xs": self.xs, "ys": self.ys, "classes": self.classes,
                  "confidence": self.confidence, "probabilities": self.probabilities,
                  "values": self.values, "units": self.units}
        arrays.update({f"points/{k}": v for k, v in self.points.items()})
        return pack(meta, arrays)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PlaneMaps:
        meta, a = unpack(arrays)
        points = {k.partition("/")[2]: v for k, v in a.items() if k.startswith("points/")}
        return cls(meta["input_node"], meta["output"], meta["kind"], a["xs"], a["ys"],
                   a.get("classes"), a.get("confidence"), a.get("probabilities"),
                   a.get("values"), meta["unit_node"], a.get("units"), meta["unit_count"],
                   meta["step"], points)


def data_ranges(points: np.ndarray, margin: float = 0.1
                ) -> tuple[tuple[float, float], tuple[float, float]]:
    """((x0, x1), (y0, y1)) around ``points`` [n, 2]: the data's extent widened by
    ``margin`` of its span on each side (a span of 0 gets +-1)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    finite = pts[np.all(np.isfinite(pts), axis=1)]
    if len(finite) == 0:
        raise DataError("no finite two-feature points to take the plane's ranges from")
    out = []
    for k in range(2):
        lo, hi = float(finite[:, k].min()), float(finite[:, k].max())
        pad = (hi - lo) * margin if hi > lo else 1.0
        out.append((lo - pad, hi + pad))
    return out[0], out[1]


def plane_input(analysis, output: str) -> str:
    """The one Input with two features that ``output`` depends on, or NeuroCanvasError."""
    srcs = sorted(data_sources(analysis, output))
    if len(srcs) != 1:
        raise NeuroCanvasError(
            f"the input plane needs a graph fed by one Input of two features; this node "
            f"depends on {len(srcs)} Inputs ({', '.join(srcs) or 'none'})", node=output)
    return srcs[0]


def default_output(analysis, head: Classifier | None) -> tuple[str, Classifier | None]:
    """(node to show, its classification head): the first classification loss's pred, else
    the first loss's pred (regression), else the graph's last node."""
    if head is not None:
        return head.pred, head
    heads = classification_heads(analysis)
    if heads:
        return heads[0].pred, heads[0]
    first = first_loss_pred(analysis)
    if first is not None:
        return first[1], None
    if not analysis.order:
        raise NeuroCanvasError("the graph has no nodes")
    return analysis.order[-1], None


def plane_grid(source, input_node: str | None, x_range: tuple[float, float],
               y_range: tuple[float, float], resolution: int | tuple[int, int] = 100, *,
               output: str | None = None, head: Classifier | None = None,
               unit_node: str | None = None, max_units: int = MAX_UNITS,
               chunk: int = CHUNK) -> PlaneMaps:
    """The prediction over the plane of ``input_node``'s two features (see ``PlaneMaps``).

    source: a ``Network`` (its current weights) or an ``Analysis`` (a network with the
    initial weights of seed 0). input_node: None for the one Input the output depends on.
    resolution: points per axis, or (nx, ny). output: the node whose prediction is shown
    (default: the first classification loss's pred, else the first loss's pred). head: the
    classification loss reading ``output`` (found from the graph when None).
    """
    net = source if isinstance(source, Network) else Network(source)
    a = net.analysis
    if output is None:
        output, head = default_output(a, head)
    elif head is None or head.pred != output:
        head = next((h for h in classification_heads(a) if h.pred == output), None)
    nodes = [output] + ([unit_node] if unit_node is not None else [])
    for n in nodes:
        check_node(a, n, "show over the input plane")
        if a.layers[n].is_loss:
            raise NeuroCanvasError("a loss has one value per batch, not one per point of "
                                   "the plane", node=n)
        if n in a.timed:
            raise NeuroCanvasError("a node inside a recurrent region has no input plane",
                                   node=n)
    if input_node is None:
        input_node = plane_input(a, output)
    _check_input(a, input_node)
    for n in nodes:
        extra = data_sources(a, n) - {input_node}
        if extra:
            raise NeuroCanvasError(f"also depends on Input '{sorted(extra)[0]}', so it is not "
                                   f"a function of the plane of '{input_node}'", node=n)
    nx_, ny_ = (resolution, resolution) if np.ndim(resolution) == 0 else resolution
    nx_, ny_ = int(nx_), int(ny_)
    if nx_ < 2 or ny_ < 2:
        raise NeuroCanvasError(f"expected at least 2 points per axis, found {nx_} x {ny_}",
                               param="resolution")
    xs = np.linspace(float(x_range[0]), float(x_range[1]), nx_)
    ys = np.linspace(float(y_range[0]), float(y_range[1]), ny_)
    gx, gy = np.meshgrid(xs, ys)  # [ny, nx]
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)

    twin = shared_twin(net, nodes)
    fld = a.layers[input_node].params["field"]
    outs: dict[str, list] = {n: [] for n in nodes}
    for i in range(0, len(pts), max(int(chunk), 1)):
        values = twin.forward({fld: pts[i:i + chunk]}, train=False).values
        for n in nodes:
            outs[n].append(backend.to_host(values[n]))
    got = {n: np.concatenate(v, axis=0) for n, v in outs.items()}

    maps = PlaneMaps(input_node, output, "values", xs, ys)
    pred = got[output].astype(np.float64, copy=False)
    if head is not None:
        maps.kind = "classes"
        probs = _probabilities(pred, head, output)
        maps.probabilities = probs.reshape(ny_, nx_, -1).astype(np.float32)
        maps.classes = np.argmax(probs, axis=1).reshape(ny_, nx_).astype(np.int64)
        maps.confidence = probs.max(axis=1).reshape(ny_, nx_).astype(np.float32)
    else:
        maps.values = pred.reshape(ny_, nx_, -1).astype(np.float32)
    if unit_node is not None:
        units = unit_values(got[unit_node], a.shapes[unit_node])
        maps.unit_node, maps.unit_count = unit_node, units.shape[1]
        u = min(units.shape[1], int(max_units))
        maps.units = np.ascontiguousarray(units[:, :u].T).reshape(u, ny_, nx_).astype(
            np.float32)
    return maps


def unit_values(act: np.ndarray, shape) -> np.ndarray:
    """[n, units] of a node's output [n, *shape]: each channel's mean over its image for a
    [C, H, W] output, the flattened values otherwise."""
    n = act.shape[0]
    if len(shape) == 3:
        return act.reshape(n, shape[0], -1).mean(axis=2)
    return act.reshape(n, -1)


def _probabilities(pred: np.ndarray, head: Classifier, node: str) -> np.ndarray:
    """[n, C] class probabilities of the scores: sigmoid (binary, C = 2) or softmax."""
    n = pred.shape[0]
    if head.decision.binary:
        p1 = 0.5 * (np.tanh(0.5 * pred.reshape(n, -1)[:, 0]) + 1.0)  # sigmoid, no overflow
        return np.stack([1.0 - p1, p1], axis=1)
    if pred.ndim != 2:
        raise NeuroCanvasError(f"expected class scores [C] per point, found "
                               f"{fmt_shape(pred.shape[1:])}", node=node)
    z = pred - pred.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_input(a, input_node: str) -> None:
    check_node(a, input_node, "take the input plane of")
    layer = a.layers[input_node]
    if layer.data_role != "input":
        raise NeuroCanvasError("the input plane is that of an Input node", node=input_node)
    if layer.presents_steps():
        raise NeuroCanvasError("a sequence Input has no input plane", node=input_node)
    if tuple(a.shapes[input_node]) != (2,):
        raise NeuroCanvasError(f"the input plane needs an Input of two features [2], found "
                               f"{fmt_shape(a.shapes[input_node])}", node=input_node)
