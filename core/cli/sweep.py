"""``sweep GRAPH --set KEY=V1,V2,...``: train every combination of the values, each variant
from the same initial weights and batch order, ``--jobs`` at a time in processes of their
own, each recorded as a run of the store; a table of the results at the end (docs/runs.md,
"Sweeps"). Exit status 0 when every variant finished, 1 when some failed, 2 for a usage or
graph error (nothing ran), 130 for Ctrl-C."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from core import memory
from core.cli.common import PROG, one_line
from core.runs.store import RunStore, runs_dir_for
from core.runs.sweep import SweepResult, best_index, parse_set, run_sweep, variants
from core.validate import load_valid

HELP_SET = ("a setting and its values, read as JSON (0.1, true, \"x\", [2,3]) else as text: "
            "a training setting (optimizer.type, optimizer.lr, optimizer.momentum, "
            "regularization.l1/l2, clip.norm/value, batch_size, epochs, steps, seed, "
            "dataset.<option>) or a node's parameter <node id>.<param> (drop1.rate, "
            "fc1.units); optimizer.type=all is sgd, momentum, nesterov, adagrad, rmsprop and "
            "adam. Repeat --set for more keys: every combination is one variant")


def cmd_sweep(args) -> int:
    a = load_valid(args.graph)
    sets = [parse_set(text) for text in args.set]
    total = len(variants(sets))
    store = RunStore(args.run_dir if args.run_dir else runs_dir_for(args.graph))
    tty = sys.stdout.isatty()
    count = 0

    def on_start(sweep_id: str, jobs: int) -> None:
        if tty:
            print(f"sweep {sweep_id}: {total} variant{'s' if total != 1 else ''}, {jobs} at a "
                  f"time, runs in {store.root}", flush=True)

    def on_update(r: SweepResult) -> None:
        nonlocal count
        count += 1
        if tty:
            print(f"[{count}/{total}] {progress_line(r)}", flush=True)

    def on_note(text: str) -> None:
        print(f"{PROG}: note: {one_line(text)}", file=sys.stderr, flush=True)

    stop = threading.Event()
    with _ctrl_c(stop):
        results = run_sweep(a.graph, sets, base_dir=Path(args.graph).resolve().parent,
                            store=store, steps=args.steps, epochs=args.epochs,
                            jobs=args.jobs, on_update=on_update, max_memory=args.max_memory,
                            graph_path=args.graph, stop=stop, on_note=on_note,
                            on_start=on_start)
    for line in results_table(results):
        print(line)
    if stop.is_set():
        stopped = sum(r.status == "stopped" for r in results)
        print(f"{PROG}: interrupted; {stopped} variant{'s' if stopped != 1 else ''} stopped",
              file=sys.stderr)
        return 130
    return 1 if any(r.status != "finished" for r in results) else 0


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _start(r: SweepResult) -> str:
    """Where the variant's weights started: the shared start, with how many arrays fresh
    (a new key or shape), or its own seed's."""
    if r.own_start:
        return "own seed"
    if r.run is None or (r.status == "failed" and not r.summary.get("steps")):
        return "-"  # never trained
    return f"shared, {r.fresh} fresh" if r.fresh else "shared"


def progress_line(r: SweepResult) -> str:
    """One finished variant: ``adam: finished, 40 steps, loss 0.3124, val_loss 0.3312,
    val_acc 0.875, 1.2s`` or ``drop1.rate=2: failed: <reason>``."""
    s = r.summary
    if r.status == "failed" and r.error:
        return f"{r.label}: failed: {one_line(r.error)}"
    parts = [f"{r.label}: {r.status}", f"{s.get('steps', 0)} steps"]
    for name, key, digits in (("loss", "loss", 4), ("val_loss", "val_loss", 4),
                              ("val_acc", "val_accuracy", 3)):
        v = r.figure(key)
        if v is not None:
            parts.append(f"{name} {v:.{digits}f}")
    if s.get("time_s") is not None:
        parts.append(f"{s['time_s']:.1f}s")
    return ", ".join(parts)


def results_table(results: list[SweepResult]) -> list[str]:
    """The sweep's table, best first (marked ``*``): the finished variants by validation
    loss (the final training loss without a validation split), then the stopped, then the
    failed ones; their reasons below it."""
    best = best_index(results)
    rank = {"finished": 0, "stopped": 1}

    def order(i: int) -> tuple:
        r = results[i]
        v = r.figure("val_loss")
        v = r.figure("loss") if v is None else v
        if r.status != "finished":
            return (True, rank.get(r.status, 2), False, 0.0, i)
        return (i != best, 0, v is None, v if v is not None else 0.0, i)

    head = ("", "variant", "status", "steps", "loss", "val_loss", "val_acc", "time", "start")
    rows = []
    for i in sorted(range(len(results)), key=order):
        r = results[i]
        s = r.summary
        t = s.get("time_s") if s.get("steps") else None
        rows.append(("*" if i == best else "", r.label, r.status, str(s.get("steps", 0)),
                     _num(r.figure("loss"), 4), _num(r.figure("val_loss"), 4),
                     _num(r.figure("val_accuracy"), 3), "-" if t is None else f"{t:.1f}s",
                     _start(r)))
    widths = [max(len(row[c]) for row in (head, *rows)) for c in range(len(head))]
    right = {3, 4, 5, 6, 7}

    def fmt(row) -> str:
        return "  ".join(cell.rjust(w) if c in right else cell.ljust(w)
                         for c, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()

    lines = [fmt(head), *(fmt(row) for row in rows)]
    if best is not None:
        r = results[best]
        by = "val_loss" if r.figure("val_loss") is not None else "loss"
        lines.append(f"* best: lowest {by}")
    if any(r.own_start for r in results):
        lines.append("seed is swept: each variant starts from its own seed's initial weights "
                     "and batch order, not from the shared start")
    for i in sorted(range(len(results)), key=order):
        r = results[i]
        if r.status == "failed" and r.error:
            lines.append(f"failed: {r.label}: {one_line(r.error)}")
    return lines


@contextlib.contextmanager
def _ctrl_c(stop: threading.Event):
    """The first Ctrl-C sets ``stop``: every running variant stops after its current step
    and is recorded as stopped; a second raises KeyboardInterrupt at once. Only on the main
    thread, when SIGINT has Python's own handler."""
    if threading.current_thread() is not threading.main_thread() \
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, found {text!r}")
    return n


def add_parser(sub) -> None:
    s = sub.add_parser(
        "sweep", help="train variants of a graph from the same start, each recorded as a run",
        description="Train every combination of the --set values, each variant from the "
        "same initial weights and batch order as the graph, J at a time, each recorded as a "
        "run of the run folder; then print a table, best first. Exit status 0 when every "
        "variant finished, 1 when some failed, 2 for a usage or graph error, 130 for Ctrl-C.")
    s.add_argument("graph", metavar="GRAPH")
    s.add_argument("--set", action="append", required=True, metavar="KEY=V1,V2,...",
                   help=HELP_SET)
    length = s.add_mutually_exclusive_group()
    length.add_argument("--steps", type=_positive, metavar="N",
                        help="every variant stops after N optimizer steps")
    length.add_argument("--epochs", type=_positive, metavar="N",
                        help="every variant trains N epochs")
    s.add_argument("--jobs", "-j", type=_positive, metavar="J",
                   help="variants trained at a time, each in a process of its own "
                   "(default: the number of CPU cores; fewer when they would not fit the "
                   "memory budget together)")
    s.add_argument("--run-dir", metavar="DIR", help="the run folder the variants are "
                   "recorded in (default: next to GRAPH, a/b/mlp.ncg.json -> a/b/mlp.runs)")
    memory.add_max_memory_option(s)
    s.set_defaults(func=cmd_sweep)
