"""Guard against two PySide6 6.12.0 defects on Python 3.11 that abort the interpreter: a
call of a void C++ method takes a reference from None, and ``Signal.emit`` takes one from
True, so their reference counts drop by one per call until "none_dealloc" / "bool_dealloc".
The canvas paints with thousands of void calls per frame and the training view emits signals
ten times a second, so either ran out within seconds or minutes.

``pyproject.toml`` keeps PySide6 below 6.12; this guard protects a process that has 6.12
anyway. Python 3.12 made these objects immortal (PEP 683); where the defect is detected, we
do the same by hand. ``gui/__init__.py`` runs it before any other editor module loads.
"""
from __future__ import annotations

import ctypes
import sys

_HUGE = 1 << 40


def _emit_leaks_true() -> bool:
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    p = _Probe()
    before = sys.getrefcount(True)
    for _ in range(64):
        p.ping.emit()
    return sys.getrefcount(True) < before - 32


def _void_leaks_none() -> bool:
    from PySide6.QtCore import QPointF

    p = QPointF()
    before = sys.getrefcount(None)
    for _ in range(64):
        p.setX(1.0)
    return sys.getrefcount(None) < before - 32


def keep_singletons_alive() -> list[str]:
    """Make the leaked singletons' reference counts inexhaustible; the names of those fixed."""
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return []
    fixed = []
    for name, obj, leaks in (("None", None, _void_leaks_none),
                             ("True", True, _emit_leaks_true),
                             ("False", False, _emit_leaks_true)):
        if sys.getrefcount(obj) >= _HUGE or not leaks():
            continue
        # ob_refcnt is the first field of every CPython object
        ctypes.c_ssize_t.from_address(id(obj)).value += _HUGE
        fixed.append(name)
    return fixed
