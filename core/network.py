"""A compiled, executable network: parameters on a device, forward and backward by the plan.

Parameters are stored per owner node under docs/format.md section 4 keys ``"<node id>/<name>"``. A
node with ``shared_with`` uses its owner's arrays (the same dicts), so gradients from every use add
up in one place.
"""
from __future__ import annotations

import copy
import dataclasses
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from core.device import array_module
from core.errors import DataError, NeuroCanvasError, WeightsError
from core.layers.base import Context, fmt_shape
from core.layers.losses import ValidRows
from core.layers.timecollect import Carry, Lengths
from core.plan import Plan, Step, compile_plan, fuse_relu_pool
from core.validate import Analysis
from kernels import backend


@dataclass
class ForwardResult:
    loss: Any  # total of all losses (0-d array on the device), None without losses
    losses: dict[str, Any]  # per loss node
    values: dict[str, Any]  # requested outputs
    tape: list = field(default_factory=list)  # (step, cache) for backward
    ctx: Context | None = None
    culprit: str | None = None  # the node where ``check`` stopped the pass


def node_rng(seed: int, node_id: str) -> np.random.Generator:
    """Per-node init generator: adding or removing a node never changes another's init."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(node_id.encode())])


class Network:
    """An executable network built from an ``Analysis`` of a valid graph.

    device: 'cpu' or 'gpu' (resolved, see ``core.device.resolve_device``).
    dtype: floating dtype of parameters and activations (float32; float64 for checks).
    outputs: node ids whose values ``forward`` returns besides the losses.
    observer: None, or an object told of every call (core.probe.stepper: stepping through
    one training step): ``forward(step, key, out)`` after each node's forward (and each fed
    value), ``before_backward(step, key, ctx, cache, g)`` and ``after_backward(step, key,
    src_keys, gins)`` around each node's backward. Set it only for such a pass.
    """

    observer = None
    # Run a ReLU and the 2x2 max pool after it as one call where nothing looks at single
    # nodes (``core.plan.fuse_relu_pool``); the cost view turns it off to time each node.
    fuse = True

    def __init__(self, analysis: Analysis, *, device: str = "cpu", dtype=np.float32,
                 seed: int = 0, outputs: Iterable[str] = (), with_losses: bool = True):
        self.analysis = analysis
        self.device = device
        self.xp = array_module(device)
        self.dtype = np.dtype(dtype)
        self.plan: Plan = compile_plan(analysis, list(outputs), with_losses=with_losses)
        self.layers = {s.node_id: s.layer for s in self.plan.steps}
        self._fused_plan: Plan = fuse_relu_pool(self.plan)
        self.rng = backend.default_rng(self.xp, seed)
        self.params: dict[str, Any] = {}
        self.grads: dict[str, Any] = {}
        self.buffers: dict[str, Any] = {}
        self.state_grad_norms: dict[str, np.ndarray] = {}  # drawn cycles, see backward()
        self._bind(seed)

    # ---- parameters --------------------------------------------------------------------
    def _owner(self, node_id: str) -> str:
        return self.analysis.shared_root.get(node_id, node_id)

    def _he(self, node_id: str) -> bool:
        """He init when the node feeds a ReLU-family activation, Glorot otherwise."""
        for e in self.analysis.graph.out_edges(node_id):
            lay = self.analysis.layers.get(e.dst)
            if lay is not None and lay.relu_family:
                return True
        return False

    def _bind(self, seed: int) -> None:
        """Initialise each owner's parameters on the device; sharing nodes get its dicts."""
        self._owners: dict[str, Any] = {}
        for nid in self.layers:
            owner = self._owner(nid)
            if owner not in self._owners:
                # the owner may lie outside this plan (predicting one branch of a Siamese net)
                # (then it gets its own copy, so nothing is written into the Analysis)
                layer = self.layers.get(owner) or copy.copy(self.analysis.layers[owner])
                self._init_owner(owner, layer, seed)
            if owner != nid:
                src = self._owners[owner]
                layer = self.layers[nid]
                layer.P, layer.G, layer.B = src.P, src.G, src.B

    def _init_owner(self, nid: str, layer, seed: int) -> None:
        host = layer.init_params(node_rng(seed, nid), self._he(nid))
        layer.P = {k: backend.to_device(host[k], self.xp, self.dtype)
                   for k in layer.param_shapes()}
        layer.B = {k: backend.to_device(host[k], self.xp, self.dtype)
                   for k in layer.buffer_shapes()}
        layer.G = {k: None for k in layer.P}
        self._owners[nid] = layer
        self.params.update({f"{nid}/{k}": v for k, v in layer.P.items()})
        self.buffers.update({f"{nid}/{k}": v for k, v in layer.B.items()})

    def zero_grad(self) -> None:
        for layer in self._owners.values():
            for k in layer.G:
                layer.G[k] = None

    def gradients(self) -> dict[str, Any]:
        """Current gradient per parameter key (None where no gradient reached it)."""
        return {f"{nid}/{k}": g for nid, layer in self._owners.items() for k, g in layer.G.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameters and buffers as float32 host arrays, keyed as in docs/format.md section 4."""
        out = {k: backend.to_host(v).astype(np.float32) for k, v in self.params.items()}
        out.update({k: backend.to_host(v).astype(np.float32) for k, v in self.buffers.items()})
        return out

    def load_state_dict(self, state: dict[str, np.ndarray], file: str | None = None) -> None:
        """Copy weights in place; a missing key or a wrong shape is a ``WeightsError``."""
        for key, arr in list(self.params.items()) + list(self.buffers.items()):
            if key not in state:
                raise WeightsError(f"missing key '{key}'", file=file)
            got = np.asarray(state[key])
            if got.shape != arr.shape:
                raise WeightsError(f"key '{key}' has shape {fmt_shape(got.shape)}, expected "
                                   f"{fmt_shape(arr.shape)}", file=file)
            if got.dtype.kind not in "biuf":  # complex would silently lose its imaginary part
                raise WeightsError(f"key '{key}' is not real numbers ({got.dtype})", file=file)
            arr[...] = backend.to_device(got, self.xp, self.dtype)

    # ---- data --------------------------------------------------------------------------
    def _feed(self, step, batch: dict[str, Any]):
        fld = step.feed
        if fld not in batch:
            raise DataError(f"no array for field '{fld}' (needed by {step.layer.type_name} "
                            f"node '{step.node_id}'); found fields: "
                            f"{', '.join(sorted(batch)) or 'none'}", node=step.node_id)
        arr = batch[fld]
        if arr.dtype.kind not in "biuf":  # strings, objects, complex numbers
            raise DataError(f"field '{fld}' holds {arr.dtype} values, expected real numbers",
                            node=step.node_id)
        if arr.ndim == 0:
            raise DataError(f"field '{fld}' is a single value, expected samples along a "
                            "first axis", node=step.node_id)
        want = tuple(step.layer.params["shape"])
        if tuple(arr.shape[1:]) != want:
            raise DataError(f"field '{fld}' has per-sample shape {fmt_shape(arr.shape[1:])}, "
                            f"expected {fmt_shape(want)}", node=step.node_id)
        dt = np.dtype(step.layer.params["dtype"])
        if np.issubdtype(dt, np.floating):
            dt = self.dtype
        elif arr.dtype.kind not in "iu":  # floats for an integer field: whole numbers only
            host = backend.to_host(arr)
            if not np.all(np.equal(np.mod(host, 1), 0)):
                raise DataError(f"field '{fld}' must hold integers "
                                f"(dtype {step.layer.params['dtype']})",
                                node=step.node_id)
        return backend.to_device(arr, self.xp, dt)

    def _batch_lengths(self, batch: dict[str, Any]) -> dict[str, Lengths]:
        """The ``Lengths`` of every lengths field the plan feeds, checked: integers 1..T,
        one per sample (docs/format.md section 2.6)."""
        out: dict[str, Lengths] = {}
        for fld, (nid, t_len) in self.plan.length_fields.items():
            if fld not in batch:
                raise DataError(f"no array for lengths field '{fld}' (named by the Input "
                                f"node's 'lengths'); found fields: "
                                f"{', '.join(sorted(batch)) or 'none'}", node=nid)
            host = backend.to_host(batch[fld])
            if host.dtype.kind not in "iu":
                raise DataError(f"lengths field '{fld}' holds {host.dtype} values, expected "
                                "integers", node=nid)
            if host.ndim == 2 and host.shape[1] == 1:
                host = host.reshape(-1)
            if host.ndim != 1:
                raise DataError(f"lengths field '{fld}' has per-sample shape "
                                f"{fmt_shape(host.shape[1:])}, expected []", node=nid)
            x = batch.get(self.plan.fields.get(nid, ""))
            if x is not None and len(x) != len(host):
                raise DataError(f"lengths field '{fld}' has {len(host)} samples, but the "
                                f"input has {len(x)}", node=nid)
            bad = np.flatnonzero((host < 1) | (host > t_len))
            if bad.size:
                i = int(bad[0])
                raise DataError(f"lengths field '{fld}': sample {i} has length "
                                f"{int(host[i])}, expected 1 to {t_len} (T)", node=nid)
            out[fld] = Lengths(self.xp, host, t_len)
        return out

    def _feed_data(self, step, batch: dict[str, Any], ctx: Context):
        """A data node's array; an Input with lengths has its padding set to zero, so that
        what the padded steps hold never matters."""
        arr = self._feed(step, batch)
        fld = step.layer.params.get("lengths") if step.layer.data_role == "input" else None
        return arr if fld is None else ctx.lengths[fld].zero_padding(arr)

    # ---- computation -------------------------------------------------------------------
    def forward(self, batch: dict[str, Any], *, train: bool = False,
                record: bool | None = None,
                check: Callable[[Any], bool] | None = None) -> ForwardResult:
        """Run the plan on ``batch`` (field -> array with the batch axis first).

        record: keep the caches for ``backward`` (default: when training).
        check(output): when given and True for a node's output, the pass stops there and
        the result names that node as ``culprit``.

        Every value is keyed by its node id, or by (node id, t) inside the recurrent region,
        where a delay-d edge reads the key (source, t - d) (zeros before t = d). The tape
        records, for each call, the key each input came from, so one backward loop does
        ordinary backprop and backprop through time alike.
        """
        record = train if record is None else record
        obs = self.observer
        plan = self._fused_plan if self.fuse and obs is None and check is None else self.plan
        ctx = Context(self.xp, train=train, rng=self.rng, dtype=self.dtype)
        ctx.lengths = self._batch_lengths(batch) if plan.length_fields else {}
        lens = ctx.lengths.get(plan.lengths) if plan.lengths else None
        values: dict[Any, Any] = {}
        tape: list = []

        def call(step, key, src_keys) -> bool:
            ins = [values[k] if k is not None else self._zeros(step, i, values)
                   for i, k in enumerate(src_keys)]
            out, cache = step.layer.forward(ctx, ins)
            if check is not None and check(out):
                return False
            values[key] = out
            if obs is not None:
                obs.forward(step, key, out)
            if record and step.backward:
                tape.append((step, key, src_keys, cache))
            return True

        def carry(step, key, t: int) -> None:
            """A fed-back node at a step with padding: padded samples keep its value."""
            nid, new = step.node_id, values[key]
            prev = (nid, t - 1)
            cstep = Step(nid, Carry(nid, lens.step_mask(t, new.ndim)), [nid, nid], [0, 1],
                         backward=step.backward, timed=True, internal=True)
            values[key], _ = cstep.layer.forward(ctx, [new, values[prev]])
            if record and step.backward:
                tape.append((cstep, key, [key, prev], None))

        def valid_rows(step, key, src_keys, t: int) -> bool:
            """A loss at a step with padding: the loss of the valid samples only."""
            rows = lens.rows(t)
            if rows.size == 0:
                return True  # every sample is padding: no loss at this step
            ins = [values[k] if k is not None else self._zeros(step, i, values)
                   for i, k in enumerate(src_keys)]
            wrapped = ValidRows(step.layer, backend.to_device(rows, self.xp))
            out, cache = wrapped.forward(ctx, ins)
            values[key] = out
            mstep = dataclasses.replace(step, layer=wrapped)
            if obs is not None:
                obs.forward(mstep, key, out)
            if record and step.backward:
                tape.append((mstep, key, src_keys, cache))
            return True

        for step in plan.pre:
            if step.feed is not None:
                values[step.node_id] = self._feed_data(step, batch, ctx)
                if obs is not None:
                    obs.forward(step, step.node_id, values[step.node_id])
            elif not call(step, step.node_id, step.sources):
                return ForwardResult(None, {}, {}, tape, ctx, culprit=step.node_id)
            for f in step.free_after:
                del values[f]

        if plan.region:
            region_ids = {s.node_id for s in plan.region}
            keep_all = region_ids & (set(plan.losses) | set(plan.outputs)
                                     | {s.sources[0] for s in plan.post
                                        if s.layer.collects_steps})
            seqs = {s.node_id: self._feed_data(s, batch, ctx) for s in plan.region
                    if s.feed is not None}
            states = self._states() if lens is not None else set()
            for t in range(plan.T):
                for step in plan.region:
                    key = (step.node_id, t)
                    if step.feed is not None:
                        values[key] = seqs[step.node_id][:, t]
                        if obs is not None:
                            obs.forward(step, key, values[key])
                        continue
                    src_keys = [(src if src not in region_ids else (src, t - d))
                                if t - d >= 0 else None
                                for src, d in zip(step.sources, step.delays, strict=True)]
                    if lens is not None and lens.padded(t) and step.layer.is_loss:
                        valid_rows(step, key, src_keys, t)
                        continue
                    if not call(step, key, src_keys):
                        return ForwardResult(None, {}, {}, tape, ctx, culprit=step.node_id)
                    if lens is not None and lens.padded(t) and step.node_id in states:
                        carry(step, key, t)
                old = t - plan.max_delay  # no delay edge reaches back further than this
                for nid in region_ids - keep_all:
                    values.pop((nid, old), None)
            for f in plan.free_after_region:
                values.pop(f, None)

        for step in plan.post:
            if step.layer.collects_steps:
                src_keys = [(step.sources[0], t) for t in range(plan.T)]
            else:
                src_keys = step.sources
            if step.feed is not None:
                values[step.node_id] = self._feed_data(step, batch, ctx)
                if obs is not None:
                    obs.forward(step, step.node_id, values[step.node_id])
            elif not call(step, step.node_id, src_keys):
                return ForwardResult(None, {}, {}, tape, ctx, culprit=step.node_id)
            for f in step.free_after:
                del values[f]

        losses = {nid: self._over_time(values, nid, mean=True, lens=lens)
                  for nid in plan.losses}
        total = None
        for v in losses.values():
            total = v if total is None else total + v
        outs = {nid: self._over_time(values, nid, lens=lens) for nid in plan.outputs}
        return ForwardResult(total, losses, outs, tape, ctx)

    def _states(self) -> set[str]:
        """The recurrent states: region nodes read back over a delay edge (a static value
        over a delay edge is the same at every step, so it has no state to follow)."""
        plan = self.plan
        region_ids = {s.node_id for s in plan.region}
        return {s for step in plan.region for s, d in zip(step.sources, step.delays,
                                                          strict=True) if d and s in region_ids}

    @staticmethod
    def _loss_shares(lens: Lengths, steps: int) -> list[float]:
        """With lengths, the weight of a region loss's value at each step: its valid samples
        over all valid (sample, step) pairs, so the loss is the mean over valid steps."""
        total = float(lens.host.sum())
        return [lens.count(t) / total for t in range(steps)]

    def _over_time(self, values: dict, nid: str, mean: bool = False,
                   lens: Lengths | None = None):
        """A node's value; for a region node its steps stacked on axis 1 (or averaged;
        with lengths, zeros at the padded steps, and a loss's mean over the valid steps)."""
        if nid in values:
            return values[nid]
        if lens is not None:
            shares = self._loss_shares(lens, self.plan.T)
            if mean:
                total = None
                for t, w in enumerate(shares):
                    if w:
                        v = values[(nid, t)] * w
                        total = v if total is None else total + v
                return total
            steps = [values[(nid, t)] for t in range(self.plan.T)]
            return lens.zero_padding(self.xp.stack(steps, axis=1))
        steps = [values[(nid, t)] for t in range(self.plan.T)]
        if mean:  # a loss inside the region is averaged over the steps
            total = steps[0]
            for v in steps[1:]:
                total = total + v
            return total * (1.0 / len(steps))
        return self.xp.stack(steps, axis=1)

    def _zeros(self, step, port: int, values: dict):
        """The value a delay edge presents before its first step: zeros of the source's shape."""
        src = step.sources[port]
        batch = next(v for v in values.values() if getattr(v, "ndim", 0) > 0).shape[0]
        return self.xp.zeros((batch,) + tuple(self.analysis.shapes[src]), dtype=self.dtype)

    def backward(self, result: ForwardResult, check: Callable[[Step, list], bool] | None = None
                 ) -> str | None:
        """Back-propagate d(total loss) = 1 through the recorded tape into the ``G`` dicts.

        Gradients add up where an output fans out, where parameters are shared, and over the
        time steps of the recurrent region (backprop through time). ``check(step,
        input_grads)``, when given, runs after each call; the first for which it returns
        True stops the pass and its node id is returned.

        Afterwards ``state_grad_norms`` maps each node whose value crosses a delay edge to
        the norm of the gradient reaching it at each time step (a host array of length T).
        """
        if result.loss is None:
            raise NeuroCanvasError("the graph has no loss node, so there is nothing to train")
        xp = self.xp
        plan = self.plan
        pending: dict[Any, Any] = {}
        region_ids = {s.node_id for s in plan.region}
        lens = None
        if plan.lengths and result.ctx is not None:
            lens = getattr(result.ctx, "lengths", {}).get(plan.lengths)
        for nid in plan.losses:
            if nid in region_ids and lens is not None:
                for t, w in enumerate(self._loss_shares(lens, plan.T)):
                    if w:
                        pending[(nid, t)] = xp.asarray(w, dtype=self.dtype)
            elif nid in region_ids:
                share = xp.asarray(1.0 / plan.T, dtype=self.dtype)
                pending.update({(nid, t): share for t in range(plan.T)})
            else:
                pending[nid] = xp.asarray(1.0, dtype=self.dtype)
        states = self._states()
        state_norms: dict[str, list] = {s: [None] * plan.T for s in states}
        tape = result.tape
        obs = self.observer
        # The layers of the recurrent region gather their per-step weight gradients into one
        # product each, taken after the loop; not under a check, which reads each call's
        gather = [] if check is None else None
        if gather is not None:
            for s in plan.region:
                if s.layer.defers_weight_grads and s.layer.deferred is None:
                    s.layer.deferred = []
                    gather.append(s.layer)
        try:
            culprit = self._backward_tape(tape, pending, state_norms, result, obs, check)
        finally:
            for layer in gather or ():
                layer.flush_deferred()
        if culprit is not None:
            return culprit
        self.state_grad_norms = {}
        for nid, norms in state_norms.items():
            zero = xp.zeros((), dtype=xp.float64)
            stacked = xp.stack([zero if n is None else n for n in norms])
            self.state_grad_norms[nid] = backend.to_host(stacked)  # one transfer per state
        return None

    def _backward_tape(self, tape, pending, state_norms, result, obs, check) -> str | None:
        """The loop of ``backward`` over the tape; the node id where ``check`` stopped it."""
        xp = self.xp
        while tape:
            step, key, src_keys, cache = tape.pop()
            g = pending.pop(key, None)
            if g is None:
                continue  # nothing downstream of this call reaches a loss
            # the first call met (a Carry, with lengths) sees the whole gradient of the state
            if step.node_id in state_norms and state_norms[step.node_id][key[1]] is None:
                g64 = g.astype(xp.float64, copy=False)  # tiny norms must not underflow
                state_norms[step.node_id][key[1]] = xp.sqrt(xp.vdot(g64, g64))
            tell = obs is not None and not step.internal
            if tell:
                obs.before_backward(step, key, result.ctx, cache, g)
            gins = step.layer.backward(result.ctx, cache, g)
            if tell:
                obs.after_backward(step, key, src_keys, gins)
            if check is not None and check(step, gins):
                return step.node_id
            for k, gin in zip(src_keys, gins, strict=True):
                if gin is None or k is None:
                    continue
                pending[k] = pending[k] + gin if k in pending else gin
        return None

    def state_gradient_norms(self) -> dict[str, list[float]]:
        """Per node with a recurrent state, the norm of the gradient reaching that state at
        each time step t = 0..T-1 of the last backward: the nodes fed back by delay edges of
        drawn cycles, and the RNN, LSTM and GRU layers. Small early entries are vanishing
        gradients; growing ones are exploding gradients."""
        out = {nid: [float(v) for v in norms] for nid, norms in self.state_grad_norms.items()}
        for nid, layer in self.layers.items():
            norms = getattr(layer, "state_grad_norms", None)
            if norms is not None and nid not in out:
                out[nid] = [float(v) for v in norms]
        return out

    def loss_and_grads(self, batch: dict[str, Any]) -> ForwardResult:
        """One training forward and backward; gradients are left in ``gradients()``."""
        self.zero_grad()
        res = self.forward(batch, train=True)
        self.backward(res)
        return res

    def find_nonfinite(self, batch: dict[str, Any]) -> tuple[str | None, str]:
        """(node, 'forward' | 'backward'): where a NaN or Inf first appears on ``batch``.

        Checking every value costs a pass over it, so training only calls this after the
        loss or the gradient norm came out non-finite.
        """
        xp = self.xp

        def bad(v) -> bool:
            return v is not None and not bool(xp.all(xp.isfinite(v)))

        for k, v in self.params.items():
            if bad(v):
                return k.split("/")[0], "forward"
        res = self.forward(batch, train=True, check=bad)
        if res.culprit:
            return res.culprit, "forward"
        self.zero_grad()
        culprit = self.backward(res, lambda step, gins: any(bad(x) for x in gins) or
                                any(bad(x) for x in step.layer.G.values()))
        return (culprit, "backward") if culprit else (None, "forward")

    def predict(self, batch: dict[str, Any], node: str, batch_size: int = 1024) -> np.ndarray:
        """Evaluation-mode output of ``node`` (must be in ``outputs``), as a host array."""
        n = len(next(iter(batch.values()))) if batch else 0
        parts = []
        for i in range(0, max(n, 1), batch_size):
            sub = {k: v[i:i + batch_size] for k, v in batch.items()}
            parts.append(backend.to_host(self.forward(sub, train=False).values[node]))
        return np.concatenate(parts, axis=0) if parts else np.zeros((0,))


def default_output(analysis: Analysis) -> str:
    """The node ``predict`` reports by default: the one feeding the first loss's ``pred``
    (its first input port); without a loss, the last node of the graph."""
    for nid in analysis.losses():
        ports = analysis.inputs.get(nid, {})
        first = analysis.layers[nid].input_ports(analysis.layers[nid].params)[0]
        if first in ports:
            return ports[first].src
    if not analysis.order:
        raise NeuroCanvasError("the graph has no nodes")
    return analysis.order[-1]
