"""The live plots: loss (``lossPlot``), per-layer gradient norms (``gradNormPlot``) and, for
recurrent graphs, the gradient norm at each time step (``stateGradPlot``).

Data arrives in batches (one per UI tick) and lands in growable NumPy buffers; a curve gets
its data once per batch, and pyqtgraph draws only what is in view, peak-downsampled, so a run
of a million steps costs no more per frame than one of a thousand.
"""
from __future__ import annotations

import io
import math

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401  (registers ImageExporter)
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QTimer
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from core.files import atomic_write
from core.training import EpochEvent, StepEvent
from gui.training.heat import layer_grad_norms

SMOOTHING = 0.9  # EMA weight of the smoothed loss (debiased, as TensorBoard smooths)
GLOBAL = "global"  # the curve of the global gradient norm in gradNormPlot
MAX_EPOCH_SYMBOLS = 60  # more epochs than this: per-epoch curves lose their symbols


class Series:
    """A float64 buffer that grows by doubling; ``data`` is the filled part (a view)."""

    def __init__(self, capacity: int = 1024):
        self._a = np.empty(capacity)
        self.n = 0

    def extend(self, values) -> None:
        v = np.asarray(values, dtype=float)
        need = self.n + len(v)
        if need > len(self._a):
            grown = np.empty(max(need, 2 * len(self._a)))
            grown[:self.n] = self._a[:self.n]
            self._a = grown
        self._a[self.n:need] = v
        self.n = need

    def pad_to(self, n: int) -> None:
        """Fill with NaN up to length ``n`` (a layer that joined late, or had no gradient)."""
        if n > self.n:
            self.extend(np.full(n - self.n, np.nan))

    @property
    def data(self) -> np.ndarray:
        return self._a[:self.n]

    def clear(self) -> None:
        self.n = 0


def _positive(y: np.ndarray) -> np.ndarray:
    """Zeros and negatives as NaN, for a log axis (gaps instead of -inf)."""
    return np.where(y > 0, y, np.nan)


def _fast_curve(item: pg.PlotDataItem) -> pg.PlotDataItem:
    item.setDownsampling(auto=True, method="peak")
    item.setClipToView(True)
    return item


def _csv_number(v: float) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


def export_png(plot: pg.PlotWidget, path, width: int | None = None) -> None:
    """Render a plot to a PNG file, written atomically."""
    exporter = pg.exporters.ImageExporter(plot.plotItem)
    if width:
        exporter.parameters()["width"] = int(width)
    image = exporter.export(toBytes=True)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    atomic_write(path, bytes(data.data()))


class _LazyRedraw:
    """Redraw once after a burst of data (a zero-delay timer), and not at all while hidden
    (a plot in a background tab): the UI thread shares the interpreter with training, so
    every millisecond spent here is a millisecond of training lost."""

    def _init_lazy(self) -> None:
        self._dirty = False
        self._redraw_timer = QTimer(self)
        self._redraw_timer.setSingleShot(True)
        self._redraw_timer.setInterval(0)
        self._redraw_timer.timeout.connect(self._redraw_if_dirty)

    def _changed(self) -> None:
        self._dirty = True
        if self.isVisible() and not self._redraw_timer.isActive():
            self._redraw_timer.start()

    def _redraw_if_dirty(self) -> None:
        if self._dirty:
            self._dirty = False
            self.redraw()

    def redraw(self) -> None:  # pragma: no cover - each plot defines it
        raise NotImplementedError

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._redraw_if_dirty()


# (pg.PlotWidget binds plotItem.clear and friends onto each instance, so the data is
# cleared by ``clear_data``: a method named ``clear`` would be shadowed)
class LossPlot(_LazyRedraw, pg.PlotWidget):
    """Training loss per step (raw and smoothed), validation loss per epoch, and the
    training / validation accuracy per epoch on a right-hand axis (classifiers only)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("lossPlot")
        pi = self.plotItem
        pi.setLabel("bottom", "step")
        pi.setLabel("left", "loss")
        # (no grid: pyqtgraph draws it with the axes, the costliest part of a frame)
        self.legend = pi.addLegend(offset=(-10, 10))
        self.raw = _fast_curve(pi.plot(pen=pg.mkPen((100, 149, 237, 90), width=1),
                                       name="loss"))
        self.smooth = _fast_curve(pi.plot(pen=pg.mkPen((30, 90, 200), width=2),
                                          name="loss (smoothed)"))
        self.val = pi.plot(pen=pg.mkPen((230, 120, 20), width=2), symbol="o", symbolSize=6,
                           symbolBrush=(230, 120, 20), name="validation loss")
        # accuracy on its own axis: a ViewBox over the main one, sharing x
        self.acc_view = pg.ViewBox()
        self.acc_view.setMouseEnabled(x=False, y=False)
        pi.scene().addItem(self.acc_view)
        pi.getAxis("right").linkToView(self.acc_view)
        pi.getAxis("right").setLabel("accuracy")
        self.acc_view.setXLink(pi)
        self.acc_view.setYRange(0, 1.02, padding=0)
        self.acc_view.enableAutoRange(y=False)
        self.train_acc = pg.PlotDataItem(pen=pg.mkPen((60, 160, 80), width=2,
                                                      style=Qt.PenStyle.DashLine),
                                         symbol="t", symbolSize=6, symbolBrush=(60, 160, 80))
        self.val_acc = pg.PlotDataItem(pen=pg.mkPen((20, 120, 40), width=2), symbol="s",
                                       symbolSize=6, symbolBrush=(20, 120, 40))
        self.acc_view.addItem(self.train_acc)
        self.acc_view.addItem(self.val_acc)
        pi.vb.sigResized.connect(self._sync_views)
        self._accuracy_shown = False
        self.set_accuracy_visible(False)
        self.steps, self.epochs, self.losses, self.smoothed = Series(), Series(), Series(), \
            Series()
        self.epoch_rows: list[tuple[float, EpochEvent]] = []  # (x, event)
        self._ema = 0.0
        self._ema_n = 0
        self.offset = 0
        self.last_x = -1.0
        self._init_lazy()

    def _sync_views(self) -> None:
        self.acc_view.setGeometry(self.plotItem.vb.sceneBoundingRect())
        self.acc_view.linkedViewChanged(self.plotItem.vb, self.acc_view.XAxis)

    def set_accuracy_visible(self, shown: bool) -> None:
        pi = self.plotItem
        if shown == self._accuracy_shown and pi.getAxis("right").isVisible() == shown:
            return
        self._accuracy_shown = shown
        pi.showAxis("right", shown)
        self.acc_view.setVisible(shown)
        if shown:
            self.legend.addItem(self.train_acc, "training accuracy")
            self.legend.addItem(self.val_acc, "validation accuracy")
        else:
            self.legend.removeItem(self.train_acc)
            self.legend.removeItem(self.val_acc)

    def begin_run(self, step_offset: int, classifier: bool) -> None:
        """A run starts at ``step_offset`` (continuing earlier curves when > 0)."""
        if step_offset == 0:
            self.clear_data()
        self.offset = step_offset
        self.set_accuracy_visible(classifier or self._accuracy_shown)

    def clear_data(self) -> None:
        for s in (self.steps, self.epochs, self.losses, self.smoothed):
            s.clear()
        self.epoch_rows = []
        self._ema, self._ema_n = 0.0, 0
        self.offset = 0
        self.last_x = -1.0
        for c in (self.raw, self.smooth, self.val, self.train_acc, self.val_acc):
            c.setData([], [])

    def add_steps(self, events: list[StepEvent]) -> None:
        w = SMOOTHING
        ema, n = self._ema, self._ema_n
        sm = []
        losses = [ev.loss for ev in events]
        for v in losses:
            ema = w * ema + (1.0 - w) * v
            n += 1
            sm.append(ema / (1.0 - w ** n))
        self._ema, self._ema_n = ema, n
        off = self.offset + 1  # x = steps done, so an epoch mark sits at its last step
        self.steps.extend([ev.step + off for ev in events])
        self.epochs.extend([ev.epoch for ev in events])
        self.losses.extend(losses)
        self.smoothed.extend(sm)
        self.last_x = self.steps.data[-1]
        self._changed()

    def add_epoch(self, ev: EpochEvent) -> None:
        self.epoch_rows.append((max(self.last_x, 0.0), ev))
        if ev.train_accuracy is not None or ev.val_accuracy is not None:
            self.set_accuracy_visible(True)
        self._changed()

    def redraw(self) -> None:
        x = self.steps.data
        self.raw.setData(x, self.losses.data)
        self.smooth.setData(x, self.smoothed.data)
        many = len(self.epoch_rows) > MAX_EPOCH_SYMBOLS  # symbols cost; a line says enough
        for curve, key in ((self.val, "val_loss"), (self.train_acc, "train_accuracy"),
                           (self.val_acc, "val_accuracy")):
            pts = [(x, getattr(e, key)) for x, e in self.epoch_rows
                   if getattr(e, key) is not None]
            if many and curve.opts["symbol"] is not None:
                curve.setSymbol(None)
            curve.setData(np.array([p[0] for p in pts], dtype=float),
                          np.array([p[1] for p in pts], dtype=float))

    def has_data(self) -> bool:
        return self.steps.n > 0

    def to_csv(self) -> str:
        """step, epoch, loss, loss_smoothed; the epoch metrics on the row of the step that
        ended the epoch (empty elsewhere)."""
        by_x = {int(x): e for x, e in self.epoch_rows}
        out = io.StringIO()
        out.write("step,epoch,loss,loss_smoothed,train_loss,val_loss,train_accuracy,"
                  "val_accuracy\n")
        for x, ep, loss, sm in zip(self.steps.data, self.epochs.data, self.losses.data,
                                   self.smoothed.data, strict=True):
            e = by_x.get(int(x))
            tail = ",,,"
            if e is not None:
                tail = ",".join(_csv_number(v) for v in (e.train_loss, e.val_loss,
                                                         e.train_accuracy, e.val_accuracy))
            out.write(f"{int(x)},{int(ep)},{float(loss)!r},{float(sm)!r},{tail}\n")
        return out.getvalue()


class GradNormPlot(_LazyRedraw, pg.PlotWidget):
    """The gradient norm of every layer per step on a log axis, plus the global norm."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("gradNormPlot")
        pi = self.plotItem
        pi.setLogMode(y=True)
        pi.setLabel("bottom", "step")
        pi.setLabel("left", "gradient norm")
        # (no grid: pyqtgraph draws it with the axes, the costliest part of a frame)
        self.legend = pi.addLegend(offset=(-10, 10))
        self.steps = Series()
        self.series: dict[str, Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.hidden: set[str] = set()
        self.offset = 0
        self._init_lazy()

    def begin_run(self, step_offset: int, layers: list[str]) -> None:
        """A run starts; ``layers``: the nodes owning parameters (one curve each)."""
        if step_offset == 0:
            self.clear_data()
        self.offset = step_offset
        for name in [GLOBAL] + list(layers):
            self._curve(name)

    def _curve(self, name: str) -> pg.PlotDataItem:
        c = self.curves.get(name)
        if c is None:
            i = len(self.curves)
            pen = (pg.mkPen((90, 90, 90), width=2, style=Qt.PenStyle.DashLine) if name == GLOBAL
                   else pg.mkPen(pg.intColor(i - 1, hues=9, values=2, maxValue=230), width=1.5))
            c = _fast_curve(self.plotItem.plot(pen=pen, name=name, connect="finite"))
            c.setVisible(name not in self.hidden)
            self.curves[name] = c
            self.series[name] = Series()
            self.series[name].pad_to(self.steps.n)
        return c

    def layers(self) -> list[str]:
        return list(self.curves)

    def color(self, name: str) -> QColor:
        return self.curves[name].opts["pen"].color()

    def set_layer_visible(self, name: str, visible: bool) -> None:
        if visible:
            self.hidden.discard(name)
        else:
            self.hidden.add(name)
        if name in self.curves:
            self.curves[name].setVisible(visible)
            if visible:
                self._curve_shown(name)  # hidden curves are not kept up to date

    def clear_data(self) -> None:
        self.steps.clear()
        for name, c in self.curves.items():
            self.plotItem.removeItem(c)
            self.legend.removeItem(name)
        self.curves, self.series = {}, {}
        self.offset = 0

    def add_steps(self, events: list[StepEvent]) -> None:
        off = self.offset + 1
        self.steps.extend([ev.step + off for ev in events])
        cols: dict[str, list[float]] = {GLOBAL: [ev.global_grad_norm for ev in events]}
        base = self.steps.n - len(events)
        for i, ev in enumerate(events):
            for node, v in layer_grad_norms(ev.grad_norm).items():
                col = cols.get(node)
                if col is None:
                    self._curve(node)
                    col = cols[node] = [math.nan] * i
                col.append(v)
        for name, s in self.series.items():
            s.pad_to(base)
            col = cols.get(name)
            if col is not None:
                col.extend([math.nan] * (len(events) - len(col)))
                s.extend(col)
            else:
                s.pad_to(self.steps.n)
        self._changed()

    def redraw(self) -> None:
        x = self.steps.data
        for name, c in self.curves.items():
            if c.isVisible() or c.xData is None or len(c.xData) == 0:
                c.setData(x, _positive(self.series[name].data))

    def _curve_shown(self, name: str) -> None:
        c = self.curves.get(name)
        if c is not None:
            c.setData(self.steps.data, _positive(self.series[name].data))

    def has_data(self) -> bool:
        return self.steps.n > 0

    def to_csv(self) -> str:
        names = list(self.series)
        out = io.StringIO()
        out.write(",".join(["step"] + names) + "\n")
        cols = [self.series[n].data for n in names]
        for i, x in enumerate(self.steps.data):
            out.write(",".join([str(int(x))] + [_csv_number(c[i]) for c in cols]) + "\n")
        return out.getvalue()


class StateGradPlot(pg.PlotWidget):
    """Recurrent graphs: the norm of the gradient reaching each recurrent state at each
    time step t, for the latest step. Falling towards t = 0: vanishing; rising: exploding."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("stateGradPlot")
        pi = self.plotItem
        pi.setLogMode(y=True)
        pi.setLabel("bottom", "time step t")
        pi.setLabel("left", "state gradient norm")
        # (no grid: pyqtgraph draws it with the axes, the costliest part of a frame)
        self.legend = pi.addLegend(offset=(-10, 10))
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.latest: dict[str, list[float]] = {}
        self.step = -1

    def show_norms(self, step: int, norms: dict[str, list[float]]) -> None:
        self.step, self.latest = step, norms
        for node, values in norms.items():
            c = self.curves.get(node)
            if c is None:
                c = self.plotItem.plot(pen=pg.mkPen(pg.intColor(len(self.curves), hues=6),
                                                    width=2), symbol="o", symbolSize=4,
                                       name=node, connect="finite")
                self.curves[node] = c
            y = np.asarray(values, dtype=float)
            c.setData(np.arange(len(y)), _positive(y))
        self.plotItem.setTitle(f"gradient at each time step (step {step + 1})")

    def clear_data(self) -> None:
        for name, c in self.curves.items():
            self.plotItem.removeItem(c)
            self.legend.removeItem(name)
        self.curves, self.latest, self.step = {}, {}, -1
        self.plotItem.setTitle(None)

    def has_data(self) -> bool:
        return bool(self.latest)


class GradientView(QWidget):
    """gradNormPlot with a checkable list of its layers, and stateGradPlot below it for
    recurrent graphs."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = GradNormPlot()
        self.state_plot = StateGradPlot()
        self.state_plot.hide()
        self.layer_list = QListWidget()
        self.layer_list.setObjectName("gradLayers")
        self.layer_list.setToolTip("Show or hide a layer's curve")
        self.layer_list.setMaximumWidth(180)
        self.layer_list.itemChanged.connect(self._on_item_changed)
        side = QVBoxLayout()
        side.setContentsMargins(0, 0, 0, 0)
        side.addWidget(QLabel("Layers"))
        side.addWidget(self.layer_list)
        top = QWidget()
        row = QHBoxLayout(top)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.plot, 1)
        row.addLayout(side)
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(top)
        split.addWidget(self.state_plot)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(split)

    def begin_run(self, step_offset: int, layers: list[str], recurrent: bool) -> None:
        if step_offset == 0:
            self.state_plot.clear_data()
        self.plot.begin_run(step_offset, layers)
        self.state_plot.setVisible(recurrent)
        self._sync_list()

    def _sync_list(self) -> None:
        have = {self.layer_list.item(i).text() for i in range(self.layer_list.count())}
        for name in self.plot.layers():
            if name in have:
                continue
            item = QListWidgetItem(name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if name in self.plot.hidden
                               else Qt.CheckState.Checked)
            item.setForeground(self.plot.color(name))
            self.layer_list.addItem(item)

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        self.plot.set_layer_visible(item.text(),
                                    item.checkState() == Qt.CheckState.Checked)

    def set_layer_visible(self, name: str, visible: bool) -> None:
        for i in range(self.layer_list.count()):
            item = self.layer_list.item(i)
            if item.text() == name:
                item.setCheckState(Qt.CheckState.Checked if visible
                                   else Qt.CheckState.Unchecked)
                return
        self.plot.set_layer_visible(name, visible)

    def add_steps(self, events: list[StepEvent]) -> None:
        n = len(self.plot.curves)
        self.plot.add_steps(events)
        if len(self.plot.curves) != n:
            self._sync_list()
        last = events[-1]
        if last.state_grad_norm:
            self.state_plot.setVisible(True)
            self.state_plot.show_norms(last.step + self.plot.offset, last.state_grad_norm)

    def clear(self) -> None:
        self.plot.clear_data()
        self.state_plot.clear_data()
        self.layer_list.clear()


def write_csv(path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))
