"""The picture of one edge: a cubic curve from an output port to an input port.

An edge that runs backwards (a delay edge closing a recurrent loop, usually) leaves its
source to the right, runs back below both nodes and enters its target from the left, so it
never crosses the nodes it joins. Delay edges are dashed and labelled z⁻¹ (z⁻ᵈ); every edge
shows the shape it carries when zoomed in enough.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPainterPathStroker, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from core.graph import Edge
from gui import theme
from gui.canvas.look import LOD_TEXT, delay_label, fonts, metrics

BACK_MARGIN = 36.0  # how far below the lower node a backward edge runs
# enum members looked up once: paint() runs for every visible edge on every frame
_ROUND_CAP = Qt.RoundCap
_CUSTOM_DASH = Qt.CustomDashLine
_ANTIALIAS = QPainter.Antialiasing
_NO_BRUSH = Qt.NoBrush


class EdgeItem(QGraphicsItem):
    """Draws ``edge`` (the model's Edge object) between two NodeItems."""

    def __init__(self, edge: Edge, src_node, dst_node, src_port: str | None,
                 dst_port: str | None):
        super().__init__()
        self.edge = edge
        self.src_node = src_node
        self.dst_node = dst_node
        self.src_port = src_port  # port names; None where the edge names no real port
        self.dst_port = dst_port
        self.shape_text = ""
        self.heat: QColor | None = None
        self.hovered = False
        self._path = QPainterPath()
        self._shape: QPainterPath | None = None
        self._label_at = QPointF()
        self._rect = QRectF()
        self._room = 0.0
        self._pen_key: tuple | None = None
        self._pen_cache = QPen()
        self.setFlag(QGraphicsItem.ItemIsSelectable)
        self.setAcceptHoverEvents(True)
        self.setZValue(-1.0)
        self.update_path()

    @property
    def broken(self) -> bool:
        """The edge names a port its node does not have (drawn in the error colour)."""
        return self.src_port is None or self.dst_port is None

    def set_ports(self, src_port: str | None, dst_port: str | None) -> None:
        self.src_port, self.dst_port = src_port, dst_port
        self.update_path()

    def endpoints(self) -> tuple[QPointF, QPointF]:
        sp = self.src_node.port(self.src_port, True) if self.src_port else None
        dp = self.dst_node.port(self.dst_port, False) if self.dst_port else None
        a = sp.scenePos() if sp is not None else self.src_node.right_anchor()
        b = dp.scenePos() if dp is not None else self.dst_node.left_anchor()
        return a, b

    def update_path(self) -> None:
        a, b = self.endpoints()
        below = max(self.src_node.sceneBoundingRect().bottom(),
                    self.dst_node.sceneBoundingRect().bottom()) + BACK_MARGIN
        self._path, self._label_at = edge_path(a, b, below)
        # room for a shape label: a short edge between adjacent nodes has none
        self._room = abs(b.x() - a.x()) + abs(b.y() - a.y()) if b.x() >= a.x() - 4.0 \
            else float("inf")
        self.prepareGeometryChange()
        self._shape = None
        r = self._path.boundingRect()
        # room for the shape label and, above it, the step-through's gradient label
        lab = QRectF(self._label_at.x() - 70, self._label_at.y() - 34, 140, 48)
        self._rect = r.united(lab).adjusted(-6, -6, 6, 6)
        self.update()

    def set_shape_text(self, text: str) -> None:
        if text != self.shape_text:
            self.shape_text = text
            self.update()

    def set_heat(self, color: QColor | None) -> None:
        """Colour the edge (live training: the gradient flowing back along it)."""
        if color != self.heat:
            self.heat = QColor(color) if color is not None else None
            self.update()

    # the walk through one training step (gui.training.stepper_view): the norm of the
    # gradient the backward pass sent back along this edge ("∇ 1.2e-03"); None: not passed
    grad_text: str | None = None

    def set_grad_text(self, text: str | None) -> None:
        """Show (or, with None, remove) the gradient label of the step-through."""
        if text != self.grad_text:
            self.grad_text = text
            # above the nodes while labelled: a short edge's label overlaps the nodes it joins
            self.setZValue(0.5 if text else -1.0)
            self.update()

    def _paint_grad_label(self, painter: QPainter) -> None:
        t = theme.current()
        font = fonts()["edge"]
        fm = metrics("edge")
        text = self.grad_text
        w = fm.horizontalAdvance(text) + 12.0
        h = fm.height() + 4.0
        # above the shape label, so both can be read
        r = QRectF(self._label_at.x() - w / 2, self._label_at.y() - h - 8.0, w, h)
        colour = t.color("warning")
        painter.setPen(QPen(colour, 1.2))
        painter.setBrush(t.color("canvas"))
        painter.drawRoundedRect(r, h / 2, h / 2)
        painter.setFont(font)
        painter.setPen(t.color("text"))
        painter.drawText(r, Qt.AlignCenter, text)

    def label(self) -> str:
        """What the edge's label says: z⁻ᵈ for a delay edge and the shape it carries."""
        parts = []
        if self.edge.delay:
            parts.append(delay_label(self.edge.delay))
        if self.shape_text:
            parts.append(self.shape_text)
        return "  ".join(parts)

    # ---- geometry ----------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        return self._rect

    def shape(self) -> QPainterPath:
        if self._shape is None:
            stroker = QPainterPathStroker()
            stroker.setWidth(12.0)
            self._shape = stroker.createStroke(self._path)
        return self._shape

    def path(self) -> QPainterPath:
        return self._path

    def label_pos(self) -> QPointF:
        return QPointF(self._label_at)

    # ---- events ------------------------------------------------------------------------
    def hoverEnterEvent(self, event):
        self.hovered = True
        self.update()

    def hoverLeaveEvent(self, event):
        self.hovered = False
        self.update()

    def contextMenuEvent(self, event):
        scene = self.scene()
        if scene is None or not hasattr(scene, "edge_menu"):
            return
        scene.clearSelection()
        self.setSelected(True)
        scene.edge_menu(self).exec(event.screenPos())
        event.accept()

    # ---- painting ----------------------------------------------------------------------
    def _pen(self) -> QPen:
        """The stroke for the edge's state; built once per state (paint stays cheap)."""
        t = theme.current()
        selected = self.isSelected()
        near = selected or self.hovered or self.src_node.isSelected() \
            or self.dst_node.isSelected()
        key = (t.name, self.broken, self.heat.rgba() if self.heat is not None else None,
               selected, near, bool(self.edge.delay))
        if key != self._pen_key:
            if self.broken:
                colour = t.color("error")
            elif self.heat is not None:
                colour = self.heat
            elif near:
                colour = t.color("edge_selected")
            else:
                colour = t.color("edge")
            width = 3.2 if selected else (2.4 if (self.hovered or self.heat) else 1.8)
            pen = QPen(colour, width)
            pen.setCapStyle(_ROUND_CAP)
            if self.edge.delay:
                pen.setStyle(_CUSTOM_DASH)
                pen.setDashPattern([4.0, 3.0])
            self._pen_key, self._pen_cache = key, pen
        return self._pen_cache

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        painter.setRenderHint(_ANTIALIAS)
        pen = self._pen()
        painter.setPen(pen)
        painter.setBrush(_NO_BRUSH)
        painter.drawPath(self._path)

        if lod < LOD_TEXT:
            return
        if self.grad_text:
            self._paint_grad_label(painter)
        text = self.label()
        if not text:
            return
        font = fonts()["edge"]
        fm = metrics("edge")
        w = fm.horizontalAdvance(text) + 10.0
        if w + 24.0 > self._room:
            if not self.edge.delay:
                return
            text = delay_label(self.edge.delay)
            w = fm.horizontalAdvance(text) + 10.0
        h = fm.height() + 3.0
        r = QRectF(self._label_at.x() - w / 2, self._label_at.y() - h / 2, w, h)
        t = theme.current()
        painter.setPen(QPen(pen.color(), 1.0) if self.edge.delay else Qt.NoPen)
        painter.setBrush(t.color("canvas"))
        painter.drawRoundedRect(r, h / 2, h / 2)
        painter.setFont(font)
        painter.setPen(t.color("text") if self.edge.delay else t.color("muted_text"))
        painter.drawText(r, Qt.AlignCenter, text)


def edge_path(a: QPointF, b: QPointF, below: float) -> tuple[QPainterPath, QPointF]:
    """The curve from output point ``a`` to input point ``b`` and where its label goes.
    ``below``: the y a backward edge runs back along."""
    path = QPainterPath(a)
    if b.x() >= a.x() - 4.0:
        dx = max(40.0, (b.x() - a.x()) * 0.5)
        path.cubicTo(QPointF(a.x() + dx, a.y()), QPointF(b.x() - dx, b.y()), b)
        return path, path.pointAtPercent(0.5)
    # backwards: out to the right, down, back along ``below``, up into the input
    r = 46.0
    below = max(below, a.y() + r, b.y() + r)
    path.cubicTo(QPointF(a.x() + r * 1.6, a.y()), QPointF(a.x() + r * 1.6, below),
                 QPointF(a.x(), below))
    path.lineTo(QPointF(b.x(), below))
    path.cubicTo(QPointF(b.x() - r * 1.6, below), QPointF(b.x() - r * 1.6, b.y()), b)
    return path, QPointF((a.x() + b.x()) / 2, below)
