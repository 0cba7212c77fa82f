"""Stepping through one training step: forward node by node, the loss, backward node by node,
the optimizer update (docs/probe.md, "Stepping").

``Stepper(net, optimizer, config, batch)`` runs one ordinary training step on ``batch``
(``core.training.step.training_step``, the very function ``main.py train`` runs) with an
observer on the network (``Network.observer``) that writes down, for every call, what the
walk shows; then it puts back everything the step changed (parameters, buffers, gradients,
optimizer state, the Dropout generator). The walk then moves over the recorded stages:

- ``forward``: one stage per call in the plan's order (a node inside the recurrent region
  once per time step, t = 0..T-1, all the region's nodes at t before any at t + 1), and one
  per fed Input / Target: the output's shape, mean, std, min, max and one sample's values;
- ``loss``: the total loss (with the L1/L2 penalty) and each loss node's value;
- ``backward``: one stage per backward call, in the order backprop runs them (the reverse
  of the forward calls, less the calls no gradient reaches): the upstream gradient's norm
  and, for each edge into the node, the norm of the gradient sent back along it;
- ``update``: entering it puts the step's result in place (the weights, exactly as that
  training step left them, bit for bit); per parameter the update's norm against the
  weight's norm.

Leaving the update stage backwards puts the weights before the step back again. Only host
statistics and at most ``max_values`` values per call are kept, whatever the graph's size.

The chain rule at one node (``chain_rule``) is computed on demand by running the step's
forward and backward again from the saved state (the same Dropout masks, bit-identical
values), so no activation is held between requests. See ``ChainRule`` for what the numbers
are.
"""
from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from core.errors import NeuroCanvasError, NonFiniteError
from core.network import Network
from core.optim.regularization import regularization_penalty
from core.probe.cost import TrainingState, restore_state, save_state
from core.training.step import training_step
from kernels import backend

MAX_VALUES = 64  # values of the chosen sample kept per call
TOP = 5  # terms of the chain rule shown per input / parameter
PHASES = ("forward", "loss", "backward", "update")


def _key_t(key) -> int | None:
    return key[1] if isinstance(key, tuple) else None


def _norm(xp, a) -> float:
    a64 = a.astype(xp.float64, copy=False)
    return float(xp.sqrt(xp.vdot(a64, a64)))


def describe(xp, out, sample: int, max_values: int = MAX_VALUES) -> dict:
    """Shape, statistics (over the whole batch) and the first ``max_values`` values of
    sample ``sample`` (row-major) of one value, as plain numbers."""
    a = out.astype(xp.float64, copy=False)
    if a.size:
        fin = xp.isfinite(a)
        stats = backend.to_host(xp.stack([a.mean(), a.std(), a.min(), a.max(),
                                          (~fin).sum().astype(xp.float64)]))
    else:
        stats = np.zeros(5)
    one = a[sample] if a.ndim >= 1 and a.shape[0] > sample else a
    flat = backend.to_host(one.reshape(-1)[:max_values])
    return {"shape": [int(d) for d in out.shape], "mean": float(stats[0]),
            "std": float(stats[1]), "min": float(stats[2]), "max": float(stats[3]),
            "nonfinite": int(stats[4]),
            "sample_shape": [int(d) for d in (one.shape if a.ndim >= 1 else ())],
            "values": [float(v) for v in flat], "values_total": int(one.size)}


def _ports(step) -> list[str]:
    try:
        names = list(step.layer.input_ports(step.layer.params))
    except Exception:  # noqa: BLE001 - a port list that cannot be named falls back to indices
        names = []
    if len(names) != len(step.sources):
        names = [f"in{i}" for i in range(len(step.sources))]
    return names


def edge_key(src: str, dst: str, port: str) -> str:
    """How an edge is named in ``StepState.edge_norms``: ``"src->dst:port"``."""
    return f"{src}->{dst}:{port}"


class _Recorder:
    """The observer of the recorded step: small host records of every call."""

    def __init__(self, xp, sample: int, max_values: int):
        self.xp, self.sample, self.max_values = xp, sample, max_values
        self.forward: list[dict] = []
        self.backward: list[dict] = []
        self._up: dict | None = None

    def forward_call(self, step, key, out) -> None:
        rec = {"node": step.node_id, "t": _key_t(key), "fed": step.feed is not None}
        rec.update(describe(self.xp, out, self.sample, self.max_values))
        self.forward.append(rec)

    def before_backward(self, step, key, ctx, cache, g) -> None:
        self._up = {"norm": _norm(self.xp, g), "shape": [int(d) for d in g.shape]}

    def after_backward(self, step, key, src_keys, gins) -> None:
        delays = step.delays or [0] * len(step.sources)
        ports = _ports(step)
        # a node that collects the time steps (TimeCollect) reads one source T times
        port_of = range(len(src_keys)) if len(src_keys) == len(step.sources) else \
            [0] * len(src_keys)
        sq: dict[int, float | None] = {}
        for p, k, gin in zip(port_of, src_keys, gins, strict=True):
            if k is None:  # a delay edge before its first step: zeros, nothing flows back
                continue
            if gin is None:
                sq.setdefault(p, None)
            else:
                sq[p] = (sq.get(p) or 0.0) + _norm(self.xp, gin) ** 2
        edges = [{"src": step.sources[p], "dst": step.node_id, "port": ports[p],
                  "delay": int(delays[p]), "norm": None if v is None else math.sqrt(v)}
                 for p, v in sq.items()]
        self.backward.append({"node": step.node_id, "t": _key_t(key), "upstream": self._up,
                              "edges": edges})


class _Observer:
    """Adapts a recorder to ``Network.observer``'s three calls."""

    def __init__(self, rec):
        self.rec = rec

    def forward(self, step, key, out) -> None:
        self.rec.forward_call(step, key, out)

    def before_backward(self, step, key, ctx, cache, g) -> None:
        self.rec.before_backward(step, key, ctx, cache, g)

    def after_backward(self, step, key, src_keys, gins) -> None:
        self.rec.after_backward(step, key, src_keys, gins)


@dataclass
class ChainRule:
    """The chain rule in numbers at one backward call of ``node`` (time step ``t`` inside the
    recurrent region), for one element of its output.

    With y the node's output, x an input, W a parameter and L the loss: ``upstream`` = dL/dy[e],
    the gradient arriving at output element e = (``sample``, ``element``: the flat row-major
    index within one sample's output). The **local derivative** of an input element j is
    dy[e]/dx[j], the entry of the node's Jacobian for that output element and that input element
    (computed exactly, by running the node's backward with a gradient of 1 at e and 0
    elsewhere). ``product`` = upstream x local is what output element e contributes to dL/dx[j];
    ``total`` is what the node sends back to x[j], the sum of such products over every output
    element x[j] reaches (dL/dx[j] itself when x feeds this node alone; with fan-out, the
    gradients of its consumers add up). For an elementwise node (an activation) only j = e is
    reached, so product = total (up to rounding): the whole chain rule is one multiplication;
    ``elementwise`` says so. For Dense, dy[e]/dx[j] = W[j, e] (one input element reaches every
    unit through its row of W) and, for the parameter, dy[e]/dW[j, e] = x[j]. Shown per input:
    the ``TOP`` elements j of the same sample with the largest |local|; per parameter: the
    ``TOP`` entries with the largest |local|, whose ``total`` is the step's whole gradient dL/dW
    (over every sample, time step and use of a shared parameter, before the L1/L2 penalty and
    clipping).
    """
    node: str
    t: int | None
    sample: int
    element: int
    element_index: list[int]
    output_size: int
    upstream: float
    elementwise: bool
    inputs: list[dict] = field(default_factory=list)  # port, src, index, local, product, total
    params: list[dict] = field(default_factory=list)  # key, index, local, product, total

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict) -> ChainRule:
        return cls(**d)


class _ChainObserver:
    """Observer of a replayed step: the chain rule at the call ``key``."""

    def __init__(self, net: Network, key, sample: int, element: int | None):
        self.net, self.key, self.sample, self.element = net, key, sample, element
        self.result: ChainRule | None = None
        self._want: list[tuple[int, tuple]] = []

    def forward(self, step, key, out) -> None:
        pass

    def before_backward(self, step, key, ctx, cache, g) -> None:
        if key != self.key:
            return
        xp = self.net.xp
        gh = np.array(backend.to_host(g), dtype=np.float64)
        per = gh[self.sample] if gh.ndim >= 1 else gh
        size = int(per.size)
        e = self.element
        if e is None:  # the element the largest gradient arrives at
            e = int(np.argmax(np.abs(per.reshape(-1)))) if size else 0
        if not 0 <= e < max(size, 1):
            raise NeuroCanvasError(f"element {e} is outside the output of node "
                                   f"'{step.node_id}' ({size} values per sample)",
                                   node=step.node_id)
        onehot = np.zeros(gh.shape, dtype=np.float64)
        if gh.ndim >= 1:
            onehot[self.sample].reshape(-1)[e] = 1.0
            index = [int(i) for i in np.unravel_index(e, per.shape)]
        else:
            onehot[...] = 1.0
            index = []
        layer = step.layer
        saved_g, saved_deferred = layer.G, layer.deferred
        had_norms = hasattr(layer, "state_grad_norms")
        saved_norms = getattr(layer, "state_grad_norms", None)
        layer.G = {k: None for k in saved_g}
        layer.deferred = None  # this call's own weight gradients, now, not gathered
        try:
            local = layer.backward(ctx, cache, backend.to_device(onehot, xp, g.dtype))
            local_g = {k: (None if v is None else np.array(backend.to_host(v), np.float64))
                       for k, v in layer.G.items()}
        finally:
            layer.G, layer.deferred = saved_g, saved_deferred
            if had_norms:
                layer.state_grad_norms = saved_norms
        up = float(per.reshape(-1)[e]) if size else float(gh)
        inputs: list[dict] = []
        elementwise = True
        self._want = []
        if len(local) != len(step.sources):  # TimeCollect: one source read T times
            local = []
        for p, (src, port, lg) in enumerate(zip(step.sources, _ports(step), local,
                                                strict=False)):
            if lg is None:
                continue
            lh = np.array(backend.to_host(lg), dtype=np.float64)
            one = lh[self.sample] if lh.ndim >= 1 and lh.shape[0] > self.sample else lh
            flat = one.reshape(-1)
            nz = np.flatnonzero(flat)
            if not (nz.size <= 1 and (nz.size == 0 or nz[0] == e)
                    and one.shape == per.shape):
                elementwise = False
            order = np.argsort(-np.abs(flat), kind="stable")[:TOP]
            for j in order:
                if flat[j] == 0.0 and len(inputs) and inputs[-1]["port"] == port:
                    break
                idx = [int(i) for i in np.unravel_index(int(j), one.shape)]
                inputs.append({"port": port, "src": src, "index": idx,
                               "flat": int(j), "local": float(flat[j]),
                               "product": up * float(flat[j]), "total": None})
                self._want.append((p, len(inputs) - 1))
        params: list[dict] = []
        owner = self.net.analysis.shared_root.get(step.node_id, step.node_id)
        for k, lg in local_g.items():
            if lg is None:
                continue
            flat = lg.reshape(-1)
            for j in np.argsort(-np.abs(flat), kind="stable")[:TOP]:
                if flat[j] == 0.0:
                    break
                params.append({"key": f"{owner}/{k}",
                               "name": k, "index": [int(i) for i in
                                                    np.unravel_index(int(j), lg.shape)],
                               "flat": int(j), "local": float(flat[j]),
                               "product": up * float(flat[j]), "total": None})
        if not inputs:
            elementwise = False
        self.result = ChainRule(step.node_id, _key_t(key), self.sample, e, index,
                                max(size, 1), up, elementwise, inputs, params)

    def after_backward(self, step, key, src_keys, gins) -> None:
        if key != self.key or self.result is None:
            return
        for p, i in self._want:
            gin = gins[p]
            if gin is None:
                continue
            gh = np.asarray(backend.to_host(gin))
            one = gh[self.sample] if gh.ndim >= 1 and gh.shape[0] > self.sample else gh
            self.result.inputs[i]["total"] = float(one.reshape(-1)[
                self.result.inputs[i]["flat"]])

    def fill_param_totals(self) -> None:
        if self.result is None:
            return
        grads = self.net.gradients()
        for row in self.result.params:
            g = grads.get(row["key"])
            if g is not None:
                row["total"] = float(np.asarray(backend.to_host(g)).reshape(-1)[row["flat"]])


@dataclass
class StepState:
    """Where a walk stands: stage ``index`` of ``count`` (``phase`` ``"forward"``,
    ``"loss"``, ``"backward"``, ``"update"``, or ``"ended"`` after ``end``), that stage's
    record (``stage``), the first stage of each phase (``starts``), the cumulative gradient
    norm of every edge the backward pass has gone back through so far (``edge_norms``,
    keyed ``edge_key(src, dst, port)``; None for an edge into a node that sends no gradient
    back, such as the data into a first Dense layer), whether the weights are the updated
    ones (``applied``), the trainer's step count, and the chain rule when asked for."""
    index: int
    count: int
    phase: str
    stage: dict
    starts: dict[str, int]
    batch_size: int
    sample: int
    applied: bool = False
    step: int = -1
    edge_norms: dict[str, float | None] = field(default_factory=dict)
    chain: ChainRule | None = None
    note: str = ""

    def to_json(self) -> dict:
        d = asdict(self)
        d["chain"] = None if self.chain is None else self.chain.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict) -> StepState:
        d = dict(d)
        chain = d.pop("chain", None)
        return cls(**d, chain=None if chain is None else ChainRule.from_json(chain))


def _copy_state(st: TrainingState) -> TrainingState:
    """A copy that ``restore_state`` may hand to the network (it keeps the gradient arrays
    and the generator it is given, which the next step changes in place)."""
    return TrainingState(st.params, st.buffers,
                         {nid: {k: None if g is None else g.copy() for k, g in gs.items()}
                          for nid, gs in st.grads.items()},
                         st.optimizer, copy.deepcopy(st.rng), dict(st.state_norms),
                         dict(st.layer_norms))


class Stepper:
    """One walk through one training step of ``net`` on ``batch`` (see the module doc).

    Raises ``NeuroCanvasError`` for a sample outside the batch or a graph without a loss,
    ``NonFiniteError`` (nothing changed) when the step meets a NaN or Inf.
    """

    def __init__(self, net: Network, optimizer, config, batch: dict, *, sample: int = 0,
                 max_values: int = MAX_VALUES):
        self.net, self.optimizer, self.config, self.batch = net, optimizer, config, batch
        sizes = [len(v) for v in batch.values() if getattr(v, "ndim", 0) > 0]
        self.batch_size = sizes[0] if sizes else 0
        if not 0 <= sample < max(self.batch_size, 1):
            raise NeuroCanvasError(f"sample {sample} is outside the batch of "
                                   f"{self.batch_size} samples")
        self.sample = int(sample)
        if not net.plan.losses:
            raise NeuroCanvasError("the graph has no loss node, so there is no backward "
                                   "pass to step through")
        self.pre = save_state(net, optimizer)
        rec = _Recorder(net.xp, self.sample, max_values)
        losses: dict[str, float] = {}
        net.observer = _Observer(rec)
        try:
            loss, norms, global_norm, _ = training_step(net, optimizer, batch, config, losses)
        except NonFiniteError:
            net.observer = None
            restore_state(net, optimizer, _copy_state(self.pre))
            raise
        finally:
            net.observer = None
        self.post = save_state(net, optimizer)
        # backprop through time: the gradient reaching each recurrent state at t = 0..T-1
        state_norms = net.state_gradient_norms()
        restore_state(net, optimizer, _copy_state(self.pre))
        c = config
        penalty = float(regularization_penalty(net.params, c.l1, c.l2)) if c.l1 or c.l2 \
            else 0.0
        fwd = [{"phase": "forward", **r} for r in rec.forward]
        bwd = [{"phase": "backward", **r} for r in rec.backward]
        for r in bwd:  # on the node's first backward stage (its last time step)
            sn = state_norms.pop(r["node"], None)
            if sn is not None:
                r["state_grad_norms"] = [float(v) for v in sn[:4096]]
        loss_stage = {"phase": "loss", "node": None, "t": None, "loss": float(loss),
                      "penalty": penalty, "losses": {k: float(v) for k, v in losses.items()}
                      or {net.plan.losses[0]: float(loss) - penalty}}
        rows = []
        for k in self.pre.params:
            w0 = np.asarray(backend.to_host(self.pre.params[k]), np.float64)
            w1 = np.asarray(backend.to_host(self.post.params[k]), np.float64)
            wn, un = float(np.linalg.norm(w0)), float(np.linalg.norm(w1 - w0))
            rows.append({"key": k, "shape": list(w0.shape), "weight_norm": wn,
                         "update_norm": un, "ratio": un / wn if wn else None,
                         "grad_norm": float(norms[k]) if k in norms else None})
        update = {"phase": "update", "node": None, "t": None, "params": rows,
                  "global_norm": float(global_norm), "optimizer": optimizer.kind,
                  "clip_norm": c.clip_norm, "clip_value": c.clip_value,
                  "clipped": bool(c.clip_norm is not None and global_norm > c.clip_norm)}
        self.stages: list[dict] = fwd + [loss_stage] + bwd + [update]
        self.starts = {"forward": 0, "loss": len(fwd), "backward": len(fwd) + 1,
                       "update": len(fwd) + 1 + len(bwd)}
        self.index = 0
        self.applied = False
        self._chain_cache: tuple | None = None

    # ---- moving -----------------------------------------------------------------------
    @property
    def count(self) -> int:
        return len(self.stages)

    @property
    def phase(self) -> str:
        return self.stages[self.index]["phase"]

    def _go(self, index: int) -> None:
        index = max(0, min(index, self.count - 1))
        self.index = index
        at_update = self.phase == "update"
        if at_update and not self.applied:
            restore_state(self.net, self.optimizer, _copy_state(self.post))
            self.applied = True
        elif not at_update and self.applied:
            restore_state(self.net, self.optimizer, _copy_state(self.pre))
            self.applied = False

    def next(self) -> bool:
        """One stage on; False at the update stage (the last)."""
        if self.index >= self.count - 1:
            return False
        self._go(self.index + 1)
        return True

    def back(self) -> bool:
        """One stage back (out of the update stage: the weights before the step again);
        False at the first stage."""
        if self.index == 0:
            return False
        self._go(self.index - 1)
        return True

    def skip_phase(self) -> bool:
        """To the first stage of the next phase."""
        later = [s for s in self.starts.values() if s > self.index]
        if not later:
            return False
        self._go(min(later))
        return True

    def go_to(self, index: int) -> None:
        """To stage ``index`` (clamped to the stages there are)."""
        self._go(int(index))

    def to_end(self) -> None:
        """To the update stage: the step's result in place."""
        self._go(self.count - 1)

    def abandon(self) -> None:
        """Put back the state before the step, whatever stage the walk is at."""
        restore_state(self.net, self.optimizer, _copy_state(self.pre))
        self.applied = False

    # ---- what the stage shows ------------------------------------------------------------
    def edge_norms(self) -> dict[str, float | None]:
        """Per edge passed so far in the backward pass: the norm of every gradient it
        carried back (over its time steps: the root of the sum of their squared norms)."""
        sq: dict[str, float | None] = {}
        last = min(self.index, self.starts["update"] - 1)
        for st in self.stages[self.starts["backward"]:last + 1]:
            for e in st["edges"]:
                k = edge_key(e["src"], e["dst"], e["port"])
                if e["norm"] is None:
                    sq.setdefault(k, None)
                else:
                    sq[k] = (sq.get(k) or 0.0) + e["norm"] ** 2
        return {k: None if v is None else math.sqrt(v) for k, v in sq.items()}

    def passed(self, node: str, t: int | None = None) -> dict | None:
        """The backward record of ``node`` (at ``t``; default: the latest passed) once the
        walk has gone back through it, else None."""
        hits = [s for s in self.stages[self.starts["backward"]:self.index + 1]
                if s["phase"] == "backward" and s["node"] == node
                and (t is None or s["t"] == t)]
        return hits[-1] if hits else None

    def chain_rule(self, node: str, element: int | None = None,
                   t: int | None = None) -> ChainRule | None:
        """``ChainRule`` at ``node``'s backward call (at ``t``) for output ``element``
        (default: where the largest gradient arrives), by replaying the step from the saved
        state; None where no gradient reaches the node (or the walk has not got there)."""
        rec = self.passed(node, t)
        if rec is None:
            return None
        key = node if rec["t"] is None else (node, rec["t"])
        ck = (key, element)
        if self._chain_cache is not None and self._chain_cache[0] == ck:
            return self._chain_cache[1]
        net = self.net
        obs = _ChainObserver(net, key, self.sample, element)
        restore_state(net, self.optimizer, _copy_state(self.pre))
        net.observer = obs
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                net.loss_and_grads(self.batch)
            obs.fill_param_totals()
        finally:
            net.observer = None
            restore_state(net, self.optimizer,
                          _copy_state(self.post if self.applied else self.pre))
        self._chain_cache = (ck, obs.result)
        return obs.result

    def state(self, node: str | None = None, element: int | None = None,
              t: int | None = None) -> StepState:
        """The current stage; with the chain rule at ``node`` (default: the stage's node in
        the backward phase) once the backward pass has reached it."""
        stage = self.stages[self.index]
        chain, note = None, ""
        want = node if node is not None else (stage.get("node") if self.phase == "backward"
                                              else None)
        if want is not None and self.index >= self.starts["backward"]:
            if t is None and want == stage.get("node"):
                t = stage.get("t")
            chain = self.chain_rule(want, element, t)
            if chain is None:
                note = (f"no gradient reaches node '{want}'" if self.phase == "update"
                        else f"the backward pass has not reached node '{want}' yet")
        elif want is not None:
            note = "the chain rule appears once the backward pass reaches the node"
        en = self.edge_norms() if self.index >= self.starts["backward"] else {}
        return StepState(self.index, self.count, self.phase, stage, dict(self.starts),
                         self.batch_size, self.sample, self.applied, -1, en, chain, note)
