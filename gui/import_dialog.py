"""File > Import PyTorch...: a module file, its class and input shapes, imported by
``main.py import`` in a process of its own (docs/import.md).

The import runs the user's file and torch, so it runs in a child process (``QProcess``):
the editor never imports torch, never waits on it, and a module that crashes or hangs
takes only that process with it (Cancel ends it). The result, a graph file and a weights
file in a temporary folder, is handed to the window with ``imported``; a refusal (an
operation that has no node, a module that fails on the shapes) is shown in the dialog in
the command's own one line.
"""
from __future__ import annotations

import importlib.util
import json
import re
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QProcess, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

ROOT = Path(__file__).resolve().parent.parent
MAIN = ROOT / "main.py"
# class lines that look like modules, read from the text (the file is not run to list them)
CLASS_RE = re.compile(r"^class\s+([A-Za-z_]\w*)\s*(?:\(([^)]*)\))?\s*:", re.M)


def torch_available() -> bool:
    """Whether torch is installed, found without importing it (the menu entry shows then)."""
    return importlib.util.find_spec("torch") is not None


def module_classes(text: str) -> list[str]:
    """The classes of a Python file that derive from something named like a Module, first;
    the other classes after them."""
    found = CLASS_RE.findall(text)
    modules = [name for name, bases in found if "Module" in bases]
    return modules + [name for name, _ in found if name not in modules]


class ImportDialog(QDialog):
    """Asks for MODULE.py, CLASS, the input shapes (and dtype, constructor arguments, a
    state_dict), then runs ``main.py import``. ``imported(graph_text, weights_path, report)``
    is emitted when it succeeded; the dialog then closes."""

    imported = Signal(str, str, str)

    def __init__(self, parent: QWidget | None = None, start_dir: str | None = None):
        super().__init__(parent)
        self.setObjectName("importPyTorchDialog")
        self.setWindowTitle("Import PyTorch")
        self.setMinimumWidth(560)
        self._start_dir = start_dir or str(Path.home())
        self._proc: QProcess | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

        self.file_edit = QLineEdit(objectName="importFile")
        self.file_edit.setPlaceholderText("model.py")
        self.file_edit.editingFinished.connect(self._fill_classes)
        browse = QPushButton("Browse…", objectName="importBrowse")
        browse.clicked.connect(self._browse)
        file_row = QHBoxLayout()
        file_row.addWidget(self.file_edit, 1)
        file_row.addWidget(browse)

        self.class_box = QComboBox(objectName="importClass")
        self.class_box.setEditable(True)
        self.shapes_edit = QLineEdit(objectName="importShapes")
        self.shapes_edit.setPlaceholderText("1,28,28    (several inputs: 1,28,28; 10)")
        self.dtype_box = QComboBox(objectName="importDtype")
        self.dtype_box.addItems(["float32", "int64", "float64", "int32"])
        self.dtype_box.setToolTip("int64 for token indices fed to an Embedding")
        self.args_edit = QLineEdit(objectName="importArgs")
        self.args_edit.setPlaceholderText('constructor arguments as JSON, e.g. {"classes": 10}')
        self.weights_edit = QLineEdit(objectName="importWeights")
        self.weights_edit.setPlaceholderText("optional: a state_dict saved with torch.save")
        wbrowse = QPushButton("Browse…")
        wbrowse.clicked.connect(self._browse_weights)
        weights_row = QHBoxLayout()
        weights_row.addWidget(self.weights_edit, 1)
        weights_row.addWidget(wbrowse)

        form = QFormLayout()
        form.addRow("Module file:", file_row)
        form.addRow("Class:", self.class_box)
        form.addRow("Input shapes:", self.shapes_edit)
        form.addRow("Input dtype:", self.dtype_box)
        form.addRow("Arguments:", self.args_edit)
        form.addRow("Weights:", weights_row)

        note = QLabel("The module is traced with torch.fx in a separate process. Importing "
                      "runs the file's code: import only files you trust. Shapes are per "
                      "sample, without the batch axis. The graph has no loss: add a Target "
                      "and a loss to train it.")
        note.setWordWrap(True)
        note.setObjectName("importNote")
        self.message = QLabel(objectName="importMessage")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        self.busy = QProgressBar(objectName="importBusy")
        self.busy.setRange(0, 0)  # an indeterminate bar: tracing takes seconds
        self.busy.setVisible(False)

        self.buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.import_button = self.buttons.addButton("Import", QDialogButtonBox.AcceptRole)
        self.import_button.setObjectName("importButton")
        self.import_button.clicked.connect(self.start)
        self.buttons.rejected.connect(self.reject)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addWidget(self.message)
        lay.addWidget(self.busy)
        lay.addWidget(self.buttons)

    # ---- fields ----------------------------------------------------------------------------
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "PyTorch module", self._start_dir,
                                              "Python files (*.py)")
        if path:
            self.set_file(path)

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "state_dict", self._start_dir,
                                              "PyTorch weights (*.pt *.pth *.bin);;All (*)")
        if path:
            self.weights_edit.setText(path)

    def set_file(self, path: str) -> None:
        self.file_edit.setText(path)
        self._fill_classes()

    def _fill_classes(self) -> None:
        try:
            text = Path(self.file_edit.text()).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return
        current = self.class_box.currentText()
        self.class_box.clear()
        self.class_box.addItems(module_classes(text))
        if current:
            self.class_box.setCurrentText(current)

    def command(self, graph: str, weights: str) -> list[str]:
        """The arguments of ``main.py import`` for what the fields say; ValueError naming
        the field that is not filled in right."""
        file = self.file_edit.text().strip()
        cls = self.class_box.currentText().strip()
        if not file:
            raise ValueError("Choose the module file.")
        if not cls:
            raise ValueError("Name the nn.Module class to import.")
        shapes = [s.strip() for s in self.shapes_edit.text().split(";")]
        if not any(shapes):
            raise ValueError("Give each input's shape per sample, e.g. 1,28,28.")
        args = [str(MAIN), "import", f"{file}:{cls}"]
        for s in shapes:
            args += ["--input-shape", s.replace(" ", "")]
        args += ["--input-dtype", self.dtype_box.currentText()]
        ctor = self.args_edit.text().strip()
        if ctor:
            try:
                json.loads(ctor)
            except json.JSONDecodeError as e:
                raise ValueError(f"Arguments are not JSON: {e.msg}.") from None
            args += ["--args", ctor]
        if self.weights_edit.text().strip():
            args += ["--weights", self.weights_edit.text().strip()]
        return args + ["-o", graph, "--save-weights", weights]

    # ---- running ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._proc is not None:
            return
        self._tmp = tempfile.TemporaryDirectory(prefix="neurocanvas-import-")
        graph = str(Path(self._tmp.name) / "imported.ncg.json")
        weights = str(Path(self._tmp.name) / "imported.npz")
        try:
            args = self.command(graph, weights)
        except ValueError as e:
            self._show(str(e), error=True)
            return
        self._show("Importing…")
        self.busy.setVisible(True)
        self.import_button.setEnabled(False)
        proc = QProcess(self)
        proc.setProgram(sys.executable)
        proc.setArguments(args)
        proc.setWorkingDirectory(str(Path(self.file_edit.text()).resolve().parent))
        proc.finished.connect(lambda code, _status, p=proc: self._finished(p, code, graph,
                                                                           weights))
        proc.errorOccurred.connect(self._failed_to_start)
        self._proc = proc
        proc.start()

    def _failed_to_start(self, error) -> None:
        if error == QProcess.FailedToStart:
            self._done()
            self._show("Could not start the import process.", error=True)

    def _finished(self, proc: QProcess, code: int, graph: str, weights: str) -> None:
        if proc is not self._proc:  # cancelled: killed, and gone once it has ended
            proc.deleteLater()
            return
        out = bytes(proc.readAllStandardOutput()).decode("utf-8", "replace")
        err = bytes(proc.readAllStandardError()).decode("utf-8", "replace").strip()
        self._done()
        if code != 0:
            line = err.splitlines()[-1] if err else f"the import ended with status {code}"
            self._show(line.removeprefix("neurocanvas: error: "), error=True)
            return
        try:
            text = Path(graph).read_text(encoding="utf-8")
        except OSError as e:
            self._show(f"The import wrote no graph: {e}", error=True)
            return
        self.imported.emit(text, weights, out.strip())
        self.accept()

    def _done(self) -> None:
        self.busy.setVisible(False)
        self.import_button.setEnabled(True)
        if self._proc is not None:
            self._proc.deleteLater()
        self._proc = None

    def _show(self, text: str, error: bool = False) -> None:
        self.message.setText(text)
        self.message.setStyleSheet("color: #c92a2a;" if error else "")
        self.message.setVisible(True)

    def running(self) -> bool:
        return self._proc is not None

    def reject(self) -> None:
        if self._proc is not None:  # Cancel ends the import process, without waiting for it
            proc = self._proc
            self._proc = None
            self.busy.setVisible(False)
            self.import_button.setEnabled(True)
            proc.kill()
        super().reject()

    def cleanup(self) -> None:
        """Remove the temporary folder (after the window has read the weights)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
