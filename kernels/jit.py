"""Compiled CPU kernels: the one module that imports numba (the optional extra ``fast``).

NumPy runs one pass over memory per operation, and float32 ``tanh`` and ``exp`` on one core
without vector instructions: an LSTM step is a dozen passes over small arrays, an Adam update
thirteen over every parameter, and col2im / max-pooling on small images are loops of short
rows. ``kernels/fused.py`` holds the same computations as single compiled loops; this module
decides whether they are used:

- ``enabled()``: numba imports and ``NEUROCANVAS_KERNELS`` is not ``numpy``. Without numba,
  or with ``NEUROCANVAS_KERNELS=numpy``, every layer and optimizer runs its NumPy code, which
  stays the reference and passes every test on its own.
- ``fused()``: the module of compiled kernels, imported (and numba with it) on first use, so
  a process that never trains pays nothing. Each kernel is compiled once per machine and
  cached on disk beside its source (or in ``NUMBA_CACHE_DIR``); later processes load it.
- ``usable(*arrays)``: the kernels take C-contiguous NumPy arrays whose floating-point ones
  are float32 (integer index arrays and boolean masks go with them); float64 (the gradient
  checks) and CuPy arrays take the NumPy / CuPy code.
- ``forced(flag)``: a context manager that switches the kernels on or off (tests compare
  both paths on the same data).
- ``on_compile(callback)``: ``callback()`` once, when this process first compiles a kernel
  (not when it loads one from the cache), so that a user can be told why the first step
  waits (about 10 s after an install or an update).

Kernels are written to compute what the NumPy code computes, in the same order of operations
where that order matters; float32 ``tanh`` is a rational approximation within 3e-7 of the
exact value (``fused.tanh``), which is what lets it vectorise.
"""
from __future__ import annotations

import contextlib
import importlib
import os
from types import ModuleType

import numpy as np

ENV_VAR = "NEUROCANVAS_KERNELS"

_available: bool | None = None  # numba importable (checked once)
_forced: bool | None = None  # set by ``forced``
_fused: ModuleType | None = None


def _numba_importable() -> bool:
    global _available
    if _available is None:
        try:
            importlib.import_module("numba")
            _available = True
        except Exception:  # ImportError, or an llvmlite that fails to load
            _available = False
    return _available


_switched_off: bool | None = None  # NEUROCANVAS_KERNELS=numpy, read once per process


def enabled() -> bool:
    """True when the compiled kernels are used (numba there, not switched off)."""
    global _switched_off
    if _forced is not None:
        return _forced and _numba_importable()
    if _switched_off is None:  # read once: layers ask at every call
        _switched_off = os.environ.get(ENV_VAR, "").strip().lower() == "numpy"
    return not _switched_off and _numba_importable()


def status() -> str:
    """One line for headers and ``--version``-style reports."""
    if enabled():
        import numba
        return f"numba {numba.__version__} kernels"
    if not _numba_importable():
        return "NumPy kernels (numba not installed)"
    return f"NumPy kernels ({ENV_VAR}=numpy)"


def njit(*args, **kw):
    """``numba.njit`` with the project's settings: cached on disk, NumPy's error model (a
    division by zero gives inf, as in NumPy, and does not stop loops from vectorising), and
    no fast-math by default (no fused multiply-adds, no assumptions about NaN or Inf), so
    that a kernel rounds as the NumPy operations it replaces (the kernels built on the fitted
    tanh, which match no NumPy result bit for bit, opt into multiply-add contraction alone)."""
    import numba
    kw.setdefault("cache", True)
    kw.setdefault("error_model", "numpy")
    kw.setdefault("fastmath", False)
    return numba.njit(*args, **kw)


# numpy's own BLAS, called from compiled loops (see ``cblas_sgemm``): NumPy's wheels bundle
# OpenBLAS built with 64-bit integers and this symbol prefix
_CBLAS_SGEMM = "scipy_cblas_sgemm64_"
_LIBS = ("numpy.libs", os.path.join("numpy", ".dylibs"))


def _numpy_blas_library() -> str | None:
    """The path of the OpenBLAS that NumPy's matmul calls, when it exports ``_CBLAS_SGEMM``
    (NumPy's wheels on Linux, macOS and Windows); None otherwise (a NumPy built against
    another BLAS, MKL or Accelerate for one)."""
    import ctypes
    import glob
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    except Exception:  # noqa: BLE001 - an older NumPy's config, or none: do not guess
        return None
    if blas.get("name") != "scipy-openblas" or "USE64BITINT" not in \
            str(blas.get("openblas configuration", "")):
        return None
    site = os.path.dirname(os.path.dirname(np.__file__))
    for folder in _LIBS:
        for path in sorted(glob.glob(os.path.join(site, folder, "*openblas64_*"))):
            try:
                if hasattr(ctypes.CDLL(path), _CBLAS_SGEMM):
                    return path
            except OSError:
                continue
    return None


_sgemm = False  # not looked up yet


def cblas_sgemm():
    """NumPy's own ``cblas_sgemm`` as a function compiled kernels can call (numba's
    ``ExternalFunction``, resolved by name, so kernels that call it stay cacheable), or None
    where NumPy's BLAS is not the OpenBLAS of its wheels. Kernels that run a recurrent
    layer's whole time loop (a product and a cell per step) call it, so that no step returns
    to Python between them; the products are the very calls ``np.matmul`` makes on the same
    arrays (row-major, the same transposition flags, the same thread pool), so the results
    are the same to the bit. Arguments: (order 101 row-major, trans_a, trans_b 111 no / 112
    yes, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc), pointers as ``array.ctypes``."""
    global _sgemm
    if _sgemm is False:
        _sgemm = None
        path = _numpy_blas_library() if _numba_importable() else None
        if path is not None:
            import llvmlite.binding as llvm
            from numba import types
            llvm.load_library_permanently(path)
            i32, i64, f32, ptr = types.int32, types.int64, types.float32, types.voidptr
            _sgemm = types.ExternalFunction(_CBLAS_SGEMM, types.void(
                i32, i32, i32, i64, i64, i64, f32, ptr, i64, ptr, i64, f32, ptr, i64))
    return _sgemm


def fused() -> ModuleType:
    """``kernels.fused``, imported on first use."""
    global _fused
    if _fused is None:
        _fused = importlib.import_module("kernels.fused")
    return _fused


def usable(*arrays) -> bool:
    """Whether the compiled kernels take these arrays: kernels enabled, and every array a
    C-contiguous NumPy array, float32 or of integers or booleans."""
    if not enabled():
        return False
    for a in arrays:
        if type(a) is not np.ndarray or not a.flags.c_contiguous:
            return False
        if a.dtype != np.float32 and a.dtype.kind not in "iub":
            return False
    return True


def kernels_for(*arrays) -> ModuleType | None:
    """``fused()`` when ``usable(*arrays)``, else None: ``K = kernels_for(x); if K: ...``."""
    return fused() if usable(*arrays) else None


@contextlib.contextmanager
def forced(flag: bool):
    """Within the block the compiled kernels are on (``True``, where numba is installed) or
    off (``False``), whatever the environment says."""
    global _forced
    old = _forced
    _forced = bool(flag)
    try:
        yield
    finally:
        _forced = old


COMPILING = ("compiling the CPU kernels (numba; once after an install or an update, about "
             "10 s)")


def on_compile(callback) -> bool:
    """Call ``callback()`` once, on the thread that compiles, when a kernel starts to
    compile in this process (numba's ``numba:compile`` event, which a kernel loaded from the
    on-disk cache does not fire). Returns False (and never calls it) when the kernels are off.
    The callback must be quick and take no lock its caller may hold."""
    if not enabled():
        return False
    from numba.core import event

    class _First(event.Listener):
        def __init__(self):
            self.fired = False

        def on_start(self, ev) -> None:
            if not self.fired:
                self.fired = True  # stays registered: numba is iterating its listeners
                callback()

        def on_end(self, ev) -> None:
            pass

    event.register("numba:compile", _First())
    return True

