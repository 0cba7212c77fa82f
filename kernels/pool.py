"""2-D max and average pooling on NCHW arrays, with PyTorch's semantics.

Both loop over the kh*kw window offsets with strided slices of the padded input (never over
pixels and never materialising a [.., kh*kw] window copy), so memory stays O(output).
Padding is explicit, ``pads = ((top, bottom), (left, right))`` as in ``kernels.conv``.

- Max pooling pads with -inf, keeps the index of the first maximum in each window (ties go
  to the first, as PyTorch's CPU kernel) and backward sends the gradient only there. A NaN
  in a window wins, as in PyTorch, so divergence is never hidden by a max.
- Average pooling pads with zeros and always divides by kh*kw (``count_include_pad=True``,
  PyTorch's default).
"""
from __future__ import annotations

import numpy as np

from kernels import jit
from kernels.backend import array_module
from kernels.conv import Pads, conv2d_gemm, out_size, pad2d, unpad2d, window_slice


def _out_hw(x_shape, pool: tuple[int, int], stride: tuple[int, int], pads: Pads):
    _, _, h, w = x_shape
    (pt, pb), (pl, pr) = pads
    return (out_size(h, pool[0], stride[0], pt, pb), out_size(w, pool[1], stride[1], pl, pr))


def maxpool2d_forward(x, pool: tuple[int, int], stride: tuple[int, int], pads: Pads):
    """(y [N, C, Ho, Wo], idx [N, C, Ho, Wo]) for ``x`` [N, C, H, W].

    ``idx`` is the row-major offset ``i*kw + j`` of the chosen element inside its window;
    it is all ``maxpool2d_backward`` needs (with the input shape).
    """
    xp = array_module(x)
    kh, kw = pool
    ho, wo = _out_hw(x.shape, pool, stride, pads)
    # uint8 holds the offset of any window up to 16x16; a quarter of int32's memory.
    idx_dtype = xp.uint8 if kh * kw <= 256 else xp.int32
    fused = jit.kernels_for(x)
    if fused is not None and pool == (2, 2) and stride == (2, 2) and pads == ((0, 0), (0, 0)):
        n, c = x.shape[:2]
        y = xp.empty((n, c, ho, wo), dtype=x.dtype)
        idx = xp.empty((n, c, ho, wo), dtype=idx_dtype)
        if not fused.maxpool2x2(x, y, idx):  # else a NaN: the careful path below
            return y, idx
    xpad = pad2d(x, pads, value=-np.inf)
    views = [xpad[window_slice(k // kw, k % kw, ho, wo, stride)] for k in range(kh * kw)]
    if len(views) == 1:
        return views[0].copy(), xp.zeros(views[0].shape, dtype=idx_dtype)
    # The max is a chain of SIMD maximum passes; the index of the *first* maximum is then
    # idx = ne_0 * (1 + ne_1 * (1 + ne_2 * ...)) with ne_k = (view_k != max), all
    # element-wise: about 6x faster than a masked compare-and-copy per window offset.
    y = xp.maximum(views[0], views[1])
    for v in views[2:]:
        xp.maximum(y, v, out=y)
    if bool(xp.isnan(y).any()):  # NaN != NaN breaks the formula; take the careful path
        return _maxpool_with_nan(views, idx_dtype)
    idx = xp.zeros(y.shape, dtype=idx_dtype)
    for k in range(len(views) - 2, -1, -1):
        idx += 1
        idx *= xp.not_equal(views[k], y)
    return y, idx


def relu_maxpool2x2(x):
    """(y, idx) of a 2x2 max pool at stride 2 of ReLU(x), ``x`` [N, C, H, W], in one compiled
    pass (``kernels.fused.maxpool2x2`` with ``relu``): the values ReLU then
    ``maxpool2d_forward`` give, idx the first maximum of x itself. None where that kernel
    does not run (no compiled kernels for ``x``, or a NaN in a window): the caller then
    takes the two layers one after the other."""
    fused = jit.kernels_for(x)
    if fused is None:
        return None
    n, c, h, w = x.shape
    y = np.empty((n, c, h // 2, w // 2), dtype=x.dtype)
    idx = np.empty(y.shape, dtype=np.uint8)
    if fused.maxpool2x2(x, y, idx, True):
        return None
    return y, idx


def relu_maxpool2x2_backward(gy, idx, x_shape, y):
    """The gradient reaching ReLU's input through ``relu_maxpool2x2`` (y, idx its results):
    gy at each window's maximum where y > 0, zero elsewhere."""
    gx = _grad_buffer(x_shape, gy.dtype)
    jit.fused().maxpool2x2_backward(gy, idx, gx, y, True)
    return gx


def _grad_buffer(shape, dtype):
    """The input gradient of a 2x2 pool: ``maxpool2x2_backward`` writes every position its
    windows cover, so only a row or column left over (odd H or W) needs zeros first."""
    covered = shape[2] % 2 == 0 and shape[3] % 2 == 0
    return np.empty(shape, dtype=dtype) if covered else np.zeros(shape, dtype=dtype)


def conv_relu_maxpool2x2(x, W, b, stride: tuple[int, int], pads: Pads):
    """A convolution (``kernels.conv.conv2d_gemm``), its bias, ReLU and a 2x2 max pool at
    stride 2 with the compiled ``conv_relu_pool2x2``: (y [N, F, Ho//2, Wo//2], idx, cols,
    (Ho, Wo)), the values of the three layers one after the other, without the
    convolution's NCHW output. Where the kernel finds a NaN: (None, gemm, cols, (Ho, Wo)),
    gemm the GEMM's output, for the caller to go on layer by layer."""
    y2, cols, (ho, wo) = conv2d_gemm(x, W, stride, pads)
    n, f = x.shape[0], W.shape[0]
    out = np.empty((n, f, ho // 2, wo // 2), dtype=y2.dtype)
    idx = np.empty(out.shape, dtype=np.uint8)
    bias = y2[:0, 0] if b is None else b
    if jit.fused().conv_relu_pool2x2(y2.reshape(f, n, ho, wo), bias, out, idx):
        return None, y2, cols, (ho, wo)
    return out, idx, cols, (ho, wo)


def conv_relu_maxpool2x2_backward(gy, idx, y, f: int, ho: int, wo: int):
    """The gradient reaching the convolution's GEMM output through
    ``conv_relu_maxpool2x2`` (y, idx its results), in that GEMM's layout [F, N*Ho*Wo], for
    ``kernels.conv.conv2d_backward_gemm``: no move from NCHW."""
    n = gy.shape[0]
    g = _grad_buffer((f, n, ho, wo), gy.dtype)
    jit.fused().maxpool2x2_backward(gy, idx, g, y, True, True)
    return g.reshape(f, n * ho * wo)


def _maxpool_with_nan(views, idx_dtype):
    """Max and first-argmax over window views where a NaN wins, as in PyTorch."""
    xp = array_module(views[0])
    y = views[0].copy()
    idx = xp.zeros(y.shape, dtype=idx_dtype)
    for k, v in enumerate(views[1:], 1):
        # Strict '>' keeps the first of equal maxima; isnan lets a NaN through (PyTorch's
        # CPU kernel tests `val > max || isnan(val)` the same way).
        better = (v > y) | xp.isnan(v)
        xp.copyto(y, v, where=better)
        xp.copyto(idx, k, where=better)
    return y, idx


def maxpool2d_backward(gy, idx, x_shape, pool: tuple[int, int], stride: tuple[int, int],
                       pads: Pads):
    """gx [N, C, H, W]: each ``gy`` [N, C, Ho, Wo] entry added at its window's argmax."""
    xp = array_module(gy)
    n, c, h, w = x_shape
    kh, kw = pool
    ho, wo = gy.shape[2:]
    (pt, pb), (pl, pr) = pads
    fused = jit.kernels_for(gy, idx)
    if fused is not None and pool == (2, 2) and stride == (2, 2) \
            and pads == ((0, 0), (0, 0)):
        gx = _grad_buffer(x_shape, gy.dtype)  # every position its windows cover written once
        fused.maxpool2x2_backward(gy, idx, gx, gy)
        return gx
    if fused is not None:  # each gradient added once, at its window's maximum
        gx = xp.zeros(x_shape, dtype=gy.dtype)
        fused.maxpool_backward(gy, idx, gx, kh, kw, stride[0], stride[1], pt, pl)
        return gx
    gpad = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=gy.dtype)
    for k in range(kh * kw):
        # A slice-add per offset also handles overlapping windows (stride < pool).
        gpad[window_slice(k // kw, k % kw, ho, wo, stride)] += gy * (idx == k)
    return unpad2d(gpad, pads, h, w)


def avgpool2d_forward(x, pool: tuple[int, int], stride: tuple[int, int], pads: Pads):
    """y [N, C, Ho, Wo]: window means of ``x`` [N, C, H, W], padding counted as zeros."""
    kh, kw = pool
    ho, wo = _out_hw(x.shape, pool, stride, pads)
    xpad = pad2d(x, pads)
    y = xpad[window_slice(0, 0, ho, wo, stride)].copy()
    for k in range(1, kh * kw):
        y += xpad[window_slice(k // kw, k % kw, ho, wo, stride)]
    y *= 1.0 / (kh * kw)  # a Python float keeps float32 as float32
    return y


def avgpool2d_backward(gy, x_shape, pool: tuple[int, int], stride: tuple[int, int],
                       pads: Pads):
    """gx [N, C, H, W]: each ``gy`` [N, C, Ho, Wo] entry spread evenly over its window."""
    xp = array_module(gy)
    n, c, h, w = x_shape
    kh, kw = pool
    ho, wo = gy.shape[2:]
    (pt, pb), (pl, pr) = pads
    g = gy * (1.0 / (kh * kw))
    gpad = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=gy.dtype)
    for k in range(kh * kw):
        gpad[window_slice(k // kw, k % kw, ho, wo, stride)] += g
    return unpad2d(gpad, pads, h, w)
