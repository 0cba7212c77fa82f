"""The inspector: edits the selected node, or the graph's training settings when none is.

Every finished edit is one document call (``set_param``, ``rename``, ``set_label``,
``set_training``, ``set_name``), so one undo step; invalid input is shown under its field and
changes nothing. The inspector follows the model: it listens to the graph's change events (a
value changed by undo, a rename, a removed node) and to ``analysis_changed`` (shapes,
parameter counts, problems), and only ever *shows* values while doing so, so a refresh never
pushes a command. Widgets are rebuilt only when the node type, dataset source, built-in
dataset or optimizer type changes, never per keystroke. While the document is locked
(training runs), everything is read-only.

- here: ``Inspector``, the shell that switches between the two pages and follows the model.
- ``node_editor.py``: ``NodeEditor``, the page for the selected node.
- ``training_editor.py``: ``TrainingEditor``, the page for the graph's training settings.
- ``widgets.py``: the small form and label helpers both pages use.
"""
from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QFrame, QLabel, QScrollArea, QStackedWidget, QVBoxLayout, QWidget

from core.graph import GraphEvent
from gui import icons, theme
from gui.inspector.node_editor import NodeEditor
from gui.inspector.training_editor import TRAINING_SPECS, TrainingEditor
from gui.param_fields import ParamField


class Inspector(QWidget):
    """The property editor (objectName ``inspector``). ``show_node(None)`` shows the
    graph's training settings."""

    def __init__(self, document, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("inspector")
        self.document = document
        self._node_id: str | None = None

        self.banner = QLabel(self)
        self.banner.setObjectName("inspectorBanner")
        self.banner.setWordWrap(True)
        self.banner.setVisible(False)
        self.banner.setMargin(6)
        self.banner.setAutoFillBackground(True)

        self.node_page = NodeEditor(document, self)
        self.training_page = TrainingEditor(document, self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.node_page)
        self.stack.addWidget(self.training_page)
        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(self.stack)
        self.scroll = scroll

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.banner)
        layout.addWidget(scroll, 1)

        graph = document.graph
        graph.subscribe(self._on_graph_event)
        self.destroyed.connect(lambda *_: graph.unsubscribe(self._on_graph_event))
        document.analysis_changed.connect(self._on_analysis)
        document.locked_changed.connect(self._on_locked)
        document.graph_reset.connect(self._on_reset)
        self.show_node(None)
        self._on_locked(document.locked)

    # ---- public ------------------------------------------------------------------------
    def show_node(self, node_id: str | None) -> None:
        """Edit this node, or (None, or a node that is not there) the training settings."""
        if node_id is not None and node_id not in self.document.graph.nodes:
            node_id = None
        self._node_id = node_id
        if node_id is None:
            self.stack.setCurrentWidget(self.training_page)
            self.training_page.refresh()
        else:
            self.stack.setCurrentWidget(self.node_page)
            self.node_page.load(node_id)

    def current_node(self) -> str | None:
        return self._node_id

    def field(self, name: str) -> ParamField:
        """The field of parameter ``name`` of the node shown (tests)."""
        return self.node_page.fields[name]

    def training_field(self, key: str) -> ParamField:
        """The field of a training setting, by dotted key: ``batch_size``, ``optimizer.lr``,
        ``regularization.l2``, ``dataset.noise``, ``clip.amount`` ... (tests)."""
        return self.training_page.fields[key]

    def apply_theme(self) -> None:
        """Called by the main window after a theme switch: icons and message colours."""
        for page in (self.node_page, self.training_page):
            for field in page.fields.values():
                field.reset_button.setIcon(icons.reset_icon())
        self.node_page._built_for = None  # the header icon is painted per theme
        self.show_node(self._node_id)
        self._on_locked(self.document.locked)

    # ---- following the model ---------------------------------------------------------
    def _on_graph_event(self, ev: GraphEvent) -> None:
        try:
            self._follow(ev)
        except RuntimeError:  # the widgets are being destroyed
            self.document.graph.unsubscribe(self._on_graph_event)

    def _follow(self, ev: GraphEvent) -> None:
        nid = self._node_id
        if ev.kind == "node_renamed" and nid is not None and ev.old == nid:
            self._node_id = ev.new
            self.node_page.renamed(ev.new)
        elif ev.kind == "node_removed" and nid is not None and ev.node_id == nid:
            self.show_node(None)
        elif ev.kind == "param_changed" and nid is not None and ev.node_id == nid:
            self.node_page.refresh_param(ev.name)
        elif ev.kind == "node_extra_changed" and nid is not None and ev.node_id == nid:
            self.node_page.refresh_header()
        elif ev.kind in ("training_changed", "name_changed") and nid is None:
            self.training_page.refresh()

    def _on_reset(self) -> None:
        self.show_node(self._node_id)

    def _on_analysis(self, analysis) -> None:
        if self._node_id is not None and self._node_id in self.document.graph.nodes:
            self.node_page.show_analysis(analysis)
        elif self._node_id is None:
            self.training_page.refresh_nodes()

    def _on_locked(self, locked: bool) -> None:
        self.stack.setEnabled(not locked)
        if locked:
            pal = self.banner.palette()
            pal.setColor(QPalette.Window, theme.current().color("highlight"))
            pal.setColor(QPalette.WindowText, theme.current().color("base"))
            self.banner.setPalette(pal)
            self.banner.setText("Training (running or paused) holds the graph: it is "
                                "read-only until training stops.")
        self.banner.setVisible(locked)


__all__ = ["Inspector", "NodeEditor", "TrainingEditor", "TRAINING_SPECS"]
