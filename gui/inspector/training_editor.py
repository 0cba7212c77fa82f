"""The inspector's page for the graph's name and training settings (docs/format.md section 2,
"Training section"): dataset (source, built-in and its options, or a file with what it
holds), optimizer, loop, regularization and clipping.

Every finished edit is one ``set_training`` (or ``set_name``) call, so one undo step; a
setting ``parse_training`` rejects is shown under its field and changes nothing. Widgets are
rebuilt only when the dataset source, built-in dataset or optimizer type changes.
"""
from __future__ import annotations

import copy
import os
from functools import partial
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core import catalogue, datasets, optim
from core.datasets.files import class_mapping, token_settings, token_vocabulary
from core.errors import NeuroCanvasError, ParamError
from core.params import Bool, Choice, Float, Int, ParamSpec
from core.training import parse_training
from gui.inspector.widgets import (
    add_row,
    clear_form,
    error_label,
    fmt_shape,
    muted,
    new_form,
    row_label,
    set_error,
)
from gui.param_fields import ParamField, clipped, make_field, route_edit_keys


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


CLASSES_READ_LIMIT = 50 * 1024 ** 2  # bytes of a csv table read in the editor to pin its classes
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


def _text(v: Any) -> str | None:
    """``v`` when it is a string, else None (a name in a file may be a list, a number)."""
    return v if isinstance(v, str) else None


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
    """The graph's name and training settings (docs/format.md section 2, "Training
    section")."""

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
        hint = muted(QLabel("Select a node to edit it; these settings belong to the graph.",
                             self))
        hint.setWordWrap(True)

        # graph
        self.name_edit = QLineEdit(self)
        self.name_edit.setObjectName("graphNameEdit")
        self.name_edit.editingFinished.connect(self._commit_name)
        # Ctrl+Z here undoes typing only while it is not yet committed, else the graph
        route_edit_keys(self.name_edit,
                        lambda: self.name_edit.text() != (self.document.graph.name or ""),
                        self._show_name)
        graph_box = QGroupBox("Graph", self)
        graph_form = new_form()
        graph_box.setLayout(graph_form)
        graph_form.addRow("Name", self.name_edit)

        # dataset
        self.source_combo = QComboBox(self)
        self.source_combo.setObjectName("datasetSource")
        for key, text in _SOURCES:
            self.source_combo.addItem(text, key)
        self.source_combo.activated.connect(self._commit_source)
        self.dataset_message = error_label(self)
        self.ds_detail = QWidget(self)
        self.ds_form = new_form()
        self.ds_form.setContentsMargins(0, 0, 0, 0)
        self.ds_detail.setLayout(self.ds_form)
        ds_box = QGroupBox("Dataset", self)
        ds_form = new_form()
        ds_box.setLayout(ds_form)
        ds_form.addRow("Source", self.source_combo)
        ds_form.addRow(self.ds_detail)
        self._add(ds_form, "validation_split", "Validation split")
        ds_form.addRow(self.dataset_message)
        self.builtin_combo: QComboBox | None = None
        self.mapping_box = QWidget(self)
        self.mapping_form = new_form()
        self.mapping_form.setContentsMargins(0, 0, 0, 0)
        self.mapping_box.setLayout(self.mapping_form)

        # optimizer
        self.optimizer_combo = QComboBox(self)
        self.optimizer_combo.setObjectName("optimizerType")
        for name in optim.OPTIMIZER_PARAMS:
            self.optimizer_combo.addItem(name, name)
        self.optimizer_combo.activated.connect(self._commit_optimizer_type)
        self.opt_detail = QWidget(self)
        self.opt_form = new_form()
        self.opt_form.setContentsMargins(0, 0, 0, 0)
        self.opt_detail.setLayout(self.opt_form)
        self.optimizer_message = error_label(self)
        opt_box = QGroupBox("Optimizer", self)
        opt_form = new_form()
        opt_box.setLayout(opt_form)
        opt_form.addRow("Type", self.optimizer_combo)
        opt_form.addRow(self.opt_detail)
        opt_form.addRow(self.optimizer_message)

        # loop
        loop_box = QGroupBox("Training", self)
        loop_form = new_form()
        loop_box.setLayout(loop_form)
        self._add(loop_form, "batch_size", "Batch size")
        self._add(loop_form, "epochs", "Epochs")
        self._add(loop_form, "shuffle", "Shuffle")
        self._add(loop_form, "seed", "Seed")
        self._add(loop_form, "device", "Device")

        # regularization and clipping
        reg_box = QGroupBox("Regularization", self)
        reg_form = new_form()
        reg_box.setLayout(reg_form)
        self._add(reg_form, "regularization.l1", "L1")
        self._add(reg_form, "regularization.l2", "L2")
        self.clip_combo = QComboBox(self)
        self.clip_combo.setObjectName("clipMode")
        for key, text in _CLIP_MODES:
            self.clip_combo.addItem(text, key)
        self.clip_combo.activated.connect(self._commit_clip_mode)
        reg_form.addRow(row_label("Gradient clipping",
                                   "clip the global gradient norm or each element"),
                        self.clip_combo)
        self._add(reg_form, "clip.amount", "Clip at", resettable=False)
        self.fields["clip.amount"].committed.disconnect()
        self.fields["clip.amount"].committed.connect(self._commit_clip_amount)

        self.message = error_label(self)
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
        add_row(form, row_label(label, spec.doc), field)
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
        # a file may hold anything: what is not text names no source, dataset or optimizer
        source = _text(ds.get("source", "builtin"))
        with QSignalBlocker(self.source_combo):
            self.source_combo.setCurrentIndex(max(0, self.source_combo.findData(source)))
        self._build_dataset(source, _text(ds.get("name")) if source == "builtin" else None)
        opt = t.get("optimizer") if isinstance(t.get("optimizer"), dict) else {}
        kind = _text(opt.get("type", "sgd"))
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
        set_error(self.message, None)
        set_error(self.dataset_message, self._dataset_problem())
        set_error(self.optimizer_message, None)
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
                set_error(self.dataset_message, e.message if key == "dataset"
                           else f"{key}: {e.message}")
            elif key.startswith("optimizer"):
                set_error(self.optimizer_message, f"{key}: {e.message}")
            else:
                set_error(self.message, str(e))

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
            if not isinstance(path, str):
                return "Choose a file: the path is not text."
            try:
                found = self._resolve(path).is_file()
            except (OSError, ValueError) as e:  # a name too long, a NUL
                return clipped(f"Cannot use this path: {e}", 300)
            if not found:
                return clipped(f"No such file: {self._resolve(path)}", 300)
            if source == "csv" and not ds.get("target_column"):
                return "Name the column that holds the targets."
        return None

    # ---- dataset section ---------------------------------------------------------------
    def _build_dataset(self, source: str, builtin: str | None) -> None:
        ds = self.training.get("dataset") if isinstance(self.training.get("dataset"),
                                                        dict) else {}
        key = (source, builtin, _text(ds.get("path")) if source in ("npz", "csv") else None)
        if key == self._dataset_key:
            return
        self._dataset_key = key
        for k in [k for k in self.fields if k.startswith("dataset.")]:
            del self.fields[k]
        self.mapping_box.setParent(None)  # kept across rebuilds; removeRow would delete it
        clear_form(self.ds_form)
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
            add_row(self.ds_form, "Dataset", combo)
            if builtin in datasets.known_builtins():
                about = muted(QLabel(datasets.known_builtins()[builtin], self))
                about.setWordWrap(True)
                add_row(self.ds_form, about)
                for opt, spec in datasets.builtin_options(builtin).items():
                    self._add(self.ds_form, f"dataset.{opt}", opt, spec)
        else:
            path_field = self._add_path_row(source)
            path_field.set_value(ds.get("path"))
            if source == "csv":
                self._add(self.ds_form, "dataset.target_column", "Target column")
                self._add(self.ds_form, "dataset.delimiter", "Delimiter")
            info = muted(QLabel(self._file_info(source, _text(ds.get("path"))), self))
            info.setObjectName("datasetInfo")
            info.setWordWrap(True)
            info.setTextFormat(Qt.PlainText)
            add_row(self.ds_form, info)
            if source == "npz":
                add_row(self.ds_form, self.mapping_box)
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
        add_row(self.ds_form, row_label("File", spec.doc), box)
        return field

    def _file_info(self, source: str, path: str | None) -> str:
        if not path:
            return ("An .npz archive holds one array per field; each Input and Target node "
                    "reads the field its 'field' parameter names (x and y by default)."
                    if source == "npz" else
                    "A header row, then one row of numbers per sample: x is every column "
                    "but the target column, y is the target column.")
        try:
            p = self._resolve(path)
            if not p.is_file():
                return ""
        except (OSError, ValueError):  # a name too long, a NUL: the problem says why
            return ""
        if source == "npz":
            try:
                arrays = datasets.npz_arrays(p)
            except NeuroCanvasError as e:  # the file is shown above: the message alone
                return f"Cannot read the archive: {e.message}"
            return "Arrays: " + ", ".join(f"{k} {fmt_shape(s)} {d}"
                                          for k, (s, d) in arrays.items())
        try:
            header = datasets.csv_header(p, (_get(self.training, "dataset.delimiter") or ","))
        except NeuroCanvasError as e:
            return f"Cannot read the file: {e.message}"
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
                arrays = datasets.npz_arrays(self._resolve(ds["path"]))
            except NeuroCanvasError:  # _file_info says why
                arrays = {}
        key = (tuple(readers), tuple(arrays))
        if key == self._mapping_key:
            return
        self._mapping_key = key
        clear_form(self.mapping_form)
        if readers:
            add_row(self.mapping_form, muted(QLabel("Field each data node reads:", self)))
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
                msg = error_label(box)
                set_error(msg, f"the file has no array '{current}'")
                lay.addWidget(msg)
            add_row(self.mapping_form, row_label(f"{nid} ({type_name})"), box)

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
        if key in ("dataset.path", "dataset.target_column", "dataset.delimiter",
                   "dataset.sequence_column"):
            self._pin_classes(new, vocabulary=key != "dataset.target_column")
        label = key.split(".")[-1]
        self._set_training(new, f"Set {label}" if raw is not None else f"Reset {label}")

    def _pin_classes(self, training: dict, vocabulary: bool = False) -> None:
        """A csv table whose target column holds names: its classes (sorted) go into the
        dataset section in the same edit (a new file or column replaces them), so the
        mapping to indices is kept with the graph and stays as it is when rows are added
        later (docs/format.md section 2.8). Only for files small enough to read at once;
        otherwise the sorted names apply when training."""
        ds = training.get("dataset")
        if not isinstance(ds, dict) or ds.get("source") != "csv":
            return
        if token_settings(ds) is not None:  # a table of token sequences: its vocabulary
            if vocabulary:
                self._pin_vocabulary(ds)
            return
        ds.pop("classes", None)  # another file or column: its own classes, if any
        try:
            if self._resolve(ds.get("path") or "").stat().st_size > CLASSES_READ_LIMIT:
                return
            classes = class_mapping(ds, self._base_dir())
        except (NeuroCanvasError, OSError, ValueError, TypeError):
            return  # the problems are shown where the file and column are
        if classes is not None:
            ds["classes"] = classes

    def _pin_vocabulary(self, ds: dict) -> None:
        """The tokens of a table of token sequences (sorted) go into its ``vocabulary`` when
        the file or its sequence column is chosen, so the ids stay as they are when the file
        grows (docs/format.md section 2.8)."""
        ds.pop("vocabulary", None)
        try:
            if self._resolve(ds.get("path") or "").stat().st_size > CLASSES_READ_LIMIT:
                return
            ds["vocabulary"] = token_vocabulary(ds, self._base_dir())
        except (NeuroCanvasError, OSError, ValueError, TypeError):
            return  # the problems are shown where the file and columns are

    def _set_training(self, new: dict, text: str) -> None:
        self._push(lambda: self.document.set_training(new, text))

    def _push(self, edit) -> None:
        try:
            edit()
        except NeuroCanvasError as e:
            set_error(self.message, str(e))

    def _show_name(self) -> None:
        with QSignalBlocker(self.name_edit):
            self.name_edit.setText(self.document.graph.name or "")

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
        clear_form(self.opt_form)
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
