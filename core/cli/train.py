"""``train GRAPH``: train a graph with its training settings, on a terminal with a progress
bar, and optionally write the metrics log and the weights (docs/format.md sections 4-6)."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from core.cli.progress import ProgressBar
from core.errors import NeuroCanvasError, WeightsError
from core.training import DoneEvent, EpochEvent, StepEvent, Trainer, parse_training
from core.validate import load_valid
from core.weights import load_weights, save_weights


def cmd_train(args) -> int:
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
