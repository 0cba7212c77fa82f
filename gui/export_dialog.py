"""Preview of exported code, with Python syntax highlighting; save it or copy it."""
from __future__ import annotations

import keyword
import re
from pathlib import Path

from PySide6.QtCore import QRegularExpression
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontDatabase,
    QGuiApplication,
    QSyntaxHighlighter,
    QTextCharFormat,
)
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QLabel,
    QPlainTextEdit,
    QVBoxLayout,
)

from core.files import atomic_write
from gui import theme


def _fmt(color: str, bold: bool = False, italic: bool = False) -> QTextCharFormat:
    f = QTextCharFormat()
    f.setForeground(QColor(color))
    if bold:
        f.setFontWeight(QFont.Bold)
    f.setFontItalic(italic)
    return f


class PythonHighlighter(QSyntaxHighlighter):
    """Keywords, builtins, numbers, strings, comments and decorators, line by line; a
    triple-quoted string spanning lines is tracked with the block state."""

    def __init__(self, document):
        super().__init__(document)
        dark = theme.current().name == "dark"
        c = ({"kw": "#c678dd", "builtin": "#56b6c2", "num": "#d19a66", "str": "#98c379",
              "comment": "#7f848e", "deco": "#e5c07b", "defname": "#61afef"} if dark else
             {"kw": "#8a3ab9", "builtin": "#0b7285", "num": "#b35900", "str": "#2b8a3e",
              "comment": "#868e96", "deco": "#a66a00", "defname": "#1c5fb8"})
        words = "|".join(keyword.kwlist)
        self.rules = [
            (QRegularExpression(rf"\b({words})\b"), _fmt(c["kw"], bold=True)),
            (QRegularExpression(r"\b(self|print|len|range|int|float|str|dict|list|tuple|"
                                r"super|isinstance|zip|enumerate|sum|min|max)\b"),
             _fmt(c["builtin"])),
            (QRegularExpression(r"\b[0-9][0-9_]*(\.[0-9_]+)?([eE][-+]?[0-9]+)?\b"),
             _fmt(c["num"])),
            (QRegularExpression(r"(?<=\bdef |\bclass )\w+"), _fmt(c["defname"], bold=True)),
            (QRegularExpression(r"^\s*@[\w.]+"), _fmt(c["deco"])),
        ]
        self.string = _fmt(c["str"])
        self.comment = _fmt(c["comment"], italic=True)
        self.one_line_string = re.compile(r"""[rbfRBF]*("([^"\\\n]|\\.)*"|'([^'\\\n]|\\.)*')""")

    def highlightBlock(self, text: str) -> None:
        for rx, f in self.rules:
            it = rx.globalMatch(text)
            while it.hasNext():
                m = it.next()
                self.setFormat(m.capturedStart(), m.capturedLength(), f)
        self._strings_and_comments(text)

    def _strings_and_comments(self, text: str) -> None:
        i = 0
        if self.previousBlockState() == 1:  # inside a triple-quoted string
            end = text.find('"""')
            if end < 0:
                self.setFormat(0, len(text), self.string)
                self.setCurrentBlockState(1)
                return
            self.setFormat(0, end + 3, self.string)
            i = end + 3
        self.setCurrentBlockState(0)
        while i < len(text):
            if text.startswith('"""', i):
                end = text.find('"""', i + 3)
                if end < 0:
                    self.setFormat(i, len(text) - i, self.string)
                    self.setCurrentBlockState(1)
                    return
                self.setFormat(i, end + 3 - i, self.string)
                i = end + 3
                continue
            if text[i] == "#":
                self.setFormat(i, len(text) - i, self.comment)
                return
            m = self.one_line_string.match(text, i)
            if m and text[i] in "\"'rbfRBF" and m.start() == i:
                self.setFormat(i, m.end() - i, self.string)
                i = m.end()
                continue
            i += 1


class ExportDialog(QDialog):
    """Shows the generated source; Save writes it atomically, Copy puts it on the clipboard."""

    def __init__(self, source: str, target: str, suggested_name: str, parent=None):
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.source = source
        self.suggested_name = suggested_name
        self.saved_to: Path | None = None
        what = "PyTorch" if target == "pytorch" else "NeuroCanvas Python API"
        self.setWindowTitle(f"Export to {what}")
        self.resize(900, 700)
        layout = QVBoxLayout(self)
        note = QLabel(f"{len(source.splitlines())} lines of Python ({what}). Save it next to "
                      "your data, or copy it.")
        layout.addWidget(note)
        self.editor = QPlainTextEdit(source)
        self.editor.setObjectName("exportPreview")
        self.editor.setReadOnly(True)
        self.editor.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.editor.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.highlighter = PythonHighlighter(self.editor.document())
        layout.addWidget(self.editor)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.save_button = buttons.addButton("Save…", QDialogButtonBox.AcceptRole)
        self.copy_button = buttons.addButton("Copy to clipboard", QDialogButtonBox.ActionRole)
        self.save_button.clicked.disconnect()
        self.save_button.clicked.connect(self._save_dialog)
        self.copy_button.clicked.connect(self.copy)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.source)

    def save_to(self, path: str | Path) -> Path:
        p = Path(path)
        atomic_write(p, self.source.encode("utf-8"))
        self.saved_to = p
        return p

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save exported code", self.suggested_name,
                                              "Python files (*.py)")
        if path:
            self.save_to(path)
            self.accept()
