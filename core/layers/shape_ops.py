"""Flatten and Reshape: new per-sample shapes for the same elements (the batch axis stays)."""
from __future__ import annotations

import math

from core.layers.base import Layer, fmt_shape, register
from core.params import Shape


@register
class Flatten(Layer):
    type_name = "Flatten"
    category = "Core"
    doc = "All axes of a sample in one, row-major (as torch.flatten(x, 1)): [C, H, W] -> [C*H*W]."

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        return (math.prod(s),)

    def forward(self, ctx, inputs):
        x = inputs[0]
        # Explicit sizes rather than -1, which is ambiguous for an empty batch.
        return x.reshape(x.shape[0], math.prod(x.shape[1:])), x.shape

    def backward(self, ctx, x_shape, gout):
        return [gout.reshape(x_shape)]


@register
class Reshape(Layer):
    type_name = "Reshape"
    starter_params = {"shape": [-1]}
    category = "Core"
    doc = ("The same elements in a new per-sample shape, row-major (as torch.reshape); "
           "one entry may be -1 to infer it, e.g. [784] -> [1, 28, 28] or [-1, 7].")
    params_spec = {
        "shape": Shape(allow_infer=True, doc="new per-sample shape; one entry may be -1"),
    }

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        target = tuple(self.params["shape"])
        count = math.prod(s)
        known = math.prod(d for d in target if d != -1)  # entries are positive or -1
        if -1 in target:
            if count % known:
                raise self.shape_error(
                    f"cannot reshape {fmt_shape(s)} ({count} elements) to {fmt_shape(target)}: "
                    f"{count} is not a multiple of {known}")
            return tuple(count // known if d == -1 else d for d in target)
        if known != count:
            raise self.shape_error(
                f"cannot reshape {fmt_shape(s)} ({count} elements) to {fmt_shape(target)} "
                f"({known} elements); expected a shape with {count} elements")
        return target

    def forward(self, ctx, inputs):
        x = inputs[0]
        out = self.infer({"in": tuple(x.shape[1:])})
        return x.reshape((x.shape[0],) + out), x.shape

    def backward(self, ctx, x_shape, gout):
        return [gout.reshape(x_shape)]
