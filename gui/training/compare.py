"""Train > Compare...: train variants of the open graph side by side and overlay their curves.

The user picks one or more settings (a training key such as ``optimizer.lr`` or a node's
parameter ``"<node>.<param>"``) and their values; every combination is a *variant*
(``core.runs.sweep.variants``). Each variant trains live in a training process of its own
(``core.remote.RemoteTrainer``) from the same initial weights (those of the open graph's
seed, ``initial_weights`` / ``core.weights.merge_state``) and the same seed, so the curves
differ only by the setting. At most ``jobs`` train at a time; the rest wait, queued. Each
variant's run is kept in the document's run store with its sweep id and values, so the
comparison stays in the run history.

``CompareController`` holds the variants and drives their processes from a QTimer on the UI
thread (as ``gui.training.controller`` does): it never waits on a process there. Preparing
the variants (applying the values, validating, the initial weights) happens on a thread of
its own; a variant whose values do not make a valid graph fails at once with the reason
while the others go on. ``CompareDialog`` (``compareDialog``) is its face.

A graph may carry a top-level ``"compare"`` object (a lesson's experiment)::

    "compare": {"set": {"optimizer.type": ["sgd", "adam"]}, "steps": 300,
                "finding": "Adam ..."}

which fills the dialog when it opens; its ``finding`` is shown above the settings.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from core import catalogue, memory
from core.errors import NeuroCanvasError, ParamError
from core.optim.hyperparams import OPTIMIZER_PARAMS
from core.params import Bool, Choice, Float, Int
from core.remote import NoteEvent, ReadyEvent, RemoteError, RemoteTrainer
from core.training import DoneEvent, EpochEvent, StepEvent, parse_training
from gui import memory_setting

log = logging.getLogger(__name__)

TICK_HZ = 10  # UI updates per second while comparing
OVERLAY_S = 0.5  # the overlays are rebuilt at most this often
QUEUED, RUNNING, FINISHED, FAILED, STOPPED = "queued", "running", "finished", "failed", "stopped"
ENDED = (FINISHED, FAILED, STOPPED)
IDLE, COMPARING, STOPPING = "idle", "running", "stopping"

# The training keys every graph can compare, with what they mean (a node's parameters follow).
COMMON_KEYS: dict[str, str] = {
    "optimizer.type": "the optimizer",
    "optimizer.lr": "the learning rate",
    "batch_size": "samples per step",
    "regularization.l2": "L2 penalty on the weights",
    "regularization.l1": "L1 penalty on the weights",
    "clip.norm": "clip the global gradient norm",
}


# ---- what can be compared ----------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One setting the dialog offers: ``key`` as ``apply_variant`` takes it."""
    key: str
    doc: str = ""
    choices: tuple = ()  # non-empty: the values to pick from (checkboxes)
    current: Any = None  # its value in the graph now (None: the default)

    @property
    def text(self) -> str:
        return f"{self.key} — {self.doc}" if self.doc else self.key


def _training_value(training: dict, key: str) -> Any:
    cur: Any = training
    for part in key.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def compare_settings(graph) -> list[Setting]:
    """The settings of ``graph`` that Compare offers: ``COMMON_KEYS``, then each node's
    numeric, choice and on/off parameters as ``"<node>.<param>"`` (data nodes left out)."""
    training = graph.training or {}
    out = []
    for key, doc in COMMON_KEYS.items():
        choices = tuple(OPTIMIZER_PARAMS) if key == "optimizer.type" else ()
        current = _training_value(training, key)
        if key == "optimizer.type" and current is None:
            current = "sgd"
        out.append(Setting(key, doc, choices, current))
    for nid, node in graph.nodes.items():
        cls = catalogue.get(node.type)
        if cls is None or cls.data_role is not None:
            continue
        for name, spec in cls.params_spec.items():
            if isinstance(spec, Bool):
                choices = (False, True)
            elif isinstance(spec, Choice):
                choices = tuple(spec.choices)
            elif isinstance(spec, (Int, Float)):
                choices = ()
            else:
                continue
            current = node.params.get(name, None if spec.required else spec.default)
            out.append(Setting(f"{nid}.{name}", spec.doc or node.type, choices, current))
    return out


def all_optimizers() -> list[str]:
    """The optimizers "All optimizers" compares: what ``--set optimizer.type=all`` means."""
    from core.runs.sweep import parse_set
    return list(parse_set("optimizer.type=all")[1])


def parse_values(key: str, text: str) -> list:
    """The values typed for ``key`` ("0.1, 0.01"), read as ``--set`` reads them; ParamError
    naming the setting when there are none or the text is bad."""
    if not text.strip():
        raise ParamError("give one or more values, separated by commas", param=key)
    from core.runs.sweep import parse_set
    try:
        got_key, values = parse_set(f"{key}={text}")
    except ParamError as e:
        raise ParamError(e.message, param=key) from None
    return list(values)


def value_text(v: Any) -> str:
    """A value as the values field shows it (strings bare, the rest as JSON)."""
    return v if isinstance(v, str) else json.dumps(v)


def new_sweep_id() -> str:
    """``YYYYMMDD-HHMMSS-xxxx`` (UTC), like a run id: sorts by time."""
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


# ---- one variant -------------------------------------------------------------------------
@dataclass
class Variant:
    index: int
    values: dict
    label: str
    color: QColor
    state: str = QUEUED
    reason: str = ""  # why it failed (one line)
    steps: int = 0
    total_steps: int = 0
    loss: float | None = None
    ready: bool = False  # its process has loaded the data and built the network
    note: str | None = None  # what its process waits on before its first step
    stop_requested: bool = False
    run_id: str | None = None
    prepared: bool = False
    graph: Any = None  # the variant's graph (set when prepared)
    init: dict | None = None
    note: str | None = None
    overrides: dict = field(default_factory=dict)
    bytes: int = 0  # the memory estimate of its training
    trainer: RemoteTrainer | None = None
    recorder: Any = None  # a core.runs.record.RunRecorder when this process records
    step_events: list = field(default_factory=list)
    epoch_events: list = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"compare-{self.index}"

    @property
    def state_text(self) -> str:
        if self.state == FAILED:
            return f"failed: {self.reason}" if self.reason else "failed"
        if self.state == RUNNING and not self.ready:
            return "running (starting)"
        if self.state == RUNNING and self.note and not self.step_events:
            return f"running ({self.note})"
        if self.state == QUEUED and self.prepared:
            return "queued (ready)"
        return self.state


# ---- the controller ------------------------------------------------------------------------
class CompareController(QObject):
    """Train the variants of a comparison, ``jobs`` at a time, and overlay their curves.

    document: a ``gui.document.Document`` (``graph``, ``analysis``, ``base_dir()``,
    ``set_locked``, ``run_store``). run_dir: the run store the runs go to (a path, a
    ``RunStore``, or a callable returning one, asked at each start; None: the document's
    ``run_store()``; False keeps no runs). plots: widgets with
    ``set_overlays(list[Overlay])`` (``lossPlot``, ``gradNormPlot``). training: the main
    training controller, whose runs and a comparison exclude each other.
    """

    changed = Signal()  # the variants' states, steps or losses changed
    state_changed = Signal(str)  # idle / running / stopping
    finished = Signal()  # every variant ended; their runs are in the store

    def __init__(self, document, parent: QObject | None = None, *, run_dir=None,
                 plots=(), training=None):
        super().__init__(parent)
        self.document = document
        self.run_dir = run_dir
        self.plots = list(plots)
        self.training = training
        self.variants: list[Variant] = []
        self.sweep_id: str | None = None
        self.jobs = 1
        self._state = IDLE
        self._gen = 0  # which comparison the queued messages belong to
        self._prep_q: queue.SimpleQueue = queue.SimpleQueue()
        self._events: queue.SimpleQueue = queue.SimpleQueue()
        self._cancel = threading.Event()
        self._prep_thread: threading.Thread | None = None
        self._closers: list[threading.Thread] = []  # trainers closed, recorders finished
        self._store = None
        self._base = None  # the graph compared (a copy)
        self._budget: int | None = None  # bytes the variants training together may need
        self._base_dir = Path.cwd()
        self._overlays_at = 0.0
        self._overlays_dirty = False
        self._timer = QTimer(self)
        self._timer.setInterval(int(1000 / TICK_HZ))
        self._timer.timeout.connect(self._tick)

    # ---- state ---------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def running(self) -> bool:
        """A comparison is running or stopping (Train is refused meanwhile)."""
        return self._state != IDLE

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self.state_changed.emit(state)

    def store(self):
        """The run store the runs go to (core.runs.store.RunStore), or None."""
        rd = self.run_dir() if callable(self.run_dir) else self.run_dir
        if rd is None:  # the document's own
            run_store = getattr(self.document, "run_store", None)
            rd = run_store() if run_store is not None else None
        if rd is None or rd is False:
            return None
        if hasattr(rd, "root") and hasattr(rd, "list"):
            return rd
        from core.runs.store import RunStore
        return RunStore(rd)

    # ---- start -----------------------------------------------------------------------------
    def refusal(self) -> str | None:
        """Why a comparison cannot start now (None when it can)."""
        if self.running:
            return "a comparison is already running: stop it first"
        tr = self.training
        if tr is not None and tr.state != "idle":
            return ("the graph is training: stop training (Shift+F5) before comparing"
                    if tr.state != "stopping" else
                    "training is stopping; compare once it has stopped")
        from core.readiness import refusal
        flush = getattr(self.document, "flush", None)
        analysis = flush() if flush is not None else self.document.analysis
        why = refusal(analysis)
        return why[len("Cannot train: "):] if why and why.startswith("Cannot train: ") else why

    def start(self, sets: list[tuple[str, list]], *, steps: int | None = None,
              epochs: int | None = None, jobs: int | None = None) -> list[Variant]:
        """Start a comparison of every combination of ``sets`` (``[(key, values)]``),
        training ``steps`` steps (or ``epochs`` epochs; neither: the graph's own length),
        ``jobs`` at a time (default: the machine's cores). Raises ``NeuroCanvasError`` when
        it cannot start (see ``refusal``), naming the setting of a bad set."""
        from core.runs.diff import run_label
        from core.runs.sweep import check_keys
        from core.runs.sweep import variants as combine
        from gui.training.plots import run_colors

        why = self.refusal()
        if why is not None:
            raise NeuroCanvasError(f"Cannot compare: {why}")
        if not sets:
            raise ParamError("choose a setting and its values to compare", param="compare")
        for key, values in sets:
            if not values:
                raise ParamError("give one or more values", param=key)
        combos = combine([(k, list(v)) for k, v in sets])
        graph = self.document.graph
        length: dict[str, int] = {}
        if steps is not None:
            length["steps"] = int(steps)
        elif epochs is not None:
            length["epochs"] = int(epochs)
        try:
            check_keys(graph, [k for k, _ in sets])
            base_cfg = parse_training(graph.training, **length)
        except NeuroCanvasError as e:
            raise NeuroCanvasError(f"Cannot compare: {e}") from None
        store = self.store()
        colors = run_colors(len(combos))
        base_training = dict(graph.training or {})
        self._gen += 1
        self._cancel = threading.Event()
        self._store = store
        self._base_dir = Path(self.document.base_dir()) if hasattr(self.document, "base_dir") \
            else Path.cwd()
        self.sweep_id = new_sweep_id()
        self.jobs = max(1, int(jobs or os.cpu_count() or 1))
        self.variants = []
        for i, values in enumerate(combos):
            try:
                label = run_label(base_training, values=values)
            except Exception:  # noqa: BLE001 - a label is not worth failing a variant for
                label = ", ".join(f"{k}={value_text(v)}" for k, v in values.items())
            self.variants.append(Variant(i, dict(values), label, QColor(colors[i])))
        self._overlays_dirty = True
        self._closers = [t for t in self._closers if t.is_alive()]
        self.document.set_locked(True)
        self._set_state(COMPARING)
        base = graph.copy()  # the thread reads its own copy; the document may change later
        self._prep_thread = threading.Thread(
            target=self._prepare, name="neurocanvas-compare-prepare", daemon=True,
            args=(self._gen, base, [v.values for v in self.variants], self._base_dir,
                  base_cfg, length, memory_setting.max_memory(), store, self.sweep_id,
                  [v.label for v in self.variants], self._cancel))
        self._base = base
        self._prep_thread.start()
        self._timer.start()
        self.changed.emit()
        return self.variants

    def _prepare(self, gen: int, base, combos: list[dict], base_dir: Path, base_cfg,
                 length: dict, limit: int | None, store, sweep_id: str,
                 labels: list[str], cancel: threading.Event) -> None:
        """Runs on a thread: each variant's graph, checked, and its initial weights (the base
        graph's, those that fit); posts ("ready" | "failed", gen, index, payload). A
        variant that cannot train is kept in the store as a failed run of 0 steps, as
        ``main.py sweep`` keeps it."""
        from core.readiness import analyze_for_training, blocking, first_culprit
        from core.runs.sweep import apply_variant, initial_weights
        from core.weights import merge_state
        put = self._prep_q.put
        try:
            init = initial_weights(base, base_dir, base_cfg.seed)
            init_error = None
        except Exception as e:  # noqa: BLE001 - reported on every variant
            init, init_error = None, _error_line(e)
        for i, values in enumerate(combos):
            if cancel.is_set():
                return
            g, cfg, node = None, None, None
            try:
                if init_error is not None:
                    raise NeuroCanvasError(f"cannot make the initial weights: {init_error}")
                g = apply_variant(base, values)
                if "epochs" in length:  # epochs asked: a step count in the file must not win
                    g.training = {k: v for k, v in g.training.items() if k != "steps"}
                analysis = analyze_for_training(g, base_dir)
                stop = blocking(analysis)
                if stop:
                    node = first_culprit(analysis)
                    raise stop[0]
                cfg = parse_training(g.training, **length)
                # a variant that alone needs more than the budget fails (limit None: the
                # default budget); together, no more start than fit in it (_start_more)
                est = memory.training_estimate(analysis, cfg, base_dir)
                budget = memory.budget(limit)
                over = memory.over_budget(est, budget)
                if over is not None:
                    raise over
                if "seed" in values:  # its own seed: its own initial weights and batches
                    w, note = None, "its own seed's initial weights"
                else:
                    w, fresh = merge_state(initial_weights(g, base_dir, cfg.seed), init)
                    note = (f"{fresh} array{'s' if fresh != 1 else ''} start fresh (not in "
                            "the base graph)" if fresh else None)
                put(("ready", gen, i, (g, w, note, dict(length), est.total, budget)))
                continue
            except NeuroCanvasError as e:
                reason, node = _error_line(e), node or e.node
            except Exception as e:  # noqa: BLE001 - a bug must fail one variant, not all
                log.exception("preparing a compared variant failed")
                reason = f"internal error: {_error_line(e)}"
            run_id = None
            if store is not None:
                try:
                    from core.runs.record import RunRecorder
                    rec = RunRecorder(store, g if g is not None else base, cfg or base_cfg,
                                      overrides=_recorded_overrides(base, values, length),
                                      label=labels[i],
                                      sweep={"id": sweep_id, "values": dict(values)})
                    run_id = rec.finish("failed", steps=0, error=reason, error_node=node).id
                except NeuroCanvasError as e:
                    log.warning("could not keep the failed variant's run: %s", e)
            put(("failed", gen, i, (reason, run_id)))

    # ---- stop ------------------------------------------------------------------------------
    def stop_all(self) -> None:
        """Stop every variant: the queued ones never start, the running ones stop after
        their current step."""
        if self._state != COMPARING:
            return
        self._cancel.set()
        for v in self.variants:
            if v.state == QUEUED:
                v.state = STOPPED
                v.reason = "stopped before it started"
            elif v.state == RUNNING:
                v.stop_requested = True
                if v.trainer is not None:
                    v.trainer.stop()
        self._set_state(STOPPING)
        self.changed.emit()
        self._timer.start()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Process events until the comparison is over (tests, closing the window)."""
        from PySide6.QtCore import QCoreApplication
        end = time.monotonic() + timeout
        while self.running and time.monotonic() < end:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return not self.running

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop a comparison and end its processes (closing the window)."""
        if self.running:
            self.stop_all()
            self.wait_idle(timeout)
        for v in self.variants:
            if v.trainer is not None:
                v.trainer.on_event = None
                v.trainer.close(timeout=1.0)
        for t in self._closers:
            t.join(timeout)

    # ---- the UI-thread tick ------------------------------------------------------------------
    def _tick(self) -> None:
        changed = False
        while True:
            try:
                kind, gen, i, payload = self._prep_q.get_nowait()
            except queue.Empty:
                break
            if gen != self._gen:
                continue
            v = self.variants[i]
            if kind in ("recorded", "unrecorded"):  # its run is made: it starts
                changed = True
                if kind == "unrecorded":
                    self._on_done(v, DoneEvent("error", 0, payload))
                    continue
                v.recorder, v.run_id = payload, payload.id
                if v.stop_requested:
                    self._on_done(v, DoneEvent("stopped", 0))
                else:
                    self._spawn(v)
                continue
            if v.state != QUEUED:
                continue
            changed = True
            if kind == "failed":
                v.state = FAILED
                reason, v.run_id = payload
                v.reason = memory_setting.gui_message(reason)
            else:
                v.graph, v.init, v.note, v.overrides, v.bytes, self._budget = payload
                v.prepared = True
        while True:
            try:
                gen, i, ev = self._events.get_nowait()
            except queue.Empty:
                break
            if gen != self._gen:
                continue
            changed = True
            self._on_event(self.variants[i], ev)
        changed |= self._start_more()
        if changed:
            self._overlays_dirty = True
            self.changed.emit()
        ended = all(v.state in ENDED for v in self.variants)
        if self._overlays_dirty and (ended or time.monotonic() - self._overlays_at >= OVERLAY_S):
            self.show_overlays()
        if ended and self.running:
            self._closers = [t for t in self._closers if t.is_alive()]
            if not self._closers:  # every run written: the history can read them
                self._end()
        if not self.running:
            self._timer.stop()

    def _start_more(self) -> bool:
        if self._state != COMPARING:
            return False
        started = False
        live = [v for v in self.variants if v.state == RUNNING]
        running, used = len(live), sum(v.bytes for v in live)
        for v in self.variants:
            if running >= self.jobs:
                break
            if v.state == QUEUED and v.prepared:
                if running and self._budget is not None and used + v.bytes > self._budget:
                    break  # it waits until enough memory is free (alone it fits)
                self._launch(v)
                running += 1
                used += v.bytes
                started = True
        return started

    def _launch(self, v: Variant) -> None:
        """Start a variant: its run is made in the store on a thread (the files are synced
        to disk, which may take a while), then its training process starts (``_spawn``)."""
        v.state = RUNNING
        if self._store is None:
            self._spawn(v)
            return
        gen, i, put = self._gen, v.index, self._prep_q.put
        store, graph, label = self._store, v.graph, v.label
        sweep = {"id": self.sweep_id, "values": dict(v.values)}
        overrides = dict(v.overrides)
        recorded = _recorded_overrides(self._base, v.values, v.overrides)

        def record() -> None:
            from core.runs.record import RunRecorder
            try:
                config = parse_training(graph.training, **overrides)
                rec = RunRecorder(store, graph, config, label=label, sweep=sweep,
                                  overrides=recorded)
            except NeuroCanvasError as e:  # the run cannot be kept (a folder not writable)
                put(("unrecorded", gen, i, e))
            except Exception as e:  # noqa: BLE001 - a bug fails the variant, not the UI
                log.exception("recording a compared variant failed")
                put(("unrecorded", gen, i, RemoteError(f"cannot record the run: {e}")))
            else:
                put(("recorded", gen, i, rec))

        threading.Thread(target=record, name="neurocanvas-compare-record",
                         daemon=True).start()

    def _spawn(self, v: Variant) -> None:
        """The variant's training process (on the UI thread: the process ends with the
        thread that made it)."""
        gen, i = self._gen, v.index
        try:
            v.trainer = RemoteTrainer(
                v.graph, overrides=v.overrides, base_dir=self._base_dir, init_weights=v.init,
                note=v.note, max_memory=memory_setting.max_memory(), jobs=self.jobs,
                on_event=lambda ev: self._events.put((gen, i, ev)))
        except OSError as e:  # no process could be started (out of memory, no interpreter)
            self._events.put((gen, i, DoneEvent("error", 0, RemoteError(
                f"cannot start the training process: {e}"))))
        v.init = None  # the process has its copy

    def _on_event(self, v: Variant, ev) -> None:
        if v.recorder is not None and not isinstance(ev, ReadyEvent):
            v.recorder.on_event(ev)
        if type(ev) is StepEvent:
            v.step_events.append(ev)
            v.steps = ev.step + 1
            v.loss = ev.loss
            v.total_steps = ev.total_steps or v.total_steps
        elif isinstance(ev, EpochEvent):
            v.epoch_events.append(ev)
        elif isinstance(ev, ReadyEvent):
            v.ready = True
            v.total_steps = ev.total_steps
        elif isinstance(ev, NoteEvent):
            v.note = ev.text
        elif isinstance(ev, DoneEvent):
            self._on_done(v, ev)

    def _on_done(self, v: Variant, done: DoneEvent) -> None:
        v.steps = max(v.steps, done.steps)
        if done.reason == "finished":
            v.state = FINISHED
        elif done.reason == "stopped":
            v.state = STOPPED
        else:
            v.state = FAILED
            err = done.error
            if isinstance(err, NeuroCanvasError):
                v.reason = memory_setting.gui_message(_error_line(err))
            else:
                v.reason = f"internal error: {_one_line(err)}" if err is not None else "failed"
            if isinstance(err, RemoteError) and err.remote_traceback:
                log.error("a compared variant crashed:\n%s", err.remote_traceback)
        tr, rec = v.trainer, v.recorder
        if tr is not None:
            tr.on_event = None
        if tr is None and rec is None:
            return
        status = {FINISHED: "finished", STOPPED: "stopped"}.get(v.state, "failed")
        err = done.error
        node = getattr(err, "node", None)
        reason = v.reason or None
        steps = v.steps

        def close() -> None:  # off the UI thread: waits for the process and the writer
            weights = None
            try:
                if rec is not None and tr is not None and v.ready:  # built: it has weights
                    try:
                        weights = tr.state_dict().result(30.0) or None
                    except Exception as e:  # noqa: BLE001 - a run without weights
                        log.warning("no weights for the compared run: %s", e)
                if tr is not None:
                    tr.close()
            finally:
                if rec is not None:
                    try:
                        rec.finish(status, steps=steps, weights=weights, error=reason,
                                   error_node=node)
                    except NeuroCanvasError as e:
                        log.warning("could not finish the run record: %s", e)

        t = threading.Thread(target=close, name="neurocanvas-compare-close", daemon=True)
        t.start()
        self._closers.append(t)

    def run_ids(self) -> list[str]:
        """The runs this comparison keeps in the store, in the order of its variants."""
        return [v.run_id for v in self.variants if v.run_id is not None]

    def _end(self) -> None:
        self.show_overlays()
        self.document.set_locked(False)
        self._set_state(IDLE)
        self.changed.emit()
        self.finished.emit()

    # ---- overlays ----------------------------------------------------------------------------
    def overlays(self) -> list:
        """One ``Overlay`` per variant that has steps, in its colour, named by its label."""
        from gui.training.plots import overlay_from_events
        out = []
        for v in self.variants:
            if not v.step_events and not v.epoch_events:
                continue
            status = "failed" if v.state == FAILED else "finished"
            out.append(overlay_from_events(v.key, v.label, v.color, v.step_events,
                                           v.epoch_events, status=status))
        return out

    def show_overlays(self) -> None:
        """Draw the variants' curves in the plots (done as they train, and at the end)."""
        self._overlays_at = time.monotonic()
        self._overlays_dirty = False
        if not self.plots:
            return
        overlays = self.overlays()
        for plot in self.plots:
            try:
                plot.set_overlays(overlays)
            except Exception:  # noqa: BLE001 - a plot that fails must not stop the runs
                log.exception("showing the compared curves failed")

    def clear_overlays(self) -> None:
        for plot in self.plots:
            plot.set_overlays([])


def _one_line(e: BaseException | None) -> str:
    text = f"{type(e).__name__}: {e}" if e is not None else ""
    return text.splitlines()[0] if text else ""


def _error_line(e: BaseException) -> str:
    """A user's error as it reads, any other with its type; on one line."""
    text = str(e) if isinstance(e, NeuroCanvasError) else f"{type(e).__name__}: {e}"
    return " ".join(text.split())


def _recorded_overrides(base, values: dict, length: dict) -> dict:
    """What the comparison changed of the training section, for run.json's "overrides"
    (the length, and the variant's training values; node values are in its graph)."""
    out = dict(length)
    out.update({k: v for k, v in values.items() if k.partition(".")[0] not in base.nodes})
    return out


# ---- the dialog --------------------------------------------------------------------------
class SettingRow(QWidget):
    """One setting of a comparison: the setting, and its values typed or ticked."""

    removed = Signal(object)
    edited = Signal()

    def __init__(self, settings: list[Setting], suffix: str = "", parent=None):
        super().__init__(parent)
        self.settings = list(settings)
        self.combo = QComboBox()
        self.combo.setObjectName(f"compareSetting{suffix}")
        self.combo.setMinimumContentsLength(24)
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        for s in self.settings:
            self.combo.addItem(s.text, s.key)
        self.values = QLineEdit()
        self.values.setObjectName(f"compareValues{suffix}")
        self.values.setPlaceholderText("0.1, 0.01, 0.001")
        self.values.setToolTip("Values separated by commas, each read as JSON (else as text)")
        self.choices = QWidget()
        self.choices.setObjectName(f"compareChoices{suffix}")
        self._choice_lay = QHBoxLayout(self.choices)
        self._choice_lay.setContentsMargins(0, 0, 0, 0)
        self.boxes: list[QCheckBox] = []
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Compare without this setting")
        self.remove.clicked.connect(lambda: self.removed.emit(self))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.combo)
        lay.addWidget(self.values, 1)
        lay.addWidget(self.choices, 1)
        lay.addWidget(self.remove)
        self.combo.currentIndexChanged.connect(self._on_setting)
        self.values.textChanged.connect(lambda *_: self.edited.emit())
        self._on_setting()

    @property
    def setting(self) -> Setting:
        return self.settings[max(0, self.combo.currentIndex())]

    @property
    def key(self) -> str:
        return self.setting.key

    def set_key(self, key: str) -> None:
        i = self.combo.findData(key)
        if i < 0:  # a key the graph's compare object names that the list lacks
            self.settings.append(Setting(key))
            self.combo.addItem(key, key)
            i = self.combo.count() - 1
        self.combo.setCurrentIndex(i)
        self._on_setting()

    def _on_setting(self, *_args) -> None:
        s = self.setting
        while self._choice_lay.count():
            item = self._choice_lay.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.boxes = []
        for c in s.choices:
            b = QCheckBox(value_text(c))
            b.setObjectName(f"choice_{value_text(c)}")
            b.setProperty("value", json.dumps(c))
            b.toggled.connect(lambda *_: self.edited.emit())
            self._choice_lay.addWidget(b)
            self.boxes.append(b)
        if s.choices:
            self._choice_lay.addStretch(1)
        self.values.setVisible(not s.choices)
        self.choices.setVisible(bool(s.choices))
        if not s.choices:
            now = "" if s.current is None else f" (now {value_text(s.current)})"
            self.values.setPlaceholderText(
                ("0.1, 0.01, 0.001" if s.key == "optimizer.lr" else "values, separated by "
                 "commas") + now)
        self.edited.emit()

    def set_values(self, values: list) -> list:
        """Show ``values`` (ticked, or typed); returns those that are not among the
        setting's choices (not shown)."""
        if self.setting.choices:
            wanted = {json.dumps(v) for v in values}
            for b in self.boxes:
                b.setChecked(b.property("value") in wanted)
            known = {b.property("value") for b in self.boxes}
            return [v for v in values if json.dumps(v) not in known]
        self.values.setText(", ".join(value_text(v) for v in values))
        return []

    def chosen(self) -> tuple[str, list]:
        """(key, values); ParamError naming the setting when there are none or they are
        bad."""
        s = self.setting
        if s.choices:
            values = [json.loads(b.property("value")) for b in self.boxes if b.isChecked()]
            if not values:
                raise ParamError("tick one or more values", param=s.key)
            return s.key, values
        return s.key, parse_values(s.key, self.values.text())


COLUMNS = ("Variant", "State", "Steps", "Loss")


class CompareDialog(QDialog):
    """Train > Compare...: choose settings and values, start, watch, stop.

    Modeless; closing it while variants train asks whether to stop them (``confirm_stop``,
    a callable taking the question and returning True to stop, replaces the question box in
    tests). The controller outlives a closed dialog: opening it again shows the last
    comparison."""

    def __init__(self, controller: CompareController, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("compareDialog")
        self.setWindowTitle("Compare")
        self.setModal(False)
        self.controller = controller
        self.confirm_stop: Callable[[str], bool] | None = None
        self.rows: list[SettingRow] = []
        self.settings: list[Setting] = []
        self._loaded_for: tuple | None = None  # the graph's settings the rows were made for

        self.finding = QLabel()
        self.finding.setObjectName("compareFinding")
        self.finding.setWordWrap(True)
        self.finding.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.finding.setFrameShape(QLabel.Shape.StyledPanel)
        self.finding.setMargin(6)
        self.finding.setVisible(False)

        intro = QLabel("Train a variant for each value, from the same initial weights and "
                       "seed, and overlay their curves in the training view.")
        intro.setWordWrap(True)
        self.rows_box = QVBoxLayout()
        self.rows_box.setSpacing(4)
        self.add_button = QPushButton("Add setting")
        self.add_button.setObjectName("compareAddSetting")
        self.add_button.setToolTip("Compare every combination of two or more settings")
        self.add_button.clicked.connect(lambda: self.add_row())
        self.all_optimizers = QPushButton("All optimizers")
        self.all_optimizers.setObjectName("compareAllOptimizers")
        self.all_optimizers.setToolTip("sgd, momentum, nesterov, adagrad, rmsprop and adam")
        self.all_optimizers.clicked.connect(self.fill_all_optimizers)
        row_buttons = QHBoxLayout()
        row_buttons.addWidget(self.add_button)
        row_buttons.addWidget(self.all_optimizers)
        row_buttons.addStretch(1)

        self.length = QSpinBox()
        self.length.setObjectName("compareLength")
        self.length.setRange(1, 10_000_000)
        self.length.setGroupSeparatorShown(True)
        self.unit = QComboBox()
        self.unit.setObjectName("compareUnit")
        self.unit.addItems(["steps", "epochs"])
        self.jobs = QSpinBox()
        self.jobs.setObjectName("compareJobs")
        self.jobs.setRange(1, 256)
        self.jobs.setValue(os.cpu_count() or 1)
        self.jobs.setToolTip("Variants that train at the same time (each in its own process)")
        self.count = QLabel()
        self.count.setObjectName("compareCount")
        length_row = QHBoxLayout()
        length_row.addWidget(QLabel("Train each for"))
        length_row.addWidget(self.length)
        length_row.addWidget(self.unit)
        length_row.addSpacing(16)
        length_row.addWidget(QLabel("Parallel jobs"))
        length_row.addWidget(self.jobs)
        length_row.addStretch(1)
        length_row.addWidget(self.count)

        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("compareStart")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop all")
        self.stop_button.setObjectName("compareStop")
        self.stop_button.clicked.connect(controller.stop_all)
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        buttons.addWidget(self.close_button)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("compareTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(True)
        h = self.table.horizontalHeader()
        h.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        h.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        h.setSectionResizeMode(3, QHeaderView.ResizeMode.ResizeToContents)

        self.message = QLabel()
        self.message.setObjectName("compareMessage")
        self.message.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addWidget(self.finding)
        lay.addWidget(intro)
        lay.addLayout(self.rows_box)
        lay.addLayout(row_buttons)
        lay.addLayout(length_row)
        lay.addLayout(buttons)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.message)
        self.resize(720, 460)

        controller.changed.connect(self._show_variants)
        controller.state_changed.connect(self._on_state)
        controller.finished.connect(self._on_finished)
        self.reload()
        self._on_state(controller.state)
        self._show_variants()

    # ---- the settings ----------------------------------------------------------------------
    def reload(self) -> None:
        """Fill the settings from the open graph (and its ``compare`` object, if any)."""
        if self.controller.running:
            return  # the running comparison's settings stay shown
        graph = self.controller.document.graph
        settings = compare_settings(graph)
        spec = graph.extra.get("compare")
        signature = ([s.key for s in settings], json.dumps(spec, sort_keys=True, default=str))
        if self.rows and signature == self._loaded_for:
            return  # the same graph's settings: what the user chose stays
        self._loaded_for = signature
        self.settings = settings
        self.message.setText("")
        for r in list(self.rows):
            self._drop_row(r)
        training = graph.training or {}
        steps = training.get("steps")
        if isinstance(steps, int) and steps > 0:
            self.length.setValue(steps)
            self.unit.setCurrentText("steps")
        else:
            epochs = training.get("epochs", 10)
            self.length.setValue(epochs if isinstance(epochs, int) and epochs > 0 else 10)
            self.unit.setCurrentText("epochs")
        if spec is not None and self._prefill(spec):
            return
        row = self.add_row()
        row.set_key("optimizer.lr")

    def _prefill(self, spec: Any) -> bool:
        """The graph's ``compare`` object into the dialog; False (with a message) when it
        is not one the dialog can read."""
        sets = spec.get("set") if isinstance(spec, dict) else None
        if not isinstance(sets, dict) or not sets or not all(
                isinstance(k, str) and isinstance(v, list) and v for k, v in sets.items()):
            self.message.setText("The graph's \"compare\" object is not one Compare can read "
                                 "(it needs \"set\": {setting: [values]}).")
            return False
        left_out = []
        for key, values in sets.items():
            row = self.add_row()
            row.set_key(key)
            left_out += [f"{key}={value_text(v)}" for v in row.set_values(values)]
        if left_out:
            self.message.setText("The graph's \"compare\" object names values that are not "
                                 f"choices of their setting: {', '.join(left_out)}.")
        for unit in ("steps", "epochs"):
            n = spec.get(unit)
            if isinstance(n, int) and not isinstance(n, bool) and n > 0:
                self.length.setValue(n)
                self.unit.setCurrentText(unit)
                break
        jobs = spec.get("jobs")
        if isinstance(jobs, int) and not isinstance(jobs, bool) and jobs > 0:
            self.jobs.setValue(jobs)
        finding = spec.get("finding")
        if isinstance(finding, str) and finding.strip():
            self.finding.setText(finding.strip())
            self.finding.setVisible(True)
        else:
            self.finding.setVisible(False)
        return True

    def add_row(self) -> SettingRow:
        row = SettingRow(self.settings, f"_{len(self.rows)}" if self.rows else "")
        row.removed.connect(self._drop_row)
        row.edited.connect(self._update_count)
        self.rows.append(row)
        self.rows_box.addWidget(row)
        self._update_rows()
        return row

    def _drop_row(self, row: SettingRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
        self.rows_box.removeWidget(row)
        row.setParent(None)
        row.deleteLater()
        self._update_rows()

    def _update_rows(self) -> None:
        for r in self.rows:
            r.remove.setVisible(len(self.rows) > 1)
        self._update_count()

    def fill_all_optimizers(self) -> None:
        """Compare the six optimizers: the optimizer row (made from the first when there is
        none) gets sgd, momentum, nesterov, adagrad, rmsprop and adam ticked."""
        row = next((r for r in self.rows if r.key == "optimizer.type"), None)
        if row is None:
            row = self.rows[0] if self.rows else self.add_row()
            row.set_key("optimizer.type")
        try:
            row.set_values(all_optimizers())
        except NeuroCanvasError as e:
            self.message.setText(str(e))

    def sets(self) -> list[tuple[str, list]]:
        """The chosen settings and values; ParamError naming the first bad one."""
        out = []
        seen = set()
        for r in self.rows:
            key, values = r.chosen()
            if key in seen:
                raise ParamError("chosen twice; give all its values in one row", param=key)
            seen.add(key)
            out.append((key, values))
        return out

    def _update_count(self) -> None:
        try:
            n = math.prod(len(v) for _, v in self.sets()) if self.rows else 0
            self.count.setText(f"{n} variant{'s' if n != 1 else ''}")
        except NeuroCanvasError:
            self.count.setText("")
        self._on_state(self.controller.state)

    # ---- running -------------------------------------------------------------------------------
    def start(self) -> bool:
        """Start the comparison chosen; False, with why in ``compareMessage``, when it
        cannot."""
        try:
            sets = self.sets()
            n = self.length.value()
            by_steps = self.unit.currentText() == "steps"
            self.controller.start(sets, steps=n if by_steps else None,
                                  epochs=None if by_steps else n, jobs=self.jobs.value())
        except NeuroCanvasError as e:
            self.message.setText(str(e))
            return False
        self.message.setText(f"Comparing {len(self.controller.variants)} variants, "
                             f"{self.controller.jobs} at a time.")
        return True

    def _on_state(self, state: str) -> None:
        idle = state == IDLE
        self.start_button.setEnabled(idle)
        self.stop_button.setEnabled(state == COMPARING)
        for w in (self.add_button, self.all_optimizers, self.length, self.unit, self.jobs,
                  *self.rows):
            w.setEnabled(idle)

    def _on_finished(self) -> None:
        c = self.controller
        by_state: dict[str, int] = {}
        for v in c.variants:
            by_state[v.state] = by_state.get(v.state, 0) + 1
        parts = [f"{n} {s}" for s, n in by_state.items()]
        where = " They are in the run history." if c.run_ids() else ""
        self.message.setText(f"Done: {', '.join(parts)}.{where}")

    def _show_variants(self) -> None:
        variants = self.controller.variants
        t = self.table
        if t.rowCount() != len(variants):
            t.setRowCount(len(variants))
        for r, v in enumerate(variants):
            loss = "" if v.loss is None else (f"{v.loss:.4g}" if math.isfinite(v.loss)
                                              else str(v.loss))
            steps = f"{v.steps:,}" + (f" / {v.total_steps:,}" if v.total_steps else "")
            cells = (v.label, v.state_text, steps, loss)
            for c, text in enumerate(cells):
                item = t.item(r, c)
                if item is None:
                    item = QTableWidgetItem()
                    t.setItem(r, c, item)
                if item.text() != text:
                    item.setText(text)
                    item.setToolTip(text)
                if c == 0:
                    item.setData(Qt.ItemDataRole.DecorationRole, v.color)
                    item.setData(Qt.ItemDataRole.UserRole, v.key)
                if c in (2, 3):
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight
                                          | Qt.AlignmentFlag.AlignVCenter)
        t.resizeRowsToContents()

    def state_of(self, label: str) -> str:
        """The state text of the variant named ``label`` (tests)."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == label:
                return self.table.item(r, 1).text()
        raise KeyError(label)

    # ---- closing -------------------------------------------------------------------------------
    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.reload()
        self._show_variants()

    def closeEvent(self, event: QCloseEvent) -> None:
        c = self.controller
        if c.state == COMPARING:
            left = sum(v.state not in ENDED for v in c.variants)
            question = (f"{left} variant{'s' if left != 1 else ''} of the comparison "
                        f"{'are' if left != 1 else 'is'} still training or queued. Stop them?")
            if self.confirm_stop is not None:
                stop = self.confirm_stop(question)
            else:
                stop = QMessageBox.question(
                    self, "Stop the comparison?", question,
                    QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                    QMessageBox.StandardButton.Yes) == QMessageBox.StandardButton.Yes
            if not stop:
                event.ignore()
                return
            c.stop_all()
        event.accept()

    def reject(self) -> None:  # Escape goes through closeEvent's question too
        self.close()


__all__ = ["CompareController", "CompareDialog", "Setting", "Variant", "compare_settings",
           "all_optimizers", "parse_values", "COMMON_KEYS", "QUEUED", "RUNNING", "FINISHED",
           "FAILED", "STOPPED"]
