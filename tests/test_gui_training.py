"""Live training in the editor (gui/training): controls and threading, the plots, gradient
heat, non-finite values, histograms, weights, evaluation and export. pytest-qt, offscreen.

The canvas scene and the problems panel are small fakes that record calls, so these tests
depend only on the API the training view calls (set_heat, set_badges, highlight_node,
clear_highlight, set_runtime_problems, clear_runtime_problems)."""
from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtGui import QAction, QColor
from PySide6.QtWidgets import QStatusBar

from core.errors import WeightsError
from core.remote import RemoteError
from core.training import StepEvent
from core.weights import load_weights
from gui.document import Document, EditLockedError
from gui.training import (
    EXPLODING,
    VANISHING,
    TrainingController,
    TrainingPanel,
    attach,
)
from gui.training.heat import badge_for, heat_color, layer_grad_norms, scale_position
from gui.training.histograms import histogram
from kernels import jit

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


class FakeScene:
    def __init__(self):
        self.calls: list[tuple] = []
        self.heat = None
        self.badges = None

    def set_heat(self, colors):
        self.calls.append(("set_heat", colors))
        self.heat = colors

    def set_badges(self, badges):
        self.calls.append(("set_badges", badges))
        self.badges = badges

    def highlight_node(self, node_id, message):
        self.calls.append(("highlight_node", node_id, message))

    def clear_highlight(self):
        self.calls.append(("clear_highlight",))

    def named(self, name):
        return [c for c in self.calls if c[0] == name]


class FakeProblems:
    def __init__(self):
        self.runtime: list = []
        self.cleared = 0

    def set_runtime_problems(self, problems):
        self.runtime = list(problems)

    def clear_runtime_problems(self):
        self.runtime = []
        self.cleared += 1


def open_doc(path: Path = MLP, training: dict | None = None, tmp: Path | None = None
             ) -> Document:
    doc = Document()
    if training is not None:  # a copy of the graph with other training settings
        d = json.loads(path.read_text())
        d["training"].update(training)
        path = tmp / path.name
        path.write_text(json.dumps(d))
    doc.open(path)
    return doc


_controllers: list[TrainingController] = []


@pytest.fixture(autouse=True)
def _end_training_processes():
    """Every controller a test made ends its training process (a run, or the one that
    holds the weights after it) when the test does."""
    yield
    while _controllers:
        _controllers.pop().shutdown()


def rig(qtbot, doc: Document | None = None, **overrides):
    """(controller, panel, scene, problems) on the MLP digits example (CPU)."""
    overrides.setdefault("device", "cpu")
    doc = doc or open_doc()
    ctl = TrainingController(doc, **overrides)
    _controllers.append(ctl)
    panel = TrainingPanel(ctl)
    qtbot.addWidget(panel)
    scene, problems = FakeScene(), FakeProblems()
    attach(ctl, panel, scene=scene, problems=problems)
    return ctl, panel, scene, problems


def finish(qtbot, ctl: TrainingController, timeout: float = 20.0) -> None:
    qtbot.waitUntil(lambda: ctl.state == "idle", timeout=int(timeout * 1000))


def steps_seen(panel: TrainingPanel) -> int:
    return panel.loss.steps.n


# ---- a whole run -------------------------------------------------------------------------
def test_a_small_example_trains_to_completion_and_both_plots_hold_data(qtbot):
    ctl, panel, scene, problems = rig(qtbot, epochs=2)
    panel.show()
    finished = []
    ctl.finished.connect(finished.append)
    assert ctl.start()
    finish(qtbot, ctl)
    done = finished[-1]
    assert done.reason == "finished" and done.error is None
    total = ctl.info.total_steps
    panel.refresh()  # a plot in a background tab is redrawn when it is shown

    assert done.steps == total == 2 * ctl.info.steps_per_epoch

    loss_plot = panel.findChild(object, "lossPlot")
    grad_plot = panel.findChild(object, "gradNormPlot")
    progress = panel.findChild(object, "trainProgress")
    assert loss_plot is panel.loss and grad_plot is panel.grads.plot
    x, y = loss_plot.raw.getData()
    assert len(x) == total and np.all(np.isfinite(y))
    assert loss_plot.smooth.getData()[1][-1] < loss_plot.smooth.getData()[1][0]  # it learns
    assert len(loss_plot.val.getData()[0]) == 2  # validation loss per epoch
    assert len(loss_plot.val_acc.getData()[0]) == 2  # a classifier: accuracy too
    assert loss_plot.plotItem.getAxis("right").isVisible()
    assert set(grad_plot.curves) == {"global", "fc1", "fc2"}
    for c in grad_plot.curves.values():
        gy = c.yData  # (getData gives log10 on a log axis)
        assert len(gy) == total and np.all(gy > 0)
    assert grad_plot.plotItem.ctrl.logYCheck.isChecked()  # log scale
    assert progress.value() == progress.maximum() == total
    assert "step 46/46" in progress.format() and "done" in progress.format()
    assert ctl.status_text.startswith("CPU")
    # the heat reached the canvas: every layer with parameters has a colour
    assert scene.heat is not None and set(scene.heat) == {"fc1", "fc2"}
    assert all(isinstance(c, QColor) for c in scene.heat.values())
    assert scene.badges == {}  # healthy gradients: no badge
    assert problems.runtime == []


def test_the_document_is_locked_while_training_and_unlocked_after(qtbot):
    doc = open_doc()
    ctl, panel, _, _ = rig(qtbot, doc, epochs=50)
    states = []
    doc.locked_changed.connect(states.append)
    ctl.start()
    assert doc.locked and not panel.lock_label.isHidden()
    with pytest.raises(EditLockedError):
        doc.set_param("fc1", "units", 7)
    qtbot.waitUntil(lambda: steps_seen(panel) > 0, timeout=10000)
    ctl.stop()
    finish(qtbot, ctl)
    assert not doc.locked and panel.lock_label.isHidden()
    assert states == [True, False]
    doc.set_param("fc1", "units", 7)  # editable again


def test_training_runs_in_a_process_of_its_own(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=500)
    ctl.start()
    qtbot.waitUntil(lambda: steps_seen(panel) > 0, timeout=10000)
    proc = ctl.trainer
    assert ctl.info.pid == proc.pid != os.getpid() and proc.alive
    ctl.stop()
    finish(qtbot, ctl)
    assert proc.alive  # it stays after the run, holding the weights for a look inside
    ctl.shutdown()
    assert not proc.alive and ctl.trainer is None


def test_a_crashed_training_process_ends_the_run_with_a_message(qtbot, monkeypatch):
    ctl, panel, _, problems = rig(qtbot, epochs=500)
    failed = []
    ctl.failed.connect(lambda node, msg: failed.append(msg))
    ctl.start()
    qtbot.waitUntil(lambda: steps_seen(panel) > 0, timeout=10000)
    os.kill(ctl.trainer.pid, signal.SIGKILL)
    finish(qtbot, ctl, timeout=5)
    assert ctl.last_done.reason == "error" and not ctl.document.locked
    assert failed and "ended unexpectedly" in failed[-1]
    assert steps_seen(panel) > 0  # what was plotted stays
    for ask in (ctl.evaluate, ctl.current_weights):  # the weights went with it: said, typed
        with pytest.raises(RemoteError, match="has ended"):
            ask()
    boxes = []
    monkeypatch.setattr("gui.training.panel.QMessageBox.warning",
                        lambda parent, title, text: boxes.append((title, text)))
    panel.evaluate_button.click()  # the button does not wait: the answer comes as a message
    qtbot.waitUntil(lambda: bool(boxes), timeout=5000)
    assert boxes[-1][0] == "Evaluate" and "has ended" in boxes[-1][1]
    assert ctl.start()  # the next run starts fresh
    qtbot.waitUntil(lambda: ctl.info is not None and ctl.info.step_offset == 0, timeout=10000)
    ctl.stop()
    finish(qtbot, ctl)


def test_actions_follow_the_state(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=200)
    train, pause, stop = QAction("Train"), QAction("Pause"), QAction("Stop")
    attach(ctl, panel, train=train, pause=pause, stop=stop)
    assert train.isEnabled() and not pause.isEnabled() and not stop.isEnabled()
    train.trigger()
    assert ctl.state == "running" and not train.isEnabled() and stop.isEnabled()
    pause.trigger()  # checkable: checked = paused
    assert ctl.state == "paused" and pause.isChecked() and train.isEnabled()
    train.trigger()  # Train on a paused run resumes it
    assert ctl.state == "running" and not pause.isChecked()
    stop.trigger()
    finish(qtbot, ctl)
    assert train.isEnabled() and not stop.isEnabled() and not pause.isEnabled()


# ---- pause, resume, stop -------------------------------------------------------------------
def test_pause_and_resume(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=500)
    ctl.start()
    qtbot.waitUntil(lambda: steps_seen(panel) > 5, timeout=10000)
    ctl.pause()
    assert ctl.state == "paused"
    qtbot.wait(300)  # events of the step in flight arrive
    frozen = ctl.trainer.step
    qtbot.wait(300)
    assert ctl.trainer.step == frozen  # nothing moves while paused
    assert steps_seen(panel) == frozen
    ctl.resume()
    assert ctl.state == "running"
    qtbot.waitUntil(lambda: steps_seen(panel) > frozen + 5, timeout=10000)
    ctl.stop()
    finish(qtbot, ctl)
    # the curve has no gap or repeat across the pause
    x = panel.loss.steps.data
    assert np.array_equal(x, np.arange(1, len(x) + 1))


def test_stop_mid_run_takes_effect_within_a_second(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=500)
    finished = []
    ctl.finished.connect(lambda d: finished.append((time.monotonic(), d)))
    ctl.start()
    qtbot.waitUntil(lambda: steps_seen(panel) > 10, timeout=10000)
    t0 = time.monotonic()
    ctl.stop()
    assert ctl.state == "stopping"
    finish(qtbot, ctl, timeout=5)
    t_done, done = finished[-1]
    print(f"\nstop took {1000 * (t_done - t0):.0f} ms")
    assert t_done - t0 < 1.0
    assert done.reason == "stopped" and done.steps < ctl.info.total_steps
    assert ctl.trainer.done is done


def test_stop_while_paused(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=500)
    ctl.start()
    qtbot.waitUntil(lambda: steps_seen(panel) > 0, timeout=10000)
    ctl.pause()
    t0 = time.monotonic()
    ctl.stop()
    finish(qtbot, ctl, timeout=5)
    assert time.monotonic() - t0 < 1.0
    assert ctl.last_done.reason == "stopped"


# ---- non-finite values ----------------------------------------------------------------------
def test_a_nan_highlights_the_culprit_and_names_it_in_problems(qtbot, tmp_path):
    doc = open_doc(training={"optimizer": {"type": "sgd", "lr": 1e30}}, tmp=tmp_path)
    ctl, panel, scene, problems = rig(qtbot, doc, epochs=5)
    failed = []
    ctl.failed.connect(lambda node, msg: failed.append((node, msg)))
    ctl.start()
    finish(qtbot, ctl)
    done = ctl.last_done
    assert done.reason == "error" and done.steps < ctl.info.total_steps
    node = done.error.node
    assert node in doc.graph.nodes
    highlights = scene.named("highlight_node")
    assert highlights and highlights[-1][1] == node and "NaN" in highlights[-1][2]
    assert problems.runtime and problems.runtime[0][0] == node
    assert failed and failed[-1][0] == node
    assert not doc.locked
    # a new run clears the marks first
    n = len(scene.named("clear_highlight"))
    ctl.start()
    assert problems.cleared >= 1 and len(scene.named("clear_highlight")) > n
    finish(qtbot, ctl)


def test_a_missing_dataset_fails_the_start_with_the_file_named(qtbot, tmp_path):
    doc = open_doc(training={"dataset": {"source": "npz", "path": "gone.npz"}}, tmp=tmp_path)
    ctl, panel, _, problems = rig(qtbot, doc)
    assert ctl.start()  # the settings are well-formed; the child finds no file
    assert ctl.building and panel.progress.maximum() == 0  # busy while it loads
    finish(qtbot, ctl)
    assert ctl.last_done.reason == "error" and not doc.locked and not ctl.building
    assert problems.runtime and "gone.npz" in problems.runtime[0][1]
    assert panel.progress.maximum() == 1 and "could not start" in panel.progress.format()


def test_invalid_training_settings_fail_without_locking(qtbot, tmp_path):
    doc = open_doc(training={"batch_size": 0}, tmp=tmp_path)
    ctl, _, _, problems = rig(qtbot, doc)
    failed = []
    ctl.failed.connect(lambda node, msg: failed.append(msg))
    assert not ctl.start()
    assert ctl.state == "idle" and not doc.locked
    assert "batch_size" in failed[-1] and "batch_size" in problems.runtime[0][1]


# ---- responsiveness and speed ------------------------------------------------------------
def test_event_loop_keeps_running_while_training(qtbot):
    """A 10 ms heartbeat on the UI thread while the MLP trains with the panel shown; the
    longest gap is reported, not asserted (it depends on the machine)."""
    from PySide6.QtCore import QTimer

    ctl, panel, _, _ = rig(qtbot, epochs=60)
    panel.resize(900, 600)
    panel.show()
    beats: list[float] = []
    hb = QTimer()
    hb.setInterval(10)
    hb.timeout.connect(lambda: beats.append(time.monotonic()))
    hb.start()
    qtbot.wait(100)
    n_before = len(beats)
    t0 = time.monotonic()
    ctl.start()
    finish(qtbot, ctl, timeout=60)
    t1 = time.monotonic()
    hb.stop()
    during = [b for b in beats if t0 <= b <= t1]
    gaps = np.diff([t0] + during + [t1])
    longest = 1000 * float(gaps.max())
    steps = ctl.last_done.steps
    print(f"\nevent-loop stall: longest gap {longest:.1f} ms over {t1 - t0:.2f} s "
          f"({len(during)} beats, {steps} steps, {ctl.steps_per_second:.0f} steps/s)")
    assert n_before > 0
    assert len(during) >= 0.25 * (t1 - t0) / 0.010  # the heartbeat kept beating
    assert ctl.last_done.reason == "finished"


# ---- looking inside ---------------------------------------------------------------------
def test_histograms_appear_for_a_selected_node(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    panel.show_node("fc1")  # before training: nothing to show yet
    assert "train" in panel.hist.title.text()
    ctl.start()
    finish(qtbot, ctl)
    panel.show_node("fc1")
    qtbot.waitUntil(lambda: bool(panel.hist.counts["weights"]), timeout=5000)
    counts = panel.hist.counts
    assert counts["weights"] == {"fc1/W": 64 * 128, "fc1/b": 128}
    assert counts["grads"] == {"fc1/W": 64 * 128, "fc1/b": 128}
    batch = ctl.trainer.snapshot(["x"]).result(5).activations["x"].shape[0]  # the last batch
    assert counts["activations"] == {"fc1": batch * 128}
    for kind in ("weights", "grads", "activations"):
        assert panel.hist.plots[kind].plotItem.listDataItems()
    panel.show_node("act1")  # no parameters, but activations
    qtbot.waitUntil(lambda: bool(panel.hist.node == "act1" and panel.hist.counts["activations"]),
                    timeout=5000)
    assert panel.hist.counts["weights"] == {}
    assert "no parameters" in panel.hist.title.text()


def test_histograms_while_paused_come_from_between_steps(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=500)
    selection = []
    ctl.start()
    qtbot.waitUntil(lambda: steps_seen(panel) > 3, timeout=10000)
    ctl.pause()
    panel.node_shown.connect(selection.append)
    panel.show_node("fc2")
    qtbot.waitUntil(lambda: bool(panel.hist.counts["weights"]), timeout=5000)
    assert panel.hist.counts["weights"] == {"fc2/W": 128 * 10, "fc2/b": 10}
    assert panel.hist.step == ctl.trainer.step
    assert selection == ["fc2"]
    ctl.stop()
    finish(qtbot, ctl)


def test_selection_signal_drives_the_histograms(qtbot):
    from PySide6.QtCore import QObject, Signal

    class Scene(QObject):
        selection_ids_changed = Signal(list)

    ctl, panel, _, _ = rig(qtbot)
    scene = Scene()
    attach(ctl, panel, selection=scene.selection_ids_changed)
    scene.selection_ids_changed.emit(["fc2"])
    assert panel.node == "fc2"
    scene.selection_ids_changed.emit([])
    assert panel.node is None


def test_histogram_of_constant_values():
    edges, counts = histogram(np.zeros(10))
    assert counts.sum() == 10 and edges[0] < 0 < edges[-1]
    assert histogram(np.array([np.nan])) is None


# ---- weights, evaluation, export ------------------------------------------------------------
def test_the_weights_menu_saves_loads_and_resets_and_waits_for_a_run(qtbot, tmp_path,
                                                                      monkeypatch):
    from PySide6.QtWidgets import QFileDialog
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    menu = panel.weights_button.menu()
    assert [a.text() for a in menu.actions() if not a.isSeparator()] == \
        ["Save weights…", "Load weights…", "Reset weights"]
    ctl.start()
    assert not panel.load_action.isEnabled() and not panel.reset_action.isEnabled()
    finish(qtbot, ctl)
    assert panel.load_action.isEnabled() and panel.reset_action.isEnabled()
    trained = ctl.current_weights()
    path = tmp_path / "menu.npz"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    panel.save_action.trigger()
    np.testing.assert_array_equal(load_weights(path)["fc1/W"], trained["fc1/W"])
    panel.reset_action.trigger()
    assert not np.array_equal(ctl.current_weights()["fc1/W"], trained["fc1/W"])
    panel.load_action.trigger()
    np.testing.assert_array_equal(ctl.current_weights()["fc1/W"], trained["fc1/W"])


def test_save_reset_and_load_weights(qtbot, tmp_path):
    ctl, panel, scene, _ = rig(qtbot, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    trained = ctl.current_weights()
    path = tmp_path / "w.npz"
    ctl.save_weights(path)
    saved = load_weights(path)
    assert set(saved) == {"fc1/W", "fc1/b", "fc2/W", "fc2/b"}
    np.testing.assert_array_equal(saved["fc1/W"], trained["fc1/W"])

    assert ctl.reset_weights()
    assert scene.heat is None and scene.badges is None  # the tint clears
    assert not panel.loss.has_data() and not panel.grads.plot.has_data()
    fresh = ctl.current_weights()
    assert not np.array_equal(fresh["fc1/W"], trained["fc1/W"])

    ctl.load_weights(path)
    np.testing.assert_array_equal(ctl.current_weights()["fc1/W"], trained["fc1/W"])
    report = ctl.evaluate()  # evaluates the loaded weights without training
    assert report is not None and report.confusion.shape == (10, 10)

    bad = tmp_path / "bad.npz"
    np.savez(bad, **{k: v for k, v in saved.items() if k != "fc2/b"})
    with pytest.raises(WeightsError, match="fc2/b"):
        ctl.load_weights(bad)


def test_evaluating_before_training_does_not_pass_for_a_trained_run(qtbot):
    ctl, _, _, _ = rig(qtbot, epochs=1)
    assert ctl.evaluate() is not None  # a process that holds the initial weights
    ctl.start()
    finish(qtbot, ctl)
    assert ctl.info.step_offset == 0 and ctl.info.kept_weights is None


def test_train_again_continues_from_the_trained_weights(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    first = ctl.info.total_steps
    end_loss = panel.loss.smoothed.data[-1]
    ctl.start()
    finish(qtbot, ctl)
    assert ctl.info.step_offset == first
    x = panel.loss.steps.data
    assert np.array_equal(x, np.arange(1, 2 * first + 1))  # the curve continues
    assert panel.loss.losses.data[first:].mean() < end_loss * 1.5


def test_the_evaluate_button_does_not_wait_for_the_report(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    panel.evaluate_button.setEnabled(True)
    panel.evaluate_button.click()  # before any training: a process loads the data first
    assert "Evaluating" in panel.eval_view.summary.text()  # returned before the report came
    assert panel.tabs.currentWidget() is panel.eval_view
    qtbot.waitUntil(lambda: "accuracy" in panel.eval_view.summary.text(), timeout=20000)
    assert panel.eval_view.image.image is not None


def test_evaluate_gives_accuracy_and_a_confusion_matrix(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=3)
    ctl.start()
    finish(qtbot, ctl)
    reports = []
    ctl.evaluated.connect(reports.append)
    rep = ctl.evaluate()
    assert reports == [rep]
    # the same report as an in-process trainer gives on the same weights
    from core.training import Trainer, parse_training
    local = Trainer(ctl.document.analysis, parse_training(ctl.document.graph.training,
                                                          device="cpu"),
                    base_dir=Path(ctl.document.path).parent,
                    init_weights=ctl.current_weights())
    want = local.classification_report()
    assert rep.confusion.sum() == len(local.val_set)
    np.testing.assert_array_equal(rep.confusion, want.confusion)
    assert rep.accuracy == want.accuracy
    assert 0.5 < rep.accuracy <= 1.0
    assert "accuracy" in panel.eval_view.summary.text()
    assert panel.eval_view.image.image is not None


def test_export_png_and_csv(qtbot, tmp_path):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    panel.resize(800, 500)
    panel.show()
    ctl.start()
    finish(qtbot, ctl)
    for which in ("loss", "grad"):
        png = tmp_path / f"{which}.png"
        panel.export_png(which, png)
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        csv = tmp_path / f"{which}.csv"
        panel.export_csv(which, csv)
        lines = csv.read_text().splitlines()
        assert len(lines) == 1 + ctl.info.total_steps
    head = (tmp_path / "loss.csv").read_text().splitlines()
    assert head[0].startswith("step,epoch,loss,loss_smoothed,train_loss,val_loss")
    last = head[-1].split(",")
    assert last[0] == str(ctl.info.total_steps) and last[5] != ""  # epoch metrics filled
    assert (tmp_path / "grad.csv").read_text().splitlines()[0] == "step,global,fc1,fc2"


def test_layers_can_be_hidden(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    panel.refresh()
    panel.grads.set_layer_visible("fc1", False)
    assert not panel.grads.plot.curves["fc1"].isVisible()
    assert panel.grads.plot.curves["fc2"].isVisible()
    panel.grads.set_layer_visible("fc1", True)
    assert panel.grads.plot.curves["fc1"].isVisible()


def test_status_bar_shows_device_and_speed(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=20)
    bar = QStatusBar()
    qtbot.addWidget(bar)
    label = attach(ctl, panel, status_bar=bar)
    texts = []
    ctl.status_text_changed.connect(texts.append)
    ctl.start()
    finish(qtbot, ctl)
    assert any("steps/s" in t and t.startswith("CPU") for t in texts), texts
    assert label.text().startswith("CPU")


@pytest.mark.skipif(not jit._numba_importable(), reason="numba is not installed")
def test_a_first_step_that_waits_for_the_kernels_to_compile_says_so(qtbot, tmp_path,
                                                                      monkeypatch):
    """With an empty kernel cache (as after an install) the first step waits seconds for
    numba: the status bar says why instead of a bare "running"; with the cache filled, a
    second run says nothing of it."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "kernels"))  # the child's cache
    monkeypatch.delenv(jit.ENV_VAR, raising=False)  # the kernels on, in the child too
    texts: list[str] = []
    for run in range(2):
        ctl, panel, _, _ = rig(qtbot, steps=3)
        bar = QStatusBar()
        qtbot.addWidget(bar)
        label = attach(ctl, panel, status_bar=bar)
        seen = len(texts)
        ctl.status_text_changed.connect(texts.append)
        ctl.start()
        if run == 0:
            qtbot.waitUntil(lambda lb=label: jit.COMPILING in lb.text(), timeout=30000)
            assert label.text() == f"CPU · running: {jit.COMPILING}"
        finish(qtbot, ctl, timeout=60)
        assert jit.COMPILING not in label.text()  # steps came: the note is over
        assert any(jit.COMPILING in t for t in texts[seen:]) == (run == 0), texts


# ---- recurrent graphs -------------------------------------------------------------------
def test_recurrent_graph_shows_the_gradient_at_each_time_step(qtbot, tmp_path):
    d = {"format": "neurocanvas.graph", "version": 1, "name": "rnn",
         "nodes": [{"id": "x", "type": "Input", "params": {"shape": [12, 1]}, "pos": [0, 0]},
                   {"id": "rnn", "type": "RNN", "params": {"units": 8}, "pos": [1, 0]},
                   {"id": "fc", "type": "Dense", "params": {"units": 3}, "pos": [2, 0]},
                   {"id": "y", "type": "Target", "params": {"shape": []}, "pos": [2, 1]},
                   {"id": "loss", "type": "CrossEntropyLoss", "params": {}, "pos": [3, 0]}],
         "edges": [{"from": "x", "to": "rnn"}, {"from": "rnn", "to": "fc"},
                   {"from": "fc", "to": "loss:pred"}, {"from": "y", "to": "loss:target"}],
         "training": {"dataset": {"source": "builtin", "name": "sequences", "n": 120,
                                  "steps": 12},
                      "validation_split": 0.25, "optimizer": {"type": "adam", "lr": 0.01},
                      "batch_size": 30, "epochs": 2}}
    path = tmp_path / "rnn.ncg.json"
    path.write_text(json.dumps(d))
    doc = Document()
    doc.open(path)
    ctl, panel, _, _ = rig(qtbot, doc)
    ctl.start()
    finish(qtbot, ctl)
    assert ctl.last_done.reason == "finished", ctl.last_done
    sp = panel.findChild(object, "stateGradPlot")
    assert sp is panel.grads.state_plot and not sp.isHidden()
    assert "rnn" in sp.curves
    panel.refresh()
    y = sp.curves["rnn"].yData
    assert len(y) == 12 and np.all(y > 0)


# ---- gradient heat ----------------------------------------------------------------------
def test_layer_grad_norms_combine_parameters_and_follow_sharing():
    norms = layer_grad_norms({"a/W": 3.0, "a/b": 4.0, "c/W": 1.0}, {"d": "a", "a": "a"})
    assert norms["a"] == pytest.approx(5.0) and norms["c"] == 1.0 and norms["d"] == 5.0


def test_badges_mark_vanishing_and_exploding_gradients():
    assert badge_for(1e-8)[0].startswith("vanishing")
    assert badge_for(VANISHING * 2) is None and badge_for(1.0) is None
    assert badge_for(EXPLODING * 2)[0].startswith("exploding")
    assert badge_for(math.inf)[0].startswith("exploding")
    assert badge_for(EXPLODING / 2) is None


def test_heat_colours_follow_a_log_scale():
    assert scale_position(1e-8) == 0.0 and scale_position(1e4) == 1.0
    assert scale_position(1.0) == pytest.approx(8 / 12)
    assert scale_position(0.0) == 0.0 and scale_position(1e9) == 1.0
    blue, red = heat_color(1e-8), heat_color(1e4)
    assert blue.blue() > blue.red() and red.red() > red.blue()


def test_heat_badges_a_vanishing_layer(qtbot):
    ctl = TrainingController(open_doc())
    scene = FakeScene()
    ctl.set_scene(scene)
    ctl.heat.update_norms({"fc1/W": 1e-9, "fc2/W": 5e3, "fc2/b": 0.0}, force=True)
    assert set(scene.badges) == {"fc1", "fc2"}
    assert scene.badges["fc1"][0].startswith("vanishing")
    assert scene.badges["fc2"][0].startswith("exploding")
    ctl.heat.clear()
    assert scene.heat is None and scene.badges is None


def test_step_events_in_one_tick_arrive_as_one_batch(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=3)
    batches: list[list[StepEvent]] = []
    ctl.steps_batch.connect(batches.append)
    ctl.start()
    finish(qtbot, ctl)
    steps = [e.step for b in batches for e in b]
    assert steps == list(range(ctl.info.total_steps))
    assert len(batches) < len(steps)  # batched, not one signal per step


# ---- the training workspace ---------------------------------------------------------------
TWO_RNNS = ROOT / "resources" / "examples" / "vanishing_gradients.ncg.json"


def main_window(qtbot, path: Path = MLP, **overrides):
    """The editor at 1400x900 with ``path`` open, its training settings overridden."""
    from gui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    _controllers.append(w.training)
    w.training.overrides.update(device="cpu", **overrides)
    w.resize(1400, 900)
    w.show()
    qtbot.waitExposed(w)
    qtbot.wait(50)  # the window's first turns of the event loop: its first arrangement
    w.open_file(path)
    return w


def no_overlap(widget_a, widget_b) -> bool:
    """The two widgets' rectangles on screen do not intersect."""
    from PySide6.QtCore import QRect
    ra = QRect(widget_a.mapToGlobal(widget_a.rect().topLeft()), widget_a.size())
    rb = QRect(widget_b.mapToGlobal(widget_b.rect().topLeft()), widget_b.size())
    return not ra.intersects(rb)


def label_rects(plot, side: str) -> list:
    """Where an axis of ``plot`` draws its tick labels, as pyqtgraph lays them out."""
    from PySide6.QtGui import QImage, QPainter
    axis = plot.plotItem.getAxis(side)
    img = QImage(10, 10, QImage.Format.Format_ARGB32)
    p = QPainter(img)
    try:
        specs = axis.generateDrawSpecs(p)
    finally:
        p.end()
    return [spec[0] for spec in specs[2]] if specs else []


def assert_labels_apart(plot, side: str) -> None:
    rects = label_rects(plot, side)
    for i, a in enumerate(rects):
        for b in rects[i + 1:]:
            assert not a.intersects(b), (plot.objectName(), side, a, b)


def test_while_training_the_plots_get_most_of_a_1400x900_window(qtbot):
    w = main_window(qtbot, epochs=3)
    panel = w.training_panel
    assert w.dock_layout == "editing" and w.palette_dock.isVisible()
    w.train()
    qtbot.waitUntil(lambda: steps_seen(panel) > 0, timeout=20000)
    assert w.dock_layout == "training" and w.actionTrainingLayout.isChecked()
    loss, grad = w.findChild(object, "lossPlot"), w.findChild(object, "gradNormPlot")
    qtbot.waitUntil(lambda: loss.height() >= 250, timeout=5000)
    print(f"\nlossPlot {loss.width()}x{loss.height()}, gradNormPlot "
          f"{grad.width()}x{grad.height()}, canvas {w.view.width()}x{w.view.height()}")
    assert loss.isVisible() and grad.isVisible()  # both at once, on one page
    assert loss.height() >= 250 and grad.height() >= 250
    assert loss.width() >= 600 and grad.width() >= 600
    assert w.view.isVisible() and w.view.height() >= 100  # the canvas and its heat stay
    # legends beside the plots, none over a curve
    for plot, legend in ((loss, "lossLegend"), (grad, "gradLayers")):
        assert plot.plotItem.legend is None
        lst = w.findChild(object, legend)
        assert lst.isVisible() and no_overlap(plot, lst)
    finish(qtbot, w.training, timeout=60)
    # the confusion matrix: its own page, filling it, classes 0..9 on both axes
    panel.evaluate_button.click()
    qtbot.waitUntil(lambda: panel.eval_view.report is not None, timeout=20000)
    cm = w.findChild(object, "confusionMatrix")
    assert cm.isVisible() and cm.height() >= 200 and cm.width() >= 200
    vb = cm.plotItem.vb
    assert vb.viewRange() == [[0, 10], [0, 10]]
    rect = panel.eval_view.image.mapRectToView(panel.eval_view.image.boundingRect())
    assert (rect.left(), rect.top(), rect.width(), rect.height()) == (0, 0, 10, 10)
    for side in ("bottom", "left"):
        ticks = cm.plotItem.getAxis(side)._tickLevels[0]
        assert [t for _, t in ticks] == [str(i) for i in range(10)]
        assert [v for v, _ in ticks] == [i + 0.5 for i in range(10)]  # mid-cell
        assert_labels_apart(cm, side)


def test_a_recurrent_graph_shows_its_time_step_plot_beside_the_gradients(qtbot):
    w = main_window(qtbot, TWO_RNNS, steps=40)
    panel = w.training_panel
    w.train()
    finish(qtbot, w.training, timeout=60)
    state = w.findChild(object, "stateGradPlot")
    grad = w.findChild(object, "gradNormPlot")
    qtbot.waitUntil(lambda: state.isVisible() and state.height() >= 200, timeout=5000)
    print(f"\nstateGradPlot {state.width()}x{state.height()}")
    assert state.width() >= 200 and state.height() >= 250 and grad.height() >= 250
    assert no_overlap(state, grad) and no_overlap(state, panel.grads.layer_list)
    from PySide6.QtWidgets import QSplitter
    parent = state.parentWidget()
    while parent is not None:  # not behind a splitter handle to find
        assert not isinstance(parent, QSplitter)
        parent = parent.parentWidget()
    assert set(state.curves) == {"rnn", "lstm"}
    assert state.plotItem.legend is None
    title = state.plotItem.titleLabel.text
    assert "rnn" in title and "lstm" in title  # its legend, in its title


def test_each_loss_of_a_graph_with_two_gets_its_own_curve_beside_their_sum(qtbot, tmp_path):
    doc = open_doc(TWO_RNNS)
    ctl, panel, _, _ = rig(qtbot, doc, steps=30)
    got: list = []
    ctl.steps_batch.connect(got.extend)
    epochs: list = []
    ctl.epoch_done.connect(epochs.append)
    ctl.start()
    finish(qtbot, ctl, timeout=60)
    assert ctl.info.losses == ["rnn_loss", "lstm_loss"] and ctl.info.classifiers == []
    plot = panel.loss
    assert list(plot.per_loss) == ["rnn_loss", "lstm_loss"]
    assert plot.legend_labels() == ["total loss", "total loss (smoothed)",
                                    "total validation loss", "rnn_loss", "lstm_loss"]
    panel.refresh()
    for nid in ("rnn_loss", "lstm_loss"):
        x, y = plot.per_loss[nid].raw.getData()
        assert list(y) == [e.losses[nid] for e in got]
        assert list(x) == list(range(1, 31))
    total = np.array([e.loss for e in got])
    parts = np.array([[e.losses["rnn_loss"], e.losses["lstm_loss"]] for e in got]).sum(1)
    np.testing.assert_allclose(plot.raw.getData()[1], total)
    np.testing.assert_allclose(parts, total, rtol=1e-5)  # the total is their sum
    # a regression graph: no accuracy, neither axis nor legend
    assert not plot.plotItem.getAxis("right").isVisible()
    assert not any("accuracy" in t for t in plot.legend_labels())
    # hiding a loss in the legend hides its curves
    plot.legend.set_shown("loss:rnn_loss", False)
    assert not plot.per_loss["rnn_loss"].smooth.isVisible()
    assert plot.per_loss["lstm_loss"].smooth.isVisible()
    path = tmp_path / "loss.csv"
    panel.export_csv("loss", path)
    head = path.read_text().splitlines()[0].split(",")
    assert head[:8] == ["step", "epoch", "loss", "loss_smoothed", "train_loss", "val_loss",
                        "train_accuracy", "val_accuracy"]
    assert head[8:] == ["rnn_loss", "rnn_loss_smoothed", "rnn_loss_train_loss",
                        "rnn_loss_val_loss", "lstm_loss", "lstm_loss_smoothed",
                        "lstm_loss_train_loss", "lstm_loss_val_loss"]


def test_a_regression_graph_shows_no_accuracy(qtbot, tmp_path):
    from tests.graphs import mlp_dict
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, y=np.tanh(x[:, :3]).astype(np.float32))
    d = dict(mlp_dict(), training={"dataset": {"source": "npz", "path": "data.npz"},
                                   "optimizer": {"type": "adam", "lr": 0.01},
                                   "validation_split": 0.25, "batch_size": 15, "epochs": 2})
    path = tmp_path / "mse.ncg.json"
    path.write_text(json.dumps(d))
    ctl, panel, _, _ = rig(qtbot, open_doc(path))
    ctl.start()
    finish(qtbot, ctl)
    assert ctl.info.classifiers == [] and not ctl.info.classifier
    assert not panel.loss.plotItem.getAxis("right").isVisible()
    assert panel.loss.legend_labels() == ["loss", "loss (smoothed)", "validation loss"]
    assert not panel.loss.several


def test_a_classifier_after_a_regression_shows_accuracy_again(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    assert ctl.info.classifiers == ["loss"]
    assert panel.loss.plotItem.getAxis("right").isVisible()
    assert panel.loss.legend_labels()[-2:] == ["training accuracy", "validation accuracy"]


def test_empty_plots_draw_sane_axes_even_when_small(qtbot):
    ctl, panel, _, _ = rig(qtbot)
    for size in ((900, 300), (1400, 700)):
        panel.resize(*size)
        panel.show()
        qtbot.waitExposed(panel)
        qtbot.wait(50)
        for plot in (panel.loss, panel.grads.plot):
            for side in ("left", "bottom"):
                assert label_rects(plot, side), (plot.objectName(), side)  # labelled
                assert_labels_apart(plot, side)
    lo, hi = panel.grads.plot.plotItem.vb.viewRange()[1]
    assert lo == pytest.approx(-3, abs=0.2) and hi == pytest.approx(1, abs=0.2)  # 1e-3..10
    assert panel.loss.plotItem.vb.viewRange()[0][1] == pytest.approx(100, rel=0.05)
    assert not panel.loss.plotItem.getAxis("right").isVisible()  # no accuracy yet


def test_a_crowded_log_axis_never_draws_labels_over_each_other(qtbot):
    """pyqtgraph labels a log axis's minor ticks too; squeezed, they overlap unless the
    axis leaves some out."""
    from gui.training.plots import GradNormPlot
    plot = GradNormPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 90)
    plot.show()
    qtbot.waitExposed(plot)
    for lo, hi in ((0.0, 1.0), (-0.3, 0.8), (-6.0, 2.0)):
        plot.plotItem.vb.setYRange(lo, hi, padding=0)
        qtbot.wait(20)
        assert label_rects(plot, "left")
        assert_labels_apart(plot, "left")


def test_after_a_run_train_continues_unless_the_settings_changed(qtbot):
    from gui.training import CONTINUE, RESTART
    doc = open_doc()
    ctl, panel, _, _ = rig(qtbot, doc, epochs=1)
    choices: list = []
    ctl.next_run_changed.connect(choices.append)
    assert not ctl.next_run().can_continue  # nothing trained yet
    ctl.start()
    finish(qtbot, ctl)
    first = ctl.info.total_steps
    nxt = ctl.next_run()
    assert nxt.can_continue and nxt.default == CONTINUE and nxt.step == first
    assert choices and choices[-1] == nxt
    assert not panel.next_label.isHidden() and str(first) in panel.next_label.text()
    doc.graph.nodes["fc1"].pos = (5.0, 5.0)  # moving a node changes nothing trained
    assert ctl.next_run().default == CONTINUE
    # another learning rate: Train restarts, and says why
    training = json.loads(json.dumps(doc.graph.training))
    training["optimizer"]["lr"] = training["optimizer"].get("lr", 0.001) / 2
    doc.set_training(training)
    qtbot.waitUntil(lambda: choices[-1].default == RESTART, timeout=2000)
    nxt = ctl.next_run()
    assert nxt.can_continue and "optimizer" in nxt.reason
    assert "restarts" in panel.next_label.text() and "optimizer" in panel.next_label.text()
    ctl.start()  # the default: restart from the initial weights, the curves start over
    finish(qtbot, ctl)
    assert ctl.info.step_offset == 0 and ctl.info.kept_weights is None
    assert np.array_equal(panel.loss.steps.data, np.arange(1, first + 1))
    # asked for, it continues all the same (the settings changed before the last run)
    doc.set_training({**training, "optimizer": {**training["optimizer"], "lr": 1.234e-4}})
    assert ctl.next_run().default == RESTART
    ctl.start(CONTINUE)
    finish(qtbot, ctl)
    assert ctl.info.step_offset == first and "continuing" in ctl.info.kept_weights
    # and a restart asked for while nothing changed
    assert ctl.next_run().default == CONTINUE
    ctl.start(RESTART)
    finish(qtbot, ctl)
    assert ctl.info.step_offset == 0


def test_a_graph_edit_or_a_failed_run_makes_train_restart(qtbot, tmp_path):
    from gui.training import RESTART
    doc = open_doc()
    ctl, _, _, _ = rig(qtbot, doc, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    doc.set_param("fc1", "units", 64)
    nxt = ctl.next_run()
    assert nxt.default == RESTART and "graph" in nxt.reason
    doc = open_doc(training={"optimizer": {"type": "sgd", "lr": 1e30}}, tmp=tmp_path)
    ctl, _, _, _ = rig(qtbot, doc, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    assert ctl.last_done.reason == "error"
    assert ctl.next_run().default == RESTART and "failed" in ctl.next_run().reason


def test_progress_and_plots_count_steps_alike_over_continued_runs(qtbot):
    ctl, panel, _, _ = rig(qtbot, epochs=1)
    ctl.start()
    finish(qtbot, ctl)
    first = ctl.info.total_steps
    assert panel.progress.maximum() == first and f"step {first}/{first}" in \
        panel.progress.format()
    ctl.start()  # continues
    qtbot.waitUntil(lambda: ctl.info is not None and ctl.info.step_offset == first,
                    timeout=20000)
    finish(qtbot, ctl)
    end = 2 * first
    assert panel.progress.maximum() == panel.progress.value() == end
    fmt = panel.progress.format()
    assert f"step {end}/{end}" in fmt and "epoch 2/2" in fmt, fmt
    assert panel.loss.steps.data[-1] == end  # the plot's step axis says the same
    assert panel.grads.plot.steps.data[-1] == end
    assert int(panel.loss.epochs.data[-1]) == 1  # the second epoch, counted from 0
    assert panel.loss.plotItem.vb.viewRange()[0][1] >= end  # the axis spans the run


def test_the_main_window_offers_continue_and_restart_after_a_run(qtbot):
    w = main_window(qtbot, epochs=1)
    cont, restart = w.actionContinueTraining, w.actionRestartTraining
    assert not cont.isEnabled() and not restart.isEnabled()
    assert cont in w.train_choice_menu.actions() and restart in w.train_choice_menu.actions()
    assert cont in w.train_menu.actions() and restart in w.train_menu.actions()
    w.train()
    finish(qtbot, w.training)
    first = w.training.info.total_steps
    assert cont.isEnabled() and restart.isEnabled()
    assert cont.font().bold() and not restart.font().bold()  # what a plain Train does
    assert str(first) in cont.text()
    assert "continues" in w.actionTrain.toolTip()
    restart.trigger()
    qtbot.waitUntil(lambda: w.training.info is not None and w.training.state == "idle"
                    and w.training.last_done is not None, timeout=30000)
    assert w.training.info.step_offset == 0
    cont.trigger()
    finish(qtbot, w.training)
    assert w.training.info.step_offset == first


def test_each_layout_is_remembered_as_the_user_left_it(qtbot):
    from PySide6.QtCore import Qt
    w = main_window(qtbot, epochs=1)
    w.train()
    finish(qtbot, w.training)
    assert w.dock_layout == "training" and not w.palette_dock.isVisible()
    w.resizeDocks([w.bottom_dock], [420], Qt.Orientation.Vertical)  # the user drags
    qtbot.waitUntil(lambda: abs(w.bottom_dock.height() - 420) <= 4, timeout=2000)
    w.set_dock_layout("editing")
    assert w.actionEditingLayout.isChecked() and w.palette_dock.isVisible()
    qtbot.waitUntil(lambda: w.bottom_dock.height() < 400, timeout=2000)
    w.set_dock_layout("training")
    qtbot.waitUntil(lambda: abs(w.bottom_dock.height() - 420) <= 4, timeout=2000)
    assert not w.palette_dock.isVisible()
    # and in the next session too
    w.set_dock_layout("editing")
    w.close()
    w2 = main_window(qtbot, epochs=1)
    w2.set_dock_layout("training")
    qtbot.waitUntil(lambda: abs(w2.bottom_dock.height() - 420) <= 4, timeout=2000)


def contrast(a: QColor, b: QColor) -> float:
    """The WCAG contrast ratio of two colours."""
    def lum(c: QColor) -> float:
        ch = [v / 255 for v in (c.red(), c.green(), c.blue())]
        ch = [v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]
    hi, lo = sorted((lum(a), lum(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("name", ["light", "dark"])
def test_legends_and_check_boxes_read_on_both_themes(qtbot, name):
    from PySide6.QtGui import QPalette
    from PySide6.QtWidgets import QApplication

    from gui import theme
    theme.apply_theme(name, QApplication.instance())
    try:
        ctl, panel, _, _ = rig(qtbot, epochs=1)
        panel.apply_theme()
        ctl.start()
        finish(qtbot, ctl)
        t = theme.current()
        base = QColor(t.base)
        for lst in (panel.loss.legend, panel.grads.layer_list):
            pal = lst.palette()
            assert contrast(pal.color(QPalette.ColorRole.Text), base) >= 7  # entry text
            # Fusion draws a check box's frame in the window colour made darker
            frame = pal.color(QPalette.ColorRole.Window).darker(140)
            assert contrast(frame, base) >= 2.5, (name, frame.name())
        labels = panel.loss.legend_labels()
        assert "training accuracy" in labels and "validation accuracy" in labels
        curves = [panel.loss.train_acc, panel.loss.val_acc, panel.loss.smooth, panel.loss.val,
                  *panel.grads.plot.curves.values()]
        for c in curves:
            color = c.opts["pen"].color()
            assert contrast(color, base) >= 2.5, (name, c.name(), color.name())
    finally:
        theme.apply_theme("light", QApplication.instance())
