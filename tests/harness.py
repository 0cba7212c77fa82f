"""Shared test tools: build one layer in isolation, run it, and check its gradients.

``gradcheck`` compares backward with float64 central differences, element by element for
small tensors and along random directions for large ones (Chainer's gradient_check idea),
and reports where a mismatch is.
"""
from __future__ import annotations

import numpy as np

from core import catalogue
from core.layers.base import Context, Layer
from core.params import resolve_params


def build_layer(type_name: str, params: dict, in_shapes: dict, *, dtype=np.float64,
                seed: int = 0, he: bool = False, node_id: str = "n") -> Layer:
    """A layer of ``type_name`` with initialised parameters for per-sample ``in_shapes``."""
    cls = catalogue.get(type_name)
    assert cls is not None, f"unknown type {type_name}"
    resolved, problems = resolve_params(cls.all_params_spec(), params, node_id)
    assert not problems, problems
    layer = cls(node_id, resolved)
    in_shapes = {k: tuple(v) for k, v in in_shapes.items()}
    layer.out_shape = layer.infer(in_shapes)
    layer.in_shapes = in_shapes
    host = layer.init_params(np.random.default_rng(seed), he)
    layer.P = {k: np.asarray(host[k], dtype=dtype) for k in layer.param_shapes()}
    layer.B = {k: np.asarray(host[k], dtype=dtype) for k in layer.buffer_shapes()}
    layer.G = {k: None for k in layer.P}
    for k, s in layer.param_shapes().items():
        assert layer.P[k].shape == tuple(s), (k, layer.P[k].shape, s)
    return layer


def context(train: bool = True, seed: int = 0, dtype=np.float64) -> Context:
    return Context(np, train=train, rng=np.random.default_rng(seed), dtype=dtype)


def forward(layer: Layer, inputs: list, *, train: bool = True, seed: int = 0):
    out, _ = layer.forward(context(train, seed, inputs_dtype(inputs)), inputs)
    return out


def inputs_dtype(inputs):
    for x in inputs:
        if np.issubdtype(np.asarray(x).dtype, np.floating):
            return np.asarray(x).dtype
    return np.float64


def forward_backward(layer: Layer, inputs: list, gout=None, *, train: bool = True,
                     seed: int = 0):
    """(out, input grads, param grads). ``gout`` defaults to ones."""
    for k in layer.G:
        layer.G[k] = None
    ctx = context(train, seed, inputs_dtype(inputs))
    out, cache = layer.forward(ctx, inputs)
    if gout is None:
        gout = np.ones_like(out)
    gins = layer.backward(ctx, cache, gout)
    return out, gins, {k: (None if v is None else np.array(v)) for k, v in layer.G.items()}


def gradcheck(layer: Layer, inputs: list, *, wrt: list[int] | None = None, train: bool = True,
              seed: int = 0, eps: float = 1e-6, rtol: float = 1e-5, atol: float = 1e-7,
              max_elements: int = 64, check_params: bool = True) -> None:
    """Assert backward matches float64 central differences of sum(out * R).

    ``wrt``: indices of the inputs to check (default: every floating input). BatchNorm
    buffers are restored around every evaluation so running statistics do not drift.
    """
    rng = np.random.default_rng(1234)
    inputs = [np.array(x) for x in inputs]
    if wrt is None:
        wrt = [i for i, x in enumerate(inputs) if np.issubdtype(x.dtype, np.floating)]
    buffers = {k: v.copy() for k, v in layer.B.items()}

    def restore():
        for k, v in buffers.items():
            layer.B[k][...] = v

    out = forward(layer, inputs, train=train, seed=seed)
    restore()
    R = rng.standard_normal(np.shape(out))

    def f() -> float:
        o = forward(layer, inputs, train=train, seed=seed)
        restore()
        return float(np.sum(np.asarray(o, dtype=np.float64) * R))

    _, gins, gparams = forward_backward(layer, inputs, R, train=train, seed=seed)
    restore()

    def check(name: str, arr: np.ndarray, analytic) -> None:
        analytic = np.zeros_like(arr) if analytic is None else np.asarray(analytic)
        assert analytic.shape == arr.shape, f"{name}: grad shape {analytic.shape} != {arr.shape}"
        if arr.size <= max_elements:
            num = np.zeros_like(arr, dtype=np.float64)
            flat, nflat = arr.reshape(-1), num.reshape(-1)
            for i in range(arr.size):
                old = flat[i]
                flat[i] = old + eps
                fp = f()
                flat[i] = old - eps
                fm = f()
                flat[i] = old
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
                fp = f()
                arr[...] = old - eps * d
                fm = f()
                arr[...] = old
                num = (fp - fm) / (2 * eps)
                ana = float(np.sum(analytic * d))
                if not np.isclose(ana, num, rtol=rtol, atol=atol):
                    raise AssertionError(f"{layer.type_name} grad of {name}, direction {k}: "
                                         f"analytic {ana!r} vs numeric {num!r}")

    for i in wrt:
        check(f"input {i}", inputs[i], gins[i])
    if check_params:
        for k in layer.P:
            check(f"parameter {k}", layer.P[k], gparams[k])
