"""Edits behave as in every editor, in the whole window: Ctrl+Z / Ctrl+Shift+Z undo graph
edits wherever the focus is (a text field undoes its own typing only while that typing is
not yet committed), the toolbar keeps its place, and a replaced edge is reported."""
from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication, QToolBar  # noqa: E402

from gui.main_window import MainWindow  # noqa: E402
from tests.cli_helpers import ROOT  # noqa: E402

MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"
CTRL, CTRL_SHIFT = Qt.ControlModifier, Qt.ControlModifier | Qt.ShiftModifier


@pytest.fixture
def window(qtbot):
    """The editor on the MLP example, shown and active (window shortcuts need that)."""
    w = MainWindow()
    w.open_file(MLP)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=3000)
    yield w
    w.document.undo_stack.setClean()  # closes without the save question
    w.close()
    w.deleteLater()


def focus(qtbot, widget) -> None:
    widget.setFocus(Qt.OtherFocusReason)
    qtbot.waitUntil(widget.hasFocus, timeout=3000)


def retype(qtbot, widget, text: str, enter: bool = True) -> None:
    """Replace the text of a line edit or spin box as a user would."""
    focus(qtbot, widget)
    edit = widget.lineEdit() if hasattr(widget, "lineEdit") else widget
    edit.selectAll()
    QTest.keyClicks(widget, text)
    if enter:
        QTest.keyClick(widget, Qt.Key_Return)


def units(w: MainWindow) -> int:
    return w.document.graph.nodes["fc1"].params["units"]


# ---- undo wherever the focus is -------------------------------------------------------
def test_ctrl_z_in_a_spin_box_undoes_the_graph_edit_once_it_is_committed(window, qtbot):
    window.scene.select_nodes(["fc1"])
    spin = window.inspector.field("units").editor
    retype(qtbot, spin, "32")
    assert units(window) == 32
    n = window.document.undo_stack.count()
    assert spin.hasFocus()
    QTest.keyClick(spin, Qt.Key_Z, CTRL)  # nothing typed since: the graph edit is undone
    assert units(window) == 128 and spin.value() == 128
    QTest.keyClick(spin, Qt.Key_Z, CTRL_SHIFT)
    assert units(window) == 32 and spin.value() == 32
    QTest.keyClick(spin, Qt.Key_Z, CTRL)
    QTest.keyClick(spin, Qt.Key_Y, CTRL)  # the other redo key
    assert units(window) == 32
    assert window.document.undo_stack.count() == n  # undo and redo pushed nothing


def test_ctrl_z_undoes_typing_while_it_is_not_committed(window, qtbot):
    window.scene.select_nodes(["fc1"])
    spin = window.inspector.field("units").editor
    retype(qtbot, spin, "32")
    index = window.document.undo_stack.index()
    retype(qtbot, spin, "77", enter=False)
    assert spin.lineEdit().text() == "77"
    QTest.keyClick(spin, Qt.Key_Z, CTRL)  # the field's own undo
    assert spin.lineEdit().text() == "32"
    assert units(window) == 32 and window.document.undo_stack.index() == index
    QTest.keyClick(spin, Qt.Key_Z, CTRL)  # now nothing is pending: the graph edit
    assert units(window) == 128 and window.document.undo_stack.index() == index - 1


def test_text_fields_route_undo_the_same_way(window, qtbot):
    window.scene.select_nodes(["x"])
    shape = window.inspector.field("shape").editor
    retype(qtbot, shape, "8, 8")
    assert window.document.graph.nodes["x"].params["shape"] == [8, 8]
    retype(qtbot, shape, "1, 2, 3", enter=False)
    QTest.keyClick(shape, Qt.Key_Z, CTRL)
    assert shape.text() == "8, 8"  # typing undone, the graph untouched
    assert window.document.graph.nodes["x"].params["shape"] == [8, 8]
    QTest.keyClick(shape, Qt.Key_Z, CTRL)
    assert window.document.graph.nodes["x"].params["shape"] == [64]
    assert shape.text() == "64"

    id_edit = window.inspector.node_page.id_edit
    retype(qtbot, id_edit, "inputs")
    assert "inputs" in window.document.graph.nodes
    QTest.keyClick(id_edit, Qt.Key_Z, CTRL)  # the rename is undone
    assert "x" in window.document.graph.nodes and id_edit.text() == "x"


def test_undo_from_the_training_settings_and_the_palette_search(window, qtbot):
    window.scene.select_nodes([])
    batch = window.inspector.training_field("batch_size").editor
    before = window.document.graph.training.get("batch_size")
    retype(qtbot, batch, "48")
    assert window.document.graph.training["batch_size"] == 48
    QTest.keyClick(batch, Qt.Key_Z, CTRL)
    assert window.document.graph.training.get("batch_size") == before

    search = window.palette.search
    n = len(window.document.graph.nodes)
    retype(qtbot, search, "tanh")  # Enter adds Tanh
    assert len(window.document.graph.nodes) == n + 1
    QTest.keyClick(search, Qt.Key_Z, CTRL)  # undoes the add, not the typing
    assert len(window.document.graph.nodes) == n
    assert search.text() == "tanh"
    QTest.keyClicks(search, "x")
    QTest.keyClick(search, Qt.Key_Z, CTRL)  # fresh typing is the search's own to undo
    assert search.text() == "tanh" and len(window.document.graph.nodes) == n


def test_escape_drops_uncommitted_text(window, qtbot):
    window.scene.select_nodes(["fc1"])
    spin = window.inspector.field("units").editor
    retype(qtbot, spin, "99", enter=False)
    QTest.keyClick(spin, Qt.Key_Escape)
    assert spin.lineEdit().text() == "128" and units(window) == 128
    label = window.inspector.node_page.label_edit
    retype(qtbot, label, "hidden", enter=False)
    QTest.keyClick(label, Qt.Key_Escape)
    assert label.text() == "" and "label" not in window.document.graph.nodes["fc1"].extra


# ---- the toolbar keeps its place ---------------------------------------------------------
def test_undo_and_redo_keep_their_text_and_the_toolbar_does_not_move(window, qtbot):
    tb = window.findChild(QToolBar, "mainToolBar")
    QApplication.processEvents()
    train = tb.widgetForAction(window.actionTrain)
    undo_button = tb.widgetForAction(window.actionUndo)
    where, width = train.geometry(), undo_button.width()
    assert window.actionUndo.iconText() == "Undo" and window.actionRedo.iconText() == "Redo"
    assert window.actionUndo.toolTip() == "Nothing to undo"
    window.document.set_param("fc1", "units", 40)
    window.document.delete(["act1"])
    QApplication.processEvents()
    assert window.actionUndo.iconText() == "Undo" and undo_button.text() == "Undo"
    assert window.actionUndo.toolTip() == "Undo Delete 1 node"
    assert window.actionUndo.statusTip() == "Undo Delete 1 node"
    window.actionUndo.trigger()
    QApplication.processEvents()
    assert window.actionRedo.toolTip() == "Redo Delete 1 node"
    assert window.actionUndo.toolTip() == "Undo Set fc1.units"
    assert window.actionRedo.iconText() == "Redo"
    assert train.geometry() == where and undo_button.width() == width


# ---- a replaced edge is reported --------------------------------------------------------
def test_replacing_an_occupied_input_says_so_in_the_status_bar(window, qtbot):
    from tests.test_gui_canvas import mouse_drag, port_pos

    view, scene, doc = window.view, window.scene, window.document
    view.set_zoom(1.0)  # a zoom asked for: the view no longer fits itself
    view.centerOn(scene.nodes["fc1"].sceneBoundingRect().center())
    QApplication.processEvents()
    n = doc.undo_stack.count()
    mouse_drag(view, port_pos(scene, "x", "out", True), port_pos(scene, "act1", "in", False))
    assert [e.src for e in doc.graph.edges if e.dst == "act1"] == ["x"]
    assert window.statusBar().currentMessage() == "Replaced the edge from fc1 into act1:in"
    assert doc.undo_stack.count() == n + 1
    window.actionUndo.trigger()
    assert [e.src for e in doc.graph.edges if e.dst == "act1"] == ["fc1"]
