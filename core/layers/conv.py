"""Conv2D: 2-D convolution of [C, H, W] images (im2col + one GEMM, in kernels.conv)."""
from __future__ import annotations

import numpy as np

from core.layers.base import Layer, fmt_shape, init_weight, register
from core.params import Bool, Int, IntPair, Padding
from kernels import conv as K


def resolve_padding(padding, size_hw: tuple[int, int], kernel: tuple[int, int],
                    stride: tuple[int, int]) -> K.Pads:
    """``"valid"`` / ``"same"`` / (ph, pw) as explicit ((top, bottom), (left, right)) pads.

    ``"same"`` gives ``ceil(size / stride)`` outputs; see ``kernels.conv.same_padding``.
    """
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        return (K.same_padding(size_hw[0], kernel[0], stride[0]),
                K.same_padding(size_hw[1], kernel[1], stride[1]))
    ph, pw = padding
    return (ph, ph), (pw, pw)


def fmt_hw(hw: tuple[int, int]) -> str:
    """(h, w) as "hxw", the way kernel and image sizes read in messages."""
    return f"{hw[0]}x{hw[1]}"


@register
class Conv2D(Layer):
    type_name = "Conv2D"
    starter_params = {"filters": 16, "kernel_size": 3}
    category = "Convolution"
    doc = ("2-D convolution (cross-correlation, as PyTorch) of [C, H, W] images: "
           "W [filters, C, kh, kw], output [filters, H', W']. 'same' padding keeps "
           "ceil(H / stride) rows (extra padding at the bottom / right).")
    params_spec = {
        "filters": Int(min=1, doc="number of output channels"),
        "kernel_size": IntPair(doc="kernel height and width (one integer for a square)"),
        "stride": IntPair(default=(1, 1), doc="step between windows, [h, w] or one integer"),
        "padding": Padding(default="valid",
                           doc="'valid' (none), 'same', or zeros added on each side"),
        "bias": Bool(default=True, doc="add a learned bias b per filter"),
    }
    param_names = ("W", "b")  # b only with bias=True

    def _pads(self, h: int, w: int) -> K.Pads:
        p = self.params
        return resolve_padding(p["padding"], (h, w), p["kernel_size"], p["stride"])

    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if len(s) != 3:
            raise self.shape_error(
                f"expected an image [C, H, W] (channels, height, width), found {fmt_shape(s)}")
        _, h, w = s
        kh, kw = self.params["kernel_size"]
        sh, sw = self.params["stride"]
        (pt, pb), (pl, pr) = self._pads(h, w)
        hp, wp = h + pt + pb, w + pl + pr
        if kh > hp or kw > wp:
            pad_note = "" if (hp, wp) == (h, w) else f" (padded to {fmt_hw((hp, wp))})"
            raise self.shape_error(
                f"expected a kernel_size of at most {fmt_hw((hp, wp))}, found "
                f"{fmt_hw((kh, kw))}: it does not fit in the {fmt_hw((h, w))} image of "
                f"input {fmt_shape(s)}{pad_note}")
        return (self.params["filters"], K.out_size(h, kh, sh, pt, pb),
                K.out_size(w, kw, sw, pl, pr))

    def param_shapes(self):
        c = self.in_shapes["in"][0]
        f = self.params["filters"]
        kh, kw = self.params["kernel_size"]
        shapes = {"W": (f, c, kh, kw)}
        if self.params["bias"]:
            shapes["b"] = (f,)
        return shapes

    def init_params(self, rng, he):
        shapes = self.param_shapes()
        f, c, kh, kw = shapes["W"]
        out = {"W": init_weight(rng, shapes["W"], c * kh * kw, f * kh * kw, he)}
        if "b" in shapes:
            out["b"] = np.zeros(shapes["b"])
        return out

    def macs(self, in_shapes, out_shape):
        """out_h x out_w x filters x kh x kw x C (bias adds not counted)."""
        f, ho, wo = out_shape
        kh, kw = self.params["kernel_size"]
        return int(f) * int(ho) * int(wo) * int(kh) * int(kw) * int(in_shapes["in"][0])

    def forward(self, ctx, inputs):
        x = inputs[0]
        pads = self._pads(*x.shape[2:])
        y, cols = K.conv2d_forward(x, self.P["W"], self.P.get("b"), self.params["stride"], pads)
        return y, (cols, x.shape, pads)

    def backward(self, ctx, cache, gout):
        f = self.P["W"].shape[0]
        return self.backward_gemm(cache, gout.transpose(1, 0, 2, 3).reshape(f, -1))

    def backward_gemm(self, cache, gy2):
        """``backward`` from the output gradient in the GEMM's layout [F, N*Ho*Wo] (what a
        fused ``ConvReluMaxPool`` hands over, without the move from NCHW)."""
        cols, x_shape, pads = cache
        gx, gW, gb = K.conv2d_backward_gemm(gy2, cols, self.P["W"], x_shape,
                                            self.params["stride"], pads, "b" in self.P,
                                            need_input=self.wants_grad(0))
        self.accumulate("W", gW)
        if gb is not None:
            self.accumulate("b", gb)
        return [gx]
