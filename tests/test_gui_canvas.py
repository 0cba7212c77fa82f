"""The node canvas (gui/canvas): it follows the document's model through undo and redo, and
turns mouse and keyboard input into Document edits — with real events on the viewport."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt  # noqa: E402
from PySide6.QtGui import QColor, QDragEnterEvent, QDropEvent, QGuiApplication  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from core.layers.base import fmt_shape  # noqa: E402
from gui import theme  # noqa: E402
from gui.canvas import NODE_MIME, EdgeItem, GraphScene, GraphView  # noqa: E402
from gui.document import CLIPBOARD_MIME, Document  # noqa: E402
from tests.graphs import edge, graph_dict, mlp_dict, node, write  # noqa: E402


def _placed(d: dict, pos: dict[str, tuple[float, float]]) -> dict:
    for n in d["nodes"]:
        n["pos"] = list(pos[n["id"]])
    return d


def mlp_placed() -> dict:
    return _placed(mlp_dict(), {"x": (0, 0), "fc1": (240, 0), "act": (480, 0),
                                "fc2": (720, 0), "y": (720, 200), "loss": (960, 0)})


def loop_placed() -> dict:
    """x -> d -> add:in0 -> t; add:in1 free (where a recurrent edge from t can go)."""
    return _placed(graph_dict(
        [node("x", "Input", shape=[5, 4], sequence=True), node("d", "Dense", units=4),
         node("add", "Add"),
         node("t", "Tanh")],
        [edge("x", "d"), edge("d", "add:in0"), edge("add", "t")]),
        {"x": (0, 0), "d": (240, 0), "add": (480, 0), "t": (720, 0)})


def open_doc(tmp_path, d: dict, name: str = "g.ncg.json") -> Document:
    doc = Document()
    doc.open(write(tmp_path / name, d))
    return doc


@pytest.fixture
def canvas(qtbot, tmp_path):
    """Build (doc, scene, view) for a graph dict, shown at zoom 1 over its nodes."""
    made = []

    def make(d: dict | None = None):
        doc = open_doc(tmp_path, d or mlp_placed())
        scene = GraphScene(doc)
        view = GraphView(scene)
        view.resize(1400, 800)
        qtbot.addWidget(view)
        view.show()
        qtbot.waitExposed(view)
        view.centerOn(scene.nodes_rect().center())
        QApplication.processEvents()
        made.append(scene)
        return doc, scene, view

    yield make
    for scene in made:
        scene.detach()


def vp(view: GraphView, p: QPointF) -> QPoint:
    return view.mapFromScene(p)


def port_pos(scene: GraphScene, node_id: str, port: str, output: bool) -> QPointF:
    return scene.port_item(node_id, port, output).scenePos()


def mouse_drag(view: GraphView, a: QPointF, b: QPointF, mods=Qt.NoModifier,
               button=Qt.LeftButton) -> None:
    w = view.viewport()
    pa, pb = vp(view, a), vp(view, b)
    QTest.mousePress(w, button, mods, pa)
    mid = (pa + pb) / 2
    QTest.mouseMove(w, pa + QPoint(3, 3))
    QTest.mouseMove(w, mid)
    QTest.mouseMove(w, pb)
    QTest.mouseRelease(w, button, mods, pb)
    QApplication.processEvents()


def edge_set(doc: Document) -> set[tuple]:
    return {(e.src, doc.edge_ports(e)[0], e.dst, doc.edge_ports(e)[1], e.delay)
            for e in doc.graph.edges}


def assert_scene_matches(doc: Document, scene: GraphScene) -> None:
    """Every node and edge of the model has its item, in the right place, showing the
    analysis of the graph as it is now; no item is left over."""
    a = doc.flush()
    g = doc.graph
    assert set(scene.nodes) == set(g.nodes)
    for nid, n in g.nodes.items():
        item = scene.nodes[nid]
        assert item.node_id == nid
        assert (item.pos().x(), item.pos().y()) == pytest.approx(n.pos)
        assert item.title == (n.extra.get("label") or nid)
        assert item.shape_text.startswith(fmt_shape(a.shapes.get(nid)))
        assert bool(item.problems) == bool(a.problems_of(nid))
    assert set(scene.edges) == {id(e) for e in g.edges if e.src in g.nodes and e.dst in g.nodes}
    items = [i for i in scene.items() if isinstance(i, EdgeItem)]
    assert len(items) == len(scene.edges)
    for e in g.edges:
        item = scene.edges[id(e)]
        assert item.src_node is scene.nodes[e.src] and item.dst_node is scene.nodes[e.dst]
        start, end = item.endpoints()
        sp, dp = doc.edge_ports(e)
        assert start == scene.port_item(e.src, sp, True).scenePos()
        assert end == scene.port_item(e.dst, dp, False).scenePos()


# ---- drop from the palette -----------------------------------------------------------
def _drop(view: GraphView, type_name: str, at: QPoint) -> QDropEvent:
    mime = QMimeData()
    mime.setData(NODE_MIME, type_name.encode("utf-8"))
    enter = QDragEnterEvent(at, Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(view.viewport(), enter)
    assert enter.isAccepted()
    drop = QDropEvent(QPointF(at), Qt.CopyAction, mime, Qt.LeftButton, Qt.NoModifier)
    QApplication.sendEvent(view.viewport(), drop)
    return drop


def test_drop_from_palette_adds_node_where_dropped(canvas):
    doc, scene, view = canvas()
    before = set(doc.graph.nodes)
    at = QPoint(300, 500)
    drop = _drop(view, "Dense", at)
    assert drop.isAccepted()
    (new,) = set(doc.graph.nodes) - before
    assert doc.graph.nodes[new].type == "Dense"
    item = scene.nodes[new]
    assert item.sceneBoundingRect().contains(view.mapToScene(at))  # under the cursor
    assert scene.selected_node_ids() == [new]
    doc.undo_stack.undo()
    assert new not in doc.graph.nodes and new not in scene.nodes


def test_drop_of_other_mime_or_unknown_type_adds_nothing(canvas):
    doc, scene, view = canvas()
    before = set(doc.graph.nodes)
    mime = QMimeData()
    mime.setText("Dense")
    enter = QDragEnterEvent(QPoint(200, 200), Qt.CopyAction, mime, Qt.LeftButton,
                            Qt.NoModifier)
    QApplication.sendEvent(view.viewport(), enter)
    assert not enter.isAccepted()
    messages = []
    scene.message.connect(messages.append)
    _drop(view, "NoSuchLayer", QPoint(200, 200))
    assert set(doc.graph.nodes) == before
    assert messages and "NoSuchLayer" in messages[-1]


# ---- connecting ------------------------------------------------------------------------
def _two_free(tmp_d=None):
    return _placed(graph_dict([node("x", "Input", shape=[8]), node("fc", "Dense", units=3)],
                              []), {"x": (0, 0), "fc": (300, 60)})


def test_connect_by_dragging_output_to_input(canvas):
    doc, scene, view = canvas(_two_free())
    assert not doc.graph.edges
    mouse_drag(view, port_pos(scene, "x", "out", True), port_pos(scene, "fc", "in", False))
    assert edge_set(doc) == {("x", "out", "fc", "in", 0)}
    assert len(scene.edges) == 1
    assert scene.port_item("fc", "in", False).connected
    assert doc.undo_stack.count() == 1
    doc.flush()
    (item,) = scene.edges.values()
    assert item.shape_text == "[8]"
    doc.undo_stack.undo()
    assert not doc.graph.edges and not scene.edges
    assert not scene.port_item("fc", "in", False).connected


def test_connect_by_dragging_input_back_to_output(canvas):
    doc, scene, view = canvas(_two_free())
    mouse_drag(view, port_pos(scene, "fc", "in", False), port_pos(scene, "x", "out", True))
    assert edge_set(doc) == {("x", "out", "fc", "in", 0)}


def test_dropping_on_a_node_body_picks_its_port(canvas):
    doc, scene, view = canvas(_two_free())
    body = scene.nodes["fc"].sceneBoundingRect().center()
    mouse_drag(view, port_pos(scene, "x", "out", True), body)
    assert edge_set(doc) == {("x", "out", "fc", "in", 0)}


def test_dropping_on_empty_canvas_cancels(canvas):
    doc, scene, view = canvas(_two_free())
    mouse_drag(view, port_pos(scene, "x", "out", True), QPointF(150, 400))
    assert not doc.graph.edges and doc.undo_stack.count() == 0
    rubber = [i for i in scene.items() if type(i).__name__ == "QGraphicsPathItem"]
    assert not rubber  # the rubber curve is gone


def test_connection_closing_a_cycle_is_refused_with_the_reason(canvas):
    doc, scene, view = canvas(loop_placed())
    messages = []
    scene.message.connect(messages.append)
    before = edge_set(doc)
    mouse_drag(view, port_pos(scene, "t", "out", True), port_pos(scene, "add", "in1", False))
    assert edge_set(doc) == before
    assert doc.undo_stack.count() == 0
    assert messages and "cycle" in messages[-1]
    assert scene.last_message == messages[-1]
    assert "delay" in messages[-1]  # it says how to make it right


def test_alt_makes_a_delay_edge_drawn_dashed_with_z_label(canvas):
    doc, scene, view = canvas(loop_placed())
    mouse_drag(view, port_pos(scene, "t", "out", True), port_pos(scene, "add", "in1", False),
               mods=Qt.AltModifier)
    assert ("t", "out", "add", "in1", 1) in edge_set(doc)
    doc.flush()
    e = next(e for e in doc.graph.edges if e.delay)
    item = scene.edge_item(e)
    assert item.label().startswith("z⁻¹")
    # a backward edge runs below both nodes instead of through them
    assert item.path().boundingRect().bottom() > scene.nodes["t"].sceneBoundingRect().bottom()
    assert not doc.analysis.problems


def test_output_to_output_is_refused(canvas):
    doc, scene, view = canvas()
    messages = []
    scene.message.connect(messages.append)
    before = edge_set(doc)
    mouse_drag(view, port_pos(scene, "fc1", "out", True), port_pos(scene, "act", "out", True))
    assert edge_set(doc) == before
    assert messages and "output port to an input port" in messages[-1]


def test_dragging_a_connected_input_moves_its_edge_as_one_step(canvas):
    doc, scene, view = canvas(loop_placed())
    mouse_drag(view, port_pos(scene, "add", "in0", False), port_pos(scene, "add", "in1", False))
    assert ("d", "out", "add", "in1", 0) in edge_set(doc)
    assert not any(e[3] == "in0" for e in edge_set(doc))
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert ("d", "out", "add", "in0", 0) in edge_set(doc)
    assert_scene_matches(doc, scene)


def test_dragging_a_connected_input_off_removes_the_edge(canvas):
    doc, scene, view = canvas()
    before = edge_set(doc)
    mouse_drag(view, port_pos(scene, "fc2", "in", False), QPointF(600, 500))
    assert edge_set(doc) == before - {("act", "out", "fc2", "in", 0)}
    doc.undo_stack.undo()
    assert edge_set(doc) == before
    assert_scene_matches(doc, scene)


def test_dropping_a_picked_edge_back_changes_nothing(canvas):
    doc, scene, view = canvas()
    before = edge_set(doc)
    p = port_pos(scene, "fc2", "in", False)
    mouse_drag(view, p, p + QPointF(1, 0))
    assert edge_set(doc) == before and doc.undo_stack.count() == 0
    assert all(i.isVisible() for i in scene.edges.values())


def test_replacing_an_occupied_input_says_so_as_one_undo_step(canvas):
    doc, scene, view = canvas()
    messages = []
    scene.message.connect(messages.append)
    before = edge_set(doc)
    mouse_drag(view, port_pos(scene, "fc1", "out", True), port_pos(scene, "fc2", "in", False))
    assert edge_set(doc) == before - {("act", "out", "fc2", "in", 0)} | \
        {("fc1", "out", "fc2", "in", 0)}
    assert messages == ["Replaced the edge from act into fc2:in"]
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert edge_set(doc) == before
    assert_scene_matches(doc, scene)
    mouse_drag(view, port_pos(scene, "x", "out", True), port_pos(scene, "y", "out", True))
    assert messages[1:] and "Replaced" not in messages[-1]  # a refusal says only that


def test_moving_an_edge_onto_an_occupied_input_says_so_as_one_undo_step(canvas):
    d = loop_placed()
    d["edges"].append(edge("x", "add:in1"))
    doc, scene, view = canvas(d)
    messages = []
    scene.message.connect(messages.append)
    before = edge_set(doc)
    mouse_drag(view, port_pos(scene, "add", "in0", False), port_pos(scene, "add", "in1", False))
    assert ("d", "out", "add", "in1", 0) in edge_set(doc)
    assert not any(e[3] in ("in0",) or e[0] == "x" and e[2] == "add" for e in edge_set(doc))
    assert messages == ["Replaced the edge from x into add:in1"]
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert edge_set(doc) == before
    assert_scene_matches(doc, scene)


def _press_and_move(view, a: QPointF, b: QPointF) -> None:
    w = view.viewport()
    QTest.mousePress(w, Qt.LeftButton, Qt.NoModifier, vp(view, a))
    QTest.mouseMove(w, vp(view, a) + QPoint(3, 3))
    QTest.mouseMove(w, vp(view, b))


def _rubber_curves(scene) -> list:
    return [i for i in scene.items() if type(i).__name__ == "QGraphicsPathItem"]


@pytest.mark.parametrize("how", ["delete", "undo"])
def test_a_drag_whose_source_node_goes_away_ends_quietly(canvas, how):
    doc, scene, view = canvas(_two_free())
    if how == "undo":
        nid = doc.add_node("Dense", (0, 250), {"units": 4})
        QApplication.processEvents()
    else:
        nid = "x"
    messages = []
    scene.message.connect(messages.append)
    target = port_pos(scene, "fc", "in", False)
    _press_and_move(view, port_pos(scene, nid, "out", True), target)
    assert _rubber_curves(scene)
    if how == "undo":
        doc.undo_stack.undo()
    else:
        doc.delete([nid])
    assert not _rubber_curves(scene)  # the temporary wire went with its node
    w = view.viewport()
    QTest.mouseMove(w, vp(view, target) + QPoint(2, 0))
    QTest.mouseRelease(w, Qt.LeftButton, Qt.NoModifier, vp(view, target))
    QApplication.processEvents()
    assert messages == [] and not doc.graph.edges
    assert nid not in doc.graph.nodes and not _rubber_curves(scene)
    assert not scene.port_item("fc", "in", False).highlighted
    assert_scene_matches(doc, scene)


def test_a_drag_of_a_picked_edge_whose_source_goes_away_ends_quietly(canvas):
    doc, scene, view = canvas()
    messages = []
    scene.message.connect(messages.append)
    _press_and_move(view, port_pos(scene, "fc2", "in", False), QPointF(600, 500))
    doc.delete(["act"])  # the picked edge came from act
    assert not _rubber_curves(scene)
    QTest.mouseRelease(view.viewport(), Qt.LeftButton, Qt.NoModifier,
                       vp(view, QPointF(600, 500)))
    QApplication.processEvents()
    assert messages == [] and not _rubber_curves(scene)
    assert doc.undo_stack.count() == 1  # the delete only
    doc.undo_stack.undo()
    assert_scene_matches(doc, scene)
    assert all(i.isVisible() for i in scene.edges.values())


def test_edge_menu_makes_delay_and_instant_edges(canvas):
    doc, scene, view = canvas()
    e = next(e for e in doc.graph.edges if e.src == "x")
    menu = scene.edge_menu(scene.edge_item(e))
    next(a for a in menu.actions() if "delay" in a.text()).trigger()
    (new,) = [x for x in doc.graph.edges if x.src == "x"]
    assert new.delay == 1 and scene.edge_item(new) is not None
    menu = scene.edge_menu(scene.edge_item(new))
    next(a for a in menu.actions() if "instant" in a.text()).trigger()
    assert [x.delay for x in doc.graph.edges if x.src == "x"] == [0]
    menu = scene.edge_menu(scene.edges[id(doc.graph.edges[0])])
    next(a for a in menu.actions() if a.text().startswith("Delete")).trigger()
    assert len(doc.graph.edges) == 4
    assert_scene_matches(doc, scene)


def test_making_a_loop_edge_instant_is_refused(canvas):
    d = loop_placed()
    d["edges"].append(edge("t", "add:in1", delay=1))
    doc, scene, view = canvas(d)
    e = next(e for e in doc.graph.edges if e.delay)
    assert not scene.set_edge_delay(e, 0)
    assert "cycle" in scene.last_message
    assert e in doc.graph.edges


# ---- selecting -------------------------------------------------------------------------
def test_click_shift_click_and_rubber_band_select(canvas):
    doc, scene, view = canvas()
    got = []
    scene.selection_ids_changed.connect(got.append)
    w = view.viewport()
    header = lambda nid: scene.nodes[nid].scenePos() + QPointF(60, 10)  # noqa: E731
    QTest.mouseClick(w, Qt.LeftButton, Qt.NoModifier, vp(view, header("fc1")))
    assert scene.selected_node_ids() == ["fc1"] and got[-1] == ["fc1"]
    QTest.mouseClick(w, Qt.LeftButton, Qt.ShiftModifier, vp(view, header("fc2")))
    assert scene.selected_node_ids() == ["fc1", "fc2"]
    QTest.mouseClick(w, Qt.LeftButton, Qt.NoModifier, vp(view, QPointF(400, 500)))
    assert scene.selected_node_ids() == []
    # a rubber band from empty canvas around x and fc1
    mouse_drag(view, QPointF(-30, -40), QPointF(330, 160))
    assert scene.selected_node_ids() == ["x", "fc1"]
    assert got[-1] == ["x", "fc1"]


def test_select_nodes_and_selected_edges(canvas):
    doc, scene, view = canvas()
    scene.select_nodes(["loss", "x"])
    assert scene.selected_node_ids() == ["x", "loss"]
    e = doc.graph.edges[0]
    scene.edge_item(e).setSelected(True)
    assert scene.selected_edges() == [e]


# ---- editing -----------------------------------------------------------------------------
def test_delete_node_and_undo_restores_it_with_its_edges(canvas):
    doc, scene, view = canvas()
    before = edge_set(doc)
    scene.select_nodes(["act"])
    view.setFocus()
    QTest.keyClick(view, Qt.Key_Delete)
    assert "act" not in doc.graph.nodes and "act" not in scene.nodes
    assert not any("act" in (e[0], e[2]) for e in edge_set(doc))
    assert len(scene.edges) == len(doc.graph.edges) == 3
    doc.undo_stack.undo()
    assert edge_set(doc) == before
    assert_scene_matches(doc, scene)
    doc.undo_stack.redo()
    assert_scene_matches(doc, scene)


def test_deleting_a_selected_edge(canvas):
    doc, scene, view = canvas()
    e = next(e for e in doc.graph.edges if e.dst == "act")
    scene.edge_item(e).setSelected(True)
    scene.delete_selection()
    assert e not in doc.graph.edges and set(doc.graph.nodes) >= {"fc1", "act"}
    assert_scene_matches(doc, scene)


def test_moving_by_drag_is_one_undo_step_for_all_selected(canvas):
    doc, scene, view = canvas()
    scene.select_nodes(["x", "fc1"])
    start = {n: doc.graph.nodes[n].pos for n in ("x", "fc1", "act")}
    grab = scene.nodes["fc1"].scenePos() + QPointF(60, 12)
    mouse_drag(view, grab, grab + QPointF(50, 80))
    assert doc.undo_stack.count() == 1
    for n in ("x", "fc1"):
        assert doc.graph.nodes[n].pos == pytest.approx((start[n][0] + 50, start[n][1] + 80))
    assert doc.graph.nodes["act"].pos == start["act"]
    # the edges followed their nodes while moving
    assert_scene_matches(doc, scene)
    doc.undo_stack.undo()
    for n in ("x", "fc1"):
        assert doc.graph.nodes[n].pos == start[n]
    assert_scene_matches(doc, scene)


def test_arrow_key_nudges_merge_into_one_step(canvas):
    doc, scene, view = canvas()
    scene.select_nodes(["act"])
    view.setFocus()
    x0, y0 = doc.graph.nodes["act"].pos
    for _ in range(3):
        QTest.keyClick(view, Qt.Key_Right)
    QTest.keyClick(view, Qt.Key_Down, Qt.ShiftModifier)
    assert doc.graph.nodes["act"].pos == (x0 + 30, y0 + 1)
    assert doc.undo_stack.count() == 1
    doc.undo_stack.undo()
    assert doc.graph.nodes["act"].pos == (x0, y0)
    assert_scene_matches(doc, scene)


def test_copy_paste_and_duplicate(canvas):
    doc, scene, view = canvas()
    scene.select_nodes(["fc1", "act"])
    assert scene.copy_selection()
    mime = QGuiApplication.clipboard().mimeData()
    snap = json.loads(bytes(mime.data(CLIPBOARD_MIME)).decode())
    assert {n["id"] for n in snap["nodes"]} == {"fc1", "act"}
    new = scene.paste(QPointF(100, 400))
    assert len(new) == 2 and scene.selected_node_ids() == new
    assert {doc.graph.nodes[n].type for n in new} == {"Dense", "ReLU"}
    assert min(doc.graph.nodes[n].pos[1] for n in new) == 400
    assert any(e.src in new and e.dst in new for e in doc.graph.edges)  # inner edge kept
    assert_scene_matches(doc, scene)
    dup = scene.duplicate_selection()
    assert len(dup) == 2 and not set(dup) & set(new)
    doc.undo_stack.undo()
    doc.undo_stack.undo()
    assert set(doc.graph.nodes) == {"x", "fc1", "act", "fc2", "y", "loss"}
    assert_scene_matches(doc, scene)


def test_paste_without_nodes_on_clipboard_says_so(canvas):
    doc, scene, view = canvas()
    QGuiApplication.clipboard().setText("hello")
    assert scene.paste() == []
    assert doc.undo_stack.count() == 0


# ---- following the model through undo and redo -------------------------------------------
def test_scene_follows_undo_and_redo_of_every_command_kind(canvas):
    doc, scene, view = canvas()
    snap = doc.snapshot(["fc1", "act"])
    edits = [
        ("add", lambda: doc.add_node("Dropout", (100, 300))),
        ("delete", lambda: doc.delete(["act"])),
        ("move", lambda: doc.move({"fc2": ((720, 0), (700, 350)),
                                   "y": ((720, 200), (500, 420))})),
        ("connect", lambda: doc.connect("x", None, "dropout1", None)),
        ("disconnect", lambda: doc.disconnect(next(e for e in doc.graph.edges
                                                   if e.dst == "dropout1"))),
        ("param", lambda: doc.set_param("fc1", "units", 7)),
        ("rename", lambda: doc.rename("fc1", "hidden")),
        ("label", lambda: doc.set_label("hidden", "Hidden layer")),
        ("paste", lambda: doc.paste(snap)),
        ("auto-layout", lambda: doc.auto_layout()),
        ("delay", lambda: doc.set_delay(next(e for e in doc.graph.edges if e.src == "x"), 1)),
    ]
    for name, edit in edits:
        edit()
        assert_scene_matches(doc, scene), name
    assert scene.nodes["hidden"].title == "Hidden layer"
    assert scene.nodes["hidden"].subtitle == "hidden · Dense"
    assert scene.nodes["hidden"].shape_text == "[7] per step"  # behind a delay edge now
    for _ in edits:
        doc.undo_stack.undo()
        assert_scene_matches(doc, scene)
    assert scene.nodes["fc1"].shape_text == "[5]" and "hidden" not in scene.nodes
    for _ in edits:
        doc.undo_stack.redo()
        assert_scene_matches(doc, scene)


def test_param_change_updates_shape_and_param_count_labels(canvas):
    doc, scene, view = canvas()
    doc.flush()
    assert scene.nodes["fc1"].params_text == f"{4 * 5 + 5:,} params"
    doc.set_param("fc1", "units", 9)
    doc.flush()
    assert scene.nodes["fc1"].shape_text == "[9]"
    assert scene.nodes["act"].shape_text == "[9]"
    assert scene.nodes["fc1"].params_text == "45 params"
    edge_into_act = next(e for e in doc.graph.edges if e.dst == "act")
    assert scene.edge_item(edge_into_act).shape_text == "[9]"


def test_ports_follow_a_parameter_that_changes_them(canvas):
    doc, scene, view = canvas(loop_placed())
    doc.set_param("add", "inputs", 3)
    assert list(scene.nodes["add"].inputs) == ["in0", "in1", "in2"]
    doc.undo_stack.undo()
    assert list(scene.nodes["add"].inputs) == ["in0", "in1"]
    assert_scene_matches(doc, scene)


def test_shared_and_timed_nodes_say_so(canvas):
    d = _placed(graph_dict(
        [node("x", "Input", shape=[6, 3], sequence=True), node("a", "Dense", units=3),
         node("b", "Dense", units=3, shared_with="a"), node("c", "TimeCollect")],
        [edge("x", "a"), edge("a", "b"), edge("b", "c")]),
        {"x": (0, 0), "a": (240, 0), "b": (480, 0), "c": (720, 0)})
    doc, scene, view = canvas(d)
    doc.flush()
    assert scene.nodes["b"].params_text == "shared with a"
    assert scene.nodes["a"].shape_text == "[3] per step"
    assert "per step" not in scene.nodes["c"].shape_text


def test_problems_are_marked_on_nodes_and_cleared(canvas):
    doc, scene, view = canvas()
    doc.flush()
    assert not any(i.problems for i in scene.nodes.values())
    doc.set_param("fc2", "units", 4)  # the loss's target is [3]
    doc.flush()
    marked = {nid for nid, i in scene.nodes.items() if i.problems}
    assert marked == {p.node for p in doc.analysis.problems}
    assert marked
    nid = next(iter(marked))
    assert doc.analysis.problems[0].message.split("(")[0][:20] in scene.nodes[nid].toolTip()
    doc.undo_stack.undo()
    doc.flush()
    assert not any(i.problems for i in scene.nodes.values())


def test_a_cycle_problem_marks_every_node_on_it(canvas):
    d = loop_placed()
    d["edges"].append(edge("t", "add:in1"))  # no delay: invalid but it opens
    doc, scene, view = canvas(d)
    doc.flush()
    assert {"add", "t"} <= {nid for nid, i in scene.nodes.items() if i.problems}


def test_opening_another_graph_rebuilds_and_keeps_following(canvas, tmp_path):
    doc, scene, view = canvas()
    doc.open(write(tmp_path / "other.ncg.json", loop_placed()))
    assert set(scene.nodes) == {"x", "d", "add", "t"}
    assert_scene_matches(doc, scene)
    doc.add_node("ReLU", (0, 300))
    assert "relu1" in scene.nodes
    doc.new()
    assert not scene.nodes and not scene.edges
    doc.add_node("Input", (0, 0))
    assert_scene_matches(doc, scene)


def test_an_edge_to_a_missing_port_is_drawn_as_broken(canvas):
    d = loop_placed()
    d["edges"].append(edge("t", "add:in7", delay=1))
    doc, scene, view = canvas(d)
    item = next(i for i in scene.edges.values() if i.edge.dst_port == "in7")
    assert item.broken
    view.grab()  # paints without error


# ---- quick add -------------------------------------------------------------------------------
def test_tab_opens_quick_add_and_enter_adds_the_node(canvas, qtbot):
    doc, scene, view = canvas()
    view.setFocus()
    QTest.keyClick(view, Qt.Key_Tab)
    popup = view.quick_add
    assert popup is not None and popup.isVisible()
    QTest.keyClicks(popup.search, "lst")
    assert popup.current_type() == "LSTM"
    QTest.keyClick(popup.search, Qt.Key_Return)
    assert not popup.isVisible()
    assert [n.type for n in doc.graph.nodes.values()].count("LSTM") == 1


def test_quick_add_puts_the_node_at_the_given_point(canvas):
    doc, scene, view = canvas()
    popup = view.open_quick_add(QPointF(50, 600))
    QTest.keyClicks(popup.search, "drop")
    QTest.keyClick(popup.search, Qt.Key_Return)
    (nid,) = [n for n in doc.graph.nodes if n.startswith("dropout")]
    assert scene.nodes[nid].sceneBoundingRect().contains(QPointF(50, 600))
    assert scene.selected_node_ids() == [nid]


def test_quick_add_ranks_exact_then_prefix_then_the_rest(canvas):
    doc, scene, view = canvas(_two_free())
    for query, first in (("relu", "ReLU"), ("cross", "CrossEntropyLoss")):
        popup = view.open_quick_add(QPointF(50, 600))
        QTest.keyClicks(popup.search, query)
        assert popup.current_type() == first
        QTest.keyClick(popup.search, Qt.Key_Return)
        assert [n.type for n in doc.graph.nodes.values()].count(first) == 1


def test_quick_add_ranks_name_prefix_first():
    from gui.canvas.quick_add import rank_types
    assert rank_types("conv")[0] == "Conv2D"
    assert rank_types("Loss")[:1] != [] and all("Loss" in t for t in rank_types("loss")[:5])
    assert rank_types("zzzz") == []


# ---- locked while training -------------------------------------------------------------------
def test_locked_document_refuses_drags_and_shows_a_sign(canvas):
    doc, scene, view = canvas(_two_free())
    doc.set_locked(True)
    assert view.locked_sign_visible()
    start = doc.graph.nodes["fc"].pos
    grab = scene.nodes["fc"].scenePos() + QPointF(60, 12)
    mouse_drag(view, grab, grab + QPointF(80, 80))
    assert doc.graph.nodes["fc"].pos == start
    assert scene.nodes["fc"].scenePos() == QPointF(*start)  # did not move on screen either
    mouse_drag(view, port_pos(scene, "x", "out", True), port_pos(scene, "fc", "in", False))
    assert not doc.graph.edges
    assert "locked" in scene.last_message
    scene.select_nodes(["fc"])
    scene.delete_selection()
    assert "fc" in doc.graph.nodes
    assert doc.undo_stack.count() == 0
    doc.set_locked(False)
    assert not view.locked_sign_visible()
    mouse_drag(view, grab, grab + QPointF(80, 80))
    assert doc.graph.nodes["fc"].pos == (start[0] + 80, start[1] + 80)


# ---- live-training hooks ---------------------------------------------------------------------
def test_heat_badges_and_highlight(canvas):
    doc, scene, view = canvas()
    scene.set_heat({"fc1": QColor("red")})
    assert scene.nodes["fc1"].heat == QColor("red") and scene.nodes["x"].heat is None
    scene.set_heat(None)
    assert scene.nodes["fc1"].heat is None
    scene.set_badges({"fc2": ("‖g‖ 0.31", "gradient norm")})
    assert scene.nodes["fc2"].badge == "‖g‖ 0.31"
    assert "gradient norm" in scene.nodes["fc2"].toolTip()
    scene.set_badges(None)
    assert scene.nodes["fc2"].badge is None
    scene.set_edge_heat({("fc1", "act"): QColor("orange")})
    e = next(e for e in doc.graph.edges if e.src == "fc1")
    assert scene.edge_item(e).heat == QColor("orange")
    scene.set_edge_heat(None)
    assert scene.edge_item(e).heat is None
    messages = []
    scene.message.connect(messages.append)
    scene.highlight_node("act", "NaN in the output")
    assert scene.nodes["act"].highlighted and scene.highlighted_node() == "act"
    assert "NaN" in messages[-1]
    view.grab()
    scene.clear_highlight()
    assert not scene.nodes["act"].highlighted and scene.highlighted_node() is None


# ---- navigating and drawing ------------------------------------------------------------------
def test_wheel_zoom_is_clamped_and_fit_view_shows_every_node(canvas):
    from PySide6.QtGui import QWheelEvent

    from gui.canvas.view import MAX_ZOOM, MIN_ZOOM
    doc, scene, view = canvas()
    w = view.viewport()
    for delta in (120,) * 40 + (-120,) * 120:
        pos = QPointF(300, 300)
        ev = QWheelEvent(pos, QPointF(w.mapToGlobal(pos.toPoint())), QPoint(),
                         QPoint(0, delta), Qt.NoButton, Qt.NoModifier, Qt.NoScrollPhase,
                         False)
        QApplication.sendEvent(w, ev)
        assert MIN_ZOOM - 1e-9 <= view.zoom() <= MAX_ZOOM + 1e-9
    assert view.zoom() == pytest.approx(MIN_ZOOM)
    view.fit_view()
    visible = view.mapToScene(view.viewport().rect()).boundingRect()
    assert visible.contains(scene.nodes_rect())
    assert view.center_scene_pos() == view.mapToScene(view.viewport().rect().center())


def test_middle_button_pans(canvas):
    doc, scene, view = canvas()
    before = view.center_scene_pos()
    mouse_drag(view, QPointF(200, 300), QPointF(100, 250), button=Qt.MiddleButton)
    after = view.center_scene_pos()
    assert after.x() - before.x() == pytest.approx(100, abs=2)
    assert after.y() - before.y() == pytest.approx(50, abs=2)
    assert doc.undo_stack.count() == 0


@pytest.mark.parametrize("name", ["light", "dark"])
@pytest.mark.parametrize("zoom", [0.1, 0.35, 1.0, 2.0])
def test_paints_in_both_themes_at_every_level_of_detail(canvas, name, zoom):
    d = loop_placed()
    d["edges"].append(edge("t", "add:in1", delay=1))
    doc, scene, view = canvas(d)
    theme.apply_theme(name)
    try:
        view.refresh_theme()
        view.set_zoom(zoom)
        image = view.grab().toImage()
        assert not image.isNull()
        # the canvas colour of the theme fills the background
        corner = QColor(image.pixel(2, 2))
        canvas_colour = theme.current().color("canvas")
        assert abs(corner.lightness() - canvas_colour.lightness()) < 40
    finally:
        theme.apply_theme("light")


def test_delay_labels_use_superscripts():
    from gui.canvas.look import delay_label
    assert delay_label(1) == "z⁻¹"
    assert delay_label(12) == "z⁻¹²"


def test_space_drag_pans_without_selecting(canvas):
    doc, scene, view = canvas()
    view.setFocus()
    before = view.center_scene_pos()
    QTest.keyPress(view, Qt.Key_Space)
    mouse_drag(view, QPointF(300, 300), QPointF(240, 300))
    QTest.keyRelease(view, Qt.Key_Space)
    assert view.center_scene_pos().x() - before.x() == pytest.approx(60, abs=2)
    assert scene.selected_node_ids() == [] and doc.undo_stack.count() == 0


def test_a_node_of_unknown_type_opens_with_the_ports_its_edges_use(canvas):
    d = _placed(graph_dict([node("x", "Input", shape=[4]), node("m", "Mystery"),
                            node("r", "ReLU")],
                           [edge("x", "m:a"), edge("m:o", "r")]),
                {"x": (0, 0), "m": (240, 0), "r": (480, 0)})
    doc, scene, view = canvas(d)
    doc.flush()
    item = scene.nodes["m"]
    assert list(item.inputs) == ["a"] and list(item.outputs) == ["o"]
    assert item.problems and "Mystery" in item.problems[0]
    assert_scene_matches(doc, scene)
    view.grab()


# ---- a label that is not a string (a file may hold any JSON there) -----------------------------
def _render(scene: GraphScene) -> None:
    from PySide6.QtGui import QImage, QPainter
    image = QImage(800, 400, QImage.Format.Format_ARGB32)
    image.fill(0)
    painter = QPainter(image)
    try:
        scene.render(painter)
    finally:
        painter.end()


@pytest.mark.parametrize("label", [5, {"a": 1}, [1, "x"], True, None, 2.5, ""])
def test_non_string_label_paints_without_raising(canvas, label):
    d = mlp_placed()
    d["nodes"][1]["label"] = label
    doc, scene, view = canvas(d)
    item = scene.nodes["fc1"]
    assert item.label is None and item.title == "fc1" and item.subtitle == "Dense"
    _render(scene)
    view.viewport().repaint()
    assert doc.graph.nodes["fc1"].extra.get("label") == label  # kept, only not shown
    # a later change of the key to something that is not text is not shown either
    doc.graph.set_extra("fc1", "label", {"b": [2]})
    assert scene.nodes["fc1"].label is None
    _render(scene)
    doc.graph.set_extra("fc1", "label", "first layer")
    assert scene.nodes["fc1"].title == "first layer"
    _render(scene)
