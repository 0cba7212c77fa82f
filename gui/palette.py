"""The node palette: every node type by category, a search filter, drag and double-click.

Dragging a type starts a QDrag whose MIME data (``NODE_MIME``) holds the type name in UTF-8;
the canvas accepts that drop (docs/format.md section 8). A double-click (or Enter) asks for the node
with ``node_requested``; the main window adds it at the centre of the view.

The search ranks types with ``rank_types``, which the canvas quick-add (Tab) shares: the exact
name first, then name prefixes, then the other matches; Enter adds the first.
"""
from __future__ import annotations

import html
import re

from PySide6.QtCore import QMimeData, QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QDrag, QFont, QFontMetrics, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QLabel,
    QLineEdit,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core import catalogue
from core.layers.base import CATEGORIES, Layer
from core.params import REQUIRED, ParamSpec
from gui import icons, theme
from gui.param_fields import route_edit_keys

NODE_MIME = "application/x-neurocanvas-node"

_TYPE_ROLE = Qt.UserRole + 1  # type name on a node item; None on a category item


# ---- search ranking ------------------------------------------------------------------------
def match_rank(query: str, cls: type[Layer]) -> int | None:
    """How well a node type matches a search, lower is better; None: not at all.

    0 the exact name, 1 a name prefix, 2 a name substring, 3 the name's letters in order
    ("bce" for BinaryCrossEntropyLoss), 4 every word in the name, description or category.
    Names compare without case, spaces, '-' or '_' ("max pool" is a prefix of MaxPool2D).
    """
    q = query.strip().lower()
    key = re.sub(r"[\s_-]+", "", q)
    if not key:
        return None
    name = cls.type_name.lower()
    if name == key:
        return 0
    if name.startswith(key):
        return 1
    if key in name:
        return 2
    if len(key) >= 3 and _in_order(key, name):
        return 3
    haystack = f"{name}\n{cls.doc}\n{cls.category}".lower()
    if all(w in haystack for w in q.split()):
        return 4
    return None


def _in_order(letters: str, text: str) -> bool:
    it = iter(text)
    return all(ch in it for ch in letters)


def rank_types(query: str) -> list[str]:
    """The catalogue types matching ``query``, best first (``match_rank``); ties keep the
    catalogue order. Every type, in catalogue order, for an empty query."""
    types = [cls for group in catalogue.by_category().values() for cls in group]
    if not query.strip():
        return [c.type_name for c in types]
    scored = [(r, i, cls.type_name) for i, cls in enumerate(types)
              if (r := match_rank(query, cls)) is not None]
    return [name for _, _, name in sorted(scored)]


def node_mime_data(type_name: str) -> QMimeData:
    """The MIME data of a palette drag: the type name, UTF-8, under ``NODE_MIME``."""
    mime = QMimeData()
    mime.setData(NODE_MIME, type_name.encode("utf-8"))
    mime.setText(type_name)  # drops into text fields say what was dragged
    return mime


def type_from_mime(mime: QMimeData) -> str | None:
    """The node type a palette drag carries, or None for any other drag."""
    if not mime.hasFormat(NODE_MIME):
        return None
    name = bytes(mime.data(NODE_MIME)).decode("utf-8", errors="replace")
    return name if catalogue.get(name) is not None else None


class NodePalette(QWidget):
    """The node types by category (docs/format.md section 3), filterable, draggable onto the
    canvas."""

    node_requested = Signal(str)  # type name: add one at the centre of the view

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("nodePalette")
        self.search = QLineEdit(self)
        self.search.setObjectName("paletteSearch")
        self.search.setPlaceholderText("Search nodes…")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.set_filter)
        self.search.returnPressed.connect(self._request_first_match)
        # Ctrl+Z undoes typing here while there is typing to undo, else the last graph edit
        route_edit_keys(self.search, self.search.isUndoAvailable)
        self.tree = _PaletteTree(self)
        self.tree.itemDoubleClicked.connect(self._on_double_click)
        self.tree.type_activated.connect(self.node_requested)
        self.tree.currentItemChanged.connect(self._show_doc)
        self.doc_label = QLabel(self)
        self.doc_label.setObjectName("paletteDoc")
        self.doc_label.setWordWrap(True)
        self.doc_label.setForegroundRole(QPalette.PlaceholderText)
        self.doc_label.setMinimumHeight(self.fontMetrics().lineSpacing() * 3)
        self.doc_label.setAlignment(Qt.AlignTop | Qt.AlignLeft)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.setSpacing(4)
        layout.addWidget(self.search)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.doc_label)
        self._categories: dict[str, QTreeWidgetItem] = {}
        self._types: dict[str, QTreeWidgetItem] = {}
        self._children: dict[str, list[QTreeWidgetItem]] = {}  # each category's usual order
        self._populate()

    # ---- contents ----------------------------------------------------------------------
    def _populate(self) -> None:
        groups = catalogue.by_category()
        bold = QFont(self.font())
        bold.setBold(True)
        for category in CATEGORIES:
            classes = sorted(groups.get(category, []), key=lambda c: c.type_name.lower())
            if not classes:
                continue
            cat_item = QTreeWidgetItem([category])
            cat_item.setData(0, _TYPE_ROLE, None)
            cat_item.setFont(0, bold)
            cat_item.setIcon(0, icons.category_icon(category))
            cat_item.setFlags(Qt.ItemIsEnabled)  # a heading: not selectable, not draggable
            self.tree.addTopLevelItem(cat_item)
            self._categories[category] = cat_item
            for cls in classes:
                item = QTreeWidgetItem([cls.type_name])
                item.setData(0, _TYPE_ROLE, cls.type_name)
                item.setIcon(0, icons.category_icon(category))
                item.setToolTip(0, type_tooltip(cls))
                item.setFlags(Qt.ItemIsEnabled | Qt.ItemIsSelectable | Qt.ItemIsDragEnabled)
                cat_item.addChild(item)
                self._types[cls.type_name] = item
            self._children[category] = [cat_item.child(i) for i in range(cat_item.childCount())]
        self.tree.expandAll()

    def refresh_icons(self) -> None:
        """Repaint the category icons in the current theme's colours (after a theme switch)."""
        for category, cat_item in self._categories.items():
            icon = icons.category_icon(category)
            cat_item.setIcon(0, icon)
            for i in range(cat_item.childCount()):
                cat_item.child(i).setIcon(0, icon)

    def apply_theme(self) -> None:
        """Called by the main window after a theme switch."""
        self.refresh_icons()

    # ---- queries (tests, quick-add) ------------------------------------------------------
    def categories(self) -> list[str]:
        """The category headings, in the order shown."""
        return [self.tree.topLevelItem(i).text(0) for i in range(self.tree.topLevelItemCount())]

    def type_item(self, type_name: str) -> QTreeWidgetItem | None:
        return self._types.get(type_name)

    def category_item(self, category: str) -> QTreeWidgetItem | None:
        return self._categories.get(category)

    def visible_types(self) -> list[str]:
        """The type names the filter lets through, in the order shown."""
        out = []
        for cat_item in self._shown_categories():
            for i in range(cat_item.childCount()):
                child = cat_item.child(i)
                if not child.isHidden():
                    out.append(child.data(0, _TYPE_ROLE))
        return out

    def visible_categories(self) -> list[str]:
        """The category headings the filter leaves, in the order shown."""
        return [item.text(0) for item in self._shown_categories()]

    def _shown_categories(self) -> list[QTreeWidgetItem]:
        items = (self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount()))
        return [item for item in items if not item.isHidden()]

    def mime_data(self, type_name: str) -> QMimeData:
        """What dragging the item of ``type_name`` carries (the same call a drag makes)."""
        return self.tree.mimeData([self._types[type_name]])

    # ---- filter --------------------------------------------------------------------------
    def filter_text(self) -> str:
        return self.search.text()

    def set_filter(self, text: str) -> None:
        """Show only the types ``text`` matches (``rank_types``: name, doc or category, any
        case), best first: the categories in the order of their best match, the types in
        each by rank; the best one is made current. Categories left empty are hidden and
        those with matches expanded; an empty text shows every type in the usual order."""
        if self.search.text() != text:
            self.search.setText(text)  # comes back here through textChanged
            return
        ranked = rank_types(text) if text.strip() else None
        order = {name: i for i, name in enumerate(ranked)} if ranked is not None else None
        current = self.tree.currentItem()
        self._arrange(order)
        for cat_item in self._categories.values():
            shown = 0
            for i in range(cat_item.childCount()):
                child = cat_item.child(i)
                match = order is None or child.data(0, _TYPE_ROLE) in order
                child.setHidden(not match)
                shown += match
            cat_item.setHidden(shown == 0)
            if shown:
                cat_item.setExpanded(True)
        if ranked:
            self.tree.setCurrentItem(self._types[ranked[0]])
        elif current is not None and self.tree.currentItem() is not current:
            self.tree.setCurrentItem(current)  # re-inserted by _arrange
        self._show_doc(self.tree.currentItem())

    def _arrange(self, order: dict[str, int] | None) -> None:
        """Put categories and types in the order of ``order`` (type name -> rank; None:
        the usual order, CATEGORIES and names), moving items only where it changes."""
        far = len(self._types)

        def rank(item: QTreeWidgetItem) -> int:
            return order.get(item.data(0, _TYPE_ROLE), far) if order is not None else 0

        best: dict[str, int] = {}
        for category, cat_item in self._categories.items():
            want = sorted(self._children[category], key=rank)  # stable: ties stay in order
            best[category] = rank(want[0]) if want else far
            have = [cat_item.child(i) for i in range(cat_item.childCount())]
            if have != want:
                cat_item.takeChildren()
                cat_item.addChildren(want)
        want_top = sorted(self._categories.values(), key=lambda c: best[c.text(0)])
        have_top = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        if have_top != want_top:
            while self.tree.topLevelItemCount():
                self.tree.takeTopLevelItem(0)
            self.tree.addTopLevelItems(want_top)

    def _request_first_match(self) -> None:
        """Enter in the search field adds the selected match (or the first one)."""
        item = self.tree.currentItem()
        name = item.data(0, _TYPE_ROLE) if item is not None and not item.isHidden() else None
        if name is None:
            visible = self.visible_types()
            name = visible[0] if visible else None
        if name:
            self.node_requested.emit(name)
            self._settle_search()

    def _settle_search(self) -> None:
        """After adding a node from the search, Ctrl+Z undoes the add, not the typing."""
        self.search.setText(self.search.text())  # same text; clears its undo history

    def focus_search(self) -> None:
        self.search.setFocus(Qt.ShortcutFocusReason)
        self.search.selectAll()

    # ---- interaction -----------------------------------------------------------------------
    def _on_double_click(self, item: QTreeWidgetItem, _column: int) -> None:
        name = item.data(0, _TYPE_ROLE)
        if name:
            self.node_requested.emit(name)

    def _show_doc(self, item: QTreeWidgetItem | None, *_args) -> None:
        name = item.data(0, _TYPE_ROLE) if item is not None else None
        cls = catalogue.get(name) if name else None
        if cls is None:
            self.doc_label.setText("Drag a node onto the canvas, or double-click it.")
        else:
            self.doc_label.setText(f"<b>{html.escape(cls.type_name)}</b> — "
                                   f"{html.escape(cls.doc)}")


class _PaletteTree(QTreeWidget):
    """The tree of types; its drags carry ``NODE_MIME`` with a small chip as the pixmap."""

    type_activated = Signal(str)  # Enter on a type item

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("paletteTree")
        self.setHeaderHidden(True)
        self.setColumnCount(1)
        self.setRootIsDecorated(True)
        self.setIndentation(14)
        self.setUniformRowHeights(True)
        self.setIconSize(QSize(16, 16))
        self.setDragEnabled(True)
        self.setDragDropMode(QAbstractItemView.DragOnly)
        self.setDefaultDropAction(Qt.CopyAction)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setExpandsOnDoubleClick(True)

    def mimeTypes(self) -> list[str]:
        return [NODE_MIME]

    def mimeData(self, items) -> QMimeData:
        names = [it.data(0, _TYPE_ROLE) for it in items if it.data(0, _TYPE_ROLE)]
        if not names:
            return QMimeData()
        return node_mime_data(names[0])

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.CopyAction

    def startDrag(self, supported_actions) -> None:
        item = self.currentItem()
        name = item.data(0, _TYPE_ROLE) if item is not None else None
        if not name:
            return
        drag = QDrag(self)
        drag.setMimeData(self.mimeData([item]))
        chip = _drag_chip(name, self)
        drag.setPixmap(chip)
        drag.setHotSpot(QPoint(12, round(chip.height() / chip.devicePixelRatio() / 2)))
        drag.exec(Qt.CopyAction, Qt.CopyAction)

    def keyPressEvent(self, event) -> None:
        item = self.currentItem()
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and item is not None:
            name = item.data(0, _TYPE_ROLE)
            if name:
                self.type_activated.emit(name)
                return
        super().keyPressEvent(event)


def _drag_chip(type_name: str, widget: QWidget) -> QPixmap:
    """A small rounded label with the category icon: what the cursor carries in a drag."""
    cls = catalogue.get(type_name)
    category = cls.category if cls else ""
    font = QFont(widget.font())
    font.setBold(True)
    fm = QFontMetrics(font)
    w, h = fm.horizontalAdvance(type_name) + 40, max(24, fm.height() + 10)
    ratio = max(1.0, widget.devicePixelRatioF())
    pm = QPixmap(int(w * ratio), int(h * ratio))
    pm.setDevicePixelRatio(ratio)
    pm.fill(Qt.transparent)
    t = theme.current()
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(t.category_color(category))
    p.setBrush(t.color("node_body"))
    p.drawRoundedRect(QRectF(0.5, 0.5, w - 1, h - 1), 6, 6)
    p.drawPixmap(8, (h - 16) // 2, icons.category_icon(category).pixmap(16, 16))
    p.setFont(font)
    p.setPen(t.color("text"))
    p.drawText(QRectF(30, 0, w - 34, h), Qt.AlignVCenter | Qt.AlignLeft, type_name)
    p.end()
    return pm


# ---- tooltips --------------------------------------------------------------------------------
def type_tooltip(cls: type[Layer]) -> str:
    """Rich text: what the type does, its ports and its parameters with defaults."""
    specs = cls.all_params_spec()
    defaults = {k: s.default for k, s in specs.items() if not s.required}
    try:
        ins = tuple(cls.input_ports(defaults))
    except (KeyError, TypeError, ValueError):
        ins = ()
    outs = tuple(cls.output_ports)
    e = html.escape
    parts = [f"<b>{e(cls.type_name)}</b> <i>({e(cls.category)})</i>",
             f"<p style='margin-top:4px'>{e(cls.doc)}</p>"]
    ports = f"{', '.join(ins) or 'none'} → {', '.join(outs) or 'none'}"
    parts.append(f"<p><b>Ports:</b> {e(ports)}</p>")
    if specs:
        rows = "".join(f"<li><b>{e(name)}</b> {e(_default_text(spec))}"
                       f"{(' — ' + e(spec.doc)) if spec.doc else ''}</li>"
                       for name, spec in specs.items())
        parts.append(f"<p><b>Parameters:</b></p><ul style='margin-top:0'>{rows}</ul>")
    else:
        parts.append("<p><b>Parameters:</b> none</p>")
    if cls.param_names:
        parts.append(f"<p><b>Learns:</b> {e(', '.join(cls.param_names))}</p>")
    return "<qt>" + "".join(parts) + "</qt>"


def _default_text(spec: ParamSpec) -> str:
    if spec.default is REQUIRED:
        return "(required)"
    value = spec.default
    if isinstance(value, tuple):
        value = list(value)
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif value is None:
        value = "none"
    return f"(default {value})"
