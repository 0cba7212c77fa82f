"""The editor's memory budget (Train > Memory Budget...; pytest-qt, offscreen): stored in the
editor's settings, checked before a training process starts, and handed to that process, so
that a budget raised in the editor lets a graph train that the default would refuse; and the
other run setting of the Train menu, TensorBoard logs for every recorded run."""
from __future__ import annotations

import json

import pytest
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QLabel

from core import memory
from gui import memory_setting
from gui.main_window import MainWindow
from gui.memory_setting import MemoryBudgetDialog
from tests.cli_helpers import ROOT

MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow()
    w.show()
    qtbot.waitExposed(w)
    d = json.loads(MLP.read_text(encoding="utf-8"))
    d["training"]["epochs"] = 1
    path = tmp_path / "g.ncg.json"
    path.write_text(json.dumps(d), encoding="utf-8")
    w.open_file(path)
    w.document.flush()
    yield w
    w.document.undo_stack.setClean()
    w.close()
    w.deleteLater()


def test_the_setting_is_stored_checked_and_read_back():
    assert memory_setting.text() == "" and memory_setting.max_memory() is None
    memory_setting.set_text(" 2G ")
    assert memory_setting.text() == "2G" and memory_setting.max_memory() == 2 * 1024 ** 3
    with pytest.raises(ValueError, match="expected a size"):
        memory_setting.set_text("lots")
    assert memory_setting.text() == "2G"  # a bad value leaves the old one
    memory_setting.set_text("")
    assert memory_setting.max_memory() is None


def test_the_dialog_refuses_a_bad_size_and_stays_open(qtbot):
    dlg = MemoryBudgetDialog(None, "This graph needs about 1 MiB.")
    qtbot.addWidget(dlg)
    dlg.show()
    assert "available now" in dlg.findChild(QLabel, "memoryBudgetIntro").text()
    dlg.edit.setText("12 bananas")
    dlg.buttons.button(QDialogButtonBox.Ok).click()
    assert dlg.isVisible() and dlg.result() != QDialog.Accepted
    assert not dlg.error.isHidden() and "expected a size" in dlg.error.text()
    dlg.edit.setText("512M")
    assert dlg.error.isHidden()  # typing clears the complaint
    dlg.buttons.button(QDialogButtonBox.Ok).click()
    assert dlg.result() == QDialog.Accepted
    assert memory_setting.max_memory() == 512 * 1024 ** 2
    dlg2 = MemoryBudgetDialog(None)
    qtbot.addWidget(dlg2)
    assert dlg2.edit.text() == "512M"
    dlg2.buttons.button(QDialogButtonBox.RestoreDefaults).click()
    dlg2.buttons.button(QDialogButtonBox.Ok).click()
    assert memory_setting.max_memory() is None


def test_the_menu_shows_what_the_graph_needs(window, monkeypatch):
    seen = {}

    def fake_exec(self):
        seen["estimate"] = self.findChild(QLabel, "memoryEstimate").text()
        self.edit.setText("3G")
        self.accept()
        return QDialog.Accepted

    monkeypatch.setattr(MemoryBudgetDialog, "exec", fake_exec)
    assert window.actionMemoryBudget in window.train_menu.actions()
    assert window.edit_memory_budget()
    assert seen["estimate"].startswith("This graph needs about ")
    assert "per training step with batch" in seen["estimate"] and "'fc1'" in seen["estimate"]
    assert memory_setting.max_memory() == 3 * 1024 ** 3


def test_a_small_budget_refuses_at_once_naming_the_largest_node(window):
    memory_setting.set_text("1K")
    assert not window.train()
    assert window.training.trainer is None
    msg = window.statusBar().currentMessage()
    assert "over the memory budget of 1.0 KiB" in msg and "'fc1'" in msg
    assert "Train > Memory Budget" in msg


def test_a_budget_raised_in_the_editor_wins_over_the_environment(window, monkeypatch):
    monkeypatch.setenv(memory.ENV_VAR, "1K")
    assert not window.train()  # the environment's budget is the default
    memory_setting.set_text("64G")
    assert window.train()
    assert window.training.wait_idle(60.0)
    done = window.training.last_done
    # the training process got the editor's budget, not its environment's
    assert done.reason == "finished", done.error


def test_tensorboard_logs_for_every_run_are_a_setting_of_the_train_menu(window):
    from gui import files
    pytest.importorskip("tensorboard")
    action = window.actionTensorBoard
    assert action in window.train_menu.actions() and action.isCheckable()
    assert not action.isChecked() and not files.tensorboard_runs()
    action.trigger()
    assert files.tensorboard_runs()
    assert window.train()
    assert window.training.wait_idle(60.0)
    [run] = window.document.run_store().list()
    assert any((run.path / "tensorboard").iterdir())  # the run's event file
    action.trigger()
    assert not files.tensorboard_runs()
