"""Recording a run while it trains (docs/format.md section 9).

``RunRecorder`` makes the run folder, writes the graph as trained and ``run.json`` (status
"running") at once, then takes every event of the training: ``on_event`` only puts it on a
queue, and a thread of its own appends the metrics lines to ``metrics.jsonl`` and keeps the
figures of the summary. ``finish`` writes the final weights and the final ``run.json``.

A write that fails while training (a full disk) never stops the training: it is kept and
``finish`` raises it, as a RunError naming the file, once the rest is written.
"""
from __future__ import annotations

import copy
import json
import math
import queue
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import NeuroCanvasError, RunError
from core.graph import Graph
from core.runs.diff import run_label
from core.runs.store import (
    GRAPH_FILE,
    METRICS_FILE,
    RUN_FILE,
    WEIGHTS_FILE,
    Run,
    RunStore,
    _jsonable,
    _read_json,
    new_run_id,
    register_live,
    unregister_live,
    write_run_json,
)
from core.training.config import TRAINING_KEYS, TrainConfig
from core.training.events import DoneEvent, EpochEvent, StepEvent

FLUSH_S = 0.5  # metrics.jsonl is flushed at least this often while events come
ENDS = ("finished", "stopped", "failed")
_END = object()


def effective_settings(training: dict | None, overrides: dict | None) -> dict:
    """The training section with ``overrides`` applied: a training key (``"epochs"``) or a
    dotted one inside a training object (``"optimizer.lr"``); None values and keys that are
    no training setting (a node's ``"drop1.rate"``) change nothing."""
    t = copy.deepcopy(training or {})
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        head, dot, tail = key.partition(".")
        if head not in TRAINING_KEYS:
            continue
        if not dot:
            t[key] = copy.deepcopy(value)
            continue
        obj = t.get(head)
        if not isinstance(obj, dict):
            obj = {"type": "sgd", "lr": 0.01} if head == "optimizer" else {}
        obj = t[head] = dict(obj)
        *path, last = tail.split(".")
        for p in path:
            inner = obj.get(p)
            obj[p] = dict(inner) if isinstance(inner, dict) else {}
            obj = obj[p]
        obj[last] = copy.deepcopy(value)
    return t


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _finite(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return None


class RunRecorder:
    """Records one run into a store while it trains. on_event is cheap (a queue put); a
    background thread writes metrics.jsonl. Never raises out of on_event: a write error is
    kept and reported by finish() (RunError naming the file)."""

    def __init__(self, store: RunStore, graph: Graph, config: TrainConfig, *,
                 overrides: dict | None = None, label: str | None = None,
                 sweep: dict | None = None, device: str = "cpu"):
        self.store = store
        self.overrides = {k: copy.deepcopy(v) for k, v in (overrides or {}).items()
                          if v is not None}
        self.settings = effective_settings(graph.training, self.overrides)
        self.sweep = copy.deepcopy(sweep) if sweep else None
        if label is None or not one_line(label):
            label = run_label(self.settings, values=(self.sweep or {}).get("values"))
        self.label = one_line(label)
        self.seed = int(config.seed)
        self.device = device
        self.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self._lock = threading.RLock()  # the folder, the file and run.json
        self._finish_lock = threading.Lock()
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False  # finish() has begun: events are no longer taken
        self._run: Run | None = None
        self._error: RunError | None = None
        # the figures, kept by the writer thread (read by finish once it has ended)
        self._last_step: StepEvent | None = None
        self._last_epoch: EpochEvent | None = None
        self._epochs = 0
        self._best: dict[str, Any] = {"val_loss": None, "val_loss_epoch": None,
                                      "val_accuracy": None, "val_accuracy_epoch": None}
        self._t_start: float | None = None
        self._t_end: float | None = None

        try:
            store.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunError(f"cannot create the run folder: {e.strerror or e}",
                           file=str(store.root)) from None
        while True:
            self.id = new_run_id()
            self.path = store.root / self.id
            try:
                self.path.mkdir()
                break
            except FileExistsError:
                continue
            except OSError as e:
                raise RunError(f"cannot create the run folder: {e.strerror or e}",
                               file=str(self.path)) from None
        try:
            self._write_graph(graph)
            self._written_label = self.label
            write_run_json(self.path / RUN_FILE, self._json(self._summary("running", 0)))
            try:
                self._file = open(self.path / METRICS_FILE, "x", encoding="utf-8")  # noqa: SIM115
            except OSError as e:
                raise RunError(f"cannot write: {e.strerror or e}",
                               file=str(self.path / METRICS_FILE)) from None
        except BaseException:
            shutil.rmtree(self.path, ignore_errors=True)
            raise
        self._dirty = False
        self._last_flush = time.monotonic()
        register_live(self)
        self._thread = threading.Thread(target=self._write_loop, name="neurocanvas-run",
                                        daemon=True)
        self._thread.start()

    def _write_graph(self, graph: Graph) -> None:
        from core.fileformat import dumps
        from core.files import atomic_write
        g = graph.copy()
        g.training = copy.deepcopy(self.settings)
        p = self.path / GRAPH_FILE
        text = dumps(g)  # GraphFileError for what a graph file cannot hold
        try:
            atomic_write(p, text.encode("utf-8"))
        except OSError as e:
            raise RunError(f"cannot write: {e.strerror or e}", file=str(p)) from None

    # ---- while training ------------------------------------------------------------------
    def on_event(self, ev) -> None:
        """Take a ``StepEvent``, ``EpochEvent`` or ``DoneEvent``; any other is ignored."""
        if self._closed:
            return
        try:
            self._q.put((ev, time.monotonic()))
        except Exception:  # noqa: BLE001 - recording never stops the training
            pass

    def _write_loop(self) -> None:
        end = False
        while not end:
            try:
                batch = [self._q.get(timeout=FLUSH_S)]
            except queue.Empty:
                self._flush()
                continue
            while True:
                try:
                    batch.append(self._q.get_nowait())
                except queue.Empty:
                    break
            lines = []
            for item in batch:
                if item is _END:
                    end = True
                    continue
                try:
                    line = self._take(*item)
                except Exception as e:  # noqa: BLE001 - a bad event must not end the writer
                    self._fail(RunError(f"cannot record an event: {type(e).__name__}: {e}",
                                        file=str(self.path / METRICS_FILE)))
                    continue
                if line is not None:
                    lines.append(line)
            if lines:
                self._write("".join(lines))
            if end or time.monotonic() - self._last_flush >= FLUSH_S / 2:
                self._flush()

    def _take(self, ev, t: float) -> str | None:
        """Keep the figures of one event; its metrics line, if it has one."""
        if isinstance(ev, StepEvent):
            if self._t_start is None:
                self._t_start = t - ev.time
            self._last_step = ev
            return json.dumps(ev.to_json()) + "\n"
        if isinstance(ev, EpochEvent):
            self._epochs += 1
            self._last_epoch = ev
            b = self._best
            vl, va = _finite(ev.val_loss), _finite(ev.val_accuracy)
            if vl is not None and (b["val_loss"] is None or vl < b["val_loss"]):
                b["val_loss"], b["val_loss_epoch"] = vl, ev.epoch
            if va is not None and (b["val_accuracy"] is None or va > b["val_accuracy"]):
                b["val_accuracy"], b["val_accuracy_epoch"] = va, ev.epoch
            return json.dumps(ev.to_json()) + "\n"
        if isinstance(ev, DoneEvent):
            self._t_end = t
        return None

    def _fail(self, error: RunError) -> None:
        if self._error is None:
            self._error = error

    def _write(self, text: str) -> None:
        with self._lock:
            if self._file is None:
                return
            try:
                self._file.write(text)
                self._dirty = True
            except (OSError, ValueError) as e:
                self._broken(e)

    def _flush(self) -> None:
        with self._lock:
            self._last_flush = time.monotonic()
            if self._file is None or not self._dirty:
                return
            try:
                self._file.flush()
                self._dirty = False
            except (OSError, ValueError) as e:
                self._broken(e)

    def _broken(self, e: Exception) -> None:
        """A write failed: say so at finish, write no more metrics."""
        self._fail(RunError(f"cannot write: {getattr(e, 'strerror', None) or e}",
                            file=str(self.path / METRICS_FILE)))
        f, self._file = self._file, None
        try:
            f.close()
        except (OSError, ValueError):
            pass

    # ---- the store's calls (under the lock: never beside a write) ------------------------
    def set_label(self, label: str) -> None:
        with self._lock:
            self.label = one_line(label)
            p = self.path / RUN_FILE
            d = _read_json(p)
            d["label"] = self.label
            write_run_json(p, d)
            self._written_label = self.label

    def set_id(self, run_id: str) -> None:
        with self._lock:
            self.id = run_id
            p = self.path / RUN_FILE
            d = _read_json(p)
            d["id"] = run_id
            write_run_json(p, d)

    def relocate(self, dest: Path) -> None:
        """Move the run folder to ``dest`` and go on writing there."""
        with self._lock:
            f = self._file
            if f is not None:
                f.flush()
                f.close()
            unregister_live(self)
            try:
                shutil.move(str(self.path), str(dest))
                self.path = dest
            finally:
                if self._run is None:
                    register_live(self)
                if f is not None:
                    try:
                        self._file = open(self.path / METRICS_FILE, "a",  # noqa: SIM115
                                          encoding="utf-8")
                    except OSError as e:
                        self._file = None
                        self._fail(RunError(f"cannot write: {e.strerror or e}",
                                            file=str(self.path / METRICS_FILE)))
            if self._run is not None:
                self._run.path = dest

    # ---- the end -------------------------------------------------------------------------
    def _summary(self, status: str, steps: int, error: str | None = None,
                 error_node: str | None = None, device: str | None = None) -> dict:
        last, ep = self._last_step, self._last_epoch
        t_end = self._t_end if self._t_end is not None else time.monotonic()
        time_s = round(max(t_end - self._t_start, 0.0), 3) if self._t_start is not None else 0.0
        return _jsonable({
            "status": status, "steps": int(steps), "epochs": self._epochs, "time_s": time_s,
            "device": device or self.device,
            "final": {"loss": _finite(last.loss) if last else None,
                      "val_loss": _finite(ep.val_loss) if ep else None,
                      "val_accuracy": _finite(ep.val_accuracy) if ep else None,
                      "train_loss": _finite(ep.train_loss) if ep else None,
                      "train_accuracy": _finite(ep.train_accuracy) if ep else None},
            "best": dict(self._best),
            "error": one_line(error) if error else None,
            "error_node": error_node})

    def _json(self, summary: dict) -> dict:
        return {"format": "neurocanvas.run", "version": 1, "id": self.id, "label": self.label,
                "created": self.created, "seed": self.seed, "settings": self.settings,
                "overrides": self.overrides, "sweep": self.sweep, "summary": summary}

    def finish(self, status: str, *, steps: int, weights: dict | None = None,
               error: str | None = None, error_node: str | None = None,
               device: str | None = None) -> Run:
        """End the run: wait for the metrics to be written, write ``weights`` (when given)
        to weights.npz and the final run.json with ``status`` ("finished", "stopped" or
        "failed"), ``error`` (one line) and ``error_node``. Returns the run. A write that
        failed, now or while training, raises RunError naming the file once everything
        else is written. A second call returns the same run."""
        if status not in ENDS:
            raise ValueError(f"status must be one of {', '.join(ENDS)}, not {status!r}")
        with self._finish_lock:
            if self._run is not None:
                return self._run
            self._closed = True
            self._q.put(_END)
            self._thread.join()
            with self._lock:
                try:
                    return self._end(status, steps, weights, error, error_node, device)
                finally:
                    unregister_live(self)

    def _end(self, status, steps, weights, error, error_node, device) -> Run:
        if self._file is not None:
            try:
                self._file.close()
            except OSError as e:
                self._broken(e)
            self._file = None
        if weights:
            from core.weights import save_weights
            p = self.path / WEIGHTS_FILE
            try:
                save_weights(p, {k: np.asarray(v) for k, v in weights.items()})
            except OSError as e:
                self._fail(RunError(f"cannot write: {e.strerror or e}", file=str(p)))
        try:  # renamed by another process meanwhile: its label stands
            on_disk = _read_json(self.path / RUN_FILE).get("label")
            if isinstance(on_disk, str) and on_disk != self._written_label:
                self.label = on_disk
        except NeuroCanvasError:
            pass
        summary = self._summary(status, steps, error, error_node, device)
        data = self._json(summary)
        self._run = Run(path=self.path, id=self.id, label=self.label, created=self.created,
                        seed=self.seed, settings=copy.deepcopy(self.settings),
                        overrides=copy.deepcopy(self.overrides),
                        sweep=copy.deepcopy(self.sweep), summary=summary)
        write_run_json(self.path / RUN_FILE, data)
        if self._error is not None:
            raise self._error
        return self._run
