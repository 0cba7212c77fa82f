"""The training view: progress, device and speed, the loss and gradient plots, histograms of
a selected node, evaluation, and the weights and export buttons.

The curves share one page ("Curves"): the loss above, the gradients below (and, for a
recurrent graph, the gradient at each time step beside them), both spanning the run's
steps, each with its legend beside it. The buttons sit in the tab bar's corner, so the plots
get the height.
"""
from __future__ import annotations

import time

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QBoxLayout,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.errors import NeuroCanvasError
from core.remote import RemoteError
from core.timefmt import fmt_time
from gui import theme
from gui.training.controller import (
    IDLE,
    PAUSED,
    RUNNING,
    NextRun,
    RunInfo,
    TrainingController,
)
from gui.training.cost import CostHeat, HeatModeBox
from gui.training.embedding_view import EmbeddingView
from gui.training.evaluation import EvaluationView
from gui.training.heat import HeatLegend
from gui.training.histograms import HistogramView
from gui.training.plane_view import PlaneView
from gui.training.plots import GradientView, LossPlot, LossView, export_png, write_csv
from gui.training.runs import RunHistory

SNAPSHOT_HZ = 2.0  # histogram refreshes per second while training
STACKED_MIN_HEIGHT = 240  # a plot lower than this on a stacked page: side by side instead
SIDE_BY_SIDE_MIN_WIDTH = 400  # ... when the plots are at least this wide there


class CurvesPage(QWidget):
    """The loss and the gradients on one page: stacked when each gets enough height (the
    training layout), side by side in a low, wide dock (the editing layout)."""

    def __init__(self, loss: QWidget, grads: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("trainingCurves")
        # the editing layout keeps the bottom dock low (the canvas comes first there); the
        # plots get their room in the training layout
        self.setMinimumHeight(90)
        self.box = QBoxLayout(QBoxLayout.Direction.TopToBottom, self)
        self.box.setContentsMargins(0, 2, 0, 0)
        self.box.addWidget(loss, 1)
        self.box.addWidget(grads, 1)

    @staticmethod
    def direction_for(width: int, height: int) -> QBoxLayout.Direction:
        legend = 200  # the lists beside the plots
        if height // 2 < STACKED_MIN_HEIGHT and width // 2 - legend >= SIDE_BY_SIDE_MIN_WIDTH:
            return QBoxLayout.Direction.LeftToRight
        return QBoxLayout.Direction.TopToBottom

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        d = self.direction_for(event.size().width(), event.size().height())
        if d != self.box.direction():
            self.box.setDirection(d)


class TrainingPanel(QWidget):
    """The training view for one ``TrainingController``."""

    node_shown = Signal(object)  # the node whose histograms are shown (or None)

    def __init__(self, controller: TrainingController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("trainingPanel")
        self.controller = controller
        self.info: RunInfo | None = None
        self._steps = 0  # done in this run
        self._epoch = 0
        self._t_start = 0.0

        self.progress = QProgressBar()
        self.progress.setObjectName("trainProgress")
        self.progress.setTextVisible(True)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not trained yet")
        self.status = QLabel("")
        self.status.setObjectName("trainStatus")
        self.lock_label = QLabel("graph locked while training")  # (fonts lack a lock emoji)
        self.lock_label.setObjectName("trainLock")
        self.lock_label.setToolTip("Stop training to edit the graph")
        self.lock_label.setVisible(bool(getattr(controller.document, "locked", False)))
        # after a run: whether Train continues or restarts, said in words
        self.next_label = QLabel("")
        self.next_label.setObjectName("nextRun")
        self.next_label.setVisible(False)
        self.legend = HeatLegend()
        head = QHBoxLayout()
        head.addWidget(self.progress, 2)
        head.addWidget(self.status)
        head.addWidget(self.lock_label)
        self.heat_mode = HeatModeBox()  # gradient norm, or a cost (gui.training.cost)
        head.addWidget(self.heat_mode)
        head.addWidget(self.legend, 1)
        self.cost = CostHeat(controller, self.legend, self.heat_mode, self)

        self.loss = LossPlot()
        self.loss_view = LossView(self.loss)
        self.grads = GradientView()
        self.curves = CurvesPage(self.loss_view, self.grads)
        # the run history beside the curves: selected runs are drawn over them
        self.runs = RunHistory(controller, self.loss, self.grads.plot)
        curves_tab = QWidget()
        curves_tab.setObjectName("curvesTab")
        row = QHBoxLayout(curves_tab)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.curves, 1)
        row.addWidget(self.runs)
        self.hist = HistogramView()
        self.eval_view = EvaluationView()
        self.tabs = QTabWidget()
        self.tabs.setObjectName("trainingTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(curves_tab, "Curves")
        self.tabs.addTab(self.hist, "Inside a node")
        self.tabs.addTab(self.eval_view, "Evaluation")
        self.plane = PlaneView(controller)  # decision boundary and unit maps
        self.tabs.addTab(self.plane, "Input plane")
        self.embedding = EmbeddingView(controller)
        self.tabs.addTab(self.embedding, "Embedding")
        from gui.training.stepper_view import BackpropView  # stepping through backprop
        self.backprop = BackpropView(controller)
        self.tabs.addTab(self.backprop, "Backprop")

        corner = QWidget()
        buttons = QHBoxLayout(corner)
        buttons.setContentsMargins(0, 0, 0, 2)
        buttons.addWidget(self.next_label)
        buttons.addSpacing(8)
        self.evaluate_button = QPushButton("Evaluate")
        self.evaluate_button.setToolTip("Accuracy and confusion matrix on the validation split")
        self.evaluate_button.clicked.connect(self._on_evaluate)
        # Save, load and reset in one menu: as three buttons the row did not fit a 1024 px
        # window, and the Export menu at its end was cut off
        self.weights_button = QToolButton()
        self.weights_button.setText("Weights")
        self.weights_button.setToolTip("Save the network's weights, load weights for the next "
                                       "run, or start over from the initial weights")
        self.weights_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        weights_menu = QMenu(self.weights_button)
        self.save_action = weights_menu.addAction("Save weights…")
        self.save_action.triggered.connect(self._on_save)
        self.load_action = weights_menu.addAction("Load weights…")
        self.load_action.triggered.connect(self._on_load)
        weights_menu.addSeparator()
        self.reset_action = weights_menu.addAction("Reset weights")
        self.reset_action.setToolTip("Start over from the initial weights; clears plots and "
                                     "heat")
        self.reset_action.triggered.connect(self._on_reset)
        weights_menu.setToolTipsVisible(True)
        self.weights_button.setMenu(weights_menu)
        self.export_button = QToolButton()
        self.export_button.setText("Export")
        self.export_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(self.export_button)
        for which, label in (("loss", "loss plot"), ("grad", "gradient plot")):
            for fmt, what in (("png", "as PNG…"), ("csv", "data as CSV…")):
                # QMenu.addAction(text, callable) with a closure crashes PySide6 6.12 at
                # exit (a refcount bug); a QAction with its data and one slot does not
                act = menu.addAction(f"Export {label} {what}")
                act.setData(f"{which}:{fmt}")
        menu.triggered.connect(self._on_export_action)
        self.export_button.setMenu(menu)
        for b in (self.evaluate_button, self.weights_button, self.export_button):
            buttons.addWidget(b)
        self.tabs.setCornerWidget(corner)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addLayout(head)
        lay.addWidget(self.tabs, 1)

        self.node: str | None = None
        self._snapshot_in_flight = False
        self._snap_timer = QTimer(self)
        self._snap_timer.setInterval(int(1000 / SNAPSHOT_HZ))
        self._snap_timer.timeout.connect(self._refresh_snapshot)

        c = controller
        c.run_started.connect(self._on_run_started)
        c.steps_batch.connect(self._on_steps)
        c.epoch_done.connect(self.loss.add_epoch)
        c.finished.connect(self._on_finished)
        c.state_changed.connect(self._on_state)
        c.status_text_changed.connect(self.status.setText)
        c.snapshot_ready.connect(self._on_snapshot)
        c.evaluated.connect(self.eval_view.show_report)
        c.request_failed.connect(self._error)
        c.weights_reset.connect(self.clear)
        c.next_run_changed.connect(self._on_next_run)
        locked = getattr(c.document, "locked_changed", None)
        if locked is not None:
            locked.connect(self.lock_label.setVisible)
        self._progress_timer = QTimer(self)
        self._progress_timer.setSingleShot(True)
        self._progress_timer.setInterval(0)
        self._progress_timer.timeout.connect(lambda: self._update_progress())
        self._on_state(c.state)
        self.apply_theme()

    def apply_theme(self) -> None:
        """Plot backgrounds, axes, curves and legends in the colours of the current theme."""
        for plot in self.findChildren(pg.PlotWidget):
            theme.style_plot(plot)
        self.loss.apply_theme()
        self.grads.apply_theme()
        self.runs.apply_theme()
        self.plane.apply_theme()
        self.embedding.apply_theme()

    # ---- run ---------------------------------------------------------------------------
    def _on_run_started(self, info: RunInfo) -> None:
        self.info = info
        self._steps, self._epoch = 0, 0
        self._t_start = time.monotonic()
        self.loss.begin_run(info.step_offset, info.classifier, info.losses, info.classifiers,
                            info.total_steps, info.epoch_offset)
        self.grads.begin_run(info.step_offset, info.layers, info.recurrent, info.total_steps)
        # steps and epochs counted as the plots count them: over continued runs
        self.progress.setRange(0, max(info.end_step, 1))
        self.progress.setValue(info.step_offset)
        self.progress.setFormat(f"epoch {info.epoch_offset + 1}/{info.epoch_offset + info.epochs}"
                                f" · step {info.step_offset}/{info.end_step}")
        self.evaluate_button.setEnabled(info.classifier)

    def _on_next_run(self, choice: NextRun) -> None:
        self.next_label.setText(choice.short)
        self.next_label.setToolTip(choice.text + " (Train's menu offers both.)"
                                   if choice.text else "")
        self.next_label.setVisible(bool(choice.text))

    def _on_steps(self, events: list) -> None:
        self.loss.add_steps(events)
        self.grads.add_steps(events)
        last = events[-1]
        self._steps, self._epoch = last.step + 1, last.epoch
        # One progress update per burst of batches: QProgressBar.setValue repaints at once,
        # and the time it takes on this thread is taken from training.
        if not self._progress_timer.isActive():
            self._progress_timer.start()

    def _update_progress(self, done_text: str | None = None) -> None:
        info = self.info
        if info is None:
            return
        total, steps = info.total_steps, min(self._steps, info.total_steps)
        self.progress.setValue(info.step_offset + steps)
        epoch = info.epoch_offset + self._epoch + 1
        text = (f"epoch {epoch}/{info.epoch_offset + info.epochs} · "
                f"step {info.step_offset + steps}/{info.end_step}")
        if done_text:
            text += f" · {done_text}"
        else:
            rate = self.controller.steps_per_second
            if rate > 0:
                text += f" · {fmt_time((total - steps) / rate)} left"
        self.progress.setFormat(text)

    def _on_finished(self, done) -> None:
        if self.progress.maximum() == 0:  # it ended while starting (no dataset...)
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress.setFormat("could not start: see Problems")
            return
        self._steps = done.steps
        self._progress_timer.stop()  # the final text replaces any pending update
        what = {"finished": "done", "stopped": "stopped"}.get(done.reason, "failed")
        self._update_progress(f"{what} in {fmt_time(time.monotonic() - self._t_start)}")
        if self.node is not None:
            self._refresh_snapshot(force=True)

    def _on_state(self, state: str) -> None:
        idle = state == IDLE
        self.load_action.setEnabled(idle)
        self.reset_action.setEnabled(idle)
        if state == RUNNING:
            self._snap_timer.start()
            if self.controller.building:  # a second or so: say what happens meanwhile
                self.progress.setRange(0, 0)
                self.progress.setFormat("loading the data and building the network…")
        elif state == PAUSED:
            self._snap_timer.stop()
            self._refresh_snapshot(force=True)
        else:
            self._snap_timer.stop()

    def clear(self) -> None:
        """Forget the plots, histograms and evaluation (weights were reset or loaded)."""
        self.info = None
        self.loss.clear_data()
        self.grads.clear()
        self.hist.clear()
        self.eval_view.clear()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("not trained yet")
        self.status.setText("")
        if self.node is not None:
            self.show_node(self.node)

    # ---- looking inside ---------------------------------------------------------------
    def show_node(self, node_id: str | None) -> None:
        """Show histograms for ``node_id`` (the canvas selection); None clears them."""
        self.node = node_id
        self.node_shown.emit(node_id)
        self.plane.show_node(node_id)
        self.embedding.show_node(node_id)
        self.backprop.show_node(node_id)
        if node_id is None:
            self.hist.clear()
            return
        if self.hist.node != node_id:  # the last node's histograms must not pass for these
            self.hist.clear(f"{node_id}: fetching from the training process…")
        self.hist.node = node_id
        self._snapshot_in_flight = False
        if not self._refresh_snapshot(force=True):
            self.hist.clear(f"{node_id}: train the graph to see its weights, gradients and "
                            "activations")

    def _refresh_snapshot(self, force: bool = False) -> bool:
        if self.node is None or (self._snapshot_in_flight and not force):
            return False
        if not force and not self.hist.isVisible():
            return False  # nobody looks: spare the training thread the extra forward pass
        self._snapshot_in_flight = True
        ok = self.controller.request_snapshot(self.node)
        if not ok:
            self._snapshot_in_flight = False
        return ok

    def _on_snapshot(self, node: str, snap) -> None:
        self._snapshot_in_flight = False
        if node == self.node:
            self.hist.show_snapshot(node, snap)

    # ---- buttons --------------------------------------------------------------------------
    def _error(self, title: str, why) -> None:
        """A message box: ``why`` is an exception or its text."""
        QMessageBox.warning(self, title, str(why))

    def _on_evaluate(self) -> None:
        """Ask for an evaluation; the report (or the error) comes when the training process
        has computed it, and the UI does not wait for it."""
        if self.controller.request_evaluation():
            self.eval_view.summary.setText("Evaluating on the validation split…")
            self.tabs.setCurrentWidget(self.eval_view)

    def _on_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save weights", "weights.npz",
                                              "Weights (*.npz)")
        if path:
            try:
                self.controller.save_weights(path)
            except (NeuroCanvasError, RemoteError) as e:
                self._error("Save weights", e)

    def _on_reset(self) -> None:
        self.controller.reset_weights()

    def _on_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load weights", "", "Weights (*.npz)")
        if path:
            try:
                self.controller.load_weights(path)
            except NeuroCanvasError as e:
                self._error("Load weights", e)

    def _on_export_action(self, action) -> None:
        which, fmt = str(action.data()).split(":")
        self._on_export(which, fmt)

    def _on_export(self, which: str, fmt: str) -> None:
        ext = "PNG image (*.png)" if fmt == "png" else "CSV (*.csv)"
        path, _ = QFileDialog.getSaveFileName(self, "Export", f"{which}.{fmt}", ext)
        if not path:
            return
        try:
            self.export_png(which, path) if fmt == "png" else self.export_csv(which, path)
        except OSError as e:
            QMessageBox.warning(self, "Export", f"cannot write {path}: {e.strerror}")

    # ---- export ---------------------------------------------------------------------------
    def plot(self, which: str):
        """The PlotWidget named by ``which``: "loss" or "grad"."""
        return {"loss": self.loss, "grad": self.grads.plot}[which]

    def refresh(self) -> None:
        """Bring every plot up to date now, shown or not (export, tests)."""
        self.loss.redraw()
        self.grads.plot.redraw()

    def export_png(self, which: str, path) -> None:
        self.plot(which).redraw()
        export_png(self.plot(which), path)

    def export_csv(self, which: str, path) -> None:
        write_csv(path, self.plot(which).to_csv())
