"""The canvas scene: graphics items that follow a Document's graph.

The scene observes the model (graph change events and ``Document.analysis_changed``) and
builds, updates and drops its items from those events alone; it never writes to the graph.
Every user edit made here — moving, connecting, deleting, pasting — calls a Document method,
which pushes one undo command, whose change events bring the scene up to date (STYLE.md:
the view observes the model; edits touch only the model).
"""
from __future__ import annotations

import json

from PySide6.QtCore import QMimeData, QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QColor, QGuiApplication
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QMenu,
    QToolTip,
)

from core import catalogue
from core.errors import NeuroCanvasError
from core.graph import Edge, GraphEvent
from core.layers.base import fmt_shape
from core.validate import Analysis
from gui import theme
from gui.canvas.connect_drag import ConnectionDrag
from gui.canvas.edge_item import EdgeItem
from gui.canvas.look import HEADER_H, NODE_WIDTH, delay_label, fonts
from gui.canvas.node_item import NodeItem
from gui.canvas.port_item import PortItem
from gui.document import CLIPBOARD_MIME, Document

NUDGE = 10.0  # scene units an arrow key moves the selection (1 with Shift)
SCENE_MARGIN = 1500.0  # room to pan around the drawing
MESSAGE_MS = 4000  # how long a refusal stays at the cursor


class GraphScene(QGraphicsScene):
    """Items for every node and edge of ``document.graph``.

    Signals: ``message(str)`` — a sentence for the status bar (a refused connection says
    why); ``selection_ids_changed(list)`` — ids of the selected nodes, in file order;
    ``node_double_clicked(str)``.
    """

    message = Signal(str)
    selection_ids_changed = Signal(list)
    node_double_clicked = Signal(str)

    def __init__(self, document: Document, parent=None):
        super().__init__(parent)
        self.document = document
        self.nodes: dict[str, NodeItem] = {}
        self.edges: dict[int, EdgeItem] = {}  # id(model Edge) -> item
        self.last_message = ""
        self._graph = None
        self._conn: ConnectionDrag | None = None
        self._drag_start: dict[str, QPointF] | None = None
        self._quiet_selection = 0
        self._transient: list[QGraphicsItem] = []
        self._highlight: tuple[str, QGraphicsItem] | None = None
        self._heat_edges: set[int] = set()
        self._rect_timer = QTimer(self)
        self._rect_timer.setSingleShot(True)
        self._rect_timer.setInterval(0)
        self._rect_timer.timeout.connect(self._update_scene_rect)
        self._handlers = {
            "node_added": self._on_node_added, "node_removed": self._on_node_removed,
            "edge_added": self._on_edge_added, "edge_removed": self._on_edge_removed,
            "param_changed": self._on_param_changed, "node_renamed": self._on_node_renamed,
            "node_moved": self._on_node_moved, "node_extra_changed": self._on_extra_changed,
            "reset": lambda ev: self.rebuild(),
        }
        self.setBackgroundBrush(theme.current().color("canvas"))
        self._subscribe()
        document.analysis_changed.connect(self.apply_analysis)
        document.graph_reset.connect(self._on_graph_reset)
        document.locked_changed.connect(self._on_locked)
        self.selectionChanged.connect(self._on_selection_changed)
        self.rebuild()

    # ---- following the model -----------------------------------------------------------
    def _subscribe(self) -> None:
        if self._graph is self.document.graph:
            return
        if self._graph is not None:
            self._graph.unsubscribe(self._on_graph_event)
        self._graph = self.document.graph
        self._graph.subscribe(self._on_graph_event)

    def detach(self) -> None:
        """Stop following the document (the scene is about to be dropped)."""
        if self._graph is not None:
            self._graph.unsubscribe(self._on_graph_event)
            self._graph = None
        for signal, slot in ((self.document.analysis_changed, self.apply_analysis),
                             (self.document.graph_reset, self._on_graph_reset),
                             (self.document.locked_changed, self._on_locked)):
            try:
                signal.disconnect(slot)
            except (RuntimeError, TypeError):
                pass

    def _on_graph_reset(self) -> None:
        if self._graph is not self.document.graph:  # a Document that swapped its graph
            self._subscribe()
            self.rebuild()

    def _on_graph_event(self, ev: GraphEvent) -> None:
        handler = self._handlers.get(ev.kind)
        if handler is not None:
            handler(ev)

    def rebuild(self) -> None:
        """Drop every item and build them again from the graph (open, reset)."""
        self._quiet_selection += 1
        try:
            if self._conn is not None:
                self._conn.cancel()
                self._conn = None
            self._drag_start = None
            self.clear_highlight()
            for item in list(self._transient):
                self._drop_transient(item)
            for item in [*self.edges.values(), *self.nodes.values()]:
                self.removeItem(item)
            self.nodes.clear()
            self.edges.clear()
            self._heat_edges.clear()
            graph = self.document.graph
            for node in graph.nodes.values():
                self._add_node_item(node)
            for edge in graph.edges:
                self._add_edge_item(edge)
            self.apply_analysis(self.document.analysis)
            self._update_scene_rect(shrink=True)
        finally:
            self._quiet_selection -= 1
        self._on_selection_changed()

    def _add_node_item(self, node) -> NodeItem:
        ins, outs = self.document.ports(node.id)
        item = NodeItem(node.id, node.type, ins, outs, node.extra.get("label"))
        item.setPos(QPointF(*node.pos))
        item.setFlag(QGraphicsItem.ItemIsMovable, not self.document.locked)
        self.addItem(item)
        self.nodes[node.id] = item
        return item

    def _add_edge_item(self, edge: Edge) -> EdgeItem | None:
        src, dst = self.nodes.get(edge.src), self.nodes.get(edge.dst)
        if src is None or dst is None:
            return None  # an edge to a missing node: listed as a problem, not drawable
        sp, dp = self.document.edge_ports(edge)
        item = EdgeItem(edge, src, dst, sp, dp)
        self.addItem(item)
        self.edges[id(edge)] = item
        src.edges.add(item)
        dst.edges.add(item)
        self._mark_connected(src)
        self._mark_connected(dst)
        return item

    def _mark_connected(self, node_item: NodeItem) -> None:
        used_in = {e.dst_port for e in node_item.edges if e.dst_node is node_item}
        used_out = {e.src_port for e in node_item.edges if e.src_node is node_item}
        for name, p in node_item.inputs.items():
            p.set_connected(name in used_in)
        for name, p in node_item.outputs.items():
            p.set_connected(name in used_out)

    def _on_node_added(self, ev: GraphEvent) -> None:
        self._add_node_item(ev.node)
        self._rect_timer.start()

    def _on_node_removed(self, ev: GraphEvent) -> None:
        item = self.nodes.pop(ev.node_id, None)
        if item is None:
            return
        if self._conn is not None and self._conn.node_removed(item):
            self.cancel_interaction()  # dragging from a node that is gone: end quietly
        if self._highlight is not None and self._highlight[0] == ev.node_id:
            self.clear_highlight()
        for e in list(item.edges):  # normally gone already (edge_removed came first)
            self._remove_edge_item(e)
        self.removeItem(item)

    def _on_edge_added(self, ev: GraphEvent) -> None:
        self._add_edge_item(ev.edge)  # its shape label comes with the next analysis
        self._refresh_unknown_ports(ev.edge)

    def _on_edge_removed(self, ev: GraphEvent) -> None:
        if self._conn is not None and self._conn.edge_removed(ev.edge):
            self.cancel_interaction()  # the picked-up edge is gone: end quietly
        item = self.edges.get(id(ev.edge))
        if item is not None:
            self._remove_edge_item(item)
        self._refresh_unknown_ports(ev.edge)

    def _remove_edge_item(self, item: EdgeItem) -> None:
        self.edges.pop(id(item.edge), None)
        self._heat_edges.discard(id(item.edge))
        for n in (item.src_node, item.dst_node):
            n.edges.discard(item)
            self._mark_connected(n)
        if item.scene() is self:
            self.removeItem(item)

    def _refresh_unknown_ports(self, edge: Edge) -> None:
        # a node of an unknown type has the ports its edges name
        for nid in (edge.src, edge.dst):
            node = self.document.graph.nodes.get(nid)
            if node is not None and catalogue.get(node.type) is None:
                self._refresh_ports(nid)

    def _refresh_ports(self, node_id: str) -> None:
        item = self.nodes.get(node_id)
        if item is None:
            return
        if item.set_ports(*self.document.ports(node_id)):
            for e in list(item.edges):
                e.set_ports(*self.document.edge_ports(e.edge))
            self._mark_connected(item)
            for e in item.edges:
                other = e.dst_node if e.src_node is item else e.src_node
                self._mark_connected(other)

    def _on_param_changed(self, ev: GraphEvent) -> None:
        self._refresh_ports(ev.node_id)  # e.g. the number of inputs of an Add

    def _on_node_renamed(self, ev: GraphEvent) -> None:
        item = self.nodes.pop(ev.old, None)
        if item is not None:
            self.nodes[ev.new] = item
            item.set_identity(ev.new, ev.node.extra.get("label"))
        if self._highlight is not None and self._highlight[0] == ev.old:
            self._highlight = (ev.new, self._highlight[1])
        self._on_selection_changed()

    def _on_node_moved(self, ev: GraphEvent) -> None:
        item = self.nodes.get(ev.node_id)
        if item is not None:
            p = QPointF(*ev.new)
            if item.pos() != p:
                item.setPos(p)
        self._rect_timer.start()

    def _on_extra_changed(self, ev: GraphEvent) -> None:
        if ev.name == "label":
            item = self.nodes.get(ev.node_id)
            if item is not None:
                item.set_identity(ev.node_id, ev.node.extra.get("label"))

    def apply_analysis(self, analysis: Analysis) -> None:
        """Show each node's output shape, parameter count and problems; each edge's shape."""
        problems: dict[str, list[str]] = {}
        for p in analysis.problems:
            for nid in p.nodes:
                problems.setdefault(nid, []).append(p.message)
        for nid, item in self.nodes.items():
            shape = analysis.shapes.get(nid)
            text = fmt_shape(shape)
            if shape is not None and nid in analysis.timed:
                text += " per step"
            params = ""
            if item.has_params:
                root = analysis.shared_root.get(nid, nid)
                params = (f"shared with {root}" if root != nid
                          else f"{analysis.param_count(nid):,} params")
            item.set_info(text, params, problems.get(nid, []))
        for item in self.edges.values():
            item.set_shape_text(self._edge_shape(item.edge, analysis))

    @staticmethod
    def _edge_shape(edge: Edge, analysis: Analysis | None) -> str:
        if analysis is None:
            return ""
        shape = analysis.shapes.get(edge.src)
        return fmt_shape(shape) if shape is not None else ""

    # ---- lookups -----------------------------------------------------------------------
    def node_item(self, node_id: str) -> NodeItem | None:
        return self.nodes.get(node_id)

    def edge_item(self, edge: Edge) -> EdgeItem | None:
        return self.edges.get(id(edge))

    def port_item(self, node_id: str, port: str, is_output: bool) -> PortItem | None:
        item = self.nodes.get(node_id)
        return item.port(port, is_output) if item is not None else None

    def nodes_rect(self) -> QRectF:
        """The scene rectangle the nodes cover (empty when there are none)."""
        rect = QRectF()
        for item in self.nodes.values():
            rect = rect.united(item.sceneBoundingRect())
        return rect

    def _update_scene_rect(self, shrink: bool = False) -> None:
        r = self.nodes_rect()
        if r.isNull():
            r = QRectF(-400, -300, 800, 600)
        r = r.adjusted(-SCENE_MARGIN, -SCENE_MARGIN, SCENE_MARGIN, SCENE_MARGIN)
        # growing only, while editing, so the view does not jump under the mouse
        self.setSceneRect(r if shrink else r.united(self.sceneRect()))

    # ---- selection ---------------------------------------------------------------------
    def _on_selection_changed(self) -> None:
        if not self._quiet_selection:
            self.selection_ids_changed.emit(self.selected_node_ids())

    def selected_node_ids(self) -> list[str]:
        """Ids of the selected nodes, in the graph's file order."""
        chosen = {i.node_id for i in self.selectedItems() if isinstance(i, NodeItem)}
        if not chosen:
            return []
        return [nid for nid in self.document.graph.nodes if nid in chosen]

    def selected_edges(self) -> list[Edge]:
        return [i.edge for i in self.selectedItems() if isinstance(i, EdgeItem)]

    def select_nodes(self, ids) -> None:
        """Select exactly these nodes (one selection_ids_changed)."""
        self._quiet_selection += 1
        try:
            self.clearSelection()
            for nid in ids:
                item = self.nodes.get(nid)
                if item is not None:
                    item.setSelected(True)
        finally:
            self._quiet_selection -= 1
        self._on_selection_changed()

    def select_all(self) -> None:
        self.select_nodes(list(self.nodes))

    # ---- messages ----------------------------------------------------------------------
    def refuse(self, text: str, pos: QPointF | None = None) -> None:
        """Tell the user why an edit did not happen: status bar and at the cursor."""
        self.last_message = text
        self.message.emit(text)
        if pos is not None:
            self._show_transient(text, pos)
            for view in self.views():
                vp = view.mapFromScene(pos)
                if view.viewport().rect().contains(vp):
                    QToolTip.showText(view.viewport().mapToGlobal(vp), text, view.viewport())
                    break

    def _show_transient(self, text: str, pos: QPointF) -> QGraphicsItem:
        t = theme.current()
        box = QGraphicsRectItem()
        label = QGraphicsSimpleTextItem(text, box)
        label.setFont(fonts()["title"])
        label.setBrush(QColor("#ffffff"))
        r = label.boundingRect().adjusted(-8, -5, 8, 5)
        label.setPos(-r.left(), -r.top())
        box.setRect(QRectF(0, 0, r.width(), r.height()))
        box.setBrush(t.color("error"))
        box.setPen(Qt.NoPen)
        box.setFlag(QGraphicsItem.ItemIgnoresTransformations)
        box.setZValue(100.0)
        box.setPos(pos + QPointF(12, 12))
        self.addItem(box)
        self._transient.append(box)
        QTimer.singleShot(MESSAGE_MS, lambda: self._drop_transient(box))
        return box

    def _drop_transient(self, item: QGraphicsItem) -> None:
        if item in self._transient:
            self._transient.remove(item)
            if item.scene() is self:
                self.removeItem(item)

    def _guard_locked(self, pos: QPointF | None = None) -> bool:
        if self.document.locked:
            self.refuse("The graph is locked while training runs; stop training to edit it.",
                        pos)
            return True
        return False

    # ---- mouse: connecting and moving --------------------------------------------------
    def port_at(self, pos: QPointF) -> PortItem | None:
        for item in self.items(pos):
            if isinstance(item, PortItem):
                return item
            if isinstance(item, NodeItem):
                return None
        return None

    def mousePressEvent(self, event):
        if event.button() == Qt.LeftButton:
            port = self.port_at(event.scenePos())
            if port is not None:
                event.accept()
                if not self._guard_locked(event.scenePos()):
                    self._conn = ConnectionDrag(self, port)
                    self._conn.move(event.scenePos(), event.modifiers())
                return
        super().mousePressEvent(event)
        grabber = self.mouseGrabberItem()
        if (event.button() == Qt.LeftButton and isinstance(grabber, NodeItem)
                and not self.document.locked):
            self._drag_start = {i.node_id: i.pos() for i in self.selectedItems()
                                if isinstance(i, NodeItem)}

    def mouseMoveEvent(self, event):
        if self._conn is not None:
            self._conn.move(event.scenePos(), event.modifiers())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._conn is not None and event.button() == Qt.LeftButton:
            conn, self._conn = self._conn, None
            conn.finish(event.scenePos(), event.modifiers())
            event.accept()
            return
        super().mouseReleaseEvent(event)
        if event.button() == Qt.LeftButton and self._drag_start is not None:
            start, self._drag_start = self._drag_start, None
            self._record_moves(start)

    def _record_moves(self, start: dict[str, QPointF]) -> None:
        """One drag of the mouse: one Document.move with every node it moved."""
        moves = {}
        for nid, old in start.items():
            item = self.nodes.get(nid)
            if item is not None and item.pos() != old:
                moves[nid] = ((old.x(), old.y()), (item.pos().x(), item.pos().y()))
        if not moves:
            return
        try:
            self.document.move(moves)
        except NeuroCanvasError as e:
            for nid, (old, _) in moves.items():
                self.nodes[nid].setPos(QPointF(*old))
            self.refuse(str(e))

    def cancel_interaction(self) -> None:
        """Abandon a connection drag in progress (Escape)."""
        if self._conn is not None:
            self._conn.cancel()
            self._conn = None

    # ---- edits (every one through the Document) ----------------------------------------
    def delete_selection(self) -> None:
        nodes, edges = self.selected_node_ids(), self.selected_edges()
        if not nodes and not edges or self._guard_locked():
            return
        self.document.delete(nodes, edges)

    def delete_edges(self, edges: list[Edge]) -> None:
        if edges and not self._guard_locked():
            self.document.delete([], edges)

    def set_edge_delay(self, edge: Edge, delay: int) -> bool:
        """Make an edge a delay edge or an instant one; refused with a reason if that would
        leave a cycle with no delay."""
        if self._guard_locked():
            return False
        try:
            self.document.set_delay(edge, delay)
        except NeuroCanvasError as e:
            item = self.edges.get(id(edge))
            self.refuse(str(e), item.label_pos() if item is not None else None)
            return False
        return True

    def nudge(self, dx: float, dy: float) -> None:
        """Move the selected nodes by (dx, dy); repeated nudges are one undo step."""
        ids = self.selected_node_ids()
        if not ids or self._guard_locked():
            return
        moves = {}
        for nid in ids:
            p = self.nodes[nid].pos()
            moves[nid] = ((p.x(), p.y()), (p.x() + dx, p.y() + dy))
        self.document.move(moves, merge=True)

    def copy_selection(self) -> bool:
        """Put the selected nodes (and the edges among them) on the clipboard."""
        ids = self.selected_node_ids()
        if not ids:
            return False
        data = json.dumps(self.document.snapshot(ids), ensure_ascii=False)
        mime = QMimeData()
        mime.setData(CLIPBOARD_MIME, data.encode("utf-8"))
        mime.setText(data)
        QGuiApplication.clipboard().setMimeData(mime)
        self.message.emit(f"Copied {len(ids)} node{'s' if len(ids) != 1 else ''}")
        return True

    def paste(self, at: QPointF | None = None) -> list[str]:
        """Paste the clipboard's nodes (their top-left corner at ``at``, else offset from
        where they were copied) and select them."""
        if self._guard_locked():
            return []
        snapshot = _clipboard_snapshot()
        if snapshot is None:
            self.message.emit("The clipboard holds no NeuroCanvas nodes")
            return []
        offset = (40.0, 40.0)
        pos = [n.get("pos", [0, 0]) for n in snapshot.get("nodes", [])]
        if at is not None and pos:
            offset = (at.x() - min(p[0] for p in pos), at.y() - min(p[1] for p in pos))
        try:
            ids = self.document.paste(snapshot, offset)
        except NeuroCanvasError as e:
            self.refuse(str(e))
            return []
        self.select_nodes(ids)
        return ids

    def duplicate_selection(self) -> list[str]:
        ids = self.selected_node_ids()
        if not ids or self._guard_locked():
            return []
        new = self.document.duplicate(ids)
        self.select_nodes(new)
        return new

    def add_node_at(self, type_name: str, pos: QPointF) -> str | None:
        """Add a node whose header is centred on ``pos`` and select it."""
        if self._guard_locked(pos):
            return None
        try:
            nid = self.document.add_node(type_name, (round(pos.x() - NODE_WIDTH / 2),
                                                     round(pos.y() - HEADER_H / 2)))
        except NeuroCanvasError as e:
            self.refuse(str(e), pos)
            return None
        self.select_nodes([nid])
        return nid

    # ---- menus -------------------------------------------------------------------------
    def edge_menu(self, item: EdgeItem) -> QMenu:
        edge = item.edge
        menu = QMenu()
        delete = QAction("Delete edge", menu)
        delete.triggered.connect(lambda: self.delete_edges([edge]))
        menu.addAction(delete)
        if edge.delay:
            act = QAction("Make instant edge", menu)
            act.triggered.connect(lambda: self.set_edge_delay(edge, 0))
        else:
            act = QAction(f"Make delay edge ({delay_label(1)})", menu)
            act.triggered.connect(lambda: self.set_edge_delay(edge, 1))
        menu.addAction(act)
        for a in menu.actions():
            a.setEnabled(not self.document.locked)
        return menu

    def node_menu(self) -> QMenu:
        menu = QMenu()
        for text, slot in (("Copy", self.copy_selection), ("Duplicate",
                                                           self.duplicate_selection),
                           ("Delete", self.delete_selection)):
            act = QAction(text, menu)
            act.triggered.connect(slot)
            act.setEnabled(text == "Copy" or not self.document.locked)
            menu.addAction(act)
        return menu

    # ---- live training hooks -----------------------------------------------------------
    def set_heat(self, node_colors: dict[str, QColor] | None) -> None:
        """Tint nodes (None or a missing id: no tint)."""
        node_colors = node_colors or {}
        for nid, item in self.nodes.items():
            item.set_heat(node_colors.get(nid))

    def set_edge_heat(self, edge_colors: dict[tuple[str, str], QColor] | None) -> None:
        """Colour edges, keyed by (source id, target id); None clears every edge."""
        edge_colors = edge_colors or {}
        for key in list(self._heat_edges):
            item = self.edges.get(key)
            if item is not None and (item.edge.src, item.edge.dst) not in edge_colors:
                item.set_heat(None)
        self._heat_edges.clear()
        if not edge_colors:
            return
        for key, item in self.edges.items():
            c = edge_colors.get((item.edge.src, item.edge.dst))
            if c is not None:
                item.set_heat(c)
                self._heat_edges.add(key)

    def set_badges(self, badges: dict[str, tuple[str, str]] | None) -> None:
        """A small text above each node given (text, tooltip); None clears them all."""
        badges = badges or {}
        for nid, item in self.nodes.items():
            text, tip = badges.get(nid, (None, ""))
            item.set_badge(text, tip)

    def highlight_node(self, node_id: str, message: str = "") -> None:
        """Mark one node strongly (the node where a NaN appeared) and bring it into view."""
        self.clear_highlight()
        item = self.nodes.get(node_id)
        if item is None:
            return
        item.set_highlight(True)
        callout = None
        if message:
            callout = self._show_callout(message, item)
        self._highlight = (node_id, callout)
        for view in self.views():
            view.centerOn(item)
        if message:
            self.message.emit(f"{node_id}: {message}")

    def _show_callout(self, text: str, item: NodeItem) -> QGraphicsItem:
        box = self._show_transient(text, item.scenePos())
        self._transient.remove(box)  # stays until clear_highlight
        box.setPos(item.scenePos() + QPointF(0, -64))
        return box

    def clear_highlight(self) -> None:
        if self._highlight is None:
            return
        nid, callout = self._highlight
        self._highlight = None
        item = self.nodes.get(nid)
        if item is not None:
            item.set_highlight(False)
        if callout is not None and callout.scene() is self:
            self.removeItem(callout)

    def highlighted_node(self) -> str | None:
        return self._highlight[0] if self._highlight else None

    # ---- look --------------------------------------------------------------------------
    def apply_theme(self) -> None:
        """Redraw everything, views included, in the colours of ``gui.theme.current()``
        (call after ``gui.theme.apply_theme``)."""
        self.setBackgroundBrush(theme.current().color("canvas"))
        for item in self.items():
            item.update()  # also drops the item's cached picture
        for view in self.views():
            restyle = getattr(view, "restyle", None)
            if restyle is not None:
                restyle()
            view.resetCachedContent()  # the cached grid
            view.viewport().update()

    refresh_theme = apply_theme

    def _on_locked(self, locked: bool) -> None:
        if self._conn is not None:
            self._conn.cancel()
            self._conn = None
        for item in self.nodes.values():
            item.setFlag(QGraphicsItem.ItemIsMovable, not locked)


def _clipboard_snapshot() -> dict | None:
    mime = QGuiApplication.clipboard().mimeData()
    if mime is None:
        return None
    raw = None
    if mime.hasFormat(CLIPBOARD_MIME):
        raw = bytes(mime.data(CLIPBOARD_MIME)).decode("utf-8", "replace")
    elif mime.hasText() and '"neurocanvas.graph"' in mime.text():
        raw = mime.text()
    if raw is None:
        return None
    try:
        snapshot = json.loads(raw)
    except ValueError:
        return None
    return snapshot if isinstance(snapshot, dict) and isinstance(snapshot.get("nodes"),
                                                                    list) else None
