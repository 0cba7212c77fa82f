"""The error a graph can cause when exported, beyond being invalid."""
from __future__ import annotations

from core.errors import NeuroCanvasError


class ExportError(NeuroCanvasError):
    """A valid graph that the chosen export cannot write; names the node."""
