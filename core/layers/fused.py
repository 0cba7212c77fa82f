"""Layers the network runs in place of a chain of nodes (``core.plan.fuse_relu_pool``): not
node types of their own, never in the catalogue, on the same layer instances as the nodes
they stand for (so parameters and gradients stay the nodes').

Fusing saves whole passes over the largest activations of a CNN: the output of a
convolution and of the ReLU after it are never made in NCHW when a 2x2 max pool follows.
Only the compiled kernels (``kernels.fused``) fuse; without them, or where a NaN turns up,
each layer runs one after the other inside the call, with the same results.
"""
from __future__ import annotations

from core.layers.activations import ReLU
from core.layers.base import Layer
from core.layers.conv import Conv2D
from core.layers.pooling import MaxPool2D
from kernels import conv as C
from kernels import jit
from kernels import pool as K


class ReluMaxPool(Layer):
    """A ReLU node and the 2x2 MaxPool2D node that is its only consumer, run as one call
    (``core.plan.fuse_relu_pool``).

    The pool of ReLU(x) is ReLU of the pool of x, so one compiled pass over x gives the
    pooled values, and backward sends each window's gradient to its maximum where the
    output is positive: the same numbers as the two layers (up to the sign of zeros), in
    one pass each way instead of three (ReLU's output, its mask and the pool's reads of it
    are never made). Without the compiled kernels, or with a NaN in the input, it runs the
    two layers one after the other."""

    type_name = "ReluMaxPool"

    def __init__(self, relu: Layer, pool: MaxPool2D):
        super().__init__(pool.id, pool.params)
        self.relu, self.pool = relu, pool
        self.in_shapes, self.out_shape = relu.in_shapes, pool.out_shape

    def wants_grad(self, i: int) -> bool:
        return self.relu.wants_grad(i)

    @staticmethod
    def pairs(relu: Layer, pool: Layer) -> bool:
        """Can ``relu`` and ``pool`` run as one: a ReLU and a MaxPool2D of 2x2 windows at
        stride 2 without padding?"""
        if not isinstance(relu, ReLU) or not isinstance(pool, MaxPool2D):
            return False
        window, stride, pads = pool._geometry()
        return window == (2, 2) and stride == (2, 2) and pads == ((0, 0), (0, 0))

    def forward(self, ctx, inputs):
        x = inputs[0]
        done = K.relu_maxpool2x2(x)
        if done is not None:
            y, idx = done
            return y, (True, idx, x.shape, y)
        r, relu_cache = self.relu.forward(ctx, [x])
        y, pool_cache = self.pool.forward(ctx, [r])
        return y, (False, relu_cache, pool_cache)

    def backward(self, ctx, cache, gout):
        if not cache[0]:
            _, relu_cache, pool_cache = cache
            (g,) = self.pool.backward(ctx, pool_cache, gout)
            return self.relu.backward(ctx, relu_cache, g)
        _, idx, x_shape, y = cache
        if not self.wants_grad(0):
            return [None]
        return [K.relu_maxpool2x2_backward(gout, idx, x_shape, y)]


class ConvReluMaxPool(Layer):
    """A Conv2D node, the ReLU that is its only consumer and the 2x2 MaxPool2D that is the
    ReLU's, run as one call: the convolution's GEMM, then one compiled pass from its output
    [F, N, Ho, Wo] (bias, ReLU, pool) straight to the pooled [N, F, Ho/2, Wo/2]. Backward
    writes the gradient straight into the GEMM's layout. The same numbers as the three
    layers (up to the sign of zeros); the convolution's and the ReLU's outputs are never
    made, nor the move of either from one layout to the other."""

    type_name = "ConvReluMaxPool"

    def __init__(self, conv: Conv2D, relu: Layer, pool: MaxPool2D):
        super().__init__(pool.id, pool.params)
        self.conv, self.relu, self.pool = conv, relu, pool
        self.in_shapes, self.out_shape = conv.in_shapes, pool.out_shape

    @staticmethod
    def leads(conv: Layer) -> bool:
        """Can ``conv`` open the chain (before a ReLU and pool that ``ReluMaxPool.pairs``)?"""
        return isinstance(conv, Conv2D)

    def wants_grad(self, i: int) -> bool:
        return self.conv.wants_grad(i)

    def _layers(self, ctx, x, conv_out=None):
        """The three layers one after the other (``conv_out``: the convolution's output
        and cache, when its product is already taken)."""
        y, conv_cache = conv_out or self.conv.forward(ctx, [x])
        r, relu_cache = self.relu.forward(ctx, [y])
        out, pool_cache = self.pool.forward(ctx, [r])
        return out, (False, conv_cache, relu_cache, pool_cache)

    def forward(self, ctx, inputs):
        x = inputs[0]
        conv = self.conv
        W, b = conv.P["W"], conv.P.get("b")
        if jit.kernels_for(x, W) is None:
            return self._layers(ctx, x)
        pads = conv._pads(*x.shape[2:])
        out, idx, cols, (ho, wo) = K.conv_relu_maxpool2x2(x, W, b, conv.params["stride"], pads)
        if out is None:  # a NaN: idx is the GEMM's output, go on layer by layer
            y = C.gemm_to_nchw(idx, b, x.shape[0], ho, wo)
            return self._layers(ctx, x, (y, (cols, x.shape, pads)))
        return out, (True, (cols, x.shape, pads), idx, out, (ho, wo))

    def backward(self, ctx, cache, gout):
        if not cache[0]:
            _, conv_cache, relu_cache, pool_cache = cache
            (g,) = self.pool.backward(ctx, pool_cache, gout)
            (g,) = self.relu.backward(ctx, relu_cache, g)
            return self.conv.backward(ctx, conv_cache, g)
        _, conv_cache, idx, out, (ho, wo) = cache
        f = self.conv.P["W"].shape[0]
        gy2 = K.conv_relu_maxpool2x2_backward(gout, idx, out, f, ho, wo)
        return self.conv.backward_gemm(conv_cache, gy2)
