"""Check Gradients (``actionGradCheck``): the selected node's backward against central finite
differences, computed by the training process (``core.probe.grad_check``, float64, on the
current batch; docs/probe.md), shown as a badge on the node and as details in the inspector.

The badge is green below ``GOOD`` (1e-5), amber up to ``BAD`` (1e-3) and red above; its
tooltip gives the error. It goes with the next edit of the graph: the check was of the graph
as it was. Nothing here computes a gradient, and the UI never waits for the answer.
"""
from __future__ import annotations

import html
import logging

from PySide6.QtCore import QObject, Signal

from core.probe.gradcheck import BAD, GOOD

log = logging.getLogger(__name__)

STATUS_MS = 12000  # how long the result stays in the status bar

VERDICT_WORDS = {"good": f"good: below {GOOD:g}, the backward agrees with the numbers",
                 "doubtful": f"doubtful: between {GOOD:g} and {BAD:g}; often float rounding "
                             "near a kink, worth a look",
                 "bad": f"bad: above {BAD:g}, the backward does not compute this gradient"}


def badge_text(check) -> str:
    return f"∇ {check.max_rel_error:.1e}" if check.tensors else "∇ n/a"


def short_summary(check) -> str:
    """The status bar's line."""
    if not check.tensors:
        return f"Gradient check of {check.node}: nothing to compare"
    return (f"Gradient check of {check.node}: max relative error "
            f"{check.max_rel_error:.2g} ({check.verdict})")


def summary(check) -> str:
    """One sentence on a check: the status bar's and the badge tooltip's."""
    if not check.tensors:
        return (f"Gradient check of {check.node}: nothing to compare (no parameter, and no "
                "input that carries a gradient)")
    kinks = sum(t.kinks for t in check.tensors)
    kink_text = f"; {kinks} element{'s' if kinks != 1 else ''} at a kink left out" if kinks \
        else ""
    return (f"Gradient check of {check.node}: max relative error {check.max_rel_error:.2g} "
            f"over {len(check.tensors)} tensor{'s' if len(check.tensors) != 1 else ''} "
            f"({VERDICT_WORDS[check.verdict]}){kink_text}")


def details_html(check) -> str:
    """Per tensor: its key, the worst element, analytic against numeric, the relative error,
    the kinks (the inspector's "Gradient check" box)."""
    head = (f"<p><b>Max relative error {check.max_rel_error:.2g}</b>: "
            f"{html.escape(VERDICT_WORDS[check.verdict])}.<br>"
            f"Loss {check.loss:.6g} on {check.samples} samples, central differences with "
            f"eps {check.eps:g}, in float64"
            + (f" (step {check.step})" if check.step >= 0 else "") + ".</p>")
    if not check.tensors:
        return head + "<p>Nothing to compare: no parameter, and no input that carries a " \
                      "gradient.</p>"
    rows = []
    for t in check.tensors:
        verdict = "good" if t.max_rel_error < GOOD else ("bad" if t.max_rel_error > BAD
                                                         else "doubtful")
        colour = {"good": "#2e9d4b", "doubtful": "#d08c00", "bad": "#d0342c"}[verdict]
        shape = "×".join(str(s) for s in t.shape) or "scalar"
        index = ", ".join(str(i) for i in t.index)
        kinks = f"; {t.kinks} at a kink, left out" if t.kinks else ""
        rows.append(
            f"<p style='margin-top:4px'><b>{html.escape(t.key)}</b> "
            f"<span>({t.kind}, {shape}; {t.checked} of {t.size} elements checked{kinks})"
            f"</span><br>worst at [{index}]: analytic {t.analytic:.6g}, numeric "
            f"{t.numeric:.6g}<br>relative error <b style='color:{colour}'>"
            f"{t.max_rel_error:.2g}</b>, gradient norm {t.grad_norm:.3g}</p>")
    return head + "".join(rows)


class GradCheckRunner(QObject):
    """Runs gradient checks through the training controller's ``request_probe`` and shows
    them: ``scene.node_item(id).set_check_badge``, a message in ``status_bar``, details on
    ``page`` (``show_grad_check(check | None)``, the inspector's node page), for the node
    it shows. ``results`` maps node id -> ``GradCheck`` until the next edit."""

    started = Signal(str)  # node id
    checked = Signal(str, object)  # node id, GradCheck
    failed = Signal(str, str)  # node id, why

    def __init__(self, controller, scene=None, status_bar=None, page=None,
                 parent: QObject | None = None):
        super().__init__(parent or controller)
        self.controller = controller
        self.scene = scene
        self.status_bar = status_bar
        self.page = page
        self.results: dict = {}
        self.pending: set[str] = set()
        doc = controller.document
        for name in ("edited", "graph_reset"):
            sig = getattr(doc, name, None)
            if sig is not None:
                sig.connect(self.clear)

    def run(self, node_id: str) -> bool:
        """Ask for the check of ``node_id``; False when it could not be asked (and why is
        in the status bar)."""
        if node_id in self.pending:
            return False
        self.pending.add(node_id)
        self._message(f"Checking gradients of {node_id}… (finite differences in the "
                      "training process)", 0)
        self.started.emit(node_id)
        sent = self.controller.request_probe(
            "gradcheck", lambda c, n=node_id: self._done(n, c),
            lambda e, n=node_id: self._error(n, e), node=node_id)
        if not sent:
            self.pending.discard(node_id)
        return sent

    def clear(self) -> None:
        """Drop every badge and detail: the graph changed since they were computed."""
        for nid in list(self.results):
            self._badge(nid, None)
        self.results.clear()
        if self.page is not None:
            self.page.show_grad_check(None)

    # ---- answers ---------------------------------------------------------------------------
    def _done(self, node_id: str, check) -> None:
        self.pending.discard(node_id)
        if node_id not in self.controller.document.graph.nodes:
            return  # renamed or deleted meanwhile
        self.results[node_id] = check
        self._badge(node_id, check)
        self._message(short_summary(check), STATUS_MS)
        if self.page is not None and getattr(self.page, "node_id", None) == node_id:
            self.page.show_grad_check(check)
        self.checked.emit(node_id, check)

    def _error(self, node_id: str, e: Exception) -> None:
        self.pending.discard(node_id)
        why = str(e)
        log.info("gradient check of %s failed: %s", node_id, why)
        self._message(f"Cannot check the gradients of {node_id}: {why}", STATUS_MS)
        self.failed.emit(node_id, why)

    def _badge(self, node_id: str, check) -> None:
        fn = getattr(self.scene, "node_item", None)
        item = fn(node_id) if fn is not None else None
        if item is None or not hasattr(item, "set_check_badge"):
            return
        if check is None:
            item.set_check_badge(None)
        else:
            item.set_check_badge(check.verdict, badge_text(check), summary(check))

    def _message(self, text: str, ms: int) -> None:
        if self.status_bar is not None:
            self.status_bar.showMessage(text, ms)
