"""The run history in the editor (gui/training/runs.py): the list of a graph's recorded runs,
their curves drawn over the live plots, what differs between two, rename, delete, restore,
export, and a run trained in the editor landing in the list. pytest-qt, offscreen."""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from core.fileformat import load_graph
from core.network import Network
from core.runs.record import RunRecorder
from core.runs.store import RunStore, runs_dir_for
from core.training import EpochEvent, StepEvent, parse_training
from core.validate import analyze
from gui.document import Document
from gui.training import TrainingController, TrainingPanel
from gui.training.plots import LossPlot, run_colors

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


def graph_file(tmp: Path, units: int = 128, lr: float = 0.01, epochs: int = 1) -> Path:
    """A copy of the MLP example with fc1's units, the learning rate and epochs set."""
    d = json.loads(MLP.read_text())
    for n in d["nodes"]:
        if n["id"] == "fc1":
            n["params"]["units"] = units
    d["training"]["optimizer"] = {"type": "adam", "lr": lr}
    d["training"]["epochs"] = epochs
    path = tmp / "mlp.ncg.json"
    path.write_text(json.dumps(d))
    return path


def record(store: RunStore, path: Path, *, steps: int = 20, start: float = 2.0,
           status: str = "finished", error: str | None = None, label: str | None = None):
    """A run of the graph file ``path`` recorded as the editor's would be, with made-up
    curves (a loss falling from ``start``) and the network's initial weights."""
    graph = load_graph(path)
    cfg = parse_training(graph.training)
    rec = RunRecorder(store, graph, cfg, label=label)
    per_epoch = 10
    for i in range(steps):
        rec.on_event(StepEvent(i // per_epoch, i, 0.01 * i, start / (1 + i), {"fc1.W": 0.1},
                               0.5 + 0.01 * i))
        if (i + 1) % per_epoch == 0:
            rec.on_event(EpochEvent(i // per_epoch, start / (1 + i), start / (2 + i), 0.1,
                                    0.5, 0.6 + 0.01 * i))
    weights = None
    if status != "failed":
        weights = Network(analyze(graph), seed=cfg.seed).state_dict()
    run = rec.finish(status, steps=steps, weights=weights, error=error,
                     error_node="fc1" if error else None)
    time.sleep(0.02)  # runs of one second are told apart by their files' times
    return run


class FakeController:
    """What the history needs of a TrainingController, without a training process."""

    def __init__(self, document):
        from PySide6.QtCore import QObject, Signal

        class Sig(QObject):
            run_started = Signal(object)
            finished = Signal(object)

        self._sig = Sig()
        self.run_started = self._sig.run_started
        self.finished = self._sig.finished
        self.document = document
        self.state = "idle"
        self.run_id = None
        self.loaded: list[Path] = []

    def load_weights(self, path):
        self.loaded.append(Path(path))


@pytest.fixture
def rig(qtbot, tmp_path):
    """(history, loss plot, gradient plot, document, [run a, run b]) for two runs of a saved
    graph: b has a lower learning rate and a wider fc1 than a."""
    from gui.training.plots import GradientView
    from gui.training.runs import RunHistory
    path = graph_file(tmp_path, units=128, lr=0.01)
    store = RunStore(runs_dir_for(path))
    a = record(store, path, start=2.0)
    path = graph_file(tmp_path, units=64, lr=0.001)
    b = record(store, path, start=1.0, steps=30)
    doc = Document()
    doc.open(path)
    ctl = FakeController(doc)
    loss, grads = LossPlot(), GradientView()
    history = RunHistory(ctl, loss, grads.plot)
    for w in (loss, grads, history):
        qtbot.addWidget(w)
    return history, loss, grads, doc, [a, b]


def wait_overlays(qtbot, history, n: int) -> None:
    qtbot.waitUntil(lambda: len(history.loss_plot.overlays) == n
                    and len(history.grad_plot.overlays) == n, timeout=5000)


# ---- the list -------------------------------------------------------------------------------
def test_the_history_lists_the_runs_of_the_store_newest_first(rig):
    history, _, _, _, (a, b) = rig
    assert history.view.objectName() == "runHistory"
    rows = history.row_texts()
    assert [r[1] for r in rows] == [b.label, a.label] == ["adam lr=0.001", "adam lr=0.01"]
    assert [r[2] for r in rows] == ["finished", "finished"]
    assert [r[3] for r in rows] == ["30", "20"]
    assert rows[0][4] == f"{b.summary['final']['val_loss']:.4g}"
    assert rows[0][5].endswith("%")
    assert ":" in rows[0][0]  # a local time, short


def test_a_failed_run_says_why_in_its_tooltip_and_details(qtbot, rig, tmp_path):
    history, _, _, doc, _ = rig
    failed = record(doc.run_store(), doc.path, steps=3, status="failed",
                    error="fc1: the loss became NaN at step 3")
    history.refresh()
    row = history._row_of(failed.id)
    assert row == 0 and history.row_texts()[row][2] == "failed"  # the newest
    item = history.model.item(row, 2)
    assert "the loss became NaN" in item.toolTip()
    history.select([failed.id])
    assert "the loss became NaN" in history.diff_text()
    assert "failed" in history.diff_text()


def test_a_run_cut_short_reads_interrupted_and_unreadable_folders_are_skipped(rig):
    history, _, _, doc, (a, _) = rig
    data = json.loads((a.path / "run.json").read_text())
    data["summary"]["status"] = "running"
    (a.path / "run.json").write_text(json.dumps(data))
    (doc.runs_dir() / "garbage").mkdir()
    (doc.runs_dir() / "garbage" / "run.json").write_text("{not json")
    history.refresh()
    rows = history.row_texts()
    assert len(rows) == 2
    assert rows[1][2] == "interrupted"


def test_runs_survive_a_restart_they_are_read_when_a_document_opens(qtbot, rig):
    from gui.training.plots import GradientView
    from gui.training.runs import RunHistory
    _, _, _, doc, (a, b) = rig
    doc2 = Document()
    doc2.open(doc.path)
    loss, grads = LossPlot(), GradientView()
    qtbot.addWidget(loss)
    qtbot.addWidget(grads)
    again = RunHistory(FakeController(doc2), loss, grads.plot)
    qtbot.addWidget(again)
    assert [r[1] for r in again.row_texts()] == [b.label, a.label]


# ---- comparing ------------------------------------------------------------------------------
def test_selecting_two_runs_overlays_their_curves_named_by_label(qtbot, rig):
    history, loss, grads, _, (a, b) = rig
    history.select([a.id, b.id])
    wait_overlays(qtbot, history, 2)
    labels = loss.legend_labels()
    assert a.label in labels and b.label in labels
    assert loss.overlay_labels() == [b.label, a.label]  # as listed, newest first
    # two curves in each plot, in distinct colours, with the runs' data
    items = [loss.overlay_items[r.id][0] for r in (a, b)]
    assert [len(i.xData) for i in items] == [20, 30]
    colors = {i.opts["pen"].color().name() for i in items}
    assert len(colors) == 2
    assert set(grads.plot.overlay_curves) == {f"run:{a.id}", f"run:{b.id}"}
    assert a.label in grads.layer_list.labels() and b.label in grads.layer_list.labels()
    gy = grads.plot.overlay_curves[f"run:{a.id}"].yData
    assert np.allclose(gy, 0.5 + 0.01 * np.arange(20))
    # validation points, one per epoch
    assert len(loss.overlay_items[b.id][1].xData) == 3
    # deselecting removes them again
    history.select([])
    wait_overlays(qtbot, history, 0)
    assert a.label not in loss.legend_labels()
    assert a.label not in grads.layer_list.labels()


def test_the_diff_pane_shows_a_changed_lr_and_a_changed_node_parameter(qtbot, rig):
    history, _, _, _, (a, b) = rig
    assert history.diff.objectName() == "runDiff"
    history.select([a.id, b.id])
    text = history.diff_text()
    assert "optimizer.lr: 0.01 → 0.001" in text
    assert "node 'fc1': units 128 -> 64" in text
    history.select([a.id])
    assert "optimizer.lr" in history.diff_text() and "Training settings" in history.diff_text()


def test_metrics_are_read_once_and_kept(qtbot, rig, monkeypatch):
    history, _, _, _, (a, b) = rig
    history.select([a.id])
    wait_overlays(qtbot, history, 1)
    from core.runs import store as store_mod
    calls = []
    monkeypatch.setattr(store_mod.Run, "metrics", lambda self: calls.append(self.id) or ([], []))
    history.select([b.id])
    history.select([a.id])
    wait_overlays(qtbot, history, 1)
    qtbot.wait(50)
    assert calls == [b.id]  # a came from the cache
    assert len(history.loss_plot.overlay_items[a.id][0].xData) == 20


def test_overlays_csv_and_png_export_through_the_dialogs(qtbot, rig, tmp_path, monkeypatch):
    history, loss, _, _, (a, b) = rig
    history.select([a.id, b.id])
    wait_overlays(qtbot, history, 2)
    out = tmp_path / "cmp.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(out), ""))
    history.actionExportCsv.trigger()
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert list(rows[0]) == ["run", "label", "step", "loss", "grad_norm", "epoch", "val_loss"]
    assert {r["run"] for r in rows} == {a.id, b.id}
    assert len([r for r in rows if r["run"] == b.id]) == 30
    ends = [r for r in rows if r["run"] == a.id and r["val_loss"]]
    assert [(int(r["step"]), int(r["epoch"])) for r in ends] == [(10, 0), (20, 1)]
    png = tmp_path / "cmp.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(png), ""))
    history.actionExportLossPng.trigger()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert loss.plotItem.legend is None  # the image's legend was only for the image


# ---- rename, delete, restore ----------------------------------------------------------------
def test_rename_inline_persists(qtbot, rig):
    history, loss, _, doc, (a, _) = rig
    history.select([a.id])
    row = history._row_of(a.id)
    history.model.item(row, 1).setText("baseline")  # what the inline editor commits
    qtbot.waitUntil(lambda: RunStore(doc.runs_dir()).get(a.id).label == "baseline",
                    timeout=2000)
    assert "baseline" in [r[1] for r in history.row_texts()]
    assert history.selected_ids() == [a.id]  # the selection stays
    wait_overlays(qtbot, history, 1)
    assert loss.overlay_labels() == ["baseline"]
    history.rename(a.id, "")  # an empty label: the automatic one again
    assert RunStore(doc.runs_dir()).get(a.id).label == "adam lr=0.01"


def test_delete_asks_and_persists(qtbot, rig, monkeypatch):
    history, _, _, doc, (a, b) = rig
    asked = []
    monkeypatch.setattr(QMessageBox, "question",
                        lambda *args, **k: asked.append(args[2]) or QMessageBox.Cancel)
    history.select([a.id])
    history.actionDelete.trigger()
    assert "cannot be undone" in asked[0]
    assert len(RunStore(doc.runs_dir()).list()) == 2  # cancelled
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **k: QMessageBox.Yes)
    history.actionDelete.trigger()
    assert [r.id for r in RunStore(doc.runs_dir()).list()] == [b.id]
    assert [r[1] for r in history.row_texts()] == [b.label]
    assert not a.path.exists()


def test_restore_opens_the_runs_graph_and_weights_as_an_unsaved_document(qtbot, rig):
    history, _, _, doc, (a, _) = rig
    restored = []
    history.restored.connect(lambda run, msg: restored.append(msg))
    history.select([a.id])
    assert history.actionRestore.isEnabled()
    history.actionRestore.trigger()
    assert doc.path is None and doc.dirty  # a new unsaved graph
    assert doc.graph.nodes["fc1"].params["units"] == 128  # run a's graph, not the file's
    assert doc.graph.training["optimizer"]["lr"] == 0.01
    assert history.controller.loaded == [a.path / "weights.npz"]
    assert restored and "Restored run" in restored[0]
    assert history.row_texts() == []  # the new graph has no runs yet


def test_restore_is_not_done_when_the_user_keeps_the_open_graph(rig):
    history, _, _, doc, (a, _) = rig
    history.confirm_replace = lambda: False
    history.select([a.id])
    assert not history.restore_selected()
    assert doc.path is not None and doc.graph.nodes["fc1"].params["units"] == 64


# ---- where the runs live --------------------------------------------------------------------
def test_an_unsaved_graphs_runs_move_next_to_the_file_on_first_save(qtbot, tmp_path):
    doc = Document()
    doc.open_text(graph_file(tmp_path).read_text())
    unsaved = doc.runs_dir()
    assert "unsaved-runs" in str(unsaved)
    run = record(doc.run_store(), graph_file(tmp_path))
    target = tmp_path / "saved" / "net.ncg.json"
    target.parent.mkdir()
    doc.save(target)
    assert doc.runs_dir() == tmp_path / "saved" / "net.runs"
    assert [r.id for r in doc.run_store().list()] == [run.id]
    assert not unsaved.exists()
    other = Document()
    other.new()
    assert other.runs_dir() != unsaved and other.run_store().list() == []


def test_run_colors_are_distinct():
    cols = run_colors(9)
    assert len({c.name() for c in cols}) == 9


# ---- a run trained in the editor --------------------------------------------------------------
def test_a_run_trained_in_the_editor_adds_a_row_when_it_ends(qtbot, tmp_path):
    doc = Document()
    doc.open(graph_file(tmp_path, epochs=200))  # minutes of training: it is stopped
    ctl = TrainingController(doc, device="cpu")
    panel = TrainingPanel(ctl)
    qtbot.addWidget(panel)
    history = panel.findChild(object, "runHistory")
    assert history is panel.runs.view and history.model().rowCount() == 0
    at_start = []  # the list when the run has started (the history refreshed first)
    ctl.run_started.connect(lambda *_: at_start.append(panel.runs.row_texts()))
    try:
        assert ctl.start()
        qtbot.waitUntil(lambda: panel.loss.steps.n >= 5, timeout=30000)
        assert len(at_start) == 1 and [r[2] for r in at_start[0]] == ["running"]
        assert not panel.runs.actionDelete.isEnabled() or not panel.runs.selected_ids()
        ctl.stop()
        qtbot.waitUntil(lambda: ctl.state == "idle", timeout=30000)
        rows = panel.runs.row_texts()
        steps = ctl.last_done.steps
        assert len(rows) == 1 and rows[0][2] == "stopped" and rows[0][3] == str(steps)
        run = doc.run_store().get(ctl.run_id)
        assert (run.path / "weights.npz").is_file()
        panel.runs.select([run.id])
        wait_overlays(qtbot, panel.runs, 1)
        assert len(panel.loss.overlay_items[run.id][0].xData) == steps
        assert run.label in panel.loss.legend_labels()
        assert "loss" in panel.loss.legend_labels()  # the live curves stay
    finally:
        ctl.shutdown()


def test_a_graph_saved_while_training_moves_its_runs_when_the_run_ends(qtbot, tmp_path):
    doc = Document()
    doc.open_text(graph_file(tmp_path).read_text())
    unsaved = doc.runs_dir()
    run = record(doc.run_store(), graph_file(tmp_path))
    doc.set_locked(True)  # a run is being written by the training process
    doc.save(tmp_path / "net.ncg.json")
    assert (unsaved / run.id).is_dir()  # left alone while it trains
    doc.set_locked(False)
    assert not unsaved.exists() and (tmp_path / "net.runs" / run.id / "run.json").is_file()


def test_the_main_window_shows_the_history_beside_the_curves(qtbot, tmp_path):
    from gui.main_window import MainWindow
    path = graph_file(tmp_path, lr=0.01)
    store = RunStore(runs_dir_for(path))
    a = record(store, path)
    path = graph_file(tmp_path, lr=0.001)
    b = record(store, path)
    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1400, 900)
    w.show()
    w.open_file(path)
    w.bottom_tabs.setCurrentWidget(w.training_panel)
    view = w.findChild(object, "runHistory")
    assert view is not None and view.model().rowCount() == 2
    assert w.actionRunHistory in w.menuBar().actions()[2].menu().actions()  # View
    history = w.training_panel.runs
    history.select([a.id, b.id])
    wait_overlays(qtbot, history, 2)
    loss = w.findChild(object, "lossPlot")
    assert {a.label, b.label} <= set(loss.legend_labels())
    assert view.isVisible() and loss.isVisible()
    w.actionRunHistory.trigger()
    assert not view.isVisible()
    w.actionRunHistory.trigger()
    # Restore asks about unsaved changes first (none here), then shows what it did
    history.select([a.id])
    assert history.restore_selected()
    assert w.document.path is None and w.document.graph.training["optimizer"]["lr"] == 0.01
    assert "Restored run" in w.statusBar().currentMessage()
    kept, now = a.weights(), w.training.current_weights()  # Train starts from the run's
    assert set(kept) == set(now) and all(np.array_equal(kept[k], now[k]) for k in kept)
    w.document.undo_stack.setClean()


def test_a_shipped_examples_runs_stay_out_of_the_examples_folder(qtbot):
    from gui import files
    doc = Document()
    doc.open(MLP)
    where = doc.runs_dir()
    assert where.parent.parent == files.home() and where.name == "example-mlp_digits"
    assert not str(where).startswith(str(files.EXAMPLES_DIR))


def test_a_graph_in_a_folder_the_user_cannot_write_keeps_its_runs_in_the_editors(
        qtbot, tmp_path, monkeypatch):
    import os

    from gui import files
    shared = tmp_path / "shared"
    shared.mkdir()
    path = shared / "g.ncg.json"
    path.write_text(MLP.read_text(encoding="utf-8"), encoding="utf-8")
    doc = Document()
    doc.open(path)
    assert doc.runs_dir() == shared / "g.runs"
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == shared
                        else real_access(p, mode, **kw))
    where = doc.runs_dir()
    assert where.parent.parent == files.home() and where.name.startswith("readonly-g-")
    other = tmp_path / "other" / "g.ncg.json"  # the same name elsewhere: its own folder
    other.parent.mkdir()
    other.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False)
    doc.open(other)
    assert doc.runs_dir() != where and doc.runs_dir().name.startswith("readonly-g-")
