"""Dense: a fully connected layer on the last axis, y = x·W + b."""
from __future__ import annotations

import numpy as np

from core.layers.base import Layer, fmt_shape, init_weight, register
from core.params import Bool, Int
from kernels.backend import array_module


@register
class Dense(Layer):
    type_name = "Dense"
    starter_params = {"units": 64}
    category = "Core"
    doc = "Fully connected layer on the last axis: y = x·W + b, W of shape [in, units]."
    params_spec = {
        "units": Int(min=1, doc="number of outputs"),
        "bias": Bool(default=True, doc="add a learned bias b"),
    }

    param_names = ("W", "b")  # b only with bias=True; param_shapes() gives the real set

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if len(s) == 0:
            raise self.shape_error(f"expected at least 1 axis (features), found {fmt_shape(s)}")
        return s[:-1] + (self.params["units"],)

    def param_shapes(self):
        f, u = self.in_shapes["in"][-1], self.params["units"]
        shapes = {"W": (f, u)}
        if self.params["bias"]:
            shapes["b"] = (u,)
        return shapes

    def init_params(self, rng, he):
        f, u = self.in_shapes["in"][-1], self.params["units"]
        out = {"W": init_weight(rng, (f, u), f, u, he)}
        if self.params["bias"]:
            out["b"] = np.zeros((u,))
        return out

    def macs(self, in_shapes, out_shape):
        """in x units at every position of the leading axes (bias adds not counted)."""
        return int(np.prod(out_shape[:-1], dtype=np.int64)) * in_shapes["in"][-1] \
            * self.params["units"]

    def forward(self, ctx, inputs):
        x = inputs[0]
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ self.P["W"]
        if "b" in self.P:
            y += self.P["b"]
        return y.reshape(x.shape[:-1] + (y.shape[-1],)), x2

    defers_weight_grads = True
    _w_t = None  # W.T made contiguous, for the calls of one gathering pass

    def backward(self, ctx, x2, gout):
        g2 = gout.reshape(-1, gout.shape[-1])
        if self.deferred is not None:  # one call of many (a drawn cycle's time steps)
            self.deferred.append((x2, g2))
        else:
            self._weight_grads(x2, g2)
        if not self.wants_grad(0):
            return [None]
        w_t = self.P["W"].T
        if self.deferred is not None:
            # BLAS takes a small g @ W.T 2-3x faster on a contiguous copy of W.T than on
            # the transposed view; a pass over T steps makes the copy once
            if self._w_t is None:
                self._w_t = ctx.xp.ascontiguousarray(w_t)
            w_t = self._w_t
        gx = g2 @ w_t
        return [gx.reshape(gout.shape[:-1] + (gx.shape[-1],))]

    def _weight_grads(self, x2, g2) -> None:
        self.accumulate("W", x2.T @ g2)
        if "b" in self.P:  # the column sums as a GEMV: BLAS's, 2-4x faster than NumPy's sum
            xp = array_module(g2)
            self.accumulate("b", xp.ones((g2.shape[0],), dtype=g2.dtype) @ g2)

    def flush_deferred(self) -> None:
        """The weight gradients of every gathered call as one product, [x_1; ...; x_T]^T @
        [g_1; ...; g_T] (what the built-in RNN layers do), instead of one per call."""
        pairs, self.deferred = self.deferred, None
        self._w_t = None  # the weights change before the next pass
        if not pairs:
            return
        if len(pairs) == 1:
            self._weight_grads(*pairs[0])
            return
        xp = array_module(pairs[0][1])
        self._weight_grads(xp.concatenate([x for x, _ in pairs]),
                           xp.concatenate([g for _, g in pairs]))
