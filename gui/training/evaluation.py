"""The evaluation view: accuracy on the validation split and the confusion matrix as a
picture (rows: true class, columns: predicted class, shaded by the share of each row) that
fills its area, with the classes 0..C-1 on both axes."""
from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from gui.training.plots import axes

MAX_CELL_LABELS = 20  # more classes than this: the colours alone say it
MAX_CLASS_TICKS = 20  # more classes than this: every k-th class is named on the axes


def class_ticks(classes: int) -> list[tuple[float, str]]:
    """Tick marks in the middle of each class's row or column, labelled by its index."""
    step = 1 if classes <= MAX_CLASS_TICKS else math.ceil(classes / MAX_CLASS_TICKS)
    return [(i + 0.5, str(i)) for i in range(0, classes, step)]


class EvaluationView(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("evaluation")
        self.summary = QLabel("Evaluate a classifier on its validation split to see its "
                              "accuracy and confusion matrix.")
        self.summary.setObjectName("evaluationSummary")
        self.summary.setWordWrap(True)
        self.plot = pg.PlotWidget(axisItems=axes())
        self.plot.setObjectName("confusionMatrix")
        pi = self.plot.plotItem
        pi.setLabel("bottom", "predicted class")
        pi.setLabel("left", "true class")
        pi.invertY(True)
        # the matrix is the whole picture: no panning or zooming away from it
        pi.setMouseEnabled(x=False, y=False)
        pi.hideButtons()
        pi.setMenuEnabled(False)
        self.image = pg.ImageItem()
        self.image.setColorMap(pg.colormap.get("viridis"))
        pi.addItem(self.image)
        self.labels: list[pg.TextItem] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.summary)
        lay.addWidget(self.plot, 1)
        self.report = None
        self.classes = 0
        self._set_classes(0)

    def _set_classes(self, classes: int) -> None:
        """Axes from 0 to ``classes`` (1 when empty), the view exactly on the matrix."""
        pi = self.plot.plotItem
        ticks = [class_ticks(classes), []]
        for side in ("bottom", "left"):
            pi.getAxis(side).setTicks(ticks)
        extent = max(classes, 1)
        pi.vb.setLimits(xMin=0, xMax=extent, yMin=0, yMax=extent)
        pi.vb.setRange(xRange=(0, extent), yRange=(0, extent), padding=0)
        self.classes = classes

    def show_report(self, report) -> None:
        """Show a ``core.training.ClassificationReport`` (None: not a classifier)."""
        self.report = report
        for t in self.labels:
            self.plot.plotItem.removeItem(t)
        self.labels = []
        if report is None:
            self.image.clear()
            self._set_classes(0)
            self.summary.setText("Nothing to evaluate: the graph has no classification loss, "
                                 "or its validation split is empty.")
            return
        cm = np.asarray(report.confusion)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
        self.image.setImage(share.T, levels=(0.0, 1.0))  # ImageItem is indexed [x, y]
        c = cm.shape[0]
        self.image.setRect(0, 0, c, c)  # one unit per class, from 0
        if c <= MAX_CELL_LABELS:
            for t in range(c):
                for p in range(c):
                    if cm[t, p] == 0:
                        continue
                    color = (0, 0, 0) if share[t, p] > 0.6 else (255, 255, 255)
                    item = pg.TextItem(str(int(cm[t, p])), color=color, anchor=(0.5, 0.5))
                    item.setPos(p + 0.5, t + 0.5)
                    self.plot.plotItem.addItem(item)
                    self.labels.append(item)
        self._set_classes(c)
        self.summary.setText(f"Validation: accuracy {report.accuracy:.1%} on {int(cm.sum())} "
                             f"samples, loss {report.loss:.4f}")

    def clear(self) -> None:
        self.show_report(None)
        self.summary.setText("Evaluate a classifier on its validation split to see its "
                             "accuracy and confusion matrix.")
        self.report = None
