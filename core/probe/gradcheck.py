"""Gradient check of one node: its backward against central finite differences, in float64.

``grad_check(net, node, batch)`` copies ``net`` into a float64 CPU network with the same
weights and buffers (``core.probe.nets.float64_copy``), so nothing of ``net`` changes, and
compares, for the total loss of the graph on ``batch`` (the sum of its loss nodes, without the
L1/L2 penalty, which training adds outside the layers):

- the gradient of each parameter of the node (its owner's, for a node with ``shared_with``:
  the sum over every node using it), as the engine's backward leaves it;
- the gradient of each floating input of the node that its backward returns (computed here
  even where training skips it, e.g. the data gradient of a first Dense layer; a node inside
  a recurrent region is called once per time step and its input is checked at every step);

with the central difference ``(L(x + eps) - L(x - eps)) / (2 eps)`` for at most
``max_elements`` elements per tensor: a seeded random sample that always holds the element
of largest analytic gradient. Every evaluation runs the training-mode forward pass (Dropout
draws the same mask each time, BatchNorm uses the batch statistics and its running statistics
are put back).

Relative error of an element: ``|a - n| / max(|a|, |n|, floor)`` with ``floor = 1e-4 x
max(1, |L|)``: a gradient far below the rounding noise of the loss is compared absolutely.
The central difference itself carries rounding noise of about ``4 x 2.2e-16 x |L| / eps``,
about 1e-9 of the loss: the floor is that noise over the "good" threshold, so that the
difference of a gradient that is exactly zero (a bias before a BatchNorm) reads as noise, not
as a doubtful backward, whatever the weights are.
An element where the loss has a kink within ``eps`` (a ReLU at 0, a max at a tie: seen as
one-sided differences ``(L(x + eps) - L(x)) / eps`` and ``(L(x) - L(x - eps)) / eps`` that
differ by more than 1e-3 of their size, where a smooth loss would differ by ``eps`` times its
curvature) is counted in ``kinks`` and left out of the worst error: there the derivative is
not defined, and the engine's choice (ReLU's gradient 0 at 0, as PyTorch) is not an error.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core.errors import NeuroCanvasError
from core.network import Network
from core.plan import mark_backward
from core.probe.nets import float64_copy
from kernels import backend

GOOD = 1e-5  # below: the backward is right (a green badge)
BAD = 1e-3  # above: it is wrong (red)
MAX_ELEMENTS = 16
EPS = 1e-6
FLOOR = 1e-4  # ~ the central difference's rounding noise / GOOD (see above)
KINK = 1e-3  # one-sided differences disagreeing by more than this share: a kink


@dataclass
class TensorCheck:
    """One tensor's comparison. ``key``: ``"<owner>/<param>"`` for a parameter,
    ``"<node>:<port>"`` for an input; ``index`` of the worst element (for an input of a node
    called at every time step, the step first, then the batch axis)."""
    key: str
    kind: str  # "param" or "input"
    shape: list[int]
    checked: int  # elements compared
    size: int
    max_rel_error: float
    index: list[int]
    analytic: float  # at the worst element
    numeric: float
    grad_norm: float  # of the whole analytic gradient
    kinks: int = 0


@dataclass
class GradCheck:
    """The check of one node: ``max_rel_error`` over ``tensors`` (0 when none could be
    checked); ``verdict`` "good" (< 1e-5), "bad" (> 1e-3) or "doubtful"."""
    node: str
    max_rel_error: float
    tensors: list[TensorCheck] = field(default_factory=list)
    loss: float = 0.0
    samples: int = 0
    eps: float = EPS
    step: int = -1

    @property
    def verdict(self) -> str:
        if self.max_rel_error < GOOD:
            return "good"
        return "bad" if self.max_rel_error > BAD else "doubtful"

    def to_json(self) -> dict:
        return {"node": self.node, "max_rel_error": self.max_rel_error, "loss": self.loss,
                "samples": self.samples, "eps": self.eps, "step": self.step,
                "verdict": self.verdict, "tensors": [asdict(t) for t in self.tensors]}

    @classmethod
    def from_json(cls, d: dict) -> GradCheck:
        return cls(d["node"], d["max_rel_error"], [TensorCheck(**t) for t in d["tensors"]],
                   d["loss"], d["samples"], d["eps"], d["step"])


class _Probe:
    """Wraps the checked layer's forward and backward: records each call's inputs and input
    gradients, and adds a perturbation to one element of one call's input."""

    def __init__(self, layer):
        self.layer = layer
        self.forward, self.backward = layer.forward, layer.backward
        self.calls = 0
        self.shapes: list[list[tuple]] = []  # per call, per port: (shape, floating?)
        self.gins: dict[int, list] = {}
        self.perturb: tuple[int, int, int, float] | None = None  # port, call, flat index, d
        layer.forward, layer.backward = self._fwd, self._bwd

    def _fwd(self, ctx, inputs):
        i = self.calls
        self.calls += 1
        if self.perturb is not None and self.perturb[1] == i:
            port, _, flat, delta = self.perturb
            inputs = list(inputs)
            x = np.array(inputs[port], dtype=np.float64)
            x.reshape(-1)[flat] += delta
            inputs[port] = x
        if len(self.shapes) <= i:
            self.shapes.append([(tuple(x.shape), x.dtype.kind == "f") for x in inputs])
        out, cache = self.forward(ctx, inputs)
        return out, (i, cache)

    def _bwd(self, ctx, cache, gout):
        i, inner = cache
        gins = self.backward(ctx, inner, gout)
        self.gins[i] = [None if g is None else np.array(backend.to_host(g), dtype=np.float64)
                        for g in gins]
        return gins


def _open_backward(net: Network, node: str) -> None:
    """Let the gradient reach ``node`` and every input of it, whether or not a parameter
    lies behind them (the plan's rule, with ``node`` counted as trainable)."""
    steps = net.plan.steps
    mark_backward(steps, {s.node_id for s in steps if s.backward} | {node})
    for s in steps:
        if s.node_id == node:
            s.layer.needs_input_grad = [True] * len(s.sources)


def grad_check(net: Network, node: str, batch: Mapping[str, Any], *,
               max_elements: int = MAX_ELEMENTS, eps: float = EPS, seed: int = 0
               ) -> GradCheck:
    """Check ``node``'s backward on ``batch`` (see the module doc); ``net`` is not changed."""
    if node not in net.layers:
        if node in net.analysis.layers:
            raise NeuroCanvasError("no loss depends on this node, so no gradient reaches it",
                                   node=node)
        raise NeuroCanvasError("no such node in the graph", node=node)
    if not net.plan.losses:
        raise NeuroCanvasError("the graph has no loss node, so there is no gradient to check",
                               node=node)
    if net.layers[node].data_role is not None:
        raise NeuroCanvasError("a data node has no backward to check", node=node)
    copy = float64_copy(net, seed=seed)
    copy.fuse = False  # the node's own calls are what is checked
    _open_backward(copy, node)
    layer = copy.layers[node]
    host = {k: np.asarray(backend.to_host(v)) for k, v in batch.items()}
    saved = {k: v.copy() for k, v in copy.buffers.items()}
    probe = _Probe(layer)

    def run(record: bool):
        for k, v in saved.items():
            copy.buffers[k][...] = v
        copy.rng = backend.default_rng(np, seed)  # the same Dropout masks every time
        probe.calls = 0
        return copy.forward(host, train=True, record=record)

    copy.zero_grad()
    res = run(True)
    loss0 = float(res.loss)
    copy.backward(res)
    owner = copy.analysis.shared_root.get(node, node)
    analytic_params = {f"{owner}/{k}": (None if g is None else np.array(g, dtype=np.float64))
                       for k, g in layer.G.items()}

    def loss() -> float:
        return float(run(False).loss)

    floor = FLOOR * max(1.0, abs(loss0))
    rng = np.random.default_rng(seed)
    checks: list[TensorCheck] = []

    def compare(key, kind, shape, analytic, evaluate):
        """evaluate(flat index, delta) -> loss with that element moved by delta."""
        size = int(analytic.size)
        flat_a = analytic.reshape(-1)
        picks = _sample(rng, flat_a, max_elements)
        worst = (-1.0, 0, 0.0, 0.0)
        kinks = 0
        for i in picks:
            fp, fm = evaluate(i, eps), evaluate(i, -eps)
            num = (fp - fm) / (2 * eps)
            a = float(flat_a[i])
            err = abs(a - num) / max(abs(a), abs(num), floor)
            if err > GOOD:
                fwd, bwd = (fp - loss0) / eps, (loss0 - fm) / eps
                if abs(fwd - bwd) > KINK * max(abs(fwd), abs(bwd), floor):
                    kinks += 1  # not differentiable here: no error to measure
                    continue
            if err > worst[0]:
                worst = (err, i, a, num)
        err, i, a, num = worst
        checks.append(TensorCheck(
            key, kind, list(shape), len(picks), size, max(err, 0.0),
            [int(v) for v in np.unravel_index(i, shape)] if size else [], a, num,
            float(np.linalg.norm(flat_a)), kinks))

    for key, g in analytic_params.items():
        p = layer.P[key.partition("/")[2]]
        if g is None:
            g = np.zeros(p.shape)  # no gradient reached it: numerically it should be 0 too
        flat = p.reshape(-1)

        def move(i, d, flat=flat):
            old = flat[i]
            flat[i] = old + d
            try:
                return loss()
            finally:
                flat[i] = old

        compare(key, "param", p.shape, g, move)

    ports = layer.input_ports(layer.params)
    calls = sorted(probe.gins)
    for p, port in enumerate(ports):
        per_call = [probe.gins[c][p] for c in calls]
        if not calls or any(g is None for g in per_call) or \
                not all(probe.shapes[c][p][1] for c in calls):
            continue
        one = per_call[0].shape
        if any(g.shape != one for g in per_call):
            continue
        grads = np.stack(per_call) if len(calls) > 1 else per_call[0]
        per = int(np.prod(one))

        def nudge(i, d, p=p, per=per):
            probe.perturb = (p, calls[i // per] if len(calls) > 1 else calls[0], i % per, d)
            try:
                return loss()
            finally:
                probe.perturb = None

        compare(f"{node}:{port}", "input", grads.shape, grads, nudge)

    worst = max((c.max_rel_error for c in checks), default=0.0)
    samples = len(next(iter(host.values()))) if host else 0
    return GradCheck(node, worst if math.isfinite(worst) else math.inf, checks, loss0,
                     samples, eps)


def _sample(rng: np.random.Generator, flat: np.ndarray, n: int) -> list[int]:
    """At most ``n`` distinct indices of ``flat``, sorted: a random sample that holds the
    index of the largest magnitude."""
    size = int(flat.size)
    if size == 0:
        return []
    if size <= n:
        return list(range(size))
    top = int(np.argmax(np.abs(flat)))
    picks = set(rng.choice(size, size=max(n - 1, 1), replace=False).tolist())
    picks.add(top)
    while len(picks) > n:
        picks.discard(next(i for i in picks if i != top))
    return sorted(picks)
