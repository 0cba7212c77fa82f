"""The inspector: edits the selected node, or the graph's training settings when none is.

Every finished edit is one document call (``set_param``, ``rename``, ``set_label``,
``set_training``, ``set_name``), so one undo step; invalid input is shown under its field and
changes nothing. The inspector follows the model: it listens to the graph's change events (a
value changed by undo, a rename, a removed node) and to ``analysis_changed`` (shapes,
parameter counts, problems), and only ever *shows* values while doing so, so a refresh never
pushes a command. Widgets are rebuilt only when the node type, dataset source, built-in
dataset or optimizer type changes, never per keystroke. While the document is locked
(training runs), everything is read-only.
"""
from __future__ import annotations

import copy
import csv
import html
import os
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from core import catalogue, datasets, optim
from core.errors import GraphEditError, NeuroCanvasError, ParamError
from core.graph import GraphEvent
from core.params import Bool, Choice, Float, Int, ParamSpec
from core.training import parse_training
from gui import icons, theme
from gui.param_fields import NodeRefField, ParamField, make_field

# ---- small helpers ---------------------------------------------------------------------------


def _muted(label: QLabel) -> QLabel:
    label.setForegroundRole(QPalette.PlaceholderText)
    return label


def _error_label(parent: QWidget | None = None) -> QLabel:
    label = QLabel(parent)
    label.setObjectName("fieldMessage")
    label.setWordWrap(True)
    label.setTextFormat(Qt.PlainText)
    label.setVisible(False)
    return label


def _set_error(label: QLabel, text: str | None) -> None:
    """Show ``text`` in the theme's error colour, or hide the label."""
    if text:
        pal = label.palette()
        pal.setColor(QPalette.WindowText, theme.current().color("error"))
        label.setPalette(pal)
    label.setText(text or "")
    label.setVisible(bool(text))


def _form() -> QFormLayout:
    form = QFormLayout()
    form.setContentsMargins(8, 6, 8, 8)
    form.setHorizontalSpacing(10)
    form.setVerticalSpacing(6)
    form.setFieldGrowthPolicy(QFormLayout.AllNonFixedFieldsGrow)
    form.setRowWrapPolicy(QFormLayout.DontWrapRows)
    form.setLabelAlignment(Qt.AlignRight | Qt.AlignVCenter)
    return form


def _add_row(form: QFormLayout, *args) -> None:
    """``form.addRow(*args)``, the widgets shown at once: a widget added to a visible
    parent otherwise appears only after a queued show."""
    form.addRow(*args)
    for w in args:
        if isinstance(w, QWidget):
            w.show()


def _clear_form(form: QFormLayout) -> None:
    while form.rowCount():
        form.removeRow(0)


def _row_label(name: str, doc: str = "") -> QLabel:
    label = QLabel(name)
    if doc:
        label.setToolTip(doc)
    return label


def _fmt_shape(shape) -> str:
    if shape is None:
        return "unknown"
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _strip_node_prefix(message: str, node_id: str) -> str:
    prefix = f"node '{node_id}'"
    if message.startswith(prefix):
        rest = message[len(prefix):]
        return rest[2:] if rest.startswith(": ") else rest.lstrip()
    return message


class Inspector(QWidget):
    """The property editor (objectName ``inspector``). ``show_node(None)`` shows the
    graph's training settings."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("inspector")
        self.document = document
        self._node_id: str | None = None

        self.banner = QLabel(self)
        self.banner.setObjectName("inspectorBanner")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setMargin(6)
        self.banner.setAutoFillBackground(True)

        self.node_page = NodeEditor(document, self)
        self.training_page = TrainingEditor(document, self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.node_page)
        self.stack.addWidget(self.training_page)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(self.stack)
        self.scroll = scroll

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(scroll, 1)

        graph = document.graph
        graph.subscribe(self._on_graph_event)
        self.destroyed.connect(lambda *_: graph.unsubscribe(self._on_graph_event))
        document.analysis_changed.connect(self._on_analysis)
        document.locked_changed.connect(self._on_locked)
        document.graph_reset.connect(self._on_reset)
        self.show_node(None)
        self._on_locked(document.locked)

    # ---- public ------------------------------------------------------------------------
    def show_node(self, node_id: str | None) -> None:
        """Edit this node, or (None, or a node that is not there) the training settings."""
        if node_id is not None and node_id not in self.document.graph.nodes:
            node_id = None
        self._node_id = node_id
        if node_id is None:
            self.stack.setCurrentWidget(self.training_page)
            self.training_page.refresh()
        else:
            self.stack.setCurrentWidget(self.node_page)
            self.node_page.load(node_id)

    def current_node(self) -> str | None:
        return self._node_id

    def field(self, name: str) -> ParamField:
        """The field of parameter ``name`` of the node shown (tests)."""
        return self.node_page.fields[name]

    def training_field(self, key: str) -> ParamField:
        """The field of a training setting, by dotted key: ``batch_size``, ``optimizer.lr``,
        ``regularization.l2``, ``dataset.noise``, ``clip.amount`` ... (tests)."""
        return self.training_page.fields[key]

    def apply_theme(self) -> None:
        """Called by the main window after a theme switch: icons and message colours."""
        for page in (self.node_page, self.training_page):
            for field in page.fields.values():
                field.reset_button.setIcon(icons.reset_icon())
        self.node_page._built_for = None  # the header icon is painted per theme
        self.show_node(self._node_id)
        self._on_locked(self.document.locked)

    # ---- following the model ---------------------------------------------------------
    def _on_graph_event(self, ev: GraphEvent) -> None:
        try:
            self._follow(ev)
        except RuntimeError:  # the widgets are being destroyed
            self.document.graph.unsubscribe(self._on_graph_event)

    def _follow(self, ev: GraphEvent) -> None:
        nid = self._node_id
        if ev.kind == "node_renamed" and nid is not None and ev.old == nid:
            self._node_id = ev.new
            self.node_page.renamed(ev.new)
        elif ev.kind == "node_removed" and nid is not None and ev.node_id == nid:
            self.show_node(None)
        elif ev.kind == "param_changed" and nid is not None and ev.node_id == nid:
            self.node_page.refresh_param(ev.name)
        elif ev.kind == "node_extra_changed" and nid is not None and ev.node_id == nid:
            self.node_page.refresh_header()
        elif ev.kind in ("training_changed", "name_changed") and nid is None:
            self.training_page.refresh()

    def _on_reset(self) -> None:
        self.show_node(self._node_id)

    def _on_analysis(self, analysis) -> None:
        if self._node_id is not None and self._node_id in self.document.graph.nodes:
            self.node_page.show_analysis(analysis)
        elif self._node_id is None:
            self.training_page.refresh_nodes()

    def _on_locked(self, locked: bool) -> None:
        self.stack.setEnabled(not locked)
        if locked:
            pal = self.banner.palette()
            pal.setColor(QPalette.Window, theme.current().color("highlight"))
            pal.setColor(QPalette.WindowText, theme.current().color("base"))
            self.banner.setPalette(pal)
            self.banner.setText("Training is running: the graph is read-only until it stops.")
        self.banner.setVisible(locked)


# ---------------------------------------------------------------------------------------------
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
        self.category = _muted(QLabel(self))
        head = QHBoxLayout()
        head.setSpacing(8)
        head.addWidget(self.icon, 0, Qt.AlignTop)
        names = QVBoxLayout()
        names.setSpacing(0)
        names.addWidget(self.title)
        names.addWidget(self.category)
        head.addLayout(names, 1)
        self.doc = _muted(QLabel(self))
        self.doc.setWordWrap(True)

        self.id_edit = QLineEdit(self)
        self.id_edit.setObjectName("nodeIdEdit")
        self.id_edit.setToolTip("The node's id: unique; letters, digits, '_' and '-'")
        self.id_edit.editingFinished.connect(self._commit_id)
        self.id_message = _error_label(self)
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
        self.shape_label = QLabel(self)
        self.shape_label.setObjectName("outputShape")
        self.shape_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.count_label = QLabel(self)
        self.count_label.setObjectName("paramCount")
        self.count_label.setWordWrap(True)

        about = QGroupBox("Node", self)
        about_form = _form()
        about.setLayout(about_form)
        about_form.addRow("Id", id_box)
        about_form.addRow("Label", self.label_edit)
        about_form.addRow("Output", self.shape_label)
        about_form.addRow("Weights", self.count_label)

        self.problems = _error_label(self)
        self.problems.setObjectName("nodeProblems")
        self.problems.setTextFormat(Qt.RichText)

        self.params_box = QGroupBox("Parameters", self)
        self.params_form = _form()
        self.params_box.setLayout(self.params_form)
        self.no_params = _muted(QLabel("This node type has no parameters.", self))

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)
        layout.addLayout(head)
        layout.addWidget(self.doc)
        layout.addWidget(self.problems)
        layout.addWidget(about)
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
        _set_error(self.id_message, None)
        self.refresh_header()
        for name in self.fields:
            self.refresh_param(name)
        self.show_analysis(self.document.analysis)

    def _build(self, type_name: str) -> None:
        _clear_form(self.params_form)
        self.fields = {}
        cls = catalogue.get(type_name)
        category = cls.category if cls else ""
        self.icon.setPixmap(icons.category_icon(category, 24).pixmap(24, 24))
        self.title.setText(type_name)
        self.category.setText(f"{category} node" if cls else "unknown node type")
        self.doc.setText(cls.doc if cls else "This type is not in the catalogue; its "
                         "parameters are kept as they are.")
        specs = cls.all_params_spec() if cls else {}
        for name, spec in specs.items():
            field = make_field(spec, self)
            field.setObjectName(f"param_{name}")
            field.committed.connect(partial(self._commit_param, name))
            self.fields[name] = field
            _add_row(self.params_form, _row_label(name, spec.doc), field)
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
            self.label_edit.setText(node.extra.get("label") or "")
        _set_error(self.id_message, None)

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
        self.shape_label.setText(_fmt_shape(analysis.shapes.get(nid)))
        self.count_label.setText(self._weights_text(analysis, nid))
        problems = analysis.problems_of(nid)
        by_param: dict[str, str] = {}
        for p in problems:
            if p.param in self.fields and p.node == nid:
                by_param.setdefault(p.param, p.message)
        for name, field in self.fields.items():
            field.set_problem(by_param.get(name))
        if problems:
            items = "".join(f"<li>{html.escape(_strip_node_prefix(str(p), nid))}</li>"
                            for p in problems)
            _set_error(self.problems, f"<b>Problems</b><ul style='margin:0'>{items}</ul>")
        else:
            _set_error(self.problems, None)
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
        detail = ", ".join(f"{k} {_fmt_shape(s)}" for k, s in shapes.items())
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
            _set_error(self.id_message, None)
            return
        try:
            self.document.rename(self.node_id, new)
        except GraphEditError as e:
            _set_error(self.id_message, e.message)
        except NeuroCanvasError as e:
            _set_error(self.id_message, e.message)

    def _commit_label(self) -> None:
        if self.node_id is None:
            return
        try:
            self.document.set_label(self.node_id, self.label_edit.text().strip() or None)
        except NeuroCanvasError as e:
            _set_error(self.id_message, e.message)


# ---------------------------------------------------------------------------------------------
class _Text(ParamSpec):
    """A non-empty string (a file path, a column name)."""

    def coerce(self, value):
        if not isinstance(value, str) or not value.strip():
            raise self.fail("a non-empty text", value)
        return value


class _Char(ParamSpec):
    def coerce(self, value):
        if not isinstance(value, str) or len(value) != 1:
            raise self.fail("one character", value)
        return value


_SOURCES = (("builtin", "Built-in"), ("npz", "NumPy .npz file"), ("csv", "CSV file"))
_CLIP_MODES = ((None, "none"), ("norm", "by global norm"), ("value", "by value"))

TRAINING_SPECS: dict[str, ParamSpec] = {
    "validation_split": Float(0.0, "fraction of the samples held out for validation",
                              min=0.0, max=0.9),
    "batch_size": Int(32, "samples per optimizer step", min=1),
    "epochs": Int(10, "passes over the training samples", min=1),
    "shuffle": Bool(True, "shuffle the training samples every epoch"),
    "seed": Int(0, "seed of the initial weights, the shuffling and dropout", min=0),
    "device": Choice("auto", "where training runs; auto uses a GPU when there is one",
                     choices=("auto", "cpu", "gpu")),
    "regularization.l1": Float(0.0, "λ1: adds λ1·Σ|w| over the weights to the loss", min=0.0),
    "regularization.l2": Float(0.0, "λ2: adds λ2·Σw² over the weights to the loss", min=0.0),
    "clip.amount": Float(doc="the largest gradient norm (by norm) or element (by value)",
                         min=0.0, min_open=True),
    "dataset.path": _Text(doc="the data file; a relative path starts at the graph's folder"),
    "dataset.target_column": _Text(doc="the csv column holding the targets (y)"),
    "dataset.delimiter": _Char(",", "the character between csv cells"),
}


def _get(d: dict, key: str) -> Any:
    cur: Any = d
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _with(d: dict, key: str, value: Any) -> dict:
    """A deep copy of ``d`` with ``key`` (dotted) set, or removed when ``value`` is None;
    an object left empty is removed too."""
    out = copy.deepcopy(d)
    parts = key.split(".")
    cur = out
    trail = []
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            if value is None:
                return out
            nxt = cur[part] = {}
        trail.append((cur, part))
        cur = nxt
    if value is None:
        cur.pop(parts[-1], None)
        for parent, part in reversed(trail):
            if not parent[part]:
                del parent[part]
    else:
        cur[parts[-1]] = copy.deepcopy(value)
    return out


class TrainingEditor(QWidget):
    """The graph's name and training settings (SPEC section 2, "Training section")."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.document = document
        self.fields: dict[str, ParamField] = {}
        self._dataset_key: tuple | None = None
        self._optimizer_key: str | None = None
        self._mapping_key: tuple | None = None

        title = QLabel("Training settings", self)
        f = QFont(self.font())
        f.setBold(True)
        f.setPointSizeF(f.pointSizeF() * 1.15)
        title.setFont(f)
        hint = _muted(QLabel("Select a node to edit it; these settings belong to the graph.",
                             self))
        hint.setWordWrap(True)

        # graph
        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("graphNameEdit")
        self.name_edit.editingFinished.connect(self._commit_name)
        graph_box = QGroupBox("Graph", self)
        graph_form = _form()
        graph_box.setLayout(graph_form)
        graph_form.addRow("Name", self.name_edit)

        # dataset
        self.source_combo = QComboBox(self)
        self.source_combo.setObjectName("datasetSource")
        for key, text in _SOURCES:
            self.source_combo.addItem(text, key)
        self.source_combo.activated.connect(self._commit_source)
        self.dataset_message = _error_label(self)
        self.ds_detail = QWidget(self)
        self.ds_form = _form()
        self.ds_form.setContentsMargins(0, 0, 0, 0)
        self.ds_detail.setLayout(self.ds_form)
        ds_box = QGroupBox("Dataset", self)
        ds_form = _form()
        ds_box.setLayout(ds_form)
        ds_form.addRow("Source", self.source_combo)
        ds_form.addRow(self.ds_detail)
        self._add(ds_form, "validation_split", "Validation split")
        ds_form.addRow(self.dataset_message)
        self.builtin_combo: QComboBox | None = None
        self.mapping_box = QWidget(self)
        self.mapping_form = _form()
        self.mapping_form.setContentsMargins(0, 0, 0, 0)
        self.mapping_box.setLayout(self.mapping_form)

        # optimizer
        self.optimizer_combo = QComboBox(self)
        self.optimizer_combo.setObjectName("optimizerType")
        for name in optim.OPTIMIZER_PARAMS:
            self.optimizer_combo.addItem(name, name)
        self.optimizer_combo.activated.connect(self._commit_optimizer_type)
        self.opt_detail = QWidget(self)
        self.opt_form = _form()
        self.opt_form.setContentsMargins(0, 0, 0, 0)
        self.opt_detail.setLayout(self.opt_form)
        self.optimizer_message = _error_label(self)
        opt_box = QGroupBox("Optimizer", self)
        opt_form = _form()
        opt_box.setLayout(opt_form)
        opt_form.addRow("Type", self.optimizer_combo)
        opt_form.addRow(self.opt_detail)
        opt_form.addRow(self.optimizer_message)

        # loop
        loop_box = QGroupBox("Training", self)
        loop_form = _form()
        loop_box.setLayout(loop_form)
        self._add(loop_form, "batch_size", "Batch size")
        self._add(loop_form, "epochs", "Epochs")
        self._add(loop_form, "shuffle", "Shuffle")
        self._add(loop_form, "seed", "Seed")
        self._add(loop_form, "device", "Device")

        # regularization and clipping
        reg_box = QGroupBox("Regularization", self)
        reg_form = _form()
        reg_box.setLayout(reg_form)
        self._add(reg_form, "regularization.l1", "L1")
        self._add(reg_form, "regularization.l2", "L2")
        self.clip_combo = QComboBox(self)
        self.clip_combo.setObjectName("clipMode")
        for key, text in _CLIP_MODES:
            self.clip_combo.addItem(text, key)
        self.clip_combo.activated.connect(self._commit_clip_mode)
        reg_form.addRow(_row_label("Gradient clipping",
                                   "clip the global gradient norm or each element"),
                        self.clip_combo)
        self._add(reg_form, "clip.amount", "Clip at", resettable=False)
        self.fields["clip.amount"].committed.disconnect()
        self.fields["clip.amount"].committed.connect(self._commit_clip_amount)

        self.message = _error_label(self)
        self.message.setObjectName("trainingMessage")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(8)
        layout.addWidget(title)
        layout.addWidget(hint)
        layout.addWidget(self.message)
        layout.addWidget(graph_box)
        layout.addWidget(ds_box)
        layout.addWidget(opt_box)
        layout.addWidget(loop_box)
        layout.addWidget(reg_box)
        layout.addStretch(1)

    def _add(self, form: QFormLayout, key: str, label: str, spec: ParamSpec | None = None,
             **kwargs) -> ParamField:
        spec = spec or TRAINING_SPECS[key]
        field = make_field(spec, self, **kwargs)
        field.setObjectName("training_" + key.replace(".", "_"))
        field.committed.connect(partial(self.commit, key))
        self.fields[key] = field
        _add_row(form, _row_label(label, spec.doc), field)
        return field

    @property
    def training(self) -> dict:
        return self.document.graph.training or {}

    # ---- showing -----------------------------------------------------------------------
    def refresh(self) -> None:
        """Show the settings as the graph holds them (rebuilding the parts that depend on
        the dataset source, built-in or optimizer type only when those changed)."""
        t = self.training
        with QSignalBlocker(self.name_edit):
            self.name_edit.setText(self.document.graph.name or "")
        ds = t.get("dataset") if isinstance(t.get("dataset"), dict) else {}
        source = ds.get("source", "builtin")
        with QSignalBlocker(self.source_combo):
            self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(source)))
        self._build_dataset(source, ds.get("name") if source == "builtin" else None)
        opt = t.get("optimizer") if isinstance(t.get("optimizer"), dict) else {}
        kind = opt.get("type", "sgd")
        with QSignalBlocker(self.optimizer_combo):
            self.optimizer_combo.setCurrentIndex(self.optimizer_combo.findData(kind))
        self._build_optimizer(kind if kind in optim.OPTIMIZER_PARAMS else None)
        clip = t.get("clip") if isinstance(t.get("clip"), dict) else {}
        mode = next(iter(clip), None) if clip else None
        with QSignalBlocker(self.clip_combo):
            self.clip_combo.setCurrentIndex(max(0, self.clip_combo.findData(mode)))
        for key, field in self.fields.items():
            if key == "clip.amount":
                field.set_value(clip.get(mode) if mode else None)
                field.setEnabled(mode is not None)
            elif key == "validation_split":
                split = t.get("validation_split", ds.get("validation_split"))
                field.set_value(split)
            else:
                field.set_value(copy.deepcopy(_get(t, key)))
            field.set_problem(None)
        self.refresh_nodes()
        self._validate()

    def _validate(self) -> None:
        """Show what parse_training finds wrong with the settings as they are."""
        _set_error(self.message, None)
        _set_error(self.dataset_message, self._dataset_problem())
        _set_error(self.optimizer_message, None)
        try:
            parse_training(self.training)
        except ParamError as e:
            key = (e.param or "").removeprefix("training.")
            if key.startswith("clip."):
                key = "clip.amount"
            field = self.fields.get(key)
            if field is not None:
                field.set_problem(e.message)
            elif key.startswith("dataset"):
                _set_error(self.dataset_message, e.message if key == "dataset"
                           else f"{key}: {e.message}")
            elif key.startswith("optimizer"):
                _set_error(self.optimizer_message, f"{key}: {e.message}")
            else:
                _set_error(self.message, str(e))

    def _base_dir(self) -> Path:
        path = self.document.path
        return Path(path).parent if path else Path.cwd()

    def _resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else self._base_dir() / p

    def _dataset_problem(self) -> str | None:
        ds = self.training.get("dataset")
        if not isinstance(ds, dict):
            return "Choose a dataset."
        source = ds.get("source")
        if source in ("npz", "csv"):
            path = ds.get("path")
            if not path:
                return "Choose a file."
            if not self._resolve(path).is_file():
                return f"No such file: {self._resolve(path)}"
            if source == "csv" and not ds.get("target_column"):
                return "Name the column that holds the targets."
        return None

    # ---- dataset section ---------------------------------------------------------------
    def _build_dataset(self, source: str, builtin: str | None) -> None:
        ds = self.training.get("dataset") if isinstance(self.training.get("dataset"),
                                                        dict) else {}
        key = (source, builtin, ds.get("path") if source in ("npz", "csv") else None)
        if key == self._dataset_key:
            return
        self._dataset_key = key
        for k in [k for k in self.fields if k.startswith("dataset.")]:
            del self.fields[k]
        self.mapping_box.setParent(None)  # kept across rebuilds; removeRow would delete it
        _clear_form(self.ds_form)
        self.builtin_combo = None
        if source == "builtin":
            combo = QComboBox(self)
            combo.setObjectName("builtinDataset")
            combo.setPlaceholderText("choose a dataset")
            for name, description in datasets.known_builtins().items():
                combo.addItem(name, name)
                combo.setItemData(combo.count() - 1, description, Qt.ToolTipRole)
            combo.setCurrentIndex(combo.findData(builtin))
            combo.activated.connect(self._commit_builtin)
            self.builtin_combo = combo
            _add_row(self.ds_form, "Dataset", combo)
            if builtin in datasets.known_builtins():
                about = _muted(QLabel(datasets.known_builtins()[builtin], self))
                about.setWordWrap(True)
                _add_row(self.ds_form, about)
                for opt, spec in datasets.builtin_options(builtin).items():
                    self._add(self.ds_form, f"dataset.{opt}", opt, spec)
        else:
            path_field = self._add_path_row(source)
            path_field.set_value(ds.get("path"))
            if source == "csv":
                self._add(self.ds_form, "dataset.target_column", "Target column")
                self._add(self.ds_form, "dataset.delimiter", "Delimiter")
            info = _muted(QLabel(self._file_info(source, ds.get("path")), self))
            info.setObjectName("datasetInfo")
            info.setWordWrap(True)
            info.setTextFormat(Qt.PlainText)
            _add_row(self.ds_form, info)
            if source == "npz":
                _add_row(self.ds_form, self.mapping_box)
        self._mapping_key = None

    def _add_path_row(self, source: str) -> ParamField:
        box = QWidget(self)
        row = QHBoxLayout(box)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        spec = TRAINING_SPECS["dataset.path"]
        field = make_field(spec, box, resettable=False)
        field.setObjectName("training_dataset_path")
        field.committed.connect(partial(self.commit, "dataset.path"))
        browse = QPushButton("Browse…", box)
        browse.setObjectName("browseDataset")
        browse.clicked.connect(partial(self._browse, source))
        row.addWidget(field, 1)
        row.addWidget(browse, 0, Qt.AlignTop)
        self.fields["dataset.path"] = field
        _add_row(self.ds_form, _row_label("File", spec.doc), box)
        return field

    def _file_info(self, source: str, path: str | None) -> str:
        if not path:
            return ("An .npz archive holds one array per field; each Input and Target node "
                    "reads the field its 'field' parameter names (x and y by default)."
                    if source == "npz" else
                    "A header row, then one row of numbers per sample: x is every column "
                    "but the target column, y is the target column.")
        p = self._resolve(path)
        if not p.is_file():
            return ""
        if source == "npz":
            try:
                arrays = npz_arrays(p)
            except (OSError, ValueError, zipfile.BadZipFile) as e:
                return f"Cannot read the archive: {e}"
            return "Arrays: " + ", ".join(f"{k} {_fmt_shape(s)} {d}"
                                          for k, (s, d) in arrays.items())
        try:
            header = csv_header(p, (_get(self.training, "dataset.delimiter") or ","))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            return f"Cannot read the file: {e}"
        return ("Columns: " + ", ".join(header) + ". Inputs read x (every column but the "
                "target), targets read y (the target column).")

    def _browse(self, source: str) -> None:
        pattern = ("NumPy archives (*.npz)" if source == "npz"
                   else "CSV files (*.csv *.tsv *.txt)") + ";;All files (*)"
        current = _get(self.training, "dataset.path")
        start = str(self._resolve(current).parent) if current else str(self._base_dir())
        chosen, _ = QFileDialog.getOpenFileName(self, "Choose the dataset file", start,
                                                pattern)
        if chosen:
            self.commit("dataset.path", self.relative_path(chosen))

    def relative_path(self, chosen: str) -> str:
        """A chosen file as the graph should store it: relative to the graph's folder when
        inside it, absolute otherwise."""
        if self.document.path is None:
            return chosen
        try:
            rel = Path(os.path.relpath(chosen, self._base_dir()))
        except ValueError:  # another drive
            return chosen
        return chosen if rel.parts and rel.parts[0] == ".." else rel.as_posix()

    def refresh_nodes(self) -> None:
        """The npz field mapping: which array each Input and Target node reads."""
        ds = self.training.get("dataset") if isinstance(self.training.get("dataset"),
                                                        dict) else {}
        if ds.get("source") != "npz":
            return
        graph = self.document.graph
        roles = {nid: getattr(catalogue.get(n.type), "data_role", None)
                 for nid, n in graph.nodes.items()}
        readers = [(nid, n.type, n.params.get("field")) for nid, n in graph.nodes.items()
                   if roles[nid] is not None]
        arrays: dict = {}
        if ds.get("path") and self._resolve(ds["path"]).is_file():
            try:
                arrays = npz_arrays(self._resolve(ds["path"]))
            except (OSError, ValueError, zipfile.BadZipFile):
                arrays = {}
        key = (tuple(readers), tuple(arrays))
        if key == self._mapping_key:
            return
        self._mapping_key = key
        _clear_form(self.mapping_form)
        if readers:
            _add_row(self.mapping_form, _muted(QLabel("Field each data node reads:", self)))
        for nid, type_name, field in readers:
            default = catalogue.get(type_name).params_spec["field"].default
            current = field or default
            combo = QComboBox(self)
            combo.setObjectName(f"fieldOf_{nid}")
            names = list(arrays) or [current]
            if current not in names:
                names.append(current)
            for name in names:
                combo.addItem(name, name)
            combo.setCurrentIndex(combo.findData(current))
            combo.activated.connect(partial(self._commit_field, nid, default, combo))
            box = QWidget(self)
            lay = QVBoxLayout(box)
            lay.setContentsMargins(0, 0, 0, 0)
            lay.setSpacing(2)
            lay.addWidget(combo)
            if arrays and current not in arrays:
                msg = _error_label(box)
                _set_error(msg, f"the file has no array '{current}'")
                lay.addWidget(msg)
            _add_row(self.mapping_form, _row_label(f"{nid} ({type_name})"), box)

    def _commit_field(self, node_id: str, default: str, combo: QComboBox, _index: int) -> None:
        name = combo.currentData()
        self._push(lambda: self.document.set_param(node_id, "field",
                                                   None if name == default else name))

    # ---- edits -------------------------------------------------------------------------
    def commit(self, key: str, raw: Any) -> None:
        """Set one setting (dotted key; None removes it) as one undo step, unless
        parse_training rejects that very setting, which is then shown under its field."""
        t = self.training
        if key == "validation_split":
            new = _with(t, "validation_split", raw)
            if isinstance(new.get("dataset"), dict):
                new["dataset"].pop("validation_split", None)
        else:
            new = _with(t, key, raw)
        try:
            parse_training(new)
        except ParamError as e:
            bad = (e.param or "").removeprefix("training.")
            if bad == key:
                field = self.fields.get("clip.amount" if key.startswith("clip.") else key)
                if field is not None:
                    field.show_input_error(e.message)
                return
        label = key.split(".")[-1]
        self._set_training(new, f"Set {label}" if raw is not None else f"Reset {label}")

    def _set_training(self, new: dict, text: str) -> None:
        self._push(lambda: self.document.set_training(new, text))

    def _push(self, edit) -> None:
        try:
            edit()
        except NeuroCanvasError as e:
            _set_error(self.message, str(e))

    def _commit_name(self) -> None:
        name = self.name_edit.text().strip()
        if not name:
            with QSignalBlocker(self.name_edit):
                self.name_edit.setText(self.document.graph.name or "")
            return
        self._push(lambda: self.document.set_name(name))

    def _commit_source(self, _index: int) -> None:
        source = self.source_combo.currentData()
        old = self.training.get("dataset") if isinstance(self.training.get("dataset"),
                                                         dict) else {}
        if old.get("source", "builtin") == source and "dataset" in self.training:
            return
        new_ds: dict[str, Any] = {"source": source}
        if source == "builtin":
            new_ds["name"] = "digits"
        elif old.get("source") in ("npz", "csv") and old.get("path"):
            new_ds["path"] = old["path"]  # switching npz <-> csv keeps the file
        if "validation_split" in old:
            new_ds["validation_split"] = old["validation_split"]
        self._set_training({**copy.deepcopy(self.training), "dataset": new_ds},
                           "Set dataset source")

    def _commit_builtin(self, _index: int) -> None:
        name = self.builtin_combo.currentData() if self.builtin_combo else None
        old = self.training.get("dataset") if isinstance(self.training.get("dataset"),
                                                         dict) else {}
        if name is None or (old.get("source") == "builtin" and old.get("name") == name):
            return
        allowed = set(datasets.builtin_options(name)) | {"validation_split"}
        new_ds = {"source": "builtin", "name": name,
                  **{k: v for k, v in old.items() if k in allowed}}
        self._set_training({**copy.deepcopy(self.training), "dataset": new_ds},
                           f"Dataset {name}")

    def _build_optimizer(self, kind: str | None) -> None:
        if kind == self._optimizer_key:
            return
        self._optimizer_key = kind
        for k in [k for k in self.fields if k.startswith("optimizer.")]:
            del self.fields[k]
        _clear_form(self.opt_form)
        for name, spec in (optim.OPTIMIZER_PARAMS.get(kind) or {}).items():
            self._add(self.opt_form, f"optimizer.{name}", name, spec)

    def _commit_optimizer_type(self, _index: int) -> None:
        kind = self.optimizer_combo.currentData()
        old = self.training.get("optimizer") if isinstance(self.training.get("optimizer"),
                                                           dict) else {}
        if old.get("type") == kind:
            return
        specs = optim.OPTIMIZER_PARAMS[kind]
        # hyperparameters the new type also takes are kept (a tuned lr stays)
        new_opt = {"type": kind, **{k: v for k, v in old.items() if k in specs}}
        self._set_training({**copy.deepcopy(self.training), "optimizer": new_opt},
                           f"Optimizer {kind}")

    def _commit_clip_mode(self, _index: int) -> None:
        mode = self.clip_combo.currentData()
        old = self.training.get("clip") if isinstance(self.training.get("clip"), dict) else {}
        old_mode = next(iter(old), None) if old else None
        if mode == old_mode:
            return
        new = copy.deepcopy(self.training)
        if mode is None:
            new.pop("clip", None)
        else:
            amount = old.get(old_mode) if old_mode else None
            new["clip"] = {mode: amount if amount else (5.0 if mode == "norm" else 1.0)}
        self._set_training(new, "Gradient clipping")

    def _commit_clip_amount(self, raw: Any) -> None:
        mode = self.clip_combo.currentData()
        if mode is None or raw is None:
            return
        self.commit(f"clip.{mode}", raw)


# ---- reading data files for the settings page (headers only; nothing is unpickled) --------
def npz_arrays(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{name: (shape, dtype)}`` of the arrays of an .npz archive, from their headers."""
    out = {}
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as f:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, _fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, _fortran, dtype = np.lib.format.read_array_header_2_0(f)
            out[info.filename[:-4]] = (tuple(shape), str(dtype))
    return out


def csv_header(path: str | os.PathLike, delimiter: str = ",") -> list[str]:
    """The column names of a csv file (its first non-blank row)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f, delimiter=delimiter):
            if any(c.strip() for c in row):
                return [c.strip() for c in row]
    return []


__all__ = ["Inspector", "NodeEditor", "TrainingEditor", "TRAINING_SPECS"]
