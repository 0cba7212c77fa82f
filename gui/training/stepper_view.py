"""Stepping through backprop (the "Backprop" tab, ``backpropView``; Train > Step, F10, and
Step Back, Shift+F10).

On a paused or idle graph, Step takes one batch and walks one training step through it, one
stage per press: forward node by node in the plan's order, the loss, backward node by node
in reverse, then the optimizer update. The training process does all the arithmetic
(``core.probe.stepper``, the ``"step"`` probe; docs/probe.md, "Stepping") and this view
only shows the stage it answers with: the canvas rings the node the walk is at (blue
forward, amber backward) and, in the backward phase, labels every edge already passed with
the norm of the gradient sent back along it; the tab shows the stage's statistics and the
chosen sample's values, the chain rule in numbers at the selected node (or the walk's node)
for a chosen element, and, at the end, the update of every parameter against its size.

One request is in flight at most; presses made meanwhile are queued, so nothing waits on the
training process. Editing the graph, training, resetting or loading weights ends the walk.
"""
from __future__ import annotations

import logging
import math

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core.layers.base import fmt_shape
from core.probe.stepper import edge_key
from gui.training.controller import IDLE, PAUSED

log = logging.getLogger(__name__)

VALUE_COLUMNS = 8  # the sample's values, this many to a row
PHASE_TITLES = {"forward": "Forward", "loss": "Loss", "backward": "Backward",
                "update": "Optimizer update"}
HINT = ("Press <b>F10</b> (Train ▸ Step) on a paused or idle graph to take one batch and walk "
        "it through the network: forward node by node, the loss, backward node by node, then "
        "the optimizer's update. <b>Shift+F10</b> steps back.")


def num(v) -> str:
    """A number for a table cell: four significant digits, or a dash."""
    if v is None:
        return "—"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return f"{v + 0.0:.4g}"  # + 0.0: no "-0"


def grad_label(norm) -> str:
    """The edge label of the backward phase."""
    return "no ∇" if norm is None else f"∇ {norm:.3g}"


def _table(name: str, headers: list[str]) -> QTableWidget:
    t = QTableWidget(0, len(headers))
    t.setObjectName(name)
    t.setHorizontalHeaderLabels(headers)
    t.setEditTriggers(QAbstractItemView.NoEditTriggers)
    t.setSelectionMode(QAbstractItemView.NoSelection)
    t.verticalHeader().setVisible(False)
    head = t.horizontalHeader()
    head.setSectionResizeMode(QHeaderView.Stretch)  # the numbers spread over the width
    head.setSectionResizeMode(0, QHeaderView.ResizeToContents)
    return t


def _fill(table: QTableWidget, rows: list[list[str]]) -> None:
    table.setRowCount(len(rows))
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            item = QTableWidgetItem(text)
            if c > 0:
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
            table.setItem(r, c, item)


class BackpropView(QWidget):
    """The Backprop tab and the walk it drives (``step``, ``step_back``, ``next_phase``,
    ``end_walk``). ``state`` is the last ``core.probe.stepper.StepState`` answered (None
    without a walk); ``message`` says why a step was refused (for the status bar)."""

    message = Signal(str)
    walk_changed = Signal(object)  # the StepState shown, or None when the walk ended

    def __init__(self, controller, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("backpropView")
        self.controller = controller
        self.state = None
        self.node: str | None = None  # the canvas selection: its chain rule is shown
        self.error: str | None = None
        self._in_flight = False
        self._queue: list[str] = []  # moves pressed while a request was in flight
        self._goto: int | None = None  # the stage to go back to after a new sample
        self._want_state = False  # the node or element changed meanwhile
        self._generation = 0  # a reply for an ended walk is dropped
        self._trainer = None  # the process the walk runs in
        self._marked: set[str] = set()
        self._labelled: list = []
        self.requests = 0

        self.phase_label = QLabel("")
        self.phase_label.setObjectName("backpropPhase")
        f = self.phase_label.font()
        f.setPointSizeF(f.pointSizeF() * 1.15)
        f.setBold(True)
        self.phase_label.setFont(f)
        self.back_button = QPushButton("◀ Back")
        self.back_button.setObjectName("backpropBack")
        self.back_button.setToolTip("One stage back (Shift+F10)")
        self.back_button.clicked.connect(self.step_back)
        self.next_button = QPushButton("Step ▶")
        self.next_button.setObjectName("backpropNext")
        self.next_button.setToolTip("One stage on (F10); the first press takes a batch")
        self.next_button.clicked.connect(self.step)
        self.phase_button = QPushButton("Next phase »")
        self.phase_button.setObjectName("backpropNextPhase")
        self.phase_button.setToolTip("To the first stage of the next phase")
        self.phase_button.clicked.connect(self.next_phase)
        self.end_button = QPushButton("End")
        self.end_button.setObjectName("backpropEnd")
        self.end_button.setToolTip("Stop walking: after the update the step stays taken, "
                                   "before it nothing has changed")
        self.end_button.clicked.connect(self.end_walk)
        self.sample_spin = QSpinBox()
        self.sample_spin.setObjectName("backpropSample")
        self.sample_spin.setRange(0, 0)
        self.sample_spin.setPrefix("sample ")
        self.sample_spin.setToolTip("The sample of the batch whose values are shown (changing "
                                    "it walks the same batch again to this stage)")
        self.sample_spin.valueChanged.connect(self._on_sample)
        head = QHBoxLayout()
        head.addWidget(self.phase_label, 1)
        head.addWidget(self.sample_spin)
        for b in (self.back_button, self.next_button, self.phase_button, self.end_button):
            head.addWidget(b)

        self.stats = QLabel(HINT)
        self.stats.setObjectName("backpropStats")
        self.stats.setWordWrap(True)
        self.stats.setTextFormat(Qt.RichText)
        self.stats.setAlignment(Qt.AlignTop | Qt.AlignLeft)
        self.stats.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.values = _table("backpropValues", [str(i) for i in range(VALUE_COLUMNS)])
        self.values.verticalHeader().setVisible(True)
        self.values.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.values_box = QGroupBox("Values")
        self.values_box.setObjectName("backpropValuesBox")
        QVBoxLayout(self.values_box).addWidget(self.values)
        left = QWidget()
        lv = QVBoxLayout(left)
        lv.setContentsMargins(0, 0, 0, 0)
        lv.addWidget(self.stats)
        lv.addStretch(1)

        self.chain_box = QGroupBox("Chain rule")
        self.chain_box.setObjectName("backpropChain")
        self.element_spin = QSpinBox()
        self.element_spin.setObjectName("backpropElement")
        self.element_spin.setRange(-1, 0)
        self.element_spin.setValue(-1)
        self.element_spin.setSpecialValueText("the largest gradient")
        self.element_spin.setPrefix("output element ")
        self.element_spin.setToolTip(
            "The element e of one sample's output (flat index, row-major) whose chain rule "
            "is shown. Last column: for an input, everything this node sends back to that "
            "element (the sum over all output elements); for a parameter, its whole gradient "
            "over the batch")
        self.element_spin.valueChanged.connect(self._on_element)
        self.chain_text = QLabel("")
        self.chain_text.setObjectName("backpropChainText")
        self.chain_text.setWordWrap(True)
        self.chain_text.setTextFormat(Qt.RichText)
        self.chain_table = _table("backpropChainTable", [
            "term", "element", "upstream ∂L/∂y[e]", "local ∂y[e]/∂·", "product",
            "∂L/∂· (all terms)"])
        self.element_spin.setMinimumWidth(self.element_spin.sizeHint().width() + 40)
        cv = QVBoxLayout(self.chain_box)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show the chain rule for"))
        row.addWidget(self.element_spin)
        row.addStretch(1)
        cv.addLayout(row)
        cv.addWidget(self.chain_text)
        cv.addWidget(self.chain_table, 1)
        self.update_box = QGroupBox("Optimizer update")
        self.update_box.setObjectName("backpropUpdateBox")
        self.update_text = QLabel("")
        self.update_text.setWordWrap(True)
        self.update_table = _table("backpropUpdate", [
            "parameter", "shape", "‖W‖", "‖ΔW‖", "‖ΔW‖ / ‖W‖", "‖∇W‖"])
        uv = QVBoxLayout(self.update_box)
        uv.addWidget(self.update_text)
        uv.addWidget(self.update_table, 1)
        right = QWidget()
        rv = QVBoxLayout(right)
        rv.setContentsMargins(0, 0, 0, 0)
        rv.addWidget(self.values_box, 1)
        rv.addWidget(self.chain_box, 1)
        rv.addWidget(self.update_box, 1)
        body = QHBoxLayout()
        body.addWidget(left, 2)
        body.addWidget(right, 3)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.addLayout(head)
        lay.addLayout(body, 1)

        c = controller
        c.state_changed.connect(self._on_state)
        c.weights_reset.connect(lambda: self._forget("the weights were reset or loaded"))
        doc = c.document
        for name in ("edited", "graph_reset"):
            sig = getattr(doc, name, None)
            if sig is not None:
                sig.connect(lambda *_: self.end_walk("the graph changed"))
        self._show(None)

    # ---- what the user does ------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """A walk is going on (or being begun)."""
        return self.state is not None or (self._in_flight and self._trainer is not None)

    def _refusal(self) -> str | None:
        c = self.controller
        if c.state not in (IDLE, PAUSED) or getattr(c, "building", False):
            return "Pause training (F6) to step through backprop"
        analysis = getattr(c.document, "analysis", None)
        if analysis is not None and not analysis.ok:
            return "Cannot step through backprop: the graph has problems (see Problems)"
        if analysis is not None and not analysis.losses():
            return "Cannot step through backprop: the graph has no loss node"
        return None

    def step(self) -> bool:
        """F10: begin a walk, or one stage on (at the update stage: end the walk, the step
        taken). False, with ``message``, when refused."""
        why = self._refusal()
        if why is not None:
            self.message.emit(why)
            self._show_error(why)
            return False
        if self.state is None and not self._in_flight:
            return self._send("begin", sample=self.sample_spin.value())
        if self.state is not None and self.state.phase == "update" and not self._in_flight:
            return self.end_walk()
        return self._move("next")

    def step_back(self) -> bool:
        """Shift+F10: one stage back (nothing without a walk)."""
        if self.state is None and not self._in_flight:
            self.message.emit("No walk to step back in: press F10 to begin one")
            return False
        return self._move("back")

    def next_phase(self) -> bool:
        if self.state is None and not self._in_flight:
            return self.step()
        return self._move("phase")

    def end_walk(self, why: str | None = None) -> bool:
        """End the walk: after the update the step stays taken, before it nothing changed."""
        if not self.active:
            return False
        self._queue.clear()
        tr = self._trainer
        self._forget(why)
        if tr is not None and tr is self.controller.trainer:
            # the answer does not matter: a walk overtaken by training is gone already
            self.controller.request_probe("step", lambda _st: None, lambda _e: None,
                                          action="end")
        return True

    def show_node(self, node_id: str | None) -> None:
        """The canvas selection: the chain rule shown is this node's (None: the walk's)."""
        if node_id == self.node:
            return
        self.node = node_id
        self.element_spin.blockSignals(True)
        self.element_spin.setValue(-1)
        self.element_spin.blockSignals(False)
        if self.state is not None:
            self._ask_state()

    # ---- requests ----------------------------------------------------------------------------
    def _move(self, action: str) -> bool:
        if self._in_flight:
            self._queue.append(action)
            return True
        return self._send(action)

    def _ask_state(self) -> None:
        if self._in_flight:
            self._want_state = True
        else:
            self._send("state")

    def _args(self) -> dict:
        args = {}
        if self.node is not None:
            args["node"] = self.node
        if self.element_spin.value() >= 0:
            args["element"] = self.element_spin.value()
        return args

    def _send(self, action: str, **extra) -> bool:
        gen = self._generation
        args = {**self._args(), **extra}
        if action == "begin":
            self.phase_label.setText("Taking a batch and running the step…")
        self._in_flight = True
        self.requests += 1
        ok = self.controller.request_probe("step", lambda st: self._on_state_answer(gen, st),
                                           lambda e: self._on_error(gen, e),
                                           action=action, **args)
        if not ok:
            self._in_flight = False
            return False
        self._trainer = self.controller.trainer
        return True

    def _on_state_answer(self, gen: int, st) -> None:
        if gen != self._generation:
            return
        self._in_flight = False
        if st.phase == "ended":
            self._forget(None)
            return
        self.state = st
        self.error = None
        self._show(st)
        self.walk_changed.emit(st)
        if self._goto is not None:
            index, self._goto = self._goto, None
            self._send("goto", index=index)
        elif self._queue:
            self._send(self._queue.pop(0))
        elif self._want_state:
            self._want_state = False
            self._send("state")

    def _on_error(self, gen: int, e: Exception) -> None:
        if gen != self._generation:
            return
        self._in_flight = False
        self._queue.clear()
        self._want_state = False
        text = str(e)
        self.message.emit(f"Step: {text}")
        if "moved on" in text or "begin one first" in text:
            self._forget(None)
        self._show_error(text)

    def _forget(self, why: str | None) -> None:
        """Drop the walk here (the process is told by ``end_walk``, or ended it itself)."""
        self._generation += 1
        self._in_flight = False
        self._queue.clear()
        self._want_state = False
        self._goto = None
        self._trainer = None
        had = self.state is not None
        self.state = None
        self._show(None)
        if why and had:
            self.message.emit(f"The walk through backprop ended: {why}")
        if had:
            self.walk_changed.emit(None)

    def _on_state(self, state: str) -> None:
        if state not in (IDLE, PAUSED) and self.active:
            self.end_walk("training goes on")

    def _on_sample(self, value: int) -> None:
        st = self.state
        if st is None or self._in_flight or value == st.sample:
            return
        # walk the same batch again with this sample, back to this stage
        self._goto = st.index
        self._send("begin", sample=value)

    def _on_element(self, _value: int) -> None:
        if self.state is not None:
            self._ask_state()

    # ---- drawing -----------------------------------------------------------------------------
    def _show_error(self, text: str) -> None:
        self.error = text
        if self.state is None:
            self.phase_label.setText("Stepping through backprop")
            self.stats.setText(f"<p style='color:#d0342c'>{_esc(text)}</p><p>{HINT}</p>")

    def _show(self, st) -> None:
        self._mark_canvas(st)
        walking = st is not None
        for b in (self.back_button, self.phase_button, self.end_button):
            b.setEnabled(walking)
        self.sample_spin.setEnabled(walking)
        if not walking:
            self.phase_label.setText("Stepping through backprop")
            self.stats.setText(HINT)
            self.values.setRowCount(0)
            self.values_box.setVisible(False)
            self.chain_box.setVisible(False)
            self.update_box.setVisible(False)
            self.next_button.setText("Step ▶")
            return
        stage = st.stage
        where = f"{PHASE_TITLES[st.phase]} · stage {st.index + 1} of {st.count}"
        if stage.get("node"):
            where += f" · {stage['node']}"
            if stage.get("t") is not None:
                where += f" at t = {stage['t']}"
        self.phase_label.setText(where)
        self.next_button.setText("Finish ✓" if st.phase == "update" else "Step ▶")
        self.sample_spin.blockSignals(True)
        self.sample_spin.setRange(0, max(st.batch_size - 1, 0))
        self.sample_spin.setValue(st.sample)
        self.sample_spin.blockSignals(False)
        self.stats.setText(self._stats_html(st))
        self._show_values(st)
        self._show_chain(st)
        self._show_update(st)

    def _stats_html(self, st) -> str:
        s = st.stage
        if st.phase == "forward":
            what = "fed from the dataset" if s.get("fed") else "computed from its inputs"
            rows = [("shape (batch first)", fmt_shape(s["shape"])), ("mean", num(s["mean"])),
                    ("std", num(s["std"])), ("min", num(s["min"])), ("max", num(s["max"]))]
            if s.get("nonfinite"):
                rows.append(("NaN / Inf", str(s["nonfinite"])))
            return (f"<p>The value of <b>{_esc(s['node'])}</b>, {what}, over the batch of "
                    f"{st.batch_size}:</p>" + _kv(rows)
                    + f"<p>On the right: sample {st.sample}'s values (pick the sample above "
                      "the buttons).</p>")
        if st.phase == "loss":
            rows = [(f"loss node {k}", num(v)) for k, v in s["losses"].items()]
            if s["penalty"]:
                rows.append(("L1/L2 penalty", num(s["penalty"])))
            rows.append(("total loss L", num(s["loss"])))
            return ("<p>The forward pass is done. The loss the step minimises:</p>" + _kv(rows)
                    + "<p>Backprop starts here with ∂L/∂L = 1 and carries it back node by "
                      "node, by the chain rule.</p>")
        if st.phase == "backward":
            up = s.get("upstream") or {}
            rows = [("gradient arriving ‖∂L/∂y‖", num(up.get("norm"))),
                    ("its shape", fmt_shape(up.get("shape", [])))]
            norms = s.get("state_grad_norms")
            if norms:
                rows.append((f"‖∂L/∂state‖ at t = 0 … {len(norms) - 1}",
                             f"{num(norms[0])} … {num(norms[-1])}"))
            for e in s.get("edges", []):
                rows.append((f"sent back to {e['src']} (port {e['port']})",
                             "none: data needs no gradient" if e["norm"] is None
                             else num(e["norm"])))
            return (f"<p>Backward through <b>{_esc(s['node'])}</b>: its gradient is "
                    "complete (every consumer has sent its part), and it sends each input "
                    "its share.</p>" + _kv(rows))
        return (f"<p>The gradients are complete (global norm {num(s['global_norm'])}"
                + (", clipped" if s.get("clipped") else "")
                + f"). The optimizer (<b>{_esc(s['optimizer'])}</b>) has updated every "
                "parameter: the weights are now those of one training step. Press F10 to "
                "finish, Shift+F10 to take the update back.</p>")

    def _values_caption(self, st) -> str:
        s = st.stage
        n, total = len(s["values"]), s["values_total"]
        shape = fmt_shape(s["sample_shape"]) if s["sample_shape"] else "one value"
        more = f"the first {n} of {total}, row-major" if n < total else f"all {total}"
        return f"Sample {st.sample}'s values ({shape}; {more})"

    def _show_values(self, st) -> None:
        s = st.stage
        vals = s.get("values") if st.phase == "forward" else None
        self.values_box.setVisible(bool(vals))
        if not vals:
            self.values.setRowCount(0)
            return
        self.values_box.setTitle(self._values_caption(st))
        rows = [vals[i:i + VALUE_COLUMNS] for i in range(0, len(vals), VALUE_COLUMNS)]
        self.values.setRowCount(len(rows))
        self.values.setVerticalHeaderLabels([str(i * VALUE_COLUMNS) for i in range(len(rows))])
        for r, row in enumerate(rows):
            for c in range(VALUE_COLUMNS):
                item = QTableWidgetItem(num(row[c]) if c < len(row) else "")
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                self.values.setItem(r, c, item)

    def _show_chain(self, st) -> None:
        show = st.phase in ("backward", "update") and (st.chain is not None or bool(st.note))
        self.chain_box.setVisible(show)
        if not show:
            return
        ch = st.chain
        if ch is None:
            self.chain_box.setTitle("Chain rule")
            self.chain_text.setText(_esc(st.note))
            self.chain_table.setRowCount(0)
            return
        at = f" at t = {ch.t}" if ch.t is not None else ""
        self.chain_box.setTitle(f"Chain rule at {ch.node}{at}")
        self.element_spin.blockSignals(True)
        self.element_spin.setRange(-1, max(ch.output_size - 1, 0))
        self.element_spin.blockSignals(False)
        e = f"y{list(ch.element_index)}" if ch.element_index else "y"
        kind = ("Elementwise: each input element reaches only its own output element, so "
                "one product is the whole gradient." if ch.elementwise else
                "An input element reaches many output elements: what is sent back is the "
                "sum of their products (this row's product is one term).")
        self.chain_text.setText(
            f"Output element e = {e} of sample {ch.sample}; the gradient arriving there is "
            f"∂L/∂y[e] = <b>{num(ch.upstream)}</b>. In each row, upstream × local derivative "
            f"= product. {kind}")
        rows = []
        for t in ch.inputs:
            rows.append([f"input {t['port']} ← {t['src']}", str(t["index"]), num(ch.upstream),
                         num(t["local"]), num(t["product"]), num(t["total"])])
        for p in ch.params:
            rows.append([f"parameter {p['key']}", str(p["index"]), num(ch.upstream),
                         num(p["local"]), num(p["product"]), num(p["total"])])
        if not rows:
            rows.append(["(no input or parameter takes a gradient here)", "", num(ch.upstream),
                         "", "", ""])
        _fill(self.chain_table, rows)

    def _show_update(self, st) -> None:
        show = st.phase == "update"
        self.update_box.setVisible(show)
        if not show:
            return
        s = st.stage
        self.update_text.setText(
            "Per parameter: the size of the step against the size of the weight (a ratio "
            "around 1e-3 is the usual rule of thumb; far above, the learning rate is too high; "
            "far below, the layer barely learns).")
        rows = [[r["key"], fmt_shape(r["shape"]), num(r["weight_norm"]), num(r["update_norm"]),
                 num(r["ratio"]), num(r["grad_norm"])] for r in s["params"]]
        _fill(self.update_table, rows)

    def _mark_canvas(self, st) -> None:
        scene = getattr(self.controller, "scene", None)
        if scene is None or not hasattr(scene, "node_item"):
            return
        want: dict[str, str] = {}
        if st is not None:
            node = st.stage.get("node")
            if node and st.phase in ("forward", "backward"):
                want[node] = st.phase
            elif st.phase == "loss":
                analysis = getattr(self.controller.document, "analysis", None)
                for nid in analysis.losses() if analysis is not None else []:
                    want[nid] = "forward"
        for nid in self._marked - set(want):
            item = scene.node_item(nid)
            if item is not None:
                item.set_step_phase(None)
        for nid, phase in want.items():
            item = scene.node_item(nid)
            if item is not None:
                item.set_step_phase(phase)
        self._marked = set(want)
        norms = st.edge_norms if st is not None else {}
        labelled = []
        for item in self._labelled:
            try:
                item.set_grad_text(None)
            except RuntimeError:  # the edge was deleted (an edit ends the walk)
                pass
        graph = getattr(self.controller.document, "graph", None)
        if norms and graph is not None and hasattr(scene, "edge_item"):
            for edge in graph.edges:
                item = scene.edge_item(edge)
                if item is None or item.dst_port is None:
                    continue
                key = edge_key(edge.src, edge.dst, item.dst_port)
                if key in norms:
                    item.set_grad_text(grad_label(norms[key]))
                    labelled.append(item)
        self._labelled = labelled


def _esc(s) -> str:
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _kv(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td>{_esc(k)}</td><td align='right'>&nbsp;&nbsp;<b>{_esc(v)}</b>"
                    "</td></tr>" for k, v in rows)
    return f"<table cellspacing='2'>{cells}</table>"
