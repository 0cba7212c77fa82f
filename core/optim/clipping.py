"""Gradient norms and clipping, on name -> array dicts (NumPy or CuPy) of gradients, some
of which may be None (left out)."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from kernels.backend import array_module, to_host


def _squared_sums(grads: Mapping[str, Any]) -> tuple[list[str], np.ndarray]:
    """(names, Σg² per name as float64) for the gradients that are not None.

    The sums are taken in the gradients' dtype (one BLAS dot each) and fetched in one
    transfer. In float32 a square overflows for |g| above ~1.8e19 and underflows below
    ~1e-19, although the gradient itself is finite and its norm representable; the sums
    that came out infinite or below the dtype's smallest normal number are taken again in
    float64, with one more transfer for all of them, only on the steps where that happens.
    A gradient that really holds a NaN or Inf still gives a non-finite sum.
    """
    names = [n for n, g in grads.items() if g is not None]
    if not names:
        return [], np.zeros(0)
    xp = array_module(grads[names[0]])
    sums = xp.stack([xp.vdot(grads[n], grads[n]) for n in names])
    out = np.asarray(to_host(sums), dtype=np.float64)
    redo = [i for i, n in enumerate(names)
            if grads[n].dtype != np.float64 and grads[n].size
            and not np.finfo(grads[n].dtype).tiny <= out[i] < np.inf]
    if redo:
        wide = [grads[names[i]].astype(np.float64).ravel() for i in redo]
        out[redo] = np.asarray(to_host(xp.stack([xp.vdot(w, w) for w in wide])),
                               dtype=np.float64)
    return names, out


def grad_norms(grads: Mapping[str, Any]) -> tuple[dict[str, float], float]:
    """(name -> L2 norm of each gradient, global L2 norm over all of them).

    Gradients that are None are left out. All norms come to the host in one transfer.
    """
    names, sq = _squared_sums(grads)
    norms = {n: math.sqrt(s) for n, s in zip(names, sq.tolist(), strict=True)}
    return norms, math.sqrt(float(sq.sum()))


def clip_grad_norm(grads: Mapping[str, Any], max_norm: float,
                   total_norm: float | None = None) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    As ``torch.nn.utils.clip_grad_norm_``: when the norm exceeds ``max_norm`` every gradient
    is multiplied by max_norm / (norm + 1e-6). Returns the global norm before clipping.
    ``total_norm``, when the caller already has it (``grad_norms``), saves computing it again.
    A non-finite norm leaves the gradients as they are.
    """
    if total_norm is None:
        total_norm = math.sqrt(float(_squared_sums(grads)[1].sum()))
    coef = max_norm / (total_norm + 1e-6)
    if coef < 1.0:
        for g in grads.values():
            if g is not None:
                g *= coef
    return total_norm


def clip_grad_value(grads: Mapping[str, Any], clip: float) -> None:
    """Clamp every gradient element to [-clip, clip] in place (``clip_grad_value_``)."""
    for g in grads.values():
        if g is not None:
            array_module(g).clip(g, -clip, clip, out=g)
