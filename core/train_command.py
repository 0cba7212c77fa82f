"""``main.py train``: train a graph from the command line (SPEC sections 5 and 6)."""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

from core.errors import NeuroCanvasError, WeightsError
from core.training import DoneEvent, EpochEvent, StepEvent, Trainer, parse_training
from core.weights import load_weights, save_weights


def fmt_time(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    s = int(seconds + 0.5)
    if s >= 3600:
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


class ProgressBar:
    """One self-rewriting terminal line: epoch, step, loss, steps per second, time left."""

    def __init__(self, stream, total_steps: int, epochs: int, width: int = 24):
        self.stream, self.total, self.epochs, self.width = stream, total_steps, epochs, width
        self.t0 = time.monotonic()
        self.last_draw = 0.0

    def update(self, ev: StepEvent, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < 0.1 and ev.step + 1 < self.total:
            return  # redraw at most 10 times a second
        self.last_draw = now
        done = ev.step + 1
        rate = done / max(now - self.t0, 1e-9)
        left = (self.total - done) / rate if rate > 0 else float("inf")
        filled = int(self.width * done / max(self.total, 1))
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r[{bar}] epoch {ev.epoch + 1}/{self.epochs} step {done}/{self.total}"
                          f"  loss {ev.loss:.4f}  {rate:.1f} steps/s  left {fmt_time(left)} ")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width + 70) + "\n")
        self.stream.flush()


def cmd_train(args) -> int:
    from core.cli import load_valid

    a = load_valid(args.graph)
    cfg = parse_training(a.graph.training, epochs=args.epochs, steps=args.steps,
                         batch_size=args.batch_size, seed=args.seed, device=args.device)
    init = load_weights(args.init_weights) if args.init_weights else None
    if args.save_weights and not Path(args.save_weights).resolve().parent.is_dir():
        # found now rather than after a long training
        raise WeightsError("cannot write: no such folder", file=args.save_weights)
    tty = sys.stdout.isatty()
    try:
        log = open(args.log, "w", encoding="utf-8") if args.log else None  # noqa: SIM115
    except OSError as e:
        raise NeuroCanvasError(f"cannot write the log: {e.strerror}", file=args.log) from None
    epochs = cfg.epochs
    bar: ProgressBar | None = None

    def on_event(ev) -> None:
        if log is not None and not isinstance(ev, DoneEvent):
            log.write(json.dumps(ev.to_json()) + "\n")
            log.flush()  # a crash loses at most the current line
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

    try:
        trainer = Trainer(a, cfg, base_dir=Path(args.graph).resolve().parent, init_weights=init,
                          init_weights_file=args.init_weights, on_event=on_event,
                          queue_events=False)
        if tty:
            if trainer.device_note:
                print(trainer.device_note)
            epochs = math.ceil(trainer.total_steps / max(trainer.steps_per_epoch, 1))
            bar = ProgressBar(sys.stdout, trainer.total_steps, epochs)
        try:
            done = trainer.run()
        except KeyboardInterrupt:
            done = DoneEvent("stopped", trainer.step)
            if bar:
                bar.line("interrupted")
    finally:
        if log is not None:
            log.close()
    # the weights are the last good ones even when training stopped early
    if args.save_weights:
        try:
            save_weights(args.save_weights, trainer.net.state_dict())
        except OSError as e:
            raise WeightsError(f"cannot write: {e.strerror}", file=args.save_weights) from None
        if tty:
            print(f"saved weights to {args.save_weights}")
    if done.error is not None:
        raise done.error
    if tty:
        print(f"done: {done.steps} steps ({done.reason})")
    return 0


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
    t.set_defaults(func=cmd_train)


__all__ = ["cmd_train", "add_parser", "ProgressBar"]
