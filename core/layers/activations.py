"""Element-wise activations. Each keeps only what its backward needs (output or mask)."""
from __future__ import annotations

from core.layers.base import Layer, register


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
        mask = x > 0
        return x * mask, mask

    def backward(self, ctx, mask, gout):
        return [gout * mask]
