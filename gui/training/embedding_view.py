"""The embedding view (``embeddingView``): the selected node's outputs on validation samples
as points in the plane, coloured by each sample's class when the graph classifies.

The training process computes it (``core.probe.embed``, docs/probe.md: evaluation mode, the
first 1000 validation samples; a node of two values per sample is drawn as it is, one value
on the x axis, a wider one by PCA onto its two main axes); this view only draws the points.
It refreshes when a node is selected, after a run, when weights are reset or loaded, and
while training at most once every ``REFRESH_S`` seconds, with one request in flight at most,
and only while it is shown.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui import theme
from gui.training.legend import CurveList

log = logging.getLogger(__name__)

REFRESH_S = 1.0  # at most one refresh a second while training
MAX_SAMPLES = 1000
MAX_CLASS_ENTRIES = 20  # more classes than this: colours without a legend entry each
VALUE_BINS = 5  # a regression target's values, in this many colour bands
# ten classes that stay apart on either theme (Tableau 10)
CLASS_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf")
POINT_SIZE = 7


def class_color(i: int, n: int) -> QColor:
    if n <= len(CLASS_COLORS):
        return QColor(CLASS_COLORS[i % len(CLASS_COLORS)])
    return pg.intColor(i, hues=n, values=1, maxValue=230)


def axis_titles(emb) -> tuple[str, str]:
    """What the axes show: the principal components with their share of the variance, or
    the node's own units."""
    if emb.projection == "pca":
        return tuple(f"PC {i + 1} ({100 * float(emb.explained[i]):.0f}% of variance)"
                     for i in range(2))
    if emb.projection == "pad":
        return "unit 0", "(none: one value per sample)"
    return "unit 0", "unit 1"


def groups(labels: np.ndarray | None) -> list[tuple[str, str, np.ndarray, QColor]]:
    """(key, legend text, sample mask, colour) per class, per band of a regression
    target's values, or one group without labels."""
    if labels is None:
        return [("all", "samples", None, QColor(theme.current().highlight))]
    labels = np.asarray(labels)
    if labels.dtype.kind in "iub":
        classes = np.unique(labels)
        out = []
        for i, c in enumerate(classes):
            mask = labels == c
            out.append((f"class:{int(c)}", f"class {int(c)} ({int(mask.sum())})", mask,
                        class_color(i, len(classes))))
        return out
    v = labels.astype(np.float64)
    finite = np.isfinite(v)
    if not finite.any():
        return [("all", "samples", None, QColor(theme.current().highlight))]
    lo, hi = float(v[finite].min()), float(v[finite].max())
    edges = np.linspace(lo, hi, VALUE_BINS + 1) if hi > lo else np.array([lo, lo + 1.0])
    cmap = pg.colormap.get("viridis")
    out = []
    nb = len(edges) - 1
    for b in range(nb):
        top = v <= edges[b + 1] if b == nb - 1 else v < edges[b + 1]
        mask = finite & (v >= edges[b]) & top
        col = cmap.map((b + 0.5) / nb, mode="qcolor")
        out.append((f"band:{b}", f"target {edges[b]:.3g} – {edges[b + 1]:.3g}", mask, col))
    return out


class EmbeddingView(QWidget):
    """The scatter of one node's outputs (``embeddingPlot``), its legend (``embeddingLegend``,
    one checkable entry per class) and a line saying what is shown (``embeddingInfo``)."""

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("embeddingView")
        self.controller = controller
        self.node: str | None = None
        self.embedding = None  # the last core.probe.Embedding shown
        self.in_flight: str | None = None  # the node asked for, while a request is out
        self.error: str | None = None
        self._dirty = False  # something changed while hidden: refresh when shown
        self._last_request = 0.0
        self.scatters: dict[str, pg.ScatterPlotItem] = {}

        self.info = QLabel("Select a node to see its outputs on validation samples as points.")
        self.info.setObjectName("embeddingInfo")
        self.info.setWordWrap(True)
        self.plot = pg.PlotWidget()
        self.plot.setObjectName("embeddingPlot")
        self.plot.setMenuEnabled(False)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        # one unit the same length on both axes: distances in the picture are distances in
        # the plane (what a triplet loss works on), and PCA's second axis looks as narrow as
        # it is
        self.plot.setAspectLocked(True)
        self.legend = CurveList("embeddingLegend", "Show or hide a class")
        self.legend.toggled.connect(self._on_toggled)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.plot, 1)
        row.addWidget(self.legend)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 0)
        lay.setSpacing(2)
        lay.addWidget(self.info)
        lay.addLayout(row, 1)
        self.legend.setVisible(False)
        self.apply_theme()

        c = controller
        c.steps_batch.connect(self._on_steps)
        c.finished.connect(lambda *_: self.refresh(force=True))
        c.weights_reset.connect(lambda *_: self.refresh(force=True))
        c.state_changed.connect(self._on_state)
        for name in ("edited", "graph_reset"):
            sig = getattr(c.document, name, None)
            if sig is not None:  # the points were of the graph as it was
                sig.connect(self._on_edited)

    def apply_theme(self) -> None:
        theme.style_plot(self.plot)
        self.legend.apply_theme()
        if self.embedding is not None:
            self.show_embedding(self.embedding)

    # ---- what to show ------------------------------------------------------------------------
    def show_node(self, node_id: str | None) -> None:
        """Show ``node_id``'s embedding (the canvas selection); None clears the view."""
        if node_id == self.node and self.embedding is not None:
            return
        self.node = node_id
        self.embedding = None
        self.error = None
        if node_id is None:
            self._clear("Select a node to see its outputs on validation samples as points.")
            return
        why = self._cannot_show(node_id)
        if why is not None:
            self._clear(f"{node_id}: {why}")
            return
        self._clear(f"{node_id}: fetching its outputs from the training process…")
        self.refresh(force=True)

    def _cannot_show(self, node_id: str) -> str | None:
        analysis = getattr(self.controller.document, "analysis", None)
        if analysis is None:
            return None
        if not analysis.ok:
            return "the graph has problems; fix them to see the embedding"
        layer = analysis.layers.get(node_id)
        if layer is not None and layer.is_loss:
            return "a loss has one value per batch, not one per sample: select a layer"
        return None

    def refresh(self, force: bool = False) -> bool:
        """Ask for the current node's embedding: at once with ``force`` (selection, the end
        of a run), else at most once every REFRESH_S seconds. Never two at a time; nothing
        while hidden (the next show refreshes)."""
        if self.node is None or self._cannot_show(self.node) is not None:
            return False
        if not self.isVisible():
            self._dirty = True
            return False
        if self.in_flight is not None:
            self._dirty = self._dirty or force
            return False
        now = time.monotonic()
        if not force and now - self._last_request < REFRESH_S:
            return False
        self._last_request = now
        self._dirty = False
        node = self.node
        self.in_flight = node
        sent = self.controller.request_probe(
            "embedding", lambda emb, n=node: self._on_embedding(n, emb),
            lambda e, n=node: self._on_error(n, e), node=node, max_samples=MAX_SAMPLES)
        if not sent:
            self.in_flight = None
        return sent

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if self._dirty or (self.node is not None and self.embedding is None
                           and self.in_flight is None and self.error is None):
            self.refresh(force=True)

    # ---- answers -----------------------------------------------------------------------------
    def _on_embedding(self, node: str, emb) -> None:
        self.in_flight = None
        if node == self.node:
            self.show_embedding(emb)
        if node != self.node or self._dirty:
            self.refresh(force=True)  # the selection moved on meanwhile

    def _on_error(self, node: str, e: Exception) -> None:
        self.in_flight = None
        if node != self.node:
            self.refresh(force=True)
            return
        self.error = str(e)
        log.info("embedding of %s failed: %s", node, e)
        self._clear(f"{node}: cannot show its embedding: {e}")

    def _on_steps(self, _events) -> None:
        self.refresh()

    def _on_state(self, state: str) -> None:
        if state == "paused":
            self.refresh(force=True)

    def _on_edited(self) -> None:
        self.embedding = None
        self.error = None
        if self.node is not None and self.node not in self.controller.document.graph.nodes:
            self.node = None
            self._clear("Select a node to see its outputs on validation samples as points.")

    # ---- drawing -----------------------------------------------------------------------------
    def _clear(self, text: str) -> None:
        self.plot.clear()
        self.scatters = {}
        self.legend.clear()
        self.legend.setVisible(False)
        self.plot.setLabel("bottom", "")
        self.plot.setLabel("left", "")
        self.info.setText(text)

    def show_embedding(self, emb) -> None:
        """Draw a ``core.probe.Embedding``."""
        self.embedding = emb
        self.error = None
        shown = {k: self.legend.is_shown(k) for k in self.legend.keys()}
        self.plot.clear()
        self.scatters = {}
        self.legend.clear()
        pts = np.asarray(emb.points, dtype=np.float64).reshape(-1, 2)
        labels = None if emb.labels is None else np.asarray(emb.labels)
        if labels is not None and len(labels) != len(pts):
            labels = None
        parts = groups(labels)
        fg = QColor(theme.current().base)
        for key, text, mask, col in parts:
            sel = pts if mask is None else pts[mask]
            fill = QColor(col)
            fill.setAlpha(200)
            item = pg.ScatterPlotItem(sel[:, 0], sel[:, 1], size=POINT_SIZE,
                                      pen=pg.mkPen(fg, width=0.6), brush=pg.mkBrush(fill))
            item.setVisible(shown.get(key, True))
            self.plot.addItem(item)
            self.scatters[key] = item
            if labels is not None and len(parts) <= MAX_CLASS_ENTRIES:
                self.legend.add(key, text, QPen(Qt.PenStyle.NoPen), symbol="o", shown=True)
                entry = self.legend.entry(key)
                entry.setIcon(_dot(col))
                self.legend.set_shown(key, shown.get(key, True))
        self.legend.setVisible(labels is not None and len(parts) <= MAX_CLASS_ENTRIES)
        bx, ly = axis_titles(emb)
        self.plot.setLabel("bottom", bx)
        self.plot.setLabel("left", ly)
        self.plot.autoRange()
        self.info.setText(self.describe(emb))

    def describe(self, emb) -> str:
        n = len(emb.points)
        what = {"pca": f"{emb.width} values per sample, projected onto their two principal "
                       "components (PCA)",
                "identity": "its 2 values per sample, as they are",
                "pad": "its 1 value per sample, on the x axis"}.get(emb.projection,
                                                                    emb.projection)
        colour = " · one colour: the graph has no classification loss to take classes from"
        if emb.labels is not None:
            colour = (" · coloured by class" if np.asarray(emb.labels).dtype.kind in "iub"
                      else " · coloured by target value")
        step = f" · after {emb.step} training steps" if emb.step >= 0 else ""
        return f"{emb.node}: {what} · {n} validation samples{colour}{step}"

    def point_count(self) -> int:
        """Points drawn (tests)."""
        return sum(len(s.data) for s in self.scatters.values())

    def _on_toggled(self, key: str, shown: bool) -> None:
        item = self.scatters.get(key)
        if item is not None:
            item.setVisible(shown)


def _dot(color: QColor):
    """A legend entry's sample: a filled dot."""
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QIcon, QPainter, QPixmap

    from gui.training.legend import SWATCH
    w, h = SWATCH
    pm = QPixmap(w, h)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(QPen(QColor(color).darker(140), 1))
        p.setBrush(QColor(color))
        p.drawEllipse(QPointF(w / 2, h / 2), 5, 5)
    finally:
        p.end()
    return QIcon(pm)
