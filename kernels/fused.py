"""Compiled CPU kernels (numba): one loop where NumPy makes several passes.

Imported only through ``kernels.jit.fused()``, which checks that numba is there; the callers
(layers, optimizers, ``kernels.conv`` / ``kernels.pool``) hand over C-contiguous float32
NumPy arrays (``kernels.jit.usable``) and keep their NumPy code for everything else.

Every kernel computes what its NumPy counterpart computes, with the same operations in the
same order and the same float32 constants, so its results are bit-identical to NumPy's
(``tests/test_fused_kernels.py``; a NaN *gradient* in max-pool backward stays at the
window's maximum, where NumPy's NaN·0 spreads it), with one exception: ``tanh``, and the
kernels built on it, which may also fuse multiply-adds (``_CONTRACT``); the recurrent cells
also work in other layouts than the NumPy layers (the LSTM's feature-major, see
``lstm_cell``; the GRU's PyTorch's, see ``gru_cell``). NumPy's
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

from kernels.jit import cblas_sgemm, njit

_f = np.float32
# tanh(x) ~ x * P(x^2) / Q(x^2) for |x| <= 9
_P0, _P1, _P2, _P3 = _f(0.9999999994180985), _f(0.13104653670280386), \
    _f(0.0031269963272676916), _f(1.1394825805419923e-05)
_P4, _P5, _P6 = _f(-2.11984038019315e-08), _f(5.7452573563094114e-11), \
    _f(-9.685703646451155e-14)
_Q1, _Q2, _Q3 = _f(0.4643798536705233), _f(0.024586982535639), _f(0.0002579667820918829)
_LIM, _SAT = _f(9.0), _f(9.011)
_ONE, _HALF, _ZERO = _f(1.0), _f(0.5), _f(0.0)
# Kernels whose results involve ``_tanh`` (no NumPy result to match bit for bit) may fuse
# multiply-adds: 20-25 % faster, the error bound of ``_tanh`` holds. No other flag.
_CONTRACT = {"contract"}


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
@njit(fastmath=_CONTRACT)
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
# The compiled LSTM works feature-major: a step's gates are one [4H, B] block with the gate
# blocks i, f, g, o of the stored weights as rows and the batch along each row, so that its
# GEMMs are W_hh^T @ h_{t-1} forward and W_hh @ d backward, the form in which OpenBLAS runs
# these small products fastest (19 and 21 us against 28 and 35 us for h @ W_hh and
# d @ W_hh^T on the bench's LSTM), and the inner loops run along a row of B samples.
@njit(fastmath=_CONTRACT)
def lstm_cell(a, rec, bias, c_prev, c, tc, h):
    """``_lstm_cell`` as a kernel of its own (the Python loop calls it)."""
    _lstm_cell(a, rec, bias, c_prev, c, tc, h)


# The cells are inlined into the kernels that use them (inline="always"), never called as
# another compiled function: a fastmath kernel that numba first compiled as the callee of
# another kernel computed other bits with an empty on-disk cache than when loaded from it.
@njit(inline="always")
def _lstm_cell(a, rec, bias, c_prev, c, tc, h):
    """One LSTM step of ``core.layers.recurrent.LSTM``'s compiled path, feature-major.

    a [4H, B]: the step's input projection W_ih^T·x_t, replaced by the activated gates;
    rec [4H, B] = W_hh^T·h_{t-1}; bias [4H] = b_ih + b_hh (at the first step the caller
    passes zeros for rec and c_prev). The pre-activation is (a + bias) + rec; sigmoid gates
    are 0.5·tanh(0.5·x) + 0.5 (exact halvings). c = f·c_prev + i·g, tc = tanh(c), h = o·tc,
    all [H, B]. Each unit's four gate rows are taken as 1-D slices first, so that the loop
    along the batch vectorises.
    """
    nh = a.shape[0] // 4
    nb = a.shape[1]
    for j in range(nh):
        ai, af, ag, ao = a[j], a[nh + j], a[2 * nh + j], a[3 * nh + j]
        ri, rf, rg, ro = rec[j], rec[nh + j], rec[2 * nh + j], rec[3 * nh + j]
        bi, bf, bg, bo = bias[j], bias[nh + j], bias[2 * nh + j], bias[3 * nh + j]
        cp, cr, tr, hr = c_prev[j], c[j], tc[j], h[j]
        for b in range(nb):
            i = _sigmoid_half(_HALF * ((ai[b] + bi) + ri[b]))
            f = _sigmoid_half(_HALF * ((af[b] + bf) + rf[b]))
            g = _tanh((ag[b] + bg) + rg[b])
            o = _sigmoid_half(_HALF * ((ao[b] + bo) + ro[b]))
            ai[b] = i
            af[b] = f
            ag[b] = g
            ao[b] = o
            cv = f * cp[b] + i * g
            cr[b] = cv
            t = _tanh(cv)
            tr[b] = t
            hr[b] = o * t


@njit
def sq_norm(x):
    """The squared norm of a 2-D float32 array, summed in float64 (sums along the last axis
    first, so that the loop vectorises; tiny state gradients must not underflow)."""
    nr, nc = x.shape
    acc = np.zeros(nc)
    for r in range(nr):
        xr = x[r]
        for k in range(nc):
            acc[k] += np.float64(xr[k]) * np.float64(xr[k])
    return acc.sum()


@njit
def lstm_cell_backward(a, tc, c_prev, dh, dc, d):
    """``_lstm_cell_backward`` as a kernel of its own (the Python loop calls it)."""
    return _lstm_cell_backward(a, tc, c_prev, dh, dc, d)


@njit(inline="always")
def _lstm_cell_backward(a, tc, c_prev, dh, dc, d):
    """One LSTM backward step of ``lstm_cell``'s layout, before the recurrent GEMM; returns
    the squared norm of dh, summed in float64 (the state-gradient norm of step t).

    a [4H, B] the activated gates; tc = tanh(c_t); c_prev = c_{t-1} (zeros at the first
    step, which makes f's gradient zero there); dh [H, B] the gradient reaching h_t; dc the
    one reaching c_t from later steps, updated in place to the one reaching c_{t-1} (times
    f). d [4H, B] gets the gradients of the gate pre-activations (their sums over the steps,
    the bias gradient, are one product after the loop). The norm is a loop of its own, and
    there is no branch: either kept the main loop from vectorising (1.8x slower).
    """
    nh = a.shape[0] // 4
    nb = a.shape[1]
    sq = sq_norm(dh)
    for j in range(nh):
        ai, af, ag, ao = a[j], a[nh + j], a[2 * nh + j], a[3 * nh + j]
        di, df, dg, do = d[j], d[nh + j], d[2 * nh + j], d[3 * nh + j]
        tr, cp, hr, cr = tc[j], c_prev[j], dh[j], dc[j]
        for b in range(nb):
            hv = hr[b]
            i = ai[b]
            f = af[b]
            g = ag[b]
            o = ao[b]
            t = tr[b]
            cv = cr[b] + (_ONE - t * t) * o * hv
            di[b] = (cv * g) * ((_ONE - i) * i)
            df[b] = (cv * cp[b]) * ((_ONE - f) * f)
            dg[b] = (_ONE - g * g) * i * cv
            do[b] = (hv * t) * ((_ONE - o) * o)
            cr[b] = cv * f
    return sq


# ---- recurrent time loops, one call per pass -----------------------------------------------
# The whole loop of ``lstm_cell`` / ``lstm_cell_backward`` and the products between them, in
# one call: the products are NumPy's own BLAS (``kernels.jit.cblas_sgemm``) called as
# ``np.matmul`` calls it, so the results are those of the loop in Python to the bit, without
# going back to the interpreter twice a step (0.25-0.3 ms of a 6 ms step on the bench's LSTM,
# T = 50). None where NumPy's BLAS cannot be called so; the layer then loops in Python, as it
# does with lengths (padded samples carry their state, see ``core.layers.recurrent``).
_sgemm = cblas_sgemm()
_ROW, _NO, _TRANS = 101, 111, 112
BLAS_LOOPS = ("lstm_forward", "lstm_backward")  # hidden from ``np.matmul`` (the bench's tracer)


@njit(fastmath=_CONTRACT)  # as ``lstm_cell``: the same bits
def _lstm_forward(a, w_hh, bias, hs, c, tc, rec, zero):
    """The compiled LSTM's forward over all steps, feature-major: a [T, 4H, B] the input
    projections (replaced by the activated gates), w_hh [H, 4H] as stored; per step
    rec = W_hh^T @ h_{t-1} ([4H, B], zeros on entry: h_0 = 0), then ``lstm_cell`` into
    hs, c, tc [T, H, B]; c_0 is ``zero`` [H, B]. The arguments of the Python loop's cells."""
    t_len, g4, nb = a.shape
    nh = hs.shape[1]
    _lstm_cell(a[0], rec, bias, zero, c[0], tc[0], hs[0])
    for t in range(1, t_len):
        _sgemm(_ROW, _TRANS, _NO, g4, nb, nh, _ONE, w_hh.ctypes, g4, hs[t - 1].ctypes, nb,
               _ZERO, rec.ctypes, nb)
        _lstm_cell(a[t], rec, bias, c[t - 1], c[t], tc[t], hs[t])


@njit
def _lstm_backward(a, tc, c, w_hh, dh, dc, d, norms, bufs, zero, gseq):
    """Backward of ``_lstm_forward``: per step ``lstm_cell_backward`` (its squared state-
    gradient norm into norms[t]), then dh = W_hh @ d_t into one of bufs [2, H, B] in turn,
    plus the output gradient of step t - 1 when gseq [B, T, H] has steps (return_sequences;
    a [0, 0, 0] array otherwise)."""
    t_len, g4, nb = a.shape
    nh = dh.shape[0]
    seq = gseq.shape[1] > 0
    for t in range(t_len - 1, 0, -1):
        norms[t] = _lstm_cell_backward(a[t], tc[t], c[t - 1], dh, dc, d[t])
        dh = bufs[t & 1]
        _sgemm(_ROW, _NO, _NO, nh, nb, g4, _ONE, w_hh.ctypes, g4, d[t].ctypes, nb,
               _ZERO, dh.ctypes, nb)
        if seq:
            for j in range(nh):
                for b in range(nb):
                    dh[j, b] += gseq[b, t - 1, j]
    norms[0] = _lstm_cell_backward(a[0], tc[0], zero, dh, dc, d[0])


lstm_forward = _lstm_forward if _sgemm is not None else None
lstm_backward = _lstm_backward if _sgemm is not None else None


@njit(fastmath=_CONTRACT)
def gru_cell(a, rec, b_ih, b_hh, h_prev, hn, h):
    """One GRU step of ``core.layers.recurrent.GRU``'s compiled path, in PyTorch's layout.

    a [B, 3H]: the step's input projection x_t·W_ih, gate blocks r, z, n as stored, replaced
    by the activated r, z, n; rec [B, 3H] = h_{t-1}·W_hh; h_prev = h_{t-1} (zeros, with rec,
    at the first step). r, z = sigmoid((a + (b_ih + b_hh)) + rec) as 0.5·tanh(0.5·x) + 0.5;
    hn = rec_n + b_hn (kept for backward); n = tanh((a_n + b_in) + r·hn); h = (h_prev - n)·z
    + n.
    """
    nb, n3 = a.shape
    nh = n3 // 3
    for b in range(nb):
        ar, rr = a[b], rec[b]
        ai, az, an = ar[:nh], ar[nh:2 * nh], ar[2 * nh:]
        ri, rz, rn = rr[:nh], rr[nh:2 * nh], rr[2 * nh:]
        hp, hnr, hr = h_prev[b], hn[b], h[b]
        for j in range(nh):
            r = _sigmoid_half(_HALF * ((ai[j] + (b_ih[j] + b_hh[j])) + ri[j]))
            z = _sigmoid_half(_HALF * ((az[j] + (b_ih[nh + j] + b_hh[nh + j])) + rz[j]))
            hv = rn[j] + b_hh[2 * nh + j]
            n = _tanh((an[j] + b_ih[2 * nh + j]) + r * hv)
            ai[j] = r
            az[j] = z
            an[j] = n
            hnr[j] = hv
            hr[j] = (hp[j] - n) * z + n


@njit
def gru_cell_backward(a, hn, h_prev, dh, dhz, d, db):
    """One GRU backward step of ``gru_cell``'s layout, before the recurrent GEMM; returns
    the squared norm of dh in float64.

    a [B, 3H] the activated r, z, n; hn the step's h_{t-1}·W_hn + b_hn; h_prev = h_{t-1}
    (zeros at the first step); dh [B, H] the whole gradient reaching h_t. d [B, 4H] gets
    [dn_pre, dr, dz, dhn] (so that columns :3H are what W_ih sees, in the order n, r, z,
    and columns H: what W_hh sees, in its stored order r, z, n), added to db [4H] (float64);
    dhz = dh·z, the direct path to h_{t-1}.
    """
    nb, n3 = a.shape
    nh = n3 // 3
    sq = sq_norm(dh)
    for b in range(nb):
        ar, dr = a[b], d[b]
        ar_r, ar_z, ar_n = ar[:nh], ar[nh:2 * nh], ar[2 * nh:]
        d0, d1, d2, d3 = dr[:nh], dr[nh:2 * nh], dr[2 * nh:3 * nh], dr[3 * nh:]
        hnr, hp, hr, zr = hn[b], h_prev[b], dh[b], dhz[b]
        for j in range(nh):
            hv = hr[j]
            r = ar_r[j]
            z = ar_z[j]
            n = ar_n[j]
            hz = hv * z
            zr[j] = hz
            dn = (hv - hz) * (_ONE - n * n)
            v1 = (dn * hnr[j]) * ((_ONE - r) * r)
            v2 = ((hp[j] - n) * hv) * ((_ONE - z) * z)
            v3 = dn * r
            d0[j] = dn
            d1[j] = v1
            d2[j] = v2
            d3[j] = v3
            db[j] += dn
            db[nh + j] += v1
            db[2 * nh + j] += v2
            db[3 * nh + j] += v3
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


@njit(inline="always")
def _window_max(a, b, c, d):
    """(maximum, first-maximum index 0..3, holds a NaN) of a 2x2 window a b / c d, the
    maximum taken in NumPy's order (so that even the sign of a zero agrees), the index as
    ``kernels.pool`` counts it, branch-free."""
    m = a if a > b else b  # np.maximum(a, b): b unless a > b
    m = m if m > c else c
    m = m if m > d else d
    one = np.uint8(1)
    k = np.uint8(a != m) * (one + np.uint8(b != m) * (one + np.uint8(c != m)))
    return m, k, (a != a) | (b != b) | (c != c) | (d != d)


@njit
def maxpool2x2(x, y, idx, relu=False):
    """Max-pool forward for 2x2 windows at stride 2 without padding, the common case: y, idx
    [N, C, H//2, W//2] as ``kernels.pool.maxpool2d_forward`` gives them (the maximum taken in
    NumPy's order, so that even the sign of a zero agrees; idx the first maximum). Branch-free,
    so it vectorises. Returns True when a window holds a NaN: the caller then takes NumPy's
    careful path, where a NaN wins.

    With ``relu``, y = max(maximum, 0): the pool of ReLU(x), which is ReLU of the pool of x
    (both are monotonic), in one pass over x instead of three (``ReluMaxPool``)."""
    n, c, _, _ = x.shape
    ho, wo = y.shape[2], y.shape[3]
    nan = False
    for ni in range(n):
        for ci in range(c):
            for yo in range(ho):
                r0 = x[ni, ci, 2 * yo]
                r1 = x[ni, ci, 2 * yo + 1]
                yr = y[ni, ci, yo]
                ir = idx[ni, ci, yo]
                for xo in range(wo):
                    m, k, bad = _window_max(r0[2 * xo], r0[2 * xo + 1], r1[2 * xo],
                                            r1[2 * xo + 1])
                    yr[xo] = (m if m > _ZERO else _ZERO) if relu else m
                    ir[xo] = k
                    nan |= bad
    return nan


@njit
def conv_relu_pool2x2(y, b, out, idx):
    """A convolution's GEMM output y [F, N, Ho, Wo] plus its bias b [F] (empty: none), then
    ReLU and a 2x2 max pool at stride 2, into out, idx [N, F, Ho//2, Wo//2]: the values
    ``bias_nchw``, ReLU and ``maxpool2x2`` give one after the other (each window's four
    sums taken first, then the maximum as ``maxpool2x2`` takes it), in one pass over y and
    without the convolution's own output. Returns True when a window holds a NaN (the
    caller then takes the layers one by one)."""
    f, n = y.shape[0], y.shape[1]
    ho, wo = out.shape[2], out.shape[3]
    has_bias = b.size > 0
    nan = False
    for fi in range(f):
        bv = b[fi] if has_bias else _ZERO
        for ni in range(n):
            for yo in range(ho):
                r0 = y[fi, ni, 2 * yo]
                r1 = y[fi, ni, 2 * yo + 1]
                orow = out[ni, fi, yo]
                irow = idx[ni, fi, yo]
                for xo in range(wo):
                    # no bias: a copy, as bias_nchw's (adding 0 would turn -0 into +0)
                    a = r0[2 * xo] + bv if has_bias else r0[2 * xo]
                    b2 = r0[2 * xo + 1] + bv if has_bias else r0[2 * xo + 1]
                    cc = r1[2 * xo] + bv if has_bias else r1[2 * xo]
                    d = r1[2 * xo + 1] + bv if has_bias else r1[2 * xo + 1]
                    m, k, bad = _window_max(a, b2, cc, d)
                    orow[xo] = m if m > _ZERO else _ZERO
                    irow[xo] = k
                    nan |= bad
    return nan


@njit
def masked(g, mask, out):
    """out = g · mask (ReLU's backward; a False gives a zero with g's sign, as NumPy's)."""
    gf, mf, of = g.reshape(-1), mask.reshape(-1), out.reshape(-1)
    for k in range(gf.size):
        of[k] = gf[k] * (_ONE if mf[k] else _ZERO)


@njit
def maxpool2x2_backward(gy, idx, gx, y, relu=False, cnhw=False):
    """Backward of ``maxpool2x2``: every position its windows cover (all of gx when H and
    W are even; else the caller zero-fills gx for the row or column left over) is written
    once, its window's gradient at the maximum and zero elsewhere. With ``relu``
    (``maxpool2x2(..., relu=True)``'s y), a window whose output y is not positive passes
    gy · 0 on (ReLU's gradient there). With ``cnhw``, gx is [C, N, H, W] (the layout of a
    convolution's GEMM, ``conv_relu_pool2x2``), gy, idx and y [N, C, Ho, Wo] as always."""
    n, c, ho, wo = gy.shape
    for ni in range(n):
        for ci in range(c):
            for yo in range(ho):
                grow = gy[ni, ci, yo]
                irow = idx[ni, ci, yo]
                yrow = y[ni, ci, yo]
                r0 = gx[ci, ni, 2 * yo] if cnhw else gx[ni, ci, 2 * yo]
                r1 = gx[ci, ni, 2 * yo + 1] if cnhw else gx[ni, ci, 2 * yo + 1]
                for xx in range(2 * wo):  # along the rows of gx: contiguous stores
                    xo = xx >> 1
                    k = irow[xo]
                    g = grow[xo]
                    if relu:
                        g = g * (_ONE if yrow[xo] > _ZERO else _ZERO)
                    odd = np.uint8(xx & 1)
                    # + 0 as the zero-filled sum gives it: -0 arriving becomes +0
                    r0[xx] = _ZERO + (g if k == odd else _ZERO)
                    r1[xx] = _ZERO + (g if k == odd + np.uint8(2) else _ZERO)


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
