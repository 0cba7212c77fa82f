"""Train > Compare... (gui/training/compare.py): the settings offered, "All optimizers", a
comparison trained live in processes of its own with its curves overlaid, a variant that
fails while the others finish, Stop all, and Train and Compare refusing each other.
pytest-qt, offscreen; tiny graphs on a tiny built-in dataset, a few steps each."""
from __future__ import annotations

import math

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from core.runs.store import RunStore
from gui.document import Document
from gui.training import TrainingController, TrainingPanel
from gui.training.compare import (
    FAILED,
    FINISHED,
    STOPPED,
    CompareController,
    CompareDialog,
    compare_settings,
)
from tests.graphs import build, edge, graph_dict, node

STEPS = 6


def tiny_dict(steps: int = STEPS, **top) -> dict:
    """x [2] -> fc1 Dense(8) -> ReLU -> drop1 Dropout -> fc2 Dense(2) -> cross-entropy, on
    64 xor samples."""
    d = graph_dict(
        [node("x", "Input", shape=[2]),
         node("fc1", "Dense", units=8),
         node("act1", "ReLU"),
         node("drop1", "Dropout", rate=0.0),
         node("fc2", "Dense", units=2),
         node("y", "Target", shape=[], dtype="int64"),
         node("loss", "CrossEntropyLoss")],
        [edge("x", "fc1"), edge("fc1", "act1"), edge("act1", "drop1"), edge("drop1", "fc2"),
         edge("fc2", "loss:pred"), edge("y", "loss:target")],
        name="tiny", **top)
    d["training"] = {"dataset": {"source": "builtin", "name": "xor", "n": 64},
                     "optimizer": {"type": "sgd", "lr": 0.1}, "batch_size": 16,
                     "steps": steps, "seed": 3}
    return d


class FakePlot:
    """Takes overlays as lossPlot and gradNormPlot do."""

    def __init__(self):
        self.overlays: list = []
        self.calls = 0

    def set_overlays(self, overlays):
        self.overlays = list(overlays)
        self.calls += 1


def make(qtbot, tmp_path, d: dict | None = None, plots=None):
    doc = Document()
    doc.graph.replace_with(build(d or tiny_dict()))
    training = TrainingController(doc)
    plots = plots if plots is not None else [FakePlot(), FakePlot()]
    ctl = CompareController(doc, run_dir=tmp_path / "runs", plots=plots, training=training)
    dlg = CompareDialog(ctl)
    qtbot.addWidget(dlg)
    return doc, training, ctl, dlg


def row_for(dlg: CompareDialog, key: str):
    return next(r for r in dlg.rows if r.key == key)


def test_lists_the_graphs_settings(qtbot, tmp_path):
    _, _, _, dlg = make(qtbot, tmp_path)
    keys = [dlg.rows[0].combo.itemData(i) for i in range(dlg.rows[0].combo.count())]
    for k in ("optimizer.type", "optimizer.lr", "batch_size", "regularization.l2",
              "regularization.l1", "clip.norm", "fc1.units", "drop1.rate"):
        assert k in keys
    assert not any(k.startswith(("x.", "y.")) for k in keys)  # data nodes are not compared
    settings = {s.key: s for s in compare_settings(build(tiny_dict()))}
    assert settings["optimizer.lr"].current == 0.1 and not settings["optimizer.lr"].choices
    assert "adam" in settings["optimizer.type"].choices
    assert settings["fc1.units"].current == 8
    # a choice parameter shows checkboxes instead of the values field
    row = dlg.rows[0]
    row.set_key("optimizer.type")
    assert row.values.isHidden() and not row.choices.isHidden()
    assert [b.text() for b in row.boxes][:2] == ["sgd", "momentum"]


def test_all_optimizers_fills_six(qtbot, tmp_path):
    _, _, _, dlg = make(qtbot, tmp_path)
    assert dlg.rows[0].key == "optimizer.lr"
    qtbot.mouseClick(dlg.all_optimizers, Qt.LeftButton)
    row = row_for(dlg, "optimizer.type")
    key, values = row.chosen()
    assert values == ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"]
    assert dlg.sets() == [("optimizer.type", values)]
    assert dlg.count.text() == "6 variants"


def test_prefills_from_the_graphs_compare_object(qtbot, tmp_path):
    d = tiny_dict()
    d["compare"] = {"set": {"optimizer.type": ["sgd", "adam"], "optimizer.lr": [0.1, 0.01]},
                    "steps": 40, "finding": "Adam gets there first."}
    _, _, _, dlg = make(qtbot, tmp_path, d)
    assert dlg.sets() == [("optimizer.type", ["sgd", "adam"]), ("optimizer.lr", [0.1, 0.01])]
    assert dlg.length.value() == 40 and dlg.unit.currentText() == "steps"
    assert not dlg.finding.isHidden() and "Adam gets there first." in dlg.finding.text()
    assert dlg.count.text() == "4 variants"


def test_bad_values_text_is_refused_naming_the_setting(qtbot, tmp_path):
    _, _, ctl, dlg = make(qtbot, tmp_path)
    dlg.rows[0].values.setText("")
    assert not dlg.start()
    assert "optimizer.lr" in dlg.message.text() and not ctl.running
    dlg.rows[0].values.setText("0.1, [1")
    assert not dlg.start()
    assert "optimizer.lr" in dlg.message.text() and not ctl.running


def test_two_learning_rates_and_a_bad_one(qtbot, tmp_path):
    loss_plot, grad_plot = FakePlot(), FakePlot()
    doc, _, ctl, dlg = make(qtbot, tmp_path, plots=[loss_plot, grad_plot])
    dlg.rows[0].set_key("optimizer.lr")
    dlg.rows[0].values.setText("0.5, 0.05, -1")
    dlg.length.setValue(STEPS)
    dlg.unit.setCurrentText("steps")
    dlg.jobs.setValue(2)
    dlg.show()
    assert dlg.start(), dlg.message.text()
    assert ctl.running and doc.locked
    assert [v.state for v in ctl.variants] == ["queued"] * 3
    qtbot.waitUntil(lambda: any(v.steps for v in ctl.variants) or not ctl.running,
                    timeout=60_000)
    dlg.grab().save(str(tmp_path / "compare_shot.png"))  # mid-run, as the user sees it
    assert ctl.wait_idle(60)
    assert not doc.locked
    good, other, bad = ctl.variants
    assert good.state == FINISHED and other.state == FINISHED, (good.reason, other.reason)
    assert good.steps == other.steps == STEPS
    assert bad.state == FAILED
    assert "optimizer.lr" in bad.reason, bad.reason
    assert dlg.state_of(bad.label).startswith("failed: ")
    assert "optimizer.lr" in dlg.state_of(bad.label)
    assert dlg.state_of(good.label) == "finished"
    # two overlays, in different colours, named by their labels, in both plots
    for plot in (loss_plot, grad_plot):
        ovs = {o.label: o for o in plot.overlays}
        assert set(ovs) == {good.label, other.label}
        assert good.label != other.label and "0.5" in good.label and "0.05" in other.label
        assert QColor(ovs[good.label].color) != QColor(ovs[other.label].color)
        assert len(ovs[good.label].steps) == STEPS
    # the same start: the first step's loss is equal, the later ones are not
    a, b = good.step_events, other.step_events
    assert a[0].loss == pytest.approx(b[0].loss, rel=1e-6, abs=1e-7)
    assert a[-1].loss != pytest.approx(b[-1].loss, rel=1e-6)
    # the runs are in the store, one sweep, with their values and labels
    runs = {r.label: r for r in RunStore(tmp_path / "runs").list()}
    assert set(runs) == {good.label, other.label, bad.label}
    assert runs[good.label].status == "finished" and runs[bad.label].status == "failed"
    assert "optimizer.lr" in runs[bad.label].summary["error"]
    sweeps = {r.sweep["id"] for r in runs.values()}
    assert sweeps == {ctl.sweep_id}
    assert runs[good.label].sweep["values"] == {"optimizer.lr": 0.5}
    assert runs[good.label].summary["steps"] == STEPS
    steps, _ = runs[other.label].metrics()
    assert [s.loss for s in steps] == pytest.approx([e.loss for e in other.step_events])
    assert runs[good.label].weights() is not None
    assert "finished" in dlg.message.text() and "failed" in dlg.message.text()


def test_a_node_parameter_out_of_range_fails_alone(qtbot, tmp_path):
    _, _, ctl, dlg = make(qtbot, tmp_path)
    dlg.rows[0].set_key("drop1.rate")
    dlg.rows[0].values.setText("0.1, 1.5")
    assert dlg.start(), dlg.message.text()
    assert ctl.wait_idle(60)
    ok, bad = ctl.variants
    assert ok.state == FINISHED, ok.reason
    assert bad.state == FAILED and "drop1" in bad.reason and "rate" in bad.reason


def test_variants_that_do_not_fit_together_take_turns(qtbot, tmp_path, monkeypatch):
    """A budget that holds one variant but not two: they train one after the other,
    whatever the parallel jobs say."""
    from core import memory
    from core.readiness import analyze_for_training

    g = build(tiny_dict())
    one = memory.estimate(analyze_for_training(g), 16, {"type": "sgd", "lr": 0.1},
                          memory.dataset_samples(g.training["dataset"])).total
    monkeypatch.setenv(memory.ENV_VAR, str(int(one * 1.5)))
    _, _, ctl, _ = make(qtbot, tmp_path)
    most = []
    ctl.changed.connect(lambda: most.append(sum(v.state == "running" for v in ctl.variants)))
    ctl.start([("optimizer.lr", [0.1, 0.2, 0.3])], steps=STEPS, jobs=3)
    assert ctl.wait_idle(60)
    assert [v.state for v in ctl.variants] == [FINISHED] * 3
    assert max(most) == 1


def test_stop_all_stops_them(qtbot, tmp_path):
    d = tiny_dict(steps=1_000_000)
    _, _, ctl, dlg = make(qtbot, tmp_path, d)
    dlg.rows[0].values.setText("0.1, 0.01, 0.001")
    dlg.jobs.setValue(2)
    dlg.unit.setCurrentText("steps")
    dlg.length.setValue(1_000_000)
    assert dlg.start()
    qtbot.waitUntil(lambda: sum(v.steps > 0 for v in ctl.variants) >= 2, timeout=60_000)
    assert ctl.variants[2].state == "queued"  # two at a time
    assert dlg.stop_button.isEnabled()
    qtbot.mouseClick(dlg.stop_button, Qt.LeftButton)
    assert ctl.wait_idle(30)
    assert [v.state for v in ctl.variants] == [STOPPED] * 3
    assert all(0 < v.steps < 1_000_000 for v in ctl.variants[:2])
    assert ctl.variants[2].steps == 0
    runs = RunStore(tmp_path / "runs").list()
    assert sorted(r.status for r in runs) == ["stopped", "stopped"]  # the queued one never ran
    assert dlg.start_button.isEnabled() and not dlg.stop_button.isEnabled()


def test_closing_the_dialog_asks_and_stops(qtbot, tmp_path):
    _, _, ctl, dlg = make(qtbot, tmp_path, tiny_dict(steps=1_000_000))
    dlg.length.setValue(1_000_000)
    dlg.rows[0].values.setText("0.1")
    dlg.show()
    assert dlg.start()
    asked = []
    dlg.confirm_stop = lambda q: asked.append(q) or False
    dlg.close()
    assert asked and dlg.isVisible() and ctl.running  # "no": it goes on
    dlg.confirm_stop = lambda q: asked.append(q) or True
    dlg.close()
    assert not dlg.isVisible()
    assert ctl.wait_idle(30)
    assert ctl.variants[0].state == STOPPED


def test_train_and_compare_refuse_each_other(qtbot, tmp_path):
    from gui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.document.graph.replace_with(build(tiny_dict(steps=1_000_000)))
    assert w.findChild(type(w.actionTrain), "actionCompare") is w.actionCompare
    assert w.actionCompare in w.train_menu.actions()
    w.actionCompare.trigger()
    dlg = w.compare_dialog
    assert dlg.objectName() == "compareDialog" and dlg.isVisible()
    dlg.rows[0].values.setText("0.1")
    dlg.length.setValue(1_000_000)
    assert dlg.start(), dlg.message.text()
    assert not w.request_train()
    assert "compar" in w.statusBar().currentMessage().lower()
    qtbot.waitUntil(lambda: w.compare.variants[0].steps > 0, timeout=60_000)
    w.compare.stop_all()
    assert w.compare.wait_idle(30)
    # the run is in the history, its curve still drawn
    label = w.compare.variants[0].label
    assert [row[1] for row in w.training_panel.runs.row_texts()] == [label]
    assert w.training_panel.plot("loss").overlay_labels() == [label]
    # and the other way round
    assert w.request_train()
    assert not dlg.start()
    assert "training" in dlg.message.text()
    w.training.stop()
    assert w.training.wait_idle(30)
    w.compare_dialog.close()
    w.training.shutdown()


def test_the_plots_take_the_overlays(qtbot, tmp_path):
    """With the real lossPlot and gradNormPlot: each variant's curve is there, named."""
    doc = Document()
    doc.graph.replace_with(build(tiny_dict()))
    training = TrainingController(doc)
    panel = TrainingPanel(training)
    qtbot.addWidget(panel)
    loss, grads = panel.plot("loss"), panel.plot("grad")
    ctl = CompareController(doc, run_dir=False, plots=[loss, grads])
    ctl.start([("optimizer.lr", [0.3, 0.03])], steps=STEPS, jobs=2)
    assert ctl.wait_idle(60)
    labels = [v.label for v in ctl.variants]
    assert loss.overlay_labels() == labels
    assert [ov.label for ov in grads.overlays] == labels
    assert all(math.isfinite(v.loss) for v in ctl.variants)
