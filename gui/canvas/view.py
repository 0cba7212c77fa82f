"""The canvas view: zoom, pan, grid, drops from the palette, quick-add and the keys.

Wheel zooms around the cursor; the middle button, Space + drag, or the scroll bars pan.
Tab opens the quick-add search at the cursor. Delete, arrow-key nudges (Shift: finer),
copy, paste, duplicate, select all and Home (fit) work when the canvas has focus; the main
window may bind its actions to the same methods.

Fitting never zooms out below ``READABLE_ZOOM``, where node titles are still legible: a graph
too large for the view at that zoom shows its start (left and top, where the inputs are).
"""
from __future__ import annotations

import math

from PySide6.QtCore import QEvent, QLineF, QPoint, QPointF, QRectF, Qt, QTimer
from PySide6.QtGui import QAction, QColor, QCursor, QKeySequence, QPainter, QPen, QTransform
from PySide6.QtWidgets import QGraphicsView, QMenu

from gui import theme
from gui.canvas.look import NODE_MIME, READABLE_ZOOM
from gui.canvas.quick_add import QuickAddPopup
from gui.canvas.scene import NUDGE, GraphScene
from gui.icons import IconLabel, lock_icon

MIN_ZOOM = 0.08
MAX_ZOOM = 3.0
GRID_MINOR = 20.0
GRID_MAJOR = 100.0
MIN_GRID_PX = 7.0  # grid lines closer than this on screen are not drawn
MAX_FIT_ZOOM = 1.25  # a small graph is fitted no closer than this
FIT_MARGIN = 40.0  # scene units around the nodes when fitting
LOCK_TEXT_COLOUR = "#1f2328"  # dark on the theme's warning colour, in both themes


class GraphView(QGraphicsView):
    """Shows a GraphScene; objectName ``graphView`` (docs/format.md section 8)."""

    def __init__(self, scene: GraphScene, parent=None):
        super().__init__(scene, parent)
        self.setObjectName("graphView")
        self.setRenderHints(QPainter.Antialiasing | QPainter.TextAntialiasing
                            | QPainter.SmoothPixmapTransform)
        self.setCacheMode(QGraphicsView.CacheBackground)
        self.setViewportUpdateMode(QGraphicsView.MinimalViewportUpdate)
        self.setOptimizationFlags(QGraphicsView.DontSavePainterState)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setDragMode(QGraphicsView.RubberBandDrag)
        self.setRubberBandSelectionMode(Qt.IntersectsItemShape)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMouseTracking(True)
        self._pan_from: QPoint | None = None
        # fit_when_ready: keep fitting on resizes until the user takes the view over
        self._auto_fit = False
        self._fitting = False
        self._space = False
        self.quick_add: QuickAddPopup | None = None
        self._quick_add_at = QPointF()
        self._lock_label = IconLabel(lambda: lock_icon(LOCK_TEXT_COLOUR),
                                     "Locked while training — stop training to edit", self)
        self._lock_label.setObjectName("canvasLockedSign")
        for w in (self._lock_label, self._lock_label.icon_label, self._lock_label.text_label):
            w.setAttribute(Qt.WA_TransparentForMouseEvents)  # clicks go on to the canvas
        self._lock_label.hide()
        self._style_lock_label()
        scene.document.locked_changed.connect(self._on_locked)
        self._on_locked(scene.document.locked)
        scene.document.undo_stack.indexChanged.connect(self._stop_auto_fit)
        scene.selectionChanged.connect(self._stop_auto_fit)  # e.g. a problem clicked: kept
        for bar in (self.horizontalScrollBar(), self.verticalScrollBar()):
            bar.actionTriggered.connect(self._stop_auto_fit)  # the user moved a scroll bar

    def graph_scene(self) -> GraphScene:
        return self.scene()

    # ---- zoom and pan ------------------------------------------------------------------
    def zoom(self) -> float:
        return self.transform().m11()

    def set_zoom(self, factor: float, anchor_under_mouse: bool = False) -> None:
        """Scale to ``factor`` (clamped) around the view centre, or the cursor."""
        self._auto_fit = False  # a zoom asked for is kept, also when the window resizes
        factor = min(MAX_ZOOM, max(MIN_ZOOM, factor))
        old = self.transformationAnchor()
        if not anchor_under_mouse:
            self.setTransformationAnchor(QGraphicsView.AnchorViewCenter)
        s = factor / self.zoom()
        self.scale(s, s)
        self.setTransformationAnchor(old)

    def wheelEvent(self, event):
        delta = event.angleDelta().y() or event.pixelDelta().y()
        if not delta:
            return
        self._auto_fit = False
        self.set_zoom(self.zoom() * math.pow(1.0015, delta), anchor_under_mouse=True)
        event.accept()

    def fit_view(self, *, min_zoom: float = READABLE_ZOOM) -> None:
        """Show the whole drawing, not closer than MAX_FIT_ZOOM and never farther out than
        ``min_zoom`` (READABLE_ZOOM: titles stay legible; MIN_ZOOM fits any graph whole).
        Along an axis where the drawing does not fit at that zoom, show its start (the left
        or top edge): the inputs, where reading a graph begins."""
        scene = self.graph_scene()
        rect = scene.nodes_rect()
        if rect.isNull():
            self.centerOn(0, 0)
            return
        for edge in scene.edges.values():  # backward edges loop round outside the nodes
            rect = rect.united(edge.sceneBoundingRect())
        rect = rect.adjusted(-FIT_MARGIN, -FIT_MARGIN, FIT_MARGIN, FIT_MARGIN)
        vp = self.viewport().rect()
        if vp.width() < 2 or vp.height() < 2:
            return  # not laid out yet; fit_when_ready fits again once it has a size
        fit = min(vp.width() / rect.width(), vp.height() / rect.height())
        zoom = min(MAX_FIT_ZOOM, max(min_zoom, MIN_ZOOM, fit))
        self.setTransform(QTransform.fromScale(zoom, zoom))
        seen_w, seen_h = vp.width() / zoom, vp.height() / zoom
        x = rect.center().x() if rect.width() <= seen_w else rect.left() + seen_w / 2
        y = rect.center().y() if rect.height() <= seen_h else rect.top() + seen_h / 2
        self.centerOn(x, y)

    def fit_when_ready(self) -> None:
        """Fit a graph just opened: now, when the view is first shown, and again on every
        resize until the user zooms, pans, clicks, types or edits. The window's final size
        comes late: docks settle a turn of the event loop after show, and a window manager
        resizes the window after it is mapped."""
        self._auto_fit = True
        self._fit_if_auto()
        QTimer.singleShot(0, self, self._fit_if_auto)

    def auto_fitting(self) -> bool:
        """True while the view still follows resizes with a fit (see fit_when_ready)."""
        return self._auto_fit

    def _fit_if_auto(self) -> None:
        # the guard: a fit that shows or hides a scroll bar resizes the viewport again
        if self._auto_fit and not self._fitting:
            self._fitting = True
            try:
                self.fit_view()
            finally:
                self._fitting = False

    def _stop_auto_fit(self, *_args) -> None:
        self._auto_fit = False

    def showEvent(self, event):
        super().showEvent(event)
        self._fit_if_auto()

    def center_scene_pos(self) -> QPointF:
        """The scene point at the middle of the view (palette double-click adds there)."""
        return self.mapToScene(self.viewport().rect().center())

    def cursor_scene_pos(self) -> QPointF | None:
        """The scene point under the mouse, or None when the mouse is not over the view."""
        p = self.viewport().mapFromGlobal(QCursor.pos())
        return self.mapToScene(p) if self.viewport().rect().contains(p) else None

    def _pan_by(self, delta: QPoint) -> None:
        h, v = self.horizontalScrollBar(), self.verticalScrollBar()
        h.setValue(h.value() - delta.x())
        v.setValue(v.value() - delta.y())

    def mousePressEvent(self, event):
        self._auto_fit = False  # the user has the view now; a resize no longer refits it
        if event.button() == Qt.MiddleButton or (self._space
                                                 and event.button() == Qt.LeftButton):
            self._pan_from = event.position().toPoint()
            self.viewport().setCursor(Qt.ClosedHandCursor)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event):
        if self._pan_from is not None:
            p = event.position().toPoint()
            self._pan_by(p - self._pan_from)
            self._pan_from = p
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event):
        if self._pan_from is not None and event.button() in (Qt.MiddleButton, Qt.LeftButton):
            self._pan_from = None
            self.viewport().setCursor(Qt.OpenHandCursor if self._space else Qt.ArrowCursor)
            event.accept()
            return
        super().mouseReleaseEvent(event)

    # ---- keys --------------------------------------------------------------------------
    def event(self, event):
        # Tab opens the quick-add search instead of moving the focus on
        if event.type() == QEvent.KeyPress and event.key() == Qt.Key_Tab \
                and not event.modifiers() & (Qt.ControlModifier | Qt.AltModifier):
            self.open_quick_add()
            return True
        return super().event(event)

    def keyPressEvent(self, event):
        self._auto_fit = False
        scene = self.graph_scene()
        key, mods = event.key(), event.modifiers()
        step = 1.0 if mods & Qt.ShiftModifier else NUDGE
        arrows = {Qt.Key_Left: (-step, 0), Qt.Key_Right: (step, 0),
                  Qt.Key_Up: (0, -step), Qt.Key_Down: (0, step)}
        if key == Qt.Key_Space and not event.isAutoRepeat():
            self._space = True
            self.viewport().setCursor(Qt.OpenHandCursor)
        elif key in (Qt.Key_Delete, Qt.Key_Backspace):
            scene.delete_selection()
        elif key in arrows and not mods & (Qt.ControlModifier | Qt.AltModifier):
            scene.nudge(*arrows[key])
        elif key == Qt.Key_Escape:
            scene.cancel_interaction()
            scene.clearSelection()
        elif key == Qt.Key_Home:
            self.fit_view()
        elif event.matches(QKeySequence.Copy):
            scene.copy_selection()
        elif event.matches(QKeySequence.Paste):
            self.paste()
        elif event.matches(QKeySequence.SelectAll):
            scene.select_all()
        elif key == Qt.Key_D and mods & Qt.ControlModifier:
            scene.duplicate_selection()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def keyReleaseEvent(self, event):
        if event.key() == Qt.Key_Space and not event.isAutoRepeat():
            self._space = False
            if self._pan_from is None:
                self.viewport().setCursor(Qt.ArrowCursor)
            event.accept()
            return
        super().keyReleaseEvent(event)

    # ---- edits the main window binds ---------------------------------------------------
    def delete_selection(self) -> None:
        self.graph_scene().delete_selection()

    def copy_selection(self) -> bool:
        return self.graph_scene().copy_selection()

    def paste(self) -> list[str]:
        """Paste at the mouse when it is over the canvas, else next to the originals."""
        return self.graph_scene().paste(self.cursor_scene_pos())

    def duplicate_selection(self) -> list[str]:
        return self.graph_scene().duplicate_selection()

    # ---- quick add ---------------------------------------------------------------------
    def open_quick_add(self, scene_pos: QPointF | None = None) -> QuickAddPopup | None:
        """Open the node search; the chosen type is added at ``scene_pos`` (default: under
        the mouse, or the view centre)."""
        scene = self.graph_scene()
        if scene._guard_locked():
            return None
        if scene_pos is None:
            scene_pos = self.cursor_scene_pos() or self.center_scene_pos()
        self._quick_add_at = QPointF(scene_pos)
        if self.quick_add is None:
            self.quick_add = QuickAddPopup(self)
            self.quick_add.chosen.connect(
                lambda name: self.graph_scene().add_node_at(name, self._quick_add_at))
        self.quick_add.popup(self.viewport().mapToGlobal(self.mapFromScene(scene_pos)))
        return self.quick_add

    # ---- drops from the palette --------------------------------------------------------
    def dragEnterEvent(self, event):
        if event.mimeData().hasFormat(NODE_MIME) and not self.graph_scene().document.locked:
            event.setDropAction(Qt.CopyAction)
            event.accept()
        else:
            event.ignore()

    def dragMoveEvent(self, event):
        self.dragEnterEvent(event)

    def dragLeaveEvent(self, event):
        event.accept()

    def dropEvent(self, event):
        mime = event.mimeData()
        if not mime.hasFormat(NODE_MIME):
            event.ignore()
            return
        name = bytes(mime.data(NODE_MIME)).decode("utf-8").strip()
        pos = self.mapToScene(event.position().toPoint())
        if self.graph_scene().add_node_at(name, pos) is not None:
            event.setDropAction(Qt.CopyAction)
            event.accept()
            self.setFocus()
        else:
            event.ignore()

    # ---- context menu on empty canvas --------------------------------------------------
    def contextMenuEvent(self, event):
        super().contextMenuEvent(event)  # items (nodes, edges) take theirs first
        if event.isAccepted():
            return
        at = self.mapToScene(event.pos())
        menu = QMenu(self)
        locked = self.graph_scene().document.locked
        for text, slot in (("Add node…\tTab", lambda: self.open_quick_add(at)),
                           ("Paste", lambda: self.graph_scene().paste(at)),
                           ("Fit view\tHome", self.fit_view)):
            act = QAction(text, menu)
            act.triggered.connect(slot)
            act.setEnabled(text.startswith("Fit") or not locked)
            menu.addAction(act)
        menu.exec(event.globalPos())

    # ---- drawing -----------------------------------------------------------------------
    def drawBackground(self, painter: QPainter, rect: QRectF) -> None:
        t = theme.current()
        painter.fillRect(rect, t.color("canvas"))
        z = self.zoom()
        painter.setRenderHint(QPainter.Antialiasing, False)
        for step, colour in ((GRID_MINOR, t.grid_minor), (GRID_MAJOR, t.grid_major)):
            if step * z < MIN_GRID_PX:
                continue
            pen = QPen(QColor(colour), 0)  # cosmetic: one pixel at any zoom
            painter.setPen(pen)
            x0 = math.floor(rect.left() / step) * step
            y0 = math.floor(rect.top() / step) * step
            lines = []
            x = x0
            while x <= rect.right():
                if step == GRID_MAJOR or x % GRID_MAJOR:
                    lines.append(QLineF(x, rect.top(), x, rect.bottom()))
                x += step
            y = y0
            while y <= rect.bottom():
                if step == GRID_MAJOR or y % GRID_MAJOR:
                    lines.append(QLineF(rect.left(), y, rect.right(), y))
                y += step
            painter.drawLines(lines)

    # ---- the locked sign ---------------------------------------------------------------
    def _style_lock_label(self) -> None:
        t = theme.current()
        self._lock_label.setStyleSheet(
            f"#canvasLockedSign {{ background: {t.warning}; border-radius: 6px; }}"
            f"QLabel {{ background: transparent; color: {LOCK_TEXT_COLOUR}; "
            "font-weight: bold; }")
        self._lock_label.layout().setContentsMargins(10, 4, 10, 4)
        self._lock_label.adjustSize()

    def _place_lock_label(self) -> None:
        lab = self._lock_label
        lab.adjustSize()
        vp = self.viewport().geometry()
        lab.move(vp.left() + (vp.width() - lab.width()) // 2, vp.top() + 10)

    def _on_locked(self, locked: bool) -> None:
        self._style_lock_label()
        self._place_lock_label()
        self._lock_label.setVisible(locked)
        self.setDragMode(QGraphicsView.RubberBandDrag)

    def locked_sign_visible(self) -> bool:
        return self._lock_label.isVisible()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._place_lock_label()
        self._fit_if_auto()

    def restyle(self) -> None:
        """Take the current theme's colours for the view's own widgets."""
        self._style_lock_label()

    def refresh_theme(self) -> None:
        self.graph_scene().apply_theme()
