"""Guard against a PySide6 6.12 defect on Python 3.11: every call of a C++ method that
returns void hands Python a None without a reference, so None's reference count drops by
one per call until the interpreter aborts ("none_dealloc: deallocating None"). A canvas
makes thousands of such calls per frame (QPainter.setPen, drawPath...), so panning a large
graph crashed within seconds.

Python 3.12 made None immortal (PEP 683), which is why the defect shows only on 3.11. Here we
do the same by hand: give None a reference count so large that no session can use it up.
Applied only when the defect is actually detected.
"""
from __future__ import annotations

import ctypes
import sys

_HUGE = 1 << 40


def void_calls_leak_none() -> bool:
    """True when a void PySide call takes a reference from None."""
    from PySide6.QtCore import QPointF
    p = QPointF()
    before = sys.getrefcount(None)
    for _ in range(64):
        p.setX(1.0)
    return sys.getrefcount(None) < before - 32


def keep_none_alive() -> bool:
    """Make None's reference count inexhaustible where void calls leak it; True if done."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False
    if not void_calls_leak_none():
        return False
    if sys.getrefcount(None) < _HUGE:
        # ob_refcnt is the first field of every CPython object
        ctypes.c_ssize_t.from_address(id(None)).value += _HUGE
    return True
