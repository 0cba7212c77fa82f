"""A port of a node: a small circle on the node's left (inputs) or right (outputs) edge.

Ports take no mouse events themselves; the scene finds the port under a press and runs the
connection drag (``gui.canvas.connect_drag``). A port says where it is; its node draws it.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from gui import theme
from gui.canvas.look import PORT_HIT_R, PORT_R

_BOUNDS = QRectF(-PORT_HIT_R, -PORT_HIT_R, 2 * PORT_HIT_R, 2 * PORT_HIT_R)


class PortItem(QGraphicsItem):
    """Port ``name`` of its parent NodeItem; ``is_output`` tells the side.

    The node draws its ports into its own cached picture; a port item paints only while
    it is highlighted (under the mouse, or a target of a connection drag), so panning does
    not draw hundreds of small items.
    """

    def __init__(self, node_item, name: str, is_output: bool):
        super().__init__(node_item)
        self.node_item = node_item
        self.name = name
        self.is_output = is_output
        self.connected = False
        self.highlighted = False  # a compatible target under a connection drag
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CrossCursor)
        self.setFlag(QGraphicsItem.ItemHasNoContents, True)

    @property
    def node_id(self) -> str:
        return self.node_item.node_id

    def scene_center(self) -> QPointF:
        return self.scenePos()

    def boundingRect(self) -> QRectF:
        return _BOUNDS

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addEllipse(_BOUNDS)
        return path

    def set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.node_item.update()  # drawn in the node's picture

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self.setFlag(QGraphicsItem.ItemHasNoContents, not on)
            self.update()

    def hoverEnterEvent(self, event):
        self.set_highlighted(True)

    def hoverLeaveEvent(self, event):
        self.set_highlighted(False)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        if self.highlighted:
            painter.setRenderHint(QPainter.Antialiasing)
            paint_port(painter, QPointF(0, 0), self.node_item.category, True, True)


def paint_port(painter: QPainter, at: QPointF, category: str, filled: bool,
               highlighted: bool = False) -> None:
    """One port circle: filled when connected, larger and outlined when highlighted."""
    t = theme.current()
    colour = t.category_color(category)
    r = PORT_R + (1.5 if highlighted else 0.0)
    painter.setPen(QPen(QColor(t.node_selected) if highlighted else colour.darker(115), 1.6))
    painter.setBrush(colour if filled else t.color("node_body"))
    painter.drawEllipse(at, r, r)
