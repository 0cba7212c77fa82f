"""Small form and label helpers the inspector's pages share: muted and error labels,
form layouts and their rows, shape text."""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFormLayout, QLabel, QWidget

from gui import theme
from gui.param_fields import clipped


def muted(label: QLabel) -> QLabel:
    label.setForegroundRole(QPalette.PlaceholderText)
    return label


def error_label(parent: QWidget | None = None) -> QLabel:
    label = QLabel(parent)
    label.setObjectName("fieldMessage")
    label.setWordWrap(True)
    label.setTextFormat(Qt.PlainText)
    label.setVisible(False)
    return label


def set_error(label: QLabel, text: str | None) -> None:
    """Show ``text`` in the theme's error colour, or hide the label."""
    if text:
        pal = label.palette()
        pal.setColor(QPalette.WindowText, theme.current().color("error"))
        label.setPalette(pal)
    label.setText(clipped(text, 3000) if text else "")
    label.setVisible(bool(text))


def new_form() -> QFormLayout:
    form = QFormLayout()
    form.setContentsMargins(8, 6, 8, 8)
    form.setHorizontalSpacing(10)
    form.setVerticalSpacing(6)
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.DontWrapRows)
    form.setLabelAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return form


def add_row(form: QFormLayout, *args) -> None:
    """``form.addRow(*args)``, the widgets shown at once: a widget added to a visible
    parent otherwise appears only after a queued show."""
    form.addRow(*args)
    for w in args:
        if isinstance(w, QWidget):
            w.show()


def clear_form(form: QFormLayout) -> None:
    while form.rowCount():
        form.removeRow(0)


def row_label(name: str, doc: str = "") -> QLabel:
    label = QLabel(name)
    if doc:
        label.setToolTip(doc)
    return label


def fmt_shape(shape) -> str:
    """A shape for the inspector: ``[64]``, or "unknown" where validation could not tell."""
    if shape is None:
        return "unknown"
    return "[" + ", ".join(str(s) for s in shape) + "]"
