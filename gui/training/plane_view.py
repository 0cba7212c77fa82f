"""The input plane (the "Input plane" tab): for a graph whose Input has two features, the
model's prediction over the plane of those features with the data on top
(``decisionBoundary``), and, for the node selected on the canvas, a small map of each of its
units over the same plane (``unitMaps``), as TensorFlow Playground draws its neurons.

Everything numeric runs in the training process (``TrainingController.request_probe``,
``core.probe.plane``): this module only turns the arrays it gets back into colours. While
training it asks at most ``PLANE_HZ`` times a second, never with a request still in flight,
and not at all while the tab is hidden; after a run, on Pause, and when it is shown with
weights it has not drawn yet, it asks once.

Colours (both themes): a class's colour fades into the plot's background as the model's
confidence falls, so the decision boundary is the pale seam between two colours; values
(regression, units) use one diverging scale, orange below zero, the background's colour at
zero and blue above, the shared scale of all unit maps drawn beside them.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import QColor, QFont, QImage, QLinearGradient, QPainter, QPen
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core.errors import NeuroCanvasError
from core.layers.base import fmt_shape
from core.probe.nets import data_sources
from core.probe.plane import default_output
from gui import theme
from gui.training.controller import PAUSED, RUNNING
from gui.training.plots import axes

log = logging.getLogger(__name__)

PLANE_HZ = 5  # refreshes per second at most while training
RESOLUTION = 100  # grid points per axis
MAX_UNITS = 64  # unit maps shown at most (the probe's limit too)
MAX_POINTS = 2000  # data points per split drawn over the plane
# Playground's blue and orange first, then well-separated hues that read on white and on
# the dark theme's near-black alike
CLASS_COLORS = ("#0877bd", "#f59322", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
                "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")
NEGATIVE, POSITIVE = "#f59322", "#0877bd"  # the diverging scale's ends
SHADE_MIN, SHADE_MAX = 0.10, 0.60  # a class's tint at the lowest and full confidence


def class_color(i: int) -> QColor:
    return QColor(CLASS_COLORS[i % len(CLASS_COLORS)])


def _rgb(color: QColor | str) -> np.ndarray:
    c = QColor(color)
    return np.array([c.red(), c.green(), c.blue()], dtype=np.float32)


def class_rgba(classes: np.ndarray, confidence: np.ndarray, n_classes: int,
               background: QColor | str) -> np.ndarray:
    """uint8 [ny, nx, 4]: each point's class colour over ``background``, stronger the more
    confident the prediction (from chance, 1/C, to certainty)."""
    palette = np.stack([_rgb(class_color(i)) for i in range(max(n_classes, 1))])
    chance = 1.0 / max(n_classes, 2)
    sure = np.clip((np.nan_to_num(confidence) - chance) / (1.0 - chance), 0.0, 1.0)
    w = (SHADE_MIN + (SHADE_MAX - SHADE_MIN) * sure)[..., None]
    base = _rgb(background)
    rgb = base + (palette[np.clip(classes, 0, len(palette) - 1)] - base) * w
    return _with_alpha(rgb)


def value_scale(*arrays: np.ndarray | None) -> tuple[float, float]:
    """(lo, hi) of the diverging scale of a regression's values (and its targets): symmetric
    about 0 when they straddle it (0 is then the background's colour), else their range
    (its middle the background's colour)."""
    finite = [a[np.isfinite(a)] for a in arrays if a is not None and np.size(a)]
    finite = [a for a in finite if a.size]
    if not finite:
        return -1.0, 1.0
    lo = float(min(a.min() for a in finite))
    hi = float(max(a.max() for a in finite))
    if lo < 0.0 < hi:
        m = max(-lo, hi)
        return -m, m
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        return lo - 1.0, hi + 1.0
    return lo, hi


def unit_ranges(units: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lowest, highest) value of each unit map [U, ...] (NaN where a map has a NaN)."""
    flat = np.asarray(units, dtype=np.float32).reshape(len(units), -1)
    if flat.shape[1] == 0:
        nan = np.full(len(flat), np.nan, np.float32)
        return nan, nan
    with np.errstate(invalid="ignore"):
        return flat.min(axis=1), flat.max(axis=1)


def unit_scale(units: np.ndarray, ranges: tuple[np.ndarray, np.ndarray] | None = None
               ) -> float:
    """The |value| drawn at full colour on all unit maps: the 75th percentile of the units'
    largest |value| (among units that vary), so that one unit of large activations does not
    wash out the others; the few beyond it are drawn at full colour."""
    if len(units) == 0:
        return 1.0
    lo, hi = unit_ranges(units) if ranges is None else ranges
    ok = np.isfinite(lo) & np.isfinite(hi)
    lo, hi = lo[ok], hi[ok]
    peak = np.maximum(np.abs(lo), np.abs(hi))
    varies = (hi - lo) > 1e-6 * np.maximum(peak, 1.0)
    chosen = peak[varies] if varies.any() else peak
    m = float(np.percentile(chosen, 75)) if chosen.size else 0.0
    return m if m > 0 else 1.0


def diverging_rgba(values: np.ndarray, lo: float, hi: float,
                   background: QColor | str) -> np.ndarray:
    """uint8 [..., 4]: orange at ``lo``, ``background`` at the middle, blue at ``hi``."""
    mid, half = (lo + hi) / 2.0, max((hi - lo) / 2.0, 1e-12)
    t = np.clip((np.nan_to_num(values.astype(np.float32)) - mid) / half, -1.0, 1.0)[..., None]
    base = _rgb(background)
    end = np.where(t < 0, _rgb(NEGATIVE), _rgb(POSITIVE))
    return _with_alpha(base + (end - base) * np.abs(t))


SCALE_LEVELS = 255  # colours of the unit maps' scale; the middle one (127) is 0


@functools.lru_cache(maxsize=4)
def diverging_table(background: str) -> list[int]:
    """The unit maps' scale as a colour table for an 8-bit indexed image: index 0 is
    orange (-1), 127 the background (0), 254 blue (+1)."""
    t = np.linspace(-1.0, 1.0, SCALE_LEVELS, dtype=np.float32)
    rgba = diverging_rgba(t, -1.0, 1.0, background)
    return [0xFF000000 | (int(r) << 16) | (int(g) << 8) | int(b) for r, g, b, _ in rgba]


def diverging_index(values: np.ndarray, m: float) -> np.ndarray:
    """uint8 indices into ``diverging_table`` of ``values`` on the scale -m..m (clipped;
    NaN at the middle)."""
    half = (SCALE_LEVELS - 1) / 2.0
    scaled = np.asarray(values, dtype=np.float32) * np.float32(half / max(m, 1e-12))
    scaled += np.float32(half + 0.5)  # + 0.5: the cast below rounds down
    np.clip(scaled, 0.0, SCALE_LEVELS - 0.5, out=scaled)
    np.nan_to_num(scaled, copy=False, nan=half + 0.5)
    return scaled.astype(np.uint8)


def _with_alpha(rgb: np.ndarray) -> np.ndarray:
    out = np.empty(rgb.shape[:-1] + (4,), dtype=np.uint8)
    out[..., :3] = np.clip(np.rint(rgb), 0, 255)
    out[..., 3] = 255
    return out


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1e4 else f"{v:.2e}"


# ---- what the graph allows ------------------------------------------------------------------
@dataclass(frozen=True)
class PlaneSupport:
    """Whether the graph has an input plane: its Input, the Input's field and the node whose
    prediction is drawn, or why not (``why_not``, a sentence for the tab)."""
    input_node: str | None = None
    field: str | None = None
    output: str | None = None
    why_not: str | None = None

    @property
    def ok(self) -> bool:
        return self.why_not is None


def plane_support(analysis) -> PlaneSupport:
    """The graph's input plane, read from its shapes (nothing is computed)."""
    if analysis is None or not analysis.ok:
        return PlaneSupport(why_not="The input plane is drawn for a valid graph: fix the "
                                    "problems listed under Problems first.")
    try:
        output, _ = default_output(analysis, None)
    except NeuroCanvasError as e:
        return PlaneSupport(why_not=f"No input plane: {e}.")
    inputs = sorted(data_sources(analysis, output))
    need = ("The input plane (decision boundary and unit maps) needs a graph fed by one "
            "Input with two features, such as spirals, moons, xor or a two-column CSV; ")
    if len(inputs) != 1:
        if not inputs:
            return PlaneSupport(why_not=need + f"'{output}' depends on no Input.")
        names = ", ".join(f"'{n}'" for n in inputs)
        return PlaneSupport(why_not=need + f"'{output}' depends on {len(inputs)} Inputs "
                                           f"({names}).")
    node = inputs[0]
    layer, shape = analysis.layers[node], analysis.shapes.get(node)
    if layer.presents_steps():
        return PlaneSupport(why_not=need + f"this graph's Input '{node}' is a sequence.")
    if shape is None or tuple(shape) != (2,):
        size = int(np.prod(shape)) if shape else 0
        what = f"{size} features" if shape is not None and len(shape) == 1 else \
            f"{size} features ({fmt_shape(shape)})" if shape is not None else \
            "an unknown number of features"
        return PlaneSupport(why_not=need + f"this graph's Input '{node}' has {what}.")
    return PlaneSupport(node, str(layer.params.get("field", node)), output)


def unit_why_not(analysis, support: PlaneSupport, node: str | None) -> str | None:
    """Why ``node``'s units have no maps over the plane (None: they have)."""
    if node is None:
        return ("Select a node on the canvas to see what each of its units computes over "
                "the plane.")
    if analysis is None or node not in analysis.layers:
        return f"'{node}' is not a node of a known type."
    if analysis.shapes.get(node) is None:
        return f"The output shape of '{node}' is not known."
    if analysis.layers[node].is_loss:
        return f"'{node}' is a loss: one value per batch, not one per point of the plane."
    if node in analysis.timed:
        return f"'{node}' runs once per time step, inside a recurrent region."
    srcs = data_sources(analysis, node)
    if support.input_node not in srcs:
        return f"'{node}' does not depend on Input '{support.input_node}'."
    extra = sorted(srcs - {support.input_node})
    if extra:
        return (f"'{node}' also depends on Input '{extra[0]}', so it is no function of the "
                f"plane of '{support.input_node}'.")
    return None


def _graph_key(document) -> str:
    g = document.graph
    return json.dumps([[(n.id, n.type, n.params) for n in g.nodes.values()],
                       [e.to_dict() for e in g.edges]], sort_keys=True, default=str)


# ---- the unit maps --------------------------------------------------------------------------
class UnitMaps(QWidget):
    """A grid of small maps, one per unit, titled with the unit's index, painted on one
    shared diverging scale (``unit_scale``). The tiles share the width evenly and the height
    follows the rows they need, so a scroll area around it keeps 64 maps readable."""

    GAP = 8
    TITLE = 15

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("unitMaps")
        self.node: str | None = None
        self.units: np.ndarray | None = None  # [U, ny, nx] as received
        self.unit_count = 0
        self.scale = 1.0  # |value| drawn at full colour (larger values are clipped)
        self._ranges = (np.zeros(0), np.zeros(0))  # each unit's (lowest, highest) value
        self.images: list[QImage] = []
        self.ranges: list[tuple[float, float]] = []
        self.message = ""
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setMouseTracking(True)

    @property
    def count(self) -> int:
        """Maps shown."""
        return len(self.images)

    def min_tile(self) -> int:
        n = max(self.count, 1)
        return 150 if n <= 4 else 110 if n <= 16 else 76

    def columns(self, width: int | None = None) -> int:
        w = self.width() if width is None else width
        return max(1, min(self.count or 1, (w - self.GAP) // (self.min_tile() + self.GAP)))

    def tile(self, width: int | None = None) -> int:
        w = self.width() if width is None else width
        t = (w - self.GAP) // self.columns(w) - self.GAP
        return int(max(40, min(t, int(self.min_tile() * 1.5))))

    def _rows_height(self, width: int) -> int:
        if not self.images:
            return 60
        rows = math.ceil(self.count / self.columns(width))
        return self.GAP + rows * (self.tile(width) + self.TITLE + self.GAP)

    def set_units(self, node: str, units: np.ndarray, unit_count: int) -> None:
        self.node, self.units, self.unit_count = node, units, unit_count
        self.message = ""
        self._ranges = unit_ranges(units)
        self.scale = unit_scale(units, self._ranges)
        self._render()

    def clear(self, message: str = "") -> None:
        self.node, self.units, self.unit_count = None, None, 0
        self.images, self.ranges = [], []
        self._ranges = (np.zeros(0), np.zeros(0))
        self.message = message
        self.setToolTip("")
        self.setMinimumHeight(self._rows_height(self.width()))
        self.update()

    def apply_theme(self) -> None:
        if self.units is not None:
            self._render()
        self.update()

    def flat(self, i: int) -> bool:
        lo, hi = self.ranges[i]
        return not hi - lo > 1e-6 * max(1.0, abs(hi), abs(lo))

    def _render(self) -> None:
        # one 8-bit index per pixel into the scale's 255 colours: a few milliseconds for 64
        # maps of 100x100, where colouring each pixel in RGBA took tens
        table = diverging_table(theme.current().base)
        self.images, self.ranges = [], []
        units = self.units if self.units is not None else np.zeros((0, 1, 1), np.float32)
        if len(units) > 16 and units.shape[1] >= 64 and units.shape[2] >= 64:
            units = units[:, ::2, ::2]  # tiles of 100 px or less: half the grid is enough
        index = diverging_index(units, self.scale)[:, ::-1]  # y upwards
        los, his = self._ranges if len(self._ranges[0]) == len(units) else unit_ranges(units)
        for i in range(len(units)):
            idx = np.ascontiguousarray(index[i])
            h, w = idx.shape
            img = QImage(idx.data, w, h, w, QImage.Format.Format_Indexed8).copy()
            img.setColorTable(table)
            self.images.append(img)
            self.ranges.append((float(los[i]), float(his[i])))
        self.setMinimumHeight(self._rows_height(self.width()))
        self.update()

    def title(self, i: int) -> str:
        if not self.flat(i):
            return f"{i}"
        lo, hi = self.ranges[i]
        return f"{i}  always 0" if max(abs(lo), abs(hi)) <= 1e-6 else f"{i}  flat"

    def tile_rect(self, i: int) -> QRect:
        t, cols = self.tile(), self.columns()
        r, c = divmod(i, cols)
        return QRect(self.GAP + c * (t + self.GAP),
                     self.GAP + r * (t + self.TITLE + self.GAP) + self.TITLE, t, t)

    def sizeHint(self) -> QSize:
        return QSize(4 * (76 + self.GAP) + self.GAP, self._rows_height(400))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        h = self._rows_height(event.size().width())
        if h != self.minimumHeight():
            self.setMinimumHeight(h)

    def mouseMoveEvent(self, event) -> None:
        pos = event.position().toPoint()
        for i in range(self.count):
            if self.tile_rect(i).adjusted(0, -self.TITLE, 0, 0).contains(pos):
                lo, hi = self.ranges[i]
                why = " — the same value over the whole plane (a dead unit?)" \
                    if self.flat(i) else ""
                self.setToolTip(f"{self.node} unit {i}: from {_fmt(lo)} to {_fmt(hi)}{why}")
                return
        self.setToolTip("")

    def paintEvent(self, event) -> None:
        t = theme.current()
        p = QPainter(self)
        try:
            if not self.images:
                p.setPen(QColor(t.muted_text))
                p.drawText(self.rect().adjusted(12, 8, -12, -8),
                           int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop
                               | Qt.TextFlag.TextWordWrap), self.message)
                return
            font = QFont(p.font())
            font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
            p.setFont(font)
            frame = QPen(QColor(t.node_border))
            p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            for i, img in enumerate(self.images):
                r = self.tile_rect(i)
                if not r.intersects(event.rect().adjusted(0, -self.TITLE, 0, self.TITLE)):
                    continue
                p.drawImage(r, img)
                p.setPen(frame)
                p.drawRect(r.adjusted(0, 0, -1, -1))
                p.setPen(QColor(t.muted_text if self.flat(i) else t.text))
                p.drawText(QRect(r.left(), r.top() - self.TITLE, r.width(), self.TITLE - 2),
                           int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignBottom),
                           self.title(i))
        finally:
            p.end()


class ColorBar(QWidget):
    """A diverging scale in a line: orange at ``lo``, the background at 0, blue at ``hi``;
    only the half that is used when the values are all of one sign."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lo, self.hi = -1.0, 1.0
        self.clipped = False  # values beyond the ends exist (drawn at full colour)
        self.setFixedHeight(18)
        self.setMinimumWidth(160)

    def set_range(self, lo: float, hi: float, clipped: bool = False) -> None:
        self.lo, self.hi, self.clipped = lo, hi, clipped
        self.update()

    def labels(self) -> tuple[str, str]:
        more = "≥ " if self.clipped else ""
        left = f"≤ {_fmt(self.lo)}" if self.clipped and self.lo < 0 else _fmt(self.lo)
        right = f"{more}{_fmt(self.hi)}" if self.hi > 0 else _fmt(self.hi)
        return left, right

    def paintEvent(self, event) -> None:
        t = theme.current()
        p = QPainter(self)
        try:
            fm = p.fontMetrics()
            left, right = self.labels()
            wl, wr = fm.horizontalAdvance(left) + 6, fm.horizontalAdvance(right) + 6
            bar = QRect(wl, 4, max(self.width() - wl - wr, 20), self.height() - 8)
            g = QLinearGradient(bar.left(), 0, bar.right(), 0)
            span = max(self.hi - self.lo, 1e-12)
            zero = min(max(-self.lo / span, 0.0), 1.0)
            g.setColorAt(0.0, QColor(NEGATIVE) if self.lo < 0 else QColor(t.base))
            g.setColorAt(zero, QColor(t.base))
            g.setColorAt(1.0, QColor(POSITIVE) if self.hi > 0 else QColor(t.base))
            p.fillRect(bar, g)
            p.setPen(QColor(t.node_border))
            p.drawRect(bar.adjusted(0, 0, -1, -1))
            p.setPen(QColor(t.text))
            p.drawText(QRect(0, 0, wl - 4, self.height()),
                       int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter), left)
            p.drawText(QRect(bar.right() + 4, 0, wr, self.height()),
                       int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter), right)
        finally:
            p.end()


# ---- the tab ----------------------------------------------------------------------------------
class PlaneView(QWidget):
    """The "Input plane" tab for one ``TrainingController``: the decision boundary beside the
    selected node's unit maps, or a sentence saying why this graph has no input plane."""

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("inputPlane")
        self.controller = controller
        self.document = controller.document
        self.node: str | None = None  # the canvas selection
        self.maps = None  # the last core.probe.PlaneMaps drawn
        self.support = PlaneSupport(why_not="")
        self.requests = 0  # probes asked for (tests)
        self._in_flight = False
        self._again = False  # asked for while one was in flight: once more when it returns
        self._stale = True  # weights changed since the last picture
        self._generation = 0  # answers of an older generation are of weights now gone
        self._latest_step = -1
        self._asked_step: int | None = None
        self._process_key: str | None = None  # the graph the training process holds
        self._asked_trainer = None  # the process the request in flight went to
        self._said_changed = False  # the header says the graph changed since the picture

        self.explanation = QLabel("")
        self.explanation.setObjectName("planeExplanation")
        self.explanation.setWordWrap(True)
        self.explanation.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.explanation.setMargin(24)

        # the decision boundary
        self.header = QLabel("")
        self.header.setObjectName("planeHeader")
        self.header.setWordWrap(True)
        self.legend = QLabel("")
        self.legend.setObjectName("planeLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.readout = QLabel("")  # what the model says under the mouse
        self.readout.setObjectName("planeReadout")
        self.readout.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.plot = pg.PlotWidget(axisItems=axes())
        self.plot.setObjectName("decisionBoundary")
        pi = self.plot.plotItem
        pi.hideButtons()
        pi.setMenuEnabled(False)
        pi.showGrid(x=False, y=False)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(-10)
        pi.addItem(self.image)
        # the data on top: one scatter per split and colour (one symbol drawn per item, so
        # a thousand points cost what one does), set again only when the points change
        self.point_items: dict[tuple[str, int], pg.ScatterPlotItem] = {}
        self._points_key: tuple | None = None
        self.plot.scene().sigMouseMoved.connect(self._on_hover)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.setSpacing(2)
        lv.addWidget(self.header)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.legend)
        row.addStretch(1)
        row.addWidget(self.readout)
        lv.addLayout(row)
        lv.addWidget(self.plot, 1)

        # the unit maps
        self.units_header = QLabel("")
        self.units_header.setObjectName("unitMapsHeader")
        self.units_header.setWordWrap(True)
        self.scale_bar = ColorBar()
        self.scale_bar.setObjectName("unitScale")
        self.unit_maps = UnitMaps()
        self.scroll = QScrollArea()
        self.scroll.setObjectName("unitMapsScroll")
        self.scroll.setWidgetResizable(True)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(self.unit_maps)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.setSpacing(2)
        rv.addWidget(self.units_header)
        rv.addWidget(self.scale_bar)
        rv.addWidget(self.scroll, 1)

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("planeSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setChildrenCollapsible(False)
        self._user_split = False  # the user moved the handle: keep their sizes
        self.splitter.splitterMoved.connect(self._on_split_moved)
        left.setMinimumWidth(220)
        right.setMinimumWidth(200)

        self.stack = QStackedWidget()
        self.stack.addWidget(self.explanation)
        self.stack.addWidget(self.splitter)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.addWidget(self.stack)

        self.timer = QTimer(self)
        self.timer.setInterval(int(1000 / PLANE_HZ))
        self.timer.timeout.connect(self._tick)

        c = controller
        c.run_started.connect(self._on_run_started)
        c.steps_batch.connect(self._on_steps)
        c.state_changed.connect(self._on_state)
        c.finished.connect(self._on_finished)
        c.weights_reset.connect(self._on_weights_reset)
        changed = getattr(self.document, "analysis_changed", None)
        if changed is not None:
            changed.connect(self._on_analysis_changed)
        self._on_analysis()
        self._on_state(c.state)

    # ---- what is shown ---------------------------------------------------------------------
    @property
    def showing_plane(self) -> bool:
        return self.stack.currentWidget() is self.splitter

    @property
    def in_flight(self) -> bool:
        return self._in_flight

    def _on_split_moved(self, *_args) -> None:
        self._user_split = True

    def _on_analysis_changed(self, *_args) -> None:
        self._on_analysis()

    def _on_analysis(self) -> None:
        analysis = getattr(self.document, "analysis", None)
        self.support = plane_support(analysis)
        if not self.support.ok:
            self.explanation.setText(self.support.why_not)
            self.stack.setCurrentWidget(self.explanation)
            return
        self.stack.setCurrentWidget(self.splitter)
        self.plot.plotItem.setLabel("bottom", f"{self.support.field}[0]")
        self.plot.plotItem.setLabel("left", f"{self.support.field}[1]")
        if self.maps is None:
            self._placeholder()
        elif self._graph_changed():
            self.header.setText("The graph changed since these weights were trained: Train "
                                "to see the plane of the graph as it is now.")
            self._said_changed = True
        elif self._said_changed:  # back as it was (undo): the picture is right again
            self.show_maps(self.maps)
            if self.maps.unit_node != self.node and self.unit_why() is None:
                self.refresh()  # a node selected meanwhile
            return
        self._show_unit_state()

    def _placeholder(self) -> None:
        self.header.setText(f"Prediction of '{self.support.output}' over the plane of "
                            f"Input '{self.support.input_node}': computed in the training "
                            "process when this tab is shown (the untrained network before "
                            "Train), and live while training.")
        self.legend.setText("")

    def _graph_changed(self) -> bool:
        return self._process_key is not None and self._process_key != _graph_key(self.document)

    def show_node(self, node_id: str | None) -> None:
        """Show ``node_id``'s unit maps (the canvas selection; None: none)."""
        if node_id == self.node:
            return
        self.node = node_id
        self._show_unit_state()
        if self.support.ok and self.unit_why() is None:
            self.refresh()

    def unit_why(self) -> str | None:
        return unit_why_not(getattr(self.document, "analysis", None), self.support, self.node)

    def _show_unit_state(self) -> None:
        """The unit area's text before (or instead of) maps for the selected node."""
        why = self.unit_why()
        if why is not None:
            self.unit_maps.clear(why)
            self.units_header.setText("Unit maps")
            self.scale_bar.setVisible(False)
        elif self.maps is None or self.maps.unit_node != self.node:
            self.unit_maps.clear(f"The units of '{self.node}' come with the next picture of "
                                 "the plane…")
            self.units_header.setText(f"Units of '{self.node}'")
            self.scale_bar.setVisible(False)

    # ---- asking the training process --------------------------------------------------------
    def refresh(self, force: bool = False) -> bool:
        """Ask for the plane (and the selected node's units) unless a request is in flight
        (then once more when it returns) or, unless ``force``, the tab is hidden (then when
        it is shown). True when a request went out."""
        if not self.support.ok:
            return False
        self._forget_orphan()
        if self._in_flight:
            self._again = True
            return False
        if not force and not self.isVisible():
            self._stale = True
            return False
        if self.controller.state not in (RUNNING, PAUSED) and self._graph_changed():
            return False  # the process holds the graph as trained, not this one
        unit = self.node if self.unit_why() is None else None
        if self.controller.trainer is None:  # an idle process starts with this graph
            self._process_key = _graph_key(self.document)
        gen = self._generation
        self._in_flight, self._again, self._stale = True, False, False
        self._asked_step = self._latest_step
        self.requests += 1
        ok = self.controller.request_probe(
            "plane", lambda maps: self._on_maps(gen, maps), lambda e: self._on_error(gen, e),
            resolution=RESOLUTION, unit_node=unit, max_points=MAX_POINTS)
        self._asked_trainer = self.controller.trainer
        if not ok and gen == self._generation:
            self._in_flight = False
        return bool(ok)

    def _forget_orphan(self) -> None:
        """A request to a training process that has since been replaced (a new run, a reset)
        is answered by an error at most, and of weights that are gone: not in flight."""
        if self._in_flight and self.controller.trainer is not self._asked_trainer:
            self._generation += 1
            self._in_flight = False

    def _tick(self) -> None:
        """The 5 Hz clock while training: a request when the weights moved since the last
        one and none is in flight (a tick that finds one in flight is skipped, not queued:
        answers that come faster than the clock do not raise the rate)."""
        self._forget_orphan()
        if (self.controller.state == RUNNING and not self._in_flight
                and self._latest_step != self._asked_step):
            self.refresh()

    def _on_maps(self, gen: int, maps) -> None:
        if gen != self._generation:
            return  # of weights that are gone
        self._in_flight = False
        try:
            self.show_maps(maps)
        finally:
            self._follow_up()

    def _on_error(self, gen: int, error) -> None:
        if gen != self._generation:
            return
        self._in_flight = False
        log.info("the input plane could not be computed: %s", error)
        msg = str(error) or type(error).__name__
        if self.node is not None and getattr(error, "node", None) == self.node:
            self.unit_maps.clear(f"The units of '{self.node}' could not be computed: {msg}")
        else:
            self.header.setText(f"The input plane could not be computed: {msg}")
        self._follow_up()

    def _follow_up(self) -> None:
        if self._again:  # deferred: we are inside the controller serving its requests
            QTimer.singleShot(0, self.refresh)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if not self._user_split:  # the boundary about square, the unit maps the rest
            w, h = event.size().width(), event.size().height()
            left = min(int(w * 0.6), max(320, h + 40))
            self.splitter.setSizes([left, max(w - left, 200)])

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._stale or self.maps is None:
            QTimer.singleShot(0, self._refresh_if_idle_or_running)

    def _refresh_if_idle_or_running(self) -> None:
        if self.controller.building:
            return  # the run's first steps bring it
        if self.controller.state == RUNNING or self._stale or self.maps is None:
            self.refresh()

    # ---- training signals ---------------------------------------------------------------------
    def _on_run_started(self, info) -> None:
        self._forget_orphan()  # a new process: what the old one still says is history
        self._process_key = _graph_key(self.document)
        self._latest_step = getattr(info, "step_offset", 0) - 1

    def _on_steps(self, events: list) -> None:
        if events:
            self._latest_step = events[-1].step

    def _on_state(self, state: str) -> None:
        if state == RUNNING:
            self.timer.start()
        else:
            self.timer.stop()
        if state == PAUSED:
            self.refresh()

    def _on_finished(self, done) -> None:
        self._stale = True
        self.refresh()  # the run's last weights (later, when the tab is shown)

    def _on_weights_reset(self) -> None:
        self._generation += 1
        self._in_flight = self._again = False
        self._process_key = None
        self.maps = None
        self.image.clear()
        self._clear_points()
        self._stale = True
        self._on_analysis()
        # after the controller is done (a restart emits this before its run starts)
        QTimer.singleShot(0, self._after_reset)

    def _after_reset(self) -> None:
        if self.controller.state == "idle" and not self.controller.building:
            self.refresh()  # the loaded or initial weights, when the tab is shown

    # ---- drawing -----------------------------------------------------------------------------
    def apply_theme(self) -> None:
        theme.style_plot(self.plot)
        self.unit_maps.apply_theme()
        self.scale_bar.update()
        if self.maps is not None:
            self.show_maps(self.maps)

    def show_maps(self, maps) -> None:
        """Draw a ``core.probe.PlaneMaps``: the prediction, the points, the unit maps."""
        self.maps = maps
        self._said_changed = False
        if not self.support.ok:
            return
        t = theme.current()
        xs, ys = np.asarray(maps.xs, np.float64), np.asarray(maps.ys, np.float64)
        pts = maps.points or {}
        classes = maps.kind == "classes" and maps.classes is not None
        if classes:
            n_classes = int(maps.probabilities.shape[-1]) if maps.probabilities is not None \
                else int(maps.classes.max()) + 1
            rgba = class_rgba(maps.classes, maps.confidence, n_classes, t.base)
            lo = hi = 0.0
        else:
            values = np.asarray(maps.values)[..., 0]
            lo, hi = value_scale(values, pts.get("train_labels"), pts.get("val_labels"))
            rgba = diverging_rgba(values, lo, hi, t.base)
            n_classes = 0
        self.image.setImage(rgba, autoLevels=False)
        dx = (xs[-1] - xs[0]) / max(len(xs) - 1, 1)
        dy = (ys[-1] - ys[0]) / max(len(ys) - 1, 1)
        rect = QRectF(xs[0] - dx / 2, ys[0] - dy / 2, xs[-1] - xs[0] + dx, ys[-1] - ys[0] + dy)
        self.image.setRect(rect)
        self._show_points(pts, classes, lo, hi)
        vb = self.plot.plotItem.getViewBox()
        spans = (rect.width(), rect.height())
        vb.setAspectLocked(max(spans) <= 3 * max(min(spans), 1e-12))
        vb.setRange(rect, padding=0.0)
        self._show_header(maps, n_classes, lo, hi)
        self._show_units(maps)

    def readout_at(self, x: float, y: float) -> str:
        """What the drawn prediction is at the plane's point (x, y) ("" outside it)."""
        m = self.maps
        if m is None or len(m.xs) < 2 or len(m.ys) < 2:
            return ""
        dx, dy = (m.xs[-1] - m.xs[0]) / (len(m.xs) - 1), (m.ys[-1] - m.ys[0]) / (len(m.ys) - 1)
        i, j = round((x - m.xs[0]) / dx), round((y - m.ys[0]) / dy)
        if not (0 <= i < len(m.xs) and 0 <= j < len(m.ys)):
            return ""
        f = self.support.field or "x"
        at = f"{f} = ({_fmt(x)}, {_fmt(y)})"
        if m.kind == "classes" and m.classes is not None:
            probs = "" if m.probabilities is None else "  ·  " + ", ".join(
                f"{k}: {100 * float(q):.0f}%" for k, q in enumerate(m.probabilities[j, i][:6]))
            return f"{at}: class {int(m.classes[j, i])}{probs}"
        if m.values is not None:
            return f"{at}: {_fmt(float(m.values[j, i, 0]))}"
        return ""

    def _on_hover(self, pos) -> None:
        vb = self.plot.plotItem.getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            self.readout.setText("")
            return
        p = vb.mapSceneToView(pos)
        self.readout.setText(self.readout_at(p.x(), p.y()))

    def _clear_points(self) -> None:
        for item in self.point_items.values():
            self.plot.plotItem.removeItem(item)
        self.point_items = {}
        self._points_key = None

    def _show_points(self, pts: dict, classes: bool, lo: float, hi: float) -> None:
        """Training points filled in their class's colour and outlined in the background's;
        validation points as diamonds in the background's colour outlined in their class's
        (regression: the target's colour on the value scale, in 16 steps)."""
        t = theme.current()
        key = (t.name, classes, lo, hi) + tuple(
            (k, v.shape, hash(np.ascontiguousarray(v).tobytes())) for k, v in sorted(pts.items()))
        if key == self._points_key:
            return  # the same points (the first of each split, every refresh)
        self._clear_points()
        self._points_key = key
        for split in ("train", "val"):
            p = pts.get(f"{split}_points")
            if p is None or not len(p):
                continue
            group, colours = self._groups(pts.get(f"{split}_labels"), len(p), classes, lo, hi)
            for g in np.unique(group):
                sel = group == g
                c = colours[int(g)]
                if split == "train":
                    item = pg.ScatterPlotItem(x=p[sel, 0], y=p[sel, 1], size=6, symbol="o",
                                              brush=pg.mkBrush(c), pen=pg.mkPen(t.base, width=1))
                else:
                    item = pg.ScatterPlotItem(x=p[sel, 0], y=p[sel, 1], size=8, symbol="d",
                                              brush=pg.mkBrush(t.base), pen=pg.mkPen(c, width=2))
                item.setZValue(1 if split == "val" else 0)
                self.plot.plotItem.addItem(item)
                self.point_items[(split, int(g))] = item

    def point_count(self, split: str) -> int:
        """Points drawn of ``split`` ("train" or "val")."""
        return sum(len(item.data) for (s, _), item in self.point_items.items() if s == split)

    def _groups(self, labels, n: int, classes: bool, lo: float, hi: float
                ) -> tuple[np.ndarray, dict[int, QColor]]:
        """(each point's group, the group's colour): its class, or its target's step of the
        value scale."""
        if labels is None:
            return np.zeros(n, np.int64), {0: QColor(theme.current().muted_text)}
        if classes:
            group = np.asarray(labels).astype(np.int64)
            return group, {int(g): class_color(int(g)) for g in np.unique(group)}
        steps = np.linspace(lo, hi, 16)
        group = np.abs(np.asarray(labels, np.float64)[:, None] - steps[None, :]).argmin(axis=1)
        # strong colours, not the background's pale middle: a value near the middle is
        # still a visible point
        rgba = diverging_rgba(steps.astype(np.float32), lo, hi, "#9aa3ad")
        return group, {i: QColor(int(r), int(g), int(b)) for i, (r, g, b, _) in enumerate(rgba)}

    def _show_header(self, maps, n_classes: int, lo: float, hi: float) -> None:
        pts = maps.points or {}
        n_train = len(pts.get("train_points", ()))
        n_val = len(pts.get("val_points", ()))
        grid = f"{len(maps.xs)}×{len(maps.ys)}"
        when = f"step {maps.step}" if maps.step > 0 else "step 0 (initial or loaded weights)"
        if n_classes:
            what = (f"Class predicted by '{maps.output}' over Input '{maps.input_node}': "
                    "the stronger the colour, the surer the model; the pale seam is the "
                    "decision boundary")
        else:
            what = (f"Value of '{maps.output}' over Input '{maps.input_node}' (its first "
                    f"output): orange {_fmt(lo)}, blue {_fmt(hi)}")
        self.header.setText(f"{what} · {when} · {grid} grid, evaluation mode")
        t = theme.current()
        entries = []
        for i in range(min(n_classes, 20)):
            entries.append(f"<span style='color:{class_color(i).name()}'>&#9632;</span>"
                           f"&nbsp;class&nbsp;{i}")
        if n_classes > 20:
            entries.append(f"… {n_classes} classes")
        entries.append(f"<span style='color:{t.muted_text}'>&#9679;</span>&nbsp;training "
                       f"({n_train})")
        if n_val:
            entries.append(f"<span style='color:{t.muted_text}'>&#9671;</span>&nbsp;"
                           f"validation ({n_val})")
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(entries))

    def _show_units(self, maps) -> None:
        why = self.unit_why()
        if why is not None:
            self._show_unit_state()
            return
        if maps.units is None or maps.unit_node != self.node:
            self._show_unit_state()
            return
        units = np.asarray(maps.units)
        self.unit_maps.set_units(maps.unit_node, units, maps.unit_count)
        m = self.unit_maps.scale
        finite = units[np.isfinite(units)]
        lo = -m if finite.size and finite.min() < 0 else 0.0
        hi = m if not finite.size or finite.max() > 0 else 0.0
        self.scale_bar.set_range(lo, hi, bool(finite.size and np.abs(finite).max() > m))
        self.scale_bar.setVisible(True)
        analysis = getattr(self.document, "analysis", None)
        shape = analysis.shapes.get(self.node) if analysis is not None else None
        shown = len(maps.units)
        of = f"the first {shown} of {maps.unit_count} units" if maps.unit_count > shown \
            else f"its {shown} unit{'s' if shown != 1 else ''}"
        conv = " (each channel's mean over its image)" if shape is not None and \
            len(shape) == 3 else ""
        self.units_header.setText(f"'{self.node}': {of}{conv} over the same plane, on one "
                                  "shared scale")
