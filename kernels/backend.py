"""The one module that chooses the array library (NumPy always; CuPy when a GPU is there).

Everything else asks this module for the array module: ``get_xp(device)`` when building,
``array_module(x)`` inside a function that was handed arrays. Nothing else imports CuPy.
"""
from __future__ import annotations

import numpy as np

try:  # CuPy is optional: the NumPy path always works.
    import cupy as _cupy  # noqa: F401  (the only import of cupy in the project)
except Exception:  # ImportError, or a CUDA library that fails to load
    _cupy = None

_gpu_checked: bool | None = None


def gpu_available() -> bool:
    """True when CuPy imports and sees at least one usable GPU."""
    global _gpu_checked
    if _gpu_checked is None:
        ok = False
        if _cupy is not None:
            try:
                ok = _cupy.cuda.runtime.getDeviceCount() > 0
            except Exception:
                ok = False
        _gpu_checked = ok
    return _gpu_checked


def gpu_missing_reason() -> str | None:
    """Why the GPU cannot be used ("CuPy is not installed", ...), or None when it can."""
    if gpu_available():
        return None
    return "CuPy is not installed" if _cupy is None else "CuPy sees no usable GPU"


def get_xp(device: str = "cpu"):
    """The array module for a resolved device name ('cpu' or 'gpu'). Asking for the GPU
    where there is none is a bug of the caller (``core.device`` checks first)."""
    if device == "gpu":
        if not gpu_available():
            raise RuntimeError(f"no usable GPU: {gpu_missing_reason()}")
        return _cupy
    return np


def array_module(x):
    """numpy or cupy, whichever holds ``x``."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy
    return np


def to_host(x) -> np.ndarray:
    """A NumPy array with the contents of ``x`` (a copy only when ``x`` is on the GPU)."""
    if _cupy is not None and isinstance(x, _cupy.ndarray):
        return _cupy.asnumpy(x)
    return np.asarray(x)


def to_device(x, xp, dtype=None):
    """``x`` as an array of ``xp`` (and ``dtype`` when given)."""
    if xp is np:
        return np.asarray(to_host(x), dtype=dtype)
    return xp.asarray(x, dtype=dtype)


def default_rng(xp, seed: int | None):
    """A seeded random generator of ``xp`` (for dropout masks)."""
    if xp is np:
        return np.random.default_rng(seed)
    return xp.random.default_rng(seed)
