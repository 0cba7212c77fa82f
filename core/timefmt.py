"""Durations as people read them."""
from __future__ import annotations

import math


def fmt_time(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour; ``?`` for an unknown (infinite) time."""
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"
