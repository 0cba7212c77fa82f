"""The picture of one node: a rounded card with a category band, icon, title, type,
labelled ports, output shape and parameter count, and problem / training marks.

A node item is cached as a device pixmap (``DeviceCoordinateCache``): panning a large graph
blits pictures instead of drawing text. It is redrawn only when something it shows changes
(``set_info``, ``set_heat``, ``set_badge``, selection, theme). Below a zoom of ``LOD_TEXT``
no text is drawn at all.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QStyleOptionGraphicsItem

from core import catalogue
from gui import theme
from gui.canvas.look import (
    CORNER,
    FOOTER_LINE_H,
    HEADER_H,
    LOD_DETAIL,
    LOD_TEXT,
    NODE_WIDTH,
    ROW_H,
    blend,
    category_pixmap,
    fonts,
    metrics,
)
from gui.canvas.port_item import PortItem, paint_port

PORTS_TOP = HEADER_H + 4.0


# ---- sequence lengths in shape labels (docs/editor.md) -----------------------------------
# Where an Input names a ``lengths`` field, the values whose first axis is its time axis
# show it as ``[T≤50, 16]`` (each sample has up to 50 valid steps), and the nodes of a
# recurrent region fed by a sequence Input with lengths as ``[16] per step, T≤50``. The rule
# is the plan's (core/plan.py, ``_lengths``): the axis is carried while a layer keeps it.

_lengths_memo: list = [None, {}]  # the last analysis asked about, and its answer


def sequence_lengths(analysis) -> dict[str, tuple[str, int, bool]]:
    """``{node: (lengths field, T, per step)}`` of every node of ``analysis`` whose value has
    a time axis of variable length: per step for the nodes of a recurrent region whose
    sequence Input has lengths, else the value's first axis."""
    if _lengths_memo[0] is analysis:
        return _lengths_memo[1]
    out: dict[str, tuple[str, int, bool]] = {}
    region: tuple[str, int] | None = None
    layers = analysis.layers
    for nid in analysis.order:
        lay = layers.get(nid)
        shape = lay.params.get("shape") if lay is not None else None
        if lay is None or lay.data_role != "input" or not lay.params.get("lengths") \
                or not isinstance(shape, (list, tuple)) or not shape:
            continue
        got = (lay.params["lengths"], int(shape[0]))
        if nid in analysis.timed:
            region = region or got
        else:
            out[nid] = (*got, False)
    for nid in analysis.order:
        lay = layers.get(nid)
        if lay is None or lay.data_role is not None:
            continue
        if nid in analysis.timed:
            if region is not None:
                out[nid] = (*region, True)
            continue
        if lay.collects_steps:
            got = region
        else:
            srcs = [e.src for e in analysis.inputs.get(nid, {}).values()]
            got = next((out[s][:2] for s in srcs if s in out and not out[s][2]), None)
        if got is None:
            continue
        shape = analysis.shapes.get(nid) or ()
        if getattr(lay, "uses_lengths", False):
            keeps = lay.keeps_time_axis()
        else:
            keeps = len(shape) >= 1 and shape[0] == got[1]
        if keeps:
            out[nid] = (*got, False)
    for nid in analysis.timed:  # the sequence Inputs themselves
        if region is not None and nid not in out:
            out[nid] = (*region, True)
    _lengths_memo[:] = [analysis, out]
    return out


def lengths_shape_text(analysis, nid: str) -> str | None:
    """The output shape of ``nid`` with its variable-length time axis (``[T≤50, 16]``, or
    ``[16] per step, T≤50``), or None when its value has none."""
    got = sequence_lengths(analysis).get(nid) if analysis is not None else None
    shape = analysis.shapes.get(nid) if got is not None else None
    if shape is None:
        return None
    _field, t, per_step = got
    dims = [str(d) for d in shape]
    if per_step:
        return "[" + ", ".join(dims) + f"] per step, T≤{t}"
    return "[" + ", ".join([f"T≤{t}", *dims[1:]]) + "]"


def lengths_note(analysis, nid: str) -> str | None:
    """One sentence saying where the lengths of ``nid``'s time axis come from, or None."""
    got = sequence_lengths(analysis).get(nid) if analysis is not None else None
    if got is None:
        return None
    field, t, _per_step = got
    return (f"Variable length: each sample has 1 to {t} valid steps, from dataset field "
            f"'{field}'; the steps after a sample's length are padding, ignored.")


def _text_label(label) -> str | None:
    """The caption to show: a string label only. A file may hold any JSON under "label" (it
    is kept and written back); a number, list or object there is not shown."""
    return label if isinstance(label, str) and label else None


class NodeItem(QGraphicsItem):
    """One node of the graph. The scene keeps it in step with the model; it never edits."""

    def __init__(self, node_id: str, type_name: str, inputs: tuple[str, ...],
                 outputs: tuple[str, ...], label: str | None = None):
        super().__init__()
        self.node_id = node_id
        self.type_name = type_name
        cls = catalogue.get(type_name)
        self.category = cls.category if cls is not None else ""
        self.doc = cls.doc if cls is not None else f"unknown node type '{type_name}'"
        self.has_params = bool(cls is not None and cls.param_names)
        self.label = _text_label(label)
        self.shape_text = "?"
        self.params_text = ""
        self.problems: list[str] = []
        self.lengths_note: str | None = None  # where a variable-length axis comes from
        self.heat: QColor | None = None
        self.badge: str | None = None
        self.badge_tooltip = ""
        self.check_badge: CheckBadge | None = None  # the gradient check's verdict, if any
        self.highlighted = False
        self.edges: set = set()  # EdgeItems touching this node (the scene maintains it)
        self.inputs: dict[str, PortItem] = {}
        self.outputs: dict[str, PortItem] = {}
        self._height = 0.0
        self._bounds = QRectF()
        self.setFlags(QGraphicsItem.ItemIsSelectable | QGraphicsItem.ItemIsMovable
                      | QGraphicsItem.ItemSendsGeometryChanges)
        self.setCacheMode(QGraphicsItem.DeviceCoordinateCache)
        self.setAcceptHoverEvents(False)
        self.set_ports(inputs, outputs)
        self._refresh_tooltip()

    # ---- geometry ----------------------------------------------------------------------
    @property
    def width(self) -> float:
        return NODE_WIDTH

    @property
    def height(self) -> float:
        return self._height

    def _compute_height(self) -> float:
        rows = max(len(self.inputs), len(self.outputs), 1)
        lines = 2 if self.has_params else 1
        return PORTS_TOP + rows * ROW_H + 4.0 + lines * FOOTER_LINE_H + 6.0

    def boundingRect(self) -> QRectF:
        return self._bounds

    def body_rect(self) -> QRectF:
        return QRectF(0.0, 0.0, NODE_WIDTH, self._height)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addRoundedRect(self.body_rect(), CORNER, CORNER)
        return path

    def port(self, name: str, is_output: bool) -> PortItem | None:
        return (self.outputs if is_output else self.inputs).get(name)

    def ports(self) -> list[PortItem]:
        return [*self.inputs.values(), *self.outputs.values()]

    def set_ports(self, inputs: tuple[str, ...], outputs: tuple[str, ...]) -> bool:
        """Make the ports these names; True when they changed (edges must re-attach)."""
        if tuple(self.inputs) == tuple(inputs) and tuple(self.outputs) == tuple(outputs):
            return False
        for table, names, is_output in ((self.inputs, inputs, False),
                                        (self.outputs, outputs, True)):
            for name in [n for n in table if n not in names]:
                item = table.pop(name)
                item.setParentItem(None)
                if item.scene() is not None:
                    item.scene().removeItem(item)
            kept = dict(table)
            table.clear()
            for name in names:
                table[name] = kept.get(name) or PortItem(self, name, is_output)
        self.prepareGeometryChange()
        self._height = self._compute_height()
        # room for the selection / highlight outline, the ports, and a training badge above
        self._bounds = QRectF(-8.0, -22.0, NODE_WIDTH + 16.0, self._height + 30.0)
        for i, p in enumerate(self.inputs.values()):
            p.setPos(0.0, PORTS_TOP + (i + 0.5) * ROW_H)
        for i, p in enumerate(self.outputs.values()):
            p.setPos(NODE_WIDTH, PORTS_TOP + (i + 0.5) * ROW_H)
        self.update()
        return True

    def left_anchor(self) -> QPointF:
        """Where an edge to a port that does not exist ends (it is drawn as a problem)."""
        return self.mapToScene(QPointF(0.0, HEADER_H / 2))

    def right_anchor(self) -> QPointF:
        return self.mapToScene(QPointF(NODE_WIDTH, HEADER_H / 2))

    # ---- what it shows -----------------------------------------------------------------
    @property
    def title(self) -> str:
        return self.label or self.node_id

    @property
    def subtitle(self) -> str:
        return f"{self.node_id} · {self.type_name}" if self.label else self.type_name

    def set_identity(self, node_id: str, label: str | None) -> None:
        label = _text_label(label)
        if (node_id, label) != (self.node_id, self.label):
            self.node_id, self.label = node_id, label
            self._refresh_tooltip()
            self.update()

    def set_info(self, shape_text: str, params_text: str, problems: list[str]) -> None:
        """Output shape, parameter count and validation problems, from the analysis. A
        shape with a variable-length time axis (an Input's ``lengths``) shows its bound,
        ``[T≤50, 16]``, from the analysis of the scene's document."""
        analysis = getattr(getattr(self.scene(), "document", None), "analysis", None)
        try:
            with_lengths = lengths_shape_text(analysis, self.node_id)
            note = lengths_note(analysis, self.node_id)
        except (AttributeError, KeyError, TypeError, ValueError):  # a half-built analysis
            with_lengths = note = None
        if with_lengths is not None:
            shape_text = with_lengths
        if note != self.lengths_note:
            self.lengths_note = note
            self._refresh_tooltip()
        if (shape_text, params_text, problems) == (self.shape_text, self.params_text,
                                                   self.problems):
            return
        self.shape_text, self.params_text, self.problems = shape_text, params_text, problems
        self._refresh_tooltip()
        self.update()

    def set_heat(self, color: QColor | None) -> None:
        """Tint the node (live training: gradient norm, activation statistics)."""
        if color != self.heat:
            self.heat = QColor(color) if color is not None else None
            self.update()

    def set_badge(self, text: str | None, tooltip: str = "") -> None:
        """A small pill above the node's top-right corner (a value during training)."""
        if (text, tooltip) != (self.badge, self.badge_tooltip):
            self.badge, self.badge_tooltip = text, tooltip
            self._refresh_tooltip()
            self.update()

    def set_check_badge(self, verdict: str | None, text: str = "", tooltip: str = "") -> None:
        """The gradient check's mark above the node's top-left corner: a pill coloured by
        ``verdict`` ("good" green, "doubtful" amber, "bad" red) with ``text`` and its own
        ``tooltip``; None removes it."""
        if verdict is None:
            if self.check_badge is not None:
                self.check_badge.setParentItem(None)
                if self.check_badge.scene() is not None:
                    self.check_badge.scene().removeItem(self.check_badge)
                self.check_badge = None
            return
        if self.check_badge is None:
            self.check_badge = CheckBadge(self)
        self.check_badge.show_result(verdict, text, tooltip)

    # the walk through one training step (gui.training.stepper_view): the node whose stage
    # is shown, "forward" or "backward"; None: no walk is at this node
    step_phase: str | None = None

    def set_step_phase(self, phase: str | None) -> None:
        """Mark the node the step-through is at (a ring: green forward, amber backward)."""
        if phase != self.step_phase:
            self.step_phase = phase
            self.update()

    def _paint_step_mark(self, painter: QPainter, t, body: QRectF) -> None:
        if self.step_phase == "forward":  # not the selection's blue
            colour = QColor("#1e9e5a" if t.name == "light" else "#4cc38a")
        else:
            colour = t.color("warning")
        ring = body.adjusted(-4, -4, 4, 4)
        glow = QColor(colour)
        glow.setAlpha(80)
        painter.setBrush(Qt.NoBrush)
        painter.setPen(QPen(glow, 7.0))
        painter.drawRoundedRect(ring, CORNER + 3, CORNER + 3)
        painter.setPen(QPen(colour, 2.6))
        painter.drawRoundedRect(ring, CORNER + 3, CORNER + 3)

    def set_highlight(self, on: bool) -> None:
        """The strong mark of a node that needs attention now (the culprit of a NaN)."""
        if on != self.highlighted:
            self.highlighted = on
            self.update()

    def _refresh_tooltip(self) -> None:
        lines = [f"<b>{self.title}</b> — {self.subtitle}"]
        if self.doc:
            lines.append(self.doc)
        if self.lengths_note:
            lines.append(_escape(self.lengths_note))
        if self.problems:
            lines.append("<br>".join(f"<span style='color:{theme.current().error}'>⚠ "
                                     f"{_escape(p)}</span>" for p in self.problems))
        if self.badge_tooltip:
            lines.append(_escape(self.badge_tooltip))
        self.setToolTip("<p>" + "</p><p>".join(lines) + "</p>")

    # ---- events ------------------------------------------------------------------------
    def itemChange(self, change, value):
        if change == QGraphicsItem.ItemPositionHasChanged:
            for e in self.edges:
                e.update_path()
        elif change == QGraphicsItem.ItemSelectedHasChanged:
            self.setZValue(1.0 if value else 0.0)
            for e in self.edges:
                e.update()
        return super().itemChange(change, value)

    def mousePressEvent(self, event):
        # Shift adds to the selection, like Ctrl (Blender, Houdini)
        if event.modifiers() & Qt.ShiftModifier:
            event.setModifiers(event.modifiers() | Qt.ControlModifier)
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event):
        if event.modifiers() & Qt.ShiftModifier:  # Qt toggles a Ctrl-click on release
            event.setModifiers(event.modifiers() | Qt.ControlModifier)
        super().mouseReleaseEvent(event)

    def mouseDoubleClickEvent(self, event):
        scene = self.scene()
        if scene is not None and hasattr(scene, "node_double_clicked"):
            scene.node_double_clicked.emit(self.node_id)
        super().mouseDoubleClickEvent(event)

    def contextMenuEvent(self, event):
        scene = self.scene()
        if scene is None or not hasattr(scene, "node_menu"):
            return
        if not self.isSelected():
            scene.select_nodes([self.node_id])
        scene.node_menu().exec(event.screenPos())
        event.accept()

    # ---- painting ----------------------------------------------------------------------
    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        t = theme.current()
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        painter.setRenderHint(QPainter.Antialiasing)
        body = self.body_rect()
        cat = t.category_color(self.category)
        body_colour = t.color("node_body")
        if self.heat is not None:
            body_colour = blend(body_colour, self.heat, 0.45)
        card = QPainterPath()
        card.addRoundedRect(body, CORNER, CORNER)

        # body, then the header tinted by category with a solid band on top
        painter.setPen(Qt.NoPen)
        painter.fillPath(card, body_colour)
        header = QPainterPath()
        header.addRect(QRectF(0, 0, NODE_WIDTH, HEADER_H))
        header = header.intersected(card)
        painter.fillPath(header, blend(body_colour, cat, 0.2 if t.name == "light" else 0.28))
        band = QPainterPath()
        band.addRect(QRectF(0, 0, NODE_WIDTH, 4.0))
        painter.fillPath(band.intersected(card), cat)

        # outline: highlight > problem > selection > plain
        if self.highlighted:
            glow = QColor(t.error)
            glow.setAlpha(90)
            painter.setPen(QPen(glow, 9.0))
            painter.setBrush(Qt.NoBrush)
            painter.drawPath(card)
            painter.setPen(QPen(t.color("error"), 3.0))
        elif self.problems:
            painter.setPen(QPen(t.color("error"), 2.2 if not self.isSelected() else 3.0))
        elif self.isSelected():
            painter.setPen(QPen(t.color("node_selected"), 2.4))
        else:
            painter.setPen(QPen(t.color("node_border"), 1.0))
        painter.setBrush(Qt.NoBrush)
        painter.drawPath(card)
        if self.isSelected() and (self.problems or self.highlighted):
            painter.setPen(QPen(t.color("node_selected"), 1.2, Qt.DashLine))
            painter.drawRoundedRect(body.adjusted(-4, -4, 4, 4), CORNER + 3, CORNER + 3)
        if self.step_phase:
            self._paint_step_mark(painter, t, body)

        if lod < LOD_DETAIL:
            return
        for p in self.ports():
            paint_port(painter, p.pos(), self.category, p.connected)
        if lod < LOD_TEXT:
            # far out: a title bar stroke stands for the text
            painter.fillRect(QRectF(30, 14, min(110, 8 * len(self.title)), 7),
                             t.color("muted_text"))
            if self.problems:
                self._paint_problem_mark(painter, t)
            return

        f = fonts()
        text = t.color("text")
        muted = t.color("muted_text")
        size = max(12, round(18 * min(lod, 3.0)))
        icon_rect = QRectF(8.0, 11.0, 18.0, 18.0)
        painter.drawPixmap(icon_rect, category_pixmap(self.category, cat, size),
                           QRectF(0, 0, size, size))
        right = NODE_WIDTH - (26.0 if self.problems else 8.0)
        painter.setFont(f["title"])
        painter.setPen(text)
        title_w = right - 32.0
        painter.drawText(QRectF(32.0, 6.0, title_w, 16.0), Qt.AlignLeft | Qt.AlignVCenter,
                         metrics("title").elidedText(self.title, Qt.ElideRight, title_w))
        painter.setFont(f["type"])
        painter.setPen(muted)
        painter.drawText(QRectF(32.0, 21.0, title_w, 14.0), Qt.AlignLeft | Qt.AlignVCenter,
                         metrics("type").elidedText(self.subtitle, Qt.ElideRight, title_w))
        if self.problems:
            self._paint_problem_mark(painter, t)

        # port labels
        painter.setFont(f["port"])
        painter.setPen(text)
        half = NODE_WIDTH / 2 - 12.0
        for i, name in enumerate(self.inputs):
            y = PORTS_TOP + i * ROW_H
            painter.drawText(QRectF(12.0, y, half, ROW_H), Qt.AlignLeft | Qt.AlignVCenter,
                             metrics("port").elidedText(name, Qt.ElideRight, half))
        for i, name in enumerate(self.outputs):
            y = PORTS_TOP + i * ROW_H
            painter.drawText(QRectF(NODE_WIDTH / 2, y, half, ROW_H),
                             Qt.AlignRight | Qt.AlignVCenter,
                             metrics("port").elidedText(name, Qt.ElideRight, half))

        # footer: output shape and parameters
        rows = max(len(self.inputs), len(self.outputs), 1)
        y = PORTS_TOP + rows * ROW_H + 4.0
        painter.setPen(QPen(t.color("node_border"), 1.0))
        painter.drawLine(QPointF(8.0, y - 2.0), QPointF(NODE_WIDTH - 8.0, y - 2.0))
        painter.setFont(f["info"])
        w = NODE_WIDTH - 16.0
        painter.setPen(t.color("error") if self.shape_text.startswith("?") and self.problems
                       else muted)
        painter.drawText(QRectF(8.0, y, w, FOOTER_LINE_H), Qt.AlignLeft | Qt.AlignVCenter,
                         metrics("info").elidedText("→ " + self.shape_text, Qt.ElideRight, w))
        if self.has_params:
            painter.setPen(muted)
            painter.drawText(QRectF(8.0, y + FOOTER_LINE_H, w, FOOTER_LINE_H),
                             Qt.AlignLeft | Qt.AlignVCenter,
                             metrics("info").elidedText(self.params_text, Qt.ElideRight, w))

        if self.badge:
            self._paint_badge(painter, t)

    def _paint_problem_mark(self, painter: QPainter, t) -> None:
        r = QRectF(NODE_WIDTH - 23.0, 11.0, 17.0, 17.0)
        painter.setPen(Qt.NoPen)
        painter.setBrush(t.color("error"))
        painter.drawEllipse(r)
        painter.setPen(QColor("#ffffff"))
        painter.setFont(fonts()["badge"])
        painter.drawText(r, Qt.AlignCenter, str(len(self.problems)) if len(self.problems) > 1
                         else "!")

    def _paint_badge(self, painter: QPainter, t) -> None:
        fm = metrics("badge")
        w = min(fm.horizontalAdvance(self.badge) + 12.0, NODE_WIDTH)
        r = QRectF(NODE_WIDTH - w, -19.0, w, 16.0)
        painter.setPen(QPen(t.color("node_border"), 1.0))
        painter.setBrush(QBrush(t.color("base")))
        painter.drawRoundedRect(r, 8.0, 8.0)
        painter.setPen(t.color("text"))
        painter.setFont(fonts()["badge"])
        painter.drawText(r, Qt.AlignCenter, fm.elidedText(self.badge, Qt.ElideRight, w - 8))


def _escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


CHECK_COLORS = {"good": "#2e9d4b", "doubtful": "#d08c00", "bad": "#d0342c"}


class CheckBadge(QGraphicsItem):
    """The gradient check's pill above a node's top-left corner (a child of the NodeItem,
    so that it has a tooltip of its own: the error and what it means)."""

    def __init__(self, parent: NodeItem):
        super().__init__(parent)
        self.verdict = ""
        self.text = ""
        self.setAcceptedMouseButtons(Qt.NoButton)  # clicks select the node below
        self.setZValue(2.0)

    @property
    def color(self) -> QColor:
        return QColor(CHECK_COLORS.get(self.verdict, "#888888"))

    def show_result(self, verdict: str, text: str, tooltip: str) -> None:
        self.prepareGeometryChange()
        self.verdict, self.text = verdict, text
        self.setToolTip(tooltip)
        self.setPos(0.0, -19.0)
        self.update()

    def boundingRect(self) -> QRectF:
        w = min(metrics("badge").horizontalAdvance(self.text) + 22.0, NODE_WIDTH * 0.6)
        return QRectF(-1.0, -1.0, w + 2.0, 18.0)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget=None) -> None:
        r = self.boundingRect().adjusted(1.0, 1.0, -1.0, -1.0)
        c = self.color
        painter.setRenderHint(QPainter.Antialiasing)
        painter.setPen(QPen(c.darker(130), 1.0))
        painter.setBrush(QBrush(c))
        painter.drawRoundedRect(r, 8.0, 8.0)
        painter.setPen(QColor("#ffffff"))
        painter.setFont(fonts()["badge"])
        painter.drawText(r.adjusted(6.0, 0.0, -6.0, 0.0), Qt.AlignCenter,
                         metrics("badge").elidedText(self.text, Qt.ElideRight,
                                                     r.width() - 12.0))
