"""Looking inside a node: histograms of its weights, their gradients and its activations on
the latest training batch, from a ``core.training.Snapshot`` (host copies taken between two
steps, so nothing is read mid-update)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QLabel, QVBoxLayout, QWidget

from gui.training.legend import curve_colors, title_legend
from gui.training.plots import axes

BINS = 50
TITLES = {"weights": "weights", "grads": "gradients", "activations": "activations (latest batch)"}


def _colors() -> list[QColor]:
    col = curve_colors()
    return [col.loss, col.validation, col.accuracy, *col.series]


def histogram(values: np.ndarray, bins: int = BINS) -> tuple[np.ndarray, np.ndarray] | None:
    """(edges [bins + 1], counts [bins]) of the finite values, or None when there are none."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    lo, hi = float(v.min()), float(v.max())
    if lo == hi:  # a constant (a fresh bias): one visible bar around it
        pad = abs(lo) * 0.05 or 1e-3
        lo, hi = lo - pad, hi + pad
    counts, edges = np.histogram(v, bins=bins, range=(lo, hi))
    return edges, counts


class HistogramView(QWidget):
    """Three histogram plots for one node: weights, gradients, activations."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("histograms")
        self.title = QLabel("Select a node to look inside it.")
        self.title.setObjectName("histogramsTitle")
        self.title.setWordWrap(True)
        self.plots: dict[str, pg.PlotWidget] = {}
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for kind, label in TITLES.items():
            pw = pg.PlotWidget(axisItems=axes())
            pw.setObjectName(f"{kind}Histogram")
            pw.plotItem.setTitle(label)  # with the arrays' names: a legend over no bar
            pw.plotItem.setLabel("left", "count")
            self.plots[kind] = pw
            row.addWidget(pw)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addLayout(row)
        self.node: str | None = None
        self.step: int | None = None
        self.counts: dict[str, dict[str, int]] = {k: {} for k in self.plots}

    def clear(self, message: str = "Select a node to look inside it.") -> None:
        for kind, pw in self.plots.items():
            pw.plotItem.clear()
            pw.plotItem.setTitle(TITLES[kind])
            self.counts[kind] = {}
        self.title.setText(message)
        self.step = None

    def show_snapshot(self, node: str, snap) -> None:
        """Draw ``snap`` (a ``core.training.Snapshot``) for ``node``."""
        self.clear("")
        self.node, self.step = node, snap.step
        self._draw("weights", snap.params)
        self._draw("grads", snap.grads)
        acts = {node: snap.activations[node]} if node in snap.activations else {}
        self._draw("activations", acts)
        parts = [f"{node} after step {snap.step}"]
        if not snap.params:
            parts.append("no parameters")
        if not acts:
            parts.append("no activations yet")
        self.title.setText(" · ".join(parts))

    def _draw(self, kind: str, arrays: dict[str, np.ndarray]) -> None:
        pw = self.plots[kind]
        colors = _colors()
        entries = []
        for i, (key, arr) in enumerate(sorted(arrays.items())):
            h = histogram(arr)
            if h is None:
                continue
            edges, counts = h
            color = colors[i % len(colors)]
            fill = QColor(color)
            fill.setAlpha(90)
            pw.plotItem.plot(edges, counts, stepMode="center", fillLevel=0,
                             pen=pg.mkPen(color, width=1), brush=fill,
                             name=key.split("/", 1)[-1])
            entries.append((key.split("/", 1)[-1], color))
            self.counts[kind][key] = int(counts.sum())
        pw.plotItem.setTitle(title_legend(TITLES[kind], entries))
