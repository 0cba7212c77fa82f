"""Training metrics as TensorBoard event files (``main.py train --tensorboard DIR``).

The events a ``Trainer`` emits are queued (a put: it never waits, never raises) and written
by a thread of their own, so training steps are not slowed by the writer. Scalars, each
under a tag TensorBoard groups by its first part:

- ``loss/step``: every optimizer step's loss (penalty included), at the step number;
  ``loss/step/<loss id>`` for each loss of a graph with several;
- ``grad_norm/<node id>``: every layer's gradient norm at each step (the L2 norm over all
  its parameters: the root of the sum of the squares of the metrics log's ``grad_norm``
  entries of that node), and ``grad_norm/global``;
- ``loss/train``, ``loss/val``, ``accuracy/train``, ``accuracy/val`` at each epoch's number
  (those the metrics log's epoch object has), and ``loss/train/<loss id>``... for several
  losses.

The writer is ``torch.utils.tensorboard.SummaryWriter`` where torch is installed, else the
``tensorboard`` package's own ``tensorboard.summary.Writer``; both need the ``tensorboard``
package (the ``tensorboard`` extra). Without it, ``TensorBoardWriter`` raises one user
error saying what to install.
"""
from __future__ import annotations

import importlib.util
import math
import os
import queue
import threading
from pathlib import Path
from typing import Any

from core.errors import NeuroCanvasError
from core.training import EpochEvent, StepEvent

NEEDS = ("--tensorboard needs the tensorboard package: pip install tensorboard "
         "(or pip install -e '.[tensorboard]')")
LIBRARIES = ("torch", "tensorboard")
FLUSH_EVERY = 200  # steps between flushes (an epoch's end flushes too)


def available_library() -> str | None:
    """The writer that would be used: "torch", "tensorboard", or None (not installed)."""
    if importlib.util.find_spec("tensorboard") is None:
        return None
    return "torch" if importlib.util.find_spec("torch") is not None else "tensorboard"


def layer_norms(grad_norm: dict[str, float]) -> dict[str, float]:
    """``{"fc1/W": a, "fc1/b": b}`` -> ``{"fc1": sqrt(a² + b²)}``, in the log's order."""
    sums: dict[str, float] = {}
    for key, value in grad_norm.items():
        node = key.rsplit("/", 1)[0]
        sums[node] = sums.get(node, 0.0) + float(value) ** 2
    return {node: math.sqrt(s) for node, s in sums.items()}


def scalars(ev) -> list[tuple[str, float, int]]:
    """(tag, value, step) of every scalar one training event gives."""
    out: list[tuple[str, float, int]] = []
    if isinstance(ev, StepEvent):
        out.append(("loss/step", ev.loss, ev.step))
        for nid, value in ev.losses.items():
            out.append((f"loss/step/{nid}", value, ev.step))
        for node, value in layer_norms(ev.grad_norm).items():
            out.append((f"grad_norm/{node}", value, ev.step))
        out.append(("grad_norm/global", ev.global_grad_norm, ev.step))
    elif isinstance(ev, EpochEvent):
        names = {"train_loss": "loss/train", "val_loss": "loss/val",
                 "train_accuracy": "accuracy/train", "val_accuracy": "accuracy/val"}
        for key, tag in names.items():
            value = getattr(ev, key)
            if value is not None:
                out.append((tag, value, ev.epoch))
        for nid, figures in ev.losses.items():
            for key, value in figures.items():
                if key in names and value is not None:
                    out.append((f"{names[key]}/{nid}", value, ev.epoch))
    return out


class TensorBoardWriter:
    """Writes training events into the folder ``logdir`` from a thread of its own.

    ``on_event`` queues an event; ``close`` writes what is queued, closes the files and
    returns the error a write met (a full disk), or None. The thread starts with the first
    event, so a writer made and never used leaves nothing running."""

    def __init__(self, logdir: str | os.PathLike, library: str | None = None):
        self.logdir = str(logdir)
        self.library = library or available_library()
        if self.library is None:
            raise NeuroCanvasError(NEEDS)
        if self.library not in LIBRARIES:
            raise ValueError(f"library {library!r}: expected one of {LIBRARIES}")
        try:
            Path(self.logdir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise NeuroCanvasError(f"cannot make the TensorBoard folder: {e.strerror}",
                                   file=self.logdir) from None
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.error: NeuroCanvasError | None = None

    # ---- the training side ---------------------------------------------------------------
    def on_event(self, ev) -> None:
        if not isinstance(ev, (StepEvent, EpochEvent)):
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="tensorboard", daemon=True)
            self._thread.start()
        self._queue.put(ev)

    def close(self) -> NeuroCanvasError | None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        return self.error

    # ---- the writer thread ---------------------------------------------------------------
    def _open(self) -> Any:
        if self.library == "torch":
            from torch.utils.tensorboard import SummaryWriter

            return SummaryWriter(log_dir=self.logdir)
        from tensorboard.summary import DirectoryOutput, Writer

        return Writer(DirectoryOutput(self.logdir))

    def _run(self) -> None:
        writer = None
        since_flush = 0
        while True:
            ev = self._queue.get()
            if ev is None:
                break
            if self.error is not None:
                continue  # keep draining, so that close() returns
            try:
                if writer is None:
                    writer = self._open()
                for tag, value, step in scalars(ev):
                    writer.add_scalar(tag, float(value), step)
                since_flush += 1
                if isinstance(ev, EpochEvent) or since_flush >= FLUSH_EVERY:
                    writer.flush()
                    since_flush = 0
            except Exception as e:  # noqa: BLE001 - a full disk, a broken install
                self.error = NeuroCanvasError(f"cannot write TensorBoard events: {e}",
                                              file=self.logdir)
        if writer is not None:
            try:
                writer.flush()
                writer.close()
            except Exception as e:  # noqa: BLE001
                self.error = self.error or NeuroCanvasError(
                    f"cannot write TensorBoard events: {e}", file=self.logdir)
