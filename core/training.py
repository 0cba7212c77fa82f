"""The training loop: a reusable object that the command line and the GUI both drive.

``Trainer`` trains a validated graph with its training settings (SPEC section 2). It reports
``StepEvent`` / ``EpochEvent`` / ``DoneEvent`` objects through a thread-safe queue (and an
optional callback on the training thread), and can be paused, resumed and stopped from any
thread; a stop takes effect before the next step. A NaN or Inf stops training with the first
node where it appeared, before the optimizer touches the weights, so the weights kept are the
last good ones.
"""
from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core import datasets, optim
from core.device import resolve_device
from core.errors import NonFiniteError, ParamError
from core.layers.losses import Decision
from core.network import Network
from core.validate import Analysis
from kernels import backend

TRAINING_KEYS = {"dataset", "validation_split", "optimizer", "regularization", "clip",
                 "batch_size", "epochs", "shuffle", "seed", "device", "steps"}


@dataclass
class TrainConfig:
    dataset: dict
    optimizer: dict
    validation_split: float = 0.0
    l1: float = 0.0
    l2: float = 0.0
    clip_norm: float | None = None
    clip_value: float | None = None
    batch_size: int = 32
    epochs: int = 10
    steps: int | None = None  # stop after this many optimizer steps (overrides epochs)
    shuffle: bool = True
    seed: int = 0
    device: str = "auto"


def _num(d: dict, key: str, where: str, default, *, lo=None, hi=None, integer=False,
         open_lo=False):
    v = d.get(key, default)
    if v is None:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok and integer:
        ok = float(v).is_integer()
    if ok and lo is not None:
        ok = v > lo if open_lo else v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        what = "an integer" if integer else "a number"
        if lo is not None:
            what += f" {'>' if open_lo else '>='} {lo}"
        if hi is not None:
            what += f" and <= {hi}"
        raise ParamError(f"expected {what}, found {v!r}", param=f"training.{where}{key}")
    return int(v) if integer else float(v)


def parse_training(training: dict, **overrides) -> TrainConfig:
    """The training section as a ``TrainConfig``; ``overrides`` (from the command line) win.

    Raises ``ParamError`` naming ``training.<field>`` for a bad or unknown setting.
    """
    t = dict(training or {})
    for k, v in overrides.items():
        if v is not None:
            t[k] = v
    for k in t:
        if k not in TRAINING_KEYS:
            raise ParamError(f"unknown setting (known: {', '.join(sorted(TRAINING_KEYS))})",
                             param=f"training.{k}")
    ds = t.get("dataset")
    if not isinstance(ds, dict):
        raise ParamError("expected a dataset, e.g. {\"source\": \"builtin\", \"name\": "
                         f"\"digits\"}}, found {ds!r}", param="training.dataset")
    ds = dict(ds)
    split = ds.pop("validation_split", None)
    if "validation_split" in t:
        split = t["validation_split"]
    split = _num({} if split is None else {"validation_split": split}, "validation_split", "",
                 0.0, lo=0.0, hi=0.9)
    opt = t.get("optimizer", {"type": "sgd", "lr": 0.01})
    if not isinstance(opt, dict):
        raise ParamError(f"expected an object like {{\"type\": \"adam\"}}, found {opt!r}",
                         param="training.optimizer")
    try:  # check the type and hyperparameters now, naming them as training.optimizer.<key>
        optim.make_optimizer(opt, [])
    except ParamError as e:
        raise ParamError(e.message, param=f"training.{e.param}") from None
    reg = t.get("regularization", {}) or {}
    if not isinstance(reg, dict) or set(reg) - {"l1", "l2"}:
        raise ParamError("expected {\"l1\": number, \"l2\": number}",
                         param="training.regularization")
    clip = t.get("clip", {}) or {}
    if not isinstance(clip, dict) or set(clip) - {"norm", "value"} or len(clip) > 1:
        raise ParamError("expected {\"norm\": number} or {\"value\": number}",
                         param="training.clip")
    shuffle = t.get("shuffle", True)
    if not isinstance(shuffle, bool):
        raise ParamError(f"expected true or false, found {shuffle!r}", param="training.shuffle")
    device = t.get("device", "auto")
    if device not in ("auto", "cpu", "gpu"):
        raise ParamError(f"expected auto, cpu or gpu, found {device!r}", param="training.device")
    cfg = TrainConfig(
        dataset=ds, optimizer=opt, validation_split=split,
        l1=_num(reg, "l1", "regularization.", 0.0, lo=0.0),
        l2=_num(reg, "l2", "regularization.", 0.0, lo=0.0),
        clip_norm=_num(clip, "norm", "clip.", None, lo=0.0, open_lo=True),
        clip_value=_num(clip, "value", "clip.", None, lo=0.0, open_lo=True),
        batch_size=_num(t, "batch_size", "", 32, lo=1, integer=True),
        epochs=_num(t, "epochs", "", 10, lo=1, integer=True),
        steps=_num(t, "steps", "", None, lo=1, integer=True),
        shuffle=shuffle, seed=_num(t, "seed", "", 0, lo=0, integer=True), device=device)
    return cfg


# ---- events ------------------------------------------------------------------------------
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

    def to_json(self) -> dict:
        d = {"event": "step", "epoch": self.epoch, "step": self.step,
             "time": round(self.time, 6), "loss": self.loss, "grad_norm": self.grad_norm,
             "global_grad_norm": self.global_grad_norm}
        if self.state_grad_norm:  # an extension of SPEC section 5 (docs/spec-extensions.md)
            d["state_grad_norm"] = self.state_grad_norm
        return d


@dataclass
class EpochEvent:
    epoch: int
    train_loss: float
    val_loss: float | None
    seconds: float
    train_accuracy: float | None = None
    val_accuracy: float | None = None

    def to_json(self) -> dict:
        d: dict[str, Any] = {"event": "epoch", "epoch": self.epoch, "train_loss": self.train_loss}
        if self.val_loss is not None:
            d["val_loss"] = self.val_loss
        if self.train_accuracy is not None:
            d["train_accuracy"] = self.train_accuracy
        if self.val_accuracy is not None:
            d["val_accuracy"] = self.val_accuracy
        d["seconds"] = round(self.seconds, 6)
        return d


@dataclass
class DoneEvent:
    reason: str  # "finished", "stopped" or "error"
    steps: int
    # a NeuroCanvasError for what the user can fix; any other exception is a bug of ours,
    # still delivered so that a consumer waiting on the queue never hangs
    error: Exception | None = None


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


@dataclass
class ClassificationReport:
    """Evaluation of a classifier: ``confusion[true, predicted]`` counts samples."""
    loss: float
    accuracy: float
    confusion: np.ndarray  # [C, C] int64; C = 2 for a binary loss


# ---- accuracy ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Classifier:
    """The loss whose predictions training reports accuracy for, and the nodes it reads."""
    decision: Decision
    pred: str  # node feeding the loss's pred
    target: str  # node feeding its target
    loss: str


def predicted_classes(pred, target, decision: Decision):
    """(guess, truth): the predicted and the true class of every decision in a batch, as
    flat integer arrays of the arrays' module. A binary loss decides once per output of
    each sample; a multi-class one once per position of a ``[..., C]`` prediction."""
    xp = backend.array_module(pred)
    n = int(pred.shape[0])
    if decision.binary:
        guess = pred.reshape(n, -1) > 0
        truth = target.reshape(n, -1) > decision.target_cut
        return guess.reshape(-1).astype(xp.int64), truth.reshape(-1).astype(xp.int64)
    guess = xp.argmax(pred, axis=-1).reshape(-1)
    if target.ndim == pred.ndim:  # class probabilities
        target = xp.argmax(target, axis=-1)
    return guess, target.reshape(-1).astype(xp.int64)


def correct_count(pred, target, decision: Decision) -> tuple[float, int]:
    """(correct, samples) of a batch: the samples classified right, a sample with several
    decisions counting the fraction of them that is right. Accuracy is their ratio."""
    guess, truth = predicted_classes(pred, target, decision)
    n = int(pred.shape[0])
    hits = float(backend.array_module(guess).sum(guess == truth))
    return hits / max(guess.size // max(n, 1), 1), n


# ---- one step ------------------------------------------------------------------------------
def training_step(net: Network, optimizer, batch, config: TrainConfig):
    """Forward, backward, penalties, clipping and the update; (loss, norms, global, result).

    ``loss`` includes the L1/L2 penalty. Gradient norms are taken before clipping (what the
    user wants to see) and fetched in one transfer. Raises ``NonFiniteError`` naming the
    first node where a NaN or Inf appears, before anything is updated.
    """
    c = config
    # BatchNorm statistics change in the training forward pass: keep them to put back if
    # the step fails (no copy at all for a graph without buffers)
    saved = {k: v.copy() for k, v in net.buffers.items()}
    res = net.loss_and_grads(batch)
    grads = net.gradients()
    penalty = 0.0
    if c.l1 or c.l2:
        optim.add_regularization_grads(net.params, grads, c.l1, c.l2)
        penalty = float(optim.regularization_penalty(net.params, c.l1, c.l2))
    norms, global_norm = optim.grad_norms(grads)
    loss = float(res.loss) + penalty
    if not (math.isfinite(loss) and math.isfinite(global_norm)):
        node, phase = net.find_nonfinite(batch)
        for k, v in saved.items():
            net.buffers[k][...] = v
        what = "loss" if not math.isfinite(loss) else "gradient"
        raise NonFiniteError(f"{what}: first NaN/Inf in the {phase} pass of this node",
                             node=node, phase=phase)
    if c.clip_norm is not None:
        optim.clip_grad_norm(grads, c.clip_norm, total_norm=global_norm)
    elif c.clip_value is not None:
        optim.clip_grad_value(grads, c.clip_value)
    optimizer.step(grads)
    return loss, norms, global_norm, res


# ---- the trainer ---------------------------------------------------------------------------
@dataclass
class _Accuracy:
    correct: float = 0.0
    count: int = 0

    @property
    def value(self) -> float | None:
        return self.correct / self.count if self.count else None


class Trainer:
    """Trains one graph. Build it, then ``run()`` (blocking) or ``start()`` (a thread).

    on_event: called on the training thread for every event (the CLI uses it); every event
    is also put on ``self.events`` (a ``queue.Queue``) for a consumer on another thread.
    """

    def __init__(self, analysis: Analysis, config: TrainConfig, *, base_dir: str | Path = ".",
                 init_weights: dict[str, np.ndarray] | None = None, init_weights_file=None,
                 on_event: Callable[[Event], None] | None = None, dtype=np.float32,
                 queue_events: bool = True):
        analysis.raise_if_invalid()
        self.analysis = analysis
        self.config = config
        self.on_event = on_event
        self.queue_events = queue_events
        self.events: queue.Queue = queue.Queue()
        self.device, self.device_note = resolve_device(config.device)
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._thread: threading.Thread | None = None
        # calls another thread asked to run between two steps (call_between_steps)
        self._calls: list[tuple[Callable[[], Any], Future]] = []
        self._calls_lock = threading.Lock()
        self._active = False  # the training thread owns the arrays; calls must queue
        self._last_batch: dict | None = None
        self._probe: Network | None = None

        data = datasets.load_dataset(config.dataset, base_dir, seed=config.seed)
        fields: dict[str, list] = {}
        for nid in analysis.order:
            layer = analysis.layers[nid]
            if layer.data_role is not None:
                fields.setdefault(layer.params["field"], []).append(
                    (nid, tuple(layer.params["shape"]), layer.params["dtype"]))
        data = datasets.check_fields(data, fields)
        self.train_set, self.val_set = data.split(config.validation_split, config.seed)

        self.classifier = self._classification_head()
        # the pred and target values stay available to measure accuracy
        outputs = [self.classifier.pred, self.classifier.target] if self.classifier else []
        self.net = Network(analysis, device=self.device, dtype=dtype, seed=config.seed,
                           outputs=outputs)
        if init_weights is not None:
            self.net.load_state_dict(init_weights, file=init_weights_file)
        self.param_list = list(self.net.params.items())
        self.optimizer = optim.make_optimizer(config.optimizer, self.param_list)
        self.data_rng = np.random.default_rng(config.seed)
        self.steps_per_epoch = self.train_set.num_batches(config.batch_size)
        self.total_steps = config.steps or self.steps_per_epoch * config.epochs
        self.step = 0
        self.epoch = 0
        self.last_error: Exception | None = None

    def _classification_head(self) -> Classifier | None:
        """The first loss that classifies: how it decides, and the nodes it reads."""
        for nid in self.analysis.losses():
            layer = self.analysis.layers[nid]
            ins = self.analysis.inputs[nid]
            if "pred" not in ins:
                continue
            decision = layer.decision(self.analysis.shapes[ins["pred"].src])
            if decision is not None:
                return Classifier(decision, ins["pred"].src, ins["target"].src, nid)
        return None

    # ---- control from any thread -------------------------------------------------------------
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused trainer wakes up to stop

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def start(self) -> threading.Thread:
        with self._calls_lock:
            self._active = True  # before the thread exists, so no call runs beside it
        self._thread = threading.Thread(target=self.run, name="neurocanvas-training",
                                        daemon=True)
        self._thread.start()
        return self._thread

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # ---- looking inside from another thread --------------------------------------------------
    def call_between_steps(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn()`` where it cannot see arrays mid-update; a Future of its result.

        While training runs, the training thread runs it between two steps (also while
        paused); otherwise it runs at once on the calling thread. ``fn`` must copy what it
        returns to the host (``snapshot`` does).
        """
        fut: Future = Future()
        with self._calls_lock:
            if self._active:
                self._calls.append((fn, fut))
                return fut
        _fulfil(fn, fut)
        return fut

    def _serve_calls(self) -> None:
        if not self._calls:  # read without the lock: a call missed now is served next step
            return
        with self._calls_lock:
            calls, self._calls = self._calls, []
        for fn, fut in calls:
            _fulfil(fn, fut)

    def _wait_running(self) -> None:
        """Block while paused, still serving calls from other threads."""
        while not self._running.wait(0.02):
            self._serve_calls()

    def snapshot(self, nodes: Iterable[str]) -> Snapshot:
        """Parameters, gradients (of the last step) and activations on the last training
        batch (evaluation mode, so Dropout and BatchNorm statistics are left alone) of
        ``nodes``, as host arrays. Call it through ``call_between_steps`` while training."""
        nodes = [n for n in nodes if n in self.analysis.layers]
        owners = {self.analysis.shared_root.get(n, n) for n in nodes}
        grads = self.net.gradients()
        params = {k: backend.to_host(v).copy() for k, v in self.net.params.items()
                  if k.split("/")[0] in owners}
        grad_host = {k: backend.to_host(grads[k]).copy() for k in params
                     if grads.get(k) is not None}
        acts: dict[str, np.ndarray] = {}
        wanted = [n for n in nodes if not self.analysis.layers[n].is_loss]
        if wanted and self._last_batch is not None:
            values = self._probe_net().forward(self._last_batch, train=False).values
            acts = {n: backend.to_host(values[n]).copy() for n in wanted if n in values}
        return Snapshot(self.step, params, grad_host, acts)

    def _probe_net(self) -> Network:
        """A network whose outputs are every non-loss node, sharing the trained arrays."""
        if self._probe is None:
            outs = [n for n in self.analysis.order if not self.analysis.layers[n].is_loss]
            probe = Network(self.analysis, device=self.device, dtype=self.net.dtype,
                            seed=self.config.seed, outputs=outs, with_losses=False)
            for nid, layer in probe.layers.items():
                src = self.net.layers.get(nid)
                if src is not None:  # the same dicts: updates in place show up here
                    layer.P, layer.G, layer.B = src.P, src.G, src.B
            self._probe = probe
        return self._probe

    def classification_report(self, data=None) -> ClassificationReport | None:
        """Loss, accuracy and confusion matrix over ``data`` (default: the validation
        split) in evaluation mode; None for a graph without a classification loss or no
        data. Call it through ``call_between_steps`` while training."""
        data = self.val_set if data is None else data
        if self.classifier is None or data is None or len(data) == 0:
            return None
        head = self.classifier
        total, count, guesses, truths = 0.0, 0, [], []
        for batch in data.batches(self.config.batch_size, False, None):
            res = self.net.forward(batch, train=False)
            n = len(next(iter(batch.values())))
            total += float(res.loss) * n
            count += n
            guess, truth = predicted_classes(res.values[head.pred], res.values[head.target],
                                             head.decision)
            guesses.append(backend.to_host(guess))
            truths.append(backend.to_host(truth))
        guess, truth = np.concatenate(guesses), np.concatenate(truths)
        pred_shape = self.analysis.shapes[head.pred]
        classes = 2 if head.decision.binary else int(pred_shape[-1])
        confusion = np.zeros((classes, classes), dtype=np.int64)
        np.add.at(confusion, (truth, guess), 1)
        return ClassificationReport(total / count, float(np.mean(guess == truth)), confusion)

    # ---- the loop --------------------------------------------------------------------------
    def _emit(self, ev: Event) -> None:
        if self.queue_events:
            self.events.put(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _accuracy(self, values: dict) -> tuple[float, int]:
        """(correct, count) of a batch, from the forward pass's pred and target values."""
        head = self.classifier
        return correct_count(values[head.pred], values[head.target], head.decision)

    def evaluate(self, data) -> tuple[float | None, float | None]:
        """(mean loss, accuracy) over ``data`` in evaluation mode (None for no data)."""
        if data is None or len(data) == 0:
            return None, None
        total, count, acc = 0.0, 0, _Accuracy()
        for batch in data.batches(self.config.batch_size, False, None):
            res = self.net.forward(batch, train=False)
            n = len(next(iter(batch.values())))
            total += float(res.loss) * n
            count += n
            if self.classifier:
                c, m = self._accuracy(res.values)
                acc.correct += c
                acc.count += m
        return total / count, acc.value

    def train_step(self, batch) -> StepEvent:
        """One optimizer step on ``batch``; raises ``NonFiniteError`` before updating."""
        try:
            loss, norms, global_norm, res = training_step(self.net, self.optimizer, batch,
                                                          self.config)
        except NonFiniteError as e:
            raise NonFiniteError(f"non-finite {e.message} at step {self.step}; the weights "
                                 "before this step are kept", node=e.node, phase=e.phase) from None
        self._last_result = res
        return StepEvent(self.epoch, self.step, time.monotonic() - self._t0, loss, norms,
                         global_norm, self.steps_per_epoch, self.total_steps,
                         self.net.state_gradient_norms())

    def run(self) -> DoneEvent:
        """Train until done, stopped or failed; returns (and emits) the ``DoneEvent``."""
        # NaN and Inf are found and reported as a NonFiniteError; NumPy's own warnings about
        # them would only add lines to stderr
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            return self._run()

    def _run(self) -> DoneEvent:
        c = self.config
        with self._calls_lock:
            self._active = True
        self._t0 = time.monotonic()
        reason, error = "finished", None
        try:
            while self.step < self.total_steps:
                t_epoch = time.monotonic()
                loss_sum, n_sum, acc = 0.0, 0, _Accuracy()
                for batch in self.train_set.batches(c.batch_size, c.shuffle, self.data_rng):
                    self._serve_calls()
                    self._wait_running()
                    if self._stop.is_set():
                        break
                    ev = self.train_step(batch)
                    self._last_batch = batch
                    n = len(next(iter(batch.values())))
                    loss_sum += ev.loss * n
                    n_sum += n
                    if self.classifier:
                        cc, m = self._accuracy(self._last_result.values)
                        acc.correct += cc
                        acc.count += m
                    self.step += 1
                    self._emit(ev)
                    if self.step >= self.total_steps:
                        break
                if self._stop.is_set():
                    reason = "stopped"
                    break
                val_loss, val_acc = self.evaluate(self.val_set)
                self._emit(EpochEvent(self.epoch, loss_sum / max(n_sum, 1), val_loss,
                                      time.monotonic() - t_epoch, acc.value, val_acc))
                self.epoch += 1
        except Exception as e:  # noqa: BLE001 - every failure must end in a DoneEvent
            reason, error = "error", e
            self.last_error = e
        with self._calls_lock:
            self._active = False  # from now on a call runs on the thread that asks
        self._serve_calls()
        done = DoneEvent(reason, self.step, error)
        self._emit(done)
        return done


def _fulfil(fn: Callable[[], Any], fut: Future) -> None:
    if not fut.set_running_or_notify_cancel():
        return
    try:
        fut.set_result(fn())
    except Exception as e:  # noqa: BLE001 - handed to whoever waits on the future
        fut.set_exception(e)
