"""The node canvas: a QGraphicsScene that follows a Document and the view that shows it.

``GraphScene(document)`` builds items from the graph's change events; ``GraphView(scene)``
(objectName ``graphView``) zooms, pans, accepts palette drops and opens the quick-add.
"""
from gui.canvas._none_refcount import keep_none_alive

keep_none_alive()  # before any painting: see gui/canvas/_none_refcount.py

from gui.canvas.edge_item import EdgeItem  # noqa: E402
from gui.canvas.look import NODE_MIME  # noqa: E402
from gui.canvas.node_item import NodeItem  # noqa: E402
from gui.canvas.port_item import PortItem  # noqa: E402
from gui.canvas.quick_add import QuickAddPopup  # noqa: E402
from gui.canvas.scene import GraphScene  # noqa: E402
from gui.canvas.view import GraphView  # noqa: E402

__all__ = ["NODE_MIME", "EdgeItem", "GraphScene", "GraphView", "NodeItem", "PortItem",
           "QuickAddPopup"]
