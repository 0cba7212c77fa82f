"""The editor's side panels: the node palette, the inspector and the problems panel."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt  # noqa: E402

from core import catalogue  # noqa: E402
from core.layers.base import CATEGORIES  # noqa: E402
from gui.document import Document  # noqa: E402
from gui.inspector import Inspector  # noqa: E402
from gui.palette import NODE_MIME, NodePalette, type_from_mime  # noqa: E402
from gui.problems import ProblemsPanel  # noqa: E402
from tests.graphs import mlp_dict  # noqa: E402


def open_dict(d: dict, tmp_path) -> Document:
    path = tmp_path / "g.ncg.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    doc = Document()
    doc.open(path)
    return doc


@pytest.fixture
def doc(qtbot, tmp_path):
    d = mlp_dict(features=4, hidden=5, outputs=3)
    d["training"] = {"dataset": {"source": "builtin", "name": "spirals"},
                     "optimizer": {"type": "sgd", "lr": 0.01}, "batch_size": 16}
    return open_dict(d, tmp_path)


@pytest.fixture
def inspector(qtbot, doc):
    w = Inspector(doc)
    qtbot.addWidget(w)
    w.resize(380, 900)
    w.show()
    return w


def type_into(qtbot, line_edit, text: str) -> None:
    """Replace a line edit's text as a user would, and press Enter."""
    line_edit.setFocus()
    line_edit.selectAll()
    qtbot.keyClicks(line_edit, text)
    qtbot.keyClick(line_edit, Qt.Key_Return)


def spin_to(qtbot, spin, value: int) -> None:
    type_into(qtbot, spin.lineEdit(), str(value))


# ---- palette ----------------------------------------------------------------------------------
@pytest.fixture
def palette(qtbot):
    w = NodePalette()
    qtbot.addWidget(w)
    w.resize(260, 600)
    w.show()
    return w


def test_palette_lists_every_type_under_its_category_in_order(palette):
    assert palette.objectName() == "nodePalette"
    assert palette.categories() == list(CATEGORIES)
    assert sorted(palette.visible_types()) == sorted(catalogue.types())
    for name in catalogue.types():
        item = palette.type_item(name)
        assert item.parent().text(0) == catalogue.get(name).category
        assert not item.icon(0).isNull()


def test_palette_search_filters_by_name_and_doc_ignoring_case(qtbot, palette):
    qtbot.keyClicks(palette.search, "lstm")
    assert palette.visible_types() == ["LSTM"]
    assert palette.visible_categories() == ["Recurrent"]
    assert palette.category_item("Recurrent").isExpanded()

    palette.search.clear()
    qtbot.keyClicks(palette.search, "CROSS-ENTROPY")  # in the docs, not the names
    assert set(palette.visible_types()) == {"CrossEntropyLoss", "BinaryCrossEntropyLoss"}
    assert palette.visible_categories() == ["Losses"]

    palette.set_filter("no such node")
    assert palette.visible_types() == [] and palette.visible_categories() == []
    palette.set_filter("")
    assert sorted(palette.visible_types()) == sorted(catalogue.types())


def test_palette_tooltip_says_what_a_type_does_its_ports_and_parameters(palette):
    tip = palette.type_item("Dense").toolTip(0)
    assert "Fully connected" in tip
    assert "units" in tip and "required" in tip and "bias" in tip
    assert "in → out" in tip
    assert "pred, target" in palette.type_item("MSELoss").toolTip(0)


def test_palette_drag_carries_the_type_name_as_node_mime(palette):
    mime = palette.tree.mimeData([palette.type_item("Conv2D")])
    assert NODE_MIME == "application/x-neurocanvas-node"
    assert mime.hasFormat(NODE_MIME)
    assert bytes(mime.data(NODE_MIME)).decode("utf-8") == "Conv2D"
    assert type_from_mime(mime) == "Conv2D"
    assert palette.type_item("Conv2D").flags() & Qt.ItemIsDragEnabled
    heading = palette.category_item("Convolution")
    assert not heading.flags() & Qt.ItemIsDragEnabled
    assert not palette.tree.mimeData([heading]).hasFormat(NODE_MIME)


def test_palette_double_click_requests_the_node(qtbot, palette):
    item = palette.type_item("ReLU")
    palette.tree.scrollToItem(item)
    rect = palette.tree.visualItemRect(item)
    with qtbot.waitSignal(palette.node_requested, timeout=1000) as blocker:
        # a real double-click: a click, then the double-click event (QTest sends only that)
        qtbot.mouseClick(palette.tree.viewport(), Qt.LeftButton, pos=rect.center())
        qtbot.mouseDClick(palette.tree.viewport(), Qt.LeftButton, pos=rect.center())
    assert blocker.args == ["ReLU"]
    # Enter in the search field asks for the first match
    palette.set_filter("tanh")
    with qtbot.waitSignal(palette.node_requested, timeout=1000) as blocker:
        qtbot.keyClick(palette.search, Qt.Key_Return)
    assert blocker.args == ["Tanh"]


def test_palette_search_ranks_exact_then_prefix_then_the_rest(qtbot, palette):
    from gui.palette import rank_types
    assert rank_types("relu") == ["ReLU", "LeakyReLU"]
    assert rank_types("cross")[:3] == ["CrossEntropyLoss", "BinaryCrossEntropyLoss", "Conv2D"]
    assert rank_types("elu") == ["ELU", "ReLU", "LeakyReLU"]  # ties: catalogue order
    assert rank_types("bce")[0] == "BinaryCrossEntropyLoss"  # letters in order
    assert rank_types("max pool") == ["MaxPool2D"]

    palette.set_filter("relu")
    assert palette.visible_types() == ["ReLU", "LeakyReLU"]  # shown best first
    with qtbot.waitSignal(palette.node_requested, timeout=1000) as blocker:
        qtbot.keyClick(palette.search, Qt.Key_Return)
    assert blocker.args == ["ReLU"]
    palette.set_filter("cross")
    assert palette.visible_categories() == ["Losses", "Convolution", "Activations"]
    assert palette.visible_types()[0] == "CrossEntropyLoss"
    with qtbot.waitSignal(palette.node_requested, timeout=1000) as blocker:
        qtbot.keyClick(palette.search, Qt.Key_Return)
    assert blocker.args == ["CrossEntropyLoss"]
    palette.set_filter("")  # the usual order again
    assert palette.categories() == list(CATEGORIES)
    names = [n for c in CATEGORIES for n in
             sorted((k.type_name for k in catalogue.by_category()[c]), key=str.lower)]
    assert palette.visible_types() == names
    assert all(palette.category_item(c).isExpanded() for c in CATEGORIES)


# ---- inspector: nodes ---------------------------------------------------------------------------
def test_inspector_edit_changes_inferred_shapes_as_one_undo_step(qtbot, doc, inspector):
    inspector.show_node("fc1")
    assert doc.analysis.shapes["fc1"] == (5,)
    n = doc.undo_stack.count()
    spin_to(qtbot, inspector.field("units").editor, 32)
    assert doc.graph.nodes["fc1"].params["units"] == 32
    assert doc.undo_stack.count() == n + 1
    doc.flush()
    assert doc.analysis.shapes["fc1"] == (32,)
    assert doc.analysis.param_count("fc2") == 32 * 3 + 3
    assert inspector.node_page.shape_label.text() == "[32]"
    assert inspector.node_page.count_label.text().startswith(f"{4 * 32 + 32:,}")

    doc.undo_stack.undo()  # the inspector follows the model
    doc.flush()
    assert inspector.field("units").editor.value() == 5
    assert inspector.node_page.shape_label.text() == "[5]"


def test_inspector_shape_text_field(qtbot, doc, inspector):
    inspector.show_node("x")
    field = inspector.field("shape")
    assert field.editor.text() == "4"
    type_into(qtbot, field.editor, "2, 4")
    assert doc.graph.nodes["x"].params["shape"] == [2, 4]
    doc.flush()
    assert doc.analysis.shapes["fc1"] == (2, 5)  # Dense applies to the last axis
    doc.undo_stack.undo()
    assert field.editor.text() == "4"


def test_an_input_shape_can_be_typed_as_auto_and_comes_from_the_dataset(qtbot, doc, inspector):
    inspector.show_node("x")
    field = inspector.field("shape")
    type_into(qtbot, field.editor, "auto")
    assert doc.graph.nodes["x"].params["shape"] == "auto"
    doc.flush()
    assert doc.analysis.shapes["x"] == (2,)  # the spirals' x is [2]
    assert field.editor.text() == "auto"
    inspector.show_node("fc1")
    inspector.show_node("x")  # shown again from the file's value
    assert inspector.field("shape").editor.text() == "auto"


def test_invalid_value_shows_inline_message_and_changes_nothing(qtbot, doc, inspector):
    inspector.show_node("x")
    before, n = json.loads(doc.to_json()), doc.undo_stack.count()
    field = inspector.field("shape")
    type_into(qtbot, field.editor, "0, 4")
    assert "positive integers" in field.message_text()
    assert field.message.isVisible()
    type_into(qtbot, field.editor, "4, x")
    assert "whole numbers" in field.message_text()
    assert json.loads(doc.to_json()) == before and doc.undo_stack.count() == n

    drop = doc.add_node("Dropout")
    inspector.show_node(drop)
    rate = inspector.field("rate")
    n = doc.undo_stack.count()
    type_into(qtbot, rate.editor, "1.5")
    assert rate.message_text() and doc.undo_stack.count() == n
    assert "rate" not in doc.graph.nodes[drop].params
    type_into(qtbot, rate.editor, "2.5e-1")  # scientific notation
    assert doc.graph.nodes[drop].params["rate"] == 0.25
    assert rate.message_text() == "" and doc.undo_stack.count() == n + 1
    rate.reset_button.click()  # back to the default: the parameter leaves the file
    assert "rate" not in doc.graph.nodes[drop].params
    assert doc.undo_stack.count() == n + 2
    assert rate.editor.text() == ""


def test_an_out_of_range_number_is_shown_invalid_and_kept_as_typed(qtbot, doc, inspector):
    conv = doc.add_node("Conv2D")
    inspector.activateWindow()
    qtbot.waitUntil(inspector.isActiveWindow, timeout=3000)
    inspector.show_node(conv)
    field = inspector.field("filters")  # an Int, at least 1
    spin = field.editor
    committed, n = spin.value(), doc.undo_stack.count()
    for text in ("-5", "0", "1.5"):
        type_into(qtbot, spin.lineEdit(), text)
        assert spin.lineEdit().text() == text  # not 5, not the old value
        assert field.has_input_error() and field.message.isVisible()
        assert spin.property("invalid") is True and "border" in spin.styleSheet()
        assert "filters" not in doc.graph.nodes[conv].params or \
            doc.graph.nodes[conv].params["filters"] == committed
        assert doc.undo_stack.count() == n
    assert "expected an integer >= 1" in field.message_text()
    page = inspector.node_page
    page.id_edit.setFocus()  # focus leaves: still kept, still nothing committed
    qtbot.waitUntil(page.id_edit.hasFocus, timeout=3000)
    assert spin.lineEdit().text() == "1.5" and field.has_input_error()
    assert doc.undo_stack.count() == n
    spin.setFocus()
    qtbot.keyClick(spin, Qt.Key_Escape)  # drops the typing
    assert spin.value() == committed and spin.lineEdit().text() == str(committed)
    assert not field.has_input_error() and not spin.styleSheet()
    type_into(qtbot, spin.lineEdit(), "-5")
    type_into(qtbot, spin.lineEdit(), "12")  # fixed: committed, the mark goes
    assert doc.graph.nodes[conv].params["filters"] == 12
    assert doc.undo_stack.count() == n + 1
    assert not field.has_input_error() and not field.message.isVisible()
    assert not spin.styleSheet()

    inspector.show_node(None)  # training settings: the same for their numbers
    batch = inspector.training_field("batch_size")
    type_into(qtbot, batch.editor.lineEdit(), "0")
    assert batch.editor.lineEdit().text() == "0" and batch.has_input_error()
    assert doc.graph.training["batch_size"] == 16
    l2 = inspector.training_field("regularization.l2")  # a Float: a text field
    type_into(qtbot, l2.editor, "-5")
    assert l2.editor.text() == "-5" and l2.has_input_error()
    assert "border" in l2.editor.styleSheet()
    assert "regularization" not in doc.graph.training
    qtbot.keyClick(l2.editor, Qt.Key_Escape)
    assert l2.editor.text() == "" and not l2.has_input_error()


def test_inspector_fields_fit_the_parameter_kinds(qtbot, doc, inspector):
    from PySide6.QtWidgets import QCheckBox, QComboBox, QSpinBox
    conv = doc.add_node("Conv2D")
    inspector.show_node(conv)
    assert isinstance(inspector.field("filters").editor, QSpinBox)
    assert inspector.field("filters").editor.minimum() == 1
    assert isinstance(inspector.field("bias").editor, QCheckBox)
    padding = inspector.field("padding")
    padding.mode.setCurrentIndex(padding.mode.findData("same"))
    padding.mode.activated.emit(padding.mode.currentIndex())
    assert doc.graph.nodes[conv].params["padding"] == "same"
    inspector.field("bias").editor.click()
    assert doc.graph.nodes[conv].params["bias"] is False
    # shared_with offers the other nodes of the same type, and none
    inspector.show_node("fc1")
    combo = inspector.field("shared_with").editor
    assert isinstance(combo, QComboBox)
    assert [combo.itemText(i) for i in range(combo.count())] == ["none", "fc2"]


def test_unfinished_edit_goes_to_its_own_node_when_the_selection_changes(qtbot, doc, inspector):
    inspector.show_node("fc1")
    spin = inspector.field("units").editor
    spin.setFocus()
    spin.lineEdit().selectAll()
    qtbot.keyClicks(spin.lineEdit(), "9")  # no Enter: the user clicks another node
    inspector.show_node("fc2")
    assert doc.graph.nodes["fc1"].params["units"] == 9
    assert doc.graph.nodes["fc2"].params["units"] == 3
    assert inspector.field("units").editor.value() == 3


def test_rename_checks_uniqueness_and_validity_and_undoes(qtbot, doc, inspector):
    inspector.show_node("fc1")
    page = inspector.node_page
    n = doc.undo_stack.count()
    type_into(qtbot, page.id_edit, "fc2")
    assert "already taken" in page.id_message.text() and page.id_message.isVisible()
    type_into(qtbot, page.id_edit, "bad id!")
    assert page.id_message.text()
    assert "fc1" in doc.graph.nodes and doc.undo_stack.count() == n

    type_into(qtbot, page.id_edit, "hidden")
    assert "hidden" in doc.graph.nodes and "fc1" not in doc.graph.nodes
    assert inspector.current_node() == "hidden" and not page.id_message.isVisible()
    spin_to(qtbot, inspector.field("units").editor, 7)  # edits reach the renamed node
    assert doc.graph.nodes["hidden"].params["units"] == 7

    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert inspector.current_node() == "fc1" and page.id_edit.text() == "fc1"
    assert inspector.field("units").editor.value() == 5


def test_inspector_shows_training_when_its_node_is_deleted_and_locks(qtbot, doc, inspector):
    inspector.show_node("act")
    doc.delete(["act"])
    assert inspector.current_node() is None
    assert inspector.stack.currentWidget() is inspector.training_page
    doc.set_locked(True)
    assert not inspector.stack.isEnabled() and inspector.banner.isVisible()
    doc.set_locked(False)
    assert inspector.stack.isEnabled()


# ---- inspector: training settings -------------------------------------------------------------
def test_training_settings_edit_is_one_undo_step(qtbot, doc, inspector):
    inspector.show_node(None)
    n = doc.undo_stack.count()
    spin_to(qtbot, inspector.training_field("batch_size").editor, 128)
    assert doc.graph.training["batch_size"] == 128
    assert doc.undo_stack.count() == n + 1
    doc.undo_stack.undo()
    assert doc.graph.training["batch_size"] == 16
    assert inspector.training_field("batch_size").editor.value() == 16

    type_into(qtbot, inspector.training_field("optimizer.lr").editor, "1e-4")
    assert doc.graph.training["optimizer"] == {"type": "sgd", "lr": 1e-4}

    page = inspector.training_page
    page.optimizer_combo.setCurrentIndex(page.optimizer_combo.findData("adam"))
    page.optimizer_combo.activated.emit(page.optimizer_combo.currentIndex())
    assert doc.graph.training["optimizer"] == {"type": "adam", "lr": 1e-4}  # lr kept
    assert "optimizer.betas" in page.fields and "optimizer.momentum" not in page.fields
    type_into(qtbot, inspector.training_field("optimizer.betas").editor, "0.8, 0.99")
    assert doc.graph.training["optimizer"]["betas"] == [0.8, 0.99]

    page.clip_combo.setCurrentIndex(page.clip_combo.findData("value"))
    page.clip_combo.activated.emit(page.clip_combo.currentIndex())
    assert doc.graph.training["clip"] == {"value": 1.0}
    type_into(qtbot, inspector.training_field("clip.amount").editor, "0.5")
    assert doc.graph.training["clip"] == {"value": 0.5}

    type_into(qtbot, inspector.training_field("regularization.l2").editor, "1e-3")
    assert doc.graph.training["regularization"] == {"l2": 1e-3}
    inspector.training_field("regularization.l2").reset_button.click()
    assert "regularization" not in doc.graph.training

    type_into(qtbot, page.name_edit, "renamed")
    assert doc.graph.name == "renamed"
    doc.undo_stack.undo()
    assert page.name_edit.text() == "mlp"


def test_training_settings_reject_invalid_values_inline(qtbot, doc, inspector):
    inspector.show_node(None)
    before, n = json.loads(doc.to_json()), doc.undo_stack.count()
    split = inspector.training_field("validation_split")
    type_into(qtbot, split.editor, "2")
    assert split.message_text()
    type_into(qtbot, inspector.training_field("optimizer.lr").editor, "fast")
    assert "expected a number" in inspector.training_field("optimizer.lr").message_text()
    assert json.loads(doc.to_json()) == before and doc.undo_stack.count() == n
    type_into(qtbot, split.editor, "0.25")
    assert doc.graph.training["validation_split"] == 0.25 and not split.message_text()


def test_training_dataset_choices(qtbot, doc, inspector, tmp_path):
    import numpy as np

    from core import datasets
    inspector.show_node(None)
    page = inspector.training_page
    combo = page.builtin_combo
    assert [combo.itemText(i) for i in range(combo.count())] == list(datasets.known_builtins())
    combo.setCurrentIndex(combo.findData("sine"))
    combo.activated.emit(combo.currentIndex())
    assert doc.graph.training["dataset"] == {"source": "builtin", "name": "sine"}
    assert set(datasets.builtin_options("sine")) <= {k.split(".", 1)[1] for k in page.fields
                                                     if k.startswith("dataset.")}
    spin_to(qtbot, inspector.training_field("dataset.steps").editor, 30)
    assert doc.graph.training["dataset"]["steps"] == 30

    np.savez(tmp_path / "data.npz", x=np.zeros((10, 4), np.float32), y=np.zeros(10, np.int64))
    page.source_combo.setCurrentIndex(page.source_combo.findData("npz"))
    page.source_combo.activated.emit(page.source_combo.currentIndex())
    assert doc.graph.training["dataset"] == {"source": "npz"}
    assert page.dataset_message.text()  # no file yet
    page.commit("dataset.path", page.relative_path(str(tmp_path / "data.npz")))
    assert doc.graph.training["dataset"] == {"source": "npz", "path": "data.npz"}
    assert not page.dataset_message.isVisible()
    mapping = page.findChild(type(combo), "fieldOf_x")
    assert [mapping.itemText(i) for i in range(mapping.count())] == ["x", "y"]
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert doc.graph.training["dataset"]["source"] == "builtin"
    assert page.builtin_combo.currentData() == "sine"


# ---- problems panel -----------------------------------------------------------------------------
def test_problems_panel_fills_clears_and_names_the_node(qtbot, tmp_path):
    import numpy as np

    d = mlp_dict()
    d["nodes"][1]["params"] = {}  # fc1 has no units
    # a dataset that fits, so that the only thing stopping training is fc1 (a graph without
    # a dataset lists that too: the panel shows what stops training)
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 4), np.float32),
             y=np.zeros((4, 3), np.float32))
    d["training"] = {"dataset": {"source": "npz", "path": "data.npz"}}
    doc = open_dict(d, tmp_path)
    panel = ProblemsPanel(doc)
    qtbot.addWidget(panel)
    panel.resize(600, 200)
    panel.show()
    assert panel.objectName() == "problemsPanel"
    assert panel.problem_count() == 1 == panel.topLevelItemCount()
    assert "fc1" in panel.messages()[0] and "missing" in panel.messages()[0]
    item = panel.topLevelItem(0)
    assert item.text(1) == "fc1" and item.text(2) == "Parameter"

    with qtbot.waitSignal(panel.node_activated, timeout=1000) as blocker:
        rect = panel.visualItemRect(item)
        qtbot.mouseClick(panel.viewport(), Qt.LeftButton, pos=rect.center())
    assert blocker.args == ["fc1"]

    panel.set_runtime_problems([("fc2", "loss: first NaN/Inf in the forward pass"),
                                (None, "the dataset has no field 'z'")])
    assert panel.problem_count() == 3

    doc.set_param("fc1", "units", 5)
    doc.flush()
    assert panel.problem_count() == 2  # validation fixed; training problems stay
    assert all(r.runtime for r in panel.rows())
    panel.clear_runtime_problems()
    assert panel.problem_count() == 0 == panel.topLevelItemCount()

    doc.undo_stack.undo()
    doc.flush()
    assert panel.problem_count() == 1


def test_a_csv_of_class_names_keeps_its_classes_in_the_graph(qtbot, doc, inspector, tmp_path):
    (tmp_path / "t.csv").write_text("a,label,b\n1,dog,2\n3,cat,4\n5,emu,6\n")
    inspector.show_node(None)
    page = inspector.training_page
    page.source_combo.setCurrentIndex(page.source_combo.findData("csv"))
    page.source_combo.activated.emit(page.source_combo.currentIndex())
    page.commit("dataset.path", str(tmp_path / "t.csv"))
    assert "classes" not in doc.graph.training["dataset"]  # no target column yet
    n = doc.undo_stack.count()
    page.commit("dataset.target_column", "label")
    ds = doc.graph.training["dataset"]
    assert ds["target_column"] == "label" and ds["classes"] == ["cat", "dog", "emu"]
    assert doc.undo_stack.count() == n + 1  # one edit, one undo step
    doc.undo_stack.undo()
    assert "classes" not in doc.graph.training["dataset"]
    (tmp_path / "n.csv").write_text("a,label\n1,0\n2,1\n")
    page.commit("dataset.target_column", "label")
    assert doc.graph.training["dataset"]["classes"] == ["cat", "dog", "emu"]
    page.commit("dataset.path", str(tmp_path / "n.csv"))  # numbers: no classes
    assert "classes" not in doc.graph.training["dataset"]
    # a table of token sequences: its vocabulary is pinned when the file is chosen
    (tmp_path / "s.csv").write_text("label,tokens\n1,b a\n0,c\n")
    page.commit("dataset.sequence_column", "tokens")
    page.commit("dataset.path", str(tmp_path / "s.csv"))
    ds = doc.graph.training["dataset"]
    assert ds["vocabulary"] == ["a", "b", "c"] and "classes" not in ds
