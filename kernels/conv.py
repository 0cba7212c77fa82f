"""2-D convolution on NCHW arrays: im2col + one GEMM forward, two GEMMs + col2im backward.

Written against an array module ``xp`` (``kernels.backend.array_module``) so the same code
runs on NumPy and, with CuPy's ``as_strided``, on the GPU.

Padding is always explicit here, as ``pads = ((top, bottom), (left, right))``; the layer
turns ``"valid"`` / ``"same"`` / integers into that with ``same_padding`` and friends.

The column matrix has shape ``[C*kh*kw, N*Ho*Wo]``: its rows are in the order of
``W.reshape(F, C*kh*kw)``'s columns, so the forward is ``W2 @ cols`` and both backward
products are plain GEMMs too (Caffe / Chainer layout). Putting the output pixels last makes
the im2col copy read the input along its rows (contiguous for stride 1).
"""
from __future__ import annotations

from kernels import jit
from kernels.backend import array_module

Pads = tuple[tuple[int, int], tuple[int, int]]


def out_size(size: int, k: int, stride: int, pad_lo: int, pad_hi: int) -> int:
    """Number of window positions along one axis (floor mode, like PyTorch); may be <= 0."""
    return (size + pad_lo + pad_hi - k) // stride + 1


def same_padding(size: int, k: int, stride: int) -> tuple[int, int]:
    """(lo, hi) padding giving ``ceil(size / stride)`` outputs along one axis.

    For stride 1 that is PyTorch's ``padding='same'`` (total ``k - 1``, the odd one extra at
    the bottom / right); for larger strides it is TensorFlow / Keras ``'same'``. Both split
    the total as ``lo = total // 2``.
    """
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def pad2d(x, pads: Pads, value: float = 0.0):
    """``x`` [N, C, H, W] padded on its last two axes with ``value`` (no copy without pads)."""
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return x
    xp = array_module(x)
    n, c, h, w = x.shape
    # Allocate-and-assign is much cheaper than np.pad's general machinery.
    out = xp.full((n, c, h + pt + pb, w + pl + pr), value, dtype=x.dtype)
    out[:, :, pt:pt + h, pl:pl + w] = x
    return out


def unpad2d(x, pads: Pads, h: int, w: int):
    """The [N, C, h, w] interior of a padded array (a view)."""
    (pt, _), (pl, _) = pads
    return x[:, :, pt:pt + h, pl:pl + w]


def window_slice(i: int, j: int, ho: int, wo: int, stride: tuple[int, int]):
    """Index of the [N, C, Ho, Wo] block of a padded input that kernel offset (i, j) sees."""
    sh, sw = stride
    return (slice(None), slice(None), slice(i, i + sh * (ho - 1) + 1, sh),
            slice(j, j + sw * (wo - 1) + 1, sw))


def im2col(x, kh: int, kw: int, stride: tuple[int, int], pads: Pads):
    """Columns of ``x`` [N, C, H, W]: an array [C*kh*kw, N*Ho*Wo] and (Ho, Wo).

    Entry ``[(c, i, j), (n, y, x)]`` is ``xpad[n, c, y*sh + i, x*sw + j]``. Built as one
    strided view of the padded input and one copy, with no Python loop.
    """
    xp = array_module(x)
    n, c, h, w = x.shape
    sh, sw = stride
    (pt, pb), (pl, pr) = pads
    ho, wo = out_size(h, kh, sh, pt, pb), out_size(w, kw, sw, pl, pr)
    xpad = pad2d(x, pads)
    s_n, s_c, s_h, s_w = xpad.strides
    view = xp.lib.stride_tricks.as_strided(
        xpad, shape=(c, kh, kw, n, ho, wo),
        strides=(s_c, s_h, s_w, s_n, s_h * sh, s_w * sw))
    cols = xp.ascontiguousarray(view).reshape(c * kh * kw, n * ho * wo)
    return cols, (ho, wo)


def col2im(cols, x_shape: tuple[int, int, int, int], kh: int, kw: int,
           stride: tuple[int, int], pads: Pads):
    """The adjoint of ``im2col``: columns [C*kh*kw, N*Ho*Wo] summed back into [N, C, H, W].

    One strided slice-add per kernel offset (kh*kw of them), none per pixel; overlapping
    windows add up.
    """
    xp = array_module(cols)
    n, c, h, w = x_shape
    (pt, pb), (pl, pr) = pads
    ho = out_size(h, kh, stride[0], pt, pb)
    wo = out_size(w, kw, stride[1], pl, pr)
    cols6 = cols.reshape(c, kh, kw, n, ho, wo)
    fused = jit.kernels_for(cols6)
    if fused is not None:  # the same sums, without the padded buffer and its copy
        out = xp.zeros(x_shape, dtype=cols.dtype)
        fused.col2im(cols6, out, kh, kw, stride[0], stride[1], pt, pl)
        return out
    gpad = xp.zeros((n, c, h + pt + pb, w + pl + pr), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            # cols6[:, i, j] is [C, N, Ho, Wo] with contiguous Ho*Wo blocks.
            gpad[window_slice(i, j, ho, wo, stride)] += cols6[:, i, j].transpose(1, 0, 2, 3)
    return unpad2d(gpad, pads, h, w)


def conv2d_gemm(x, W, stride: tuple[int, int], pads: Pads):
    """(y [F, N*Ho*Wo], cols, (Ho, Wo)): the forward's one GEMM [F, CKK] @ [CKK, N*Ho*Wo]
    on the im2col matrix ``cols`` of ``x``, before its bias and the move to NCHW."""
    f, _, kh, kw = W.shape
    cols, (ho, wo) = im2col(x, kh, kw, stride, pads)
    return W.reshape(f, -1) @ cols, cols, (ho, wo)


def conv2d_forward(x, W, b, stride: tuple[int, int], pads: Pads):
    """y [N, F, Ho, Wo] = conv(x [N, C, H, W], W [F, C, kh, kw]) + b [F] (b may be None).

    Returns (y, cols); ``cols`` (the im2col matrix) is what ``conv2d_backward`` needs.
    """
    y, cols, (ho, wo) = conv2d_gemm(x, W, stride, pads)
    return gemm_to_nchw(y, b, x.shape[0], ho, wo), cols


def gemm_to_nchw(y, b, n: int, ho: int, wo: int):
    """The convolution's output [N, F, Ho, Wo] from its GEMM's y [F, N*Ho*Wo] and bias b."""
    xp = array_module(y)
    f = y.shape[0]
    fused = jit.kernels_for(y, *(() if b is None else (b,)))
    if fused is not None:  # bias and the move to NCHW in one pass
        out = xp.empty((n, f, ho, wo), dtype=y.dtype)
        fused.bias_nchw(y.reshape(f, n, ho * wo), y[:0, 0] if b is None else b,
                        out.reshape(n, f, ho * wo))
        return out
    if b is not None:
        y += b[:, None]
    return xp.ascontiguousarray(y.reshape(f, n, ho, wo).transpose(1, 0, 2, 3))


def conv2d_backward(gy, cols, W, x_shape: tuple[int, int, int, int], stride: tuple[int, int],
                    pads: Pads, need_bias: bool, need_input: bool = True):
    """Gradients (gx [N, C, H, W], gW [F, C, kh, kw], gb [F] or None) for ``gy`` [N, F, Ho, Wo].

    ``cols`` is the im2col matrix saved by ``conv2d_forward``. ``gx`` is None without
    ``need_input`` (a first layer fed by data skips the GEMM and col2im).
    """
    f = W.shape[0]
    gy2 = gy.transpose(1, 0, 2, 3).reshape(f, -1)  # [F, N*Ho*Wo] (one copy)
    return conv2d_backward_gemm(gy2, cols, W, x_shape, stride, pads, need_bias, need_input)


def conv2d_backward_gemm(gy2, cols, W, x_shape: tuple[int, int, int, int],
                         stride: tuple[int, int], pads: Pads, need_bias: bool,
                         need_input: bool = True):
    """``conv2d_backward`` from the output gradient in the GEMM's layout, gy2
    [F, N*Ho*Wo] (``conv2d_gemm``'s y)."""
    f, _, kh, kw = W.shape
    gW = (gy2 @ cols.T).reshape(W.shape)  # BLAS takes cols.T without copying it
    # the bias gradient as a GEMV: BLAS's row sums, 3-7x faster than NumPy's sum here
    gb = gy2 @ array_module(gy2).ones((gy2.shape[1],), dtype=gy2.dtype) if need_bias else None
    if not need_input:
        return None, gW, gb
    gcols = W.reshape(f, -1).T @ gy2  # [CKK, N*Ho*Wo]
    gx = col2im(gcols, x_shape, kh, kw, stride, pads)
    return gx, gW, gb
