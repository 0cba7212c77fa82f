"""The node canvas: a QGraphicsScene that follows a Document and the view that shows it.

``GraphScene(document)`` builds items from the graph's change events; ``GraphView(scene)``
(objectName ``graphView``) zooms, pans, accepts palette drops and opens the quick-add.
"""
from gui.canvas.edge_item import EdgeItem
from gui.canvas.look import NODE_MIME
from gui.canvas.node_item import NodeItem
from gui.canvas.port_item import PortItem
from gui.canvas.quick_add import QuickAddPopup
from gui.canvas.scene import GraphScene
from gui.canvas.view import GraphView

__all__ = ["NODE_MIME", "EdgeItem", "GraphScene", "GraphView", "NodeItem", "PortItem",
           "QuickAddPopup"]
