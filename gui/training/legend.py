"""Legends that never cover a curve, and the curve colours of the current theme.

A plot with many curves (loss, gradients) gets a ``CurveList`` beside it: a checkable list
whose entries show or hide their curves, each with a sample of its line. A plot with a few
(the state gradients, histograms) names them in its title (``title_legend``). Entry text is
in the theme's text colour, so it reads on either theme whatever the curve's colour.
"""
from __future__ import annotations

from dataclasses import dataclass

import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QListWidget, QListWidgetItem, QWidget

from gui import theme

KEY_ROLE = Qt.ItemDataRole.UserRole
SWATCH = (30, 14)  # the line sample of a list entry, in pixels


@dataclass(frozen=True)
class CurveColors:
    """The colours of the training curves, from the theme (brighter on the dark one)."""
    loss: QColor
    validation: QColor
    accuracy: QColor
    neutral: QColor  # the global gradient norm
    series: tuple[QColor, ...]  # one per loss node of a graph with several losses

    def nth(self, i: int) -> QColor:
        return QColor(self.series[i % len(self.series)])


def curve_colors() -> CurveColors:
    t = theme.current()
    c = t.category
    series = tuple(QColor(c[k]) for k in ("Merge", "Recurrent", "Convolution", "Losses",
                                          "Activations", "Core"))
    return CurveColors(QColor(t.highlight), QColor(c["Recurrent"]), QColor(c["Convolution"]),
                       QColor(t.muted_text), series)


def layer_color(i: int) -> QColor:
    """The colour of the i-th layer's gradient curve: nine hues in two shades, lighter and
    a little paler on the dark theme."""
    if theme.current().name == "dark":
        return pg.intColor(i, hues=9, values=2, maxValue=255, minValue=200, sat=170)
    return pg.intColor(i, hues=9, values=2, maxValue=230, minValue=150)


def swatch(pen: QPen, symbol: str | None = None, brush: QColor | None = None) -> QIcon:
    """A line sample in ``pen`` (with the symbol in the middle, if any), for a list entry."""
    w, h = SWATCH
    shown = QPen(pg.mkPen(pen))  # pyqtgraph keeps some pens as colour tuples
    shown.setWidthF(max(2.0, shown.widthF()))
    if shown.color().alpha() < 160:  # a faint curve still gets a visible sample
        col = QColor(shown.color())
        col.setAlpha(160)
        shown.setColor(col)
    pm = QPixmap(w, h)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    try:
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(shown)
        p.drawLine(QPointF(1, h / 2), QPointF(w - 1, h / 2))
        if symbol:
            p.setPen(QPen(shown.color(), 1))
            p.setBrush(brush or shown.color())
            p.drawEllipse(QPointF(w / 2, h / 2), 3.5, 3.5)
    finally:
        p.end()  # a pixmap freed while painted on crashes Qt
    return QIcon(pm)


def title_legend(title: str, entries: list[tuple[str, QColor]]) -> str:
    """Rich text for a plot's title: ``title`` and a coloured line and name per curve."""
    names = "&nbsp;&nbsp;".join(f"<span style='color:{c.name()}'>&#9473;&#9473;</span>"
                                f"&nbsp;{_escape(n)}" for n, c in entries)
    return f"{_escape(title)}&nbsp;&nbsp;&nbsp;{names}" if names else _escape(title)


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class CurveList(QListWidget):
    """The legend beside a plot: one checkable entry per curve (or group of curves)."""

    toggled = Signal(str, bool)  # key, shown

    def __init__(self, name: str, tooltip: str = "Show or hide a curve",
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        self.setToolTip(tooltip)
        self.setIconSize(pg.QtCore.QSize(*SWATCH))
        self.setMinimumWidth(130)
        self.setMaximumWidth(200)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.itemChanged.connect(self._on_changed)
        self.apply_theme()

    def add(self, key: str, label: str, pen: QPen, symbol: str | None = None,
            shown: bool = True) -> QListWidgetItem:
        item = self.entry(key)
        self.blockSignals(True)  # adding or restyling an entry is not the user toggling it
        try:
            if item is None:
                item = QListWidgetItem(label)
                item.setData(KEY_ROLE, key)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
                self.addItem(item)
            item.setText(label)
            item.setIcon(swatch(pen, symbol))
        finally:
            self.blockSignals(False)
        return item

    def entry(self, key: str) -> QListWidgetItem | None:
        for i in range(self.count()):
            if self.item(i).data(KEY_ROLE) == key:
                return self.item(i)
        return None

    def keys(self) -> list[str]:
        return [self.item(i).data(KEY_ROLE) for i in range(self.count())]

    def labels(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def set_shown(self, key: str, shown: bool) -> None:
        item = self.entry(key)
        if item is not None:
            item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)

    def is_shown(self, key: str) -> bool:
        item = self.entry(key)
        return item is not None and item.checkState() == Qt.CheckState.Checked

    def _on_changed(self, item: QListWidgetItem) -> None:
        self.toggled.emit(item.data(KEY_ROLE), item.checkState() == Qt.CheckState.Checked)

    def apply_theme(self) -> None:
        """Check boxes that read on either theme: Fusion draws their frame in the palette's
        window colour made darker (140%), on the dark theme nearly the background's colour;
        a window colour that darkens to the muted text colour gives the frame contrast."""
        t = theme.current()
        pal = self.palette()
        pal.setColor(QPalette.ColorRole.Window, QColor(t.muted_text).lighter(140))
        pal.setColor(QPalette.ColorRole.Base, QColor(t.base))
        pal.setColor(QPalette.ColorRole.Text, QColor(t.text))
        self.setPalette(pal)
