"""The training process the GUI starts: ``python -m core.train_worker``.

It reads an ``open`` frame on stdin (the graph, settings, initial weights), builds a
``core.training.Trainer`` and trains it on a thread of its own, as ``main.py train`` does,
while this process's main thread answers commands. Steps are sent in batches about 20 times
a second; the per-step cost is one append under a lock. See ``core.remote`` for the wire
format. It never imports Qt.

A frame it cannot take is answered with an error frame and skipped (see ``core.remote``).
A request that comes while the network is still being built waits, without holding up the
commands after it, and is served (or refused, when the build failed) once the build ends.

With ``"run_dir"`` in the ``open`` frame it records the run into that run store
(``core.runs``, docs/format.md section 9): a build that fails is recorded as a failed run,
and the end of training writes the final weights and summary before the ``done`` frame.
It ends when its parent does, even while loading data: ``PR_SET_PDEATHSIG`` on Linux, and
a thread watching ``os.getppid()`` everywhere. It leaves with ``os._exit`` once its output
is flushed: the command thread may still be inside a read of stdin, and an interpreter that
finalizes under it aborts ("Fatal Python error: _enter_buffered_busy", exit 134).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.errors import NeuroCanvasError, RunError, WeightsError
from core.fileformat import loads
from core.npz import npz_bytes, read_npz_bytes
from core.probe.wire import PROBES, run_probe
from core.probe.wire import check_args as check_probe
from core.remote import (
    MAX_LINE,
    MAX_PAYLOAD,
    PARENT_PID_ENV,
    FrameError,
    NoteEvent,
    ReadyEvent,
    encode_frame,
    error_to_json,
    read_frame,
)
from core.runs import RunRecorder, RunStore
from core.training.config import parse_training
from core.training.events import DoneEvent, EpochEvent, StepEvent
from core.training.trainer import Trainer
from core.validate import analyze
from core.weights import merge_state
from kernels import jit

TENSORBOARD_DIR = "tensorboard"  # inside the run folder (docs/format.md section 9.2)
FLUSH_S = 0.05  # steps go to the GUI at most 20 times a second
PARENT_POLL_S = 0.5  # how often the fallback looks whether the parent is still there
REQUESTS = ("snapshot", "report", "weights", "probe")  # probes: core.probe.wire
PR_SET_PDEATHSIG = 1


def _shown(v) -> str:
    """``repr(v)``, cut short: a refusal never echoes a long field back whole."""
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."


def watch_parent() -> None:
    """End this process when its parent ends: a parent-death signal where Linux offers one,
    and a thread that exits once ``os.getppid()`` changes (the parent died, the child was
    handed to another). The parent's pid comes from ``PARENT_PID_ENV`` when set, so that a
    parent that died before this ran is noticed too."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        except (OSError, AttributeError):  # no libc symbol: the thread below still watches
            pass
    try:
        parent = int(os.environ.get(PARENT_PID_ENV, ""))
    except ValueError:
        parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="neurocanvas-parent", daemon=True).start()


def merge_weights(net, init: dict[str, np.ndarray], note: str | None) -> str | None:
    """Load ``init`` into ``net`` where keys and shapes still fit (the graph may have been
    edited since); the rest keeps its fresh initialisation. Returns the note to show."""
    state, fresh = merge_state(net.state_dict(), init)
    net.load_state_dict(state)
    if fresh:
        note = (f"{note}; {fresh} array{'s' if fresh != 1 else ''} of edited layers "
                "start fresh") if note else None
    return note


class Worker:
    def __init__(self, out: BinaryIO):
        self.out = out
        self.trainer: Trainer | None = None
        self.quit = threading.Event()
        self.built = threading.Event()
        self._out_lock = threading.Lock()  # one writer at a time; taken before _steps_lock
        self._steps_lock = threading.Lock()
        self._steps: list[StepEvent] = []  # not yet sent
        self._notes: list[str] = []  # "note" lines not yet sent (sent before the steps)
        self._flags = {"pause": False, "stop": False}  # commands that came before the build
        self._broken = False
        self.recorder: RunRecorder | None = None  # with "run_dir": the run being recorded
        self.tensorboard = None  # with "tensorboard" too: core.tensorboard's writer
        # requests that came before the build ended, served (or refused) once it has
        self._pending: list[dict] = []
        self._pending_lock = threading.Lock()  # taken before _out_lock

    # ---- output ----------------------------------------------------------------------------
    def _write(self, header: dict, payload: bytes = b"") -> None:
        """Call with ``_out_lock`` held."""
        if self._broken:
            return
        try:
            self.out.write(encode_frame(header, payload))
            self.out.flush()
        except (OSError, ValueError):  # nobody listens any more: stop and leave
            self._broken = True
            self.quit.set()

    def send(self, header: dict, payload: bytes = b"") -> None:
        with self._out_lock:
            self._write(header, payload)

    def _flush_steps(self) -> None:
        """Call with ``_out_lock`` held."""
        with self._steps_lock:
            steps, self._steps = self._steps, []
            notes, self._notes = self._notes, []
        for text in notes:
            self._write({"ev": "note", **NoteEvent(text).to_json()})
        if steps:
            self._write({"ev": "steps", **StepEvent.batch_to_json(steps)})

    def _note(self, text: str) -> None:
        """Any thread: queue a ``note`` frame for the flush loop."""
        with self._steps_lock:
            self._notes.append(text)

    def flush(self) -> None:
        with self._out_lock:
            self._flush_steps()

    def on_event(self, ev) -> None:
        """On the training thread, for every event."""
        if self.tensorboard is not None:
            self.tensorboard.on_event(ev)  # a queue put too
        if self.recorder is not None:
            self.recorder.on_event(ev)  # a queue put
            if isinstance(ev, DoneEvent):  # recorded before the parent hears of the end
                ev = self._finish_run(ev)
        if type(ev) is StepEvent:
            with self._steps_lock:  # the whole per-step cost; _flush_loop sends them
                self._steps.append(ev)
            return
        with self._out_lock:  # steps before the epoch or the end, in order
            self._flush_steps()
            if isinstance(ev, EpochEvent):
                self._write({"ev": "epoch", **ev.to_json()})
            elif isinstance(ev, DoneEvent):
                if ev.error is not None and not isinstance(ev.error, NeuroCanvasError):
                    traceback.print_exception(ev.error, file=sys.stderr)
                self._write({"ev": "done", **ev.to_json(error_to_json)})

    def _finish_run(self, done: DoneEvent) -> DoneEvent:
        """Write the recorded run's end (the final weights and summary); the DoneEvent to
        send: a run that ended well but could not be written ends with that RunError."""
        status = {"finished": "finished", "stopped": "stopped"}.get(done.reason, "failed")
        tr = self.trainer
        if self.tensorboard is not None:
            tb_error, self.tensorboard = self.tensorboard.close(), None
            if tb_error is not None:  # said on stderr; the run itself is kept
                print(f"core.train_worker: {tb_error}", file=sys.stderr)
        try:
            self.recorder.finish(status, steps=done.steps,
                                 weights=tr.net.state_dict() if tr is not None else None,
                                 error=str(done.error) if done.error is not None else None,
                                 error_node=getattr(done.error, "node", None),
                                 device=tr.device if tr is not None else None)
        except RunError as e:
            if done.error is None:
                return DoneEvent("error", done.steps, e)
        except Exception as e:  # noqa: BLE001 - a bug of ours: said, and the end still sent
            traceback.print_exception(e, file=sys.stderr)
        return done

    def _flush_loop(self) -> None:
        while not self.quit.wait(FLUSH_S):
            self.flush()

    # ---- building and running --------------------------------------------------------------
    def build(self, h: dict, payload: bytes) -> None:
        run_dir, label, sweep = h.get("run_dir"), h.get("label"), h.get("sweep")
        max_memory = h.get("max_memory")
        if max_memory is not None and (type(max_memory) is not int or max_memory < 1):
            raise RunError(f"expected \"max_memory\" to be a number of bytes or null, found "
                           f"{_shown(max_memory)}")
        tensorboard = h.get("tensorboard")
        if tensorboard is not None and not isinstance(tensorboard, bool):
            raise RunError(f"expected \"tensorboard\" to be true, false or null, found "
                           f"{_shown(tensorboard)}")
        for key, value, kinds, what in (("run_dir", run_dir, (str,), "a folder path"),
                                        ("label", label, (str,), "text"),
                                        ("sweep", sweep, (dict,), "an object")):
            if value is not None and not isinstance(value, kinds):
                raise RunError(f"expected \"{key}\" to be {what} or null, found {_shown(value)}")
        graph = loads(h["graph"])
        analysis = analyze(graph)
        overrides = h.get("overrides") or {}
        config = parse_training(graph.training, **overrides)
        if run_dir and h.get("run", True):  # a run that trains: recorded from here on
            self.recorder = RunRecorder(RunStore(run_dir), graph, config, overrides=overrides,
                                        label=label, sweep=sweep, device=config.device)
            if tensorboard:  # the run's TensorBoard events, in its folder
                from core.tensorboard import TensorBoardWriter
                self.tensorboard = TensorBoardWriter(self.recorder.path / TENSORBOARD_DIR)
        try:
            tr = Trainer(analysis, config, base_dir=Path(h.get("base_dir") or "."),
                         on_event=self.on_event, queue_events=False, max_memory=max_memory)
            note = h.get("note")
            if payload:
                init = read_npz_bytes(payload, WeightsError, "weights")
                note = merge_weights(tr.net, init, note)
        except Exception as e:
            if self.recorder is not None:  # the user sees in the history why it failed
                try:
                    self.recorder.finish("failed", steps=0, error=str(e),
                                         error_node=getattr(e, "node", None))
                except RunError:
                    pass  # the build's own error is the one to report
            raise
        self.trainer = tr
        # the first step may wait for the CPU kernels to compile: say so (from the training
        # thread, in the middle of a step, so the note only queues; the flush loop sends it)
        jit.on_compile(lambda: self._note(jit.COMPILING))
        ready = ReadyEvent(tr.device, tr.device_note, tr.total_steps, tr.steps_per_epoch,
                           tr.classifier is not None, note, os.getpid(), list(tr.loss_nodes),
                           [c.loss for c in tr.classifiers],
                           self.recorder.id if self.recorder is not None else None)
        self.send({"ev": "ready", **ready.to_json()})

    def build_ended(self) -> None:
        """After the build, whether it worked or not: serve the requests that came during
        it (refused when there is no network), before any that come after."""
        with self._pending_lock:
            self.built.set()
            pending, self._pending = self._pending, []
            for h in pending:
                try:
                    self._dispatch(h)
                except Exception as e:  # noqa: BLE001 - as read_commands treats a bug
                    traceback.print_exception(e, file=sys.stderr)
                    self.refuse(f"{type(e).__name__}: {e}", h)

    def run(self) -> None:
        threading.Thread(target=self._flush_loop, name="neurocanvas-flush", daemon=True).start()
        tr = self.trainer
        with self._out_lock:  # no command slips between the flags and the start
            if self._flags["pause"]:
                tr.pause()
            if self._flags["stop"]:
                tr.stop()
            tr.start()

    # ---- commands ------------------------------------------------------------------------
    def refuse(self, message: str, h: dict | None = None) -> None:
        """Answer a frame that cannot be taken: as the reply to its request when it has an
        integer ``"id"`` (the parent's Future fails), else with an ``error`` frame."""
        error = {"type": None, "message": message}
        rid = h.get("id") if h else None
        if type(rid) is int:
            self.send({"reply": rid, "error": error})
        else:
            self.send({"ev": "error", "error": error})

    def read_commands(self, inp: BinaryIO) -> None:
        """On a thread: every command until ``quit`` or the end of stdin. A command that
        cannot be taken is refused and the next one read."""
        try:
            while not self._broken:
                try:
                    frame = read_frame(inp, MAX_LINE, 0)  # no command has a payload
                except FrameError as e:
                    self.refuse(str(e), e.header)
                    continue
                if frame is None or frame[0].get("cmd") == "quit":
                    break
                try:
                    self.command(frame[0])
                except Exception as e:  # noqa: BLE001 - a bug here must not end the reading
                    traceback.print_exception(e, file=sys.stderr)
                    self.refuse(f"{type(e).__name__}: {e}", frame[0])
        finally:
            self.quit.set()

    def command(self, h: dict) -> None:
        cmd = h.get("cmd")
        if not isinstance(cmd, str):
            return self.refuse(f"expected \"cmd\" to be a command name, found {_shown(cmd)}", h)
        if cmd not in ("pause", "resume", "stop", *REQUESTS):
            return self.refuse(f"unknown command {_shown(cmd)}", h)
        if cmd in REQUESTS and type(h.get("id")) is not int:
            return self.refuse(f"expected \"id\" of {cmd!r} to be an integer, "
                               f"found {_shown(h.get('id'))}", h)
        nodes = h.get("nodes", [])
        if cmd == "snapshot" and not (isinstance(nodes, list)
                                      and all(isinstance(n, str) for n in nodes)):
            return self.refuse(f"expected \"nodes\" to be a list of node names, "
                               f"found {_shown(nodes)}", h)
        if cmd == "probe":
            why = check_probe(h.get("name"), h.get("args", {}))
            if why is not None:
                return self.refuse(why, h)
        if cmd in ("pause", "resume", "stop"):
            with self._out_lock:  # run() applies the flags under it, then starts
                tr = self.trainer  # set once built; pause and stop work before the start
                if tr is None:
                    if cmd == "resume":
                        self._flags["pause"] = False
                    else:
                        self._flags[cmd] = True
                    return
            getattr(tr, cmd)()
            return
        with self._pending_lock:
            if not self.built.is_set():  # served once built; the commands after it go on
                self._pending.append(h)
                return
            self._dispatch(h)

    def _dispatch(self, h: dict) -> None:
        """Serve a request (checked by ``command``) once the build has ended."""
        cmd, rid, nodes = h["cmd"], h["id"], h.get("nodes", [])
        tr = self.trainer
        if tr is None:
            return self.refuse(f"cannot answer {cmd!r}: the network could not be built", h)
        if cmd == "snapshot":
            fut = tr.call_between_steps(lambda: tr.snapshot(nodes))
        elif cmd == "report":
            fut = tr.call_between_steps(tr.classification_report)
        elif cmd == "probe":
            name, args = h["name"], dict(h.get("args", {}))
            fut = tr.call_between_steps(lambda: run_probe(tr, name, args))
        else:
            fut = tr.call_between_steps(tr.net.state_dict)
        fut.add_done_callback(lambda f: self._reply(rid, cmd, f, h.get("name")))

    def _reply(self, rid, cmd: str, fut, name: str | None = None) -> None:
        e = fut.exception()
        if e is not None:
            self.send({"reply": rid, "error": error_to_json(e)})
        elif cmd == "snapshot":
            snap = fut.result()
            self.send({"reply": rid, "step": snap.step}, npz_bytes(snap.to_arrays()))
        elif cmd == "report":
            report = fut.result()
            self.send({"reply": rid, "report": report.to_json() if report else None})
        elif cmd == "probe":
            value, arrays = PROBES[name].encode(fut.result())
            self.send({"reply": rid, "name": name, "result": value},
                      npz_bytes(arrays) if arrays else b"")
        else:
            self.send({"reply": rid}, npz_bytes(fut.result()))


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the GUI's
    watch_parent()
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the stream
    try:
        frame = read_frame(inp, MAX_LINE, MAX_PAYLOAD)
    except FrameError as e:
        if e.header is not None and e.header.get("cmd") == "open":  # weights over the limit
            err = WeightsError(f"the initial weights cannot be taken: {e}")
            Worker(out).send({"ev": "done", **DoneEvent("error", 0, err).to_json(error_to_json)})
            return 0
        print(f"core.train_worker: the first frame cannot be read: {e}", file=sys.stderr)
        return 2
    if frame is None or frame[0].get("cmd") != "open":
        return 2
    header, payload = frame
    w = Worker(out)
    threading.Thread(target=w.read_commands, args=(inp,), name="neurocanvas-commands",
                     daemon=True).start()
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            w.build(header, payload)
    except Exception as e:  # noqa: BLE001 - the parent gets it as a failed run
        w.send({"ev": "done", **DoneEvent("error", 0, e).to_json(error_to_json)})
        return 0
    finally:
        w.build_ended()
    if header.get("run", True):
        w.run()
    w.quit.wait()
    tr = w.trainer
    tr.stop()
    tr.join(5.0)
    w.flush()
    return 0


def run_and_exit() -> None:
    """``main``, then ``os._exit`` with its status once the output is flushed: no
    interpreter shutdown under the command thread's read of stdin."""
    try:
        rc = main()
    except BaseException:  # noqa: BLE001 - said on stderr; the parent sees the exit status
        traceback.print_exc()
        rc = 1
    for stream in (sys.__stdout__, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            pass
    os._exit(rc)


if __name__ == "__main__":
    run_and_exit()
