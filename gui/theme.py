"""Light and dark looks: one palette per theme, category colours, and the canvas colours.

Every widget reads its colours from here (``current()``), so switching the theme is one
call (``apply_theme``) followed by a repaint.
"""
from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

CATEGORIES = ("Data", "Core", "Convolution", "Recurrent", "Regularization", "Activations",
              "Merge", "Losses")


@dataclass(frozen=True)
class Theme:
    name: str
    window: str
    base: str
    text: str
    muted_text: str
    highlight: str
    canvas: str
    grid_minor: str
    grid_major: str
    node_body: str
    node_border: str
    node_selected: str
    edge: str
    edge_selected: str
    error: str
    warning: str
    category: dict[str, str]

    def color(self, attr: str) -> QColor:
        return QColor(getattr(self, attr))

    def category_color(self, category: str) -> QColor:
        return QColor(self.category.get(category, self.muted_text))


_CATEGORY_LIGHT = {"Data": "#2f7ed8", "Core": "#5b6abf", "Convolution": "#0f9d8a",
                   "Recurrent": "#c2571a", "Regularization": "#7b8794",
                   "Activations": "#d69e00", "Merge": "#8e44ad", "Losses": "#d0342c"}
_CATEGORY_DARK = {"Data": "#5aa2f0", "Core": "#8c97e0", "Convolution": "#3cc7b2",
                  "Recurrent": "#f08a4b", "Regularization": "#a5b1bd",
                  "Activations": "#f2c230", "Merge": "#b57ad1", "Losses": "#f0625a"}

LIGHT = Theme("light", window="#f3f4f6", base="#ffffff", text="#1f2328",
              muted_text="#66707a", highlight="#2f7ed8", canvas="#fafbfc",
              grid_minor="#eceef1", grid_major="#dde1e6", node_body="#ffffff",
              node_border="#c4cad1", node_selected="#2f7ed8", edge="#7d8792",
              edge_selected="#2f7ed8", error="#d0342c", warning="#c98a00",
              category=_CATEGORY_LIGHT)
DARK = Theme("dark", window="#202226", base="#17181b", text="#e6e8eb",
             muted_text="#9aa3ad", highlight="#5aa2f0", canvas="#1b1c20",
             grid_minor="#23252a", grid_major="#2c2f35", node_body="#2a2d33",
             node_border="#3d424a", node_selected="#5aa2f0", edge="#8b95a1",
             edge_selected="#5aa2f0", error="#f0625a", warning="#f2c230",
             category=_CATEGORY_DARK)
THEMES = {"light": LIGHT, "dark": DARK}

_current: Theme = LIGHT


def current() -> Theme:
    return _current


def apply_theme(name: str, app: QApplication | None = None) -> Theme:
    """Make ``name`` ('light' or 'dark') the look of the whole application."""
    global _current
    _current = THEMES.get(name, LIGHT)
    app = app or QApplication.instance()
    if app is not None:
        app.setStyle("Fusion")
        app.setPalette(_palette(_current))
    return _current


def _palette(t: Theme) -> QPalette:
    p = QPalette()
    roles = {QPalette.Window: t.window, QPalette.WindowText: t.text, QPalette.Base: t.base,
             QPalette.AlternateBase: t.window, QPalette.Text: t.text,
             QPalette.Button: t.window, QPalette.ButtonText: t.text,
             QPalette.ToolTipBase: t.base, QPalette.ToolTipText: t.text,
             QPalette.Highlight: t.highlight, QPalette.HighlightedText: "#ffffff",
             QPalette.PlaceholderText: t.muted_text, QPalette.Link: t.highlight}
    for role, colour in roles.items():
        p.setColor(role, QColor(colour))
    for role in (QPalette.Text, QPalette.WindowText, QPalette.ButtonText):
        p.setColor(QPalette.Disabled, role, QColor(t.muted_text))
    return p


def style_plot(plot) -> None:
    """Give a pyqtgraph PlotWidget the current theme's background, axes and labels."""
    t = _current
    plot.setBackground(t.base)
    item = plot.getPlotItem()
    for name in ("left", "bottom", "right", "top"):
        axis = item.getAxis(name)
        axis.setPen(t.muted_text)
        axis.setTextPen(t.text)
    item.titleLabel.setAttr("color", t.text)
    if item.legend is not None:
        item.legend.setLabelTextColor(t.text)
