"""Shared measures, fonts and small drawing helpers of the canvas items.

Node geometry is fixed per node type (never per analysis result), so a re-validation only
repaints a node and never moves its ports or edges.
"""
from __future__ import annotations

from functools import cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QIcon, QPainter, QPixmap

NODE_MIME = "application/x-neurocanvas-node"  # palette drag payload: a node type name

NODE_WIDTH = 170.0
HEADER_H = 40.0  # title and type
ROW_H = 20.0  # one port row
FOOTER_LINE_H = 16.0  # output shape / parameter count lines
CORNER = 7.0
PORT_R = 5.5  # drawn radius of a port
PORT_HIT_R = 10.0  # radius in which a port takes the mouse
LOD_TEXT = 0.45  # below this zoom (scene to device scale) text is not drawn
LOD_DETAIL = 0.25  # below this, only the node body and band
# Fitting the view never goes below this: node titles are drawn and can be read
READABLE_ZOOM = 0.6
assert READABLE_ZOOM > LOD_TEXT


def ui_font(point_size: float, bold: bool = False) -> QFont:
    f = QFont()
    f.setPointSizeF(point_size)
    f.setBold(bold)
    return f


@cache
def fonts() -> dict[str, QFont]:
    return {"title": ui_font(9.5, bold=True), "type": ui_font(8.0),
            "port": ui_font(8.0), "info": ui_font(8.0), "badge": ui_font(7.5, bold=True),
            "edge": ui_font(7.5)}


@cache
def metrics(name: str) -> QFontMetricsF:
    return QFontMetricsF(fonts()[name])


_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def delay_label(delay: int) -> str:
    """'z⁻¹' for a delay of one step, 'z⁻³' for three."""
    return "z" + f"-{delay}".translate(_SUPERSCRIPT)


def _fallback_icon_pixmap(category: str, color: QColor, size: int) -> QPixmap:
    """A round mark with the category's initial, until ``gui.icons`` provides icons."""
    pm = QPixmap(size, size)
    pm.fill(Qt.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor(255, 255, 255, 235))
    p.drawEllipse(QRectF(0.5, 0.5, size - 1, size - 1))
    p.setPen(color)
    f = ui_font(size * 0.42, bold=True)
    p.setFont(f)
    p.drawText(QRectF(0, 0, size, size), Qt.AlignCenter, (category or "?")[:1])
    p.end()
    return pm


_icon_cache: dict[tuple[str, str, int], QPixmap] = {}


def category_pixmap(category: str, color: QColor, size: int = 18) -> QPixmap:
    """The category icon at ``size`` (device pixels of the cached node picture)."""
    key = (category, color.name(), size)
    pm = _icon_cache.get(key)
    if pm is None:
        icon = _category_icon(category)
        pm = icon.pixmap(size, size) if icon is not None and not icon.isNull() else None
        if pm is None or pm.isNull():
            pm = _fallback_icon_pixmap(category, color, size)
        _icon_cache[key] = pm
    return pm


def _category_icon(category: str) -> QIcon | None:
    try:  # gui.icons is written beside the canvas; draw a fallback until it exists
        from gui.icons import category_icon
    except ImportError:
        return None
    try:
        return category_icon(category)
    except Exception:  # an icon is decoration; never let it break the canvas
        return None


def clear_icon_cache() -> None:
    _icon_cache.clear()


def blend(a: QColor, b: QColor, t: float) -> QColor:
    """``a`` moved by ``t`` (0..1) towards ``b``."""
    return QColor(round(a.red() + (b.red() - a.red()) * t),
                  round(a.green() + (b.green() - a.green()) * t),
                  round(a.blue() + (b.blue() - a.blue()) * t))
