"""The live plots: loss (``lossPlot``), per-layer gradient norms (``gradNormPlot``) and, for
recurrent graphs, the gradient norm at each time step (``stateGradPlot``).

Data arrives in batches (one per UI tick) and lands in growable NumPy buffers; a curve gets
its data once per batch, and pyqtgraph draws only what is in view, peak-downsampled, so a run
of a million steps costs no more per frame than one of a thousand.

Legends sit beside the plots (``gui.training.legend``), never over a curve; axes never
draw two tick labels over each other (``Axis``), and an empty plot shows a sensible range.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
import pyqtgraph.exporters  # noqa: F401  (registers ImageExporter)
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QHBoxLayout, QWidget

from core.files import atomic_write
from core.training import EpochEvent, StepEvent
from gui import theme
from gui.training.heat import layer_grad_norms
from gui.training.legend import CurveList, curve_colors, layer_color, title_legend

SMOOTHING = 0.9  # EMA weight of the smoothed loss (debiased, as TensorBoard smooths)
GLOBAL = "global"  # the curve of the global gradient norm in gradNormPlot
MAX_EPOCH_SYMBOLS = 60  # more epochs than this: per-epoch curves lose their symbols
EMPTY_STEPS = 100  # the step axis of a plot before any run
EMPTY_LOG_RANGE = (-3.0, 1.0)  # log10 range of an empty gradient axis: 1e-3 .. 10


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


class Smoother:
    """The debiased exponential moving average of a loss, carried across batches."""

    def __init__(self):
        self.ema, self.n = 0.0, 0

    def run(self, values) -> list[float]:
        w, ema, n, out = SMOOTHING, self.ema, self.n, []
        for v in values:
            ema = w * ema + (1.0 - w) * v
            n += 1
            out.append(ema / (1.0 - w ** n))
        self.ema, self.n = ema, n
        return out


def _positive(y: np.ndarray) -> np.ndarray:
    """Zeros and negatives as NaN, for a log axis (gaps instead of -inf)."""
    return np.where(y > 0, y, np.nan)


def _fast_curve(item: pg.PlotDataItem) -> pg.PlotDataItem:
    item.setDownsampling(auto=True, method="peak")
    item.setClipToView(True)
    return item


def _csv_number(v: float) -> str:
    if v is None or math.isnan(float(v)):
        return ""
    return repr(float(v))


def _csv_text(text: str) -> str:
    """A CSV field: quoted when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _pen(color: QColor, width: float = 2.0, alpha: int = 255, dash: bool = False) -> QPen:
    c = QColor(color)
    c.setAlpha(alpha)
    return pg.mkPen(c, width=width, style=Qt.PenStyle.DashLine if dash else Qt.PenStyle.SolidLine)


def export_png(plot: pg.PlotWidget, path, width: int | None = None,
               legend: list[tuple[str, QPen]] | None = None) -> None:
    """Render a plot to a PNG file, written atomically. ``legend``: (label, pen) entries
    drawn in a legend inside the image (the legend lists beside the plots are widgets of
    their own, which the image would lack), for compared runs."""
    item = None
    if legend:
        item = pg.LegendItem(offset=(-10, 10), labelTextColor=plot.plotItem.getAxis(
            "bottom").textPen().color())
        item.setParentItem(plot.plotItem.vb)
        for label, pen in legend:
            item.addItem(pg.PlotDataItem(pen=pen), label)
    try:
        exporter = pg.exporters.ImageExporter(plot.plotItem)
        if width:
            exporter.parameters()["width"] = int(width)
        image = exporter.export(toBytes=True)
    finally:
        if item is not None and item.scene() is not None:
            item.scene().removeItem(item)
    data = QByteArray()
    buf = QBuffer(data)
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    buf.close()
    atomic_write(path, bytes(data.data()))


class Axis(pg.AxisItem):
    """An axis that never draws two tick labels over each other: pyqtgraph can (the minor
    labels of a log axis crowd below each decade), so a label that would touch one already
    placed (decades first) is left out."""

    def generateDrawSpecs(self, p):
        specs = super().generateDrawSpecs(p)
        if specs is None:
            return None
        axis_spec, tick_specs, text_specs = specs
        kept: list = []
        for spec in text_specs:
            rect = spec[0].adjusted(-2, -1, 2, 1)  # a little air between labels
            if not any(rect.intersects(k[0]) for k in kept):
                kept.append(spec)
        return axis_spec, tick_specs, kept


def axes(*sides: str) -> dict[str, Axis]:
    """Axes for a PlotWidget's ``axisItems``: left and bottom, and any ``sides`` more
    (pyqtgraph shows every axis it is given)."""
    return {side: Axis(side) for side in ("left", "bottom", *sides)}


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


# ---- compared runs ----------------------------------------------------------------------------
@dataclass
class Overlay:
    """A finished (or earlier) run drawn over the live plots, to compare with: its loss per
    step and validation loss per epoch in ``lossPlot``, its global gradient norm in
    ``gradNormPlot``, in its own colour and named by ``label`` in the legends."""
    key: str  # run id (or a live variant's key)
    label: str  # shown in the legend, e.g. "adam lr=0.001"
    color: QColor
    steps: np.ndarray  # x of the step curve (global step)
    loss: np.ndarray  # per-step training loss
    epoch_steps: np.ndarray  # x of the epoch points (step at the end of each epoch)
    val_loss: np.ndarray  # per-epoch validation loss (NaN where none); may be empty
    grad_norm: np.ndarray  # per-step global gradient norm (for gradNormPlot)
    status: str = "finished"  # "failed" draws dashed, with the label suffixed " (failed)"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    @property
    def legend_label(self) -> str:
        return f"{self.label} (failed)" if self.failed else self.label

    @property
    def legend_key(self) -> str:
        return f"run:{self.key}"

    def pen(self, width: float = 2.0) -> QPen:
        return _pen(self.color, width, dash=self.failed)

    @property
    def end(self) -> float:
        """The last step it reaches (0 when it has none)."""
        ends = [float(a[-1]) for a in (self.steps, self.epoch_steps) if len(a)]
        return max(ends, default=0.0)


def overlay_from_events(key, label, color, steps: list[StepEvent], epochs: list[EpochEvent],
                        status="finished") -> Overlay:
    """The overlay of a run's logged events (``metrics.jsonl``): x is the steps done, as the
    live curves count them, so an epoch point sits at the epoch's last step."""
    x = np.array([ev.step + 1 for ev in steps], dtype=float)
    last_of_epoch: dict[int, float] = {}
    for ev in steps:
        last_of_epoch[ev.epoch] = float(ev.step + 1)
    epoch_x, done = [], 0.0
    for ev in epochs:
        done = last_of_epoch.get(ev.epoch, done)
        epoch_x.append(done)
    val = [math.nan if ev.val_loss is None else float(ev.val_loss) for ev in epochs]
    return Overlay(str(key), str(label), QColor(color), x,
                   np.array([ev.loss for ev in steps], dtype=float),
                   np.array(epoch_x, dtype=float), np.array(val, dtype=float),
                   np.array([ev.global_grad_norm for ev in steps], dtype=float), status)


# compared runs' colours: none of the live curves' (blue loss, orange validation, teal
# accuracy), each distinct from the others on its theme's plot background
RUN_COLORS = {"light": ("#8e44ad", "#2e8b3e", "#d6339a", "#d0342c", "#6b4f2a", "#c48f00"),
              "dark": ("#b57ad1", "#6cc26c", "#f06ac0", "#f0625a", "#c9a27a", "#f2c230")}


def run_colors(n: int) -> list[QColor]:
    """``n`` distinct colours for compared runs, from the theme; past its six, evenly
    spaced hues."""
    dark = theme.current().name == "dark"
    out = [QColor(c) for c in RUN_COLORS["dark" if dark else "light"][:n]]
    extra = n - len(out)
    value = 235 if dark else 175  # reads on the plot background
    for i in range(extra):
        out.append(QColor.fromHsv(int(15 + i * 360 / extra) % 360, 170, value))
    return out


def _smooth(values: np.ndarray) -> np.ndarray:
    """The live plot's smoothing (a debiased EMA), skipping NaN (a gap stays a gap)."""
    out = np.full(len(values), np.nan)
    sm = Smoother()
    finite = np.isfinite(values)
    out[finite] = sm.run(values[finite].tolist())
    return out


class _LossCurves:
    """The curves of one loss (or of the total): every step (faint), smoothed, and the
    validation loss per epoch; its series of every step and smoothed."""

    def __init__(self, plot_item, name: str):
        self.name = name
        self.raw = _fast_curve(plot_item.plot(connect="finite"))
        self.smooth = _fast_curve(plot_item.plot(connect="finite"))
        self.val = plot_item.plot(symbol="o", symbolSize=6)
        self.values, self.smoothed = Series(), Series()
        self.smoother = Smoother()

    @property
    def items(self) -> list[pg.PlotDataItem]:
        return [self.raw, self.smooth, self.val]

    def style(self, color: QColor, val_color: QColor, raw_alpha: int) -> None:
        self.raw.setPen(_pen(color, 1, raw_alpha))
        self.smooth.setPen(_pen(color, 2))
        self.val.setPen(_pen(val_color, 2))
        self.val.setSymbolBrush(val_color)
        self.val.setSymbolPen(_pen(val_color, 1))

    def add(self, values: list[float]) -> None:
        self.values.extend(values)
        self.smoothed.extend(self.smoother.run(values))

    def clear(self) -> None:
        self.values.clear()
        self.smoothed.clear()
        self.smoother = Smoother()
        for c in self.items:
            c.setData([], [])


# (pg.PlotWidget binds plotItem.clear and friends onto each instance, so the data is
# cleared by ``clear_data``: a method named ``clear`` would be shadowed)
class LossPlot(_LazyRedraw, pg.PlotWidget):
    """Training loss per step (raw and smoothed), validation loss per epoch, and the
    training / validation accuracy per epoch on a right-hand axis (classification losses
    only). A graph with several losses also gets each loss's curves under its node's name,
    the total drawn as their sum. The legend is ``legend``, a list to put beside it."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, axisItems=axes("right"))
        self.setObjectName("lossPlot")
        pi = self.plotItem
        pi.setLabel("bottom", "step")
        pi.setLabel("left", "loss")
        # (no grid: pyqtgraph draws it with the axes, the costliest part of a frame)
        self.legend = CurveList("lossLegend")
        self.legend.toggled.connect(self._on_toggled)
        self.total = _LossCurves(pi, "loss")
        self.raw, self.smooth, self.val = self.total.raw, self.total.smooth, self.total.val
        # accuracy on its own axis: a ViewBox over the main one, sharing x
        self.acc_view = pg.ViewBox()
        self.acc_view.setMouseEnabled(x=False, y=False)
        pi.scene().addItem(self.acc_view)
        pi.getAxis("right").linkToView(self.acc_view)
        pi.getAxis("right").setLabel("accuracy")
        self.acc_view.setXLink(pi)
        self.acc_view.setYRange(0, 1.02, padding=0)
        self.acc_view.enableAutoRange(y=False)
        # the first classification loss's accuracy: the graph-wide figures of an epoch
        self.train_acc = pg.PlotDataItem(symbol="t", symbolSize=6)
        self.val_acc = pg.PlotDataItem(symbol="s", symbolSize=6)
        self.acc_view.addItem(self.train_acc)
        self.acc_view.addItem(self.val_acc)
        pi.vb.sigResized.connect(self._sync_views)
        self.per_loss: dict[str, _LossCurves] = {}  # several losses: one set per loss node
        self.classifiers: list[str] = []  # the loss nodes that report accuracy
        self.acc_curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._accuracy_shown = False
        self.hidden: set[str] = set()  # legend keys the user unchecked
        self.steps, self.epochs = Series(), Series()
        self.losses, self.smoothed = self.total.values, self.total.smoothed
        self.epoch_rows: list[tuple[float, EpochEvent]] = []  # (x, event)
        self.offset = 0
        self.epoch_offset = 0
        self.last_x = -1.0
        self._many = False
        self.overlays: list[Overlay] = []  # compared runs, drawn with the live curves
        self.overlay_items: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._init_lazy()
        self.apply_theme()
        self.set_accuracy_visible(False)
        self._sync_legend()
        self._empty_range()

    def _sync_views(self) -> None:
        self.acc_view.setGeometry(self.plotItem.vb.sceneBoundingRect())
        self.acc_view.linkedViewChanged(self.plotItem.vb, self.acc_view.XAxis)

    # ---- what is drawn ---------------------------------------------------------------------
    @property
    def several(self) -> bool:
        return bool(self.per_loss)

    def set_losses(self, losses: list[str], classifiers: list[str]) -> None:
        """The graph's loss nodes and those that classify: per-loss curves with several
        losses, accuracy curves for each classifier (none for a regression graph)."""
        losses = list(losses) if len(losses) > 1 else []
        if list(self.per_loss) != losses:
            for c in self.per_loss.values():
                for item in c.items:
                    self.plotItem.removeItem(item)
            self.per_loss = {n: _LossCurves(self.plotItem, n) for n in losses}
            for c in self.per_loss.values():
                c.values.pad_to(self.steps.n)  # a loss that joins late has no earlier values
                c.smoothed.pad_to(self.steps.n)
        classifiers = list(classifiers)
        if classifiers != self.classifiers:
            for pair in self.acc_curves.values():
                if pair != (self.train_acc, self.val_acc):
                    for item in pair:
                        self.acc_view.removeItem(item)
            self.classifiers = classifiers
            self.acc_curves = {}
            for i, nid in enumerate(classifiers):
                if i == 0:
                    self.acc_curves[nid] = (self.train_acc, self.val_acc)
                else:
                    pair = (pg.PlotDataItem(symbol="t", symbolSize=6),
                            pg.PlotDataItem(symbol="s", symbolSize=6))
                    for item in pair:
                        self.acc_view.addItem(item)
                    self.acc_curves[nid] = pair
        self.apply_theme()
        self.set_accuracy_visible(bool(classifiers))
        self._sync_legend()

    def set_accuracy_visible(self, shown: bool) -> None:
        """The accuracy axis and its legend entries: only for a classification loss."""
        pi = self.plotItem
        if shown == self._accuracy_shown and pi.getAxis("right").isVisible() == shown:
            return
        self._accuracy_shown = shown
        pi.showAxis("right", shown)
        self.acc_view.setVisible(shown)
        self._sync_legend()

    def _groups(self) -> list[tuple[str, str, list, QPen, str | None]]:
        """The legend's entries: (key, label, curves, pen of the sample, symbol)."""
        t = "total " if self.several else ""
        out = [("loss", f"{t}loss", [self.raw], self.raw.opts["pen"], None),
               ("smooth", f"{t}loss (smoothed)", [self.smooth], self.smooth.opts["pen"], None),
               ("val", f"{t}validation loss", [self.val], self.val.opts["pen"], "o")]
        for nid, c in self.per_loss.items():
            out.append((f"loss:{nid}", nid, c.items, c.smooth.opts["pen"], None))
        for ov in self.overlays:
            items = list(self.overlay_items[ov.key])
            out.append((ov.legend_key, ov.legend_label, items, items[0].opts["pen"], None))
        if self._accuracy_shown:
            one = len(self.classifiers) == 1 and not self.several
            for nid, (tr, va) in self.acc_curves.items():
                pre = "" if one else f"{nid} "
                out.append((f"train_acc:{nid}", f"{pre}training accuracy", [tr],
                            tr.opts["pen"], "t"))
                out.append((f"val_acc:{nid}", f"{pre}validation accuracy", [va],
                            va.opts["pen"], "s"))
        return out

    def _sync_legend(self) -> None:
        groups = self._groups()
        if self.legend.keys() != [g[0] for g in groups]:  # other entries: list them anew
            self.legend.clear()
        for key, label, items, pen, symbol in groups:
            self.legend.add(key, label, pen, symbol, shown=key not in self.hidden)
            for item in items:
                item.setVisible(key not in self.hidden)

    def legend_labels(self) -> list[str]:
        return self.legend.labels()

    def _on_toggled(self, key: str, shown: bool) -> None:
        if shown:
            self.hidden.discard(key)
        else:
            self.hidden.add(key)
        for k, _, items, _, _ in self._groups():
            if k == key:
                for item in items:
                    item.setVisible(shown)

    def apply_theme(self) -> None:
        """Curve colours of the current theme (the legend's samples follow)."""
        col = curve_colors()
        several = self.several
        self.total.style(col.loss, col.loss if several else col.validation,
                         70 if several else 90)
        for i, c in enumerate(self.per_loss.values()):
            c.style(col.nth(i), col.nth(i), 60)
        loss_index = {n: i for i, n in enumerate(self.per_loss)}
        for nid, (tr, va) in self.acc_curves.items():
            color = col.nth(loss_index[nid]) if nid in loss_index else col.accuracy
            tr.setPen(_pen(color, 2, dash=True))
            va.setPen(_pen(color, 2))
            for item in (tr, va):
                item.setSymbolBrush(color)
                item.setSymbolPen(_pen(color, 1))
        if self._many:
            self._drop_symbols()
        self.legend.apply_theme()
        self._sync_legend()

    # ---- runs and data -----------------------------------------------------------------------
    def begin_run(self, step_offset: int, classifier: bool, losses: list[str] | None = None,
                  classifiers: list[str] | None = None, total_steps: int = 0,
                  epoch_offset: int = 0) -> None:
        """A run starts at ``step_offset`` (continuing earlier curves when > 0), ending at
        ``step_offset + total_steps`` on the step axis, which shows that whole span."""
        if step_offset == 0:
            self.clear_data()
        self.offset = step_offset
        self.epoch_offset = epoch_offset
        if classifiers is None:  # (callers that know only whether there is one)
            classifiers = ["loss"] if classifier else []
        self.set_losses(losses or [], classifiers)
        if total_steps:
            end = max(step_offset + total_steps, *(ov.end for ov in self.overlays), 1)
            self.plotItem.vb.setXRange(0, end, padding=0.02)
        self.plotItem.vb.enableAutoRange(y=True)

    def _empty_range(self) -> None:
        vb = self.plotItem.vb
        if self.overlays:  # compared runs: show them whole
            vb.enableAutoRange()
            return
        vb.setRange(xRange=(0, EMPTY_STEPS), yRange=(0, 1), padding=0.02)
        vb.enableAutoRange(y=True)  # stays put until data comes

    # ---- compared runs -----------------------------------------------------------------------
    def set_overlays(self, overlays: list[Overlay]) -> None:
        """Draw these runs over the live curves (replacing any drawn before; [] removes
        them): each run's smoothed loss per step and its validation loss per epoch, in its
        colour, one legend entry per run named by its label."""
        for items in self.overlay_items.values():
            for item in items:
                self.plotItem.removeItem(item)
        self.overlays = list(overlays)
        self.overlay_items = {}
        for ov in self.overlays:
            loss = _fast_curve(self.plotItem.plot(connect="finite"))
            loss.setPen(ov.pen(2))
            loss.setData(ov.steps, _smooth(ov.loss))
            val = self.plotItem.plot(symbol="o", symbolSize=6, connect="finite")
            val.setPen(_pen(ov.color, 1, dash=True))
            val.setSymbolBrush(ov.color)
            val.setSymbolPen(_pen(ov.color, 1))
            keep = np.isfinite(ov.val_loss) if len(ov.val_loss) else np.zeros(0, bool)
            val.setData(ov.epoch_steps[:len(ov.val_loss)][keep], ov.val_loss[keep])
            self.overlay_items[ov.key] = (loss, val)
        self._sync_legend()
        vb = self.plotItem.vb
        if self.overlays or self.has_data():
            vb.enableAutoRange()
        else:
            self._empty_range()

    def overlay_labels(self) -> list[str]:
        """The legend's labels of the compared runs, in order."""
        return [ov.legend_label for ov in self.overlays]

    def overlay_legend(self) -> list[tuple[str, QPen]]:
        """(label, pen) of each compared run, for ``export_png``'s legend."""
        return [(ov.legend_label, ov.pen(2)) for ov in self.overlays]

    def overlays_csv(self) -> str:
        """The compared runs' curves: ``run,label,step,loss,grad_norm,epoch,val_loss``, a row
        per step of each run (its epoch from 0, as the metrics log counts); ``val_loss``
        on the row of the step that ended the epoch (empty elsewhere)."""
        out = io.StringIO()
        out.write("run,label,step,loss,grad_norm,epoch,val_loss\n")
        for ov in self.overlays:
            label = _csv_text(ov.label)
            ends = np.asarray(ov.epoch_steps[:len(ov.val_loss)], dtype=float)
            val_at = {int(x): v for x, v in zip(ends, ov.val_loss, strict=True)}
            epoch_of = np.searchsorted(ends, ov.steps, side="left")
            gn = ov.grad_norm if len(ov.grad_norm) == len(ov.steps) else \
                np.full(len(ov.steps), np.nan)
            seen = set()
            for x, loss, g, ep in zip(ov.steps, ov.loss, gn, epoch_of, strict=True):
                v = val_at.get(int(x)) if int(x) not in seen else None
                seen.add(int(x))
                out.write(f"{_csv_text(ov.key)},{label},{int(x)},{_csv_number(loss)},"
                          f"{_csv_number(g)},{int(ep)},{_csv_number(v)}\n")
            for i, (x, v) in enumerate(zip(ends, ov.val_loss, strict=True)):
                if int(x) not in seen:  # an epoch whose steps the log lacks
                    out.write(f"{_csv_text(ov.key)},{label},{int(x)},,,{i},"
                              f"{_csv_number(v)}\n")
        return out.getvalue()

    def clear_data(self) -> None:
        for s in (self.steps, self.epochs):
            s.clear()
        self.total.clear()
        for c in self.per_loss.values():
            c.clear()
        self.epoch_rows = []
        self.offset = 0
        self.epoch_offset = 0
        self.last_x = -1.0
        for c in (self.train_acc, self.val_acc):
            c.setData([], [])
        for tr, va in self.acc_curves.values():
            tr.setData([], [])
            va.setData([], [])
        if self._many:
            self._many = False
            self.apply_theme()  # the symbols come back
        self._empty_range()

    def add_steps(self, events: list[StepEvent]) -> None:
        off = self.offset + 1  # x = steps done, so an epoch mark sits at its last step
        self.steps.extend([ev.step + off for ev in events])
        self.epochs.extend([ev.epoch + self.epoch_offset for ev in events])
        self.total.add([ev.loss for ev in events])
        for nid, c in self.per_loss.items():
            c.add([ev.losses.get(nid, math.nan) for ev in events])
        self.last_x = self.steps.data[-1]
        self._changed()

    def add_epoch(self, ev: EpochEvent) -> None:
        self.epoch_rows.append((max(self.last_x, 0.0), ev))
        if (ev.train_accuracy is not None or ev.val_accuracy is not None) \
                and not self._accuracy_shown:
            self.set_losses(list(self.per_loss), self.classifiers or ["loss"])
        self._changed()

    def _epoch_value(self, ev: EpochEvent, key: str, nid: str | None):
        """An epoch figure: graph-wide (``nid`` None), or one loss's."""
        if nid is None or not ev.losses:
            return getattr(ev, key)
        return ev.losses.get(nid, {}).get(key)

    def _epoch_curves(self):
        """(curve, key, loss node or None) for every per-epoch curve."""
        out = [(self.val, "val_loss", None)]
        out += [(c.val, "val_loss", nid) for nid, c in self.per_loss.items()]
        for i, (nid, (tr, va)) in enumerate(self.acc_curves.items()):
            who = None if i == 0 else nid  # the first classifier's are the graph-wide ones
            out += [(tr, "train_accuracy", who), (va, "val_accuracy", who)]
        return out

    def _drop_symbols(self) -> None:
        for curve, _, _ in self._epoch_curves():
            if curve.opts["symbol"] is not None:
                curve.setSymbol(None)

    def redraw(self) -> None:
        x = self.steps.data
        for c in [self.total, *self.per_loss.values()]:
            c.raw.setData(x, c.values.data)
            c.smooth.setData(x, c.smoothed.data)
        if len(self.epoch_rows) > MAX_EPOCH_SYMBOLS and not self._many:
            self._many = True  # symbols cost; a line says enough
            self._drop_symbols()
        for curve, key, nid in self._epoch_curves():
            pts = [(x, v) for x, e in self.epoch_rows
                   if (v := self._epoch_value(e, key, nid)) is not None]
            curve.setData(np.array([p[0] for p in pts], dtype=float),
                          np.array([p[1] for p in pts], dtype=float))

    def has_data(self) -> bool:
        return self.steps.n > 0

    def to_csv(self) -> str:
        """step, epoch, loss, loss_smoothed; the epoch metrics on the row of the step that
        ended the epoch (empty elsewhere). With several losses, each loss's columns follow
        (``<loss>``, ``<loss>_smoothed``, ``<loss>_train_loss``, ``<loss>_val_loss`` and,
        for a classification loss, ``<loss>_train_accuracy``, ``<loss>_val_accuracy``)."""
        by_x = {int(x): e for x, e in self.epoch_rows}
        per_keys = {nid: ["train_loss", "val_loss"]
                    + (["train_accuracy", "val_accuracy"] if nid in self.classifiers else [])
                    for nid in self.per_loss}
        head = "step,epoch,loss,loss_smoothed,train_loss,val_loss,train_accuracy,val_accuracy"
        for nid, keys in per_keys.items():
            head += "," + ",".join([nid, f"{nid}_smoothed"] + [f"{nid}_{k}" for k in keys])
        out = io.StringIO()
        out.write(head + "\n")
        cols = [(c.values.data, c.smoothed.data) for c in self.per_loss.values()]
        for i, (x, ep, loss, sm) in enumerate(zip(self.steps.data, self.epochs.data,
                                                 self.losses.data, self.smoothed.data,
                                                 strict=True)):
            e = by_x.get(int(x))
            tail = ",,,"
            if e is not None:
                tail = ",".join(_csv_number(v) for v in (e.train_loss, e.val_loss,
                                                         e.train_accuracy, e.val_accuracy))
            row = f"{int(x)},{int(ep)},{float(loss)!r},{float(sm)!r},{tail}"
            for (values, smoothed), (nid, keys) in zip(cols, per_keys.items(), strict=True):
                epoch = [self._epoch_value(e, k, nid) if e is not None else None for k in keys]
                row += "," + ",".join(_csv_number(v) for v in
                                      [float(values[i]), float(smoothed[i]), *epoch])
            out.write(row + "\n")
        return out.getvalue()


class GradNormPlot(_LazyRedraw, pg.PlotWidget):
    """The gradient norm of every layer per step on a log axis, plus the global norm; and
    the global norm of each compared run (``set_overlays``)."""

    overlays_changed = Signal()  # compared runs came or went: the layer list follows

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, axisItems=axes())
        self.setObjectName("gradNormPlot")
        pi = self.plotItem
        pi.setLogMode(y=True)
        pi.setLabel("bottom", "step")
        pi.setLabel("left", "gradient norm")
        # (no grid: pyqtgraph draws it with the axes, the costliest part of a frame)
        self.steps = Series()
        self.series: dict[str, Series] = {}
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.hidden: set[str] = set()
        self.offset = 0
        self.overlays: list[Overlay] = []
        self.overlay_curves: dict[str, pg.PlotDataItem] = {}  # legend key -> curve
        self._init_lazy()
        self._empty_range()

    def _empty_range(self) -> None:
        vb = self.plotItem.vb
        if self.overlays:
            vb.enableAutoRange()
            return
        vb.setRange(xRange=(0, EMPTY_STEPS), yRange=EMPTY_LOG_RANGE, padding=0.02)
        vb.enableAutoRange(y=True)  # stays put until data comes

    def set_overlays(self, overlays: list[Overlay]) -> None:
        """One global-norm curve per compared run, in its colour (replacing those drawn
        before; [] removes them). Listed after the layers, under the run's label."""
        for c in self.overlay_curves.values():
            self.plotItem.removeItem(c)
        self.overlays = list(overlays)
        self.overlay_curves = {}
        for ov in self.overlays:
            # 2 pixels: above the live curves' one; dashed (slow to paint) only for a
            # failed run, whose curve is usually short
            c = _fast_curve(self.plotItem.plot(pen=ov.pen(2), connect="finite"))
            n = min(len(ov.steps), len(ov.grad_norm))
            c.setData(ov.steps[:n], _positive(np.asarray(ov.grad_norm[:n], dtype=float)))
            c.setVisible(ov.legend_key not in self.hidden)
            self.overlay_curves[ov.legend_key] = c
        vb = self.plotItem.vb
        if self.overlays or self.has_data():
            vb.enableAutoRange()
        else:
            self._empty_range()
        self.overlays_changed.emit()

    def overlay_legend(self) -> list[tuple[str, QPen]]:
        return [(ov.legend_label, ov.pen(2)) for ov in self.overlays]

    def begin_run(self, step_offset: int, layers: list[str], total_steps: int = 0) -> None:
        """A run starts; ``layers``: the nodes owning parameters (one curve each). The step
        axis shows the run's whole span, as the loss plot's does."""
        if step_offset == 0:
            self.clear_data()
        self.offset = step_offset
        for name in [GLOBAL] + list(layers):
            self._curve(name)
        if total_steps:
            end = max(step_offset + total_steps, *(ov.end for ov in self.overlays), 1)
            self.plotItem.vb.setXRange(0, end, padding=0.02)
        self.plotItem.vb.enableAutoRange(y=True)

    def _pen_for(self, name: str, i: int) -> QPen:
        # one pixel wide and solid: these curves have a point per step, and a 1.5-pixel
        # pen took about 6 times as long to paint them (a dashed one about 30 times)
        if name == GLOBAL:
            return _pen(curve_colors().neutral, 1)
        return _pen(layer_color(i - 1), 1)

    def _curve(self, name: str) -> pg.PlotDataItem:
        c = self.curves.get(name)
        if c is None:
            c = _fast_curve(self.plotItem.plot(pen=self._pen_for(name, len(self.curves)),
                                               name=name, connect="finite"))
            c.setVisible(name not in self.hidden)
            self.curves[name] = c
            self.series[name] = Series()
            self.series[name].pad_to(self.steps.n)
        return c

    def apply_theme(self) -> None:
        for i, (name, c) in enumerate(self.curves.items()):
            c.setPen(self._pen_for(name, i))

    def layers(self) -> list[str]:
        return list(self.curves)

    def color(self, name: str) -> QColor:
        return self.curves[name].opts["pen"].color()

    def pen(self, name: str) -> QPen:
        return self.curves[name].opts["pen"]

    def set_layer_visible(self, name: str, visible: bool) -> None:
        if visible:
            self.hidden.discard(name)
        else:
            self.hidden.add(name)
        if name in self.curves:
            self.curves[name].setVisible(visible)
            if visible:
                self._curve_shown(name)  # hidden curves are not kept up to date
        elif name in self.overlay_curves:
            self.overlay_curves[name].setVisible(visible)

    def clear_data(self) -> None:
        self.steps.clear()
        for c in self.curves.values():
            self.plotItem.removeItem(c)
        self.curves, self.series = {}, {}
        self.offset = 0
        self._empty_range()

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
    time step t, for the latest step. Falling towards t = 0: vanishing; rising: exploding.
    Its legend is in its title (a few nodes), above the plot area."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, axisItems=axes())
        self.setObjectName("stateGradPlot")
        pi = self.plotItem
        pi.setLogMode(y=True)
        pi.setLabel("bottom", "time step t")
        pi.setLabel("left", "state gradient norm")
        # (no grid: pyqtgraph draws it with the axes, the costliest part of a frame)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self.latest: dict[str, list[float]] = {}
        self.step = -1
        self._empty_range()
        self._title()

    def _empty_range(self) -> None:
        vb = self.plotItem.vb
        vb.setRange(xRange=(0, 10), yRange=EMPTY_LOG_RANGE, padding=0.02)
        vb.enableAutoRange()  # stays put until data comes

    def _title(self) -> None:
        # short: the axes say what is drawn, and a long title would clip its legend
        title = f"step {self.step + 1}" if self.step >= 0 else ""
        entries = [(n, c.opts["pen"].color()) for n, c in self.curves.items()]
        self.plotItem.setTitle(title_legend(title, entries) or None)  # None: no title row

    def show_norms(self, step: int, norms: dict[str, list[float]]) -> None:
        self.step, self.latest = step, norms
        col = curve_colors()
        added = False
        for node, values in norms.items():
            c = self.curves.get(node)
            if c is None:
                color = col.nth(len(self.curves))
                c = self.plotItem.plot(pen=_pen(color, 2), symbol="o", symbolSize=4,
                                       symbolBrush=color, name=node, connect="finite")
                self.curves[node] = c
                added = True
            y = np.asarray(values, dtype=float)
            c.setData(np.arange(len(y)), _positive(y))
        if added:
            self.plotItem.vb.enableAutoRange()
        self._title()

    def apply_theme(self) -> None:
        col = curve_colors()
        for i, c in enumerate(self.curves.values()):
            color = col.nth(i)
            c.setPen(_pen(color, 2))
            c.setSymbolBrush(color)
        self._title()

    def clear_data(self) -> None:
        for c in self.curves.values():
            self.plotItem.removeItem(c)
        self.curves, self.latest, self.step = {}, {}, -1
        self._empty_range()
        self._title()

    def has_data(self) -> bool:
        return bool(self.latest)


class GradientView(QWidget):
    """gradNormPlot with its legend, a checkable list of its layers (``gradLayers``), and
    for recurrent graphs stateGradPlot beside them, as large as the gradient plot."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = GradNormPlot()
        self.state_plot = StateGradPlot()
        self.state_plot.hide()
        self.layer_list = CurveList("gradLayers", "Show or hide a layer's curve")
        self.layer_list.toggled.connect(self.plot.set_layer_visible)
        self.plot.overlays_changed.connect(self._sync_list)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.plot, 3)
        row.addWidget(self.layer_list)
        row.addWidget(self.state_plot, 2)

    def begin_run(self, step_offset: int, layers: list[str], recurrent: bool,
                  total_steps: int = 0) -> None:
        if step_offset == 0:
            self.state_plot.clear_data()
            self.layer_list.clear()
        self.plot.begin_run(step_offset, layers, total_steps)
        self.state_plot.setVisible(recurrent)
        self._sync_list()

    def _sync_list(self) -> None:
        entries = [(name, name, self.plot.pen(name)) for name in self.plot.layers()]
        entries += [(ov.legend_key, ov.legend_label, ov.pen(2)) for ov in self.plot.overlays]
        if self.layer_list.keys() != [e[0] for e in entries][:self.layer_list.count()]:
            self.layer_list.clear()  # a compared run went: list them anew
        for key, label, pen in entries:
            self.layer_list.add(key, label, pen, shown=key not in self.plot.hidden)

    def set_layer_visible(self, name: str, visible: bool) -> None:
        if self.layer_list.entry(name) is not None:
            self.layer_list.set_shown(name, visible)  # the list tells the plot
        else:
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

    def apply_theme(self) -> None:
        self.plot.apply_theme()
        self.state_plot.apply_theme()
        self.layer_list.apply_theme()
        self._sync_list()

    def clear(self) -> None:
        self.plot.clear_data()
        self.state_plot.clear_data()
        self.layer_list.clear()
        self._sync_list()  # compared runs stay


class LossView(QWidget):
    """lossPlot with its legend (``lossLegend``) beside it."""

    def __init__(self, plot: LossPlot, parent: QWidget | None = None):
        super().__init__(parent)
        self.plot = plot
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(plot, 1)
        row.addWidget(plot.legend)


def write_csv(path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))
