"""PyTorch as the reference of the correctness tests: the one place that moves arrays to and
from torch tensors and copies weights between a layer and a torch module.

Weights go through the one mapping of our names and layouts to torch's that the exporter
uses, ``core.export.torch_layers.to_torch`` / ``from_torch`` (Dense's ``W`` [in, out] is
``weight`` [out, in], an LSTM's ``W_ih`` is ``weight_ih_l0`` transposed, ...), never a copy
of it. Arrays may live on NumPy or CuPy: they come to the host first. torch is imported only
when a function here needs it (``need_torch``, which skips the calling test without torch),
so importing this module costs nothing and skips nothing.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from core import catalogue
from core.export import torch_layers
from kernels.backend import to_host


def need_torch():
    """The torch module, or skip the calling test where torch is not installed."""
    return pytest.importorskip("torch")


def _layer_class(layer):
    """A layer instance or class as given, or the class registered under a type name."""
    if isinstance(layer, str):
        cls = catalogue.get(layer)
        assert cls is not None, f"unknown type {layer}"
        return cls
    return layer


# ---- arrays and tensors ------------------------------------------------------------------------
def tensor(x, *, grad: bool = False, dtype=None):
    """A new torch tensor with the contents of ``x`` (NumPy or CuPy array, or a scalar).

    dtype: a NumPy dtype to convert to first (``np.float64`` for a float64 reference);
    None keeps ``x``'s. grad: ``requires_grad`` (floating tensors only).
    """
    torch = need_torch()
    a = np.asarray(to_host(x))
    if dtype is not None:
        a = a.astype(dtype)
    return torch.tensor(a, requires_grad=grad)


def array(t) -> np.ndarray | None:
    """A tensor's values as a NumPy array (None stays None)."""
    return None if t is None else t.detach().cpu().numpy()


def run(fn: Callable, inputs: Sequence, gout=None, *, wrt: Sequence[int] | None = None,
        dtype=None) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """(output, input gradients) of the torch function ``fn(*tensors)`` at ``inputs``.

    Backward starts from ``gout`` (an array or a number of the output's shape; ones when
    None), so the input gradients are those of sum(out * gout). wrt: the inputs that get a
    gradient (default: every floating one); the others' entries are None. dtype: converts
    the floating inputs first (``np.float64``); integer inputs keep theirs. Module
    parameters used inside ``fn`` get their ``.grad`` as usual (``layer_grads`` reads them).
    """
    torch = need_torch()
    hosts = [np.asarray(to_host(x)) for x in inputs]
    floating = [np.issubdtype(a.dtype, np.floating) for a in hosts]
    if wrt is None:
        wrt = [i for i, f in enumerate(floating) if f]
    ts = [tensor(a, grad=i in wrt, dtype=dtype if floating[i] else None)
          for i, a in enumerate(hosts)]
    out = fn(*ts)
    if gout is None:
        g = torch.ones_like(out)
    else:
        g = torch.as_tensor(np.asarray(to_host(gout)), dtype=out.dtype)
    out.backward(g)
    return array(out), [array(t.grad) if t.requires_grad else None for t in ts]


# ---- weights: one layer <-> one torch module ---------------------------------------------------
def torch_arrays(layer, arrays: Mapping[str, Any] | None = None, *, suffix: str | None = None
                 ) -> dict[str, np.ndarray]:
    """A layer's parameters and buffers (or ``arrays``, under our names) as host arrays
    under the torch module's state_dict names and layouts."""
    if arrays is None:
        arrays = {**layer.P, **layer.B}
    return torch_layers.to_torch(_layer_class(layer), {k: to_host(v) for k, v in arrays.items()},
                                 suffix)


def load(module, layer, arrays: Mapping[str, Any] | None = None, *, suffix: str | None = None):
    """Copy a layer's parameters and buffers (or ``arrays`` under our names, for a layer
    instance, class or type name) into the torch ``module``; returns ``module``.

    suffix: as in ``to_torch`` (``""`` for an ``nn.LSTMCell``'s ``weight_ih``). The values
    are cast to the module's dtype; every array must have a place in the module.
    """
    torch = need_torch()
    state = module.state_dict()  # tensors that share the module's storage
    values = torch_arrays(layer, arrays, suffix=suffix)
    missing = set(values) - set(state)
    assert not missing, f"{type(module).__name__} has no {sorted(missing)}"
    with torch.no_grad():
        for name, a in values.items():
            assert state[name].shape == a.shape, (name, tuple(state[name].shape), a.shape)
            state[name].copy_(torch.from_numpy(a))
    return module


def layer_grads(module, layer, *, suffix: str | None = None) -> dict[str, np.ndarray]:
    """The gradients of the torch ``module``'s parameters under our names and layouts (the
    layer's, a layer class's or a type name's), for the parameters that have one."""
    grads = {name: array(p.grad) for name, p in module.named_parameters() if p.grad is not None}
    return torch_layers.from_torch(_layer_class(layer), grads, suffix)


def from_module(module, layer, *, suffix: str | None = None) -> dict[str, np.ndarray]:
    """The torch ``module``'s parameters and buffers (its state_dict) under our names and
    layouts, for those the layer has (BatchNorm's running statistics, ...)."""
    state = {name: array(t) for name, t in module.state_dict().items()}
    return torch_layers.from_torch(_layer_class(layer), state, suffix)


# ---- optimizers: named arrays as torch parameters ----------------------------------------------
def parameters(arrays: Mapping[str, Any]) -> dict:
    """name -> ``nn.Parameter`` holding a copy of each array (same dtype)."""
    torch = need_torch()
    return {k: torch.nn.Parameter(tensor(v)) for k, v in arrays.items()}


def set_grads(tparams: Mapping[str, Any], grads: Mapping[str, Any]) -> None:
    """Give each torch parameter a copy of its gradient (None where ``grads`` has None)."""
    for k, p in tparams.items():
        p.grad = None if grads[k] is None else tensor(grads[k])


def values(tparams: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """name -> the torch parameter's current values as a NumPy array."""
    return {k: array(p) for k, p in tparams.items()}


# ---- comparing -------------------------------------------------------------------------------
def assert_close(name: str, ours, theirs, tol: float, dtype=None) -> None:
    """|ours - theirs| <= tol * max(1, max |theirs|), with equal shapes; ``ours`` (host or
    device) has ``dtype`` when one is given (float32 stays float32)."""
    ours = np.asarray(to_host(ours))
    theirs = np.asarray(theirs)
    if dtype is not None:
        assert ours.dtype == dtype, f"{name}: {ours.dtype}"
    assert ours.shape == theirs.shape, f"{name}: {ours.shape} vs {theirs.shape}"
    scale = max(1.0, float(np.abs(theirs).max())) if theirs.size else 1.0
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=tol * scale, err_msg=name)
