"""Gradient heat: each layer's gradient norm as a colour on the canvas, and badges for layers
whose gradients vanish or explode.

The colour scale is logarithmic and fixed (not fitted to the current values), so a colour
means the same norm in every run and every frame: ``DECADES`` spans 1e-8 .. 1e4, and the
badge thresholds sit inside it (``VANISHING`` = 1e-7, ``EXPLODING`` = 1e3; see
docs/live-training.md).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

VANISHING = 1e-7  # a layer's gradient norm below this: it has practically stopped learning
EXPLODING = 1e3  # above this: updates this large wreck the weights (clip or lower the lr)
DECADES = (-8, 4)  # log10 of the ends of the colour scale

# blue (tiny) -> pale -> red (huge), a diverging map readable on light and dark themes
_STOPS = [(0.0, (49, 54, 149)), (0.2, (69, 117, 180)), (0.4, (171, 217, 233)),
          (0.6, (254, 224, 144)), (0.8, (244, 109, 67)), (1.0, (165, 0, 38))]
_POS = np.array([p for p, _ in _STOPS])
_RGB = np.array([c for _, c in _STOPS], dtype=float)


def layer_grad_norms(grad_norm: Mapping[str, float],
                     shared_root: Mapping[str, str] | None = None,
                     nodes=None) -> dict[str, float]:
    """Per node, the norm of all its parameters' gradients together: the square root of the
    sum of the squared per-parameter norms ``"node/name"``. Nodes that share another's
    parameters (``shared_root``: node -> owner) get the owner's norm."""
    sq: dict[str, float] = {}
    for key, n in grad_norm.items():
        node = key.split("/", 1)[0]
        sq[node] = sq.get(node, 0.0) + float(n) * float(n)
    out = {node: math.sqrt(v) if math.isfinite(v) else float("inf") for node, v in sq.items()}
    for node, owner in (shared_root or {}).items():
        if node != owner and owner in out and (nodes is None or node in nodes):
            out[node] = out[owner]
    return out


def scale_position(norm: float) -> float:
    """Where a norm sits on the colour scale, 0..1 (clamped)."""
    if not norm > 0:
        return 0.0
    if not math.isfinite(norm):
        return 1.0
    lo, hi = DECADES
    return min(1.0, max(0.0, (math.log10(norm) - lo) / (hi - lo)))


def heat_color(norm: float, alpha: int = 255) -> QColor:
    """The colour of a gradient norm on the fixed log scale."""
    p = scale_position(norm)
    rgb = [float(np.interp(p, _POS, _RGB[:, i])) for i in range(3)]
    return QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]), alpha)


def badge_for(norm: float) -> tuple[str, str] | None:
    """(text, tooltip) of the badge a layer with this gradient norm gets, or None."""
    if not math.isfinite(norm) or norm > EXPLODING:
        return ("exploding ∇", f"gradient norm {norm:.2g} > {EXPLODING:g}: updates this large "
                "wreck the weights; lower the learning rate or clip gradients")
    if norm < VANISHING:
        return ("vanishing ∇", f"gradient norm {norm:.2g} < {VANISHING:g}: this layer has "
                "practically stopped learning")
    return None


class GradientHeat(QObject):
    """Tints the canvas with the latest step's per-layer gradient norms.

    scene: anything with ``set_heat(dict[node_id, QColor] | None)`` and
    ``set_badges(dict[node_id, (text, tooltip)] | None)`` (the GraphScene). Updates are
    throttled to ``max_hz``: repainting the canvas at the step rate would cost the UI thread
    more than the information is worth.
    """

    def __init__(self, parent: QObject | None = None, max_hz: float = 5.0):
        super().__init__(parent)
        self.scene = None
        self.shared_root: dict[str, str] = {}
        self.nodes: set[str] | None = None
        self.min_interval = 1.0 / max_hz
        self._last = 0.0
        self._badges: dict | None = None
        self.norms: dict[str, float] = {}  # what is shown now
        self.shown = True  # False while another heat mode (cost) tints the canvas

    def set_shown(self, shown: bool) -> None:
        """Tint the canvas with the gradient norms (True) or leave the tint to another
        heat mode (False: the norms are still kept, and come back when shown again)."""
        self.shown = shown
        if shown and self.scene is not None:
            self._call("set_heat", {n: heat_color(v) for n, v in self.norms.items()} or None)
            self._call("set_badges", self._badges)

    def set_scene(self, scene) -> None:
        if self.scene is not None and self.scene is not scene:
            self._call("set_heat", None)
            self._call("set_badges", None)
        self.scene = scene
        self._badges = None

    def set_graph(self, shared_root: Mapping[str, str], nodes) -> None:
        self.shared_root = dict(shared_root)
        self.nodes = set(nodes)

    def _call(self, name: str, arg) -> None:
        fn = getattr(self.scene, name, None)
        if fn is not None:
            fn(arg)

    def update_norms(self, grad_norm: Mapping[str, float], force: bool = False) -> bool:
        """Show these per-parameter norms (one StepEvent's ``grad_norm``); False when
        throttled away."""
        now = time.monotonic()
        if not force and now - self._last < self.min_interval:
            return False
        self._last = now
        self.norms = layer_grad_norms(grad_norm, self.shared_root, self.nodes)
        if self.scene is None:
            return True
        if self.shown:
            self._call("set_heat", {n: heat_color(v) for n, v in self.norms.items()})
        badges = {n: b for n, v in self.norms.items() if (b := badge_for(v)) is not None}
        if badges != self._badges:
            if self.shown:
                self._call("set_badges", badges)
            self._badges = badges
        return True

    def clear(self) -> None:
        self.norms = {}
        self._badges = None
        self._last = 0.0
        if self.scene is not None:
            if self.shown:
                self._call("set_heat", None)
                self._call("set_badges", None)


@dataclass(frozen=True)
class LegendScale:
    """Another quantity's colour bar for the heat legend (the cost heat modes): ``stops``
    (position 0..1, (r, g, b)) over the decades ``lo`` .. ``hi`` (log10), each decade tick
    labelled ``label(10 ** d)``."""
    stops: tuple[tuple[float, tuple[int, int, int]], ...]
    lo: int
    hi: int
    label: Callable[[float], str]
    tooltip: str = ""


class HeatLegend(QWidget):
    """A horizontal colour bar with decade labels (10⁻⁸ … 10⁴) and the badge thresholds."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("heatLegend")
        self.setToolTip("Gradient heat: each layer's gradient norm, log scale.\n"
                        f"Badges: vanishing below {VANISHING:g}, exploding above {EXPLODING:g}.")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(180)
        self.scale: LegendScale | None = None  # None: the gradient-norm scale
        self._grad_tip = self.toolTip()

    def set_scale(self, scale: LegendScale | None) -> None:
        """Show ``scale`` (a cost heat mode) instead of the gradient norms; None: back."""
        self.scale = scale
        self.setToolTip(self._grad_tip if scale is None else scale.tooltip)
        self.update()

    def tick_labels(self) -> list[str]:
        """The labels under the bar, left to right (tests)."""
        if self.scale is None:
            lo, hi = DECADES
            return ["10" + _superscript(d) for d in range(lo, hi + 1, 2)]
        return [self.scale.label(10.0 ** d) for d in self._decades()]

    def _decades(self) -> list[int]:
        lo, hi = self.scale.lo, self.scale.hi
        step = max(1, math.ceil((hi - lo) / 6))  # at most about seven labels
        return list(range(lo, hi + 1, step))

    def sizeHint(self) -> QSize:
        return QSize(260, self.fontMetrics().height() * 2 + 10)

    def paintEvent(self, _event) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = self.fontMetrics()
        text_h = fm.height()
        margin = max(fm.horizontalAdvance("10⁻⁸") // 2 + 2, 8)
        bar = QRectF(margin, 2, self.width() - 2 * margin, self.height() - text_h - 6)
        grad = QLinearGradient(bar.left(), 0, bar.right(), 0)
        for pos, rgb in (_STOPS if self.scale is None else self.scale.stops):
            grad.setColorAt(pos, QColor(*rgb))
        p.fillRect(bar, grad)
        fg = self.palette().color(self.foregroundRole())
        p.setPen(QPen(fg, 1))
        if self.scale is not None:
            self._paint_ticks(p, bar, fm)
            p.end()
            return
        lo, hi = DECADES
        for d in range(lo, hi + 1, 2):
            x = bar.left() + bar.width() * (d - lo) / (hi - lo)
            p.drawLine(int(x), int(bar.bottom()), int(x), int(bar.bottom()) + 3)
            label = "10" + _superscript(d)
            w = fm.horizontalAdvance(label)
            p.drawText(QRectF(x - w / 2 - 1, bar.bottom() + 3, w + 2, text_h),
                       Qt.AlignmentFlag.AlignCenter, label)
        # the badge thresholds as dashed marks across the bar
        pen = QPen(fg, 1, Qt.PenStyle.DashLine)
        p.setPen(pen)
        for t in (VANISHING, EXPLODING):
            x = bar.left() + bar.width() * scale_position(t)
            p.drawLine(int(x), int(bar.top()), int(x), int(bar.bottom()))
        p.end()


    def _paint_ticks(self, p: QPainter, bar: QRectF, fm) -> None:
        """A cost scale's decade ticks, labels that would touch the one before left out."""
        lo, hi = self.scale.lo, self.scale.hi
        span = max(hi - lo, 1)
        right_edge = -1e9
        for d in self._decades():
            x = bar.left() + bar.width() * (d - lo) / span
            p.drawLine(int(x), int(bar.bottom()), int(x), int(bar.bottom()) + 3)
            label = self.scale.label(10.0 ** d)
            w = fm.horizontalAdvance(label)
            left = min(max(x - w / 2, 0.0), self.width() - w - 1.0)
            if left < right_edge + 4:
                continue
            right_edge = left + w
            p.drawText(QRectF(left - 1, bar.bottom() + 3, w + 2, fm.height()),
                       Qt.AlignmentFlag.AlignCenter, label)


_SUP = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _superscript(n: int) -> str:
    return str(n).translate(_SUP)
