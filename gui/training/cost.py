"""Cost on the graph: heat modes beside the gradient norm that tint every node by what it
costs (parameters, multiply-adds per sample, forward + backward time per training step,
activation memory), with the legend's scale in that quantity's unit, each node's value as a
badge, and the totals in the status bar.

Every figure comes from one request: the training process's "profile" probe
(``core.probe.GraphCost``, docs/probe.md), which counts the parameters, multiply-adds and
activation memory and times a few training steps on the current device. The GUI only
draws it; parameters and multiply-adds are not computed here, so the canvas, the badges and
the status bar cannot disagree with the profile.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QColor
from PySide6.QtWidgets import QComboBox, QLabel, QMenu, QWidget

from gui.training.heat import LegendScale

log = logging.getLogger(__name__)

PROFILE_STEPS = 3  # training steps timed per measurement
REFRESH_DELAY_MS = 600  # after an edit, the cost is measured again this long after the last

# pale yellow (cheap) -> orange -> dark red (costly): sequential, unlike the gradient's
# diverging map, so that the two modes are not mistaken for each other
COST_STOPS = ((0.0, (255, 243, 178)), (0.3, (254, 204, 92)), (0.55, (253, 141, 60)),
              (0.8, (227, 26, 28)), (1.0, (128, 0, 38)))
_POS = np.array([p for p, _ in COST_STOPS])
_RGB = np.array([c for _, c in COST_STOPS], dtype=float)


# ---- numbers in words -------------------------------------------------------------------------
def fmt_count(n: float) -> str:
    """2400 -> "2.4 k", 1.1e6 -> "1.1 M" (three significant digits at most)."""
    n = float(n)
    for size, suffix in ((1e12, " T"), (1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.3g}"


def fmt_bytes(n: float) -> str:
    n = float(n)
    for size, suffix in ((2 ** 40, " TiB"), (2 ** 30, " GiB"), (2 ** 20, " MiB"),
                         (2 ** 10, " KiB")):
        if abs(n) >= size:
            return f"{n / size:.3g}{suffix}"
    return f"{n:.0f} B"


def fmt_seconds(s: float) -> str:
    s = float(s)
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} µs"
    return f"{s * 1e9:.3g} ns"


@dataclass(frozen=True)
class Mode:
    key: str
    label: str  # in the heat-mode box and the View menu
    badge: Callable[[float], str]  # a node's value, on its badge
    tick: Callable[[float], str]  # a legend tick
    what: str  # the legend's tooltip


MODES: dict[str, Mode] = {m.key: m for m in (
    Mode("grad", "Gradient norm", str, str, ""),
    Mode("params", "Parameters", lambda v: f"{fmt_count(v)} params", fmt_count,
         "Parameters each node owns (a node sharing another's counts none), log scale."),
    Mode("macs", "Multiply-adds per sample", lambda v: f"{fmt_count(v)} MACs", fmt_count,
         "Multiply-adds of one sample's forward pass (x T in a recurrent region); a "
         "training step costs about 3x this per sample. Log scale."),
    Mode("time", "Time per step (forward + backward)", fmt_seconds, fmt_seconds,
         "Measured seconds of each node's forward and backward calls per training step, "
         "over a few steps on the current device. Log scale."),
    Mode("memory", "Activation memory", fmt_bytes, fmt_bytes,
         "Bytes of each node's output over one batch, kept for the backward pass (the "
         "memory estimate's activations). Log scale."),
)}
GRAD = "grad"


def node_values(cost, mode: str) -> dict[str, float]:
    """Per node of ``cost`` (a ``GraphCost``), the quantity of ``mode``."""
    out: dict[str, float] = {}
    for n in cost.nodes:
        if mode == "params":
            out[n.node] = float(n.params)
        elif mode == "macs":
            out[n.node] = float(n.macs)
        elif mode == "memory":
            out[n.node] = float(n.activation_bytes)
        elif mode == "time":
            out[n.node] = float((n.forward_s or 0.0) + (n.backward_s or 0.0))
    return out


def decades(values) -> tuple[int, int]:
    """The decades (log10) the positive ``values`` span: the legend's and colours' ends."""
    pos = [v for v in values if v > 0 and math.isfinite(v)]
    if not pos:
        return 0, 1
    lo, hi = math.floor(math.log10(min(pos))), math.ceil(math.log10(max(pos)))
    return lo, max(hi, lo + 1)


def cost_color(value: float, lo: int, hi: int, alpha: int = 255) -> QColor | None:
    """The colour of ``value`` on the log scale lo .. hi decades; None for 0 (no tint)."""
    if not value > 0:
        return None
    p = min(1.0, max(0.0, (math.log10(value) - lo) / (hi - lo))) if math.isfinite(value) else 1
    rgb = [float(np.interp(p, _POS, _RGB[:, i])) for i in range(3)]
    return QColor(int(rgb[0]), int(rgb[1]), int(rgb[2]), alpha)


def totals_text(cost) -> str:
    """"2.4 k params · 1.1 M MACs/sample · 3.2 ms/step · 1.5 MiB activations"."""
    t = cost.totals
    parts = [f"{fmt_count(t['params'])} params", f"{fmt_count(t['macs'])} MACs/sample"]
    if t.get("step_s") is not None:
        parts.append(f"{fmt_seconds(t['step_s'])}/step")
    parts.append(f"{fmt_bytes(t['activation_bytes'])} activations")
    return " · ".join(parts)


def node_tooltip(cost, node_id: str) -> str:
    n = cost.node(node_id)
    lines = [f"{node_id}: {n.params:,} parameters · {n.macs:,} multiply-adds per sample"]
    if n.forward_s is not None:
        lines.append(f"forward {fmt_seconds(n.forward_s)} + backward "
                     f"{fmt_seconds(n.backward_s or 0.0)} per training step")
    lines.append(f"{fmt_bytes(n.activation_bytes)} of activations for a batch of "
                 f"{cost.batch_size}")
    return "\n".join(lines)


# ---- the heat ---------------------------------------------------------------------------------
class CostHeat(QObject):
    """The heat mode of the canvas: the gradient norm (``GradientHeat``, the default) or a
    cost. Choosing a cost asks the training process for a profile (one request in flight at
    most; before any training an idle process is started that holds the weights); an edit
    or a new run measures again.

    controller: the ``TrainingController`` (its ``scene`` gets ``set_heat`` and
    ``set_badges``, its ``heat`` is shown or not); legend: the ``HeatLegend``; box: the
    ``heatMode`` combo box, kept in step."""

    mode_changed = Signal(str)
    cost_ready = Signal(object)  # GraphCost
    totals_changed = Signal(str)  # the status-bar text ("" when no cost mode is on)

    def __init__(self, controller, legend=None, box: QComboBox | None = None,
                 parent: QObject | None = None):
        super().__init__(parent or controller)
        self.controller = controller
        self.legend = legend
        self.box = box
        self.mode = GRAD
        self.cost = None  # the last GraphCost, None when stale or never measured
        self.values: dict[str, float] = {}  # what the canvas shows now, per node
        self.colors: dict[str, QColor] = {}
        self.in_flight = False
        self.error: str | None = None
        self._label: QLabel | None = None
        self._stale_timer = QTimer(self)
        self._stale_timer.setSingleShot(True)
        self._stale_timer.setInterval(REFRESH_DELAY_MS)
        self._stale_timer.timeout.connect(self._remeasure)
        if box is not None:
            box.currentIndexChanged.connect(lambda i: self.set_mode(box.itemData(i)))
        doc = controller.document
        for name in ("edited", "graph_reset"):
            sig = getattr(doc, name, None)
            if sig is not None:
                sig.connect(self._on_edited)
        controller.run_started.connect(lambda *_: self._on_edited())  # another device
        self.totals_changed.connect(self._show_totals)

    # ---- the status bar ----------------------------------------------------------------------
    def set_status_bar(self, status_bar) -> QLabel:
        """A permanent label (``costTotals``) with the totals while a cost mode is on."""
        self._label = QLabel("")
        self._label.setObjectName("costTotals")
        self._label.setVisible(False)
        status_bar.addPermanentWidget(self._label)
        return self._label

    def _show_totals(self, text: str) -> None:
        if self._label is not None:
            self._label.setText(text)
            self._label.setVisible(bool(text))
            self._label.setToolTip(self._totals_tip())

    def _totals_tip(self) -> str:
        if self.cost is None:
            return ""
        prof = self.cost.profile
        where = (f"time measured over {prof.steps} training steps on the "
                 f"{prof.device.upper()}" if prof is not None else "no time measured")
        return (f"Totals over the graph: parameters, multiply-adds per sample of one forward "
                f"pass, mean seconds per training step ({where}), and activation memory for "
                f"a batch of {self.cost.batch_size}")

    # ---- choosing --------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        """Tint the canvas by ``mode`` (a key of ``MODES``)."""
        if mode not in MODES or mode == self.mode:
            return
        self.mode = mode
        if self.box is not None and self.box.currentData() != mode:
            self.box.setCurrentIndex(self.box.findData(mode))
        heat = self.controller.heat
        if mode == GRAD:
            self.values, self.colors = {}, {}
            if self.legend is not None:
                self.legend.set_scale(None)
            heat.set_shown(True)
            self.totals_changed.emit("")
        else:
            heat.set_shown(False)
            if self.cost is not None:
                self._apply()
            else:
                self._clear_canvas()
                self.refresh()
        self.mode_changed.emit(mode)

    def refresh(self) -> bool:
        """Measure the cost again (one request at a time); False when none was sent."""
        if self.in_flight:
            return False
        analysis = getattr(self.controller.document, "analysis", None)
        if analysis is not None and not analysis.ok:
            self._failed("the graph has problems: fix them to measure its cost")
            return False
        self.in_flight = True
        self.error = None
        self.totals_changed.emit("measuring the cost of each node…")
        sent = self.controller.request_probe("profile", self._on_cost, self._on_error,
                                             steps=PROFILE_STEPS)
        if not sent:
            self.in_flight = False
        return sent

    # ---- answers ---------------------------------------------------------------------------
    def _on_cost(self, cost) -> None:
        self.in_flight = False
        self.cost = cost
        self.cost_ready.emit(cost)
        if self.mode != GRAD:
            self._apply()

    def _on_error(self, e: Exception) -> None:
        self.in_flight = False
        self._failed(str(e))

    def _failed(self, why: str) -> None:
        self.error = why
        log.info("measuring the cost failed: %s", why)
        if self.mode != GRAD:
            self._clear_canvas()
            self.totals_changed.emit(f"Cost not measured: {why}")

    def _on_edited(self) -> None:
        """The cost was of the graph as it was: measure again (after the edits settle)."""
        self.cost = None
        if self.mode != GRAD:
            self._clear_canvas()
            self._stale_timer.start()

    def _remeasure(self) -> None:
        if self.mode != GRAD and self.cost is None:
            if self.in_flight:  # the answer on its way is of the graph before the edit
                self._stale_timer.start()
                return
            self.refresh()

    # ---- drawing ---------------------------------------------------------------------------
    def _scene_call(self, name: str, arg) -> None:
        fn = getattr(self.controller.scene, name, None)
        if fn is not None:
            fn(arg)

    def _clear_canvas(self) -> None:
        self.values, self.colors = {}, {}
        self._scene_call("set_heat", None)
        self._scene_call("set_badges", None)

    def _apply(self) -> None:
        mode, cost = MODES[self.mode], self.cost
        self.values = node_values(cost, self.mode)
        lo, hi = decades(self.values.values())
        self.colors = {n: c for n, v in self.values.items()
                       if (c := cost_color(v, lo, hi)) is not None}
        self._scene_call("set_heat", self.colors)
        self._scene_call("set_badges", {n: (mode.badge(v), node_tooltip(cost, n))
                                        for n, v in self.values.items() if v > 0})
        if self.legend is not None:
            self.legend.set_scale(LegendScale(
                COST_STOPS, lo, hi, mode.tick,
                f"{mode.label}: {mode.what}\nUntinted nodes cost nothing in this mode."))
        self.totals_changed.emit(totals_text(cost))


class HeatModeBox(QComboBox):
    """The heat-mode choice (``heatMode``): gradient norm or one of the costs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("heatMode")
        self.setToolTip("What the canvas is tinted by: the gradient norm of each layer while "
                        "training, or what each node costs (measured by profiling a few "
                        "training steps on the current device)")
        for m in MODES.values():
            self.addItem(m.label, m.key)


def heat_menu(heat: CostHeat, parent: QWidget) -> QMenu:
    """View › Heat: one checkable action per mode (``heatMode_<key>``), kept in step."""
    menu = QMenu("&Heat", parent)
    group = QActionGroup(menu)
    actions = {}
    for m in MODES.values():
        a = QAction(m.label, menu)
        a.setObjectName(f"heatMode_{m.key}")
        a.setCheckable(True)
        a.setChecked(m.key == heat.mode)
        a.setData(m.key)
        group.addAction(a)
        menu.addAction(a)
        actions[m.key] = a
    group.triggered.connect(lambda a: heat.set_mode(a.data()))
    heat.mode_changed.connect(lambda key: actions[key].setChecked(True))
    return menu
