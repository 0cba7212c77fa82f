"""Losses: each takes pred and target (triplet: anchor, positive, negative) and gives the
mean over the batch as a 0-d array. Backward receives d(total)/d(loss), a scalar."""
from __future__ import annotations

from core.layers.base import Layer, fmt_shape, register


class Loss(Layer):
    category = "Losses"
    is_loss = True

    @classmethod
    def input_ports(cls, params):
        return ("pred", "target")


@register
class MSELoss(Loss):
    type_name = "MSELoss"
    doc = "Mean squared error, mean over every element (as torch.nn.MSELoss)."

    def infer(self, in_shapes):
        p, t = in_shapes.get("pred"), in_shapes.get("target")
        if p is not None and t is not None and p != t:
            raise self.shape_error(f"expected the shape of 'pred' {fmt_shape(p)}, "
                                   f"found {fmt_shape(t)}", port="target")
        return ()

    def forward(self, ctx, inputs):
        pred, target = inputs
        diff = pred - target.astype(pred.dtype, copy=False)
        return (diff * diff).mean(), diff

    def backward(self, ctx, diff, gout):
        g = diff * (2.0 * gout / diff.size)
        return [g.astype(diff.dtype, copy=False), -g]
