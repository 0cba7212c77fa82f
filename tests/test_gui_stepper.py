"""Stepping through backprop in the editor (gui/training/stepper_view.py): F10 walks a small
MLP through every stage in a real training process, the canvas rings the nodes in the plan's
order and then in reverse, edges get gradient labels in the backward phase, and the update
leaves the weights of one training step; refusals and edits end or stop the walk.
pytest-qt, offscreen."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtTest import QTest

from core.network import Network
from core.training import Trainer, parse_training
from core.training.step import training_step
from gui.main_window import MainWindow
from gui.training.controller import RUNNING
from gui.training.stepper_view import BackpropView
from tests.graphs import edge, graph_dict, node

TIMEOUT = 60000  # the first step starts a training process that loads the data


def mlp_file(tmp_path: Path) -> Path:
    d = graph_dict(
        [node("x", "Input", shape=[2]), node("fc1", "Dense", units=5), node("act", "Tanh"),
         node("fc2", "Dense", units=2), node("y", "Target", shape=[], dtype="int64"),
         node("loss", "CrossEntropyLoss")],
        [edge("x", "fc1"), edge("fc1", "act"), edge("act", "fc2"), edge("fc2", "loss:pred"),
         edge("y", "loss:target")],
        training={"dataset": {"source": "builtin", "name": "xor", "n": 96, "noise": 0.2},
                  "validation_split": 0.25, "optimizer": {"type": "adam", "lr": 0.01},
                  "batch_size": 16, "steps": 3, "seed": 3, "device": "cpu"})
    for i, n in enumerate(d["nodes"]):
        n["pos"] = [60 + 220 * i, 120 if n["id"] != "y" else 320]
    path = tmp_path / "mlp.ncg.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    return path


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow()
    w.open_file(mlp_file(tmp_path))
    w.set_dock_layout("training")
    w.resize(1500, 950)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    yield w
    w.training.shutdown()
    w.document.undo_stack.setClean()
    w.close()
    w.deleteLater()


def settle(qtbot, view: BackpropView) -> None:
    qtbot.waitUntil(lambda: not view._in_flight and not view._queue, timeout=TIMEOUT)


def ringed(w: MainWindow) -> list[tuple[str, str]]:
    return [(nid, item.step_phase) for nid, item in w.scene.nodes.items()
            if item.step_phase]


def labels(w: MainWindow) -> dict[str, str]:
    out = {}
    for e in w.document.graph.edges:
        item = w.scene.edge_item(e)
        if item is not None and item.grad_text:
            out[f"{e.src}->{e.dst}"] = item.grad_text
    return out


def press_f10(w: MainWindow, qtbot, view: BackpropView, shift: bool = False) -> None:
    QTest.keyClick(w.view, Qt.Key_F10, Qt.ShiftModifier if shift else Qt.NoModifier)
    settle(qtbot, view)


def test_f10_walks_a_batch_forward_backward_and_updates_like_a_training_step(
        window, qtbot, tmp_path):
    w = window
    view = w.training_panel.backprop
    assert w.actionStep.shortcut().toString() == "F10"
    assert w.actionStepBack.shortcut().toString() == "Shift+F10"
    assert w.actionStep in w.train_menu.actions()
    analysis = w.document.analysis
    before = w.training.current_weights()
    press_f10(w, qtbot, view)
    assert view.state is not None, view.error
    assert w.training_panel.tabs.currentWidget() is view
    seen = []
    shot_taken = False
    while True:
        st = view.state
        seen.append((st.phase, ringed(w), labels(w)))
        if st.phase == "backward" and st.stage["node"] == "act" and not shot_taken:
            w.grab().save(str(tmp_path / "backprop.png"))
            shot_taken = True
            assert view.chain_box.isVisible() and view.chain_table.rowCount() >= 1
            assert "Tanh" not in view.chain_text.text()  # numbers, not type names
        if st.phase == "update":
            break
        press_f10(w, qtbot, view)
    plan = Network(analysis).plan
    fwd = [r[0][0] for p, r, _ in seen if p == "forward"]
    assert fwd == [s.node_id for s in plan.pre]
    assert all(r == [(r[0][0], "forward")] for p, r, _ in seen if p == "forward")
    bwd = [r[0][0] for p, r, _ in seen if p == "backward"]
    assert bwd == [s.node_id for s in reversed(plan.pre) if s.backward and s.feed is None]
    assert all(not lab for p, _, lab in seen if p in ("forward", "loss"))
    first_back = next(lab for p, _, lab in seen if p == "backward")
    assert set(first_back) == {"fc2->loss", "y->loss"}
    last = seen[-1][2]
    assert {"fc2->loss", "act->fc2", "fc1->act", "x->fc1"} <= set(last)
    assert last["x->fc1"] == "no ∇" and last["act->fc2"].startswith("∇ 0.")
    assert view.update_box.isVisible() and view.update_table.rowCount() == 4
    # the weights are those of one training step of the same batch
    after = w.training.current_weights()
    cfg = parse_training(w.document.graph.training)
    ref = Trainer(analysis, cfg, base_dir=tmp_path)
    batch = next(ref.train_set.batches(cfg.batch_size, cfg.shuffle, ref.data_rng))
    training_step(ref.net, ref.optimizer, batch, ref.config)
    expect = ref.net.state_dict()
    assert any(not np.array_equal(before[k], after[k]) for k in expect)
    for k, v in expect.items():
        assert np.array_equal(after[k], v), k
    # Shift+F10 takes the update back; F10, F10 ends the walk with the step taken
    press_f10(w, qtbot, view, shift=True)
    assert view.state.phase == "backward"
    for k, v in before.items():
        assert np.array_equal(w.training.current_weights()[k], v), k
    press_f10(w, qtbot, view)
    press_f10(w, qtbot, view)
    assert view.state is None and not ringed(w) and not labels(w)
    for k, v in expect.items():
        assert np.array_equal(w.training.current_weights()[k], v), k


def test_editing_the_graph_ends_the_walk(window, qtbot):
    w = window
    view = w.training_panel.backprop
    before = w.training.current_weights()
    w.step_backprop()
    settle(qtbot, view)
    assert view.state is not None, view.error
    assert w.training.current_weights().keys() == before.keys()
    for _ in range(3):
        w.step_backprop()
    settle(qtbot, view)
    assert view.state is not None and ringed(w)
    w.document.set_param("fc1", "units", 6)
    assert view.state is None and not ringed(w)
    assert "Press" in view.stats.text()
    w.document.undo_stack.undo()
    for k, v in w.training.current_weights().items():
        assert np.array_equal(v, before[k]), k  # abandoned before the update: unchanged


class _StubDoc(QObject):
    edited = Signal()
    analysis = None


class _StubController(QObject):
    state_changed = Signal(str)
    weights_reset = Signal()

    def __init__(self):
        super().__init__()
        self.document = _StubDoc()
        self.state = RUNNING
        self.scene = None
        self.asked = []

    def request_probe(self, name, on_done, on_error=None, **args):
        self.asked.append(args)
        return True


def test_a_running_graph_is_refused_with_a_message(qtbot):
    ctl = _StubController()
    view = BackpropView(ctl)
    qtbot.addWidget(view)
    with qtbot.waitSignal(view.message) as got:
        assert view.step() is False
    assert "Pause" in got.args[0] and not ctl.asked
    assert "Pause" in view.stats.text()
