"""RNN, LSTM and GRU over [T, F] sequences (arrays [B, T, F]); initial state zeros.

All three follow one plan (PyTorch ``aten/src/ATen/native/RNN.cpp``, cuDNN):

- forward: ONE matmul call projects every time step's input at once,
  ``[T*B, F] @ W_ih + b``, into a gate buffer; each step then adds ONE matmul call
  ``h @ W_hh`` and applies the gate arithmetic in place on that buffer (every sigmoid gate in
  one call, ``out=`` everywhere, no per-step allocation). The buffer ends up holding the
  activated gates, which is what backward needs.
- backward: the loop only writes the per-step gate (pre-activation) gradients into one
  buffer covering all steps, plus one matmul call per step for the gradient reaching
  ``h_{t-1}``; the weight gradients come AFTER the loop as one matmul call each over all
  steps (``dW_ih = X^T @ dGates``, ``dW_hh = H_prev^T @ dGates``), the biases as sums and
  the input gradient as one call ``dGates @ W_ih^T``, only when it is wanted.

Internal layout. Parameters are stored in the layout of docs/format.md section 3
(``W_ih [F, nG·H]``; gate order i, f, g, o for LSTM and r, z, n for GRU, as PyTorch), but
the kernels work gate-major: the weights as ``[nG, F, H]`` / ``[nG, H, H]`` stacks, so a
"GEMM" above is one batched matmul call over the gate axis (nG BLAS GEMMs on NumPy, one
strided-batched cuBLAS GEMM on CuPy), and the gates of step t as one contiguous
``[nG, B, H]`` block of a ``[T, nG, B, H]`` buffer.
NumPy runs element-wise loops on column slices of a row-major ``[B, nG·H]`` array 2-4x
slower than on contiguous blocks, and OpenBLAS does the nG ``[B, H] @ [H, H]`` products of a
batched call at least as fast as one ``[B, H] @ [H, nG·H]`` GEMM. The gate gradients are moved to
``[nG, T, B, H]`` once after the loop (one fast copy of [B, H] blocks) so that each weight
gradient is one batched GEMM over all steps. LSTM reorders its gates to i, f, o, g so the
sigmoid gates are adjacent, and the sigmoid gates' weights and biases are pre-scaled by 0.5
(exact) in the per-call weight copies, so one ``tanh`` over all the gates of a step followed
by ``0.5·t + 0.5`` on the sigmoid ones gives ``sigmoid(x) = 0.5·tanh(x/2) + 0.5``, which
never overflows. Only ``ctx.xp`` is used, so the same code runs on CuPy.

With the compiled kernels (``kernels.fused``, float32 NumPy arrays), the LSTM runs another
path, feature-major: the gates of a step as one [4H, B] block in the stored order, one
``W_hh^T @ h`` GEMM a step forward and one ``W_hh @ d_gates`` backward (``LSTM._forward_fused``;
docs/engine.md, "Speed"); the GRU's compiled path keeps PyTorch's layout ([B, 3H] a step).

After each backward, ``layer.state_grad_norms`` is a host array of length T: entry t is the
L2 norm, over the whole batch, of dL/dh_t, the total gradient reaching the hidden state after
step t (from the output at t and from step t+1; with lengths, over the samples valid at t).
It makes vanishing and exploding gradients visible; it is accumulated on the device and
fetched with one transfer at the end.

Backward keeps the forward cache intact, so it may run more than once on one cache.

Sequence lengths (docs/format.md section 2.6, "Variable-length sequences"): when the input
carries per-sample lengths (``lengths_field``, set by the plan; the batch's ``Lengths`` in
``ctx.lengths``), the whole batch still runs as one pass over the T steps, and at the steps
t >= min(length) a masked copy keeps the state (h, and c for LSTM) of every padded sample
unchanged, as ``pack_padded_sequence`` does: the last state is each sample's state at its
last valid step, and ``return_sequences`` outputs zeros at the padded steps. Backward splits
the gradient reaching a padded state between the step's own update (none) and the carried
state (all of it), so padded steps get exactly zero gradients. Steps before the shortest
length cost nothing extra; without lengths the code path is the unmasked one.
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np

from core.layers.base import Layer, fmt_shape, register
from core.layers.timecollect import Lengths, _lengths
from core.params import Bool, Choice, Int
from kernels import jit
from kernels.backend import to_host


def _gates(xp, w, order: tuple[int, ...]):
    """Stored ``[..., nG·H]`` (gate blocks on the last axis) -> a new ``[nG, ..., H]`` array
    with the gates in ``order`` (indices of stored gate blocks)."""
    h = w.shape[-1] // len(order)
    return xp.stack([w[..., k * h:(k + 1) * h] for k in order])


def _sq_norm(xp, a):
    """Squared norm of ``a`` summed in float64: in float32, the state gradient of a long
    tanh RNN (1e-20 and below) squares to zero and could not be shown on a log scale."""
    a64 = a.astype(xp.float64, copy=False)
    return xp.vdot(a64, a64)


def _spec(xp, g, order: tuple[int, ...]):
    """Inverse of ``_gates``: internal ``[nG, ..., H]`` -> a new stored ``[..., nG·H]`` array."""
    return xp.concatenate([g[order.index(k)] for k in range(len(order))], axis=-1)


def _transposed(xp, w):
    """[nG, R, C] -> a contiguous [nG, C, R] (matmul by a transposed view is 2x slower)."""
    return xp.ascontiguousarray(w.transpose(0, 2, 1))


def _gate_major(xp, d):
    """Per-step gate buffer [T, nG, B, H] -> a contiguous [nG, T, B, H] (one fast copy of
    [B, H] blocks), so each gate's gradient over all steps is one [T*B, H] matrix."""
    return xp.ascontiguousarray(d.transpose(1, 0, 2, 3))


def _sum_gates(xp, parts, out) -> None:
    """out <- the sum of ``parts`` [nG, B, H] over the gate axis. On NumPy as pairwise adds,
    twice as fast as its axis-0 reduction on blocks this small; elsewhere one kernel."""
    if xp is np:
        xp.add(parts[0], parts[1], out=out)
        for k in range(2, parts.shape[0]):
            out += parts[k]
    else:
        xp.sum(parts, axis=0, out=out)


def _sigmoid_from_tanh_(s) -> None:
    """In place: s <- 0.5·s + 0.5 (s = tanh(x/2), so the result is sigmoid(x))."""
    s *= 0.5
    s += 0.5


def _batch_major(xp, g_flat, t_len: int, b: int):
    """A time-major ``[T*B, F]`` gradient as a contiguous ``[B, T, F]`` array."""
    return xp.ascontiguousarray(g_flat.reshape(t_len, b, -1).transpose(1, 0, 2))


def _carry_(xp, new, old, lens: Lengths | None, t: int) -> None:
    """In place: the padded samples of step t keep their previous state ``old``."""
    if lens is not None and t > 0 and lens.padded(t):
        xp.copyto(new, old, where=~lens.step_mask(t, new.ndim))


def _split(xp, g, lens: Lengths | None, t: int):
    """(the part of ``g`` for the step's own update, the part carried to step t - 1 or
    None): at a step with padding, the padded samples' gradient goes to the carried state."""
    if lens is None or not lens.padded(t):
        return g, None
    valid = lens.step_mask(t, g.ndim)
    zero = xp.zeros((), dtype=g.dtype)
    return xp.where(valid, g, zero), xp.where(valid, zero, g)


def _split_t(g, lens: Lengths | None, t: int):
    """``_split`` for a NumPy array with the batch on its last axis ([H, B]): both parts
    C-contiguous, as the compiled kernels take them."""
    if lens is None or not lens.padded(t):
        return g, None
    own, carried = _split(np, g.T, lens, t)
    return np.ascontiguousarray(own.T), np.ascontiguousarray(carried.T)


def _valid_only(lens: Lengths, g, t: int):
    """``g`` with the samples padded at step t set to zero (a new array)."""
    xp = lens.xp
    return xp.where(lens.step_mask(t, g.ndim), g, xp.zeros((), dtype=g.dtype))


class _Recurrent(Layer):
    """Shared parts: parameters, shapes, init, input layout, outputs and gradients."""

    category = "Recurrent"
    # The dataset field of the input's sequence lengths (set by the plan), or None.
    lengths_field: str | None = None
    uses_lengths = True
    gates: ClassVar[int] = 1  # nG: gate blocks of width H in W_ih / W_hh
    param_names = ("W_ih", "W_hh", "b_ih", "b_hh")
    params_spec = {
        "units": Int(min=1, doc="size H of the hidden state"),
        "return_sequences": Bool(default=False,
                                 doc="output every step's state [T, H] instead of the last [H]"),
    }

    def __init__(self, node_id, params):
        super().__init__(node_id, params)
        # Host array [T] after each backward: |dL/dh_t| over the batch (see module doc).
        self.state_grad_norms: np.ndarray | None = None

    def keeps_time_axis(self) -> bool:
        """Whether the output's first axis is still the time axis (for the lengths)."""
        return bool(self.params["return_sequences"])

    # ---- shapes and parameters -----------------------------------------------------------
    def infer(self, in_shapes):
        s = in_shapes.get("in")
        if s is None:
            return None
        if len(s) != 2:
            raise self.shape_error(
                f"expected a sequence [T, F] (time steps, features), found {fmt_shape(s)}")
        h = self.params["units"]
        return (s[0], h) if self.params["return_sequences"] else (h,)

    def param_shapes(self):
        f, h = self.in_shapes["in"][-1], self.params["units"]
        g = self.gates * h
        return {"W_ih": (f, g), "W_hh": (h, g), "b_ih": (g,), "b_hh": (g,)}

    def init_params(self, rng, he):
        """PyTorch's init: every weight and bias uniform(-1/sqrt(H), 1/sqrt(H)).

        ``he`` is ignored: the state is bounded by the layer's own activation, and this keeps
        a NeuroCanvas network and its PyTorch twin statistically alike.
        """
        k = 1.0 / np.sqrt(self.params["units"])
        return {name: rng.uniform(-k, k, size=shape)
                for name, shape in self.param_shapes().items()}

    def macs(self, in_shapes, out_shape):
        """Per time step nG x (F x H + H x H), the input and the recurrent GEMMs, times T
        (the gate arithmetic is not counted)."""
        t, f = in_shapes["in"]
        h = self.params["units"]
        return int(t) * self.gates * (int(f) * h + h * h)

    # ---- helpers -------------------------------------------------------------------------
    @staticmethod
    def _time_major(xp, x, dtype):
        """x [B, T, F] as a contiguous time-major [T*B, F] matrix (one small copy)."""
        b, t, f = x.shape
        xt = xp.ascontiguousarray(x.transpose(1, 0, 2), dtype=dtype)
        return xt.reshape(t * b, f), b, t

    @staticmethod
    def _projection(xp, x_flat, w_gates, bias, t_len: int, b: int):
        """Every step's input projection: ONE batched matmul ``[T*B, F] @ [nG, F, H]``,
        then bias add and the move to a per-step layout ``[T, nG, B, H]`` in one pass, so
        each step's gates are one contiguous block for the element-wise work."""
        ng, _, h_n = w_gates.shape
        proj = xp.matmul(x_flat, w_gates).reshape(ng, t_len, b, h_n)
        out = xp.empty((t_len, ng, b, h_n), dtype=proj.dtype)
        xp.add(proj.transpose(1, 0, 2, 3), bias[None, :, None, :], out=out)
        return out

    def _output(self, xp, hs, lens: Lengths | None = None):
        """hs [T, B, H] (h_1..h_T, time-major) -> a new [B, T, H] or [B, H] array (with
        lengths: zeros at the padded steps; the last state is carried from the last valid
        step, so hs[-1] is each sample's last valid state)."""
        if self.params["return_sequences"]:
            out = xp.ascontiguousarray(hs.transpose(1, 0, 2))
            return out if lens is None else lens.zero_padding(out)
        return hs[-1].copy()

    def _first_dh(self, gout, lens: Lengths | None = None):
        """The gradient reaching h_T: the output gradient at the last step."""
        if not self.params["return_sequences"]:
            return gout
        t = gout.shape[1] - 1
        g = gout[:, t]
        return _valid_only(lens, g, t) if lens is not None and lens.padded(t) else g

    def _add_gout(self, dh, gout, t: int, lens: Lengths | None = None) -> None:
        """Add the output gradient at step t (only with return_sequences; with lengths, none
        at a padded step: the output there is a constant zero)."""
        if self.params["return_sequences"]:
            if lens is not None and lens.padded(t):
                dh += _valid_only(lens, gout[:, t], t)
            else:
                dh += gout[:, t]

    def _grads(self, xp, norms_sq, x_flat, hs, d_ih, d_hh, w_ih_gates, order_ih, order_hh,
               t_len: int, b: int):
        """Parameter gradients as one batched matmul each, after the backward loop.

        d_ih / d_hh: [nG, T, B, H] gate gradients as seen by W_ih / W_hh (the same array
        except for GRU's n gate), in gate orders ``order_ih`` / ``order_hh``. Returns the
        input gradient list and stores the state-gradient norms.
        """
        ng, _, _, h_n = d_ih.shape
        d_ih3 = d_ih.reshape(ng, t_len * b, h_n)
        self.accumulate("W_ih", _spec(xp, xp.matmul(x_flat.T, d_ih3), order_ih))
        if t_len > 1:  # h_0 = 0 contributes nothing
            h_prev = hs[:-1].reshape(-1, h_n).T
            self.accumulate("W_hh", _spec(
                xp, xp.matmul(h_prev, d_hh[:, 1:].reshape(ng, -1, h_n)), order_hh))
        else:
            self.accumulate("W_hh", xp.zeros_like(self.P["W_hh"]))
        sum_ih = d_ih3.sum(axis=1)
        self.accumulate("b_ih", _spec(xp, sum_ih, order_ih))
        if d_hh is d_ih:
            self.accumulate("b_hh", _spec(xp, sum_ih, order_hh))
        else:
            self.accumulate("b_hh", _spec(xp, d_hh.reshape(ng, t_len * b, h_n).sum(axis=1),
                                          order_hh))
        self.state_grad_norms = to_host(xp.sqrt(norms_sq))
        if not self.wants_grad(0):
            return [None]
        gx = xp.matmul(d_ih3, w_ih_gates.transpose(0, 2, 1)).sum(axis=0)
        return [_batch_major(xp, gx, t_len, b)]


@register
class RNN(_Recurrent):
    """Elman RNN: h_t = act(x_t·W_ih + b_ih + h_{t-1}·W_hh + b_hh), act tanh or relu.

    Init: PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
    """

    type_name = "RNN"
    starter_params = {"units": 64}
    doc = ("Simple recurrent layer: h_t = act(x_t·W_ih + b_ih + h_{t-1}·W_hh + b_hh), "
           "input [T, F], output [H] (last step) or [T, H] with return_sequences. "
           "Init as PyTorch: uniform(-1/sqrt(H), 1/sqrt(H)).")
    gates = 1
    params_spec = {
        "units": _Recurrent.params_spec["units"],
        "activation": Choice(default="tanh", choices=("tanh", "relu"),
                             doc="nonlinearity of the state update"),
        "return_sequences": _Recurrent.params_spec["return_sequences"],
    }

    def forward(self, ctx, inputs):
        xp, P = ctx.xp, self.P
        W_hh = P["W_hh"]
        x_flat, b, t_len = self._time_major(xp, inputs[0], W_hh.dtype)
        h_n = W_hh.shape[0]
        # A[t] becomes h_{t+1} in place: the pre-activation buffer is the state history.
        A = x_flat @ P["W_ih"]
        A += P["b_ih"] + P["b_hh"]
        A = A.reshape(t_len, b, h_n)
        tmp = xp.empty((b, h_n), dtype=A.dtype)
        relu = self.params["activation"] == "relu"
        lens = _lengths(self, ctx)
        for t in range(t_len):
            a = A[t]
            if t > 0:  # h_0 = 0: no recurrent GEMM at the first step
                xp.matmul(A[t - 1], W_hh, out=tmp)
                a += tmp
            if relu:
                xp.maximum(a, 0, out=a)
            else:
                xp.tanh(a, out=a)
            _carry_(xp, a, A[t - 1], lens, t)
        return self._output(xp, A, lens), (x_flat, A, lens)

    def backward(self, ctx, cache, gout):
        xp, P = ctx.xp, self.P
        x_flat, A, lens = cache
        t_len, b, h_n = A.shape
        W_hh_T = xp.ascontiguousarray(P["W_hh"].T)  # a transposed view is 2x slower here
        D = xp.empty_like(A)  # dL/d(pre-activation) per step
        norms = xp.empty((t_len,), dtype=xp.float64)  # tiny norms must not underflow
        bufs = (xp.empty((b, h_n), dtype=A.dtype), xp.empty((b, h_n), dtype=A.dtype))
        relu = self.params["activation"] == "relu"
        dh = self._first_dh(gout, lens)
        for t in range(t_len - 1, -1, -1):
            dh, carried = _split(xp, dh, lens, t)
            norms[t] = _sq_norm(xp, dh)  # a padded sample's state gets none at step t
            h, d = A[t], D[t]
            if relu:
                xp.multiply(dh, h > 0, out=d)
            else:
                xp.multiply(h, h, out=d)
                xp.subtract(1.0, d, out=d)
                d *= dh
            if t > 0:
                dh = bufs[t & 1]
                xp.matmul(d, W_hh_T, out=dh)
                if carried is not None:
                    dh += carried
                self._add_gout(dh, gout, t - 1, lens)
        # One gate: the generic [nG, ...] code with nG = 1 (views, no copies).
        D1 = D[None]
        return self._grads(xp, norms, x_flat, A, D1, D1, P["W_ih"][None], (0,), (0,),
                           t_len, b)


# LSTM gates inside the kernels: i, f, o, g (stored blocks 0, 1, 3, 2), sigmoid gates first.
_LSTM_ORDER = (0, 1, 3, 2)


@register
class LSTM(_Recurrent):
    """LSTM, gates in the stored (and PyTorch's) order i, f, g, o:

    i, f, o = sigmoid(.), g = tanh(.), c_t = f·c_{t-1} + i·g, h_t = o·tanh(c_t).

    Init: PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) for every weight and bias (so the forget
    gate starts near 0.5, as in PyTorch; no forget-bias-one trick).
    """

    type_name = "LSTM"
    starter_params = {"units": 64}
    doc = ("Long short-term memory, gates i, f, g, o (as PyTorch): input [T, F], output [H] "
           "(last step) or [T, H] with return_sequences. Init as PyTorch: "
           "uniform(-1/sqrt(H), 1/sqrt(H)).")
    gates = 4

    def forward(self, ctx, inputs):
        xp, P = ctx.xp, self.P
        lens = _lengths(self, ctx)
        fused = jit.kernels_for(P["W_ih"], P["W_hh"], P["b_ih"], P["b_hh"])
        if fused is not None and type(inputs[0]) is np.ndarray:
            return self._forward_fused(fused, inputs[0], lens)
        x_flat, b, t_len = self._time_major(xp, inputs[0], P["W_hh"].dtype)
        order = _LSTM_ORDER
        W_ih = _gates(xp, P["W_ih"], order)  # [4, F, H]; sigmoid gates pre-scaled by 0.5
        W_ih[:3] *= 0.5
        W_hh = _gates(xp, P["W_hh"], order)  # [4, H, H]
        W_hh[:3] *= 0.5
        bias = _gates(xp, P["b_ih"] + P["b_hh"], order)  # [4, H]
        bias[:3] *= 0.5
        h_n = W_hh.shape[2]
        A = self._projection(xp, x_flat, W_ih, bias, t_len, b)  # [T, 4, B, H]
        dt = A.dtype
        Hs = xp.empty((t_len, b, h_n), dtype=dt)  # h_1..h_T
        C = xp.empty((t_len, b, h_n), dtype=dt)   # c_1..c_T
        TC = xp.empty((t_len, b, h_n), dtype=dt)  # tanh(c_t)
        tmp = xp.empty((4, b, h_n), dtype=dt)
        ig = xp.empty((b, h_n), dtype=dt)
        for t in range(t_len):
            a = A[t]
            if t > 0:  # h_0 = 0: no recurrent GEMM at the first step
                xp.matmul(Hs[t - 1], W_hh, out=tmp)
                a += tmp
            c = C[t]
            xp.tanh(a, out=a)
            _sigmoid_from_tanh_(a[:3])
            i, f, o, g = a
            if t > 0:
                xp.multiply(f, C[t - 1], out=c)
                xp.multiply(i, g, out=ig)
                c += ig
            else:
                xp.multiply(i, g, out=c)
            xp.tanh(c, out=TC[t])
            xp.multiply(o, TC[t], out=Hs[t])
            _carry_(xp, c, C[t - 1], lens, t)  # TC keeps tanh of the new c: backward's
            _carry_(xp, Hs[t], Hs[t - 1], lens, t)
        return self._output(xp, Hs, lens), (x_flat, A, Hs, C, TC, lens)

    def _forward_fused(self, K, x, lens: Lengths | None):
        """The compiled path, feature-major (see ``kernels.fused.lstm_cell``): every step's
        projection W_ih^T @ x_t in one batched product, then per step ONE GEMM
        ``W_hh^T @ h_{t-1}`` (the four gates at once) and the cell. Arrays are [T, ., B]
        with the batch last: the buffer A [T, 4H, B] ends up holding the activated gates,
        Hs, C, TC [T, H, B] the states, for backward."""
        P = self.P
        dt = P["W_hh"].dtype
        x3 = np.ascontiguousarray(x.transpose(1, 2, 0), dtype=dt)  # [T, F, B]
        t_len, _, b = x3.shape
        h_n = P["W_hh"].shape[0]
        A = np.matmul(P["W_ih"].T, x3)  # [T, 4H, B]
        bias = P["b_ih"] + P["b_hh"]
        w_hh_t = P["W_hh"].T  # [4H, H], a view: BLAS reads it transposed as fast as a copy
        Hs = np.empty((t_len, h_n, b), dtype=dt)
        C = np.empty((t_len, h_n, b), dtype=dt)
        TC = np.empty((t_len, h_n, b), dtype=dt)
        rec = np.zeros((4 * h_n, b), dtype=dt)  # h_0 = 0
        zero = np.zeros((h_n, b), dtype=dt)  # c_0 = 0
        if lens is None and K.lstm_forward is not None:  # the whole loop in one call
            K.lstm_forward(A, P["W_hh"], bias, Hs, C, TC, rec, zero)
            return self._output(np, Hs.transpose(0, 2, 1), lens), (x3, A, Hs, C, TC, lens)
        for t in range(t_len):
            if t == 0:
                K.lstm_cell(A[0], rec, bias, zero, C[0], TC[0], Hs[0])
                continue
            np.matmul(w_hh_t, Hs[t - 1], out=rec)
            K.lstm_cell(A[t], rec, bias, C[t - 1], C[t], TC[t], Hs[t])
            # (transposed views: the masks are per sample, along the last axis here)
            _carry_(np, C[t].T, C[t - 1].T, lens, t)  # TC keeps tanh of the new c
            _carry_(np, Hs[t].T, Hs[t - 1].T, lens, t)
        return self._output(np, Hs.transpose(0, 2, 1), lens), (x3, A, Hs, C, TC, lens)

    def backward(self, ctx, cache, gout):
        xp, P = ctx.xp, self.P
        x_flat, A, Hs, C, TC, lens = cache
        if A.ndim == 3:  # the compiled forward's layout [T, 4H, B]
            return self._backward_fused(jit.fused(), cache, gout)
        t_len, b, h_n = Hs.shape
        dt = A.dtype
        W_hh_T = _transposed(xp, _gates(xp, P["W_hh"], _LSTM_ORDER))  # unscaled
        D = xp.empty_like(A)  # dL/d(gate pre-activations) [T, 4, B, H], order i, f, o, g
        norms = xp.empty((t_len,), dtype=xp.float64)  # tiny norms must not underflow
        bufs = (xp.empty((b, h_n), dtype=dt), xp.empty((b, h_n), dtype=dt))
        tmp = xp.empty((b, h_n), dtype=dt)
        tmp4 = xp.empty((4, b, h_n), dtype=dt)
        Q = xp.empty((3, b, h_n), dtype=dt)
        dc = xp.zeros((b, h_n), dtype=dt)
        dh = self._first_dh(gout, lens)
        for t in range(t_len - 1, -1, -1):
            dh, carried = _split(xp, dh, lens, t)
            norms[t] = _sq_norm(xp, dh)  # a padded sample's state gets none at step t
            if carried is not None:
                dc, carried_c = _split(xp, dc, lens, t)
            self._gate_grads(xp, A[t], D[t], TC[t], C[t - 1], dh, dc, t, tmp, Q)
            if t > 0:
                xp.matmul(D[t], W_hh_T, out=tmp4)
                dh = bufs[t & 1]
                _sum_gates(xp, tmp4, dh)
                if carried is not None:
                    dc += carried_c
                    dh += carried
                self._add_gout(dh, gout, t - 1, lens)
        W_ih = _gates(xp, P["W_ih"], _LSTM_ORDER)
        D = _gate_major(xp, D)
        return self._grads(xp, norms, x_flat, Hs, D, D, W_ih, _LSTM_ORDER, _LSTM_ORDER,
                           t_len, b)

    def _backward_fused(self, K, cache, gout):
        """Backward of ``_forward_fused``: per step the compiled cell and ONE GEMM
        ``W_hh @ d_gates`` (the four gates' products summed by BLAS); after the loop the
        gate gradients go to [4H, T*B] once, and both weight gradients are one GEMM over all
        steps, straight into the stored layout."""
        P = self.P
        x3, A, Hs, C, TC, lens = cache
        t_len, h_n, b = Hs.shape
        dt = A.dtype
        W_hh = P["W_hh"]
        D = np.empty_like(A)  # dL/d(gate pre-activations) [T, 4H, B]
        norms = np.empty((t_len,), dtype=np.float64)
        bufs = np.empty((2, h_n, b), dtype=dt)
        dc = np.zeros((h_n, b), dtype=dt)
        zero = np.zeros((h_n, b), dtype=dt)  # c_0
        dh = np.ascontiguousarray(self._first_dh(gout, lens).T, dtype=dt)
        if lens is None and K.lstm_backward is not None:  # the whole loop in one call
            seq = self.params["return_sequences"]
            gseq = np.ascontiguousarray(gout, dtype=dt) if seq else np.empty((0, 0, 0), dt)
            K.lstm_backward(A, TC, C, W_hh, dh, dc, D, norms, bufs, zero, gseq)
        else:
            self._backward_loop(K, A, TC, C, dh, dc, D, norms, bufs, zero, gout, lens)
        # [4H, T*B] (one copy), and below it the inputs of every step's products stacked,
        # [x_t; h_{t-1}] (h_0 = 0): both weight gradients are ONE product over all steps
        # (1.05 ms against 1.36 as two on the bench's LSTM), its rows W_ih's then W_hh's
        DT = np.ascontiguousarray(D.transpose(1, 0, 2)).reshape(4 * h_n, t_len * b)
        f = x3.shape[1]
        Z = np.empty((f + h_n, t_len, b), dtype=dt)
        Z[:f] = x3.transpose(1, 0, 2)
        Z[f:, 0] = 0
        Z[f:, 1:] = Hs[:-1].transpose(1, 0, 2)
        G = Z.reshape(f + h_n, t_len * b) @ DT.T
        self.accumulate("W_ih", G[:f])
        self.accumulate("W_hh", G[f:])
        db = DT @ np.ones((t_len * b,), dtype=dt)  # the bias gradient: BLAS sums the rows
        self.accumulate("b_ih", db)
        self.accumulate("b_hh", db.copy())
        self.state_grad_norms = np.sqrt(norms)
        if not self.wants_grad(0):
            return [None]
        gx = (P["W_ih"] @ DT).reshape(-1, t_len, b)  # [F, T, B]
        return [np.ascontiguousarray(gx.transpose(2, 1, 0))]

    def _backward_loop(self, K, A, TC, C, dh, dc, D, norms, bufs, zero, gout, lens):
        """The compiled backward's time loop in Python, as ``kernels.fused.lstm_backward``
        runs it, and with lengths (padded samples carry their state gradients)."""
        W_hh = self.P["W_hh"]
        for t in range(A.shape[0] - 1, -1, -1):
            dh, carried = _split_t(dh, lens, t)
            if carried is not None:
                dc, carried_c = _split_t(dc, lens, t)
            if t == 0:
                norms[0] = K.lstm_cell_backward(A[0], TC[0], zero, dh, dc, D[0])
                break
            norms[t] = K.lstm_cell_backward(A[t], TC[t], C[t - 1], dh, dc, D[t])
            dh = bufs[t & 1]
            np.matmul(W_hh, D[t], out=dh)
            if carried is not None:
                dc += carried_c
                dh += carried
            self._add_gout(dh.T, gout, t - 1, lens)

    @staticmethod
    def _gate_grads(xp, a, d, tc, c_prev, dh, dc, t, tmp, Q) -> None:
        """NumPy / CuPy: d <- the gate pre-activation gradients of one step; dc <- the
        gradient reaching c_{t-1} (times f; at the first step, the one reaching c_0)."""
        i, f, o, g = a
        # dc += dh · o · (1 - tanh(c)^2)
        xp.multiply(tc, tc, out=tmp)
        xp.subtract(1.0, tmp, out=tmp)
        tmp *= o
        tmp *= dh
        dc += tmp
        # sigmoid gates: [dc·g, dc·c_{t-1}, dh·tanh(c)] · s(1 - s), in one pass over 3
        xp.multiply(dc, g, out=d[0])
        if t > 0:
            xp.multiply(dc, c_prev, out=d[1])
        else:
            d[1] = 0
        xp.multiply(dh, tc, out=d[2])
        s = a[:3]
        xp.subtract(1.0, s, out=Q)
        Q *= s
        d[:3] *= Q
        # g: dc · i · (1 - g^2)
        xp.multiply(g, g, out=tmp)
        xp.subtract(1.0, tmp, out=tmp)
        tmp *= i
        xp.multiply(tmp, dc, out=d[3])
        if t > 0:
            dc *= f


# GRU gate gradients in backward: blocks [dn_pre, dr, dz, dhn]. Blocks 0..2 are what W_ih
# sees (stored blocks n, r, z); blocks 1..3 what W_hh sees (r, z, n).
_GRU_RZN = (0, 1, 2)
_GRU_NRZ = (2, 0, 1)


@register
class GRU(_Recurrent):
    """GRU, gates in the stored (and PyTorch's) order r, z, n:

    r, z = sigmoid(.), n = tanh(x·W_in + b_in + r·(h·W_hn + b_hn)), h' = (1 - z)·n + z·h.

    Init: PyTorch's uniform(-1/sqrt(H), 1/sqrt(H)) for every weight and bias.
    """

    type_name = "GRU"
    starter_params = {"units": 64}
    doc = ("Gated recurrent unit, gates r, z, n (as PyTorch): input [T, F], output [H] "
           "(last step) or [T, H] with return_sequences. Init as PyTorch: "
           "uniform(-1/sqrt(H), 1/sqrt(H)).")
    gates = 3

    def forward(self, ctx, inputs):
        xp, P = ctx.xp, self.P
        lens = _lengths(self, ctx)
        fused = jit.kernels_for(P["W_ih"], P["W_hh"], P["b_ih"], P["b_hh"])
        if fused is not None and type(inputs[0]) is np.ndarray:
            return self._forward_fused(fused, inputs[0], lens)
        W_ih = _gates(xp, P["W_ih"], _GRU_RZN)  # [3, F, H]; r, z pre-scaled by 0.5
        W_ih[:2] *= 0.5
        W_hh = _gates(xp, P["W_hh"], _GRU_RZN)  # [3, H, H]
        W_hh[:2] *= 0.5
        b_hh = _gates(xp, P["b_hh"], _GRU_RZN)  # [3, H]
        bias = _gates(xp, P["b_ih"], _GRU_RZN)
        bias[:2] += b_hh[:2]
        bias[:2] *= 0.5
        b_hn = b_hh[2]
        h_n = W_hh.shape[2]
        x_flat, b, t_len = self._time_major(xp, inputs[0], W_hh.dtype)
        # [T, 3, B, H]; the n gate holds x·W_in + b_in until its tanh
        A = self._projection(xp, x_flat, W_ih, bias, t_len, b)
        dt = A.dtype
        Hs = xp.empty((t_len, b, h_n), dtype=dt)  # h_1..h_T
        HN = xp.empty((t_len, b, h_n), dtype=dt)  # h_{t-1}·W_hn + b_hn
        tmp = xp.empty((3, b, h_n), dtype=dt)
        rh = xp.empty((b, h_n), dtype=dt)
        for t in range(t_len):
            a = A[t]
            rz = a[:2]
            if t > 0:
                xp.matmul(Hs[t - 1], W_hh, out=tmp)
                rz += tmp[:2]
                xp.add(tmp[2], b_hn, out=HN[t])
            else:
                HN[t] = b_hn
            h = Hs[t]  # h = n + z·(h_{t-1} - n)
            xp.tanh(rz, out=rz)
            _sigmoid_from_tanh_(rz)
            r, z, n = a
            xp.multiply(r, HN[t], out=rh)
            n += rh
            xp.tanh(n, out=n)
            if t > 0:
                xp.subtract(Hs[t - 1], n, out=h)
                h *= z
            else:
                xp.multiply(z, n, out=h)
                xp.negative(h, out=h)
            h += n
            _carry_(xp, h, Hs[t - 1], lens, t)
        return self._output(xp, Hs, lens), (x_flat, A, Hs, HN, lens)

    def _forward_fused(self, K, x, lens: Lengths | None):
        """The compiled path, in PyTorch's layout: one GEMM for every step's projection,
        then per step one GEMM ``h_{t-1} @ W_hh`` and the cell
        (``kernels.fused.gru_cell``). A [T, B, 3H] ends up holding r, z, n."""
        P = self.P
        x_flat, b, t_len = self._time_major(np, x, P["W_hh"].dtype)
        h_n = P["W_hh"].shape[0]
        A = np.matmul(x_flat, P["W_ih"]).reshape(t_len, b, 3 * h_n)
        dt = A.dtype
        Hs = np.empty((t_len, b, h_n), dtype=dt)
        HN = np.empty((t_len, b, h_n), dtype=dt)
        rec = np.zeros((b, 3 * h_n), dtype=dt)  # h_0 = 0
        zero = np.zeros((b, h_n), dtype=dt)
        for t in range(t_len):
            if t == 0:
                K.gru_cell(A[0], rec, P["b_ih"], P["b_hh"], zero, HN[0], Hs[0])
                continue
            np.matmul(Hs[t - 1], P["W_hh"], out=rec)
            K.gru_cell(A[t], rec, P["b_ih"], P["b_hh"], Hs[t - 1], HN[t], Hs[t])
            _carry_(np, Hs[t], Hs[t - 1], lens, t)
        return self._output(np, Hs, lens), (x_flat, A, Hs, HN, lens)

    def backward(self, ctx, cache, gout):
        xp, P = ctx.xp, self.P
        x_flat, A, Hs, HN, lens = cache
        if A.ndim == 3:  # the compiled forward's layout [T, B, 3H]
            return self._backward_fused(jit.fused(), cache, gout)
        t_len, b, h_n = Hs.shape
        dt = A.dtype
        W_hh_T = _transposed(xp, _gates(xp, P["W_hh"], _GRU_RZN))
        D = xp.empty((t_len, 4, b, h_n), dtype=dt)  # [dn_pre, dr, dz, dhn], see _GRU_NRZ
        norms = xp.empty((t_len,), dtype=xp.float64)  # tiny norms must not underflow
        bufs = (xp.empty((b, h_n), dtype=dt), xp.empty((b, h_n), dtype=dt))
        dhz = xp.empty((b, h_n), dtype=dt)
        tmp = xp.empty((b, h_n), dtype=dt)
        tmp3 = xp.empty((3, b, h_n), dtype=dt)
        Q = xp.empty((2, b, h_n), dtype=dt)
        dh = self._first_dh(gout, lens)
        for t in range(t_len - 1, -1, -1):
            dh, carried = _split(xp, dh, lens, t)
            norms[t] = _sq_norm(xp, dh)  # a padded sample's state gets none at step t
            a, d = A[t], D[t]
            self._gate_grads(xp, a, d, dh, dhz, HN[t], Hs[t - 1], t, tmp, Q)
            if t > 0:
                xp.matmul(d[1:], W_hh_T, out=tmp3)
                dh = bufs[t & 1]
                _sum_gates(xp, tmp3, dh)
                dh += dhz
                if carried is not None:
                    dh += carried
                self._add_gout(dh, gout, t - 1, lens)
        return self._gru_grads(xp, P, norms, x_flat, Hs, D, t_len, b)

    def _backward_fused(self, K, cache, gout):
        """Backward of ``_forward_fused``: per step the compiled cell and ONE GEMM
        ``[dr, dz, dhn] @ W_hh^T`` (a column block of the step's [B, 4H] gradients, see
        ``kernels.fused.gru_cell_backward``); the weight gradients after the loop."""
        P = self.P
        x_flat, A, Hs, HN, lens = cache
        t_len, b, h_n = Hs.shape
        dt = A.dtype
        W_hh_T = np.ascontiguousarray(P["W_hh"].T)  # [3H, H]
        D = np.empty((t_len, b, 4 * h_n), dtype=dt)  # [dn_pre, dr, dz, dhn]
        db = np.zeros((4 * h_n,), dtype=np.float64)
        norms = np.empty((t_len,), dtype=np.float64)
        bufs = (np.empty((b, h_n), dtype=dt), np.empty((b, h_n), dtype=dt))
        dhz = np.empty((b, h_n), dtype=dt)
        zero = np.zeros((b, h_n), dtype=dt)  # h_0
        dh = np.ascontiguousarray(self._first_dh(gout, lens), dtype=dt)
        for t in range(t_len - 1, -1, -1):
            dh, carried = _split(np, dh, lens, t)
            if t == 0:
                norms[0] = K.gru_cell_backward(A[0], HN[0], zero, dh, dhz, D[0], db)
                break
            norms[t] = K.gru_cell_backward(A[t], HN[t], Hs[t - 1], dh, dhz, D[t], db)
            dh = bufs[t & 1]
            np.matmul(D[t][:, h_n:], W_hh_T, out=dh)
            dh += dhz
            if carried is not None:
                dh += carried
            self._add_gout(dh, gout, t - 1, lens)

        def rzn(m):  # columns n, r, z (D's first three blocks) -> the stored r, z, n
            return np.concatenate([m[..., h_n:3 * h_n], m[..., :h_n]], axis=-1)

        D2 = D.reshape(t_len * b, 4 * h_n)
        W_nrz = np.concatenate([P["W_ih"][:, 2 * h_n:], P["W_ih"][:, :2 * h_n]], axis=1)
        return self._fused_grads(norms, x_flat, Hs, D2[:, :3 * h_n], D2[:, h_n:],
                                 db[:3 * h_n], db[h_n:], W_nrz, rzn)

    def _fused_grads(self, norms, x_flat, Hs, d_ih, d_hh, db_ih, db_hh, w_ih, stored):
        """The compiled path's gradients after its backward loop, one GEMM each, in
        PyTorch's layout: d_ih / d_hh [T*B, 3H] the gate gradients as W_ih / W_hh see them
        (d_hh in the stored gate order), db_ih / db_hh their sums (float64); w_ih W_ih with
        its columns in d_ih's order, and ``stored(m)`` the stored order of a matrix in
        that order."""
        P, dt = self.P, d_ih.dtype
        b = Hs.shape[1]
        self.accumulate("W_ih", stored(x_flat.T @ d_ih))
        if Hs.shape[0] > 1:  # h_0 = 0 contributes nothing
            self.accumulate("W_hh", Hs[:-1].reshape(-1, Hs.shape[2]).T @ d_hh[b:])
        else:
            self.accumulate("W_hh", np.zeros_like(P["W_hh"]))
        self.accumulate("b_ih", stored(db_ih).astype(dt))
        self.accumulate("b_hh", db_hh.astype(dt))
        self.state_grad_norms = np.sqrt(norms)
        if not self.wants_grad(0):
            return [None]
        return [_batch_major(np, d_ih @ w_ih.T, Hs.shape[0], b)]

    def _gru_grads(self, xp, P, norms, x_flat, Hs, D, t_len, b):
        W_ih = _gates(xp, P["W_ih"], _GRU_NRZ)
        D = _gate_major(xp, D)
        return self._grads(xp, norms, x_flat, Hs, D[:3], D[1:], W_ih, _GRU_NRZ, _GRU_RZN,
                           t_len, b)

    @staticmethod
    def _gate_grads(xp, a, d, dh, dhz, hn, h_prev, t, tmp, Q) -> None:
        """NumPy / CuPy: d <- [dn_pre, dr, dz, dhn] and dhz <- dh·z for one step."""
        r, z, n = a
        dn, dr, dz, dhn = d
        xp.multiply(dh, z, out=dhz)          # also the direct path to h_{t-1}
        xp.subtract(dh, dhz, out=dn)         # dh · (1 - z)
        xp.multiply(n, n, out=tmp)
        xp.subtract(1.0, tmp, out=tmp)
        dn *= tmp                            # · (1 - n^2)
        xp.multiply(dn, hn, out=dr)          # · hn, then · r(1 - r) below
        if t > 0:
            xp.subtract(h_prev, n, out=dz)
            dz *= dh                         # · z(1 - z) below
        else:
            xp.multiply(n, dh, out=dz)
            xp.negative(dz, out=dz)
        s = a[:2]
        xp.subtract(1.0, s, out=Q)
        Q *= s
        d[1:3] *= Q
        xp.multiply(dn, r, out=dhn)
