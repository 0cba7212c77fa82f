"""The editor's memory budget (Train > Memory Budget...): what ``--max-memory`` is on the
command line, kept in the editor's settings.

Empty means the default of ``core.memory``: ``$NEUROCANVAS_MAX_MEMORY`` when set, else a
share of the memory available when training starts. The controller checks the budget before
it starts a training process, and the process checks it again before allocating.
"""
from __future__ import annotations

import os

from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from core import memory
from gui import files

KEY = "training/maxMemory"
GUI_HINT = "raise the budget in Train > Memory Budget..."


def text() -> str:
    """The setting as the user wrote it ("8G"), or "" for the default."""
    value = files.settings().value(KEY, "")
    return value.strip() if isinstance(value, str) else ""


def max_memory() -> int | None:
    """The budget in bytes, or None for the default (a stored value that no longer parses,
    from a hand-edited settings file, counts as the default)."""
    t = text()
    if not t:
        return None
    try:
        return memory.parse_size(t)
    except ValueError:
        return None


def set_text(value: str) -> None:
    """Store ``value`` ("" for the default); ValueError (with the reason) when it is not a
    size."""
    value = value.strip()
    if value:
        memory.parse_size(value)
    files.settings().setValue(KEY, value)


def default_description() -> str:
    """What the default is now, in words."""
    if os.environ.get(memory.ENV_VAR, "").strip():
        try:
            return (f"{memory.fmt_bytes(memory.budget())} (from the environment variable "
                    f"{memory.ENV_VAR})")
        except Exception:  # noqa: BLE001 - a bad environment value: said when training
            return f"the environment variable {memory.ENV_VAR}, which is not a size"
    share = int(memory.DEFAULT_SHARE * 100)
    return (f"{memory.fmt_bytes(memory.budget())}: {share}% of the memory available now "
            f"({memory.fmt_bytes(memory.available_memory())})")


def gui_message(message: str) -> str:
    """A ``MemoryBudgetError`` message with the editor's way to raise the budget instead of
    the command line's."""
    return message.replace(memory.CLI_HINT, GUI_HINT)


class MemoryBudgetDialog(QDialog):
    """Asks for the budget; ``estimate`` (a sentence) says what the current graph needs."""

    def __init__(self, parent: QWidget | None = None, estimate: str | None = None):
        super().__init__(parent)
        self.setObjectName("memoryBudgetDialog")
        self.setWindowTitle("Memory Budget")
        lay = QVBoxLayout(self)
        intro = QLabel("Training is refused before it allocates anything when the graph "
                       "would need more memory than this budget. Leave it empty for the "
                       f"default, now {default_description()}.")
        intro.setObjectName("memoryBudgetIntro")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        form = QFormLayout()
        self.edit = QLineEdit(text())
        self.edit.setObjectName("memoryBudgetEdit")
        self.edit.setPlaceholderText("default")
        self.edit.setToolTip("A size such as 8G, 512M or 1.5GiB (powers of 1024)")
        form.addRow("Budget:", self.edit)
        lay.addLayout(form)
        if estimate:
            need = QLabel(estimate)
            need.setObjectName("memoryEstimate")
            need.setWordWrap(True)
            lay.addWidget(need)
        self.error = QLabel()
        self.error.setObjectName("memoryBudgetError")
        self.error.setStyleSheet("color: #c62828")
        self.error.setWordWrap(True)
        self.error.hide()
        lay.addWidget(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel
                                        | QDialogButtonBox.RestoreDefaults)
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        self.buttons.button(QDialogButtonBox.RestoreDefaults).clicked.connect(
            lambda: self.edit.setText(""))
        self.edit.textChanged.connect(lambda _t: self.error.hide())
        lay.addWidget(self.buttons)
        self.resize(460, self.sizeHint().height())

    def accept(self) -> None:
        try:
            set_text(self.edit.text())
        except ValueError as e:  # stays open, saying why
            self.error.setText(str(e))
            self.error.show()
            return
        super().accept()
