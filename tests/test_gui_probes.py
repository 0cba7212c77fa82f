"""Seeing inside the network in the editor: the embedding view, Check Gradients (badge and
inspector details) and the cost heat modes (docs/live-training.md). pytest-qt, offscreen.

The real paths run the training process's probes on the MLP digits example; a broken backward
and failing probes are delivered by a stubbed ``request_probe``."""
from __future__ import annotations

import re

import numpy as np
import pytest
from PySide6.QtWidgets import QLabel

from core.errors import NeuroCanvasError
from core.probe import Embedding, GradCheck, TensorCheck
from gui.main_window import MainWindow
from gui.training import embedding_view
from gui.training.cost import MODES, cost_color, decades, fmt_bytes, fmt_count, fmt_seconds
from gui.training.embedding_view import EmbeddingView, axis_titles
from tests.cli_helpers import ROOT

MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"
TOTALS = re.compile(r"^[\d.]+( [kMG])? params · [\d.]+( [kMG])? MACs/sample · [\d.]+ (ns|µs|ms|s)"
                    r"/step · [\d.]+ (B|KiB|MiB|GiB) activations$")


@pytest.fixture
def window(qtbot):
    w = MainWindow()
    w.training.overrides["device"] = "cpu"
    w.resize(1400, 860)
    w.show()
    qtbot.waitExposed(w)
    w.open_file(MLP)
    w.bottom_tabs.setCurrentWidget(w.training_panel)
    yield w
    w.document.undo_stack.setClean()
    w.training.shutdown()
    w.close()
    w.deleteLater()


def _check(node: str, err: float) -> GradCheck:
    return GradCheck(node, err, [TensorCheck(f"{node}/W", "param", [64, 128], 16, 8192, err,
                                             [3, 7], 0.5, 0.5 * (1 + err), 1.0, 2)],
                     loss=2.3, samples=64)


def _deliver(monkeypatch, window, answer):
    """request_probe answers at once: ``answer(name, args)`` is a result or an exception."""
    asked = []

    def request_probe(name, on_done, on_error=None, **args):
        asked.append((name, args))
        result = answer(name, args)
        if isinstance(result, Exception):
            on_error(result)
        else:
            on_done(result)
        return True

    monkeypatch.setattr(window.training, "request_probe", request_probe)
    return asked


# ---- the embedding --------------------------------------------------------------------------
def test_the_embedding_of_a_classifier_layer_shows_every_sample_coloured_by_class(window,
                                                                                  qtbot):
    panel = window.training_panel
    view = window.findChild(EmbeddingView, "embeddingView")
    assert view is panel.embedding
    panel.tabs.setCurrentWidget(view)
    window.scene.select_nodes(["fc1"])  # before any training: an idle process answers
    qtbot.waitUntil(lambda: view.embedding is not None, timeout=30000)
    emb = view.embedding
    assert emb.node == "fc1" and emb.projection == "pca" and emb.width == 128
    n = len(emb.points)
    assert 0 < n <= 1000 and view.point_count() == n
    assert emb.labels is not None and len(emb.labels) == n
    classes = sorted(set(emb.labels.tolist()))
    assert classes == list(range(10))
    legend = view.legend
    assert legend.isVisible() and legend.keys() == [f"class:{c}" for c in classes]
    assert sum(int(re.search(r"\((\d+)\)", t).group(1)) for t in legend.labels()) == n
    bottom = view.plot.plotItem.getAxis("bottom").labelText
    left = view.plot.plotItem.getAxis("left").labelText
    share = [round(100 * float(e)) for e in emb.explained]
    assert bottom == f"PC 1 ({share[0]}% of variance)" and left.startswith("PC 2 (")
    assert "128 values per sample" in view.info.text()
    # hiding a class in the legend hides its points
    legend.set_shown("class:3", False)
    assert not view.scatters["class:3"].isVisible() and view.scatters["class:4"].isVisible()
    # a loss has no embedding: said without asking the process
    window.scene.select_nodes(["loss"])
    assert view.embedding is None and "one value per batch" in view.info.text()


def test_a_two_unit_node_is_drawn_on_its_own_units():
    pts = np.zeros((5, 2), np.float32)
    ident = Embedding("e", pts, "identity", 2, np.zeros(2), np.eye(2), np.array([.6, .4]))
    pca = Embedding("e", pts, "pca", 8, np.zeros(8), np.zeros((2, 8)), np.array([.43, .2]))
    pad = Embedding("e", pts, "pad", 1, np.zeros(1), np.eye(2, 1), np.array([1.0, 0.0]))
    assert axis_titles(ident) == ("unit 0", "unit 1")
    assert axis_titles(pca) == ("PC 1 (43% of variance)", "PC 2 (20% of variance)")
    assert axis_titles(pad)[0] == "unit 0"


def test_while_training_the_embedding_asks_at_most_once_a_second_and_one_at_a_time(
        window, qtbot, monkeypatch):
    panel = window.training_panel
    panel.tabs.setCurrentWidget(panel.embedding)
    view = panel.embedding
    pending = []
    monkeypatch.setattr(window.training, "request_probe",
                        lambda name, on_done, on_error=None, **a: pending.append(on_done) or True)
    clock = [1000.0]
    monkeypatch.setattr(embedding_view.time, "monotonic", lambda: clock[0])
    view.show_node("fc1")
    assert len(pending) == 1  # the selection asks at once
    for _ in range(5):
        view._on_steps([])  # what each burst of training steps does
    assert len(pending) == 1  # one in flight: no more
    emb = Embedding("fc1", np.zeros((4, 2), np.float32), "pca", 128, np.zeros(128),
                    np.zeros((2, 128)), np.array([.5, .2]), np.arange(4))
    pending.pop()(emb)
    assert view.point_count() == 4
    view._on_steps([])
    assert not pending  # less than a second since the last request
    clock[0] += embedding_view.REFRESH_S
    view._on_steps([])
    assert len(pending) == 1


# ---- Check Gradients --------------------------------------------------------------------------
def test_check_gradients_of_a_healthy_layer_puts_a_green_badge_and_details(window, qtbot):
    action = window.actionGradCheck
    assert action.objectName() == "actionGradCheck" and action in window.train_menu.actions()
    assert not action.isEnabled()  # nothing selected
    window.scene.select_nodes(["fc2"])
    assert action.isEnabled()
    assert action in window.scene.node_menu().actions()
    action.trigger()
    assert "Checking gradients of fc2" in window.statusBar().currentMessage()
    item = window.scene.node_item("fc2")
    qtbot.waitUntil(lambda: item.check_badge is not None, timeout=60000)
    check = window.grad_check.results["fc2"]
    assert check.verdict == "good" and check.max_rel_error < 1e-5
    badge = item.check_badge
    assert badge.verdict == "good" and badge.color.name() == "#2e9d4b"
    assert f"{check.max_rel_error:.2g}" in badge.toolTip()
    keys = {t.key for t in check.tensors}
    assert {"fc2/W", "fc2/b", "fc2:in"} <= keys
    page = window.inspector.node_page
    box = page.check_box
    assert box.objectName() == "gradCheckDetails" and box.isVisible()
    text = page.check_text.text()
    for key in keys:
        assert key in text
    assert "analytic" in text and "numeric" in text and "relative error" in text
    assert "Gradient check of fc2" in window.statusBar().currentMessage()
    # another node's page has no details; back on fc2 they are there again
    window.scene.select_nodes(["fc1"])
    assert not page.check_box.isVisible()
    window.scene.select_nodes(["fc2"])
    assert page.check_box.isVisible()
    # an edit: the check was of the graph as it was
    window.document.set_param("fc1", "units", 64)
    assert item.check_badge is None and not page.check_box.isVisible()
    assert window.grad_check.results == {}


def test_a_broken_backward_gets_a_red_badge_and_a_doubtful_one_amber(window, monkeypatch):
    errors = {"fc1": 0.8, "fc2": 2e-4}
    asked = _deliver(monkeypatch, window, lambda name, a: _check(a["node"], errors[a["node"]]))
    for node, verdict, colour in (("fc1", "bad", "#d0342c"), ("fc2", "doubtful", "#d08c00")):
        window.scene.select_nodes([node])
        window.actionGradCheck.trigger()
        badge = window.scene.node_item(node).check_badge
        assert badge.verdict == verdict and badge.color.name() == colour
        assert "∇" in badge.text
    assert asked == [("gradcheck", {"node": "fc1"}), ("gradcheck", {"node": "fc2"})]
    assert "0.8" in window.scene.node_item("fc1").check_badge.toolTip()
    assert "bad" in window.scene.node_item("fc1").check_badge.toolTip()
    text = window.inspector.node_page.check_text.text()
    assert "fc2/W" in text and "2 at a kink" in text


def test_an_invalid_graph_cannot_be_checked(window):
    window.scene.select_nodes(["fc1"])
    window.document.disconnect(next(e for e in window.document.graph.edges
                                     if e.dst == "fc2"))
    window.document.flush()  # the analysis that follows an edit
    assert not window.actionGradCheck.isEnabled()
    assert not window.check_gradients("fc1")
    assert "problems" in window.statusBar().currentMessage()


# ---- the cost heat ------------------------------------------------------------------------------
def test_cost_modes_tint_the_nodes_by_what_they_cost_with_the_totals_in_the_status_bar(
        window, qtbot):
    box = window.training_panel.heat_mode
    assert box.objectName() == "heatMode"
    assert [box.itemData(i) for i in range(box.count())] == list(MODES)
    cost = window.training_panel.cost
    label = window.findChild(QLabel, "costTotals")
    box.setCurrentIndex(box.findData("params"))
    qtbot.waitUntil(lambda: cost.cost is not None, timeout=60000)
    items = {n: window.scene.node_item(n) for n in window.document.graph.nodes}
    # parameters: fc1 (64 x 128 + 128) outweighs fc2 (128 x 10 + 10); ReLU and data: none
    assert cost.values["fc1"] == 8320 and cost.values["fc2"] == 1290
    assert items["act1"].heat is None and items["x"].heat is None
    assert items["fc1"].heat is not None and items["fc2"].heat is not None
    assert items["fc1"].heat != items["fc2"].heat
    assert items["fc1"].heat.lightness() < items["fc2"].heat.lightness()  # darker: costlier
    assert items["fc1"].badge == "8.32 k params"
    assert label.isVisible() and TOTALS.match(label.text()), label.text()
    assert label.text().startswith("9.61 k params · 9.47 k MACs/sample")
    legend = window.training_panel.legend
    assert legend.scale is not None and legend.tick_labels()[-1] == "10 k"
    for mode in ("macs", "time", "memory"):
        box.setCurrentIndex(box.findData(mode))
        assert cost.mode == mode
        assert items["fc1"].heat is not None, mode
        assert set(cost.colors) <= set(items)
        assert all(items[n].heat == c for n, c in cost.colors.items())
    assert cost.values["fc1"] > 0 and cost.values["act1"] > 0  # every node takes time...
    box.setCurrentIndex(box.findData("memory"))
    assert cost.values["act1"] > 0 and cost.values["loss"] >= 0
    # ... and the View menu follows the box
    assert window.findChild(type(window.actionTrain), "heatMode_memory").isChecked()
    # back to the gradient norm: nothing trained, so no tint
    box.setCurrentIndex(box.findData("grad"))
    assert all(i.heat is None for i in items.values()) and legend.scale is None
    assert not label.isVisible()


def test_failing_probes_say_why_and_raise_nothing(window, qtbot, monkeypatch):
    _deliver(monkeypatch, window,
             lambda name, a: NeuroCanvasError("the training process has ended"))
    panel = window.training_panel
    panel.tabs.setCurrentWidget(panel.embedding)
    window.scene.select_nodes(["fc1"])
    assert "the training process has ended" in panel.embedding.info.text()
    window.actionGradCheck.trigger()
    assert "Cannot check the gradients of fc1" in window.statusBar().currentMessage()
    assert window.scene.node_item("fc1").check_badge is None
    panel.heat_mode.setCurrentIndex(panel.heat_mode.findData("time"))
    label = window.findChild(QLabel, "costTotals")
    assert label.text().startswith("Cost not measured: the training process has ended")
    assert all(window.scene.node_item(n).heat is None for n in window.document.graph.nodes)


def test_cost_formats_and_colours():
    assert fmt_count(2400) == "2.4 k" and fmt_count(1.1e6) == "1.1 M" and fmt_count(12) == "12"
    assert fmt_bytes(1.5 * 2 ** 20) == "1.5 MiB" and fmt_bytes(100) == "100 B"
    assert fmt_seconds(0.0032) == "3.2 ms" and fmt_seconds(4e-5) == "40 µs"
    assert decades([0, 12, 8320]) == (1, 4)
    assert cost_color(0, 1, 4) is None
    assert cost_color(8320, 1, 4).lightness() < cost_color(12, 1, 4).lightness()
