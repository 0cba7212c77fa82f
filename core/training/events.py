"""What training reports, and each report's JSON, both directions in its own class.

``StepEvent``, ``EpochEvent`` and ``DoneEvent`` (together ``Event``) come from the training
loop; ``Snapshot`` and ``ClassificationReport`` answer requests to a running Trainer.

The JSON is written in two places and read back in one:

- the metrics log (``main.py train --log``, docs/format.md section 5): one ``to_json()`` object a
  line, of steps and epochs;
- the wire between the GUI and its training process (``core.remote``): epochs and the end
  as ``to_json`` objects, steps in batches of compact rows (``StepEvent.batch_to_json``),
  snapshots as arrays for an ``.npz`` archive (``Snapshot.to_arrays``), reports as
  ``ClassificationReport.to_json``. ``from_json`` / ``batch_from_json`` / ``from_arrays``
  read each back.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# the error codec of the wire (core.remote), passed in: core.remote imports this module
ErrorEncoder = Callable[[Exception | None], dict | None]
ErrorDecoder = Callable[[dict | None], Exception | None]


@dataclass
class StepEvent:
    epoch: int
    step: int  # global optimizer step, from 0
    time: float  # seconds since training started (monotonic)
    loss: float  # including the regularization penalty
    grad_norm: dict[str, float]
    global_grad_norm: float
    steps_per_epoch: int = 0
    total_steps: int = 0
    # recurrent graphs: node -> norm of the gradient reaching its state at each time step
    state_grad_norm: dict[str, list[float]] = field(default_factory=dict)
    # graphs with several losses: loss node -> its value on the batch (no penalty); empty
    # with one loss, whose value ``loss`` already is
    losses: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The metrics-log line (docs/format.md section 5); time rounded to microseconds."""
        d = {"event": "step", "epoch": self.epoch, "step": self.step,
             "time": round(self.time, 6), "loss": self.loss}
        if self.losses:  # several losses only: a one-loss log keeps its keys
            d["losses"] = self.losses
        d["grad_norm"] = self.grad_norm
        d["global_grad_norm"] = self.global_grad_norm
        if self.state_grad_norm:  # recurrent graphs only (docs/format.md section 5)
            d["state_grad_norm"] = self.state_grad_norm
        return d

    @classmethod
    def from_json(cls, d: dict) -> StepEvent:
        """The event of a ``to_json`` object; the step counts, which the log leaves out,
        read as 0."""
        return cls(d["epoch"], d["step"], d["time"], d["loss"], d["grad_norm"],
                   d["global_grad_norm"], state_grad_norm=d.get("state_grad_norm") or {},
                   losses=d.get("losses") or {})

    @staticmethod
    def batch_to_json(events: Sequence[StepEvent]) -> dict:
        """Consecutive steps (at least one) as one wire object: ``{"rows": [[epoch, step,
        time, loss, global_grad_norm, grad_norm], ...], "steps_per_epoch": n,
        "total_steps": n}``, plus ``"state_grad_norm"`` of the last step that has them:
        those lists are long, and only the latest is shown. With several losses, each row
        ends with their values, in the order of ``"loss_names"`` (names once per batch).
        Time is not rounded."""
        last = events[-1]
        d: dict[str, Any] = {
            "rows": [[e.epoch, e.step, e.time, e.loss, e.global_grad_norm, e.grad_norm]
                     for e in events],
            "steps_per_epoch": last.steps_per_epoch, "total_steps": last.total_steps}
        if last.losses:
            names = list(last.losses)
            d["loss_names"] = names
            for row, e in zip(d["rows"], events, strict=True):
                row.append([e.losses.get(n, math.nan) for n in names])
        state = next((e.state_grad_norm for e in reversed(events) if e.state_grad_norm), None)
        if state:
            d["state_grad_norm"] = state
        return d

    @classmethod
    def batch_from_json(cls, d: dict) -> list[StepEvent]:
        """The steps of a ``batch_to_json`` object; the state-gradient norms go to the last."""
        spe, total = d.get("steps_per_epoch", 0), d.get("total_steps", 0)
        names = d.get("loss_names") or ()
        evs = [cls(r[0], r[1], r[2], r[3], r[5], r[4], spe, total,
                   losses=dict(zip(names, r[6], strict=True)) if names else {})
               for r in d["rows"]]
        if evs and d.get("state_grad_norm"):
            evs[-1].state_grad_norm = d["state_grad_norm"]
        return evs


@dataclass
class EpochEvent:
    epoch: int
    train_loss: float
    val_loss: float | None
    seconds: float
    train_accuracy: float | None = None  # of the first classification loss
    val_accuracy: float | None = None
    # graphs with several losses: loss node -> {"train_loss", "val_loss", "train_accuracy",
    # "val_accuracy"}, each key only where the graph-wide one would be there for that loss
    # alone; empty with one loss
    losses: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_json(self) -> dict:
        """The metrics-log line (docs/format.md section 5): figures that are None are left out."""
        d: dict[str, Any] = {"event": "epoch", "epoch": self.epoch, "train_loss": self.train_loss}
        if self.val_loss is not None:
            d["val_loss"] = self.val_loss
        if self.train_accuracy is not None:
            d["train_accuracy"] = self.train_accuracy
        if self.val_accuracy is not None:
            d["val_accuracy"] = self.val_accuracy
        if self.losses:  # several losses only: a one-loss log keeps its keys
            d["losses"] = self.losses
        d["seconds"] = round(self.seconds, 6)
        return d

    @classmethod
    def from_json(cls, d: dict) -> EpochEvent:
        """The event of a ``to_json`` object (seconds rounded to microseconds)."""
        return cls(d["epoch"], d["train_loss"], d.get("val_loss"), d["seconds"],
                   d.get("train_accuracy"), d.get("val_accuracy"), d.get("losses") or {})


@dataclass
class DoneEvent:
    reason: str  # "finished", "stopped" or "error"
    steps: int
    # a NeuroCanvasError for what the user can fix; any other exception is a bug of ours,
    # still delivered so that a consumer waiting on the queue never hangs
    error: Exception | None = None

    def to_json(self, encode_error: ErrorEncoder) -> dict:
        """``{"event": "done", "reason", "steps", "error"}``, the error as ``encode_error``
        writes it (``core.remote.error_to_json``: which exceptions can cross is the
        codec's business). Not in the metrics log."""
        return {"event": "done", "reason": self.reason, "steps": self.steps,
                "error": encode_error(self.error)}

    @classmethod
    def from_json(cls, d: dict, decode_error: ErrorDecoder) -> DoneEvent:
        """The event of a ``to_json`` object, the error read by ``decode_error``."""
        return cls(d["reason"], d["steps"], decode_error(d.get("error")))


Event = StepEvent | EpochEvent | DoneEvent


@dataclass
class Snapshot:
    """Host copies of some nodes' parameters, gradients and activations, taken between
    two steps (``Trainer.snapshot``). Keys: params / grads ``"<owner id>/<name>"`` (a node
    with ``shared_with`` shows its owner's), activations by node id, each
    ``[batch, *shape]`` (``[batch, T, *shape]`` inside a recurrent region)."""
    step: int  # optimizer steps done when it was taken
    params: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    activations: dict[str, np.ndarray]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays in one flat dict for an ``.npz`` archive: ``"p/<key>"``, ``"g/<key>"``,
        ``"a/<node>"``; ``step`` travels beside it."""
        out = {f"p/{k}": v for k, v in self.params.items()}
        out.update({f"g/{k}": v for k, v in self.grads.items()})
        out.update({f"a/{k}": v for k, v in self.activations.items()})
        return out

    @classmethod
    def from_arrays(cls, step: int, arrays: dict[str, np.ndarray]) -> Snapshot:
        """The snapshot of ``to_arrays``' dict, taken after ``step`` steps."""
        parts: dict[str, dict[str, np.ndarray]] = {"p": {}, "g": {}, "a": {}}
        for key, v in arrays.items():
            kind, _, name = key.partition("/")
            parts[kind][name] = v
        return cls(step, parts["p"], parts["g"], parts["a"])


@dataclass
class ClassificationReport:
    """Evaluation of a classifier: ``confusion[true, predicted]`` counts samples."""
    loss: float
    accuracy: float
    confusion: np.ndarray  # [C, C] int64; C = 2 for a binary loss

    def to_json(self) -> dict:
        """``{"loss", "accuracy", "confusion": [[count, ...], ...]}``."""
        return {"loss": self.loss, "accuracy": self.accuracy,
                "confusion": self.confusion.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> ClassificationReport:
        """The report of a ``to_json`` object; the confusion matrix as int64."""
        return cls(d["loss"], d["accuracy"], np.asarray(d["confusion"], np.int64))
