"""Small painted icons: one glyph per node category, the application icon, the lock sign.

Drawn with QPainter rather than shipped as files, so they follow the theme's category colours
and stay sharp at any size. Icons are cached per (theme, category, size); switching the theme
gives new icons on the next call.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QHBoxLayout, QLabel, QWidget

from gui import theme

_cache: dict[tuple[str, str, int], QIcon] = {}
_app_icon: QIcon | None = None


def category_icon(category: str, size: int = 16) -> QIcon:
    """A ``size`` x ``size`` icon for a node category, in that category's theme colour.

    Unknown categories get a plain dot in the muted text colour.
    """
    t = theme.current()
    key = (t.name, category, size)
    icon = _cache.get(key)
    if icon is None:
        glyph, colour = _GLYPHS.get(category, _dot), t.category_color(category)
        icon = _cache[key] = _painted(size, lambda p: glyph(p, colour))
    return icon


def _pen(colour: QColor, width: float = 1.6) -> QPen:
    pen = QPen(colour, width)
    pen.setCapStyle(Qt.RoundCap)
    pen.setJoinStyle(Qt.RoundJoin)
    return pen


def _soft(colour: QColor, alpha: int = 70) -> QColor:
    c = QColor(colour)
    c.setAlpha(alpha)
    return c


def _data(p: QPainter, c: QColor) -> None:
    """A database cylinder: where samples come from."""
    p.setPen(_pen(c, 1.4))
    p.setBrush(_soft(c))
    body = QPainterPath()
    body.moveTo(3, 4)
    body.lineTo(3, 12)
    body.arcTo(QRectF(3, 10, 10, 4), 180, 180)
    body.lineTo(13, 4)
    body.arcTo(QRectF(3, 2, 10, 4), 0, -180)
    p.drawPath(body)
    p.setBrush(Qt.NoBrush)
    p.drawEllipse(QRectF(3, 2, 10, 4))
    mid = QPainterPath()
    mid.moveTo(3, 8)
    mid.arcTo(QRectF(3, 6, 10, 4), 180, 180)
    p.drawPath(mid)


def _core(p: QPainter, c: QColor) -> None:
    """Two fully connected columns of neurons: a dense layer."""
    left = [QPointF(4, 4), QPointF(4, 12)]
    right = [QPointF(12, 3), QPointF(12, 8), QPointF(12, 13)]
    p.setPen(_pen(_soft(c, 160), 1.0))
    for a in left:
        for b in right:
            p.drawLine(a, b)
    p.setPen(Qt.NoPen)
    p.setBrush(c)
    for pt in left + right:
        p.drawEllipse(pt, 1.9, 1.9)


def _convolution(p: QPainter, c: QColor) -> None:
    """A 3x3 kernel grid with its centre cell filled."""
    p.setPen(_pen(c, 1.2))
    p.setBrush(_soft(c, 40))
    p.drawRect(QRectF(2, 2, 12, 12))
    p.setBrush(c)
    p.setPen(Qt.NoPen)
    p.drawRect(QRectF(6, 6, 4, 4))
    p.setPen(_pen(c, 1.0))
    for x in (6, 10):
        p.drawLine(QPointF(x, 2), QPointF(x, 14))
    for y in (6, 10):
        p.drawLine(QPointF(2, y), QPointF(14, y))


def _recurrent(p: QPainter, c: QColor) -> None:
    """A loop arrow: state fed back to itself."""
    p.setPen(_pen(c, 1.8))
    p.setBrush(Qt.NoBrush)
    p.drawArc(QRectF(3, 3, 10, 10), 60 * 16, 290 * 16)
    # arrow head at the open end of the arc (angle 60 degrees, counter-clockwise in Qt)
    a = math.radians(60)
    tip = QPointF(8 + 5 * math.cos(a), 8 - 5 * math.sin(a))
    p.setPen(Qt.NoPen)
    p.setBrush(c)
    p.drawPolygon(QPolygonF([tip + QPointF(-3.2, -1.6), tip + QPointF(1.2, -3.0),
                             tip + QPointF(0.4, 1.8)]))


def _regularization(p: QPainter, c: QColor) -> None:
    """A shield: keeps the weights in check."""
    path = QPainterPath()
    path.moveTo(8, 1.8)
    path.lineTo(13.5, 3.8)
    path.cubicTo(13.5, 9.5, 11, 12.5, 8, 14.4)
    path.cubicTo(5, 12.5, 2.5, 9.5, 2.5, 3.8)
    path.closeSubpath()
    p.setPen(_pen(c, 1.4))
    p.setBrush(_soft(c))
    p.drawPath(path)
    p.drawLine(QPointF(8, 4.5), QPointF(8, 11.5))


def _activations(p: QPainter, c: QColor) -> None:
    """An S-shaped curve (sigmoid) over a baseline."""
    p.setPen(_pen(_soft(c, 120), 1.0))
    p.drawLine(QPointF(2, 13.5), QPointF(14, 13.5))
    path = QPainterPath()
    path.moveTo(2, 12.5)
    path.cubicTo(8.5, 12.5, 7.5, 3, 14, 3)
    p.setPen(_pen(c, 1.9))
    p.setBrush(Qt.NoBrush)
    p.drawPath(path)


def _merge(p: QPainter, c: QColor) -> None:
    """Two lines joining into one."""
    p.setPen(_pen(c, 1.7))
    p.setBrush(Qt.NoBrush)
    for y in (3.5, 12.5):
        path = QPainterPath()
        path.moveTo(2, y)
        path.cubicTo(6, y, 6, 8, 9.5, 8)
        p.drawPath(path)
    p.drawLine(QPointF(9.5, 8), QPointF(12, 8))
    p.setPen(Qt.NoPen)
    p.setBrush(c)
    p.drawPolygon(QPolygonF([QPointF(11.5, 5), QPointF(15, 8), QPointF(11.5, 11)]))


def _losses(p: QPainter, c: QColor) -> None:
    """A target: what the network is pulled towards."""
    p.setBrush(Qt.NoBrush)
    p.setPen(_pen(c, 1.4))
    p.drawEllipse(QPointF(8, 8), 6, 6)
    p.drawEllipse(QPointF(8, 8), 3.4, 3.4)
    p.setPen(Qt.NoPen)
    p.setBrush(c)
    p.drawEllipse(QPointF(8, 8), 1.5, 1.5)


def _dot(p: QPainter, c: QColor) -> None:
    p.setPen(Qt.NoPen)
    p.setBrush(c)
    p.drawEllipse(QPointF(8, 8), 4, 4)


_GLYPHS = {"Data": _data, "Core": _core, "Convolution": _convolution,
           "Recurrent": _recurrent, "Regularization": _regularization,
           "Activations": _activations, "Merge": _merge, "Losses": _losses}


def app_icon() -> QIcon:
    """The application icon: three layers of nodes wired together on a rounded tile."""
    global _app_icon
    if _app_icon is None:
        _app_icon = QIcon()
        for size in (16, 32, 64, 128, 256):
            _app_icon.addPixmap(_app_pixmap(size))
    return _app_icon


def _app_pixmap(size: int) -> QPixmap:
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.scale(size / 64.0, size / 64.0)
    # Fixed colours: the application icon looks the same in every theme.
    p.setPen(Qt.NoPen)
    p.setBrush(QColor("#2b3a67"))
    p.drawRoundedRect(QRectF(2, 2, 60, 60), 13, 13)
    layers = [[QPointF(15, 22), QPointF(15, 42)],
              [QPointF(32, 15), QPointF(32, 32), QPointF(32, 49)],
              [QPointF(49, 32)]]
    colours = [QColor("#5aa2f0"), QColor("#3cc7b2"), QColor("#f2c230")]
    p.setPen(QPen(QColor(255, 255, 255, 120), 2.2))
    for a_layer, b_layer in zip(layers, layers[1:], strict=False):
        for a in a_layer:
            for b in b_layer:
                p.drawLine(a, b)
    p.setPen(QPen(QColor("#ffffff"), 2.0))
    for layer, colour in zip(layers, colours, strict=True):
        p.setBrush(colour)
        for pt in layer:
            p.drawEllipse(pt, 5.5, 5.5)
    p.end()
    return pm


_problem_cache: dict[tuple[str, str, int], QIcon] = {}


def _painted(size: int, paint: Callable[[QPainter], None]) -> QIcon:
    """An icon at 1x and 2x (sharp on high-DPI screens) from ``paint``, which draws on a
    16 x 16 antialiased canvas scaled to ``size``, so every size looks the same."""
    icon = QIcon()
    for scale in (1, 2):
        pm = QPixmap(size * scale, size * scale)
        pm.setDevicePixelRatio(scale)
        pm.fill(Qt.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.Antialiasing)
        p.scale(size / 16.0, size / 16.0)
        paint(p)
        p.end()
        icon.addPixmap(pm)
    return icon


def problem_icon(severity: str = "error", size: int = 16) -> QIcon:
    """A round red mark with '!' for an error, an amber triangle for a warning."""
    t = theme.current()
    key = (t.name, severity, size)
    icon = _problem_cache.get(key)
    if icon is None:
        def paint(p: QPainter) -> None:
            p.setPen(Qt.NoPen)
            if severity == "warning":
                p.setBrush(t.color("warning"))
                p.drawPolygon(QPolygonF([QPointF(8, 1.5), QPointF(15, 14.5),
                                         QPointF(1, 14.5)]))
            else:
                p.setBrush(t.color("error"))
                p.drawEllipse(QPointF(8, 8), 7, 7)
            p.setBrush(QColor("#ffffff"))
            top = 5.5 if severity == "warning" else 3.8
            p.drawRoundedRect(QRectF(7.1, top, 1.8, 5.4), 0.9, 0.9)
            p.drawEllipse(QPointF(8, 12.2), 1.1, 1.1)
        icon = _problem_cache[key] = _painted(size, paint)
    return icon


def reset_icon(size: int = 16) -> QIcon:
    """A counter-clockwise arrow in the muted text colour: "back to the default"."""
    t = theme.current()
    key = (t.name, "__reset__", size)
    icon = _cache.get(key)
    if icon is None:
        colour = t.color("muted_text")
        icon = _cache[key] = _painted(size, lambda p: _recurrent(p, colour))
    return icon


def lock_icon(colour: QColor | str | None = None, size: int = 16) -> QIcon:
    """A padlock, painted: the "locked while training" sign. The emoji it replaces is missing
    from many fonts and showed as an empty box."""
    c = QColor(colour) if colour is not None else theme.current().color("text")
    key = (theme.current().name, f"__lock__{c.name(QColor.HexArgb)}", size)
    icon = _cache.get(key)
    if icon is None:
        def paint(p: QPainter) -> None:
            p.setPen(_pen(c, 1.7))
            p.setBrush(Qt.NoBrush)
            shackle = QPainterPath()
            shackle.moveTo(5, 7.5)
            shackle.lineTo(5, 5)
            shackle.arcTo(QRectF(5, 2, 6, 6), 180, -180)
            shackle.lineTo(11, 7.5)
            p.drawPath(shackle)
            p.setPen(Qt.NoPen)
            p.setBrush(c)
            body = QPainterPath()
            body.addRoundedRect(QRectF(3, 7, 10, 7.5), 1.6, 1.6)
            hole = QPainterPath()  # the keyhole is cut out, so it shows the background
            hole.addEllipse(QPointF(8, 10.2), 1.3, 1.3)
            hole.addRect(QRectF(7.45, 10.2, 1.1, 2.5))
            p.drawPath(body.subtracted(hole))
        icon = _cache[key] = _painted(size, paint)
    return icon


class IconLabel(QWidget):
    """A painted icon and a text side by side, shown and hidden as one widget.

    ``icon`` is a function giving the icon; it is asked again when the palette changes, so a
    theme switch repaints the icon in the new theme's colours.
    """

    def __init__(self, icon: Callable[[], QIcon], text: str, parent=None,
                 icon_size: int = 16):
        super().__init__(parent)
        self.setAttribute(Qt.WA_StyledBackground)  # so a style sheet can give it a background
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(5)
        self.icon_label = QLabel(self)
        self.text_label = QLabel(text, self)
        row.addWidget(self.icon_label)
        row.addWidget(self.text_label)
        self._icon_size = icon_size
        self._make_icon = icon
        self.refresh_icon()

    def refresh_icon(self) -> None:
        self.icon = self._make_icon()
        self.icon_label.setPixmap(self.icon.pixmap(self._icon_size, self._icon_size))

    def changeEvent(self, event):  # noqa: N802 - Qt's name
        super().changeEvent(event)
        if event.type() == QEvent.PaletteChange:
            self.refresh_icon()

    def text(self) -> str:
        return self.text_label.text()

    def setText(self, text: str) -> None:  # noqa: N802 - the QLabel name, for callers
        self.text_label.setText(text)
