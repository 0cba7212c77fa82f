"""The "Input plane" tab (gui/training/plane_view.py): the decision boundary over a
two-feature Input with the data on top, the selected node's unit maps, the refresh limit and
the explanation for other graphs. pytest-qt, offscreen.

The real training process answers where the picture is checked; a stub controller (which
answers when the test says so) checks the request discipline without timing."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor

from core.errors import NeuroCanvasError
from core.probe.plane import PlaneMaps, plane_grid
from gui import theme
from gui.document import Document
from gui.training import TrainingController, TrainingPanel, attach
from gui.training.controller import IDLE, PAUSED, RUNNING
from gui.training.plane_view import (
    PLANE_HZ,
    PlaneView,
    class_color,
    diverging_rgba,
    plane_support,
    unit_why_not,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "resources" / "examples"
SPIRALS = EXAMPLES / "mlp_spirals.ncg.json"
DIGITS = EXAMPLES / "mlp_digits.ncg.json"

_controllers: list[TrainingController] = []


@pytest.fixture(autouse=True)
def _end_training_processes():
    yield
    while _controllers:
        _controllers.pop().shutdown()


def open_doc(path: Path = SPIRALS) -> Document:
    doc = Document()
    doc.open(path)
    return doc


def rig(qtbot, doc: Document | None = None, **overrides):
    """(controller, panel) on mlp_spirals, the panel shown on its "Input plane" tab."""
    overrides.setdefault("device", "cpu")
    ctl = TrainingController(doc or open_doc(), **overrides)
    _controllers.append(ctl)
    panel = TrainingPanel(ctl)
    qtbot.addWidget(panel)
    attach(ctl, panel)
    panel.resize(1200, 600)
    panel.show()
    panel.tabs.setCurrentWidget(panel.plane)
    return ctl, panel


def shown_maps(qtbot, view: PlaneView, step: int | None = None, unit_node: str | None = None,
               timeout: int = 30000) -> PlaneMaps:
    def ready():
        m = view.maps
        return (m is not None and not view.in_flight and (step is None or m.step == step)
                and (unit_node is None or m.unit_node == unit_node))
    qtbot.waitUntil(ready, timeout=timeout)
    return view.maps


# ---- the picture, from a real training process -------------------------------------------
def test_after_training_spirals_the_boundary_is_a_100x100_image_with_every_point(qtbot):
    ctl, panel = rig(qtbot, epochs=1)
    view = panel.plane
    assert view.showing_plane
    assert panel.findChild(object, "decisionBoundary") is view.plot
    assert ctl.start()
    qtbot.waitUntil(lambda: ctl.state == IDLE, timeout=30000)
    total = ctl.info.total_steps
    maps = shown_maps(qtbot, view, step=total)  # the refresh after the run

    img = view.image.image
    assert img.shape[:2] == (100, 100) and img.shape[2] == 4  # a 100x100 RGBA picture
    assert maps.classes.shape == (100, 100)
    # every point of both splits (spirals: 1000 samples, 20% validation)
    assert view.point_count("train") == 800 and view.point_count("val") == 200
    # training points are filled with their class's colour, validation points outlined in it
    labels = maps.points["train_labels"]
    assert set(labels.tolist()) == {0, 1}
    for split in ("train", "val"):
        pts, lab = maps.points[f"{split}_points"], maps.points[f"{split}_labels"]
        for c in (0, 1):
            item = view.point_items[(split, c)]
            x, y = item.getData()
            assert np.array_equal(x, pts[lab == c, 0]) and np.array_equal(y, pts[lab == c, 1])
            spot = item.points()[0]
            colour = (spot.brush() if split == "train" else spot.pen()).color().name()
            assert colour == class_color(c).name()
    # the image is shaded by class: each pixel is the background tinted towards its class's
    # colour (the direction from the background), more so where the model is surer
    base = np.array(QColor(theme.current().base).getRgb()[:3], float)
    tint = img[..., :3].astype(float) - base
    dirs = [np.array(class_color(k).getRgb()[:3], float) - base for k in (0, 1)]
    cos = [tint @ d / (np.linalg.norm(tint, axis=2) * np.linalg.norm(d) + 1e-9) for d in dirs]
    assert np.array_equal(cos[0] > cos[1], maps.classes == 0)
    strength = np.linalg.norm(tint, axis=2)
    sure, unsure = maps.confidence > 0.95, maps.confidence < 0.6
    assert sure.any() and unsure.any()
    assert strength[sure].min() > strength[unsure].max()
    # axes named by the Input's field, a legend of the classes
    pi = view.plot.plotItem
    assert pi.getAxis("bottom").labelText == "x[0]" and pi.getAxis("left").labelText == "x[1]"
    legend = view.legend.text()
    assert "class 0" in legend.replace("&nbsp;", " ") and "class 1" in legend.replace(
        "&nbsp;", " ")
    assert "validation (200)" in legend.replace("&nbsp;", " ")
    assert f"step {total}" in view.header.text()
    # what the model says under the mouse
    x, y = float(maps.xs[10]), float(maps.ys[20])
    assert view.readout_at(x, y).split(": class ")[1].startswith(str(maps.classes[20, 10]))


def test_unit_maps_one_per_unit_of_a_dense_8_and_at_most_64(qtbot):
    doc = open_doc()
    doc.set_param("fc1", "units", 8)
    doc.set_param("fc2", "units", 100)
    ctl, panel = rig(qtbot, doc)
    view = panel.plane
    panel.show_node("fc1")  # before any training: the initial weights, from an idle process
    shown_maps(qtbot, view, unit_node="fc1")
    maps_widget = panel.findChild(object, "unitMaps")
    assert maps_widget is view.unit_maps
    assert maps_widget.count == 8 and len(maps_widget.images) == 8
    assert all(img.width() == 100 and img.height() == 100 for img in maps_widget.images)
    assert "its 8 units" in view.units_header.text()
    assert view.scale_bar.isVisible()
    # one colour scale for all maps: a value has the same colour in every one of them
    m = maps_widget.scale
    for i, u in enumerate(view.maps.units):
        want = diverging_rgba(u, -m, m, theme.current().base)[-1, 0]  # top left: y upwards
        got = QColor(maps_widget.images[i].pixel(0, 0))  # (the scale has 255 colours)
        assert np.abs(np.array(got.getRgb()[:3]) - want[:3].astype(int)).max() <= 3

    panel.show_node("fc2")
    shown_maps(qtbot, view, unit_node="fc2")
    assert view.maps.unit_count == 100 and maps_widget.count == 64
    assert "first 64 of 100 units" in view.units_header.text()
    # the grid is taller than its scroll area: 64 maps stay their size and scroll
    assert maps_widget.minimumHeight() > view.scroll.viewport().height()

    panel.show_node("loss")  # a loss has no map: said so, nothing drawn
    assert maps_widget.count == 0 and "loss" in maps_widget.message
    panel.show_node(None)
    assert maps_widget.count == 0 and "Select a node" in maps_widget.message


def test_loaded_weights_are_drawn_once_and_an_edit_stops_the_old_picture(qtbot, tmp_path):
    ctl, panel = rig(qtbot, epochs=1)
    assert ctl.start()
    qtbot.waitUntil(lambda: ctl.state == IDLE, timeout=30000)
    trained = shown_maps(qtbot, panel.plane, step=ctl.info.total_steps)
    ctl.save_weights(tmp_path / "w.npz")

    ctl2, panel2 = rig(qtbot)
    view = panel2.plane
    first = shown_maps(qtbot, view)  # shown: the initial weights
    assert not np.array_equal(first.confidence, trained.confidence)
    asked = view.requests
    ctl2.load_weights(tmp_path / "w.npz")
    qtbot.waitUntil(lambda: view.requests == asked + 1 and view.maps is not None
                    and not view.in_flight, timeout=30000)
    assert np.allclose(view.maps.confidence, trained.confidence, atol=1e-5)
    assert "initial or loaded" in view.header.text()
    qtbot.wait(50)
    assert view.requests == asked + 1  # once

    doc2 = panel2.controller.document
    doc2.set_param("fc1", "units", 7)  # the process holds the old graph
    doc2.flush()
    assert "graph changed" in view.header.text()
    panel2.show_node("fc1")
    assert view.requests == asked + 1
    doc2.undo_stack.undo()  # as it was: the picture is right again
    doc2.flush()
    assert "graph changed" not in view.header.text() and "step 0" in view.header.text()
    shown_maps(qtbot, view, unit_node="fc1")  # the node selected meanwhile
    assert view.requests == asked + 2 and view.unit_maps.count == 64


def test_a_graph_whose_input_has_64_features_explains_why_there_is_no_plane(qtbot):
    ctl, panel = rig(qtbot, open_doc(DIGITS))
    view = panel.plane
    qtbot.wait(50)
    assert not view.showing_plane
    text = panel.findChild(object, "planeExplanation").text()
    assert "needs" in text and "two features" in text and "Input 'x' has 64" in text
    panel.show_node("fc1")
    assert view.requests == 0 and ctl.trainer is None  # nothing was asked, no process started


# ---- the request discipline, with a stub controller ----------------------------------------
class StubController(QObject):
    """What PlaneView uses of a TrainingController; answers only when the test says so."""
    run_started = Signal(object)
    steps_batch = Signal(list)
    state_changed = Signal(str)
    finished = Signal(object)
    weights_reset = Signal()

    def __init__(self, document, refuse: bool = False):
        super().__init__()
        self.document = document
        self.state = IDLE
        self.building = False
        self.trainer = object()
        self.calls: list[tuple] = []  # (on_done, on_error, args)
        self.refuse = refuse

    def request_probe(self, name, on_done, on_error=None, **args):
        assert name == "plane"
        self.calls.append((on_done, on_error, args))
        if self.refuse:
            on_error(NeuroCanvasError("the graph has 1 problem"))
            return False
        return True

    def set_state(self, state):
        self.state = state
        self.state_changed.emit(state)


class Step:
    def __init__(self, step):
        self.step = step


def real_maps(doc, unit_node=None, step=0) -> PlaneMaps:
    m = plane_grid(doc.analysis, None, (-1.5, 1.5), (-1.5, 1.5), 100, unit_node=unit_node)
    m.step = step
    rng = np.random.default_rng(0)
    m.points = {"train_points": rng.uniform(-1, 1, (40, 2)).astype(np.float32),
                "train_labels": rng.integers(0, 2, 40),
                "val_points": rng.uniform(-1, 1, (10, 2)).astype(np.float32),
                "val_labels": rng.integers(0, 2, 10)}
    return m


def stub_view(qtbot, doc=None, **kw):
    doc = doc or open_doc()
    ctl = StubController(doc, **kw)
    view = PlaneView(ctl)
    qtbot.addWidget(view)
    view.resize(900, 500)
    return ctl, view


def test_while_training_no_second_request_goes_out_while_one_is_in_flight(qtbot):
    ctl, view = stub_view(qtbot)
    assert view.timer.interval() >= 1000 // 5 and PLANE_HZ <= 5  # at most 5 a second
    view.timer.setInterval(10**6)  # the test ticks by hand
    view.show()
    qtbot.waitUntil(lambda: len(ctl.calls) == 1)  # shown: one picture of the weights
    assert ctl.calls[0][2]["resolution"] >= 100
    ctl.calls[0][0](real_maps(ctl.document))
    ctl.set_state(RUNNING)
    assert view.timer.isActive()
    for step in range(1, 30):  # many steps and ticks: one request until it is answered
        ctl.steps_batch.emit([Step(step)])
        view._tick()
    assert len(ctl.calls) == 2
    view.show_node("fc1")  # a selection meanwhile waits too
    assert len(ctl.calls) == 2
    ctl.calls[1][0](real_maps(ctl.document, step=29))
    qtbot.waitUntil(lambda: len(ctl.calls) == 3)  # the selection's, once, after the answer
    assert ctl.calls[2][2]["unit_node"] == "fc1"
    ctl.calls[2][0](real_maps(ctl.document, "fc1", step=29))
    qtbot.wait(20)
    assert len(ctl.calls) == 3
    view._tick()  # no new step since the last request: nothing to ask
    assert len(ctl.calls) == 3
    ctl.steps_batch.emit([Step(30)])
    view._tick()
    assert len(ctl.calls) == 4
    assert view.unit_maps.count == 64

    # hidden (another tab): no request at all, one when it is shown again
    ctl.calls[3][0](real_maps(ctl.document, "fc1", step=30))
    view.hide()
    for step in range(31, 40):
        ctl.steps_batch.emit([Step(step)])
        view._tick()
    assert len(ctl.calls) == 4
    view.show()
    qtbot.waitUntil(lambda: len(ctl.calls) == 5)
    ctl.calls[4][0](real_maps(ctl.document, "fc1", step=39))
    # paused, then the end of the run: one request each
    ctl.set_state(PAUSED)
    assert len(ctl.calls) == 6 and not view.timer.isActive()
    ctl.calls[5][0](real_maps(ctl.document, "fc1", step=39))
    ctl.set_state(IDLE)
    ctl.finished.emit(None)
    assert len(ctl.calls) == 7


def test_a_real_run_never_has_two_plane_requests_in_flight(qtbot, monkeypatch):
    ctl, panel = rig(qtbot, epochs=2)
    outstanding, most = [0], [0]
    real = ctl.request_probe

    def counting(name, on_done, on_error=None, **args):
        def done(result):
            outstanding[0] -= 1
            on_done(result)

        def failed(e):
            outstanding[0] -= 1
            on_error(e)
        outstanding[0] += 1
        most[0] = max(most[0], outstanding[0])
        return real(name, done, failed, **args)

    monkeypatch.setattr(ctl, "request_probe", counting)
    shown_maps(qtbot, panel.plane)  # the untrained network's, from an idle process
    assert ctl.start()
    qtbot.waitUntil(lambda: ctl.state == IDLE, timeout=30000)
    shown_maps(qtbot, panel.plane, step=ctl.info.total_steps)
    assert panel.plane.requests >= 1 and most[0] == 1


def test_a_failing_probe_never_raises_and_the_view_asks_again(qtbot):
    ctl, view = stub_view(qtbot)
    view.show()
    qtbot.waitUntil(lambda: len(ctl.calls) == 1)
    ctl.calls[0][1](RuntimeError("the training process ended unexpectedly"))
    assert not view.in_flight
    assert "could not be computed" in view.header.text()
    assert "ended unexpectedly" in view.header.text()
    ctl.set_state(RUNNING)
    ctl.steps_batch.emit([Step(1)])
    view._tick()
    assert len(ctl.calls) == 2  # it keeps trying
    ctl.calls[1][1](NeuroCanvasError("no node 'fc1' of a known type", node="fc1"))
    assert not view.in_flight

    # a controller that cannot answer at all (calls on_error at once, returns False)
    ctl2, view2 = stub_view(qtbot, refuse=True)
    view2.show()
    qtbot.waitUntil(lambda: len(ctl2.calls) == 1)
    assert not view2.in_flight and "1 problem" in view2.header.text()


def test_regression_values_are_drawn_on_a_diverging_scale(qtbot):
    ctl, view = stub_view(qtbot)
    xs = np.linspace(-1, 1, 100)
    values = np.broadcast_to(xs[None, :, None], (100, 100, 1)).astype(np.float32)
    maps = PlaneMaps("x", "fc3", "values", xs, xs.copy(), values=values,
                     points={"train_points": np.zeros((5, 2), np.float32),
                             "train_labels": np.linspace(-1, 1, 5).astype(np.float32)})
    view.show_maps(maps)
    img = view.image.image
    assert img.shape[:2] == (100, 100)
    left, right = img[50, 0, :3].astype(int), img[50, -1, :3].astype(int)
    assert left[0] > left[2] and right[2] > right[0]  # orange below zero, blue above
    assert "Value of 'fc3'" in view.header.text()
    assert view.point_count("train") == 5
    # each point coloured by its target on the same scale: lowest orange, highest blue
    colours = {g: item.opts["brush"].color() for (_, g), item in view.point_items.items()}
    low, high = colours[min(colours)], colours[max(colours)]
    assert low.red() > low.blue() and high.blue() > high.red()
    # values all of one sign (a target of 10 to 20) use their range, not 0 to 20
    view.show_maps(PlaneMaps("x", "fc3", "values", xs, xs.copy(), values=values * 5 + 15))
    img = view.image.image
    left, right = img[50, 0, :3].astype(int), img[50, -1, :3].astype(int)
    assert left[0] > left[2] and right[2] > right[0]


def test_which_graphs_and_nodes_have_a_plane():
    spirals = open_doc().analysis
    s = plane_support(spirals)
    assert s.ok and s.input_node == "x" and s.field == "x" and s.output == "fc3"
    assert unit_why_not(spirals, s, "fc1") is None
    assert unit_why_not(spirals, s, "x") is None  # the Input itself: its two features
    assert "loss" in unit_why_not(spirals, s, "loss")
    assert "does not depend" in unit_why_not(spirals, s, "y")
    digits = plane_support(open_doc(DIGITS).analysis)
    assert not digits.ok and "Input 'x' has 64" in digits.why_not
