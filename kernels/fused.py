"""Compiled CPU kernels (numba): one loop where NumPy makes several passes.

Imported only through ``kernels.jit.fused()``, which checks that numba is there; the callers
(layers, optimizers, ``kernels.conv`` / ``kernels.pool``) hand over C-contiguous float32
NumPy arrays (``kernels.jit.usable``) and keep their NumPy code for everything else.

Every kernel computes what its NumPy counterpart computes, with the same operations in the
same order and the same float32 constants, so its results are bit-identical to NumPy's
(``tests/test_fused_kernels.py``; a NaN *gradient* in max-pool backward stays at the
window's maximum, where NumPy's NaN·0 spreads it), with one exception: ``tanh``. NumPy's
float32 tanh is a scalar libm call per element; here it is the rational function
``x·P(x²)/Q(x²)`` on [-9, 9] (tanh(9) rounds to 1 in float32), fitted for this project by
iteratively reweighted least squares on the relative error (absolute error under 3.5e-7 in
float32, against 6e-8 for NumPy's), which the compiler vectorises. Sigmoid gates use it as
``0.5·tanh(x/2) + 0.5``, the form the NumPy recurrent layers use too.

Loops run on one thread each: NumPy's element-wise code is single-threaded as well, and the
two cores are OpenBLAS's during the GEMMs between the kernels.
"""
from __future__ import annotations

import numpy as np

from kernels.jit import njit

_f = np.float32
# tanh(x) ~ x * P(x^2) / Q(x^2) for |x| <= 9
_P0, _P1, _P2, _P3 = _f(0.9999999994180985), _f(0.13104653670280386), \
    _f(0.0031269963272676916), _f(1.1394825805419923e-05)
_P4, _P5, _P6 = _f(-2.11984038019315e-08), _f(5.7452573563094114e-11), \
    _f(-9.685703646451155e-14)
_Q1, _Q2, _Q3 = _f(0.4643798536705233), _f(0.024586982535639), _f(0.0002579667820918829)
_LIM, _SAT = _f(9.0), _f(9.011)
_ONE, _HALF, _ZERO = _f(1.0), _f(0.5), _f(0.0)


@njit(inline="always")
def _tanh(x):
    # comparisons, not min/max: a NaN goes through every branch and comes out NaN
    u = _LIM if x > _LIM else x
    u = -_LIM if u < -_LIM else u
    s = u * u
    p = (((((_P6 * s + _P5) * s + _P4) * s + _P3) * s + _P2) * s + _P1) * s + _P0
    q = ((_Q3 * s + _Q2) * s + _Q1) * s + _ONE
    y = u * p / q
    y = _ONE if y > _ONE else y
    y = -_ONE if y < -_ONE else y
    # beyond 9.01 float32 tanh rounds to exactly +-1 (a saturated unit has no gradient)
    y = _ONE if x > _SAT else y
    return -_ONE if x < -_SAT else y


@njit(inline="always")
def _sigmoid_half(a):
    """sigmoid(2a) as 0.5·tanh(a) + 0.5 (the recurrent layers pre-scale by 0.5)."""
    return _HALF * _tanh(a) + _HALF


# ---- element-wise ---------------------------------------------------------------------------
@njit
def tanh(x, out):
    """out = tanh(x), both C-contiguous float32 of one shape (out may be x)."""
    xf, of = x.reshape(-1), out.reshape(-1)
    for k in range(xf.size):
        of[k] = _tanh(xf[k])


@njit
def relu(x, y, mask):
    """y = maximum(x, 0) (NaN stays NaN, -0 gives +0, as NumPy's) and mask = x > 0, in one
    pass over x (NumPy reads it twice)."""
    xf, yf, mf = x.reshape(-1), y.reshape(-1), mask.reshape(-1)
    for k in range(xf.size):
        v = xf[k]
        pos = v > _ZERO
        mf[k] = pos
        yf[k] = v if (pos or v != v) else _ZERO


@njit
def tanh_backward(y, g, out):
    """out = g · (1 - y·y): the gradient of tanh from its output y."""
    yf, gf, of = y.reshape(-1), g.reshape(-1), out.reshape(-1)
    for k in range(yf.size):
        v = yf[k]
        of[k] = gf[k] * (_ONE - v * v)


# ---- recurrent cells, one call per time step -------------------------------------------------
@njit
def lstm_step(a, c_prev, c, tc, h, first):
    """One LSTM step after the recurrent GEMM (as ``core.layers.recurrent.LSTM.forward``).

    a [4, B, H]: pre-activations in the order i, f, o, g, the sigmoid gates pre-scaled by 0.5;
    replaced by the activated gates. c = f·c_prev + i·g (i·g at the first step), tc = tanh(c),
    h = o·tc.
    """
    _, nb, nh = a.shape
    for b in range(nb):
        for j in range(nh):
            i = _sigmoid_half(a[0, b, j])
            f = _sigmoid_half(a[1, b, j])
            o = _sigmoid_half(a[2, b, j])
            g = _tanh(a[3, b, j])
            a[0, b, j] = i
            a[1, b, j] = f
            a[2, b, j] = o
            a[3, b, j] = g
            cv = i * g if first else f * c_prev[b, j] + i * g
            c[b, j] = cv
            t = _tanh(cv)
            tc[b, j] = t
            h[b, j] = o * t


@njit(inline="always")
def _lstm_back(a, tc, c_prev, hv, dc, d, first, b, j):
    """One element of an LSTM backward step, for the gradient hv reaching h_t[b, j]."""
    i = a[0, b, j]
    f = a[1, b, j]
    o = a[2, b, j]
    g = a[3, b, j]
    t = tc[b, j]
    cv = dc[b, j] + (_ONE - t * t) * o * hv
    d[0, b, j] = (cv * g) * ((_ONE - i) * i)
    if first:
        d[1, b, j] = _ZERO
    else:
        d[1, b, j] = (cv * c_prev[b, j]) * ((_ONE - f) * f)
    d[2, b, j] = (hv * t) * ((_ONE - o) * o)
    d[3, b, j] = (_ONE - g * g) * i * cv
    dc[b, j] = cv if first else cv * f


@njit
def lstm_step_backward(a, tc, c_prev, dh, dc, d, first):
    """One LSTM backward step (as ``LSTM.backward``), before the recurrent GEMM; returns the
    squared norm of dh, summed in float64 (the state-gradient norm of step t).

    a [4, B, H] the activated gates i, f, o, g; tc = tanh(c_t); dh the gradient reaching h_t;
    dc the one reaching c_t from later steps, updated in place to the one reaching c_{t-1}
    (times f; left as is at the first step). d [4, B, H] gets the gradients of the gate
    pre-activations (i, f, o, g order; zero for f at the first step).
    """
    _, nb, nh = a.shape
    sq = 0.0
    for b in range(nb):
        for j in range(nh):
            hv = dh[b, j]
            sq += np.float64(hv) * np.float64(hv)
            _lstm_back(a, tc, c_prev, hv, dc, d, first, b, j)
    return sq


@njit
def lstm_step_backward_parts(a, tc, c_prev, parts, dc, d, first):
    """``lstm_step_backward`` with dh = the sum of parts [4, B, H] over its first axis (the
    recurrent GEMM's per-gate products, added in the order of ``_sum_gates``), where nothing
    else reaches h_t (no lengths, no output at every step)."""
    _, nb, nh = a.shape
    sq = 0.0
    for b in range(nb):
        for j in range(nh):
            hv = ((parts[0, b, j] + parts[1, b, j]) + parts[2, b, j]) + parts[3, b, j]
            sq += np.float64(hv) * np.float64(hv)
            _lstm_back(a, tc, c_prev, hv, dc, d, first, b, j)
    return sq


@njit
def gru_step(a, hn, h_prev, h, first):
    """One GRU step after the recurrent GEMM (as ``core.layers.recurrent.GRU.forward``).

    a [3, B, H]: r and z pre-activations (pre-scaled by 0.5, the recurrent part added) and the
    input part of n; replaced by r, z, n. hn = h_{t-1}·W_hn + b_hn; n = tanh(a_n + r·hn),
    h = n + z·(h_prev - n) (n - z·n at the first step).
    """
    _, nb, nh = a.shape
    for b in range(nb):
        for j in range(nh):
            r = _sigmoid_half(a[0, b, j])
            z = _sigmoid_half(a[1, b, j])
            n = _tanh(a[2, b, j] + r * hn[b, j])
            a[0, b, j] = r
            a[1, b, j] = z
            a[2, b, j] = n
            if first:
                h[b, j] = -(z * n) + n
            else:
                h[b, j] = (h_prev[b, j] - n) * z + n


@njit(inline="always")
def _gru_back(a, hn, h_prev, hv, d, dhz, first, b, j):
    """One element of a GRU backward step, for the gradient hv reaching h_t[b, j]."""
    r = a[0, b, j]
    z = a[1, b, j]
    n = a[2, b, j]
    hz = hv * z
    dhz[b, j] = hz
    dn = (hv - hz) * (_ONE - n * n)
    d[0, b, j] = dn
    d[1, b, j] = (dn * hn[b, j]) * ((_ONE - r) * r)
    if first:
        dz = -(n * hv)
    else:
        dz = (h_prev[b, j] - n) * hv
    d[2, b, j] = dz * ((_ONE - z) * z)
    d[3, b, j] = dn * r


@njit
def gru_step_backward(a, hn, h_prev, dh, d, dhz, first):
    """One GRU backward step (as ``GRU.backward``), before the recurrent GEMM; returns the
    squared norm of dh in float64.

    a [3, B, H] the activated r, z, n; dh the gradient reaching h_t. d [4, B, H] gets
    [dn_pre, dr, dz, dhn]; dhz = dh·z, the direct path to h_{t-1}.
    """
    _, nb, nh = a.shape
    sq = 0.0
    for b in range(nb):
        for j in range(nh):
            hv = dh[b, j]
            sq += np.float64(hv) * np.float64(hv)
            _gru_back(a, hn, h_prev, hv, d, dhz, first, b, j)
    return sq


@njit
def gru_step_backward_parts(a, hn, h_prev, parts, d, dhz, first):
    """``gru_step_backward`` with dh = the sum of parts [3, B, H] (the recurrent GEMM's
    products, in ``_sum_gates``'s order) plus the direct path dhz of the step after, which
    it then overwrites; where nothing else reaches h_t."""
    _, nb, nh = a.shape
    sq = 0.0
    for b in range(nb):
        for j in range(nh):
            hv = ((parts[0, b, j] + parts[1, b, j]) + parts[2, b, j]) + dhz[b, j]
            sq += np.float64(hv) * np.float64(hv)
            _gru_back(a, hn, h_prev, hv, d, dhz, first, b, j)
    return sq


# ---- optimizers ------------------------------------------------------------------------------
@njit
def adam(p, g, m, v, vmax, wd, pscale, w, omw, b2, omb2, bc2, eps, step):
    """One Adam / AdamW update of one parameter in one pass (as ``core.optim.Adam``).

    All scalars are float32, computed by the caller as the NumPy code computes them: wd the
    coupled weight decay (0: none), pscale the decoupled shrink (1: none), w = 1 - beta1 and
    omw = 1 - w (torch's lerp takes m + w·(d - m) for w < 0.5, else d - (1 - w)·(d - m)),
    b2, omb2 = 1 - b2, bc2 = sqrt(1 - b2^t), step = lr / (1 - b1^t). ``vmax`` is AMSGrad's
    running maximum (an empty array: none).
    """
    pf, gf, mf, vf = p.reshape(-1), g.reshape(-1), m.reshape(-1), v.reshape(-1)
    ams = vmax.size > 0
    low = w < _HALF
    xf = vmax.reshape(-1)
    for k in range(pf.size):
        pk = pf[k]
        if pscale != _ONE:
            pk = pk * pscale
        dk = pk * wd + gf[k] if wd != _ZERO else gf[k]
        mk = mf[k]
        diff = dk - mk
        mk = mk + diff * w if low else dk - diff * omw
        mf[k] = mk
        vk = vf[k] * b2 + (dk * dk) * omb2
        vf[k] = vk
        if ams:
            xk = xf[k]
            vk = vk if (vk > xk or vk != vk) else xk  # np.maximum: a NaN wins
            xf[k] = vk
        denom = np.sqrt(vk) / bc2 + eps
        pf[k] = pk - (mk / denom) * step


# ---- convolution and pooling (NCHW) ----------------------------------------------------------
@njit
def bias_nchw(y, b, out):
    """out [N, F, P] = y [F, N, P] moved to NCHW order, plus b [F] (an empty b: none), in one
    pass (NumPy adds the bias, then copies the transpose)."""
    f, n, p = y.shape
    has_bias = b.size > 0
    for ni in range(n):
        for fi in range(f):
            src = y[fi, ni]
            dst = out[ni, fi]
            if has_bias:
                bv = b[fi]
                for k in range(p):
                    dst[k] = src[k] + bv
            else:
                for k in range(p):
                    dst[k] = src[k]


@njit
def col2im(cols, out, kh, kw, sh, sw, pt, pl):
    """out [N, C, H, W] = the sum of cols [C, kh, kw, N, Ho, Wo] back over the windows
    (``kernels.conv.col2im``: the same additions in the same order, offsets i, j ascending,
    without the padded buffer). ``out`` must be zero-filled."""
    c, _, _, n, ho, wo = cols.shape
    h, w = out.shape[2], out.shape[3]
    for ci in range(c):
        for i in range(kh):
            for j in range(kw):
                x0 = 0
                while x0 < wo and x0 * sw + j - pl < 0:
                    x0 += 1
                x1 = wo
                while x1 > x0 and (x1 - 1) * sw + j - pl >= w:
                    x1 -= 1
                for ni in range(n):
                    for yo in range(ho):
                        y = yo * sh + i - pt
                        if y < 0 or y >= h:
                            continue
                        src = cols[ci, i, j, ni, yo]
                        dst = out[ni, ci, y]
                        if sw == 1:  # unit stride: a loop the compiler vectorises
                            off = j - pl
                            for xo in range(x0, x1):
                                dst[xo + off] += src[xo]
                        else:
                            for xo in range(x0, x1):
                                dst[xo * sw + j - pl] += src[xo]


@njit
def maxpool2x2(x, y, idx):
    """Max-pool forward for 2x2 windows at stride 2 without padding, the common case: y, idx
    [N, C, H//2, W//2] as ``kernels.pool.maxpool2d_forward`` gives them (the maximum taken in
    NumPy's order, so that even the sign of a zero agrees; idx the first maximum). Branch-free,
    so it vectorises. Returns True when a window holds a NaN: the caller then takes NumPy's
    careful path, where a NaN wins."""
    n, c, _, _ = x.shape
    ho, wo = y.shape[2], y.shape[3]
    nan = False
    one = np.uint8(1)
    for ni in range(n):
        for ci in range(c):
            for yo in range(ho):
                r0 = x[ni, ci, 2 * yo]
                r1 = x[ni, ci, 2 * yo + 1]
                yr = y[ni, ci, yo]
                ir = idx[ni, ci, yo]
                for xo in range(wo):
                    a = r0[2 * xo]
                    b = r0[2 * xo + 1]
                    cc = r1[2 * xo]
                    d = r1[2 * xo + 1]
                    m = a if a > b else b  # np.maximum(a, b): b unless a > b
                    m = m if m > cc else cc
                    m = m if m > d else d
                    yr[xo] = m
                    ir[xo] = np.uint8(a != m) * (one + np.uint8(b != m) * (one + np.uint8(cc != m)))
                    nan |= (a != a) | (b != b) | (cc != cc) | (d != d)
    return nan


@njit
def masked(g, mask, out):
    """out = g · mask (ReLU's backward; a False gives a zero with g's sign, as NumPy's)."""
    gf, mf, of = g.reshape(-1), mask.reshape(-1), out.reshape(-1)
    for k in range(gf.size):
        of[k] = gf[k] * (_ONE if mf[k] else _ZERO)


@njit
def maxpool_backward(gy, idx, gx, kh, kw, sh, sw, pt, pl):
    """gx [N, C, H, W] (zero-filled) += each gy [N, C, Ho, Wo] at its window's maximum; a
    maximum in the padding sends its gradient nowhere.

    Windows that tile the input (stride >= pool) give each input at most one gradient: one
    pass. Overlapping windows add up in the order of ``kernels.pool``'s (offset by offset),
    one pass per window offset."""
    n, c, ho, wo = gy.shape
    h, w = gx.shape[2], gx.shape[3]
    tiled = sh >= kh and sw >= kw
    for ko in range(1 if tiled else kh * kw):
        for ni in range(n):
            for ci in range(c):
                for yo in range(ho):
                    grow = gy[ni, ci, yo]
                    irow = idx[ni, ci, yo]
                    for xo in range(wo):
                        k = irow[xo]
                        if not tiled and k != ko:
                            continue
                        yy = yo * sh + k // kw - pt
                        xx = xo * sw + k % kw - pl
                        if 0 <= yy < h and 0 <= xx < w:
                            gx[ni, ci, yy, xx] += grow[xo]
