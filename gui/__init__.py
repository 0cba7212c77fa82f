"""The editor: PySide6 and pyqtgraph on top of core/ (docs/editor.md)."""
from gui._pyside_guard import keep_singletons_alive

keep_singletons_alive()  # before any painting or signal: see gui/_pyside_guard.py
