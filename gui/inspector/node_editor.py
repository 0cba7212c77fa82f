"""The inspector's page for one node: id, label, type, output shape, weights, problems and
one field per parameter. Every finished edit is one document call (``set_param``,
``rename``, ``set_label``), so one undo step; invalid input is shown under its field."""
from __future__ import annotations

import copy
import html
from functools import partial
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QApplication,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from core import catalogue
from core.errors import GraphEditError, NeuroCanvasError
from gui import icons
from gui.canvas.node_item import lengths_note, lengths_shape_text
from gui.inspector.widgets import (
    add_row,
    clear_form,
    clipped,
    error_label,
    fmt_shape,
    muted,
    new_form,
    row_label,
    set_error,
)
from gui.param_fields import NodeRefField, ParamField, make_field, route_edit_keys


def strip_node_prefix(message: str, node_id: str) -> str:
    prefix = f"node '{node_id}'"
    if message.startswith(prefix):
        rest = message[len(prefix):]
        return rest[2:] if rest.startswith(": ") else rest.lstrip()
    return message


class NodeEditor(QWidget):
    """The page for one node: id, label, type, shape, weights, problems, parameters."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.node_id: str | None = None
        self._built_for: tuple[str, str] | None = None  # (node id, type) the fields fit
        self.fields: dict[str, ParamField] = {}

        self.icon = QLabel(self)
        self.icon.setFixedSize(24, 24)
        self.title = QLabel(self)
        title_font = QFont(self.font())
        title_font.setBold(True)
        title_font.setPointSizeF(title_font.pointSizeF() * 1.15)
        self.title.setFont(title_font)
        self.category = muted(QLabel(self))
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.icon, 0, Qt.AlignTop)
        names = QVBoxLayout()
        names.setSpacing(0)
        names.addWidget(self.title)
        names.addWidget(self.category)
        head.addLayout(names, 1)
        self.doc = muted(QLabel(self))
        self.doc.setWordWrap(True)

        self.id_edit = QLineEdit(self)
        self.id_edit.setObjectName("nodeIdEdit")
        self.id_edit.setToolTip("The node's id: unique; letters, digits, '_' and '-'")
        self.id_edit.editingFinished.connect(self._commit_id)
        self.id_message = error_label(self)
        id_box = QWidget(self)
        id_lay = QVBoxLayout(id_box)
        id_lay.setContentsMargins(0, 0, 0, 0)
        id_lay.setSpacing(2)
        id_lay.addWidget(self.id_edit)
        id_lay.addWidget(self.id_message)
        self.label_edit = QLineEdit(self)
        self.label_edit.setObjectName("nodeLabelEdit")
        self.label_edit.setPlaceholderText("optional title shown on the canvas")
        self.label_edit.editingFinished.connect(self._commit_label)
        # Ctrl+Z in these undoes typing only while it is not yet committed, else the graph
        route_edit_keys(self.id_edit, lambda: self.id_edit.text() != (self.node_id or ""),
                        self.refresh_header)
        route_edit_keys(self.label_edit,
                        lambda: self.label_edit.text() != self._committed_label(),
                        self.refresh_header)
        self.shape_label = QLabel(self)
        self.shape_label.setObjectName("outputShape")
        self.shape_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        # where a variable-length time axis comes from (an Input's lengths field)
        self.lengths_label = muted(QLabel(self))
        self.lengths_label.setObjectName("lengthsNote")
        self.lengths_label.setWordWrap(True)
        self.count_label = QLabel(self)
        self.count_label.setObjectName("paramCount")
        self.count_label.setWordWrap(True)

        about = QGroupBox("Node", self)
        about_form = new_form()
        about.setLayout(about_form)
        about_form.addRow("Id", id_box)
        about_form.addRow("Label", self.label_edit)
        about_form.addRow("Output", self.shape_label)
        about_form.addRow("Lengths", self.lengths_label)
        about_form.setRowVisible(self.lengths_label, False)
        about_form.addRow("Weights", self.count_label)
        self._about_form = about_form

        self.problems = error_label(self)
        self.problems.setObjectName("nodeProblems")
        self.problems.setTextFormat(Qt.RichText)

        self.params_box = QGroupBox("Parameters", self)
        self.params_form = new_form()
        self.params_box.setLayout(self.params_form)
        self.no_params = muted(QLabel("This node type has no parameters.", self))

        # the last gradient check of this node (Train > Check Gradients), until an edit
        self.grad_checks: dict | None = None  # node id -> GradCheck (gui.training.grad_check)
        self.check_box = QGroupBox("Gradient check", self)
        self.check_box.setObjectName("gradCheckDetails")
        self.check_text = QLabel(self.check_box)
        self.check_text.setObjectName("gradCheckText")
        self.check_text.setTextFormat(Qt.RichText)
        self.check_text.setWordWrap(True)
        self.check_text.setTextInteractionFlags(Qt.TextSelectableByMouse)
        check_lay = QVBoxLayout(self.check_box)
        check_lay.setContentsMargins(6, 4, 6, 4)
        check_lay.addWidget(self.check_text)
        self.check_box.setVisible(False)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)
        layout.addLayout(head)
        layout.addWidget(self.doc)
        layout.addWidget(self.problems)
        layout.addWidget(about)
        layout.addWidget(self.check_box)
        layout.addWidget(self.params_box)
        layout.addWidget(self.no_params)
        layout.addStretch(1)

    # ---- loading -----------------------------------------------------------------------
    def load(self, node_id: str) -> None:
        # A field still being typed in is finished now, for the node it was typed for:
        # its focus-out must not land on the next node.
        focused = QApplication.focusWidget()
        if focused is not None and self.isAncestorOf(focused) and node_id != self.node_id:
            focused.clearFocus()
        node = self.document.graph.nodes[node_id]
        self.node_id = node_id
        if self._built_for != (node_id, node.type):
            self._build(node.type)
            self._built_for = (node_id, node.type)
        set_error(self.id_message, None)
        self.refresh_header()
        for name in self.fields:
            self.refresh_param(name)
        self.show_analysis(self.document.analysis)
        self.show_grad_check((self.grad_checks or {}).get(node_id))

    def show_grad_check(self, check) -> None:
        """The details of a ``core.probe.GradCheck`` of the node shown; None hides them."""
        if check is None or check.node != self.node_id:
            self.check_box.setVisible(False)
            self.check_text.clear()
            return
        from gui.training.grad_check import details_html
        self.check_box.setTitle(f"Gradient check: {check.verdict}")
        self.check_text.setText(details_html(check))
        self.check_box.setVisible(True)

    def _build(self, type_name: str) -> None:
        clear_form(self.params_form)
        self.fields = {}
        cls = catalogue.get(type_name)
        category = cls.category if cls else ""
        self.icon.setPixmap(icons.category_icon(category, 24).pixmap(24, 24))
        self.title.setText(clipped(type_name, 60))
        self.category.setText(f"{category} node" if cls else "unknown node type")
        self.doc.setText(cls.doc if cls else "This type is not in the catalogue; its "
                         "parameters are kept as they are.")
        specs = cls.all_params_spec() if cls else {}
        for name, spec in specs.items():
            field = make_field(spec, self)
            field.setObjectName(f"param_{name}")
            field.committed.connect(partial(self._commit_param, name))
            self.fields[name] = field
            add_row(self.params_form, row_label(name, spec.doc), field)
        self.params_box.setVisible(bool(specs))
        self.no_params.setVisible(not specs)

    def renamed(self, new_id: str) -> None:
        self.node_id = new_id
        if self._built_for is not None:
            self._built_for = (new_id, self._built_for[1])
        self.refresh_header()

    def refresh_header(self) -> None:
        node = self.document.graph.nodes.get(self.node_id)
        if node is None:
            return
        with QSignalBlocker(self.id_edit):
            self.id_edit.setText(node.id)
        with QSignalBlocker(self.label_edit):
            self.label_edit.setText(_label(node))
        set_error(self.id_message, None)

    def _committed_label(self) -> str:
        node = self.document.graph.nodes.get(self.node_id)
        return _label(node) if node is not None else ""

    def refresh_param(self, name: str | None) -> None:
        node = self.document.graph.nodes.get(self.node_id)
        field = self.fields.get(name)
        if node is not None and field is not None:
            field.set_value(copy.deepcopy(node.params.get(name)))

    def show_analysis(self, analysis) -> None:
        nid = self.node_id
        if nid not in self.document.graph.nodes:
            return
        node = self.document.graph.nodes[nid]
        self.shape_label.setText(lengths_shape_text(analysis, nid)
                                 or fmt_shape(analysis.shapes.get(nid)))
        note = lengths_note(analysis, nid)
        self.lengths_label.setText(note or "")
        self._about_form.setRowVisible(self.lengths_label, note is not None)
        self.count_label.setText(self._weights_text(analysis, nid))
        problems = analysis.problems_of(nid)
        by_param: dict[str, str] = {}
        for p in problems:
            if p.param in self.fields and p.node == nid:
                by_param.setdefault(p.param, p.message)
        for name, field in self.fields.items():
            field.set_problem(by_param.get(name))
        if problems:
            items = "".join(f"<li>{html.escape(clipped(strip_node_prefix(str(p), nid)))}</li>"
                            for p in problems)
            set_error(self.problems, f"<b>Problems</b><ul style='margin:0'>{items}</ul>")
        else:
            set_error(self.problems, None)
        for field in self.fields.values():
            if isinstance(field, NodeRefField):
                field.set_candidates([n for n, other in self.document.graph.nodes.items()
                                      if n != nid and other.type == node.type])

    @staticmethod
    def _weights_text(analysis, nid: str) -> str:
        root = analysis.shared_root.get(nid, nid)
        if root != nid:
            return f"shared with {root}"
        layer = analysis.layers.get(nid)
        count = analysis.param_count(nid)
        if layer is None or not layer.param_names:
            return "none"
        if analysis.shapes.get(nid) is None:
            return "unknown until the input shape is known"
        try:
            shapes = layer.param_shapes()
        except (KeyError, IndexError, TypeError, ValueError):
            shapes = {}
        detail = ", ".join(f"{k} {fmt_shape(s)}" for k, s in shapes.items())
        return f"{count:,}" + (f"  ({detail})" if detail else "")

    # ---- edits -------------------------------------------------------------------------
    def _commit_param(self, name: str, raw: Any) -> None:
        if self.node_id is None:
            return
        try:
            self.document.set_param(self.node_id, name, raw)
        except NeuroCanvasError as e:
            self.fields[name].show_input_error(e.message)

    def _commit_id(self) -> None:
        new = self.id_edit.text().strip()
        if self.node_id is None or new == self.node_id:
            set_error(self.id_message, None)
            return
        try:
            self.document.rename(self.node_id, new)
        except GraphEditError as e:
            set_error(self.id_message, e.message)
        except NeuroCanvasError as e:
            set_error(self.id_message, e.message)

    def _commit_label(self) -> None:
        if self.node_id is None:
            return
        try:
            self.document.set_label(self.node_id, self.label_edit.text().strip() or None)
        except NeuroCanvasError as e:
            set_error(self.id_message, e.message)


def _label(node) -> str:
    """The node's caption; a label that is not text (kept from a file) shows as none."""
    label = node.extra.get("label")
    return label if isinstance(label, str) else ""
