"""The run history (``runHistory``): every recorded run of the open graph (``core.runs``),
newest first, beside the training curves.

Selecting runs draws their curves over the live ones (``lossPlot``, ``gradNormPlot``), each
in its own colour under its label; the pane below the list (``runDiff``) shows a run's
settings and results, or, for two runs, what differs between them: their training settings
and their graphs. Restore opens a run's graph and weights as a new unsaved graph; runs can
be renamed (inline), deleted, and their compared curves exported (CSV, PNG).

Nothing here waits on the disk for long: the list reads each run's ``run.json`` only; a
run's metrics are read on a worker thread when it is first selected, and kept.
"""
from __future__ import annotations

import dataclasses
import html
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QSplitter,
    QTextBrowser,
    QToolButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from core.errors import NeuroCanvasError
from core.runs.diff import flat_settings, graph_diff, settings_diff
from core.runs.store import GRAPH_FILE, METRICS_FILE, WEIGHTS_FILE, Run, RunStore
from gui import theme
from gui.training.plots import Overlay, export_png, overlay_from_events, run_colors, write_csv

log = logging.getLogger(__name__)

COLUMNS = ("Time", "Label", "Status", "Steps", "Val loss", "Val acc")
TIME, LABEL, STATUS, STEPS, VAL_LOSS, VAL_ACC = range(len(COLUMNS))
ID_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2
PANE_WIDTH = 440  # the history's width beside the curves


# ---- how a run reads in the list -------------------------------------------------------------
def local_time(created: str) -> str:
    """``2026-12-02T00:15:00Z`` in local time, short: ``01:15:00`` today, ``12-02 01:15``
    this year, else the date; the text itself when it is not a time."""
    try:
        t = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return str(created or "")
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    t = t.astimezone()
    now = datetime.now().astimezone()
    if t.date() == now.date():
        return t.strftime("%H:%M:%S")
    return t.strftime("%m-%d %H:%M" if t.year == now.year else "%Y-%m-%d")


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def fmt_loss(v) -> str:
    v = _number(v)
    return "" if v is None else f"{v:.4g}"


def fmt_accuracy(v) -> str:
    v = _number(v)
    return "" if v is None else f"{100 * v:.1f}%"


def _final(run: Run) -> dict:
    f = run.summary.get("final")
    return f if isinstance(f, dict) else {}


def _steps(run: Run) -> int | None:
    s = run.summary.get("steps")
    return s if isinstance(s, int) and not isinstance(s, bool) else None


def _error(run: Run) -> str:
    """Why a run failed (with the node), or ""."""
    err = run.summary.get("error")
    if not err:
        return ""
    node = run.summary.get("error_node")
    return f"{err} (node '{node}')" if node and f"'{node}'" not in str(err) else str(err)


def _value(v) -> str:
    if v is None:
        return "(not set)"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _time_key(run: Run) -> str:
    """Sorts runs by when they were made: ``created`` has whole seconds, so runs of one
    second (a sweep's) go by when their graph file was written, then by id."""
    try:
        ns = os.stat(run.path / GRAPH_FILE).st_mtime_ns
    except OSError:
        ns = 0
    return f"{run.created}|{ns:020d}|{run.id}"


# ---- metrics, read off the UI thread -----------------------------------------------------------
def _stamp(run: Run) -> tuple:
    """What says a run's metrics file changed: its size and time, and the run's status."""
    try:
        st = os.stat(run.path / METRICS_FILE)
        return st.st_size, st.st_mtime_ns, run.status
    except OSError:
        return 0, 0, run.status


def _read_overlay(run: Run) -> Overlay:
    """A run's curves (worker thread): its metrics log as arrays; colour and label are set
    when it is shown."""
    steps, epochs = run.metrics()
    return overlay_from_events(run.id, run.label, QColor(), steps, epochs, run.status)


class _Loaded(QObject):
    """Carries a worker's result to the UI thread (a queued signal)."""
    done = Signal(str, object, object)  # run id, stamp, Overlay or exception


class RunHistory(QWidget):
    """The runs of the controller's document, as a list with the compared runs' details
    below it. ``confirm_replace`` (a callable returning bool) is asked before Restore
    replaces the open graph (the main window's "save changes?")."""

    restored = Signal(object, str)  # the Run, a sentence for the status bar
    overlays_shown = Signal(list)  # the ids of the runs drawn over the curves

    def __init__(self, controller, loss_plot, grad_plot, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("runHistoryPane")
        self.controller = controller
        self.document = controller.document
        self.loss_plot = loss_plot
        self.grad_plot = grad_plot
        self.confirm_replace = None
        self.runs: dict[str, Run] = {}
        self._order: list[str] = []  # newest first, as listed
        self._cache: dict[str, tuple[tuple, Overlay]] = {}
        self._graphs: dict[str, tuple[tuple, object]] = {}
        self._waiting: set[str] = set()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neurocanvas-runs")
        self._loaded = _Loaded(self)
        self._loaded.done.connect(self._on_loaded)
        self._store_root: Path | None = None
        self._filling = False

        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.model.setSortRole(SORT_ROLE)
        self.model.itemChanged.connect(self._on_item_changed)
        self.view = QTreeView()
        self.view.setObjectName("runHistory")
        self.view.setModel(self.model)
        self.view.setRootIsDecorated(False)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setAllColumnsShowFocus(True)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(TIME, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.EditKeyPressed
                                  | QAbstractItemView.EditTrigger.SelectedClicked)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        self.view.setToolTip("Select runs to draw their curves over the live ones; select "
                             "two to see what differs")
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(LABEL, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(36)

        self.diff = QTextBrowser()
        self.diff.setObjectName("runDiff")
        self.diff.setOpenLinks(False)
        self.diff.setPlaceholderText("Select a run to see its settings; select two to see "
                                     "what differs.")

        self.title = QLabel("Runs")
        self.title.setObjectName("runHistoryTitle")
        self.actions: dict[str, QAction] = {}
        self.actionRestore = self._make_action(
            "runRestore", "Restore", self.restore_selected,
            "Open the run's graph and weights as a new unsaved graph")
        self.actionRename = self._make_action("runRename", "Rename", self.rename_selected,
                                              "Give the run another label (F2)")
        self.actionDelete = self._make_action("runDelete", "Delete…", self.delete_selected,
                                              "Delete the selected runs (cannot be undone)")
        self.actionExportCsv = self._make_action(
            "runExportCsv", "Export CSV…", self.export_csv_dialog,
            "The selected runs' curves as CSV: run, label, step, loss, grad_norm, epoch, "
            "val_loss")
        self.actionExportLossPng = self._make_action(
            "runExportLossPng", "Loss plot as PNG…", lambda: self.export_png_dialog("loss"),
            "The loss plot with the compared runs, as an image")
        self.actionExportGradPng = self._make_action(
            "runExportGradPng", "Gradient plot as PNG…",
            lambda: self.export_png_dialog("grad"),
            "The gradient plot with the compared runs, as an image")
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.setSpacing(2)
        buttons.addWidget(self.title)
        buttons.addStretch(1)
        for a in (self.actionRestore, self.actionRename, self.actionDelete,
                  self.actionExportCsv):
            b = QToolButton()
            b.setObjectName(a.objectName() + "Button")
            b.setDefaultAction(a)
            buttons.addWidget(b)
        self.png_button = QToolButton()
        self.png_button.setObjectName("runExportPngButton")
        self.png_button.setText("Export PNG")
        self.png_button.setToolTip("The compared curves as an image")
        self.png_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        png_menu = QMenu(self.png_button)
        png_menu.addActions([self.actionExportLossPng, self.actionExportGradPng])
        self.png_button.setMenu(png_menu)
        buttons.addWidget(self.png_button)

        top = QWidget()
        top_lay = QVBoxLayout(top)
        top_lay.setContentsMargins(0, 0, 0, 0)
        top_lay.setSpacing(2)
        top_lay.addLayout(buttons)
        top_lay.addWidget(self.view, 1)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)
        split.addWidget(top)
        split.addWidget(self.diff)
        split.setStretchFactor(0, 1)
        split.setStretchFactor(1, 1)
        self.view.setMinimumHeight(60)
        self.diff.setMinimumHeight(40)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 2, 0, 0)
        lay.addWidget(split)
        self.setMinimumWidth(300)
        self.setMaximumWidth(PANE_WIDTH)

        c = controller
        c.run_started.connect(lambda *_: self.refresh())
        c.finished.connect(lambda *_: self.refresh())
        d = self.document
        if hasattr(d, "path_changed"):
            d.path_changed.connect(lambda *_: self.refresh())
        self._update_actions()
        self.refresh()

    def _make_action(self, name: str, text: str, slot, tip: str) -> QAction:
        a = QAction(text, self)
        a.setObjectName(name)
        a.setToolTip(tip)
        a.setStatusTip(tip)
        a.triggered.connect(slot)
        self.addAction(a)
        self.actions[name] = a
        return a

    def sizeHint(self):
        hint = super().sizeHint()
        hint.setWidth(PANE_WIDTH)
        return hint

    # ---- the store and the list --------------------------------------------------------------
    def store(self) -> RunStore | None:
        """The open graph's run store (None for a document that keeps no runs)."""
        make = getattr(self.document, "run_store", None)
        if make is None:
            return None
        try:
            return make()
        except NeuroCanvasError as e:
            log.warning("no run store: %s", e)
            return None

    def live_run_id(self) -> str | None:
        """The run the editor is training now (its run.json says "running" and no
        recorder of this process writes it: the training process does)."""
        if getattr(self.controller, "state", "idle") == "idle":
            return None
        return getattr(self.controller, "run_id", None)

    def refresh(self) -> None:
        """Read the runs anew (their run.json only), keeping the selection."""
        store = self.store()
        root = store.root if store is not None else None
        runs = store.list() if store is not None else []
        if root != self._store_root:  # another graph: other runs
            self._store_root = root
            self._cache.clear()
            self._graphs.clear()
        live = self.live_run_id()
        for r in runs:
            if r.id == live and r.status == "interrupted":
                r.summary = {**r.summary, "status": "running"}
        keep = self.selected_ids()
        current = self.view.currentIndex()
        current_id = current.siblingAtColumn(TIME).data(ID_ROLE) if current.isValid() else None
        self.runs = {r.id: r for r in runs}
        sel = self.view.selectionModel()
        self._filling = True  # not the user editing a label
        sel.blockSignals(True)
        try:
            self.model.removeRows(0, self.model.rowCount())
            for r in runs:
                self.model.appendRow(self._row(r))
            header = self.view.header()
            self.model.sort(header.sortIndicatorSection(), header.sortIndicatorOrder())
            self._order = [self.model.item(i, TIME).data(ID_ROLE)
                           for i in range(self.model.rowCount())]
            flags = (QItemSelectionModel.SelectionFlag.Select
                     | QItemSelectionModel.SelectionFlag.Rows)
            for i, rid in enumerate(self._order):
                if rid in keep:
                    sel.select(self.model.index(i, 0), flags)
                if rid == current_id:
                    sel.setCurrentIndex(self.model.index(i, 0),
                                        QItemSelectionModel.SelectionFlag.NoUpdate)
        finally:
            sel.blockSignals(False)
            self._filling = False
        self.view.viewport().update()
        n = len(runs)
        self.title.setText(f"Runs ({n})" if n else "Runs")
        self.title.setToolTip(str(root) if root is not None else "")
        self._on_selection()

    def _row(self, run: Run) -> list[QStandardItem]:
        final = _final(run)
        steps = _steps(run)
        val_loss, val_acc = _number(final.get("val_loss")), _number(final.get("val_accuracy"))
        status = run.status
        texts = [local_time(run.created), run.label, status,
                 "" if steps is None else str(steps), fmt_loss(val_loss),
                 fmt_accuracy(val_acc)]
        sort = [_time_key(run), run.label.lower(), status,
                -1 if steps is None else steps,
                math.inf if val_loss is None else val_loss,
                -1.0 if val_acc is None else val_acc]
        why = _error(run)
        tip = f"{run.label}\nrun {run.id}, {local_time(run.created)}\n{status}"
        if why:
            tip += f": {why}"
        items = []
        for col, (text, key) in enumerate(zip(texts, sort, strict=True)):
            it = QStandardItem(text)
            it.setData(key, SORT_ROLE)
            it.setData(run.id, ID_ROLE)
            it.setToolTip(tip)
            it.setEditable(col == LABEL)
            if col in (STEPS, VAL_LOSS, VAL_ACC):
                it.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            items.append(it)
        if status in ("failed", "interrupted"):
            items[STATUS].setForeground(QColor(theme.current().error if status == "failed"
                                               else theme.current().warning))
        if status == "running":
            f = items[STATUS].font()
            f.setItalic(True)
            items[STATUS].setFont(f)
        return items

    def row_texts(self) -> list[list[str]]:
        """The list as shown, a row of texts per run (tests)."""
        return [[self.model.item(i, c).text() for c in range(len(COLUMNS))]
                for i in range(self.model.rowCount())]

    def selected_ids(self) -> list[str]:
        """The selected runs, in list order (newest first)."""
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [self.model.item(r, TIME).data(ID_ROLE) for r in rows]

    def selected_runs(self) -> list[Run]:
        return [self.runs[i] for i in self.selected_ids() if i in self.runs]

    def select(self, run_ids: list[str]) -> None:
        """Select these runs (as a user would, with Ctrl-click)."""
        sel = self.view.selectionModel()
        flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
        sel.blockSignals(True)
        try:
            sel.clearSelection()
            for i in range(self.model.rowCount()):
                if self.model.item(i, TIME).data(ID_ROLE) in run_ids:
                    sel.select(self.model.index(i, 0), flags)
        finally:
            sel.blockSignals(False)
        self.view.viewport().update()
        self._on_selection()

    def _row_of(self, run_id: str) -> int:
        for i in range(self.model.rowCount()):
            if self.model.item(i, TIME).data(ID_ROLE) == run_id:
                return i
        return -1

    # ---- selection: overlays and the diff ----------------------------------------------------
    def _on_selection(self, *_args) -> None:
        self._update_actions()
        self._show_overlays()
        self._show_details()

    def _show_overlays(self) -> None:
        runs = self.selected_runs()
        shown: list[Overlay] = []
        missing = False
        for run, color in zip(runs, run_colors(len(runs)), strict=True):
            stamp = _stamp(run)
            cached = self._cache.get(run.id)
            if cached is None or cached[0] != stamp:
                missing = True
                if run.id not in self._waiting:
                    self._waiting.add(run.id)
                    fut = self._pool.submit(_read_overlay, run)
                    fut.add_done_callback(
                        lambda f, rid=run.id, st=stamp: self._deliver(rid, st, f))
                if cached is None:
                    continue
            ov = cached[1]
            shown.append(dataclasses.replace(ov, color=color, label=run.label,
                                             status=run.status))
        if getattr(self.loss_plot, "plotItem", None) is None:
            return  # the plots were closed (the window is going)
        if not missing or shown or not runs:
            self.loss_plot.set_overlays(shown)
            self.grad_plot.set_overlays(shown)
            self.overlays_shown.emit([ov.key for ov in shown])

    def _deliver(self, run_id: str, stamp: tuple, fut) -> None:
        """(worker thread) Hand a read to the UI thread."""
        if fut.cancelled():
            return
        try:
            self._loaded.done.emit(run_id, stamp, fut.exception() or fut.result())
        except RuntimeError:  # the history was closed meanwhile
            pass

    def _on_loaded(self, run_id: str, stamp: tuple, result) -> None:
        self._waiting.discard(run_id)
        if isinstance(result, BaseException):
            log.warning("cannot read the metrics of run %s: %s", run_id, result)
            run = self.runs.get(run_id)
            result = overlay_from_events(run_id, run.label if run else run_id, QColor(),
                                         [], [], "failed")
        self._cache[run_id] = (stamp, result)
        if run_id in self.selected_ids():
            self._show_overlays()

    def shown_overlays(self) -> list[Overlay]:
        return list(self.loss_plot.overlays)

    def _graph(self, run: Run):
        """A run's graph, read once (small); the error's text when it cannot be read."""
        stamp = (run.id, run.created)
        cached = self._graphs.get(run.id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        try:
            g = run.graph()
        except (NeuroCanvasError, OSError) as e:
            g = str(e)
        self._graphs[run.id] = (stamp, g)
        return g

    def _show_details(self) -> None:
        runs = self.selected_runs()
        if not runs:
            self.diff.clear()
            return
        if len(runs) == 1:
            self.diff.setHtml(self._details_html(runs[0]))
        elif len(runs) == 2:
            older, newer = sorted(runs, key=_time_key)
            self.diff.setHtml(self._diff_html(older, newer))
        else:
            parts = [f"<p><b>{len(runs)} runs compared.</b> Select two to see what differs."
                     "</p>"]
            parts += [self._failure_html(r) for r in runs if _error(r)]
            self.diff.setHtml("".join(parts))

    @staticmethod
    def _failure_html(run: Run) -> str:
        return (f"<p style='color:{theme.current().error}'><b>{html.escape(run.label)} "
                f"failed:</b> {html.escape(_error(run))}</p>")

    def _details_html(self, run: Run) -> str:
        e = html.escape
        s = run.summary
        out = [f"<p><b>{e(run.label)}</b><br>run {e(run.id)} · {e(local_time(run.created))}"
               f" · {e(run.status)}</p>"]
        if _error(run):
            out.append(self._failure_html(run))
        facts = []
        if _steps(run) is not None:
            facts.append(f"{_steps(run)} steps")
        if isinstance(s.get("epochs"), int):
            facts.append(f"{s['epochs']} epochs")
        if _number(s.get("time_s")) is not None:
            facts.append(f"{s['time_s']:.1f} s")
        if s.get("device"):
            facts.append(str(s["device"]).upper())
        if facts:
            out.append(f"<p>{e(' · '.join(facts))}</p>")
        figures = []
        final = _final(run)
        for key, name, fmt in (("loss", "last step's loss", fmt_loss),
                               ("train_loss", "training loss", fmt_loss),
                               ("val_loss", "validation loss", fmt_loss),
                               ("train_accuracy", "training accuracy", fmt_accuracy),
                               ("val_accuracy", "validation accuracy", fmt_accuracy)):
            if fmt(final.get(key)):
                figures.append(f"{name} {fmt(final.get(key))}")
        best = s.get("best") if isinstance(s.get("best"), dict) else {}
        if fmt_loss(best.get("val_loss")):
            figures.append(f"best validation loss {fmt_loss(best['val_loss'])} "
                           f"(epoch {best.get('val_loss_epoch')})")
        if figures:
            out.append("<p>" + "<br>".join(e(f) for f in figures) + "</p>")
        if run.sweep and isinstance(run.sweep.get("values"), dict):
            vals = ", ".join(f"{k}={_value(v)}" for k, v in run.sweep["values"].items())
            out.append(f"<p>sweep {e(str(run.sweep.get('id', '')))}: {e(vals)}</p>")
        if run.overrides:
            over = ", ".join(f"{k}={_value(v)}" for k, v in flat_settings(run.overrides).items())
            out.append(f"<p>overrides: {e(over)}</p>")
        rows = "".join(f"<tr><td>{e(k)}</td><td>{e(_value(v))}</td></tr>"
                       for k, v in flat_settings(run.settings).items())
        if rows:
            out.append(f"<p><b>Training settings</b></p><table cellspacing='2'>{rows}</table>")
        return "".join(out)

    def _diff_html(self, a: Run, b: Run) -> str:
        """What differs from the older run ``a`` to the newer ``b``."""
        e = html.escape
        out = [f"<p><b>{e(a.label)}</b> ({e(local_time(a.created))}) &rarr; "
               f"<b>{e(b.label)}</b> ({e(local_time(b.created))})</p>"]
        for r in (a, b):
            if _error(r):
                out.append(self._failure_html(r))
        fa, fb = _final(a), _final(b)
        results = []
        for key, name, fmt in (("val_loss", "validation loss", fmt_loss),
                               ("val_accuracy", "validation accuracy", fmt_accuracy),
                               ("loss", "last step's loss", fmt_loss)):
            if fmt(fa.get(key)) or fmt(fb.get(key)):
                results.append(f"{name}: {fmt(fa.get(key)) or '–'} → "
                               f"{fmt(fb.get(key)) or '–'}")
        if _steps(a) != _steps(b):
            results.append(f"steps: {_steps(a)} → {_steps(b)}")
        if results:
            out.append("<p><b>Results</b><br>" + "<br>".join(e(x) for x in results) + "</p>")
        changed = settings_diff(a.settings, b.settings)
        if changed:
            lines = "<br>".join(e(f"{k}: {_value(va)} → {_value(vb)}") for k, va, vb in changed)
            out.append(f"<p><b>Training settings</b><br>{lines}</p>")
        else:
            out.append("<p><b>Training settings</b><br>the same</p>")
        ga, gb = self._graph(a), self._graph(b)
        if isinstance(ga, str) or isinstance(gb, str):
            why = ga if isinstance(ga, str) else gb
            out.append(f"<p><b>Graph</b><br>cannot compare: {e(why)}</p>")
        else:
            lines = graph_diff(ga, gb).lines()
            body = "<br>".join(e(x) for x in lines) if lines else "the same graph"
            out.append(f"<p><b>Graph</b><br>{body}</p>")
        return "".join(out)

    def diff_text(self) -> str:
        return self.diff.toPlainText()

    # ---- actions -----------------------------------------------------------------------------
    def _update_actions(self) -> None:
        runs = self.selected_runs()
        live = self.live_run_id()
        one = len(runs) == 1
        self.actionRestore.setEnabled(one and runs[0].status != "running"
                                      and getattr(self.controller, "state", "idle") == "idle")
        self.actionRename.setEnabled(one)
        self.actionDelete.setEnabled(bool(runs) and all(r.id != live for r in runs))
        for a in (self.actionExportCsv, self.actionExportLossPng, self.actionExportGradPng):
            a.setEnabled(bool(runs))
        self.png_button.setEnabled(bool(runs))

    def _context_menu(self, pos) -> None:
        if not self.view.indexAt(pos).isValid():
            return
        menu = QMenu(self)
        menu.addActions([self.actionRestore, self.actionRename, self.actionDelete])
        menu.addSeparator()
        menu.addActions([self.actionExportCsv, self.actionExportLossPng,
                         self.actionExportGradPng])
        menu.exec(self.view.viewport().mapToGlobal(pos))

    def _warn(self, title: str, why) -> None:
        QMessageBox.warning(self, title, str(why))

    def restore_selected(self) -> bool:
        runs = self.selected_runs()
        return len(runs) == 1 and self.restore(runs[0])

    def restore(self, run: Run) -> bool:
        """Open ``run``'s graph as a new unsaved graph, with its final weights loaded for
        the next run (Train starts from them). False when the user keeps the open graph,
        or the run's graph cannot be read."""
        if getattr(self.controller, "state", "idle") != "idle":
            self._warn("Restore run", "stop training before restoring a run")
            return False
        graph = self._graph(run)
        if isinstance(graph, str):
            self._warn("Restore run", graph)
            return False
        if self.confirm_replace is not None and not self.confirm_replace():
            return False
        from core.fileformat import dumps
        source = self._store_root
        try:
            self.document.open_text(dumps(graph))
        except NeuroCanvasError as e:
            self._warn("Restore run", e)
            return False
        message = f"Restored run '{run.label}' as a new unsaved graph"
        weights = run.path / WEIGHTS_FILE
        if weights.is_file():
            try:
                self.controller.load_weights(weights)
                message += "; Train starts from its weights"
            except NeuroCanvasError as e:
                self._warn("Restore run", f"the graph is restored, its weights are not: {e}")
                message += " (its weights could not be loaded)"
        else:
            message += " (it has no weights)"
        if source is not None:
            message += f". Its runs stay in {source}"
        self.restored.emit(run, message)
        return True

    def rename_selected(self) -> None:
        ids = self.selected_ids()
        if len(ids) != 1:
            return
        row = self._row_of(ids[0])
        index = self.model.index(row, LABEL)
        self.view.setCurrentIndex(index)
        self.view.edit(index)

    def rename(self, run_id: str, label: str) -> bool:
        """Give a run another label (an empty one: its automatic label)."""
        store = self.store()
        if store is None:
            return False
        try:
            store.rename(run_id, label)
        except NeuroCanvasError as e:
            self._warn("Rename run", e)
            self.refresh()
            return False
        self.refresh()
        return True

    def _on_item_changed(self, item: QStandardItem) -> None:
        if self._filling or item.column() != LABEL:
            return
        run = self.runs.get(item.data(ID_ROLE))
        if run is None or item.text() == run.label:
            return
        # after the editor has committed: the rename lists the runs anew
        rid, text = run.id, item.text()
        QTimer.singleShot(0, lambda: self.rename(rid, text))

    def delete_selected(self) -> bool:
        """Delete the selected runs after asking (it cannot be undone)."""
        runs = self.selected_runs()
        if not runs:
            return False
        what = f"run '{runs[0].label}'" if len(runs) == 1 else f"{len(runs)} runs"
        answer = QMessageBox.question(
            self, "Delete runs", f"Delete {what}, with its curves and weights? This cannot "
            "be undone.", QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel)
        if answer != QMessageBox.StandardButton.Yes:
            return False
        return self.delete([r.id for r in runs])

    def delete(self, run_ids: list[str]) -> bool:
        store = self.store()
        if store is None:
            return False
        errors = []
        for rid in run_ids:
            try:
                store.delete(rid)
            except NeuroCanvasError as e:
                errors.append(str(e))
            self._cache.pop(rid, None)
            self._graphs.pop(rid, None)
        self.refresh()
        if errors:
            self._warn("Delete runs", "\n".join(errors))
        return not errors

    def export_csv_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export compared runs", "runs.csv",
                                              "CSV (*.csv)")
        if path:
            self._export(lambda: write_csv(path, self.loss_plot.overlays_csv()), path)

    def export_png_dialog(self, which: str = "loss") -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export compared runs",
                                              f"runs-{which}.png", "PNG image (*.png)")
        if path:
            self._export(lambda: self.export_png(which, path), path)

    def export_png(self, which: str, path) -> None:
        """The loss ("loss") or gradient ("grad") plot with the compared runs, their labels
        in a legend inside the image."""
        plot = self.loss_plot if which == "loss" else self.grad_plot
        plot.redraw()
        export_png(plot, path, legend=plot.overlay_legend())

    def _export(self, write, path) -> None:
        try:
            write()
        except OSError as e:
            self._warn("Export", f"cannot write {path}: {e.strerror}")

    def apply_theme(self) -> None:
        """Status colours and the compared runs' colours of the current theme."""
        self.refresh()
        self._show_overlays()

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
