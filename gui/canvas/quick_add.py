"""The quick-add popup (Tab on the canvas): type a few letters, Enter adds that node where
the cursor was — the node search of Blender's Shift+A and Houdini's Tab menu. Types are
ranked as in the palette's search (``gui.palette.rank_types``): exact name, then prefixes,
then the rest."""
from __future__ import annotations

from PySide6.QtCore import QEvent, QPoint, Qt, Signal
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QFrame, QLineEdit, QListWidget, QListWidgetItem, QVBoxLayout

from core import catalogue
from gui import theme
from gui.canvas.look import category_pixmap
from gui.palette import rank_types  # the palette's ranking: both searches agree

__all__ = ["QuickAddPopup", "rank_types"]


class QuickAddPopup(QFrame):
    """A search field over a list of node types. ``chosen(type_name)`` when one is picked."""

    chosen = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent, Qt.Popup)
        self.setObjectName("quickAdd")
        self.setFrameShape(QFrame.StyledPanel)
        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Add node…")
        self.search.setClearButtonEnabled(True)
        self.list = QListWidget(self)
        self.list.setUniformItemSizes(True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(4, 4, 4, 4)
        lay.setSpacing(4)
        lay.addWidget(self.search)
        lay.addWidget(self.list)
        self.resize(260, 320)
        self.search.textChanged.connect(self._filter)
        self.search.installEventFilter(self)
        self.list.itemActivated.connect(self._activate)
        self.list.itemClicked.connect(self._activate)
        self._filter("")

    def _filter(self, text: str) -> None:
        t = theme.current()
        self.list.clear()
        for name in rank_types(text):
            cls = catalogue.get(name)
            item = QListWidgetItem(QIcon(category_pixmap(cls.category,
                                                         t.category_color(cls.category), 16)),
                                   f"{name}   ·  {cls.category}")
            item.setData(Qt.UserRole, name)
            item.setToolTip(cls.doc)
            self.list.addItem(item)
        if self.list.count():
            self.list.setCurrentRow(0)

    def current_type(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.UserRole) if item is not None else None

    def _activate(self, item: QListWidgetItem) -> None:
        self._choose(item.data(Qt.UserRole))

    def _choose(self, name: str | None) -> None:
        self.close()
        if name:
            self.chosen.emit(name)

    def eventFilter(self, obj, event):
        if obj is self.search and event.type() == QEvent.KeyPress:
            key = event.key()
            if key in (Qt.Key_Return, Qt.Key_Enter):
                self._choose(self.current_type())
                return True
            if key in (Qt.Key_Down, Qt.Key_Up, Qt.Key_PageDown, Qt.Key_PageUp):
                row = self.list.currentRow() + (1 if key in (Qt.Key_Down, Qt.Key_PageDown)
                                                else -1)
                if 0 <= row < self.list.count():
                    self.list.setCurrentRow(row)
                return True
            if key == Qt.Key_Escape:
                self.close()
                return True
        return super().eventFilter(obj, event)

    def popup(self, global_pos: QPoint) -> None:
        self.search.clear()
        self.move(global_pos)
        self.show()
        self.search.setFocus()
