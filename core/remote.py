"""Training in a child process: the client the GUI drives, and the wire format.

Why a process and not a thread: the GUI paints its plots on the UI thread, and Python runs
one thread at a time (the GIL). A training loop on a thread of the GUI's process lost a
quarter of its speed to the painting, and the painting stalled behind the loop. A child
process (``python -m core.train_worker``) trains exactly as ``main.py train`` does, with a
core to itself, and streams what happens to the GUI.

Wire format, both ways: frames. A frame is one line of compact JSON (an object) followed,
when the object has ``"payload": n``, by ``n`` raw bytes. Arrays travel as ``.npz`` archives
read with ``allow_pickle=False``; nothing is ever pickled.

parent -> child (stdin)
    ``{"cmd": "open", "graph": <graph file text>, "overrides": {...}, "base_dir": str,
    "run": bool, "note": str | null, "run_dir": str | null, "label": str | null,
    "sweep": {...} | null, "max_memory": int | null, "tensorboard": bool}`` first, with the
    initial weights as an optional payload (``run_dir``: a run store to record the run
    into, docs/format.md section 9; ``max_memory``: the budget in bytes, null for the
    child's default; ``tensorboard``: the run's TensorBoard events in its folder too); then
    ``pause``, ``resume``, ``stop``, ``quit`` and the requests ``{"cmd": "snapshot" |
    "report" | "weights", "id": n, ...}`` and ``{"cmd": "probe", "id": n, "name": NAME,
    "args": {...}}`` (``core.probe.wire``; answered ``{"reply": n, "name": NAME, "result":
    JSON}`` with the result's arrays as the payload).
child -> parent (stdout)
    ``{"ev": "ready", ...}`` once the dataset is loaded and the network built;
    ``{"ev": "steps", "rows": [[epoch, step, time, loss, global norm, {layer: norm}], ...]}``
    about 20 times a second (the state-gradient norms of the last row ride along; with
    several losses each row ends with their values, named once in ``"loss_names"``);
    ``{"ev": "epoch", ...}`` and ``{"ev": "done", "reason", "steps", "error"}`` as they
    happen; ``{"ev": "note", "text": str}`` when the child waits on something the user
    should know of (the CPU kernels compiling before the first step);
    ``{"reply": n, ...}`` for each request, an ``"error"`` or the result.

Each frame's object is the ``to_json`` of its event (``StepEvent.batch_to_json`` for
steps) plus ``"ev"``, read back by the class's ``from_json``: the schema of an event is
written once, in ``core.training.events`` (``ReadyEvent`` here). Errors cross as
``error_to_json`` objects.

Limits: a JSON line is at most ``MAX_LINE`` bytes (1 MiB) and a payload at most
``MAX_PAYLOAD`` bytes (1 GiB; only the initial weights travel to the child). The child answers
a frame it cannot take (not JSON, over a limit, a ``"payload"`` that is no byte count, an
unknown command, a field of the wrong type) with ``{"ev": "error", "error": {...}}``, or with
``{"reply": n, "error": {...}}`` when it carries a request's integer ``"id"``, and reads on:
an oversized line or payload is skipped in chunks, never held whole.

Closing stdin ends the child, so a GUI that dies leaves no training process behind; on Linux
the child also asks for SIGTERM when its parent dies (``PR_SET_PDEATHSIG``), and everywhere it
watches ``os.getppid()``, so that one stuck loading its data ends too.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import threading
import traceback
import weakref
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from core import errors
from core.errors import InvalidGraphError, NeuroCanvasError, NonFiniteError, WeightsError
from core.npz import npz_bytes, read_npz_bytes
from core.training.events import (
    ClassificationReport,
    DoneEvent,
    EpochEvent,
    Snapshot,
    StepEvent,
)

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent.parent


class RemoteError(RuntimeError):
    """A bug in the training process, or the process ended without saying why; not
    something the user caused. ``remote_traceback`` holds the child's traceback, if any."""

    def __init__(self, message: str, remote_traceback: str | None = None):
        super().__init__(message)
        self.remote_traceback = remote_traceback


# ---- frames --------------------------------------------------------------------------------
MAX_LINE = 1 << 20  # bytes in one JSON line, its end of line included
MAX_PAYLOAD = 1 << 30  # bytes in one payload the child takes
PARENT_PID_ENV = "NEUROCANVAS_PARENT_PID"  # the child's parent, as the parent saw itself
_CHUNK = 1 << 16


class FrameError(ValueError):
    """A frame that could not be read, skipped whole: the stream is still in step.
    ``header`` is its object when that much was read."""

    def __init__(self, message: str, header: dict | None = None):
        super().__init__(message)
        self.header = header


def _skip(stream: BinaryIO, n: int | None) -> bool:
    """Read past ``n`` bytes (None: the rest of the line) in chunks; False at the end."""
    while n is None or n > 0:
        chunk = stream.readline(_CHUNK) if n is None else stream.read(min(n, _CHUNK))
        if not chunk:
            return False
        if n is None:
            if chunk.endswith(b"\n"):
                return True
        else:
            n -= len(chunk)
    return True


def encode_frame(header: dict, payload: bytes = b"") -> bytes:
    if payload:
        header = {**header, "payload": len(payload)}
    return json.dumps(header, separators=(",", ":")).encode("utf-8") + b"\n" + payload


def read_frame(stream: BinaryIO, max_line: int | None = None,
               max_payload: int | None = None) -> tuple[dict, bytes] | None:
    """The next frame, or None at the end of the stream (or a truncated frame).

    A frame that cannot be taken raises ``FrameError`` once it is skipped: a line that is
    not a JSON object, a ``"payload"`` that is no byte count, a line over ``max_line`` bytes
    or a payload over ``max_payload`` bytes (None: no limit)."""
    line = stream.readline(max_line if max_line else -1)
    if max_line and len(line) >= max_line and not line.endswith(b"\n"):
        if not _skip(stream, None):
            return None
        raise FrameError(f"a line over the limit of {max_line} bytes was skipped")
    if not line.endswith(b"\n"):
        return None
    try:
        header = json.loads(line)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise FrameError(f"not a JSON line: {e}") from None
    if not isinstance(header, dict):
        raise FrameError(f"expected a JSON object, found {type(header).__name__}")
    n = header.get("payload", 0)
    if type(n) is not int or n < 0:
        raise FrameError(f"expected \"payload\" to be a byte count, found {n!r}", header)
    if max_payload is not None and n > max_payload:
        if not _skip(stream, n):
            return None
        raise FrameError(f"a payload of {n} bytes is over the limit of {max_payload} bytes "
                         "and was skipped", header)
    payload = stream.read(n) if n else b""
    if len(payload) != n:
        return None
    return header, payload


# ---- errors --------------------------------------------------------------------------------
def error_to_json(e: BaseException | None) -> dict | None:
    if e is None:
        return None
    if isinstance(e, NeuroCanvasError):
        d = {"type": type(e).__name__, "message": e.message, "node": e.node, "port": e.port,
             "param": e.param, "file": e.file, "nodes": list(e.nodes)}
        if isinstance(e, InvalidGraphError):  # its message is already the rendered first line
            d.update(type="NeuroCanvasError", node=None, port=None, param=None, file=None)
        if isinstance(e, NonFiniteError):
            d["phase"] = e.phase
        return d
    return {"type": None, "message": f"{type(e).__name__}: {e}",
            "traceback": "".join(traceback.format_exception(e))}


def error_from_json(d: dict | None) -> Exception | None:
    if d is None:
        return None
    cls = getattr(errors, d.get("type") or "", None)
    if not (isinstance(cls, type) and issubclass(cls, NeuroCanvasError)):
        return RemoteError(d.get("message", "unknown error"), d.get("traceback"))
    if cls is NonFiniteError:
        return NonFiniteError(d["message"], node=d.get("node"), phase=d.get("phase", "forward"))
    kw = {k: d.get(k) for k in ("node", "port", "param", "file")}
    try:
        return cls(d["message"], nodes=tuple(d.get("nodes") or ()), **kw)
    except TypeError:  # a subclass with its own constructor
        return NeuroCanvasError(d["message"], nodes=tuple(d.get("nodes") or ()), **kw)


BLAS_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def blas_threads(env: Mapping[str, str], jobs: int = 1, reserve: int = 1) -> dict[str, str]:
    """Thread counts for a training process's BLAS: the machine's cores less ``reserve``
    (one left to the GUI that paints while it trains: BLAS threads wait for each other
    spinning, and one whose core the GUI takes holds up the rest; docs/live-training.md has
    the figures), shared among ``jobs`` such processes. Variables the user set are kept."""
    if any(v in env for v in BLAS_THREAD_VARS):
        return {}
    n = str(max(1, ((os.cpu_count() or 1) - reserve) // max(1, jobs)))
    return dict.fromkeys(BLAS_THREAD_VARS, n)


@contextlib.contextmanager
def blas_environ(jobs: int, reserve: int = 0) -> Iterator[None]:
    """``os.environ`` with ``blas_threads(os.environ, jobs, reserve)`` while inside, for
    processes started there (a pool's workers take the environment when they start)."""
    added = blas_threads(os.environ, jobs, reserve)
    os.environ.update(added)
    try:
        yield
    finally:
        for var in added:
            os.environ.pop(var, None)


@dataclass
class ReadyEvent:
    """The child has loaded the dataset and built the network."""
    device: str  # "cpu" or "gpu"
    device_note: str | None
    total_steps: int
    steps_per_epoch: int
    classifier: bool
    note: str | None  # about the initial weights (kept, partly fresh after an edit...)
    pid: int
    losses: list[str] = field(default_factory=list)  # the loss nodes, in graph order
    classifiers: list[str] = field(default_factory=list)  # those that report accuracy
    run_id: str | None = None  # the run being recorded (``run_dir`` given), else None

    def to_json(self) -> dict:
        """The ``ready`` frame's object (less its ``"ev"``)."""
        return {"device": self.device, "device_note": self.device_note,
                "total_steps": self.total_steps, "steps_per_epoch": self.steps_per_epoch,
                "classifier": self.classifier, "note": self.note, "pid": self.pid,
                "losses": self.losses, "classifiers": self.classifiers,
                "run_id": self.run_id}

    @classmethod
    def from_json(cls, d: dict) -> ReadyEvent:
        """The event of a ``to_json`` object."""
        return cls(d["device"], d.get("device_note"), d["total_steps"], d["steps_per_epoch"],
                   d["classifier"], d.get("note"), d["pid"], list(d.get("losses") or []),
                   list(d.get("classifiers") or []), d.get("run_id"))


@dataclass
class NoteEvent:
    """A line from the child about what it is doing while no step comes (for now only
    ``kernels.jit.COMPILING``: the first step waits for the CPU kernels to compile)."""
    text: str

    def to_json(self) -> dict:
        """The ``note`` frame's object (less its ``"ev"``)."""
        return {"text": self.text}

    @classmethod
    def from_json(cls, d: dict) -> NoteEvent:
        return cls(str(d.get("text") or ""))


# ---- the client ----------------------------------------------------------------------------
_live: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for rt in list(_live):
        rt.close(timeout=1.0)


class RemoteTrainer:
    """A ``core.training.Trainer`` in a child process.

    graph: the graph to train (its text is sent; unsaved edits included). overrides: training
    settings that win over the graph's (as ``parse_training`` takes them). base_dir: where a
    dataset's relative paths start. init_weights: docs/format.md section 4 arrays to start from;
    those whose key and shape no longer fit the graph start fresh. run: start training as soon as
    the network is built (False: hold the weights for evaluation and snapshots only).
    max_memory: the memory budget in bytes (``core.memory``; None: the child's default).
    jobs: how many such processes train at once (a comparison), sharing the cores' BLAS
    threads (``blas_threads``). tensorboard: with ``run_dir``, the run's TensorBoard event
    files go to the run folder's ``tensorboard/`` too (``core.tensorboard``).
    run_dir: a run store (docs/format.md section 9) the child records the run into, with
    ``label`` (None: the automatic one) and ``sweep`` (``{"id", "values"}`` or None); the
    ``ReadyEvent`` then carries the run's id, and a build that fails is recorded as a failed
    run. Nothing is recorded without ``run_dir`` or with ``run=False``.

    on_event is called on a reader thread with each ``ReadyEvent``, ``StepEvent``,
    ``EpochEvent`` and ``DoneEvent``, in order. A build that fails (a missing dataset...)
    ends in a ``DoneEvent`` with reason "error" and the typed error; so does a child that
    dies, with a ``RemoteError``. On Linux the child ends when the thread that created this
    object ends (``PR_SET_PDEATHSIG`` watches the thread): create it on one that outlives it,
    such as the UI thread. Requests (``snapshot``, ``classification_report``,
    ``state_dict``) return Futures, served between two steps.
    """

    def __init__(self, graph, *, overrides: dict | None = None, base_dir: str | Path = ".",
                 init_weights: dict[str, np.ndarray] | None = None, note: str | None = None,
                 run: bool = True, on_event: Callable[[Any], None] | None = None,
                 run_dir: str | os.PathLike | None = None, label: str | None = None,
                 sweep: dict | None = None, max_memory: int | None = None, jobs: int = 1,
                 tensorboard: bool = False):
        from core.fileformat import dumps
        self.on_event = on_event
        self.info: ReadyEvent | None = None
        self.ready = threading.Event()
        self.done: DoneEvent | None = None
        self._done = threading.Event()
        self.step = 0  # optimizer steps done, as last reported
        self._futures: dict[int, tuple[str, Future]] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._closed = False  # no more commands: closed, or the child is gone
        self._closing = False  # close() was called
        # frames for the child, written by a thread of their own: the caller (the UI
        # thread) never waits on the pipe, not even for the initial weights
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env.update(blas_threads(env, jobs))
        env[PARENT_PID_ENV] = str(os.getpid())
        self._proc = subprocess.Popen([sys.executable, "-m", "core.train_worker"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        _live.add(self)
        payload = npz_bytes(init_weights) if init_weights else b""
        self._send({"cmd": "open", "graph": dumps(graph), "overrides": overrides or {},
                    "base_dir": str(base_dir), "run": run, "note": note,
                    "run_dir": os.fspath(run_dir) if run_dir is not None else None,
                    "label": label, "sweep": sweep, "max_memory": max_memory,
                    "tensorboard": bool(tensorboard)}, payload)
        self._writer = threading.Thread(target=self._write_loop, name="neurocanvas-remote-w",
                                        daemon=True)
        self._reader = threading.Thread(target=self._read_loop, name="neurocanvas-remote",
                                        daemon=True)
        self._writer.start()
        self._reader.start()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    # ---- commands ----------------------------------------------------------------------
    def _send(self, header: dict, payload: bytes = b"") -> bool:
        """Queue a frame for the child; False when it can take no more."""
        with self._lock:
            if self._closed:
                return False
            self._outbox.put(encode_frame(header, payload))
            return True

    def _write_loop(self) -> None:
        stdin = self._proc.stdin
        try:
            while (data := self._outbox.get()) is not None:
                stdin.write(data)
                stdin.flush()
        except (OSError, ValueError):  # the child is gone; the reader reports it
            with self._lock:
                self._closed = True
        try:
            stdin.close()  # the end of the commands: the child finishes and exits
        except OSError:
            pass

    def pause(self) -> None:
        self._send({"cmd": "pause"})

    def resume(self) -> None:
        self._send({"cmd": "resume"})

    def stop(self) -> None:
        self._send({"cmd": "stop"})

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the run to end (the process stays, holding the weights)."""
        return self._done.wait(timeout)

    def close(self, timeout: float = 2.0) -> None:
        """End the child process (stopping a run) and wait for it."""
        with self._lock:
            self._closing = True
            if not self._closed:
                self._outbox.put(encode_frame({"cmd": "quit"}))
            self._closed = True
            self._outbox.put(None)
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._writer.join(timeout)
        if threading.current_thread() is not self._reader:
            self._reader.join(timeout)
        _live.discard(self)

    # ---- requests ------------------------------------------------------------------------
    def _request(self, cmd: str, **kw) -> Future:
        fut: Future = Future()
        with self._lock:  # registered and sent together, or refused: never both or neither
            if self._closed:
                fut.set_exception(RemoteError("the training process has ended"))
                return fut
            rid = self._next_id
            self._next_id += 1
            self._futures[rid] = (cmd, fut)
            self._outbox.put(encode_frame({"cmd": cmd, "id": rid, **kw}))
        return fut

    def snapshot(self, nodes) -> Future:
        """Future of a ``Snapshot`` of ``nodes`` (see ``Trainer.snapshot``)."""
        return self._request("snapshot", nodes=list(nodes))

    def classification_report(self) -> Future:
        """Future of the validation split's ``ClassificationReport`` (or None)."""
        return self._request("report")

    def state_dict(self) -> Future:
        """Future of the current weights (docs/format.md section 4 keys, host arrays)."""
        return self._request("weights")

    def probe(self, name: str, **args) -> Future:
        """Future of the probe ``name``'s result (``core.probe.wire.PROBES``: "plane",
        "embedding", "gradcheck", "profile", ...), run between two steps with ``args``."""
        from core.probe.wire import check_args
        why = check_args(name, args)
        if why is not None:  # refused here, not after a round trip
            fut: Future = Future()
            fut.set_exception(NeuroCanvasError(why))
            return fut
        return self._request("probe", name=name, args=args)

    # ---- the reader thread -------------------------------------------------------------------
    def _emit(self, ev) -> None:
        if self.on_event is not None:
            self.on_event(ev)

    def _read_loop(self) -> None:
        try:
            while True:
                frame = read_frame(self._proc.stdout)
                if frame is None:
                    break
                self._handle(*frame)
        except Exception:  # noqa: BLE001 - a garbled stream ends the run, reported below
            log.exception("reading from the training process failed")
        try:
            rc = self._proc.wait(5.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            rc = self._proc.wait()
        if self.done is None:
            if self._closing:  # closed before its run ended: the run was stopped
                self._finish(DoneEvent("stopped", self.step))
            else:
                self._finish(DoneEvent("error", self.step, RemoteError(
                    f"the training process ended unexpectedly (exit code {rc})")))
        with self._lock:
            self._closed = True
            self._outbox.put(None)  # the writer ends too
            pending, self._futures = self._futures, {}
        for _, fut in pending.values():
            fut.set_exception(RemoteError("the training process has ended"))

    def _finish(self, done: DoneEvent) -> None:
        self.done = done
        self.step = done.steps
        self._emit(done)
        self._done.set()

    def _handle(self, h: dict, payload: bytes) -> None:
        if "reply" in h:
            with self._lock:
                kind, fut = self._futures.pop(h["reply"], (None, None))
            if fut is None:
                return
            if h.get("error") is not None:
                fut.set_exception(error_from_json(h["error"]))
            elif kind == "snapshot":
                arrays = read_npz_bytes(payload, WeightsError, "a snapshot") if payload else {}
                fut.set_result(Snapshot.from_arrays(h["step"], arrays))
            elif kind == "report":
                report = h.get("report")
                fut.set_result(ClassificationReport.from_json(report) if report else None)
            elif kind == "weights":
                fut.set_result(read_npz_bytes(payload, WeightsError, "weights")
                               if payload else {})
            elif kind == "probe":
                from core.probe.wire import PROBES
                arrays = read_npz_bytes(payload, WeightsError, "a probe") if payload else {}
                fut.set_result(PROBES[h["name"]].decode(h.get("result"), arrays))
            return
        ev = h.get("ev")
        if ev == "steps":
            evs = StepEvent.batch_from_json(h)
            if evs:
                self.step = evs[-1].step + 1
            for e in evs:
                self._emit(e)
        elif ev == "epoch":
            self._emit(EpochEvent.from_json(h))
        elif ev == "ready":
            self.info = ReadyEvent.from_json(h)
            self.ready.set()
            self._emit(self.info)
        elif ev == "note":
            self._emit(NoteEvent.from_json(h))
        elif ev == "done":
            self._finish(DoneEvent.from_json(h, error_from_json))
        elif ev == "error":  # a frame the child could not take: a bug here, not the user's
            log.warning("the training process refused a frame: %s",
                        (h.get("error") or {}).get("message"))
