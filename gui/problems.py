"""The problems panel: what is wrong with the graph, one row per problem.

It lists the validation problems of the document's current analysis and what else stops
training (``Analysis.not_ready``: no loss, no dataset...), refilled on every
``analysis_changed`` so fixed problems disappear; then problems training reported
(``set_runtime_problems``: a NaN that names a node, a dataset that does not fit), which stay
until ``clear_runtime_problems`` (the main window calls it when the graph is edited).
Clicking a row, or Enter on it, emits ``node_activated`` with the node it names, so the
main window can select and show that node.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QRect, Qt, Signal
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTreeWidget, QTreeWidgetItem

from core.errors import (
    CycleError,
    EdgeError,
    ParamError,
    ShapeError,
    SharedWithError,
    UnknownTypeError,
)
from core.readiness import ReadinessError
from core.validate import Analysis
from gui import icons
from gui.param_fields import clipped

_KINDS = ((UnknownTypeError, "Unknown type"), (SharedWithError, "Sharing"),
          (ParamError, "Parameter"), (EdgeError, "Connection"), (ShapeError, "Shape"),
          (CycleError, "Cycle"), (ReadinessError, "Setup"))
RUNTIME_KIND = "Training"

_NODES_ROLE = Qt.UserRole + 1  # tuple of node ids the row concerns


def problem_kind(problem: Exception) -> str:
    """A short human name of the kind of a validation problem."""
    if isinstance(problem, ParamError) and (problem.param or "").startswith("training."):
        return "Setup"  # a training setting, not a node's parameter
    for cls, name in _KINDS:
        if isinstance(problem, cls):
            return name
    return "Graph"


@dataclass(frozen=True)
class ProblemRow:
    """One row of the panel, as tests and the status bar read it."""
    nodes: tuple[str, ...]
    message: str  # the full message, naming node, port and parameter
    kind: str
    runtime: bool = False


class ProblemsPanel(QTreeWidget):
    """The list of validation problems (objectName ``problemsPanel``).

    Columns: problem (icon and message), node, kind. ``document`` may be None; then the
    owner feeds it with ``show_analysis``.
    """

    node_activated = Signal(str)  # a row naming this node was clicked or activated
    problems_changed = Signal(int)  # the number of rows, after every refill

    COLUMNS = ("Problem", "Node", "Kind")

    def __init__(self, document=None, parent=None):
        super().__init__(parent)
        self.setObjectName("problemsPanel")
        self.setColumnCount(len(self.COLUMNS))
        self.setHeaderLabels(list(self.COLUMNS))
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setAlternatingRowColors(False)
        self.setSelectionMode(QAbstractItemView.SingleSelection)
        self.setWordWrap(False)
        self.setTextElideMode(Qt.ElideRight)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        self._analysis_rows: list[ProblemRow] = []
        self._runtime_rows: list[ProblemRow] = []
        self.itemClicked.connect(self._on_item)
        self.document = document
        if document is not None:
            document.analysis_changed.connect(self.show_analysis)
            self.show_analysis(document.analysis)

    # ---- contents ----------------------------------------------------------------------
    def show_analysis(self, analysis: Analysis) -> None:
        """List the problems of ``analysis`` and what stops it training (the runtime
        problems stay below them)."""
        stop = list(analysis.problems) + list(getattr(analysis, "not_ready", ()))
        self._analysis_rows = [ProblemRow(tuple(p.nodes), str(p), problem_kind(p))
                               for p in stop]
        self._refill()

    def select_first(self) -> None:
        """Make the first row current and show it (Train refused: here is why)."""
        if self.topLevelItemCount():
            item = self.topLevelItem(0)
            self.setCurrentItem(item)
            self.scrollToItem(item)

    def set_runtime_problems(self, problems: list[tuple[str | None, str]]) -> None:
        """Problems training reported, as (node id or None, message); they replace earlier
        runtime problems and stay until ``clear_runtime_problems``."""
        self._runtime_rows = [ProblemRow((node,) if node else (), message, RUNTIME_KIND, True)
                              for node, message in problems]
        self._refill()

    def add_runtime_problem(self, node: str | None, message: str) -> None:
        self._runtime_rows.append(ProblemRow((node,) if node else (), message,
                                             RUNTIME_KIND, True))
        self._refill()

    def clear_runtime_problems(self) -> None:
        if self._runtime_rows:
            self._runtime_rows = []
            self._refill()

    def _refill(self) -> None:
        selected = self.currentItem()
        keep = selected.text(0) if selected is not None else None
        self.clear()
        for row in self.rows():
            severity = "warning" if row.runtime else "error"
            item = QTreeWidgetItem([clipped(_short_message(row)),
                                    clipped(", ".join(row.nodes) or "—", 100), row.kind])
            item.setIcon(0, icons.problem_icon(severity))
            item.setToolTip(0, clipped(row.message, 2000))
            item.setToolTip(1, "Click to select this node" if row.nodes else "")
            item.setData(0, _NODES_ROLE, row.nodes)
            if not row.nodes:
                item.setForeground(1, self.palette().brush(QPalette.PlaceholderText))
            self.addTopLevelItem(item)
            if keep is not None and item.text(0) == keep:
                self.setCurrentItem(item)
        self.viewport().update()
        self.problems_changed.emit(len(self._analysis_rows) + len(self._runtime_rows))

    def apply_theme(self) -> None:
        """Called by the main window after a theme switch: icons in the new colours."""
        self._refill()

    # ---- accessors (tests, status bar) ---------------------------------------------------
    def rows(self) -> list[ProblemRow]:
        return self._analysis_rows + self._runtime_rows

    def problem_count(self) -> int:
        return len(self._analysis_rows) + len(self._runtime_rows)

    def messages(self) -> list[str]:
        """The full message of every row, in the order shown."""
        return [r.message for r in self.rows()]

    def nodes_with_problems(self) -> set[str]:
        return {n for r in self.rows() for n in r.nodes}

    def item_for(self, node_id: str) -> QTreeWidgetItem | None:
        """The first row naming ``node_id``."""
        for i in range(self.topLevelItemCount()):
            item = self.topLevelItem(i)
            if node_id in (item.data(0, _NODES_ROLE) or ()):
                return item
        return None

    # ---- interaction ---------------------------------------------------------------------
    def _on_item(self, item: QTreeWidgetItem, _column: int = 0) -> None:
        nodes = item.data(0, _NODES_ROLE) or ()
        if nodes:
            self.node_activated.emit(nodes[0])

    def keyPressEvent(self, event) -> None:
        item = self.currentItem()
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and item is not None:
            self._on_item(item)
            return
        super().keyPressEvent(event)

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        if self.topLevelItemCount() == 0:  # an empty list says so, rather than nothing
            p = QPainter(self.viewport())
            p.setPen(self.palette().color(QPalette.PlaceholderText))
            p.drawText(QRect(self.viewport().rect()).adjusted(8, 8, -8, -8),
                       Qt.AlignHCenter | Qt.AlignTop, "No problems")
            p.end()


def _short_message(row: ProblemRow) -> str:
    """The message without its "node 'x': " prefix, which the Node column shows."""
    msg = row.message
    if len(row.nodes) == 1:
        prefix = f"node '{row.nodes[0]}'"
        if msg.startswith(prefix):
            rest = msg[len(prefix):]
            if rest.startswith(": "):
                return rest[2:]
            return rest.lstrip()  # " port 'p': ..." / " parameter 'x': ..."
    return msg


__all__ = ["ProblemsPanel", "ProblemRow", "problem_kind", "RUNTIME_KIND"]
