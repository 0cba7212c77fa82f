"""The main window: canvas in the middle, palette left, inspector right, problems and the
training view below; menus and actions named as docs/format.md section 8 fixes.

``MainWindow.open_file`` / ``save_file`` work without dialogs (tests, the command line);
the menu actions add the dialogs around them.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMenu,
    QMessageBox,
    QTabWidget,
    QToolButton,
)

from core import memory
from core.errors import NeuroCanvasError
from core.training import parse_training
from gui import files, theme
from gui.document import Document
from gui.memory_setting import MemoryBudgetDialog

APP_NAME = "NeuroCanvas"
FILE_FILTER = "NeuroCanvas graphs (*.ncg.json *.json);;All files (*)"
AUTOSAVE_MS = 20_000  # a crash loses at most this much work
# Two arrangements of the docks, each saved as the user leaves it: editing, and training
# (the plots get most of the window); the editing one keeps the key it always had.
LAYOUT_KEYS = {"editing": "windowState", "training": "trainingWindowState"}
TRAINING_CANVAS_SHARE = 0.2  # of the height, left to the canvas in the training layout


class MainWindow(QMainWindow):
    def __init__(self, check_recovery: bool = False):
        super().__init__()
        self.setObjectName("MainWindow")
        self.document = Document(self)
        self.autosaver = files.Autosaver()
        self._autosaved_text: str | None = None
        self.resize(1400, 860)

        from gui.canvas.scene import GraphScene
        from gui.canvas.view import GraphView
        from gui.inspector import Inspector
        from gui.palette import NodePalette
        from gui.problems import ProblemsPanel

        self.scene = GraphScene(self.document)
        self.view = GraphView(self.scene)
        self.view.setObjectName("graphView")
        self.setCentralWidget(self.view)

        self.palette = NodePalette()
        self.palette.setObjectName("nodePalette")
        self.inspector = Inspector(self.document)
        self.inspector.setObjectName("inspector")
        self.problems = ProblemsPanel(self.document)
        self.problems.setObjectName("problemsPanel")

        self.palette_dock = self._dock("Nodes", self.palette, Qt.LeftDockWidgetArea)
        self.inspector_dock = self._dock("Inspector", self.inspector, Qt.RightDockWidgetArea)
        self._make_actions()
        self._make_training()
        self.bottom_tabs = QTabWidget()
        self.bottom_tabs.setObjectName("bottomTabs")
        self.bottom_tabs.addTab(self.problems, "Problems")
        self.bottom_tabs.addTab(self.training_panel, "Training")
        self.bottom_dock = self._dock("Problems and training", self.bottom_tabs,
                                      Qt.BottomDockWidgetArea)
        self._make_menus()
        self._make_status_bar()
        self._connect()

        self.autosave_timer = QTimer(self)
        self.autosave_timer.setInterval(AUTOSAVE_MS)
        self.autosave_timer.timeout.connect(self.autosave)
        self.autosave_timer.start()

        if not self._restore_window_state():
            QTimer.singleShot(0, self._default_dock_sizes)
        self._update_title()
        self._update_actions()
        if check_recovery:
            QTimer.singleShot(0, self.offer_recovery)

    # ---- construction ------------------------------------------------------------------
    def _dock(self, title: str, widget, area) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{widget.objectName() or title}Dock")
        dock.setWidget(widget)
        self.addDockWidget(area, dock)
        return dock

    def _make_training(self) -> None:
        """The live-training controller (runs off the UI thread) and its plots; the actions
        Train, Pause and Stop drive it (``gui.training.attach``)."""
        from gui.training import TrainingController, TrainingPanel

        self.training = TrainingController(self.document, self)
        self.training_panel = TrainingPanel(self.training)
        self.training.run_started.connect(
            lambda *_: self.bottom_tabs.setCurrentWidget(self.training_panel))
        self.training.state_changed.connect(lambda *_: self._update_actions())
        self.training.state_changed.connect(self._on_training_state)
        self.training.next_run_changed.connect(lambda *_: self._update_actions())
        self.dock_layout = "editing"  # LAYOUT_KEYS
        # the run history beside the curves; Restore asks before it replaces the graph
        runs = self.training_panel.runs
        runs.confirm_replace = self.maybe_save
        runs.restored.connect(self._on_run_restored)
        self.actionRunHistory = self._action(
            "actionRunHistory", "R&uns", None, checkable=True,
            tip="The graph's recorded runs beside the training curves")
        self.actionRunHistory.setChecked(True)
        self.actionRunHistory.toggled.connect(runs.setVisible)
        self._make_compare()

    def _action(self, name: str, text: str, slot=None, shortcut=None, tip: str = "",
                checkable: bool = False) -> QAction:
        a = QAction(text, self)
        a.setObjectName(name)
        if shortcut is not None:
            a.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        if tip:
            a.setStatusTip(tip)
            a.setToolTip(tip)
        a.setCheckable(checkable)
        if slot is not None:
            a.triggered.connect(slot)
        self.addAction(a)
        return a

    def _make_actions(self) -> None:
        K = QKeySequence
        self.actionNew = self._action("actionNew", "&New", self.new_file, K.New,
                                      "Start a new, empty graph")
        self.actionOpen = self._action("actionOpen", "&Open…", self.open_dialog, K.Open)
        self.actionSave = self._action("actionSave", "&Save", self.save, K.Save)
        self.actionSaveAs = self._action("actionSaveAs", "Save &As…", self.save_as, K.SaveAs)
        self.actionQuit = self._action("actionQuit", "&Quit", self.close, K.Quit)
        # Fixed texts, so the toolbar does not shift with every command; what they would
        # undo or redo is in their tooltips. Text fields pass these keys on unless they hold
        # uncommitted typing (gui.param_fields.route_edit_keys).
        stack = self.document.undo_stack
        self.actionUndo = self._action("actionUndo", "&Undo", lambda: stack.undo(), K.Undo)
        self.actionRedo = self._action("actionRedo", "&Redo", lambda: stack.redo(),
                                       [K("Ctrl+Shift+Z"), K("Ctrl+Y")])
        # the signals' arguments only: the stack also emits while it is being destroyed
        stack.canUndoChanged.connect(self.actionUndo.setEnabled)
        stack.canRedoChanged.connect(self.actionRedo.setEnabled)
        stack.undoTextChanged.connect(lambda t, a=self.actionUndo: _undo_tip(a, "Undo", t))
        stack.redoTextChanged.connect(lambda t, a=self.actionRedo: _undo_tip(a, "Redo", t))
        _undo_tip(self.actionUndo, "Undo", "")
        _undo_tip(self.actionRedo, "Redo", "")
        self.actionDelete = self._action("actionDelete", "&Delete",
                                         lambda: self._edit(self.scene.delete_selection),
                                         [K(K.Delete), K(Qt.Key_Backspace)],
                                         "Delete the selected nodes and edges")
        self.actionCut = self._action("actionCut", "Cu&t", self.cut, K.Cut)
        self.actionCopy = self._action("actionCopy", "&Copy",
                                       lambda: self.scene.copy_selection(), K.Copy)
        self.actionPaste = self._action("actionPaste", "&Paste",
                                        lambda: self._edit(self.scene.paste), K.Paste)
        self.actionDuplicate = self._action(
            "actionDuplicate", "D&uplicate",
            lambda: self._edit(self.scene.duplicate_selection), "Ctrl+D")
        self.actionSelectAll = self._action("actionSelectAll", "Select &All",
                                            self.select_all, K.SelectAll)
        self.actionFitView = self._action("actionFitView", "&Fit View",
                                          lambda: self.view.fit_view(), "F",
                                          "Zoom to show the whole graph")
        self.actionAutoLayout = self._action(
            "actionAutoLayout", "Auto-&Layout", lambda: self._edit(self._auto_layout),
            "Ctrl+L", "Arrange the nodes in layers, inputs to losses")
        self.actionExportPython = self._action(
            "actionExportPython", "Export as NeuroCanvas &Python…",
            lambda: self.export("python"), tip="A script that rebuilds and trains this graph")
        self.actionExportPyTorch = self._action(
            "actionExportPyTorch", "Export as Py&Torch…", lambda: self.export("pytorch"),
            tip="A self-contained PyTorch model and training script")
        self.actionImportPyTorch = self._action(
            "actionImportPyTorch", "&Import PyTorch…", self.import_pytorch,
            tip="Trace a PyTorch nn.Module (torch.fx) into a new graph, with its weights")
        from gui.import_dialog import torch_available  # found without importing torch
        self.actionImportPyTorch.setVisible(torch_available())
        # Train, Pause and Stop are bound to the training controller in _connect.
        self.actionTrain = self._action("actionTrain", "&Train", None, "F5",
                                        "Train the network on its dataset")
        self.actionPause = self._action("actionPause", "&Pause", None, "F6",
                                        "Pause or resume training", checkable=True)
        self.actionStop = self._action("actionStop", "&Stop", None, "Shift+F5",
                                       "Stop training")
        # after a run: go on from the trained weights, or start over (Train picks one)
        self.actionContinueTraining = self._action(
            "actionContinueTraining", "&Continue from the trained weights",
            lambda: self.request_train("continue"),
            tip="Train on from where the last run ended (the optimizer starts afresh)")
        self.actionRestartTraining = self._action(
            "actionRestartTraining", "&Restart from the initial weights",
            lambda: self.request_train("restart"),
            tip="Train from the initial weights; the curves start over")
        self.actionMemoryBudget = self._action(
            "actionMemoryBudget", "&Memory Budget…", self.edit_memory_budget,
            tip="How much memory a training run may need before it is refused")
        self.actionTensorBoard = self._action(
            "actionTensorBoard", "Write &TensorBoard Logs", files.set_tensorboard_runs,
            tip="Every run also writes TensorBoard event files into its run folder "
                "(tensorboard/ in it; view them with: tensorboard --logdir FOLDER)",
            checkable=True)
        from core.tensorboard import available_library  # found without importing it
        if available_library() is None:
            self.actionTensorBoard.setEnabled(False)
            self.actionTensorBoard.setToolTip("Needs the tensorboard package: "
                                              "pip install tensorboard")
        self.actionTensorBoard.setChecked(files.tensorboard_runs())
        self.actionGradCheck = self._action(
            "actionGradCheck", "Check &Gradients", lambda: self.check_gradients(),
            tip="Compare the selected node's backward with finite differences (float64, "
                "on the current batch): a badge on the node, the details in the inspector")
        # stepping through backprop (gui.training.stepper_view, the Backprop tab)
        self.actionStep = self._action(
            "actionStep", "Ste&p", lambda: self.step_backprop(), "F10",
            tip="Walk one batch through the network, one stage per press: forward node by "
                "node, the loss, backward node by node, the update (paused or idle graph)")
        self.actionStepBack = self._action(
            "actionStepBack", "Step &Back", lambda: self.step_backprop(back=True), "Shift+F10",
            tip="One stage back in the walk through backprop")
        self.actionCompare = self._action(
            "actionCompare", "Co&mpare…", self.open_compare,
            tip="Train variants of the graph side by side (learning rates, optimizers...) "
                "and overlay their curves")
        self.layout_group = QActionGroup(self)
        self.actionEditingLayout = self._action(
            "actionEditingLayout", "&Editing Layout", lambda: self.set_dock_layout("editing"),
            tip="Palette, canvas and inspector get the room", checkable=True)
        self.actionTrainingLayout = self._action(
            "actionTrainingLayout", "T&raining Layout",
            lambda: self.set_dock_layout("training"),
            tip="The training plots get most of the window (chosen when a run starts)",
            checkable=True)
        for a in (self.actionEditingLayout, self.actionTrainingLayout):
            self.layout_group.addAction(a)
        self.actionEditingLayout.setChecked(True)
        self.theme_group = QActionGroup(self)
        self.actionLightTheme = self._action("actionLightTheme", "&Light",
                                             lambda: self.set_theme("light"), checkable=True)
        self.actionDarkTheme = self._action("actionDarkTheme", "&Dark",
                                            lambda: self.set_theme("dark"), checkable=True)
        for a in (self.actionLightTheme, self.actionDarkTheme):
            self.theme_group.addAction(a)
        (self.actionDarkTheme if theme.current().name == "dark"
         else self.actionLightTheme).setChecked(True)

    def _make_menus(self) -> None:
        mb = self.menuBar()
        m = mb.addMenu("&File")
        m.addActions([self.actionNew, self.actionOpen])
        self.recent_menu = m.addMenu("Open &Recent")
        self.examples_menu = m.addMenu("&Examples")
        self.examples_menu.setToolTipsVisible(True)  # the file name and description
        for path in files.examples():
            info = files.example_info(path)
            a = self.examples_menu.addAction(info.title)
            a.setToolTip(info.tooltip)
            a.setStatusTip(path.name)
            a.setData(str(path))
            a.triggered.connect(lambda _=False, p=path: self.open_example(p))
        m.addAction(self.actionImportPyTorch)
        m.addSeparator()
        m.addActions([self.actionSave, self.actionSaveAs])
        m.addSeparator()
        m.addActions([self.actionExportPython, self.actionExportPyTorch])
        m.addSeparator()
        m.addAction(self.actionQuit)
        self._fill_recent_menu()

        m = mb.addMenu("&Edit")
        m.addActions([self.actionUndo, self.actionRedo])
        m.addSeparator()
        m.addActions([self.actionCut, self.actionCopy, self.actionPaste, self.actionDuplicate,
                      self.actionDelete])
        m.addSeparator()
        m.addActions([self.actionSelectAll, self.actionAutoLayout])

        m = mb.addMenu("&View")
        m.addAction(self.actionFitView)
        m.addSeparator()
        for dock in (self.palette_dock, self.inspector_dock, self.bottom_dock):
            m.addAction(dock.toggleViewAction())
        m.addAction(self.actionRunHistory)
        from gui.training.cost import heat_menu  # gradient norm or a cost, as heatMode
        self.heat_menu = m.addMenu(heat_menu(self.training_panel.cost, self))
        m.addSeparator()
        m.addActions([self.actionEditingLayout, self.actionTrainingLayout])
        themes = m.addMenu("&Theme")
        themes.addActions([self.actionLightTheme, self.actionDarkTheme])

        m = mb.addMenu("&Train")
        m.addActions([self.actionTrain, self.actionPause, self.actionStop])
        m.addSeparator()
        m.addActions([self.actionContinueTraining, self.actionRestartTraining])
        m.addSeparator()
        m.addAction(self.actionCompare)
        m.addAction(self.actionGradCheck)
        m.addActions([self.actionStep, self.actionStepBack])
        m.addSeparator()
        m.addAction(self.actionMemoryBudget)
        m.addAction(self.actionTensorBoard)
        self.train_menu = m

        tb = self.addToolBar("Main")
        tb.setObjectName("mainToolBar")
        tb.addActions([self.actionNew, self.actionOpen, self.actionSave])
        tb.addSeparator()
        tb.addActions([self.actionUndo, self.actionRedo])
        tb.addSeparator()
        tb.addActions([self.actionFitView, self.actionAutoLayout])
        tb.addSeparator()
        tb.addActions([self.actionTrain, self.actionPause, self.actionStop, self.actionCompare])
        tb.addActions([self.actionStepBack, self.actionStep])
        # Train's button offers the choice after a run as a menu beside it
        self.train_choice_menu = QMenu(self)
        self.train_choice_menu.addActions([self.actionContinueTraining,
                                           self.actionRestartTraining])
        train_button = tb.widgetForAction(self.actionTrain)
        train_button.setMenu(self.train_choice_menu)
        train_button.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)

    def _make_status_bar(self) -> None:
        sb = self.statusBar()
        self.summary_label = QLabel()
        self.summary_label.setObjectName("graphSummary")
        from gui.icons import IconLabel, lock_icon  # painted: fonts lack the lock emoji
        self.lock_label = IconLabel(lock_icon, "Locked while training")
        self.lock_label.setObjectName("lockIndicator")
        self.lock_label.setVisible(False)
        sb.addPermanentWidget(self.lock_label)
        sb.addPermanentWidget(self.summary_label)

    def _connect(self) -> None:
        d = self.document
        d.dirty_changed.connect(self._update_title)
        d.path_changed.connect(self._update_title)
        d.analysis_changed.connect(self._on_analysis)
        d.locked_changed.connect(self._on_locked)
        self.scene.selection_ids_changed.connect(self._on_selection)
        if hasattr(self.scene, "message"):
            self.scene.message.connect(lambda text: self.statusBar().showMessage(text, 6000))
        self.palette.node_requested.connect(self.add_node_at_center)
        self.problems.node_activated.connect(self.focus_node)
        from gui.training import attach
        # Train goes through request_train, which says why when training cannot start
        attach(self.training, self.training_panel, train=None,
               pause=self.actionPause, stop=self.actionStop, scene=self.scene,
               problems=self.problems, status_bar=self.statusBar(),
               selection=self.scene.selection_ids_changed)
        self.actionTrain.triggered.connect(lambda *_: self.request_train())
        from gui.training import show_next_run
        show_next_run(self.training, self.actionContinueTraining, self.actionRestartTraining)
        self.training.failed.connect(self._on_training_failed)
        d.edited.connect(self._on_edited)
        self._make_probes()
        self._on_analysis(d.analysis)  # a new window says at once that it cannot train yet

    # ---- documents ---------------------------------------------------------------------
    def open_file(self, path: str | Path) -> None:
        """Open a graph without dialogs. A file that is not a graph raises GraphFileError
        (the document stays as it was); an invalid graph opens with its problems listed."""
        self.document.open(path)
        self.autosaver.clear()
        files.add_recent_file(path)
        self._fill_recent_menu()
        self.view.fit_when_ready()

    def save_file(self, path: str | Path) -> None:
        """Save the open graph to ``path`` atomically, without dialogs. An untitled graph
        saved to a new file takes the file's name (shown in messages and exported code)."""
        stem = Path(path).name.removesuffix(".ncg.json").removesuffix(".json")
        renamed = bool(stem) and (self.document.graph.name or "untitled") == "untitled" \
            and Path(path) != self.document.path and not self.document.locked
        if renamed:
            self.document.set_name(stem)  # one undo step, like a rename in the inspector
        try:
            self.document.save(path)
        except BaseException:
            if renamed:  # a save that failed changes nothing
                self.document.undo_stack.undo()
            raise
        self.autosaver.clear()
        files.add_recent_file(path)
        self._fill_recent_menu()

    def new_file(self) -> None:
        if self.maybe_save():
            self.document.new()
            self.autosaver.clear()

    def open_dialog(self) -> None:
        if not self.maybe_save():
            return
        start = str(self.document.path.parent) if self.document.path else str(files.EXAMPLES_DIR)
        path, _ = QFileDialog.getOpenFileName(self, "Open graph", start, FILE_FILTER)
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path) -> bool:
        """Open with errors shown to the user (menus, recent files)."""
        try:
            self.open_file(path)
            return True
        except (NeuroCanvasError, OSError) as e:
            QMessageBox.warning(self, "Cannot open file", str(e))
            return False

    def open_example(self, path: Path) -> None:
        """Open an example as a new unsaved graph, so the shipped file stays as it is."""
        if not self.maybe_save():
            return
        try:
            self.document.open_text(path.read_text(encoding="utf-8"))
        except (NeuroCanvasError, OSError) as e:
            QMessageBox.warning(self, "Cannot open example", str(e))
            return
        self.document.undo_stack.setClean()
        self.view.fit_when_ready()

    def import_pytorch(self) -> None:
        """File > Import PyTorch...: the dialog runs ``main.py import`` in a process of its
        own; its graph opens as a new unsaved document with the module's weights loaded."""
        if not self.maybe_save():
            return
        from gui.import_dialog import ImportDialog

        start = str(self.document.path.parent) if self.document.path else None
        dialog = ImportDialog(self, start)
        dialog.imported.connect(self.open_imported)
        dialog.finished.connect(lambda *_: (dialog.cleanup(), dialog.deleteLater()))
        self.import_dialog = dialog  # for tests, and so it lives while it runs
        dialog.open()  # window-modal, not a nested event loop

    def open_imported(self, text: str, weights: str, report: str = "") -> None:
        """Open an imported graph (its JSON text) unsaved, with the module's weights for its
        first run (a graph without a loss holds them too, so a loss added later trains
        from them); errors are shown, not raised."""
        try:
            self.document.open_text(text)
        except (NeuroCanvasError, OSError) as e:
            QMessageBox.warning(self, "Cannot open the imported graph", str(e))
            return
        self.autosaver.clear()
        self.view.fit_when_ready()
        try:
            self.document.flush()
            self.training.load_weights(weights)
        except (NeuroCanvasError, OSError) as e:
            QMessageBox.warning(self, "Cannot load the imported weights", str(e))
            return
        self.statusBar().showMessage(
            "Imported with the module's weights. It has no loss: add a Target and a loss "
            "to train it (from these weights).", 15000)

    def save(self) -> bool:
        if self.document.path is None:
            return self.save_as()
        return self._save_to(self.document.path)

    def save_as(self) -> bool:
        name = (self.document.path
                or Path.cwd() / f"{self.document.graph.name or 'untitled'}.ncg.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save graph as", str(name), FILE_FILTER)
        return bool(path) and self._save_to(path)

    def _save_to(self, path) -> bool:
        try:
            self.save_file(path)
        except (NeuroCanvasError, OSError) as e:
            QMessageBox.warning(self, "Cannot save", str(e))
            return False
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def maybe_save(self) -> bool:
        """Ask what to do with unsaved changes; False if the user cancels."""
        if not self.document.dirty:
            return True
        answer = QMessageBox.question(
            self, APP_NAME, f"Save changes to {self.document.title}?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        if answer == QMessageBox.Save:
            return self.save()
        return answer == QMessageBox.Discard

    def closeEvent(self, event: QCloseEvent) -> None:
        self.compare.shutdown()  # stops a comparison and ends its training processes
        if self.training.state != "idle":
            self.training.stop()
            self.training.wait_idle(5.0)
        if self.maybe_save():
            self.autosaver.clear()
            files.settings().setValue("windowGeometry", self.saveGeometry())
            files.settings().setValue(LAYOUT_KEYS[self.dock_layout], self.saveState())
            self.training.shutdown()  # ends the training process
            event.accept()
        else:
            event.ignore()

    def _restore_window_state(self) -> bool:
        """The window layout the user left; False when there is none to restore."""
        s = files.settings()
        geometry, state = s.value("windowGeometry"), s.value("windowState")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        return isinstance(state, QByteArray) and self.restoreState(state)

    def _default_dock_sizes(self) -> None:
        """The canvas gets most of the window."""
        if self.dock_layout != "editing":  # a run began before this first arrangement
            return
        self.resizeDocks([self.palette_dock, self.inspector_dock], [220, 330], Qt.Horizontal)
        # the problems list needs a few rows; the training layout gives the plots their room
        self.resizeDocks([self.bottom_dock], [max(160, self.height() // 5)], Qt.Vertical)

    def set_dock_layout(self, name: str) -> None:
        """Arrange the docks for "editing" or for "training" (``LAYOUT_KEYS``): the
        arrangement left is saved, the one chosen comes back as the user last left it (the
        default the first time)."""
        if name != self.dock_layout:
            s = files.settings()
            s.setValue(LAYOUT_KEYS[self.dock_layout], self.saveState())
            self.dock_layout = name
            state = s.value(LAYOUT_KEYS[name])
            if not (isinstance(state, QByteArray) and self.restoreState(state)):
                if name == "training":
                    self._training_dock_sizes()
                else:
                    self.palette_dock.show()
                    self._default_dock_sizes()
            if name == "training":
                self.bottom_tabs.setCurrentWidget(self.training_panel)
            self.view.fit_when_ready()  # the canvas changes size as the docks settle
        (self.actionTrainingLayout if name == "training"
         else self.actionEditingLayout).setChecked(True)

    def _training_dock_sizes(self) -> None:
        """The training plots get most of the height; the canvas keeps a strip, where the
        gradient heat shows, and the palette goes (nothing is added while training)."""
        self.palette_dock.hide()
        self.bottom_dock.show()
        if self.bottom_dock.isFloating():  # the user's own arrangement
            return
        shared = self.centralWidget().height() + self.bottom_dock.height()
        canvas = max(120, int(shared * TRAINING_CANVAS_SHARE))
        self.resizeDocks([self.bottom_dock], [shared - canvas], Qt.Vertical)

    def _on_training_state(self, state: str) -> None:
        if state == "running" and self.training.building:  # a run starts, not a resume
            self.set_dock_layout("training")

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        recent = files.recent_files()
        for p in recent:
            a = self.recent_menu.addAction(Path(p).name)
            a.setToolTip(p)
            a.setStatusTip(p)
            a.triggered.connect(lambda _=False, p=p: self._open_recent(p))
        if recent:
            self.recent_menu.addSeparator()
            self.recent_menu.addAction("Clear list", self._clear_recent)
        self.recent_menu.setEnabled(bool(recent))

    def _open_recent(self, path: str) -> None:
        if self.maybe_save():
            self.open_path(path)

    def _clear_recent(self) -> None:
        files.clear_recent_files()
        self._fill_recent_menu()

    # ---- autosave and recovery -----------------------------------------------------------
    def autosave(self) -> None:
        """Write unsaved work to this window's recovery file (or remove it when clean)."""
        if self.document.dirty:
            try:  # a timer slot: nothing may escape it, and the next tick tries again
                text = self.document.to_json()
                if text == self._autosaved_text and self.autosaver.graph_file.exists():
                    return  # nothing changed since the last autosave
                self.autosaver.write(text, self.document.path)
                self._autosaved_text = text
            except (OSError, NeuroCanvasError) as e:
                self.statusBar().showMessage(f"Autosave failed: {e}", 6000)
        else:
            self.autosaver.clear()

    def offer_recovery(self, ask=None) -> bool:
        """Offer back work autosaved by an editor that did not close cleanly. ``ask`` (for
        tests) answers the question instead of a dialog. Returns True if work came back."""
        pending = files.pending_recoveries()
        if not pending:
            return False
        rec = pending[0]
        question = (f"NeuroCanvas did not close cleanly. Recover the unsaved work on "
                    f"{rec.label}?")
        if ask is None:
            answer = QMessageBox.question(self, "Recover unsaved work", question,
                                          QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
            yes = answer == QMessageBox.Yes
        else:
            yes = ask(question)
        if not yes:
            rec.discard()
            return False
        try:
            original = Path(rec.original) if rec.original else None
            self.document.open_text(rec.read(), original)
        except (NeuroCanvasError, OSError) as e:
            QMessageBox.warning(self, "Cannot recover", str(e))
            return False
        rec.discard()
        self.view.fit_when_ready()
        self.autosave()  # the recovered work is now this window's to protect
        self.statusBar().showMessage(f"Recovered unsaved work on {rec.label}", 8000)
        return True

    # ---- editing -----------------------------------------------------------------------
    def _edit(self, fn) -> None:
        """Run an edit; a refused edit (locked graph, impossible connection) is reported in
        the status bar instead of raising."""
        try:
            fn()
        except NeuroCanvasError as e:
            self.statusBar().showMessage(str(e), 8000)

    def _auto_layout(self) -> None:
        self.document.auto_layout()
        QTimer.singleShot(0, self.view.fit_view)

    def cut(self) -> None:
        self.scene.copy_selection()
        self._edit(self.scene.delete_selection)

    def select_all(self) -> None:
        self.scene.select_nodes(list(self.document.graph.nodes))

    def add_node_at_center(self, type_name: str) -> None:
        self._edit(lambda: self.scene.add_node_at(type_name, self.view.center_scene_pos()))

    def focus_node(self, node_id: str) -> None:
        if node_id in self.document.graph.nodes:
            self.scene.select_nodes([node_id])
            self.view.centerOn(self.scene.node_item(node_id))

    def _on_selection(self, ids: list) -> None:
        self.inspector.show_node(ids[0] if len(ids) == 1 else None)
        self._update_actions()

    def _on_analysis(self, analysis) -> None:
        g = self.document.graph
        total = sum(analysis.param_count(n) for n in g.nodes)
        # what stops training counts as a problem: "valid" means "can train"
        n_problems = len(analysis.problems) + len(getattr(analysis, "not_ready", ()))
        status = self.document.status_text
        self.summary_label.setText(f"{len(g.nodes)} nodes · {len(g.edges)} edges · "
                                   f"{total:,} parameters · {status}")
        if n_problems:
            self.bottom_tabs.setTabText(0, f"Problems ({n_problems})")
        else:
            self.bottom_tabs.setTabText(0, "Problems")
        self._update_actions()

    def _on_locked(self, locked: bool) -> None:
        self.lock_label.setVisible(locked)
        self._update_actions()

    def _update_actions(self) -> None:
        locked = self.document.locked
        for a in (self.actionNew, self.actionOpen, self.actionDelete, self.actionCut,
                  self.actionPaste, self.actionDuplicate, self.actionAutoLayout,
                  self.actionUndo, self.actionRedo):
            a.setEnabled(not locked)
        if not locked:  # the undo stack keeps these two right when editing is allowed
            self.actionUndo.setEnabled(self.document.undo_stack.canUndo())
            self.actionRedo.setEnabled(self.document.undo_stack.canRedo())
        self.recent_menu.setEnabled(not locked and bool(self.recent_menu.actions()))
        self.examples_menu.setEnabled(not locked)
        self.actionImportPyTorch.setEnabled(not locked)
        # as gui.training.bind_actions would: Train starts when idle and resumes when paused;
        # it stays enabled for a graph that cannot train, so that pressing it says why
        state = self.training.state
        self.actionTrain.setEnabled(state in ("idle", "paused"))
        tip = ((self.training.next_run().text or "Train the network on its dataset")
               if state in ("idle", "paused") else
               "Already training: pause (F6) or stop (Shift+F5) first")
        self.actionTrain.setToolTip(tip)
        self.actionTrain.setStatusTip(tip)
        ids = self.scene.selected_node_ids()
        self.actionGradCheck.setEnabled(len(ids) == 1 and self.document.analysis.ok)

    def _update_title(self, *_args) -> None:
        self.setWindowTitle(f"{self.document.title}[*] — {APP_NAME}")
        self.setWindowModified(self.document.dirty)

    # ---- training ----------------------------------------------------------------------
    def train(self) -> bool:
        """Start (or resume) training, as actionTrain does; False (and why, in the status
        bar) when it cannot."""
        return self.request_train()

    def edit_memory_budget(self) -> bool:
        """Train > Memory Budget...: the dialog, with what the current graph needs; True when
        a new budget was stored."""
        dlg = MemoryBudgetDialog(self, self._memory_estimate())
        return dlg.exec() == QDialog.Accepted

    def _memory_estimate(self) -> str | None:
        """What training the current graph needs, in a sentence (None when it cannot be
        estimated: an invalid graph or bad training settings)."""
        analysis = self.document.analysis
        if not analysis.ok:
            return None
        try:
            cfg = parse_training(self.document.graph.training)
        except NeuroCanvasError:
            return None
        base = self.document.path.parent if self.document.path else Path.cwd()
        est = memory.training_estimate(analysis, cfg, base)
        largest = f" (largest: {est.largest()})" if est.contributors else ""
        return f"This graph needs {est.describe()}{largest}."

    def request_train(self, mode: str | None = None) -> bool:
        """Train (F5): start, or resume a paused run. Never silent: a refusal says why in the
        status bar; problems that stop training bring the problems list to the front with
        the first culprit node selected. True when training started or resumed. ``mode``
        after a run: "continue" or "restart" (None: what ``training.next_run()`` says)."""
        from core.readiness import first_culprit, refusal
        if self.compare.running:
            self.statusBar().showMessage("Cannot train: a comparison is running (Train > "
                                         "Compare…); stop it first", 10000)
            return False
        state = self.training.state
        if state == "paused":
            return self.training.start()  # resumes
        if state != "idle":
            why = ("training is stopping; train again once it has stopped" if state == "stopping"
                   else "already training: pause (F6) or stop (Shift+F5) first")
            self.statusBar().showMessage(f"Cannot train: {why}", 10000)
            return False
        analysis = self.document.recheck_dataset()  # a data file may have changed on disk
        why = refusal(analysis)
        if why is not None:
            self._show_problems(first_culprit(analysis))
            self.statusBar().showMessage(why, 15000)
            return False
        return self.training.start(mode)  # a refusal of its own comes back through failed

    # ---- looking inside: gradient check and cost -----------------------------------------
    def step_backprop(self, back: bool = False) -> bool:
        """Train > Step (F10) / Step Back (Shift+F10): the Backprop tab's walk; it is shown
        when a walk begins. False, with why in the status bar, when refused."""
        view = self.training_panel.backprop
        if not view.active and not back:
            self.bottom_tabs.setCurrentWidget(self.training_panel)
            self.training_panel.tabs.setCurrentWidget(view)
        return view.step_back() if back else view.step()

    def _make_probes(self) -> None:
        """Check Gradients (badges and inspector details, ``gui.training.grad_check``), in the
        Train menu and the node's context menu; the cost heat's totals in the status bar."""
        from gui.training.grad_check import GradCheckRunner
        self.grad_check = GradCheckRunner(self.training, self.scene, self.statusBar(),
                                          self.inspector.node_page, self)
        self.inspector.node_page.grad_checks = self.grad_check.results
        self.training_panel.cost.set_status_bar(self.statusBar())
        self.training_panel.backprop.message.connect(
            lambda text: self.statusBar().showMessage(text, 8000))
        node_menu = self.scene.node_menu  # the canvas's own entries, then these

        def menu():
            m = node_menu()
            m.addSeparator()
            m.addAction(self.actionGradCheck)
            return m

        self.scene.node_menu = menu

    def check_gradients(self, node_id: str | None = None) -> bool:
        """Train > Check Gradients: check ``node_id`` (default: the one selected node) in the
        training process; the answer comes later (badge, inspector, status bar). False, with
        why in the status bar, when it cannot be asked."""
        if node_id is None:
            ids = self.scene.selected_node_ids()
            node_id = ids[0] if len(ids) == 1 else None
        if node_id is None:
            self.statusBar().showMessage("Select one node to check its gradients", 6000)
            return False
        if not self.document.analysis.ok:
            self.statusBar().showMessage("Cannot check gradients: the graph has problems "
                                         "(see Problems)", 8000)
            return False
        return self.grad_check.run(node_id)

    # ---- comparing -----------------------------------------------------------------------
    def _make_compare(self) -> None:
        """Train > Compare...: variants of the graph trained side by side
        (``gui.training.compare``); their curves go over the training view's plots and their
        runs into the run history. Train and a comparison refuse each other."""
        from gui.training.compare import CompareController
        panel = self.training_panel
        self.compare = CompareController(self.document, self, training=self.training,
                                         plots=[panel.plot("loss"), panel.plot("grad")])
        self.compare_dialog = None
        self.compare.state_changed.connect(self._on_compare_state)
        self.compare.finished.connect(self._on_compare_finished)

    def open_compare(self):
        """Show the Compare dialog (``compareDialog``, modeless); returns it."""
        from gui.training.compare import CompareDialog
        if self.compare_dialog is None:
            self.compare_dialog = CompareDialog(self.compare, self)
        self.compare_dialog.show()
        self.compare_dialog.raise_()
        self.compare_dialog.activateWindow()
        return self.compare_dialog

    def _on_compare_state(self, state: str) -> None:
        if state == "running":  # the curves are where the comparison shows
            self.set_dock_layout("training")
            self.bottom_tabs.setCurrentWidget(self.training_panel)
        self._update_actions()

    def _on_compare_finished(self) -> None:
        """The runs are in the store: the history lists them; the compared curves stay
        drawn, in the colours they had, until runs are selected there."""
        history = getattr(self.training_panel, "runs", None)
        if history is not None and hasattr(history, "refresh"):
            history.refresh()  # (it draws the runs selected in it: none)
            self.compare.show_overlays()
        done = sum(v.state == "finished" for v in self.compare.variants)
        self.statusBar().showMessage(
            f"Comparison done: {done} of {len(self.compare.variants)} variants finished", 8000)

    def _show_problems(self, node_id: str | None) -> None:
        self.bottom_dock.show()
        self.bottom_dock.raise_()
        self.bottom_tabs.setCurrentWidget(self.problems)
        self.problems.select_first()
        if node_id is not None:
            self.focus_node(node_id)

    def _on_training_failed(self, node_id, message: str) -> None:
        """A run that could not start or that failed (a dataset that does not fit, a NaN)."""
        self._show_problems(node_id if node_id in self.document.graph.nodes else None)
        self.statusBar().showMessage(f"Training failed: {message}", 15000)

    def _on_edited(self) -> None:
        """What a run reported was about the graph as it was: it goes with an edit."""
        self.problems.clear_runtime_problems()
        clear = getattr(self.scene, "clear_highlight", None)
        if clear is not None:
            clear()

    def stop_training(self) -> None:
        self.training.stop()

    def _on_run_restored(self, _run, message: str) -> None:
        """A run's graph came back as a new unsaved graph (the run history's Restore)."""
        self.view.fit_when_ready()
        self.statusBar().showMessage(message, 10000)

    # ---- export and looks --------------------------------------------------------------
    def export(self, target: str):
        """Open a preview of the exported code (``target``: 'python' or 'pytorch')."""
        from gui.export_dialog import ExportDialog
        try:
            from core.export import export_graph
            base = self.document.path.parent if self.document.path else None
            source = export_graph(self.document.graph, target, base_dir=base)
        except NeuroCanvasError as e:
            QMessageBox.warning(self, "Cannot export", str(e))
            return None
        stem = (self.document.path.name.removesuffix(".ncg.json").removesuffix(".json")
                if self.document.path else (self.document.graph.name or "model"))
        suffix = "_torch" if target == "pytorch" else ""
        dialog = ExportDialog(source, target, f"{stem}{suffix}.py", self)
        dialog.open()
        return dialog

    def set_theme(self, name: str) -> None:
        theme.apply_theme(name)
        files.settings().setValue("theme", name)
        for w in (self.scene, self.palette, self.inspector, self.problems, self.training_panel):
            refresh = getattr(w, "apply_theme", None)
            if refresh is not None:
                refresh()
        self.view.viewport().update()


def _undo_tip(action: QAction, verb: str, command_text: str) -> None:
    """What Undo or Redo would do, in its tooltip and status tip (its text stays fixed)."""
    tip = f"{verb} {command_text}" if command_text else f"Nothing to {verb.lower()}"
    action.setToolTip(tip)
    action.setStatusTip(tip)


def run_editor(path: str | None = None) -> int:
    """Start the application, optionally opening ``path``; returns the exit status."""
    app = QApplication.instance() or QApplication(sys.argv[:1])
    window = start_editor(path)  # noqa: F841 - kept alive while the event loop runs
    return app.exec()


def start_editor(path: str | None = None) -> MainWindow:
    """The editor's first window, shown, with ``path`` open; run_editor then runs the event
    loop. Work left by a crash is offered back on the first turn of the loop, whether or not
    a graph was given."""
    app = QApplication.instance()
    # No organization name: Qt would put it before the application's name in the data and
    # settings paths (NeuroCanvas/NeuroCanvas).
    app.setApplicationName(APP_NAME)
    theme.apply_theme(str(files.settings().value("theme", "light")), app)
    try:
        from gui.icons import app_icon
        app.setWindowIcon(app_icon())
    except ImportError:
        pass
    window = MainWindow(check_recovery=True)
    if path is not None:
        window.open_path(path)
    window.show()
    return window
