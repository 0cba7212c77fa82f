"""``train GRAPH``: train a graph with its training settings, on a terminal with a progress
bar, and optionally write the metrics log and the weights (docs/format.md sections 4-6) and
record the run into a run store (``--run-dir``, section 9)."""
from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
from pathlib import Path

from core import memory
from core.cli.common import PROG, UsageError
from core.cli.progress import ProgressBar
from core.errors import NeuroCanvasError, RunError, WeightsError
from core.runs import RunRecorder, RunStore
from core.training import DoneEvent, EpochEvent, StepEvent, Trainer, parse_training
from core.validate import load_valid
from core.weights import save_weights
from kernels import jit


def cmd_train(args) -> int:
    """Train; the exit status. A log that cannot be written (a full disk) stops the run, and
    Ctrl-C stops it at the next step: either way the weights asked for are written first
    (the last good ones), then exit status 2 for the log, 130 for Ctrl-C. With
    ``--run-dir`` the run is recorded there whatever its end (finished, stopped, failed)."""
    if args.label is not None and not args.run_dir:
        raise UsageError("--label names a recorded run: give --run-dir DIR too")
    a = load_valid(args.graph)
    given = {"epochs": args.epochs, "steps": args.steps, "batch_size": args.batch_size,
             "seed": args.seed, "device": args.device}
    overrides = {k: v for k, v in given.items() if v is not None}
    cfg = parse_training(a.graph.training, **overrides)
    # refused before anything large is allocated (the dataset, the network)
    base_dir = Path(args.graph).resolve().parent
    memory.check_budget(memory.training_estimate(a, cfg, base_dir), args.max_memory)
    if args.save_weights and not Path(args.save_weights).resolve().parent.is_dir():
        # found now rather than after a long training
        raise WeightsError("cannot write: no such folder", file=args.save_weights)
    tb = None
    if args.tensorboard:  # events written by a thread of its own (core/tensorboard.py)
        from core.tensorboard import TensorBoardWriter
        tb = TensorBoardWriter(args.tensorboard)
    tty = sys.stdout.isatty()
    try:
        log = open(args.log, "w", encoding="utf-8") if args.log else None  # noqa: SIM115
    except OSError as e:
        raise NeuroCanvasError(f"cannot write the log: {e.strerror}", file=args.log) from None
    recorder: RunRecorder | None = None
    if args.run_dir:
        try:  # an unusable run folder is found now, before training
            recorder = RunRecorder(RunStore(args.run_dir), a.graph, cfg, overrides=overrides,
                                   label=args.label, device=cfg.device)
        except BaseException:
            if log is not None:
                log.close()
            raise
    log_failed = False
    epochs = cfg.epochs
    bar: ProgressBar | None = None

    def log_error(e: OSError) -> NeuroCanvasError:
        return NeuroCanvasError(f"cannot write the log: {e.strerror or e}", file=args.log)

    def on_event(ev) -> None:
        nonlocal log_failed
        if tb is not None:
            tb.on_event(ev)  # a queue put: it never raises, and never waits
        if recorder is not None:
            recorder.on_event(ev)  # a queue put: it never raises, and never waits
        if log is not None and not log_failed and not isinstance(ev, DoneEvent):
            try:
                log.write(json.dumps(ev.to_json()) + "\n")
                log.flush()  # a crash loses at most the current line
            except OSError as e:
                log_failed = True
                raise log_error(e) from None  # the trainer stops and hands it back
        if bar is None:
            return
        if isinstance(ev, StepEvent):
            bar.update(ev)
        elif isinstance(ev, EpochEvent):
            parts = [f"epoch {ev.epoch + 1}", f"train_loss {ev.train_loss:.4f}"]
            if ev.val_loss is not None:
                parts.append(f"val_loss {ev.val_loss:.4f}")
            if ev.train_accuracy is not None:
                parts.append(f"train_acc {ev.train_accuracy:.3f}")
            if ev.val_accuracy is not None:
                parts.append(f"val_acc {ev.val_accuracy:.3f}")
            parts.append(f"{ev.seconds:.1f}s")
            bar.line("  ".join(parts))

    def record(status: str, *, steps: int = 0, weights=None, error: Exception | None = None,
               device: str | None = None) -> RunError | None:
        """End the recorded run (if any); the error of a write that failed, not raised."""
        if recorder is None:
            return None
        with stop.deferred(None):  # a Ctrl-C now waits for run.json to be complete
            try:
                recorder.finish(status, steps=steps, weights=weights,
                                error=str(error) if error is not None else None,
                                error_node=getattr(error, "node", None), device=device)
            except RunError as e:
                return e
        return None

    def tell() -> None:
        """On a terminal: where the run was recorded."""
        if tty and recorder is not None:
            print(f"run recorded in {recorder.path}")

    trainer: Trainer | None = None
    stop = _CtrlC()
    close_error: NeuroCanvasError | None = None
    done: DoneEvent | None = None
    try:
        # Ctrl-C before the network exists: KeyboardInterrupt, 130 from core.cli.run
        try:
            trainer = Trainer(a, cfg, base_dir=base_dir, init_weights_file=args.init_weights,
                              on_event=on_event, queue_events=False,
                              max_memory=args.max_memory)
        except KeyboardInterrupt:
            record("stopped")
            raise
        except Exception as e:  # noqa: BLE001 - recorded as failed, then reported as ever
            if record("failed", error=e) is None:
                tell()
            raise
        with stop.deferred(trainer):
            if tty:
                if trainer.device_note:
                    print(trainer.device_note)
                epochs = math.ceil(trainer.total_steps / max(trainer.steps_per_epoch, 1))
                bar = ProgressBar(sys.stdout, trainer.total_steps, epochs)
                jit.on_compile(lambda: bar.line(jit.COMPILING))  # why the first step waits
            done = trainer.run()
    except KeyboardInterrupt:
        if trainer is None:
            raise
        if stop.pressed:  # a second Ctrl-C, in the middle of a step
            if record("stopped", steps=trainer.step, device=trainer.device) is None:
                tell()  # recorded without weights: they may be half-updated
            print(f"{PROG}: interrupted again, in the middle of a step; weights not saved",
                  file=sys.stderr)
            return 130
        stop.pressed = True  # before the handler was in place: nothing is half-done
    finally:
        if log is not None:
            try:
                log.close()
            except OSError as e:
                if not log_failed:
                    close_error = log_error(e)
        tb_error = tb.close() if tb is not None else None
    assert trainer is not None
    if stop.pressed and bar:
        bar.line("interrupted")
    # the weights are the last good ones even when training stopped early
    state = trainer.net.state_dict() if args.save_weights or recorder else None
    failure = done.error if done is not None else None
    run_error = record("stopped" if stop.pressed else "failed" if failure else "finished",
                       steps=trainer.step, weights=state, error=failure, device=trainer.device)
    if args.save_weights:
        with stop.deferred(None):  # a Ctrl-C now waits for the file to be complete
            try:
                save_weights(args.save_weights, state)
            except OSError as e:
                raise WeightsError(f"cannot write: {e.strerror}",
                                   file=args.save_weights) from None
        if tty:
            print(f"saved weights to {args.save_weights}")
    if run_error is None:
        tell()
    if done is not None and done.error is not None:
        raise done.error
    if close_error is not None:
        raise close_error
    if tb_error is not None:
        raise tb_error
    if run_error is not None and not stop.pressed:
        raise run_error
    if stop.pressed:
        saved = f"; weights saved to {args.save_weights}" if args.save_weights else ""
        print(f"{PROG}: interrupted after {trainer.step} steps{saved}", file=sys.stderr)
        return 130
    if tty and done is not None:
        print(f"done: {done.steps} steps ({done.reason})")
    return 0


class _CtrlC:
    """Ctrl-C during training: the first asks the trainer to stop after the current step, so
    the weights are never half-updated; a second raises KeyboardInterrupt at once. Only on
    the main thread and when SIGINT has Python's own handler (one that ignores it is kept)."""

    def __init__(self) -> None:
        self.pressed = False
        self._trainer: Trainer | None = None

    def _handler(self, signum, frame) -> None:
        if self.pressed:
            raise KeyboardInterrupt
        self.pressed = True
        if self._trainer is not None:
            self._trainer.stop()

    @contextlib.contextmanager
    def deferred(self, trainer: Trainer | None):
        if threading.current_thread() is not threading.main_thread() \
                or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
            yield
            return
        self._trainer = trainer
        signal.signal(signal.SIGINT, self._handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            self._trainer = None


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a graph with its training settings")
    t.add_argument("graph", metavar="GRAPH")
    t.add_argument("--epochs", type=int, metavar="N")
    t.add_argument("--steps", type=int, metavar="N", help="stop after N optimizer steps "
                   "(overrides epochs)")
    t.add_argument("--batch-size", type=int, metavar="B")
    t.add_argument("--device", choices=("auto", "cpu", "gpu"))
    t.add_argument("--seed", type=int, metavar="S")
    t.add_argument("--init-weights", metavar="W.npz", help="start from these weights")
    t.add_argument("--save-weights", metavar="W.npz", help="write the trained weights here")
    t.add_argument("--log", metavar="M.jsonl", help="write metrics as JSON Lines")
    t.add_argument("--tensorboard", metavar="DIR", help="write TensorBoard event files (loss, "
                   "validation metrics, every layer's gradient norm) into DIR")
    t.add_argument("--run-dir", metavar="DIR", help="record the run (graph, settings, metrics, "
                   "weights, summary) into a new folder of the run store DIR")
    t.add_argument("--label", metavar="TEXT", help="the recorded run's label (with --run-dir; "
                   "default: the optimizer and its settings)")
    memory.add_max_memory_option(t)
    t.set_defaults(func=cmd_train)
