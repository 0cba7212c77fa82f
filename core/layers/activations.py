"""Element-wise activations (and Softmax). Each keeps only what its backward needs: the
output where the derivative is an accurate function of it (Sigmoid, Tanh, Softmax), else a
mask (ReLU, LeakyReLU) or the input (ELU).

Every function is written with ``ctx.xp`` so the same code runs on NumPy and CuPy, and uses
Python float scalars only, so float32 activations stay float32 (NumPy 2 promotes a float32
array times a NumPy float64 scalar to float64).
"""
from __future__ import annotations

import numpy as np

from core.layers.base import Layer, fmt_shape, register
from core.params import Float, Int
from kernels import jit


@register
class Identity(Layer):
    type_name = "Identity"
    category = "Activations"
    doc = "Passes its input through unchanged."

    def forward(self, ctx, inputs):
        return inputs[0], None

    def backward(self, ctx, cache, gout):
        return [gout]


@register
class ReLU(Layer):
    type_name = "ReLU"
    category = "Activations"
    doc = "max(0, x), element-wise."
    relu_family = True

    def forward(self, ctx, inputs):
        x = inputs[0]
        fused = jit.kernels_for(x)
        if fused is not None:  # the same, reading x once
            y, mask = np.empty_like(x), np.empty(x.shape, dtype=bool)
            fused.relu(x, y, mask)
            return y, mask
        mask = x > 0
        # maximum, not x * mask: -inf * 0 would be NaN where ReLU(-inf) is 0 (NaN stays NaN)
        return ctx.xp.maximum(x, 0.0), mask

    def backward(self, ctx, mask, gout):
        fused = jit.kernels_for(gout, mask)
        if fused is None or gout.shape != mask.shape:
            return [gout * mask]
        g = np.empty_like(gout)
        fused.masked(gout, mask, g)
        return [g]


@register
class LeakyReLU(Layer):
    """x for x > 0, negative_slope·x otherwise (as torch.nn.functional.leaky_relu)."""

    type_name = "LeakyReLU"
    category = "Activations"
    doc = "x where x > 0, negative_slope·x elsewhere, element-wise."
    params_spec = {
        "negative_slope": Float(default=0.01, doc="slope for negative inputs"),
    }
    relu_family = True

    def forward(self, ctx, inputs):
        x = inputs[0]
        mask = x > 0
        return ctx.xp.where(mask, x, x * self.params["negative_slope"]), mask

    def backward(self, ctx, mask, gout):
        return [ctx.xp.where(mask, gout, gout * self.params["negative_slope"])]


@register
class ELU(Layer):
    """x for x > 0, alpha·(exp(x) - 1) otherwise (as torch.nn.functional.elu)."""

    type_name = "ELU"
    category = "Activations"
    doc = "x where x > 0, alpha·(exp(x) - 1) elsewhere, element-wise."
    params_spec = {
        "alpha": Float(default=1.0, doc="scale of the negative part: the output tends to -alpha"),
    }
    relu_family = True

    def forward(self, ctx, inputs):
        xp, x, alpha = ctx.xp, inputs[0], self.params["alpha"]
        # expm1 of min(x, 0): exact near 0 and never overflows for large positive x (whose
        # branch is discarded by the where anyway).
        neg = xp.expm1(xp.minimum(x, 0.0)) * alpha
        # Keep the input, not the output: alpha·exp(x) recovered as y + alpha loses the tail
        # (y + alpha rounds to 0 for x < -17 in float32) where PyTorch keeps it.
        return xp.where(x > 0, x, neg), x

    def backward(self, ctx, x, gout):
        # d/dx = 1 for x > 0, alpha·exp(x) otherwise (alpha at 0, as PyTorch).
        xp = ctx.xp
        slope = xp.exp(xp.minimum(x, 0.0)) * self.params["alpha"]
        return [xp.where(x > 0, gout, gout * slope)]


@register
class Sigmoid(Layer):
    """1 / (1 + exp(-x)), computed without overflow for any x."""

    type_name = "Sigmoid"
    category = "Activations"
    doc = "1 / (1 + exp(-x)), element-wise."

    def forward(self, ctx, inputs):
        xp, x = ctx.xp, inputs[0]
        # exp(-|x|) lies in (0, 1], so neither branch can overflow: 1 / (1 + e) for x >= 0,
        # e / (1 + e) = 1 / (1 + exp(-x)) for x < 0.
        e = xp.exp(-xp.abs(x))
        r = 1.0 / (1.0 + e)
        y = xp.where(x >= 0, r, e * r)
        return y, y

    def backward(self, ctx, y, gout):
        return [gout * y * (1.0 - y)]


@register
class Tanh(Layer):
    """Hyperbolic tangent; backward uses 1 - tanh(x)^2 from the output."""

    type_name = "Tanh"
    category = "Activations"
    doc = "tanh(x), element-wise."

    def forward(self, ctx, inputs):
        x = inputs[0]
        fused = jit.kernels_for(x)
        if fused is None:
            y = ctx.xp.tanh(x)
        else:  # vectorised float32 tanh (kernels.fused)
            y = np.empty_like(x)
            fused.tanh(x, y)
        return y, y

    def backward(self, ctx, y, gout):
        fused = jit.kernels_for(y, gout)
        if fused is None or gout.shape != y.shape:
            return [gout * (1.0 - y * y)]
        g = np.empty_like(y)
        fused.tanh_backward(y, gout, g)
        return [g]


@register
class Softmax(Layer):
    """exp(x) / sum(exp(x)) along one per-sample axis (-1: the last).

    ``axis`` counts per-sample axes, like Concat: 0 is the first axis after the batch axis.
    """

    type_name = "Softmax"
    category = "Activations"
    doc = ("exp(x) / sum(exp(x)) along a per-sample axis (-1: the last). For a classifier "
           "trained with CrossEntropyLoss, feed the loss the logits instead.")
    params_spec = {
        "axis": Int(default=-1, doc="per-sample axis to normalise over (-1: the last)"),
    }

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        axis = self.params["axis"]
        if not -len(s) <= axis < len(s):
            if not s:
                expected = "at least 1 axis"
            else:
                expected = f"an axis from {-len(s)} to {len(s) - 1}"
            raise self.shape_error(f"softmax over axis {axis}: expected {expected}, found "
                                   f"input of shape {fmt_shape(s)}")
        return s

    def _array_axis(self) -> int:
        # Arrays carry the batch axis first; negative axes already count from the end.
        axis = self.params["axis"]
        return axis + 1 if axis >= 0 else axis

    def forward(self, ctx, inputs):
        xp, x, ax = ctx.xp, inputs[0], self._array_axis()
        # Subtracting the max makes every exponent <= 0: no overflow, and the largest term is 1
        # so the sum is never 0.
        e = xp.exp(x - x.max(axis=ax, keepdims=True))
        y = e / e.sum(axis=ax, keepdims=True)
        return y, y

    def backward(self, ctx, y, gout):
        # Jacobian-vector product: y ⊙ (g - <g, y>) along the axis.
        ax = self._array_axis()
        return [y * (gout - (gout * y).sum(axis=ax, keepdims=True))]
