"""The main window: docs/format.md section 8 names, files, recent files, autosave and recovery."""
from __future__ import annotations

import json
import os

import pytest
from PySide6.QtCore import QMimeData, QPointF, Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMessageBox, QWidget

from core.errors import GraphFileError
from gui import files
from gui.main_window import MainWindow
from tests.cli_helpers import ROOT

EXAMPLES = ROOT / "resources" / "examples"
MLP = EXAMPLES / "mlp_digits.ncg.json"

WIDGETS = ["MainWindow", "nodePalette", "graphView", "inspector", "problemsPanel"]
ACTIONS = ["actionNew", "actionOpen", "actionSave", "actionSaveAs", "actionUndo", "actionRedo",
           "actionDelete", "actionTrain", "actionPause", "actionStop", "actionExportPython",
           "actionExportPyTorch", "actionFitView", "actionAutoLayout"]


@pytest.fixture
def make_window(qtbot):
    """Windows that close without a save question when the test ends, pass or fail."""
    made = []

    def make() -> MainWindow:
        w = MainWindow()
        made.append(w)
        return w

    yield make
    for w in made:
        w.document.undo_stack.setClean()
        w.close()
        w.deleteLater()


@pytest.fixture
def window(make_window, qtbot):
    w = make_window()
    w.show()
    qtbot.waitExposed(w)
    return w


def file_dict(w: MainWindow) -> dict:
    return json.loads(w.document.to_json())


def test_spec_object_names_exist(window):
    assert window.objectName() == "MainWindow"
    for name in WIDGETS[1:]:
        assert window.findChild(QWidget, name) is not None, name
    for name in ACTIONS:
        assert window.findChild(QAction, name) is not None, name


def test_open_save_round_trip_and_title(window, make_window, tmp_path):
    window.open_file(MLP)
    assert list(window.document.graph.nodes) == ["x", "fc1", "act1", "fc2", "y", "loss"]
    assert "mlp_digits" in window.windowTitle() and not window.isWindowModified()
    window.document.set_param("fc1", "units", 40)
    assert window.isWindowModified()
    out = tmp_path / "copy.ncg.json"
    window.save_file(out)
    assert not window.isWindowModified() and "copy.ncg.json" in window.windowTitle()
    other = make_window()
    other.open_file(out)
    assert file_dict(other) == file_dict(window)
    assert files.recent_files()[0] == str(out.resolve())


def test_non_graph_file_is_refused_and_invalid_graph_opens(window, tmp_path, qtbot):
    junk = tmp_path / "junk.ncg.json"
    junk.write_text('{"format": "something else"}')
    with pytest.raises(GraphFileError):
        window.open_file(junk)
    g = json.loads(MLP.read_text())
    g["nodes"][1]["params"]["units"] = -3
    bad = tmp_path / "bad.ncg.json"
    bad.write_text(json.dumps(g))
    window.open_file(bad)
    qtbot.waitUntil(lambda: window.problems.problem_count() > 0, timeout=3000)
    assert "fc1" in window.document.graph.nodes


def test_undo_redo_actions_drive_the_document(window):
    window.open_file(MLP)
    before = file_dict(window)
    window.document.delete(["act1"])
    window.actionUndo.trigger()
    assert file_dict(window) == before
    window.actionRedo.trigger()
    assert "act1" not in window.document.graph.nodes


def test_delete_action_removes_selection_and_undo_restores_edges(window):
    window.open_file(MLP)
    edges = [str(e) for e in window.document.graph.edges]
    window.scene.select_nodes(["fc2"])
    window.actionDelete.trigger()
    assert "fc2" not in window.document.graph.nodes
    window.actionUndo.trigger()
    assert [str(e) for e in window.document.graph.edges] == edges


def test_palette_double_click_adds_at_view_centre(window):
    window.open_file(MLP)
    n = len(window.document.graph.nodes)
    window.palette.node_requested.emit("Dropout")
    assert len(window.document.graph.nodes) == n + 1
    new = list(window.document.graph.nodes)[-1]
    assert window.document.graph.nodes[new].type == "Dropout"
    assert window.scene.selected_node_ids() == [new]


def test_selection_drives_the_inspector_and_problem_click_selects(window, qtbot):
    window.open_file(MLP)
    window.document.delete([], [window.document.graph.edges[1]])  # act1 loses its input
    qtbot.waitUntil(lambda: window.problems.problem_count() > 0, timeout=3000)
    window.problems.node_activated.emit("act1")
    assert window.scene.selected_node_ids() == ["act1"]


def test_examples_menu_lists_every_example_and_opens_as_unsaved_copy(window):
    names = [a.text() for a in window.examples_menu.actions()]
    # readable titles, with the file name in the tooltip
    assert names == [files.example_info(p).title for p in files.examples()]
    assert "MLP digits" in names
    action = next(a for a in window.examples_menu.actions() if a.text() == "CNN digits")
    assert "cnn_digits" in action.toolTip()
    action.trigger()
    assert window.document.path is None and "conv1" in window.document.graph.nodes
    assert not window.document.dirty


def test_close_asks_about_unsaved_changes(window, monkeypatch):
    window.open_file(MLP)
    window.document.set_param("fc1", "units", 33)
    asked = []

    def answer(*args, **kwargs):
        asked.append(args)
        return QMessageBox.Cancel

    monkeypatch.setattr(QMessageBox, "question", answer)
    assert window.close() is False and asked, "cancel keeps the window open"
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.Discard)
    assert window.close() is True


def test_autosave_and_recovery_after_a_crash(window, make_window):
    window.open_file(MLP)
    window.document.set_param("fc1", "units", 77)
    window.autosave()
    assert window.autosaver.graph_file.exists()
    # Pretend the process that wrote it died: rewrite its pid to one that is not running.
    meta = json.loads(window.autosaver.meta_file.read_text())
    meta["pid"] = _dead_pid()
    window.autosaver.meta_file.write_text(json.dumps(meta))

    fresh = make_window()
    questions = []
    assert fresh.offer_recovery(ask=lambda q: questions.append(q) or True)
    assert "mlp_digits" in questions[0]
    assert fresh.document.graph.nodes["fc1"].params["units"] == 77
    assert fresh.document.dirty, "recovered work is unsaved work"
    assert fresh.document.path == MLP
    assert not files.pending_recoveries(), "a recovery is offered once"


def test_saving_removes_the_recovery_file(window, tmp_path):
    window.open_file(MLP)
    window.document.set_param("fc1", "units", 12)
    window.autosave()
    assert window.autosaver.graph_file.exists()
    window.save_file(tmp_path / "saved.ncg.json")
    assert not window.autosaver.graph_file.exists()


def test_declined_recovery_is_discarded(window):
    window.open_file(MLP)
    window.document.set_param("fc1", "units", 5)
    window.autosave()
    meta = json.loads(window.autosaver.meta_file.read_text())
    meta["pid"] = _dead_pid()
    window.autosaver.meta_file.write_text(json.dumps(meta))
    assert not window.offer_recovery(ask=lambda q: False)
    assert not files.pending_recoveries()


def test_drop_from_palette_mime_adds_a_node(window, qtbot):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QDragEnterEvent, QDropEvent

    window.open_file(MLP)
    view = window.view
    mime = QMimeData()
    mime.setData("application/x-neurocanvas-node", b"BatchNorm")
    pos = QPoint(view.viewport().width() // 2, view.viewport().height() // 2)
    enter = QDragEnterEvent(pos, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication_send(view.viewport(), enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(pos), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication_send(view.viewport(), drop)
    assert [n.type for n in window.document.graph.nodes.values()].count("BatchNorm") == 1


def test_export_preview_shows_code_and_saves_it(window, tmp_path):
    pytest.importorskip("core.export")
    window.open_file(MLP)
    for target in ("pytorch", "python"):
        dialog = window.export(target)
        assert dialog is not None
        text = dialog.editor.toPlainText()
        assert "fc1" in text
        out = dialog.save_to(tmp_path / f"{target}.py")
        assert out.read_text() == text
        compile(text, str(out), "exec")
        dialog.close()


def test_locked_document_disables_editing_actions(window):
    window.open_file(MLP)
    window.document.set_locked(True)
    assert not window.actionDelete.isEnabled() and not window.actionAutoLayout.isEnabled()
    assert window.lock_label.isVisibleTo(window)
    window.document.set_locked(False)
    assert window.actionDelete.isEnabled()


def QApplication_send(receiver, event):
    from PySide6.QtWidgets import QApplication
    QApplication.sendEvent(receiver, event)


def _dead_pid() -> int:
    """A process id that is not running (the parent of a finished child)."""
    import subprocess
    p = subprocess.Popen(["true"])
    p.wait()
    pid = p.pid
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    return 2**22 + 12345  # above the usual pid_max


def test_an_autosave_that_cannot_write_the_document_says_so_and_keeps_trying(window,
                                                                            monkeypatch):
    window.open_file(MLP)
    window.document.set_param("fc1", "units", 33)

    def refuse():
        raise GraphFileError("cannot save: a number that is not finite", node="fc1")
    monkeypatch.setattr(window.document, "to_json", refuse)
    window.autosave()  # a timer slot: must not raise
    assert "Autosave failed" in window.statusBar().currentMessage()
    monkeypatch.undo()
    window.autosave()
    assert window.autosaver.graph_file.exists()
