"""Weight regularization: the L1 / L2 penalty over the weights and its gradient, on
name -> array dicts (NumPy or CuPy)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kernels.backend import array_module, to_host


def is_weight(name: str) -> bool:
    """True for a weight parameter: the part of ``name`` after the last '/' starts with 'W'.

    ``"fc1/W"`` and ``"rnn/W_ih"`` are weights; ``"fc1/b"`` and ``"bn/gamma"`` are not.
    """
    return name.rsplit("/", 1)[-1].startswith("W")


def regularization_penalty(params: Mapping[str, Any], l1: float = 0.0,
                           l2: float = 0.0) -> float:
    """l1 * Σ|w| + l2 * Σw² over the weight parameters (``is_weight``) of name -> array.

    The sums stay on the device and come to the host in one transfer.
    """
    if not (l1 or l2):
        return 0.0
    terms = []
    xp = np
    for name, w in params.items():
        if not is_weight(name):
            continue
        xp = array_module(w)
        if l1:
            terms.append(xp.abs(w).sum() * l1)
        if l2:
            terms.append(xp.vdot(w, w) * l2)  # BLAS dot: no temporary w² array
    if not terms:
        return 0.0
    return float(to_host(xp.stack(terms)).sum(dtype=np.float64))


def add_regularization_grads(params: Mapping[str, Any], grads: dict[str, Any],
                             l1: float = 0.0, l2: float = 0.0) -> None:
    """Add the gradient of ``regularization_penalty``, l1 * sign(w) + 2 * l2 * w, to ``grads``.

    In place, for the weight parameters only; a weight whose gradient is None gets the
    penalty gradient alone (a new array in ``grads``), since the penalty depends on it.
    """
    if not (l1 or l2):
        return
    for name, w in params.items():
        if not is_weight(name):
            continue
        xp = array_module(w)
        g = grads.get(name)
        if g is None:
            g = grads[name] = xp.zeros_like(w)
        work = xp.empty_like(w)
        if l2:
            g += xp.multiply(w, 2.0 * l2, out=work)
        if l1:
            xp.sign(w, out=work)  # sign(0) = 0, the subgradient torch's abs uses
            work *= l1
            g += work
