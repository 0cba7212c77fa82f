"""A port of a node: a small circle on the node's left (inputs) or right (outputs) edge.

Ports take no mouse events themselves; the scene finds the port under a press and runs the
connection drag (``gui.canvas.connect_drag``). A port only draws itself and says where it is.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem

from gui import theme
from gui.canvas.look import PORT_HIT_R, PORT_R


class PortItem(QGraphicsItem):
    """Port ``name`` of its parent NodeItem; ``is_output`` tells the side."""

    def __init__(self, node_item, name: str, is_output: bool):
        super().__init__(node_item)
        self.node_item = node_item
        self.name = name
        self.is_output = is_output
        self.connected = False
        self.highlighted = False  # a compatible target under a connection drag
        self.setAcceptHoverEvents(True)
        self.setCursor(Qt.CrossCursor)
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)

    @property
    def node_id(self) -> str:
        return self.node_item.node_id

    def scene_center(self) -> QPointF:
        return self.scenePos()

    def boundingRect(self) -> QRectF:
        r = PORT_HIT_R
        return QRectF(-r, -r, 2 * r, 2 * r)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addEllipse(self.boundingRect())
        return path

    def set_connected(self, connected: bool) -> None:
        if connected != self.connected:
            self.connected = connected
            self.update()

    def set_highlighted(self, on: bool) -> None:
        if on != self.highlighted:
            self.highlighted = on
            self.update()

    def hoverEnterEvent(self, event):
        self.set_highlighted(True)

    def hoverLeaveEvent(self, event):
        self.set_highlighted(False)

    def paint(self, painter: QPainter, option, widget=None) -> None:
        t = theme.current()
        colour = t.category_color(self.node_item.category)
        painter.setRenderHint(QPainter.Antialiasing)
        r = PORT_R + (1.5 if self.highlighted else 0.0)
        painter.setPen(QPen(QColor(t.node_selected) if self.highlighted else colour.darker(115),
                            1.6))
        painter.setBrush(colour if (self.connected or self.highlighted) else t.color("node_body"))
        painter.drawEllipse(QRectF(-r, -r, 2 * r, 2 * r))
