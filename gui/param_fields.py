"""One editing widget per parameter kind, built from its ``core.params.ParamSpec``.

A field shows a raw JSON value (what the graph file holds), checks what the user enters
with the spec (``spec.coerce``) and, only when it is valid, emits ``committed`` with the new
raw value: once per finished edit (Enter, focus leaving, a step of a spin box, a choice in a
combo). An invalid entry shows its message under the field, a red frame round the editor,
and emits nothing; the typed text stays until it is fixed or Escape drops it. ``set_value``
shows a value from the model and never emits, so refreshing a view cannot push a command.

Text fields share Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y with the window (``route_edit_keys``): they
undo the field's own typing only while it holds text not yet committed, and otherwise reach
the window's Undo and Redo, so graph edits undo wherever the focus is.
"""
from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import QKeySequence, QPalette, QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from core.errors import ParamError
from core.params import (
    AUTO,
    REQUIRED,
    Bool,
    Choice,
    Float,
    Identifier,
    Int,
    IntPair,
    NodeRef,
    Padding,
    ParamSpec,
    Shape,
)
from gui import icons, theme

_INT32 = 2**31 - 1
# what a spin box keeps as typed (to say what is wrong with it) instead of refusing the key
_NUMBERISH = re.compile(r"[\s+\-−\d.eE]*")
# the window's Undo and Redo keys (QKeySequence.Redo alone is Ctrl+Y on some platforms)
_UNDO_KEYS = (QKeySequence("Ctrl+Z"), QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y"))


def is_undo_key(event) -> bool:
    """A key event that asks for Undo or Redo."""
    return (event.matches(QKeySequence.Undo) or event.matches(QKeySequence.Redo)
            or QKeySequence(event.keyCombination()) in _UNDO_KEYS)


class _EditKeys(QObject):
    """The keys a text editor shares with the window (see ``route_edit_keys``)."""

    def __init__(self, widget: QWidget, pending: Callable[[], bool],
                 revert: Callable[[], None] | None):
        super().__init__(widget)
        self._pending, self._revert = pending, revert
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        kind = event.type()
        if kind == QEvent.ShortcutOverride:
            if is_undo_key(event) and not self._pending():
                # QLineEdit (and QSpinBox through it) would take the key for its own
                # undo; left untaken, the window's Undo/Redo shortcut runs
                event.ignore()
                return True
        elif kind == QEvent.KeyPress and event.key() == Qt.Key_Escape \
                and self._revert is not None and self._pending():
            self._revert()
            return True
        return False


def route_edit_keys(widget: QWidget, pending: Callable[[], bool],
                    revert: Callable[[], None] | None = None) -> None:
    """Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y in ``widget`` undo its own typing only while
    ``pending()`` (it holds text not yet committed); otherwise they reach the window's Undo
    and Redo actions. Escape calls ``revert`` (drop the uncommitted text) while pending."""
    _EditKeys(widget, pending, revert)


class InputError(ValueError):
    """Text that does not even parse (before the spec sees it)."""


def clipped(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis: a file may hold a type name or
    a value 100,000 characters long, which a label or a combo box would lay out at every
    resize (and widen its dock to fit). The full text stays in the graph and the messages."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


def format_value(value: Any) -> str:
    """A raw value as the text fields show it: ``[28, 28]`` -> ``28, 28``, floats short."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def format_float(v: float) -> str:
    """Shortest text that reads back as the same float (``1e-08``, ``0.001``, ``2``)."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(float(v)) if isinstance(v, float) else str(v)


def parse_number(text: str) -> int | float:
    """An integer where the text is one, else a float; scientific notation accepted."""
    t = text.strip().replace("−", "-")
    try:
        return int(t)
    except ValueError:
        pass
    try:
        v = float(t)
    except ValueError:
        raise InputError(f"expected a number (such as 0.001 or 1e-3), found {text.strip()!r}"
                         ) from None
    if not math.isfinite(v):
        raise InputError(f"expected a finite number, found {text.strip()!r}")
    return v


def parse_int_list(text: str) -> list[int]:
    """``"28, 28"``, ``"[1, 8, 8]"``, ``"3x3"`` -> a list of integers (``""`` -> ``[]``)."""
    # "3x3" / "28×28" mean 3, 3 / 28, 28; a lone "x" stays a token and is refused
    t = re.sub(r"(?<=\d)\s*[xX×]\s*(?=[-−]?\d)", ",", text.strip().strip("[]()"))
    tokens = [tok for tok in t.replace(",", " ").split() if tok]
    out = []
    for tok in tokens:
        try:
            out.append(int(tok.replace("−", "-")))
        except ValueError:
            raise InputError(f"expected whole numbers separated by commas (such as 28, 28), "
                             f"found {tok!r}") from None
    return out


def parse_number_list(text: str) -> list[int | float]:
    t = text.strip().strip("[]()")
    return [parse_number(tok) for tok in t.replace(",", " ").split() if tok]


class ParamField(QWidget):
    """The editor of one parameter: the widget, a reset button and an inline message."""

    committed = Signal(object)  # the new raw value; None = back to the default

    def __init__(self, spec: ParamSpec, parent: QWidget | None = None, *,
                 resettable: bool = True):
        super().__init__(parent)
        self.spec = spec
        self._value: Any = None  # the raw value shown (None: not set, the default applies)
        self._input_error: str | None = None
        self._problem: str | None = None
        self._loading = False
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(2)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        self.editor = self._make_editor()
        self.editor.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        row.addWidget(self.editor, 1)
        self.reset_button = QToolButton(self)
        self.reset_button.setObjectName("resetButton")
        self.reset_button.setIcon(icons.reset_icon())
        self.reset_button.setIconSize(QSize(14, 14))
        self.reset_button.setAutoRaise(True)
        self.reset_button.setFocusPolicy(Qt.NoFocus)
        self.reset_button.clicked.connect(self.reset)
        self.reset_button.setVisible(resettable)
        row.addWidget(self.reset_button)
        outer.addLayout(row)
        self.message = QLabel(self)
        self.message.setObjectName("fieldMessage")
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        outer.addWidget(self.message)
        self._update_reset()
        if spec.doc:
            self.editor.setToolTip(spec.doc)
        self._shown_text = self._typed_text()  # what set_value put there: the committed text
        text = self._text_editor()
        if text is not None:
            route_edit_keys(self._key_target(), self.has_pending_text, self.revert)
            text.textChanged.connect(lambda _t: self._sync_error())

    # ---- to override -------------------------------------------------------------------
    def _make_editor(self) -> QWidget:
        raise NotImplementedError

    def _show(self, value: Any) -> None:
        """Put ``value`` (raw, or None for the default) into the editor."""
        raise NotImplementedError

    def _read(self) -> Any:
        """The raw value the editor holds; raises InputError for text that does not parse."""
        raise NotImplementedError

    def _text_editor(self) -> QLineEdit | None:
        """The line edit the user types in (None: the field takes no typing)."""
        return None

    def _key_target(self) -> QWidget:
        """The widget that has the focus while the user types."""
        return self._text_editor()

    def _frame_widget(self) -> QWidget:
        """The widget framed in red while the entry is invalid."""
        return self.editor

    # ---- the model side ----------------------------------------------------------------
    def value(self) -> Any:
        return self._value

    def set_value(self, value: Any) -> None:
        """Show a value from the model; clears an input error; emits nothing."""
        self._value = value
        self._input_error = None
        self._loading = True
        blocked = self.editor.blockSignals(True)
        try:
            self._show(value)
        finally:
            self.editor.blockSignals(blocked)
            self._loading = False
        self._shown_text = self._typed_text()
        self._update_reset()
        self._update_message()

    def _typed_text(self) -> str | None:
        edit = self._text_editor()
        return edit.text() if edit is not None else None

    def has_pending_text(self) -> bool:
        """The editor holds typed text that differs from the committed value."""
        return self._typed_text() != self._shown_text

    def revert(self) -> None:
        """Drop uncommitted text (Escape): show the committed value again."""
        self.set_value(self._value)

    def _sync_error(self) -> None:
        # text back at the committed value (typed back, or put back by a spin box step)
        if self._input_error is not None and not self.has_pending_text():
            self._input_error = None
            self._update_message()

    def set_problem(self, message: str | None) -> None:
        """A problem validation found with the stored value (shown when the input is fine)."""
        self._problem = message
        self._update_message()

    def message_text(self) -> str:
        """The inline message shown under the field ('' when none)."""
        return self.message.text()

    def has_input_error(self) -> bool:
        return self._input_error is not None

    def default_value(self) -> Any:
        d = self.spec.default
        return None if d is REQUIRED else d

    # ---- the user side -----------------------------------------------------------------
    def commit(self) -> bool:
        """Check what the editor holds and emit it if valid and changed. True if valid."""
        if self._loading:
            return False
        try:
            raw = self._read()
            if raw is not None:
                self.check(raw)
        except (InputError, ParamError) as e:
            self._input_error = getattr(e, "message", None) or str(e)
            self._update_message()
            return False
        if raw is None and self.spec.required:
            self._input_error = "required: this parameter has no default"
            self._update_message()
            return False
        self._input_error = None
        self._update_message()
        if not _same(raw, self._value):
            self.committed.emit(raw)
        elif self.has_pending_text():
            self.set_value(self._value)  # "5.0" for 5: show it as committed
        return True

    def check(self, raw: Any) -> None:
        """Raise ParamError if ``raw`` is not acceptable (the spec's check by default)."""
        self.spec.coerce(raw)

    def reset(self) -> None:
        """Back to the default: emits None (the parameter is removed from the file)."""
        if self.spec.required or self._loading:
            return
        self._input_error = None
        if self._value is not None:
            self.committed.emit(None)
        else:
            self.set_value(None)

    def show_input_error(self, message: str) -> None:
        """Show a message about the entered value (from a check beyond the spec)."""
        self._input_error = message
        self._update_message()

    def _update_reset(self) -> None:
        can = not self.spec.required and self._value is not None
        self.reset_button.setEnabled(can)
        if self.spec.required:
            tip = "Required: this parameter has no default"
        else:
            tip = f"Reset to the default ({format_value(self.default_value()) or 'none'})"
        self.reset_button.setToolTip(tip)

    def _update_message(self) -> None:
        text = self._input_error or self._problem
        if text:
            t = theme.current()
            pal = self.message.palette()
            pal.setColor(QPalette.WindowText, t.color("error"))
            self.message.setPalette(pal)
            self.message.setText(text)
        else:
            self.message.setText("")
        self.message.setVisible(bool(text))
        self.editor.setProperty("invalid", bool(self._input_error))
        _frame_invalid(self._frame_widget(), bool(self._input_error))


def _frame_invalid(widget: QWidget, invalid: bool) -> None:
    """A red frame round an editor holding an invalid entry (its own type only, so a spin
    box's inner line edit gets no second frame)."""
    kind = next((k for k in ("QAbstractSpinBox", "QLineEdit", "QComboBox")
                 if widget.inherits(k)), None)
    if kind is None:
        return
    if invalid:
        widget.setStyleSheet(f"{kind} {{ border: 1px solid {theme.current().error}; "
                             f"border-radius: 3px; padding: 1px 2px; }}")
    elif widget.styleSheet():
        widget.setStyleSheet("")


def _same(a: Any, b: Any) -> bool:
    """Equal as JSON values (1 == 1.0, [1, 2] == (1, 2)), but True is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


# ---- kinds ---------------------------------------------------------------------------------
class _SpinBox(QSpinBox):
    """The spin box of an IntField. It ignores the wheel unless focused, so scrolling the
    panel is safe. Text the range refuses (-5 below a minimum of 1, 0, 1.5) stays as typed
    and the field says why: plain QSpinBox drops the '-' key (-5 becomes 5) and puts the
    old value back on Enter, silently. So number-like text passes the validator, and Enter
    and focus-out ask the field first."""

    @property
    def _field(self) -> IntField:
        return self.parentWidget()  # not an attribute: no reference cycle for the GC

    def validate(self, text, pos):
        state, text, pos = super().validate(text, pos)
        if state == QValidator.Invalid and _NUMBERISH.fullmatch(text):
            state = QValidator.Intermediate
        return state, text, pos

    def wheelEvent(self, event):  # noqa: N802
        if self.hasFocus():
            super().wheelEvent(event)
        else:
            event.ignore()

    def keyPressEvent(self, event):  # noqa: N802
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and not self._field.accept_text():
            event.accept()  # kept as typed, shown as invalid
            return
        super().keyPressEvent(event)

    def focusOutEvent(self, event):  # noqa: N802
        text = self.lineEdit().text()
        ok = self._field.accept_text()
        super().focusOutEvent(event)  # puts the last value back when the text is refused
        if not ok:
            self.lineEdit().setText(text)

    def stepBy(self, steps: int) -> None:  # noqa: N802
        super().stepBy(steps)
        self._field._sync_error()  # a step from refused text puts the value back


class IntField(ParamField):
    """A spin box with the spec's range. A parameter whose default is None gets a first
    entry "default" below the range, which means None."""

    def _make_editor(self) -> QWidget:
        spin = _SpinBox(self)
        spin.setFocusPolicy(Qt.StrongFocus)
        spin.setKeyboardTracking(False)  # valueChanged only on steps, Enter and focus-out
        spin.setAccelerated(True)
        lo = self.spec.min if getattr(self.spec, "min", None) is not None else -_INT32 + 1
        hi = self.spec.max if getattr(self.spec, "max", None) is not None else _INT32
        self._none_allowed = self.spec.default is None
        if self._none_allowed:
            lo -= 1
            spin.setSpecialValueText("default")
        spin.setRange(lo, hi)
        spin.valueChanged.connect(lambda _v: self.commit())
        return spin

    def _show(self, value: Any) -> None:
        spin: QSpinBox = self.editor
        if value is None:
            d = self.spec.default
            if d is None or d is REQUIRED:
                spin.setValue(spin.minimum())
            else:
                spin.setValue(int(d))
            return
        if isinstance(value, (int, float)) and not isinstance(value, bool) and \
                float(value).is_integer() and spin.minimum() <= value <= spin.maximum():
            spin.setValue(int(value))
        else:  # an out-of-range value from the file: the problem under the field says so
            spin.setValue(spin.minimum())

    def _read(self) -> Any:
        spin: QSpinBox = self.editor
        v = spin.value()
        if self._none_allowed and v == spin.minimum():
            return None
        return v

    def _text_editor(self) -> QLineEdit:
        return self.editor.lineEdit()

    def _key_target(self) -> QWidget:
        return self.editor  # the spin box holds the focus, not its line edit

    def accept_text(self) -> bool:
        """Enter or focus-out: check the typed text with the spec. True lets the spin box
        take it (and commit it through valueChanged); False shows why it cannot be and
        leaves it as typed."""
        spin: QSpinBox = self.editor
        text = spin.lineEdit().text().strip()
        if self._none_allowed and text == spin.specialValueText():
            return True
        if not text:  # empty: back to the default, as in the text fields
            if self.spec.required:
                self.show_input_error("required: this parameter has no default")
                return False
            self.reset()
            return True
        lo = spin.minimum() + (1 if self._none_allowed else 0)
        try:
            value = parse_number(text)
            self.check(value)
            if not lo <= value <= spin.maximum():
                raise InputError(f"expected an integer from {lo} to {spin.maximum()}")
        except (InputError, ParamError) as e:
            self.show_input_error(getattr(e, "message", None) or str(e))
            return False
        self._input_error = None
        self._update_message()
        if text != spin.textFromValue(int(value)):
            spin.setValue(int(value))  # "1e3", "+5": taken as the number they mean
        return True

    def commit(self) -> bool:
        # None from the "default" entry is a reset, not a missing value
        if self._none_allowed and not self._loading and self._read() is None:
            if self._value is not None:
                self.committed.emit(None)
            return True
        return super().commit()


class BoolField(ParamField):
    def _make_editor(self) -> QWidget:
        box = QCheckBox(self)
        box.toggled.connect(lambda _c: self.commit())
        return box

    def _show(self, value: Any) -> None:
        v = self.spec.default if value is None else value
        self.editor.setChecked(bool(v) if isinstance(v, bool) else False)

    def _read(self) -> Any:
        return self.editor.isChecked()

    def commit(self) -> bool:
        raw = self.editor.isChecked()
        if self._value is None and raw == self.spec.default:
            return True  # toggled back to what the default already is
        return super().commit()


class _Held:
    """A value from the file, boxed in a combo item as a Python object: Qt never converts
    it (an integer beyond 64 bits overflows the conversion, and a list becomes a
    QVariantList), and reading the field gives it back as it was."""
    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


def _item_value(combo: QComboBox, i: int) -> Any:
    v = combo.itemData(i)
    return v.value if isinstance(v, _Held) else v


def _find_data(combo: QComboBox, value: Any) -> int:
    """The index of the item holding ``value`` (of its type: 1 is not True), or -1;
    compared in Python, so that no value from the file goes through a QVariant."""
    return next((i for i in range(combo.count())
                 if type(_item_value(combo, i)) is type(value)
                 and _item_value(combo, i) == value), -1)


def _add_item(combo: QComboBox, text: str, value: Any) -> int:
    """Add an item for a value not among the choices; its index."""
    combo.addItem(clipped(text, 60), _Held(value))  # 5,000 characters would widen the dock
    return combo.count() - 1


def _current_data(combo: QComboBox) -> Any:
    v = combo.currentData()
    return v.value if isinstance(v, _Held) else v


class ChoiceField(ParamField):
    def _make_editor(self) -> QWidget:
        combo = QComboBox(self)
        for choice in self.spec.choices:
            combo.addItem(format_value(choice), choice)
        combo.activated.connect(lambda _i: self.commit())
        return combo

    def _show(self, value: Any) -> None:
        combo: QComboBox = self.editor
        v = self.spec.default if value is None else value
        i = _find_data(combo, v)
        if i < 0 and v is not REQUIRED and v is not None:
            i = _add_item(combo, f"{format_value(v)} (unknown)", v)
        combo.setCurrentIndex(i)

    def _read(self) -> Any:
        return _current_data(self.editor)

    def commit(self) -> bool:
        if self._value is None and self._read() == self.spec.default:
            return True
        return super().commit()


class TextField(ParamField):
    """Identifiers and anything else that is typed as text."""

    def _make_editor(self) -> QWidget:
        edit = QLineEdit(self)
        edit.editingFinished.connect(self.commit)
        d = self.spec.default
        if d is not REQUIRED and d is not None:
            edit.setPlaceholderText(f"default {format_value(d)}")
        return edit

    def _show(self, value: Any) -> None:
        self.editor.setText(format_value(value) if value is not None else "")

    def _read(self) -> Any:
        text = self.editor.text().strip()
        return text or None

    def _text_editor(self) -> QLineEdit:
        return self.editor


class FloatField(TextField):
    """A text field taking any number notation (``0.001``, ``1e-3``); empty = default."""

    def _read(self) -> Any:
        text = self.editor.text().strip()
        if not text:
            return None
        return parse_number(text)


class ShapeField(TextField):
    """A shape typed as ``28, 28`` (empty: a scalar, ``[]``); ``auto`` where the spec takes
    the shape of the dataset field (Input and Target)."""

    def _make_editor(self) -> QWidget:
        edit = super()._make_editor()
        hint = "empty: a scalar []  ·  e.g. 1, 28, 28"
        if getattr(self.spec, "allow_auto", False):
            hint = f"{AUTO}: from the dataset  ·  " + hint
        edit.setPlaceholderText(hint)
        return edit

    def _show(self, value: Any) -> None:
        if value == AUTO:
            self.editor.setText(AUTO)
            return
        self.editor.setText(format_value(value) if isinstance(value, (list, tuple)) else
                            ("" if value is None else json.dumps(value)))

    def _read(self) -> Any:
        text = self.editor.text().strip()
        if getattr(self.spec, "allow_auto", False) and text.lower() == AUTO:
            return AUTO
        return parse_int_list(text)


class IntPairField(TextField):
    """One integer (``3``) or a pair (``3, 5``); empty = the default."""

    def _make_editor(self) -> QWidget:
        edit = super()._make_editor()
        d = self.spec.default
        if d is None:
            edit.setPlaceholderText("default (see tooltip)")
        return edit

    def _read(self) -> Any:
        text = self.editor.text().strip()
        if not text:
            return None
        values = parse_int_list(text)
        if len(values) == 1:
            return values[0]
        return values


class NumberListField(TextField):
    """A list of numbers typed as ``0.9, 0.999`` (optimizer betas)."""

    def _read(self) -> Any:
        text = self.editor.text().strip()
        if not text:
            return None
        values = parse_number_list(text)
        return [float(v) for v in values]


class PaddingField(ParamField):
    """'valid', 'same' or a number of cells (one integer or ``h, w``)."""

    _MODES = ("valid", "same", "cells")

    def _make_editor(self) -> QWidget:
        box = QWidget(self)
        lay = QHBoxLayout(box)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(4)
        self.mode = QComboBox(box)
        self.mode.addItem("valid (none)", "valid")
        self.mode.addItem("same", "same")
        self.mode.addItem("cells…", "cells")
        self.cells = QLineEdit(box)
        self.cells.setPlaceholderText("e.g. 1 or 1, 2")
        lay.addWidget(self.mode, 1)
        lay.addWidget(self.cells, 1)
        self.mode.activated.connect(self._on_mode)
        self.cells.editingFinished.connect(self.commit)
        return box

    def set_value(self, value: Any) -> None:
        blocked = (self.mode.blockSignals(True), self.cells.blockSignals(True))
        try:
            super().set_value(value)
        finally:
            self.mode.blockSignals(blocked[0])
            self.cells.blockSignals(blocked[1])

    def _show(self, value: Any) -> None:
        v = self.spec.default if value is None else value
        if v in ("valid", "same"):
            self.mode.setCurrentIndex(self._MODES.index(v))
            self.cells.setText("")
            self.cells.setEnabled(False)
        else:
            self.mode.setCurrentIndex(2)
            self.cells.setEnabled(True)
            self.cells.setText(format_value(v) if v not in (None, REQUIRED) else "")

    def _on_mode(self, _index: int) -> None:
        cells = self.mode.currentData() == "cells"
        self.cells.setEnabled(cells)
        if cells:
            if not self.cells.text().strip():
                self.cells.setText("1")
            self.cells.setFocus()
        self.commit()

    def _read(self) -> Any:
        mode = self.mode.currentData()
        if mode != "cells":
            return mode
        values = parse_int_list(self.cells.text())
        if not values:
            raise InputError("expected a number of cells (such as 1) or a pair h, w")
        return values[0] if len(values) == 1 else values

    def _text_editor(self) -> QLineEdit:
        return self.cells

    def _frame_widget(self) -> QWidget:
        return self.cells


class NodeRefField(ParamField):
    """A combo of the nodes this one may share parameters with, and "none"."""

    def _make_editor(self) -> QWidget:
        combo = QComboBox(self)
        combo.addItem("none", None)
        combo.activated.connect(lambda _i: self.commit())
        return combo

    def set_candidates(self, node_ids: list[str]) -> None:
        """The ids offered (same-type nodes); the shown value stays selected."""
        combo: QComboBox = self.editor
        current = [combo.itemData(i) for i in range(1, combo.count())]
        if current == list(node_ids):
            return
        blocked = combo.blockSignals(True)
        combo.clear()
        combo.addItem("none", None)
        for nid in node_ids:
            combo.addItem(nid, nid)
        combo.blockSignals(blocked)
        self._loading = True
        try:
            blocked = combo.blockSignals(True)
            self._show(self._value)
            combo.blockSignals(blocked)
        finally:
            self._loading = False

    def _show(self, value: Any) -> None:
        combo: QComboBox = self.editor
        i = _find_data(combo, value)
        if i < 0 and value is not None:
            i = _add_item(combo, f"{format_value(value)} (missing)", value)
        combo.setCurrentIndex(max(0, i))

    def _read(self) -> Any:
        return _current_data(self.editor)


def make_field(spec: ParamSpec, parent: QWidget | None = None, **kwargs) -> ParamField:
    """The field that fits ``spec``'s kind (a text field for kinds it does not know)."""
    if isinstance(spec, Bool):
        return BoolField(spec, parent, **kwargs)
    if isinstance(spec, Int):
        return IntField(spec, parent, **kwargs)
    if isinstance(spec, Float):
        return FloatField(spec, parent, **kwargs)
    if isinstance(spec, Choice):
        return ChoiceField(spec, parent, **kwargs)
    if isinstance(spec, Shape):
        return ShapeField(spec, parent, **kwargs)
    if isinstance(spec, IntPair):
        return IntPairField(spec, parent, **kwargs)
    if isinstance(spec, Padding):
        return PaddingField(spec, parent, **kwargs)
    if isinstance(spec, NodeRef):
        return NodeRefField(spec, parent, **kwargs)
    if isinstance(spec, Identifier):
        return TextField(spec, parent, **kwargs)
    if isinstance(spec.default, (tuple, list)) and all(
            isinstance(v, (int, float)) for v in spec.default):
        return NumberListField(spec, parent, **kwargs)
    return TextField(spec, parent, **kwargs)
