"""Shared test tools: build one layer in isolation, run it, and check its gradients.

Everything runs on an array module ``xp`` (numpy, or cupy from ``kernels.backend``; the
``xp`` fixture of conftest gives both). ``build_layer(..., xp=xp)`` puts the parameters and
buffers on ``xp`` (host init, then ``xp.asarray``) and the layer remembers its module, so
``forward`` / ``forward_backward`` / ``gradcheck`` need not be told again. Inputs and output
gradients may be given as host (NumPy) arrays: they are copied onto ``xp``. Results come back
on the host (``kernels.backend.to_host``), ready for NumPy comparisons; on NumPy nothing is
converted or copied that was not before.

``gradcheck`` compares backward with float64 central differences, element by element for
small tensors and along random directions for large ones (Chainer's gradient_check idea),
and reports where a mismatch is. It perturbs host copies and copies them onto the device
before each evaluation (on NumPy the host copy is the array itself).
"""
from __future__ import annotations

import weakref

import numpy as np

from core import catalogue
from core.layers.base import Context, Layer
from core.params import resolve_params
from kernels import backend

# layer -> the array module it was built on
_XP: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def array_module_of(layer: Layer):
    """The array module ``build_layer`` put ``layer`` on (numpy for other layers)."""
    return _XP.get(layer, np)


def host(x):
    """``x`` on the host: a device array is copied to NumPy, anything else is left as it is
    (so that the NumPy path sees exactly what the layer returned)."""
    if x is None or backend.array_module(x) is np:
        return x
    return backend.to_host(x)


def device(x, xp):
    """``x`` on ``xp``: a NumPy array is copied there when ``xp`` is not numpy; scalars,
    device arrays and everything on the NumPy path are left as they are."""
    if xp is not np and isinstance(x, np.ndarray) and backend.array_module(x) is np:
        return xp.asarray(x)
    return x


def assign(dst, value) -> None:
    """``dst[...] = value`` for a parameter or buffer on any module (``value`` may be a host
    array)."""
    dst[...] = backend.array_module(dst).asarray(value)


def build_layer(type_name: str, params: dict, in_shapes: dict, *, xp=np, dtype=np.float64,
                seed: int = 0, he: bool = False, node_id: str = "n") -> Layer:
    """A layer of ``type_name`` with initialised parameters (on ``xp``) for per-sample
    ``in_shapes``."""
    cls = catalogue.get(type_name)
    assert cls is not None, f"unknown type {type_name}"
    resolved, problems = resolve_params(cls.all_params_spec(), params, node_id)
    assert not problems, problems
    layer = cls(node_id, resolved)
    in_shapes = {k: tuple(v) for k, v in in_shapes.items()}
    layer.out_shape = layer.infer(in_shapes)
    layer.in_shapes = in_shapes
    host_init = layer.init_params(np.random.default_rng(seed), he)
    layer.P = {k: device(np.asarray(host_init[k], dtype=dtype), xp)
               for k in layer.param_shapes()}
    layer.B = {k: device(np.asarray(host_init[k], dtype=dtype), xp)
               for k in layer.buffer_shapes()}
    layer.G = {k: None for k in layer.P}
    for k, s in layer.param_shapes().items():
        assert layer.P[k].shape == tuple(s), (k, layer.P[k].shape, s)
        assert backend.array_module(layer.P[k]) is xp, (k, type(layer.P[k]))
    _XP[layer] = xp
    return layer


def context(train: bool = True, seed: int = 0, dtype=np.float64, xp=np) -> Context:
    return Context(xp, train=train, rng=backend.default_rng(xp, seed), dtype=dtype)


def inputs_dtype(inputs):
    for x in inputs:
        dt = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        if np.issubdtype(dt, np.floating):
            return dt
    return np.float64


def _run_forward(layer: Layer, inputs: list, train: bool, seed: int, xp):
    xp = array_module_of(layer) if xp is None else xp
    inputs = [device(x, xp) for x in inputs]
    ctx = context(train, seed, inputs_dtype(inputs), xp)
    out, cache = layer.forward(ctx, inputs)
    return xp, ctx, out, cache


def forward(layer: Layer, inputs: list, *, train: bool = True, seed: int = 0, xp=None):
    """The layer's output on the host."""
    _, _, out, _ = _run_forward(layer, inputs, train, seed, xp)
    return host(out)


def forward_backward(layer: Layer, inputs: list, gout=None, *, train: bool = True,
                     seed: int = 0, xp=None):
    """(out, input grads, param grads), on the host. ``gout`` defaults to ones."""
    for k in layer.G:
        layer.G[k] = None
    xp, ctx, out, cache = _run_forward(layer, inputs, train, seed, xp)
    gout = xp.ones_like(out) if gout is None else device(gout, xp)
    gins = layer.backward(ctx, cache, gout)
    grads = {k: (None if v is None else np.array(backend.to_host(v)))
             for k, v in layer.G.items()}
    return host(out), [host(g) for g in gins], grads


def gradcheck(layer: Layer, inputs: list, *, wrt: list[int] | None = None, train: bool = True,
              seed: int = 0, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
              max_elements: int = 64, check_params: bool = True, xp=None) -> None:
    """Assert backward matches float64 central differences of sum(out * R).

    ``wrt``: indices of the inputs to check (default: every floating input). BatchNorm
    buffers are restored around every evaluation so running statistics do not drift.
    """
    xp = array_module_of(layer) if xp is None else xp
    rng = np.random.default_rng(1234)
    hosts = [np.array(backend.to_host(x)) for x in inputs]  # what is perturbed
    dev_inputs = [device(x, xp) for x in hosts]  # the same arrays on NumPy
    if wrt is None:
        wrt = [i for i, x in enumerate(hosts) if np.issubdtype(x.dtype, np.floating)]
    buffers = {k: v.copy() for k, v in layer.B.items()}

    def restore():
        for k, v in buffers.items():
            layer.B[k][...] = v

    out = forward(layer, dev_inputs, train=train, seed=seed, xp=xp)
    restore()
    R = rng.standard_normal(np.shape(out))

    def f() -> float:
        o = forward(layer, dev_inputs, train=train, seed=seed, xp=xp)
        restore()
        return float(np.sum(np.asarray(o, dtype=np.float64) * R))

    _, gins, gparams = forward_backward(layer, dev_inputs, R, train=train, seed=seed, xp=xp)
    restore()

    def check(name: str, dev, analytic) -> None:
        # ``arr``: the host array perturbed; ``push`` copies it onto the device array
        on_host = backend.array_module(dev) is np
        arr = dev if on_host else np.array(backend.to_host(dev))

        def push():
            if arr is not dev:
                assign(dev, arr)

        analytic = np.zeros_like(arr) if analytic is None else np.asarray(analytic)
        assert analytic.shape == arr.shape, f"{name}: grad shape {analytic.shape} != {arr.shape}"
        if arr.size <= max_elements:
            num = np.zeros_like(arr, dtype=np.float64)
            flat, nflat = arr.reshape(-1), num.reshape(-1)
            for i in range(arr.size):
                old = flat[i]
                flat[i] = old + eps
                push()
                fp = f()
                flat[i] = old - eps
                push()
                fm = f()
                flat[i] = old
                push()
                nflat[i] = (fp - fm) / (2 * eps)
            bad = ~np.isclose(analytic, num, rtol=rtol, atol=atol)
            if bad.any():
                idx = np.unravel_index(int(np.argmax(bad)), arr.shape)
                raise AssertionError(f"{layer.type_name} grad of {name} at {idx}: analytic "
                                     f"{analytic[idx]!r} vs numeric {num[idx]!r} "
                                     f"({int(bad.sum())} of {arr.size} elements differ)")
        else:  # directional derivatives along random unit directions
            for k in range(6):
                d = rng.standard_normal(arr.shape)
                d /= np.linalg.norm(d)
                old = arr.copy()
                arr[...] = old + eps * d
                push()
                fp = f()
                arr[...] = old - eps * d
                push()
                fm = f()
                arr[...] = old
                push()
                num = (fp - fm) / (2 * eps)
                ana = float(np.sum(analytic * d))
                if not np.isclose(ana, num, rtol=rtol, atol=atol):
                    raise AssertionError(f"{layer.type_name} grad of {name}, direction {k}: "
                                         f"analytic {ana!r} vs numeric {num!r}")

    for i in wrt:
        check(f"input {i}", dev_inputs[i], gins[i])
    if check_params:
        for k in layer.P:
            check(f"parameter {k}", layer.P[k], gparams[k])
