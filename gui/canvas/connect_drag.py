"""Drawing an edge with the mouse: the rubber curve, the target under the cursor, and the
one Document call that records the result.

Drag from an output port to an input port, or from an input port back to an output port.
Dragging from an input that already has an edge picks that edge up (as in Blender): drop it
on another input to move it there, or on empty canvas to remove it. Hold Alt or Ctrl when
releasing to make a delay edge (z⁻¹), the way a recurrent loop is closed. Dropping on an
input that already has an edge replaces that edge (one undo step) and says so.

A drag whose fixed end goes away meanwhile (its node deleted, by the Delete key or an undo,
or the picked-up edge removed) ends quietly: the scene calls ``node_removed`` and
``edge_removed`` and drops the drag when they say so.
"""
from __future__ import annotations

from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QPen
from PySide6.QtWidgets import QGraphicsPathItem

from core.connections import check_connection
from core.errors import NeuroCanvasError
from gui import theme
from gui.canvas.edge_item import edge_path
from gui.canvas.node_item import NodeItem
from gui.canvas.port_item import PortItem

DELAY_MODIFIERS = Qt.AltModifier | Qt.ControlModifier


def wants_delay(modifiers) -> bool:
    return bool(modifiers & DELAY_MODIFIERS)


class ConnectionDrag:
    """One drag of a new (or picked-up) edge; the scene feeds it mouse events."""

    def __init__(self, scene, port: PortItem):
        self.scene = scene
        doc = scene.document
        self.picked = None  # the Edge lifted off an input port, if any
        self.picked_item = None
        if not port.is_output:
            edge = doc.edge_into(port.node_id, port.name)
            if edge is not None:
                self.picked = edge
                self.picked_item = scene.edge_item(edge)
                src_node = scene.nodes.get(edge.src)
                src_port_name = doc.edge_ports(edge)[0]
                fixed = src_node.port(src_port_name, True) if src_node and src_port_name \
                    else None
                if fixed is not None:
                    port = fixed
                    if self.picked_item is not None:
                        self.picked_item.setVisible(False)
                else:
                    self.picked = self.picked_item = None
        self.fixed = port  # the end that stays put
        self.target: PortItem | None = None
        self.rubber = QGraphicsPathItem()
        self.rubber.setZValue(10.0)
        scene.addItem(self.rubber)
        self._style(False)

    @property
    def from_output(self) -> bool:
        return self.fixed.is_output

    def _style(self, delay: bool) -> None:
        t = theme.current()
        pen = QPen(t.color("edge_selected"), 2.0)
        pen.setCapStyle(Qt.RoundCap)
        if delay:
            pen.setStyle(Qt.CustomDashLine)
            pen.setDashPattern([4.0, 3.0])
        self.rubber.setPen(pen)

    def _target_at(self, pos: QPointF) -> PortItem | None:
        """A port of the other kind under the cursor, or the nearest such port of the node
        under it (dropping on a node's body is forgiving)."""
        want_output = not self.from_output
        node = None
        for item in self.scene.items(pos):
            if isinstance(item, PortItem) and item.is_output == want_output:
                return item
            if isinstance(item, NodeItem):
                node = item
                break
        if node is None:
            return None
        ports = list((node.outputs if want_output else node.inputs).values())
        if not ports:
            return None
        return min(ports, key=lambda p: (p.scenePos() - pos).manhattanLength())

    def move(self, pos: QPointF, modifiers) -> None:
        target = self._target_at(pos)
        if target is not self.target:
            if self.target is not None:
                self.target.set_highlighted(False)
            self.target = target
            if target is not None:
                target.set_highlighted(True)
        end = target.scenePos() if target is not None else pos
        a, b = (self.fixed.scenePos(), end) if self.from_output else (end,
                                                                       self.fixed.scenePos())
        below = max(a.y(), b.y()) + 60.0
        self.rubber.setPath(edge_path(a, b, below)[0])
        self._style(wants_delay(modifiers) or bool(self.picked and self.picked.delay))

    def cancel(self) -> None:
        self._cleanup()
        if self.picked_item is not None and self.picked_item.scene() is not None:
            self.picked_item.setVisible(True)

    def node_removed(self, item: NodeItem) -> bool:
        """A node left the scene during the drag; True when the drag cannot go on (its
        fixed end was on that node)."""
        if self.target is not None and self.target.node_item is item:
            self.target = None  # its highlight went with it
        return self.fixed.node_item is item

    def edge_removed(self, edge) -> bool:
        """An edge left the graph during the drag; True when it is the one picked up."""
        return self.picked is not None and edge is self.picked

    def _cleanup(self) -> None:
        if self.target is not None:
            self.target.set_highlighted(False)
        if self.rubber.scene() is not None:
            self.scene.removeItem(self.rubber)

    def finish(self, pos: QPointF, modifiers) -> None:
        """Record the edge (or the move, or removal, of a picked-up edge), or refuse it and
        say why."""
        self._cleanup()
        doc = self.scene.document
        if self.fixed.node_id not in doc.graph.nodes:
            return  # the node it started from went away: nothing to connect, nothing to say
        target = self._target_at(pos)
        if self.picked_item is not None:
            self.picked_item.setVisible(True)
        if target is None:
            under = [i for i in self.scene.items(pos) if isinstance(i, PortItem)]
            if under:
                kind = "an input" if self.from_output else "an output"
                self.scene.refuse(f"connect an output port to an input port: this is "
                                  f"not {kind} port", pos)
            elif self.picked is not None:
                doc.disconnect(self.picked)  # dropped off: the edge is removed (Blender)
                self.scene.message.emit(f"Removed edge {self.picked}")
            return
        out_port, in_port = (self.fixed, target) if self.from_output else (target, self.fixed)
        delay = 1 if wants_delay(modifiers) else (self.picked.delay if self.picked else 0)
        src, sp, dst, dp = out_port.node_id, out_port.name, in_port.node_id, in_port.name
        occupant = doc.edge_into(dst, dp)  # replaced by the new edge, if it goes in
        if occupant is self.picked:
            occupant = None
        try:
            if self.picked is None:
                doc.connect(src, sp, dst, dp, delay=delay)
                self._say_replaced(occupant, dst, dp)
                return
            old_src, old_dst = doc.edge_ports(self.picked)
            if (self.picked.src, old_src, self.picked.dst, old_dst, self.picked.delay) == \
                    (src, sp, dst, dp, delay):
                return  # put back where it was
            # check the new edge against the graph without the one being moved, so the
            # move is one undo step that either happens whole or not at all
            probe = doc.graph.copy()
            probe.edges = [e for e in probe.edges if e.key() != self.picked.key()
                           and not (e.dst == dst and _fed_port(doc, e) == dp)]
            check_connection(probe, src, dst, src_port=sp, dst_port=dp, delay=delay)
            doc.undo_stack.beginMacro(f"Reconnect {self.picked.src_ref} to {dst}:{dp}")
            try:
                doc.disconnect(self.picked)
                doc.connect(src, sp, dst, dp, delay=delay)
            finally:
                doc.undo_stack.endMacro()
            self._say_replaced(occupant, dst, dp)
        except NeuroCanvasError as e:
            self.scene.refuse(str(e), pos)

    def _say_replaced(self, old, dst: str, dst_port: str) -> None:
        # an input takes one edge: the one it had is gone, which the user should hear of
        if old is not None:
            self.scene.message.emit(f"Replaced the edge from {old.src_ref} into "
                                    f"{dst}:{dst_port}")


def _fed_port(doc, edge) -> str | None:
    return doc.edge_ports(edge)[1]
