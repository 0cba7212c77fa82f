"""What each node costs: parameters, multiply-adds, activation memory, and measured time.

Conventions (docs/probe.md, "Cost"):

- multiply-adds (MACs) per sample of one forward pass, from ``Layer.macs(in_shapes,
  out_shape)``: Dense ``in x units`` per position, Conv2D ``out_h x out_w x filters x kh x
  kw x C``, RNN / LSTM / GRU ``T x nG x (F x H + H x H)`` (nG = 1, 4, 3), Multiply one per
  element and extra input, BatchNorm one per element; activations, pooling, Add, Dropout,
  shape operations, losses and data nodes 0. Bias adds are not counted. A node inside a
  recurrent region runs once per time step, so its count is multiplied by T. A training step
  costs about three times the forward MACs (backward: two products per forward one).
- activation memory: ``core.memory.estimate``'s figure for the node's output over one batch
  (x T inside a recurrent region, x 2 when training), so the per-node values add up to the
  estimate's ``activations``.
- time: ``profile_steps`` runs ordinary training steps (``core.training.step.training_step``)
  with every layer's ``forward`` and ``backward`` (and the network's feeding of data nodes)
  wrapped in a timer on the layer instances, removed afterwards: nothing is wrapped, so
  nothing costs, when no profile runs. On a GPU each call is synchronised before its time
  is read. The weights change exactly as those steps would change them without the timer.
"""
from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from core import memory
from core.network import Network
from core.training.step import training_step
from core.validate import Analysis

_MISSING = object()


@dataclass
class Profile:
    """Mean seconds per training step over ``steps`` steps: of the whole step, and of each
    node's forward and backward calls (``calls``: calls per step, T inside a recurrent
    region). Every node of the training plan has an entry; a node backward does not reach
    has ``backward_s`` 0. The rest of a step (penalties, norms, the optimizer) is
    ``step_s - sum(forward_s) - sum(backward_s)``."""
    steps: int
    step_s: float
    forward_s: dict[str, float]
    backward_s: dict[str, float]
    calls: dict[str, int]
    device: str = "cpu"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> Profile:
        return cls(**d)


@dataclass
class NodeCost:
    """One node: ``params`` it owns, ``macs`` per sample, ``activation_bytes`` for one
    batch, and the mean measured seconds per step (None without a profile, or for a node
    training does not run)."""
    node: str
    params: int
    macs: int
    activation_bytes: int
    forward_s: float | None = None
    backward_s: float | None = None


@dataclass
class GraphCost:
    """Every node's cost in graph order, and the memory estimate's figures (bytes, by kind:
    params, gradients, optimizer, activations, dataset, total)."""
    batch_size: int
    training: bool
    nodes: list[NodeCost] = field(default_factory=list)
    memory: dict[str, int] = field(default_factory=dict)
    profile: Profile | None = None
    step: int = -1

    def node(self, node_id: str) -> NodeCost:
        return next(n for n in self.nodes if n.node == node_id)

    @property
    def totals(self) -> dict[str, float | int | None]:
        """Sums over the nodes, for the status bar (times None without a profile)."""
        prof = self.profile
        return {"params": sum(n.params for n in self.nodes),
                "macs": sum(n.macs for n in self.nodes),
                "activation_bytes": sum(n.activation_bytes for n in self.nodes),
                "memory_bytes": self.memory.get("total", 0),
                "forward_s": None if prof is None else sum(prof.forward_s.values()),
                "backward_s": None if prof is None else sum(prof.backward_s.values()),
                "step_s": None if prof is None else prof.step_s}

    def to_json(self) -> dict:
        return {"batch_size": self.batch_size, "training": self.training, "step": self.step,
                "nodes": [asdict(n) for n in self.nodes], "memory": dict(self.memory),
                "profile": None if self.profile is None else self.profile.to_json(),
                "totals": self.totals}

    @classmethod
    def from_json(cls, d: dict) -> GraphCost:
        prof = d.get("profile")
        return cls(d["batch_size"], d["training"], [NodeCost(**n) for n in d["nodes"]],
                   dict(d["memory"]), None if prof is None else Profile.from_json(prof),
                   d.get("step", -1))


def node_macs(analysis: Analysis, node_id: str) -> int:
    """Multiply-adds per sample of ``node_id`` in one forward pass (x T in a recurrent
    region); 0 for a node whose shapes are not known."""
    layer = analysis.layers.get(node_id)
    out = analysis.shapes.get(node_id)
    if layer is None or out is None or not _shapes_known(layer):
        return 0
    macs = int(layer.macs(dict(layer.in_shapes), tuple(out)))
    if node_id in analysis.timed:
        macs *= analysis.steps or 1
    return macs


def _shapes_known(layer) -> bool:
    ports = layer.input_ports(layer.params)
    return all(layer.in_shapes.get(p) is not None for p in ports) if ports else True


def activation_bytes(analysis: Analysis, batch_size: int, training: bool = True
                     ) -> dict[str, int]:
    """Per node, the activation memory ``core.memory.estimate`` counts for it: its
    contribution to a forward-only estimate less its parameters, x BACKWARD_FACTOR when
    training (so the values add up to a training estimate's ``activations``)."""
    est = memory.estimate(analysis, batch_size, training=False)
    per = dict(est.contributors)
    factor = memory.BACKWARD_FACTOR if training else 1
    return {nid: (per.get(nid, 0) - analysis.param_count(nid) * memory.FLOAT_BYTES) * factor
            for nid in analysis.order}


def graph_cost(analysis: Analysis, batch_size: int, optimizer: Any = None,
               dataset_samples: int | None = None, *, training: bool = True,
               profile: Profile | None = None) -> GraphCost:
    """Every node's parameters, multiply-adds, activation memory and (with ``profile``)
    time; ``optimizer`` and ``dataset_samples`` as ``core.memory.estimate`` takes them."""
    est = memory.estimate(analysis, batch_size, optimizer, dataset_samples, training=training)
    acts = activation_bytes(analysis, batch_size, training)
    cost = GraphCost(est.batch_size, training, memory={
        "params": est.params, "gradients": est.gradients, "optimizer": est.optimizer,
        "activations": est.activations, "dataset": est.dataset, "total": est.total},
        profile=profile)
    for nid in analysis.order:
        fwd = bwd = None
        if profile is not None and nid in profile.forward_s:
            fwd, bwd = profile.forward_s[nid], profile.backward_s.get(nid, 0.0)
        cost.nodes.append(NodeCost(nid, analysis.param_count(nid), node_macs(analysis, nid),
                                   acts.get(nid, 0), fwd, bwd))
    return cost


# ---- measuring ------------------------------------------------------------------------------
def _synchronize(xp) -> None:
    """Wait for the device's queued work (nothing to wait for on NumPy)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


class _Timers:
    """Per-node timers wrapped around the layer instances of a network, while it lasts."""

    def __init__(self, net: Network):
        self.net = net
        self.fwd = dict.fromkeys(net.layers, 0.0)
        self.bwd = dict.fromkeys(net.layers, 0.0)
        self.calls = dict.fromkeys(net.layers, 0)
        self._saved: list[tuple[Any, str, Any]] = []

    def _set(self, obj, name: str, fn) -> None:
        self._saved.append((obj, name, obj.__dict__.get(name, _MISSING)))
        setattr(obj, name, fn)

    def __enter__(self) -> _Timers:
        xp, clock = self.net.xp, time.perf_counter
        for nid, layer in self.net.layers.items():
            def fwd(ctx, inputs, _f=layer.forward, _n=nid):
                t = clock()
                out = _f(ctx, inputs)
                _synchronize(xp)
                self.fwd[_n] += clock() - t
                self.calls[_n] += 1
                return out

            def bwd(ctx, cache, gout, _b=layer.backward, _n=nid):
                t = clock()
                gins = _b(ctx, cache, gout)
                _synchronize(xp)
                self.bwd[_n] += clock() - t
                return gins

            def flush(_f=layer.flush_deferred, _n=nid):
                # a Dense in a drawn cycle takes its per-step weight gradients as one GEMM
                # after the backward loop: backward time of that node too
                t = clock()
                _f()
                _synchronize(xp)
                self.bwd[_n] += clock() - t

            self._set(layer, "forward", fwd)
            self._set(layer, "backward", bwd)
            self._set(layer, "flush_deferred", flush)
        feed = self.net._feed

        def timed_feed(step, batch):
            t = clock()
            out = feed(step, batch)
            _synchronize(xp)
            self.fwd[step.node_id] += clock() - t
            self.calls[step.node_id] += 1
            return out

        self._set(self.net, "_feed", timed_feed)
        self._set(self.net, "fuse", False)  # each node timed on its own
        return self

    def __exit__(self, *exc) -> None:
        for obj, name, old in reversed(self._saved):
            if old is _MISSING:
                delattr(obj, name)
            else:
                setattr(obj, name, old)
        self._saved.clear()


def profile_steps(net: Network, optimizer, batches: Iterable[Mapping[str, Any]],
                  config) -> Profile:
    """Run one ordinary training step per batch with per-node timers; the mean times.
    ``NonFiniteError`` of a step propagates (the timers are removed first)."""
    n = 0
    total = 0.0
    with _Timers(net) as timers:
        for batch in batches:
            t = time.perf_counter()
            training_step(net, optimizer, batch, config)
            _synchronize(net.xp)
            total += time.perf_counter() - t
            n += 1
    k = max(n, 1)
    return Profile(n, total / k, {nid: v / k for nid, v in timers.fwd.items()},
                   {nid: v / k for nid, v in timers.bwd.items()},
                   {nid: c // k for nid, c in timers.calls.items()}, net.device)


# ---- putting a trainer's state back ------------------------------------------------------------
@dataclass
class TrainingState:
    """Copies of what a training step changes: parameters, buffers, gradients, optimizer
    state, the Dropout generator and the state-gradient norms."""
    params: dict[str, Any]
    buffers: dict[str, Any]
    grads: dict[str, dict[str, Any]]
    optimizer: dict[str, Any]
    rng: Any
    state_norms: dict[str, Any]
    layer_norms: dict[str, Any]


def save_state(net: Network, optimizer) -> TrainingState:
    try:
        rng = copy.deepcopy(net.rng)
    except Exception:  # noqa: BLE001 - a generator that cannot be copied is left to run on
        rng = _MISSING
    return TrainingState(
        {k: v.copy() for k, v in net.params.items()},
        {k: v.copy() for k, v in net.buffers.items()},
        {nid: {k: None if g is None else g.copy() for k, g in layer.G.items()}
         for nid, layer in net._owners.items()},
        optimizer.state_dict(), rng, dict(net.state_grad_norms),
        {nid: getattr(layer, "state_grad_norms", None) for nid, layer in net.layers.items()})


def restore_state(net: Network, optimizer, st: TrainingState) -> None:
    """Put ``save_state``'s copies back, in place (the arrays keep their identity)."""
    for k, v in st.params.items():
        net.params[k][...] = v
    for k, v in st.buffers.items():
        net.buffers[k][...] = v
    for nid, grads in st.grads.items():
        net._owners[nid].G.update(grads)
    optimizer.load_state_dict(st.optimizer)
    if st.rng is not _MISSING:
        net.rng = st.rng
    net.state_grad_norms = st.state_norms
    for nid, norms in st.layer_norms.items():
        if hasattr(net.layers[nid], "state_grad_norms"):
            net.layers[nid].state_grad_norms = norms
