"""TimeCollect: closes the recurrent region; turns the per-step values of its input into one
whole-sequence value (docs/format.md section 2, recurrent graphs)."""
from __future__ import annotations

from core.layers.base import Layer, register
from core.params import Choice


@register
class TimeCollect(Layer):
    type_name = "TimeCollect"
    category = "Recurrent"
    collects_steps = True
    doc = ("Ends the part of a recurrent graph that runs once per time step: 'last' keeps the "
           "last step's value, 'mean' averages the steps, 'all' stacks them to [T, ...].")
    params_spec = {"mode": Choice(default="last", choices=("last", "mean", "all"),
                                  doc="how the steps are combined")}
    steps: int | None = None  # T, set by validation from the sequence inputs

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
        if mode == "last":
            return inputs[-1], T
        if mode == "mean":
            out = inputs[0].copy()
            for v in inputs[1:]:
                out += v
            out *= 1.0 / T
            return out, T
        return ctx.xp.stack(inputs, axis=1), T

    def backward(self, ctx, T, gout):
        mode = self.params["mode"]
        if mode == "last":
            return [None] * (T - 1) + [gout]
        if mode == "mean":
            g = gout * (1.0 / T)
            return [g] * T
        return [gout[:, t] for t in range(T)]
