"""The training loop: a reusable object that the command line and the GUI both drive.

``Trainer`` trains a validated graph with its training settings (docs/format.md section 2). It
reports ``StepEvent`` / ``EpochEvent`` / ``DoneEvent`` objects through a thread-safe queue (and an
optional callback on the training thread), and can be paused, resumed and stopped from any thread; a
stop takes effect before the next step. A NaN or Inf stops training with the first node where it
appeared, before the optimizer touches the weights, so the weights kept are the last good ones.
"""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core import datasets, memory
from core.device import resolve_device
from core.errors import NonFiniteError
from core.network import Network
from core.optim.optimizers import make_optimizer
from core.training.config import TrainConfig
from core.training.events import (
    ClassificationReport,
    DoneEvent,
    EpochEvent,
    Event,
    Snapshot,
    StepEvent,
)
from core.training.metrics import (
    Classifier,
    classification_heads,
    correct_count,
    predicted_classes,
)
from core.training.step import host_losses, training_step
from core.validate import Analysis, analyze
from core.weights import load_weights, network_shapes
from kernels import backend
from kernels.allocator import keep_freed_memory


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
    init_weights: arrays to start from, ``init_weights_file`` naming where they came from in
    errors; ``init_weights_file`` alone: a weights file read once the network is built, only
    the keys it holds (each checked against its shape from the file's headers first).
    """

    def __init__(self, analysis: Analysis, config: TrainConfig, *, base_dir: str | Path = ".",
                 init_weights: dict[str, np.ndarray] | None = None, init_weights_file=None,
                 on_event: Callable[[Event], None] | None = None, dtype=np.float32,
                 queue_events: bool = True, max_memory: int | None = None):
        data = None
        if analysis.auto_shaped and analysis.field_shapes is None:
            # "auto" shapes come from the data: analyse again with the loaded fields, so the
            # network is built from the very shapes check_fields holds the data to
            data = datasets.load_dataset(config.dataset, base_dir, seed=config.seed)
            analysis = analyze(analysis.graph, datasets.DatasetFields(
                data.field_shapes(), data.name, data.file))
        analysis.raise_if_invalid()
        # MemoryBudgetError before the dataset is loaded and the network built (max_memory:
        # bytes; None: $NEUROCANVAS_MAX_MEMORY or a share of the available memory)
        samples = None if data is None else len(data)
        memory.check_budget(memory.training_estimate(analysis, config, base_dir, samples),
                            max_memory)
        self.analysis = analysis
        self.config = config
        self.on_event = on_event
        self.queue_events = queue_events
        self.events: queue.Queue = queue.Queue()
        self.device, self.device_note = resolve_device(config.device)
        keep_freed_memory()  # every step reuses the memory the last one freed
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

        if data is None:
            data = datasets.load_dataset(config.dataset, base_dir, seed=config.seed)
        fields: dict[str, list] = {}
        for nid in analysis.order:
            layer = analysis.layers[nid]
            if layer.data_role is not None:
                fields.setdefault(layer.params["field"], []).append(
                    (nid, tuple(layer.params["shape"]), layer.params["dtype"]))
        data = datasets.check_fields(data, fields)
        self.train_set, self.val_set = data.split(config.validation_split, config.seed)

        self.loss_nodes = analysis.losses()
        # each loss that classifies has an accuracy; the first one gives the graph's figures
        self.classifiers = classification_heads(analysis)
        self.classifier = self.classifiers[0] if self.classifiers else None
        # the pred and target values stay available to measure accuracy
        outputs = list(dict.fromkeys(n for c in self.classifiers for n in (c.pred, c.target)))
        self.net = Network(analysis, device=self.device, dtype=dtype, seed=config.seed,
                           outputs=outputs)
        if init_weights is None and init_weights_file is not None:
            # a weights file alone: only the keys this network holds are read, each checked
            # against its shape from the file's headers first
            init_weights = load_weights(init_weights_file, network_shapes(self.net))
        if init_weights is not None:
            self.net.load_state_dict(init_weights, file=init_weights_file)
        self.param_list = list(self.net.params.items())
        self.optimizer = make_optimizer(config.optimizer, self.param_list)
        self.data_rng = np.random.default_rng(config.seed)
        self.steps_per_epoch = self.train_set.num_batches(config.batch_size)
        self.total_steps = config.steps or self.steps_per_epoch * config.epochs
        self.step = 0
        self.epoch = 0
        self.last_error: Exception | None = None

    @property
    def several_losses(self) -> bool:
        """Per-loss figures are reported (steps' and epochs' ``losses``) only then."""
        return len(self.loss_nodes) > 1

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

    def _accuracy(self, values: dict, head: Classifier | None = None) -> tuple[float, int]:
        """(correct, count) of a batch, from the forward pass's pred and target values."""
        head = head or self.classifier
        return correct_count(values[head.pred], values[head.target], head.decision)

    def _count_accuracy(self, accs: dict[str, _Accuracy], values: dict) -> None:
        for head in self.classifiers:
            c, m = self._accuracy(values, head)
            accs[head.loss].correct += c
            accs[head.loss].count += m

    def evaluate(self, data) -> tuple[float | None, float | None]:
        """(mean loss, accuracy) over ``data`` in evaluation mode (None for no data)."""
        loss, acc, _ = self._evaluate(data)
        return loss, acc

    def _evaluate(self, data) -> tuple[float | None, float | None, dict[str, dict]]:
        """``evaluate`` and, with several losses, each loss's ``{"val_loss",
        "val_accuracy"}`` (accuracy only for a loss that classifies)."""
        if data is None or len(data) == 0:
            return None, None, {}
        total, count = 0.0, 0
        accs = {h.loss: _Accuracy() for h in self.classifiers}
        sums = dict.fromkeys(self.loss_nodes, 0.0) if self.several_losses else {}
        for batch in data.batches(self.config.batch_size, False, None):
            res = self.net.forward(batch, train=False)
            n = len(next(iter(batch.values())))
            if sums:
                loss, per_loss = host_losses(self.net, res)
                for k, v in per_loss.items():
                    sums[k] += v * n
            else:
                loss = float(res.loss)
            total += loss * n
            count += n
            self._count_accuracy(accs, res.values)
        per = {}
        for nid, v in sums.items():
            per[nid] = {"val_loss": v / count}
            if nid in accs:
                per[nid]["val_accuracy"] = accs[nid].value
        first = accs[self.classifier.loss].value if self.classifier else None
        return total / count, first, per

    def _epoch_losses(self, sums: dict[str, float], n: int, accs: dict[str, _Accuracy],
                      val: dict[str, dict]) -> dict[str, dict]:
        """An epoch's ``losses`` (several losses only): per loss node, its figures in the
        order of the graph-wide ones; a figure that does not apply is left out."""
        out = {}
        for nid in sums:
            d = {"train_loss": sums[nid] / max(n, 1)}
            if nid in val:
                d["val_loss"] = val[nid]["val_loss"]
            if nid in accs and accs[nid].value is not None:
                d["train_accuracy"] = accs[nid].value
            if val.get(nid, {}).get("val_accuracy") is not None:
                d["val_accuracy"] = val[nid]["val_accuracy"]
            out[nid] = d
        return out

    def train_step(self, batch) -> StepEvent:
        """One optimizer step on ``batch``; raises ``NonFiniteError`` before updating."""
        per_loss: dict[str, float] | None = {} if self.several_losses else None
        try:
            loss, norms, global_norm, res = training_step(self.net, self.optimizer, batch,
                                                          self.config, per_loss)
        except NonFiniteError as e:
            raise NonFiniteError(f"non-finite {e.message} at step {self.step}; the weights "
                                 "before this step are kept", node=e.node, phase=e.phase) from None
        self._last_result = res
        return StepEvent(self.epoch, self.step, time.monotonic() - self._t0, loss, norms,
                         global_norm, self.steps_per_epoch, self.total_steps,
                         self.net.state_gradient_norms(), per_loss or {})

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
                loss_sum, n_sum = 0.0, 0
                accs = {h.loss: _Accuracy() for h in self.classifiers}
                sums = dict.fromkeys(self.loss_nodes, 0.0) if self.several_losses else {}
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
                    for k, v in ev.losses.items():
                        sums[k] += v * n
                    self._count_accuracy(accs, self._last_result.values)
                    self.step += 1
                    self._emit(ev)
                    if self.step >= self.total_steps:
                        break
                if self._stop.is_set():
                    reason = "stopped"
                    break
                val_loss, val_acc, val_per = self._evaluate(self.val_set)
                train_acc = accs[self.classifier.loss].value if self.classifier else None
                self._emit(EpochEvent(self.epoch, loss_sum / max(n_sum, 1), val_loss,
                                      time.monotonic() - t_epoch, train_acc, val_acc,
                                      self._epoch_losses(sums, n_sum, accs, val_per)))
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

    # ---- seeing inside the network (core.probe, docs/probe.md) ---------------------------------
    # Each runs on the current weights and returns host arrays; call it through
    # ``call_between_steps`` while training. core.probe imports core.training, hence the
    # imports inside the methods.
    def _probe_batch(self) -> dict:
        """The last training batch, else the first batch of the training split."""
        if self._last_batch is not None:
            return self._last_batch
        return next(iter(self.train_set.batches(self.config.batch_size, False, None)))

    def probe_plane(self, unit_node: str | None = None, *, resolution: int = 100,
                    margin: float = 0.1, max_points: int = 2000):
        """``core.probe.PlaneMaps`` of the prediction over the plane of the two-feature
        Input (ranges: the training and validation points' extent plus ``margin``), with the
        unit maps of ``unit_node`` and the first ``max_points`` points of each split."""
        from core.probe.nets import sample_labels
        from core.probe.plane import data_ranges, default_output, plane_grid, plane_input
        output, head = default_output(self.analysis, self.classifier)
        input_node = plane_input(self.analysis, output)
        fld = self.analysis.layers[input_node].params["field"]
        splits = {"train": self.train_set, "val": self.val_set}
        points: dict[str, np.ndarray] = {}
        for name, data in splits.items():
            if data is None or len(data) == 0:
                continue
            n = min(len(data), max_points)
            points[f"{name}_points"] = np.asarray(data[fld][:n], dtype=np.float32)
            labels = sample_labels(self.analysis, head, data.fields, n)
            if labels is not None:
                points[f"{name}_labels"] = labels
        every = np.concatenate([self.train_set[fld]] +
                               ([self.val_set[fld]] if self.val_set is not None else []))
        xr, yr = data_ranges(every, margin)
        maps = plane_grid(self.net, input_node, xr, yr, resolution, output=output, head=head,
                          unit_node=unit_node)
        maps.points, maps.step = points, self.step
        return maps

    def probe_embedding(self, node: str, *, max_samples: int = 1000):
        """``core.probe.Embedding`` of ``node``'s outputs on the validation split (the
        training split when there is none), with each sample's class when the graph
        classifies (or the dataset gives it: ``core.probe.nets.sample_labels``)."""
        from core.probe.embedding import embed
        from core.probe.nets import sample_labels
        data = self.val_set if self.val_set is not None and len(self.val_set) else \
            self.train_set
        n = min(len(data), max_samples)
        labels = sample_labels(self.analysis, self.classifier, data.fields, n, node)
        emb = embed(self.net, node, data.fields, labels=labels, max_samples=n,
                    batch_size=self.config.batch_size)
        emb.step = self.step
        return emb

    def grad_check(self, node: str, *, max_elements: int = 16):
        """``core.probe.GradCheck`` of ``node``'s backward on the last training batch, in a
        float64 copy of the network (nothing of the training changes)."""
        from core.probe.gradcheck import grad_check
        check = grad_check(self.net, node, self._probe_batch(), max_elements=max_elements,
                           seed=self.config.seed)
        check.step = self.step
        return check

    def profile(self, steps: int = 3):
        """``core.probe.GraphCost`` with times measured over ``steps`` training steps on the
        last training batch; the parameters, buffers, gradients, optimizer state and Dropout
        generator are put back afterwards, so training goes on as if nothing had run."""
        from core.probe.cost import graph_cost, profile_steps, restore_state, save_state
        batch = self._probe_batch()
        saved = save_state(self.net, self.optimizer)
        try:
            prof = profile_steps(self.net, self.optimizer, [batch] * max(int(steps), 1),
                                 self.config)
        finally:
            restore_state(self.net, self.optimizer, saved)
        cost = graph_cost(self.analysis, self.config.batch_size, self.config.optimizer,
                          len(self.train_set) + (len(self.val_set) if self.val_set else 0),
                          profile=prof)
        cost.step = self.step
        return cost

    # ---- stepping through one training step (core.probe.stepper, docs/probe.md) ---------------
    def _walk_batch(self) -> dict:
        """The batch a walk steps through: while a run is live (paused), the last training
        batch (the loop has already drawn its next one and trains it after the walk); else
        the next batch of this trainer's own epochs, drawn as the loop draws them."""
        if self._active:
            if self._last_batch is not None:
                return self._last_batch
            import copy
            rng = copy.deepcopy(self.data_rng)
            return next(iter(self.train_set.batches(self.config.batch_size,
                                                    self.config.shuffle, rng)))
        it = getattr(self, "_walk_batches", None)
        for _ in range(2):
            if it is None:
                it = self.train_set.batches(self.config.batch_size, self.config.shuffle,
                                            self.data_rng)
            try:
                batch = next(it)
                break
            except StopIteration:
                it = None
        self._walk_batches = it
        return batch

    def step_walk(self, action: str = "state", *, sample: int | None = None,
                  node: str | None = None, element: int | None = None, t: int | None = None,
                  index: int | None = None, max_values: int | None = None):
        """Walk one training step stage by stage (``core.probe.stepper``); the
        ``StepState`` after ``action``:

        - ``"begin"``: end any walk, take a batch (``_walk_batch``) and run the step,
          recording every stage, with the weights left as they were;
        - ``"next"`` / ``"back"``: one stage on / back; ``"phase"``: to the next phase;
          ``"goto"``: to stage ``index``;
        - ``"state"``: where it stands (with the chain rule at ``node`` / ``element`` / ``t``);
        - ``"end"``: stop walking. After the update stage the step stays taken (the step
          count goes up, as after a training step); before it, the walk is abandoned and
          everything is as if it had never begun.

        Reaching the update stage counts the step (``self.step``) and makes the walked
        batch the last batch; going back out of it undoes both. A walk that training has
        overtaken (a run resumed meanwhile) ends with a ``NeuroCanvasError``.
        """
        from core.errors import NeuroCanvasError
        from core.probe.stepper import MAX_VALUES, Stepper
        walk = getattr(self, "_walk", None)
        if action == "begin":
            if walk is not None:
                self._end_walk(walk)
            batch = self._walk_batch()
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                walk = Stepper(self.net, self.optimizer, self.config, batch,
                               sample=0 if sample is None else sample,
                               max_values=max_values or MAX_VALUES)
            walk.begun_at = self.step
            walk.last_batch = self._last_batch
            self._walk = walk
        elif walk is None:
            if action == "end":
                from core.probe.stepper import StepState
                return StepState(-1, 0, "ended", {}, {}, 0, 0, False, self.step)
            raise NeuroCanvasError("no step is being walked: begin one first (Step, F10)")
        elif self.step != walk.begun_at + (1 if walk.applied else 0):
            self._walk = None
            raise NeuroCanvasError("training moved on since this walk began; the walk has "
                                   "ended (Step begins a new one)")
        was = walk.applied
        if action == "next":
            walk.next()
        elif action == "back":
            walk.back()
        elif action == "phase":
            walk.skip_phase()
        elif action == "goto":
            walk.go_to(0 if index is None else index)
        elif action == "end":
            self._end_walk(walk)
            st = walk.state()
            st.phase, st.step, st.chain = "ended", self.step, None
            return st
        elif action not in ("begin", "state"):
            raise NeuroCanvasError(f"unknown step action {action!r} (begin, next, back, "
                                   "phase, goto, state, end)")
        self._walk_counted(walk, was)
        st = walk.state(node, element, t)
        st.step = self.step
        return st

    def _walk_counted(self, walk, was: bool) -> None:
        """Count the walked step (or take it back) when the walk entered (left) the update."""
        if walk.applied and not was:
            self.step += 1
            self._last_batch = walk.batch
        elif was and not walk.applied:
            self.step -= 1
            self._last_batch = walk.last_batch

    def _end_walk(self, walk) -> None:
        self._walk = None
        if not walk.applied:
            walk.abandon()


def _fulfil(fn: Callable[[], Any], fut: Future) -> None:
    if not fut.set_running_or_notify_cancel():
        return
    try:
        fut.set_result(fn())
    except Exception as e:  # noqa: BLE001 - handed to whoever waits on the future
        fut.set_exception(e)
