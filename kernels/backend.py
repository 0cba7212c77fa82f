"""The one module that chooses the array library (NumPy always; CuPy when a GPU is there).

Everything else asks this module for the array module: ``get_xp(device)`` when building,
``array_module(x)`` inside a function that was handed arrays. Nothing else imports CuPy.
"""
from __future__ import annotations

import numpy as np

from core.errors import DeviceError

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


def resolve_device(device: str) -> tuple[str, str | None]:
    """('cpu' | 'gpu', note). ``auto`` picks the GPU when usable, else the CPU with a note."""
    if device not in ("auto", "cpu", "gpu"):
        raise DeviceError(f"unknown device {device!r}; expected auto, cpu or gpu",
                          param="device")
    if device == "cpu":
        return "cpu", None
    if gpu_available():
        return "gpu", None
    if device == "gpu":
        why = "CuPy is not installed" if _cupy is None else "CuPy sees no usable GPU"
        raise DeviceError(f"device 'gpu' asked for, but {why} (install the 'gpu' extra, "
                          "or use --device cpu)", param="device")
    return "cpu", "no usable GPU found; training on the CPU with NumPy"


def get_xp(device: str = "cpu"):
    """The array module for a resolved device name ('cpu' or 'gpu')."""
    if device == "gpu":
        if not gpu_available():
            raise DeviceError("no usable GPU", param="device")
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
