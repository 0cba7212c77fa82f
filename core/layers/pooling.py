"""Pooling of [C, H, W] images: MaxPool2D, AvgPool2D (kernels.pool) and GlobalAvgPool2D."""
from __future__ import annotations

from core.errors import ParamError
from core.layers.base import Layer, fmt_shape, register
from core.params import IntPair
from kernels import pool as K
from kernels.conv import Pads, out_size

_IMAGE = "an image [C, H, W] (channels, height, width)"


class _Pool2D(Layer):
    """Windowed pooling with PyTorch's parameters and output size (floor mode)."""

    category = "Convolution"
    params_spec = {
        "pool_size": IntPair(default=(2, 2), doc="window height and width"),
        "stride": IntPair(default=None,
                          doc="step between windows (default: the pool size, no overlap)"),
        "padding": IntPair(min=0, default=(0, 0),
                           doc="cells added on each side (at most half the pool size)"),
    }

    def _geometry(self) -> tuple[tuple[int, int], tuple[int, int], Pads]:
        pool = self.params["pool_size"]
        stride = self.params["stride"] or pool
        ph, pw = self.params["padding"]
        return pool, stride, ((ph, ph), (pw, pw))

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if len(s) != 3:
            raise self.shape_error(f"expected {_IMAGE}, found {fmt_shape(s)}")
        (kh, kw), (sh, sw), ((ph, _), (pw, _)) = self._geometry()
        # PyTorch's rule: a window must never lie entirely in the padding.
        if ph > kh // 2 or pw > kw // 2:
            raise ParamError(f"expected at most half the pool size {kh}x{kw} "
                             f"({kh // 2}x{kw // 2}), found {ph}x{pw}",
                             node=self.id, param="padding")
        c, h, w = s
        ho, wo = out_size(h, kh, sh, ph, ph), out_size(w, kw, sw, pw, pw)
        if ho < 1 or wo < 1:
            raise self.shape_error(
                f"expected an image of at least {kh - 2 * ph}x{kw - 2 * pw} for the "
                f"{kh}x{kw} pool window, found {fmt_shape(s)}")
        return (c, ho, wo)


@register
class MaxPool2D(_Pool2D):
    type_name = "MaxPool2D"
    doc = ("Maximum over each pool_size window of [C, H, W] images; the gradient goes to "
           "the (first) maximum. Padding counts as -inf.")

    def forward(self, ctx, inputs):
        x = inputs[0]
        pool, stride, pads = self._geometry()
        y, idx = K.maxpool2d_forward(x, pool, stride, pads)
        return y, (idx, x.shape)

    def backward(self, ctx, cache, gout):
        idx, x_shape = cache
        pool, stride, pads = self._geometry()
        return [K.maxpool2d_backward(gout, idx, x_shape, pool, stride, pads)]


@register
class AvgPool2D(_Pool2D):
    type_name = "AvgPool2D"
    doc = ("Mean over each pool_size window of [C, H, W] images. Padding counts as zeros "
           "in the mean (PyTorch's count_include_pad).")

    def forward(self, ctx, inputs):
        x = inputs[0]
        pool, stride, pads = self._geometry()
        return K.avgpool2d_forward(x, pool, stride, pads), x.shape

    def backward(self, ctx, x_shape, gout):
        pool, stride, pads = self._geometry()
        return [K.avgpool2d_backward(gout, x_shape, pool, stride, pads)]


@register
class GlobalAvgPool2D(Layer):
    type_name = "GlobalAvgPool2D"
    category = "Convolution"
    doc = "Mean of each channel over the whole image: [C, H, W] -> [C]."

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if len(s) != 3:
            raise self.shape_error(f"expected {_IMAGE}, found {fmt_shape(s)}")
        return (s[0],)

    def forward(self, ctx, inputs):
        x = inputs[0]
        return x.mean(axis=(2, 3)), x.shape

    def backward(self, ctx, x_shape, gout):
        xp = ctx.xp
        h, w = x_shape[2:]
        # A real array, not a broadcast view: callers may add into gradients in place.
        gx = xp.empty(x_shape, dtype=gout.dtype)
        gx[...] = (gout * (1.0 / (h * w)))[:, :, None, None]
        return [gx]
