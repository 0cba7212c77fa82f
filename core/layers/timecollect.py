"""TimeCollect: closes the recurrent region; turns the per-step values of its input into one
whole-sequence value (docs/format.md section 2, recurrent graphs).

Also the per-batch sequence lengths (``Lengths``, docs/format.md section 2.6 "Variable-length
sequences") and ``Carry``, the step the network adds after a fed-back node of a drawn cycle
so that padded steps leave its state unchanged.
"""
from __future__ import annotations

import numpy as np

from core.layers.base import Layer, register
from core.params import Choice
from kernels.backend import to_device


class Lengths:
    """Each sample's number of valid time steps in one batch (an Input's ``lengths`` field):
    steps t >= length are padding. Built once per forward pass by the network (one host
    copy of the lengths, which the batch usually holds on the host anyway); layers find it
    in ``ctx.lengths[field]``.

    host: int64 [B]; dev: the same on the device; T: the steps of the padded axis;
    min / max: the shortest and longest length (steps t < min have no padding at all);
    valid: device bool [B, T], True where t < length.
    """

    def __init__(self, xp, host: np.ndarray, steps: int):
        self.xp = xp
        self.host = np.asarray(host, dtype=np.int64).reshape(-1)
        self.T = int(steps)
        self.B = int(self.host.shape[0])
        self.min = int(self.host.min()) if self.B else self.T
        self.max = int(self.host.max()) if self.B else 0
        valid = np.arange(self.T)[None, :] < self.host[:, None]
        self.valid_host = valid
        self.valid = to_device(valid, xp)
        self.dev = to_device(self.host, xp)
        self._rows: dict[int, np.ndarray] = {}

    def padded(self, t: int) -> bool:
        """Whether some sample is padding at step t."""
        return t >= self.min

    def step_mask(self, t: int, ndim: int):
        """Device bool [B, 1, ...] (``ndim`` axes in all): valid at step t."""
        return self.valid[:, t].reshape((self.B,) + (1,) * (ndim - 1))

    def seq_mask(self, ndim: int):
        """Device bool [B, T, 1, ...] (``ndim`` axes in all): valid at each step."""
        return self.valid.reshape((self.B, self.T) + (1,) * (ndim - 2))

    def rows(self, t: int) -> np.ndarray:
        """Host indices of the samples valid at step t."""
        r = self._rows.get(t)
        if r is None:
            r = self._rows[t] = np.flatnonzero(self.valid_host[:, t])
        return r

    def count(self, t: int) -> int:
        """How many samples are valid at step t."""
        return int(np.count_nonzero(self.host > t))

    def zero_padding(self, x):
        """``x`` [B, T, ...] with the padded steps set to zero (a new array)."""
        return self.xp.where(self.seq_mask(x.ndim), x, self.xp.zeros((), dtype=x.dtype))


class Carry(Layer):
    """Not a node type: the network's step after a fed-back node of a drawn cycle at a step
    with padding. Inputs: the node's new value at t and its value at t - 1; output: the new
    value for the samples still valid, the old one for the padded (their state does not
    change). Backward sends the gradient to one or the other."""

    type_name = ""

    def __init__(self, node_id: str, mask):
        super().__init__(node_id, {})
        self.mask = mask  # device bool [B, 1, ...]

    def forward(self, ctx, inputs):
        new, old = inputs
        return ctx.xp.where(self.mask, new, old), None

    def backward(self, ctx, cache, gout):
        zero = ctx.xp.zeros((), dtype=gout.dtype)
        xp = ctx.xp
        return [xp.where(self.mask, gout, zero), xp.where(self.mask, zero, gout)]


def _lengths(layer, ctx) -> Lengths | None:
    """The lengths a layer with ``lengths_field`` is to use for this batch, or None."""
    field = getattr(layer, "lengths_field", None)
    if field is None:
        return None
    return getattr(ctx, "lengths", {}).get(field)


@register
class TimeCollect(Layer):
    type_name = "TimeCollect"
    category = "Recurrent"
    collects_steps = True
    doc = ("Ends the part of a recurrent graph that runs once per time step: 'last' keeps the "
           "last step's value, 'mean' averages the steps, 'all' stacks them to [T, ...]. "
           "With sequence lengths: each sample's last valid step, the mean over its valid "
           "steps, and zeros at the padded steps.")
    params_spec = {"mode": Choice(default="last", choices=("last", "mean", "all"),
                                  doc="how the steps are combined")}
    steps: int | None = None  # T, set by validation from the sequence inputs
    # The dataset field of the region's sequence lengths (set by the plan), or None.
    lengths_field: str | None = None
    uses_lengths = True

    def keeps_time_axis(self) -> bool:
        """Whether the output's first axis is still the time axis (for the lengths)."""
        return self.params["mode"] == "all"

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if self.params["mode"] == "all":
            if self.steps is None:
                return None
            return (self.steps,) + tuple(s)
        return tuple(s)

    def forward(self, ctx, inputs):
        """``inputs``: the input's value at every step, t = 0 .. T-1 (the network passes
        them all, not one port value)."""
        mode, T = self.params["mode"], len(inputs)
        lens = _lengths(self, ctx)
        if lens is not None:
            return self._forward_lengths(ctx, inputs, lens)
        if mode == "last":
            return inputs[-1], T
        if mode == "mean":
            out = inputs[0].copy()
            for v in inputs[1:]:
                out += v
            out *= 1.0 / T
            return out, T
        return ctx.xp.stack(inputs, axis=1), T

    def _forward_lengths(self, ctx, inputs, lens: Lengths):
        xp, mode, T = ctx.xp, self.params["mode"], len(inputs)
        ndim = inputs[0].ndim
        if mode == "last":
            out = inputs[lens.max - 1].copy()
            for t in range(lens.min - 1, lens.max - 1):  # samples that end earlier
                m = lens.dev == t + 1
                out = xp.where(m.reshape((-1,) + (1,) * (ndim - 1)), inputs[t], out)
            return out, (T, lens)
        if mode == "mean":
            out = inputs[0].copy()
            for t in range(1, lens.max):
                v = inputs[t]
                out += xp.where(lens.step_mask(t, ndim), v, 0) if lens.padded(t) else v
            inv = (1.0 / lens.dev).astype(out.dtype).reshape((-1,) + (1,) * (ndim - 1))
            out *= inv
            return out, (T, lens, inv)
        return lens.zero_padding(xp.stack(inputs, axis=1)), (T, lens)

    def backward(self, ctx, T, gout):
        mode = self.params["mode"]
        if isinstance(T, tuple):
            return self._backward_lengths(ctx, T, gout)
        if mode == "last":
            return [None] * (T - 1) + [gout]
        if mode == "mean":
            g = gout * (1.0 / T)
            return [g] * T
        return [gout[:, t] for t in range(T)]

    def _backward_lengths(self, ctx, cache, gout):
        """Padded steps, and steps no sample's result reads, get no gradient (None)."""
        xp, mode = ctx.xp, self.params["mode"]
        T, lens = cache[0], cache[1]
        zero = xp.zeros((), dtype=gout.dtype)
        out: list = [None] * T
        if mode == "last":
            for t in range(lens.min - 1, lens.max):
                m = (lens.dev == t + 1).reshape((-1,) + (1,) * (gout.ndim - 1))
                out[t] = xp.where(m, gout, zero)
            return out
        if mode == "mean":
            g = gout * cache[2]
            for t in range(lens.max):
                out[t] = xp.where(lens.step_mask(t, g.ndim), g, zero) if lens.padded(t) else g
            return out
        g = lens.zero_padding(gout)
        return [g[:, t] if t < lens.max else None for t in range(T)]
