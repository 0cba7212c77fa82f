"""Train is never silent, and "valid" means "can train" (the main window; pytest-qt,
offscreen).

Pressing Train (F5) on a graph that cannot train brings the problems list to the front,
selects the first culprit node and says in the status bar how many problems stop it; every
other refusal says why too. The status bar tells a graph that can train ("Ready to train")
from one that cannot yet, and what it lacks. The dataset is checked while editing, and what
a run reported goes away with the next edit."""
from __future__ import annotations

import json

import pytest

from gui.main_window import MainWindow
from tests.cli_helpers import ROOT

MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


@pytest.fixture
def window(qtbot):
    made: list[MainWindow] = []

    def make(graph: dict | None = None, tmp=None) -> MainWindow:
        w = MainWindow()
        made.append(w)
        w.show()
        qtbot.waitExposed(w)
        if graph is not None:
            path = tmp / "g.ncg.json"
            path.write_text(json.dumps(graph), encoding="utf-8")
            w.open_file(path)
            w.document.flush()
        return w

    yield make
    for w in made:  # closing ends any training process
        w.document.undo_stack.setClean()
        w.close()
        w.deleteLater()


def mlp(**changes) -> dict:
    d = json.loads(MLP.read_text(encoding="utf-8"))
    d.update(changes)
    return d


def message(w: MainWindow) -> str:
    return w.statusBar().currentMessage()


def test_train_with_problems_shows_them_selects_the_culprit_and_counts(window, tmp_path):
    d = mlp()
    d["nodes"] += [{"id": "drop1", "type": "Dropout", "pos": [0, 300]},
                   {"id": "drop2", "type": "Dropout", "pos": [200, 300]}]
    w = window(d, tmp_path)
    w.bottom_tabs.setCurrentWidget(w.training_panel)  # the problems are out of sight
    assert w.actionTrain.isEnabled()  # enabled, so that pressing it says why it cannot train
    w.actionTrain.trigger()  # F5
    assert w.training.state == "idle" and not w.document.locked
    assert w.bottom_tabs.currentWidget() is w.problems and w.problems.isVisible()
    assert w.scene.selected_node_ids() == ["drop1"]
    assert message(w) == ("Cannot train: 2 problems (first: node 'drop1' port 'in': input "
                          "port is not connected)")
    assert w.problems.currentItem() is w.problems.topLevelItem(0)
    assert "Cannot train: 2 problems" in w.summary_label.text()
    assert w.bottom_tabs.tabText(0) == "Problems (2)"


def test_valid_means_can_train_and_the_status_says_what_is_missing(window, tmp_path):
    w = window(mlp(training={}), tmp_path)
    assert w.document.analysis.ok  # nothing wrong with the graph ...
    assert "Cannot train yet: needs a dataset" in w.summary_label.text()  # ... but no data
    assert "valid" not in w.summary_label.text()
    assert w.bottom_tabs.tabText(0) == "Problems (1)"
    (row,) = w.problems.rows()
    assert "training.dataset" in row.message and "needs a dataset" in row.message
    assert not w.train()
    assert message(w).startswith("Cannot train: 1 problem (first: 'training.dataset': "
                                 "training needs a dataset")
    assert w.training.state == "idle"
    # the fix makes the row go and the graph ready
    w.document.set_training({"dataset": {"source": "builtin", "name": "digits"}})
    w.document.flush()
    assert w.problems.rows() == [] and w.bottom_tabs.tabText(0) == "Problems"
    assert w.summary_label.text().endswith("Ready to train")
    w.document.delete(["loss"])
    w.document.flush()
    assert "needs a loss" in w.summary_label.text()


def test_an_empty_graph_is_not_called_valid(window):
    w = window()
    assert w.summary_label.text().endswith("Cannot train yet: the graph is empty")
    assert not w.train() and message(w).startswith("Cannot train: 2 problems (first: the "
                                                   "graph is empty")


def test_the_dataset_is_checked_while_editing_and_marked_on_the_node(window, tmp_path):
    w = window(mlp(), tmp_path)
    assert w.summary_label.text().endswith("Ready to train")
    w.document.set_param("x", "shape", [32])  # the digits are [64]
    w.document.flush()
    assert "x" in w.problems.nodes_with_problems()
    item = w.scene.node_item("x")
    assert item.problems and "[64]" in " ".join(item.problems)
    assert not w.train()  # at once, not seconds later from the training process
    assert "node 'x' parameter 'shape'" in message(w)
    assert w.scene.selected_node_ids() == ["x"]


def test_a_new_input_from_the_palette_fits_the_dataset(window, tmp_path):
    w = window(mlp(), tmp_path)
    w.add_node_at_center("Input")
    nid = w.scene.selected_node_ids()[0]
    a = w.document.flush()
    assert w.document.graph.nodes[nid].params == {"shape": "auto"}
    assert a.shapes[nid] == (64,) and not a.problems_of(nid)


def test_a_failed_run_is_shown_and_goes_with_the_next_edit(window, tmp_path):
    w = window(mlp(), tmp_path)
    w.bottom_tabs.setCurrentWidget(w.training_panel)
    w.problems.set_runtime_problems([("fc1", "loss: first NaN/Inf in the forward pass")])
    w.training.failed.emit("fc1", "loss: first NaN/Inf in the forward pass")
    assert w.bottom_tabs.currentWidget() is w.problems
    assert w.scene.selected_node_ids() == ["fc1"]
    assert message(w) == "Training failed: loss: first NaN/Inf in the forward pass"
    assert [r.runtime for r in w.problems.rows()] == [True]
    w.document.move({"fc1": (w.document.graph.nodes["fc1"].pos, (5.0, 5.0))})
    assert w.problems.rows()  # moving a node changes nothing the run saw
    w.document.set_training({**w.document.graph.training, "epochs": 2})  # the settings changed
    assert w.problems.rows() == []


def test_train_while_training_says_why_and_an_auto_shaped_graph_trains(window, tmp_path, qtbot):
    d = mlp()
    for n in d["nodes"]:
        if n["type"] in ("Input", "Target"):
            n["params"].pop("shape", None)  # both from the dataset
    d["training"].update({"epochs": 500, "device": "cpu"})
    w = window(d, tmp_path)
    assert w.document.analysis.can_train
    assert w.train()
    try:
        assert not w.actionTrain.isEnabled()  # as before; the tooltip says why
        assert "Already training" in w.actionTrain.toolTip()
        assert not w.train()
        assert message(w) == ("Cannot train: already training: pause (F6) or stop (Shift+F5) "
                              "first")
        # the training process resolves the "auto" shapes from the data it loads
        qtbot.waitUntil(lambda: w.training.info is not None, timeout=30000)
        assert w.bottom_tabs.currentWidget() is w.training_panel
    finally:
        w.stop_training()
        assert w.training.wait_idle(20.0)
    assert w.training.last_done.error is None and w.training.last_done.steps > 0
    assert w.actionTrain.isEnabled()


def test_a_graph_over_the_memory_budget_is_refused_before_a_process_starts(window, tmp_path,
                                                                          monkeypatch):
    # the budget of the environment counts in the editor too (Train > Memory Budget... wins)
    monkeypatch.setenv("NEUROCANVAS_MAX_MEMORY", "1K")
    w = window(mlp(), tmp_path)
    assert not w.train()
    assert w.training.trainer is None and w.training.state == "idle"
    assert "memory budget" in message(w) and "Train > Memory Budget" in message(w)
    assert "--max-memory" not in message(w)
    assert any("memory budget" in r.message for r in w.problems.rows())
    assert w.actionTrain.isEnabled()
