"""The training loop (core/training/): settings, learning, events, control from another
thread, batching, reproducibility, non-finite values, regularization and clipping."""
from __future__ import annotations

import math
import queue
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from core.errors import NonFiniteError, ParamError, WeightsError
from core.fileformat import load_graph
from core.network import Network
from core.training import (
    DoneEvent,
    EpochEvent,
    StepEvent,
    TrainConfig,
    Trainer,
    parse_training,
)
from core.validate import Analysis, analyze
from tests.graphs import build, edge, graph_dict, mlp_dict, node

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "resources" / "examples"
MLP_PARAMS = {"fc1/W", "fc1/b", "fc2/W", "fc2/b"}


# ---- helpers -----------------------------------------------------------------------------------
def example(name: str) -> Analysis:
    a = analyze(load_graph(EXAMPLES / f"{name}.ncg.json"))
    assert a.ok, [str(p) for p in a.problems]
    return a


def train(a: Analysis, base_dir: Path | str = ".", init_weights=None, on_step=None,
          **overrides) -> tuple[Trainer, list, DoneEvent]:
    """Run a trainer to the end on this thread; (trainer, every event, the DoneEvent)."""
    events: list = []
    trainer: Trainer | None = None

    def on_event(ev):
        events.append(ev)
        if on_step is not None and isinstance(ev, StepEvent):
            on_step(trainer, ev)

    overrides.setdefault("device", "cpu")  # exact comparisons with NumPy computations
    trainer = Trainer(a, parse_training(a.graph.training, **overrides), base_dir=base_dir,
                      init_weights=init_weights, on_event=on_event, queue_events=False)
    done = trainer.run()
    assert events[-1] is done
    return trainer, events, done


def steps_of(events) -> list[StepEvent]:
    return [e for e in events if isinstance(e, StepEvent)]


def epochs_of(events) -> list[EpochEvent]:
    return [e for e in events if isinstance(e, EpochEvent)]


def npz_analysis(tmp_path: Path, d: dict, arrays: dict, **training) -> Analysis:
    """``d`` with a training section reading ``arrays`` from an npz file in ``tmp_path``."""
    np.savez(tmp_path / "data.npz", **arrays)
    d = dict(d, training={"dataset": {"source": "npz", "path": "data.npz"}, **training})
    a = analyze(build(d))
    assert a.ok, [str(p) for p in a.problems]
    return a


def mlp_data(n: int, features: int = 4, outputs: int = 3, seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(np.float32)
    return {"x": x, "y": np.tanh(x[:, :outputs] * 2).astype(np.float32)}


def snapshot(trainer: Trainer) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in trainer.net.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def differs(a: dict, b: dict) -> bool:
    return any(not np.array_equal(a[k], b[k]) for k in a)


# ---- parse_training ----------------------------------------------------------------------------
DIGITS = {"source": "builtin", "name": "digits"}


def test_parse_training_defaults():
    c = parse_training({"dataset": DIGITS})
    assert isinstance(c, TrainConfig)
    assert c.dataset == DIGITS
    assert (c.batch_size, c.epochs, c.steps, c.shuffle, c.seed, c.device) == \
        (32, 10, None, True, 0, "auto")
    assert (c.validation_split, c.l1, c.l2, c.clip_norm, c.clip_value) == \
        (0.0, 0.0, 0.0, None, None)
    assert c.optimizer["type"] == "sgd"


def test_parse_training_reads_every_setting():
    c = parse_training({
        "dataset": {**DIGITS, "validation_split": 0.25},
        "optimizer": {"type": "adam", "lr": 0.002},
        "regularization": {"l1": 0.001, "l2": 0.0001},
        "clip": {"value": 0.5},
        "batch_size": 16, "epochs": 3, "shuffle": False, "seed": 7, "device": "cpu"})
    assert c.dataset == DIGITS  # the split is taken out of the dataset
    assert c.validation_split == 0.25
    assert c.optimizer == {"type": "adam", "lr": 0.002}
    assert (c.l1, c.l2, c.clip_norm, c.clip_value) == (0.001, 0.0001, None, 0.5)
    assert (c.batch_size, c.epochs, c.shuffle, c.seed, c.device) == (16, 3, False, 7, "cpu")
    assert parse_training({"dataset": DIGITS, "validation_split": 0.1,
                           "clip": {"norm": 2}}).validation_split == 0.1
    assert parse_training({"dataset": DIGITS, "clip": {"norm": 2}}).clip_norm == 2.0


def test_parse_training_overrides_win_and_none_is_no_override():
    t = {"dataset": DIGITS, "batch_size": 64, "epochs": 10, "seed": 0, "device": "auto"}
    c = parse_training(t, epochs=2, steps=5, batch_size=8, seed=3, device="cpu")
    assert (c.epochs, c.steps, c.batch_size, c.seed, c.device) == (2, 5, 8, 3, "cpu")
    c = parse_training(t, epochs=None, steps=None, batch_size=None, seed=None, device=None)
    assert (c.epochs, c.steps, c.batch_size, c.seed, c.device) == (10, None, 64, 0, "auto")
    assert t == {"dataset": DIGITS, "batch_size": 64, "epochs": 10, "seed": 0,
                 "device": "auto"}  # the graph's section is not modified
    with pytest.raises(ParamError) as e:
        parse_training(t, epochs=0)
    assert e.value.param == "training.epochs"


@pytest.mark.parametrize("change, param", [
    ({"dataset": None}, "training.dataset"),
    ({"dataset": "digits"}, "training.dataset"),
    ({"batch_size": 0}, "training.batch_size"),
    ({"batch_size": 1.5}, "training.batch_size"),
    ({"batch_size": "64"}, "training.batch_size"),
    ({"batch_size": True}, "training.batch_size"),
    ({"epochs": None}, "training.epochs"),  # null where the setting has a default
    ({"batch_size": None}, "training.batch_size"),
    ({"seed": None}, "training.seed"),
    ({"epochs": 0}, "training.epochs"),
    ({"epochs": float("nan")}, "training.epochs"),
    ({"steps": 0}, "training.steps"),
    ({"seed": -1}, "training.seed"),
    ({"shuffle": "yes"}, "training.shuffle"),
    ({"device": "tpu"}, "training.device"),
    ({"validation_split": 1.0}, "training.validation_split"),
    ({"validation_split": -0.1}, "training.validation_split"),
    ({"dataset": {**DIGITS, "validation_split": 2}}, "training.validation_split"),
    ({"regularization": {"l3": 1.0}}, "training.regularization"),
    ({"regularization": [0.1]}, "training.regularization"),
    ({"regularization": {"l2": -1.0}}, "training.regularization.l2"),
    ({"regularization": {"l1": "a"}}, "training.regularization.l1"),
    ({"clip": {"norm": 0}}, "training.clip.norm"),
    ({"clip": {"value": -1}}, "training.clip.value"),
    ({"clip": {"norm": 1, "value": 1}}, "training.clip"),
    ({"clip": 5}, "training.clip"),
    ({"optimizer": "adam"}, "training.optimizer"),
    ({"optimizer": {"type": "adamx"}}, "training.optimizer.type"),
    ({"optimizer": {"type": "adam", "lr": -1}}, "training.optimizer.lr"),
    ({"optimizer": {"type": "sgd", "betas": [0.9, 0.99]}}, "training.optimizer.betas"),
    ({"epoch": 3}, "training.epoch"),
])
def test_parse_training_names_the_bad_setting(change, param):
    with pytest.raises(ParamError) as e:
        parse_training({"dataset": DIGITS, **change})
    assert e.value.param == param
    assert param in str(e.value)


# ---- it learns ---------------------------------------------------------------------------------
def independent_accuracy(trainer: Trainer, data, pred_node: str) -> float:
    """Accuracy of argmax over ``pred_node`` on ``data``, computed here, not by the trainer."""
    logits = trainer.net.predict({k: data[k] for k in data.fields}, pred_node)
    return float(np.mean(np.argmax(logits, axis=1) == data["y"]))


@pytest.mark.parametrize("name, pred_node, at_least", [
    ("mlp_digits", "fc2", 0.9),
    ("cnn_digits", "fc", 0.9),
    ("mlp_spirals", "fc3", 0.8),  # two classes: chance is 0.5
])
def test_examples_learn(name, pred_node, at_least):
    trainer, events, done = train(example(name))
    assert done.reason == "finished" and done.error is None
    epochs = epochs_of(events)
    assert len(epochs) == trainer.config.epochs
    assert epochs[-1].val_accuracy > at_least
    assert epochs[-1].train_loss < 0.5 * epochs[0].train_loss
    # the reported accuracy is the real one
    assert independent_accuracy(trainer, trainer.val_set, pred_node) == \
        pytest.approx(epochs[-1].val_accuracy, abs=1e-9)


def test_hinge_moons_learns_more_than_a_line_can():
    trainer, events, done = train(example("hinge_moons"))
    assert done.reason == "finished"
    epochs = epochs_of(events)
    assert epochs[-1].val_accuracy > 0.95  # a linear classifier gets about 0.87 on these moons
    assert epochs[-1].train_loss < 0.5 * epochs[0].train_loss
    val = trainer.val_set
    score = trainer.net.predict({k: val[k] for k in val.fields}, "fc2").reshape(-1)
    mine = float(np.mean((score > 0) == (trainer.val_set["y"].reshape(-1) > 0)))
    assert mine == pytest.approx(epochs[-1].val_accuracy, abs=1e-9)


# ---- events ------------------------------------------------------------------------------------
def test_step_events_carry_loss_and_gradient_norms():
    a = example("mlp_digits")
    trainer, events, done = train(a, steps=5, shuffle=False)
    steps = steps_of(events)
    assert [s.step for s in steps] == [0, 1, 2, 3, 4]
    assert all(s.epoch == 0 for s in steps)
    assert all(s.total_steps == 5 and s.steps_per_epoch == 23 for s in steps)
    times = [s.time for s in steps]
    assert times == sorted(times) and times[0] >= 0
    for s in steps:
        assert set(s.grad_norm) == MLP_PARAMS
        assert s.global_grad_norm == pytest.approx(
            math.sqrt(sum(v * v for v in s.grad_norm.values())), rel=1e-9)
        assert all(v > 0 for v in s.grad_norm.values())
    # step 0, recomputed here: same init (same seed), the first 64 training samples in order
    net = Network(a, seed=0)
    batch = {k: v[:64] for k, v in trainer.train_set.fields.items()}
    res = net.loss_and_grads(batch)
    assert steps[0].loss == pytest.approx(float(res.loss), rel=1e-6)
    for k, g in net.gradients().items():
        assert steps[0].grad_norm[k] == pytest.approx(float(np.linalg.norm(g)), rel=1e-5), k
    js = steps[0].to_json()
    assert set(js) == {"event", "epoch", "step", "time", "loss", "grad_norm",
                       "global_grad_norm"}
    assert js["event"] == "step" and js["grad_norm"] == steps[0].grad_norm


def test_epoch_events_report_train_and_validation_metrics():
    a = example("mlp_digits")
    trainer, events, done = train(a, epochs=2)
    assert done.reason == "finished" and done.steps == 46
    epochs = epochs_of(events)
    assert [e.epoch for e in epochs] == [0, 1]
    # events come in order: 23 steps, the epoch, 23 steps, the epoch, done
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["StepEvent"] * 23 + ["EpochEvent"] + ["StepEvent"] * 23 + \
        ["EpochEvent", "DoneEvent"]
    # train_loss: the mean over the epoch's samples (1438 = 22 batches of 64 and one of 30)
    sizes = np.array([64] * 22 + [30])
    for ep in epochs:
        losses = np.array([s.loss for s in steps_of(events) if s.epoch == ep.epoch])
        assert ep.train_loss == pytest.approx(float(losses @ sizes / sizes.sum()), rel=1e-9)
        assert 0.0 <= ep.train_accuracy <= 1.0 and 0.0 <= ep.val_accuracy <= 1.0
        assert ep.seconds >= 0
    # val metrics of the last epoch, recomputed from the final weights in evaluation mode
    val = trainer.val_set
    assert len(val) == 359
    res = trainer.net.forward({k: val[k] for k in val.fields}, train=False)
    assert epochs[-1].val_loss == pytest.approx(float(res.loss), rel=1e-4)
    assert epochs[-1].val_accuracy == pytest.approx(independent_accuracy(trainer, val, "fc2"))
    js = epochs[-1].to_json()
    assert set(js) == {"event", "epoch", "train_loss", "val_loss", "train_accuracy",
                       "val_accuracy", "seconds"}


def test_mse_graph_reports_no_accuracy(tmp_path):
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(40), batch_size=8, epochs=2,
                     validation_split=0.25, optimizer={"type": "adam", "lr": 0.01})
    _, events, done = train(a, base_dir=tmp_path)
    assert done.reason == "finished" and done.steps == 8  # 30 training samples, batches of 8
    for ep in epochs_of(events):
        assert ep.train_accuracy is None and ep.val_accuracy is None
        assert ep.val_loss is not None
        assert set(ep.to_json()) == {"event", "epoch", "train_loss", "val_loss", "seconds"}
    # no validation set: no val_loss either
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(40), batch_size=8, epochs=1)
    _, events, _ = train(a, base_dir=tmp_path)
    (ep,) = epochs_of(events)
    assert ep.val_loss is None and ep.val_accuracy is None
    assert set(ep.to_json()) == {"event", "epoch", "train_loss", "seconds"}


def two_losses_dict() -> dict:
    """x [4] -> fc1 -> a classifier head (cls: 3 classes, cross-entropy with yc) and a
    regression head (reg: 2 outputs, MSE with yr)."""
    return graph_dict(
        [node("x", "Input", shape=[4]), node("fc1", "Dense", units=6), node("act", "Tanh"),
         node("cls", "Dense", units=3), node("yc", "Target", shape=[], dtype="int64", field="yc"),
         node("ce", "CrossEntropyLoss"),
         node("reg", "Dense", units=2), node("yr", "Target", shape=[2], dtype="float32",
                                       field="yr"),
         node("mse", "MSELoss")],
        [edge("x", "fc1"), edge("fc1", "act"), edge("act", "cls"), edge("act", "reg"),
         edge("cls", "ce:pred"), edge("yc", "ce:target"),
         edge("reg", "mse:pred"), edge("yr", "mse:target")], name="two_losses")


def two_losses_data(n: int = 48) -> dict:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return {"x": x, "yc": np.argmax(x[:, :3], axis=1).astype(np.int64),
            "yr": np.tanh(x[:, :2]).astype(np.float32)}


def test_several_losses_report_each_loss_per_step_under_its_node(tmp_path):
    a = npz_analysis(tmp_path, two_losses_dict(), two_losses_data(), batch_size=12, epochs=1,
                     shuffle=False, regularization={"l2": 0.01},
                     optimizer={"type": "sgd", "lr": 0.1})
    trainer, events, done = train(a, base_dir=tmp_path)
    assert trainer.loss_nodes == ["ce", "mse"] and trainer.several_losses
    assert [c.loss for c in trainer.classifiers] == ["ce"]
    steps = steps_of(events)
    assert len(steps) == 4
    for s in steps:
        assert list(s.losses) == ["ce", "mse"]
        assert all(math.isfinite(v) and v > 0 for v in s.losses.values())
        # the step's loss is their sum plus the L2 penalty
        assert s.loss > sum(s.losses.values())
    # step 0, recomputed here: the same init and the first 12 samples in order
    res = Network(a, seed=0).forward({k: v[:12] for k, v in trainer.train_set.fields.items()},
                                     train=True)
    for nid in ("ce", "mse"):
        assert steps[0].losses[nid] == float(res.losses[nid])
    js = steps[0].to_json()
    assert list(js) == ["event", "epoch", "step", "time", "loss", "losses", "grad_norm",
                        "global_grad_norm"]
    assert StepEvent.from_json(js).losses == steps[0].losses


def test_several_losses_report_each_loss_per_epoch_and_accuracy_only_for_a_classifier(
        tmp_path):
    a = npz_analysis(tmp_path, two_losses_dict(), two_losses_data(64), batch_size=12,
                     epochs=2, validation_split=0.25, optimizer={"type": "adam", "lr": 0.01})
    trainer, events, done = train(a, base_dir=tmp_path)
    assert done.reason == "finished"
    sizes = np.array([12] * 4)
    for ep in epochs_of(events):
        assert set(ep.losses) == {"ce", "mse"}
        ce, mse = ep.losses["ce"], ep.losses["mse"]
        assert list(ce) == ["train_loss", "val_loss", "train_accuracy", "val_accuracy"]
        assert list(mse) == ["train_loss", "val_loss"]  # regression: no accuracy
        # the graph-wide accuracy is the (first) classifier's
        assert ep.train_accuracy == ce["train_accuracy"]
        assert ep.val_accuracy == ce["val_accuracy"]
        for nid in ("ce", "mse"):
            per_step = np.array([s.losses[nid] for s in steps_of(events)
                                 if s.epoch == ep.epoch])
            assert ep.losses[nid]["train_loss"] == pytest.approx(
                float(per_step @ sizes / sizes.sum()), rel=1e-9)
        assert ce["val_loss"] + mse["val_loss"] == pytest.approx(ep.val_loss, rel=1e-5)
        js = ep.to_json()
        assert list(js) == ["event", "epoch", "train_loss", "val_loss", "train_accuracy",
                            "val_accuracy", "losses", "seconds"]
        assert EpochEvent.from_json(js).losses == ep.losses
    # the last epoch's validation accuracy, recomputed from the final weights
    assert epochs_of(events)[-1].losses["ce"]["val_accuracy"] == pytest.approx(
        float(np.mean(np.argmax(trainer.net.predict(
            {k: trainer.val_set[k] for k in trainer.val_set.fields}, "cls"), axis=1)
            == trainer.val_set["yc"])), abs=1e-9)


def test_one_loss_reports_no_per_loss_figures():
    trainer, events, _ = train(example("mlp_digits"), steps=3)
    assert not trainer.several_losses
    assert all(s.losses == {} for s in steps_of(events))
    assert all(e.losses == {} and "losses" not in e.to_json() for e in epochs_of(events))


def drain(trainer: Trainer, timeout: float = 120) -> list:
    """Every event from the trainer's queue up to and including the DoneEvent."""
    out = []
    while True:
        ev = trainer.events.get(timeout=timeout)
        out.append(ev)
        if isinstance(ev, DoneEvent):
            return out


def test_events_reach_a_consumer_on_another_thread():
    a = example("mlp_digits")
    seen: list = []
    threads: set[int] = set()

    def on_event(ev):
        seen.append(ev)
        threads.add(threading.get_ident())

    trainer = Trainer(a, parse_training(a.graph.training, epochs=2), on_event=on_event)
    thread = trainer.start()
    got = drain(trainer)  # on the test thread, while the trainer runs on its own
    thread.join(60)
    assert not thread.is_alive()
    assert threads == {thread.ident} and thread.ident != threading.get_ident()
    assert got == seen  # the same events, in the same order, as the callback saw
    assert len(steps_of(got)) == 46 and len(epochs_of(got)) == 2
    assert got[-1].reason == "finished" and got[-1].steps == 46
    assert trainer.events.empty()


# ---- pause, resume, stop -----------------------------------------------------------------------
def endless(tmp_path: Path) -> Trainer:
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(64), batch_size=8, steps=10**7,
                     optimizer={"type": "sgd", "lr": 0.01})
    return Trainer(a, parse_training(a.graph.training), base_dir=tmp_path)


def wait_for_step(trainer: Trainer, at_least: int) -> StepEvent:
    while True:
        ev = trainer.events.get(timeout=60)
        assert not isinstance(ev, DoneEvent), ev
        if isinstance(ev, StepEvent) and ev.step >= at_least:
            return ev


def test_pause_resume_and_stop_from_another_thread(tmp_path):
    trainer = endless(tmp_path)
    thread = trainer.start()
    try:
        wait_for_step(trainer, 3)
        trainer.pause()
        assert trainer.paused
        at_pause = trainer.step
        time.sleep(0.5)
        settled = trainer.step
        assert settled <= at_pause + 1  # at most the step under way finishes
        time.sleep(0.5)
        assert trainer.step == settled  # and then nothing moves while paused
        assert thread.is_alive()
        while not trainer.events.empty():  # the events of the steps before the pause
            ev = trainer.events.get_nowait()
            assert isinstance(ev, StepEvent | EpochEvent) and \
                (not isinstance(ev, StepEvent) or ev.step < settled)

        trainer.resume()
        assert not trainer.paused
        wait_for_step(trainer, settled + 5)  # training goes on where it was
        trainer.stop()
        at_stop = trainer.step
        thread.join(60)
        assert not thread.is_alive()
    finally:
        trainer.stop()
    assert trainer.step <= at_stop + 1  # a stop takes effect within one step
    rest = []
    while not trainer.events.empty():
        rest.append(trainer.events.get_nowait())
    done = rest[-1]
    assert isinstance(done, DoneEvent)
    assert done.reason == "stopped" and done.error is None and done.steps == trainer.step
    assert trainer.step < 10**7


def test_stop_while_paused_ends_without_another_step(tmp_path):
    trainer = endless(tmp_path)
    thread = trainer.start()
    try:
        wait_for_step(trainer, 2)
        trainer.pause()
        time.sleep(0.3)
        settled = trainer.step
        trainer.stop()  # wakes the paused trainer, which stops before stepping again
        thread.join(60)
        assert not thread.is_alive()
    finally:
        trainer.stop()
    assert trainer.step == settled
    events = []
    while not trainer.events.empty():
        events.append(trainer.events.get_nowait())
    assert events[-1].reason == "stopped" and events[-1].steps == settled


@pytest.mark.parametrize("at", [0, 4, 7])  # 8 steps per epoch: stop mid-epoch and at its end
def test_stop_from_a_callback_stops_after_exactly_that_step(tmp_path, at):
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(64), batch_size=8, epochs=5)

    def on_step(trainer, ev):
        if ev.step == at:
            trainer.stop()

    trainer, events, done = train(a, base_dir=tmp_path, on_step=on_step)
    assert done.reason == "stopped" and done.steps == at + 1 == trainer.step
    assert [s.step for s in steps_of(events)] == list(range(at + 1))
    assert epochs_of(events) == []  # an epoch cut short is not reported


# ---- batching and the step count --------------------------------------------------------------
def test_steps_override_epochs_and_the_last_partial_batch_is_used(tmp_path):
    data = mlp_data(10)
    a = npz_analysis(tmp_path, mlp_dict(), data, batch_size=4, epochs=2, shuffle=False,
                     optimizer={"type": "sgd", "lr": 0.0})  # lr 0: the weights stay at init
    trainer, events, done = train(a, base_dir=tmp_path)
    assert trainer.steps_per_epoch == 3  # ceil(10 / 4)
    assert done.steps == 6 and [s.epoch for s in steps_of(events)] == [0, 0, 0, 1, 1, 1]
    # each step's loss is the loss of its batch: samples 0-3, 4-7, then the last two
    net = Network(a, seed=0)
    for s, sl in zip(steps_of(events), [slice(0, 4), slice(4, 8), slice(8, 10)] * 2,
                     strict=True):
        want = float(net.forward({k: v[sl] for k, v in data.items()}, train=True).loss)
        assert s.loss == pytest.approx(want, rel=1e-6)

    trainer, events, done = train(a, base_dir=tmp_path, steps=7, epochs=1)
    assert done.reason == "finished" and done.steps == 7 == trainer.total_steps
    assert [s.epoch for s in steps_of(events)] == [0, 0, 0, 1, 1, 1, 2]
    assert [e.epoch for e in epochs_of(events)] == [0, 1, 2]
    trainer, events, done = train(a, base_dir=tmp_path, steps=2, epochs=5)
    assert done.steps == 2 and len(steps_of(events)) == 2


def test_batches_cover_every_sample_once_per_epoch_when_shuffled(tmp_path):
    # a sample-weighted mean of the per-batch losses (lr 0) over a shuffled epoch equals the
    # loss over the whole set only when every sample is used exactly once
    data = mlp_data(10)
    a = npz_analysis(tmp_path, mlp_dict(), data, batch_size=4, epochs=3, shuffle=True,
                     optimizer={"type": "sgd", "lr": 0.0})
    _, events, _ = train(a, base_dir=tmp_path)
    whole = float(Network(a, seed=0).forward(data, train=True).loss)
    for ep in epochs_of(events):
        assert ep.train_loss == pytest.approx(whole, rel=1e-5)
    losses = [s.loss for s in steps_of(events)]
    assert len(set(losses[:3]) ^ set(losses[3:6])) > 0  # the order changes between epochs


# ---- reproducibility ---------------------------------------------------------------------------
def test_same_seed_same_training_different_seed_different():
    a = example("mlp_spirals")  # shuffled batches and dropout: every random source in play
    t1, e1, _ = train(a, steps=60)
    t2, e2, _ = train(a, steps=60)
    assert [s.loss for s in steps_of(e1)] == [s.loss for s in steps_of(e2)]
    assert_same_state(t1.net.state_dict(), t2.net.state_dict())
    t3, e3, _ = train(a, steps=60, seed=1)
    assert [s.loss for s in steps_of(e1)] != [s.loss for s in steps_of(e3)]
    assert differs(t1.net.state_dict(), t3.net.state_dict())


# ---- NaN and Inf -------------------------------------------------------------------------------
def chain_dict(hidden_type: str = "ReLU", outputs: int = 1) -> dict:
    """x [4] -> fc1 Dense(3) -> hidden -> fc2 Dense(outputs) -> MSE with y."""
    return graph_dict(
        [node("x", "Input", shape=[4]), node("fc1", "Dense", units=3),
         node("hid", hidden_type), node("fc2", "Dense", units=outputs),
         node("y", "Target", shape=[outputs], dtype="float32"), node("loss", "MSELoss")],
        [edge("x", "fc1"), edge("fc1", "hid"), edge("hid", "fc2"), edge("fc2", "loss:pred"),
         edge("y", "loss:target")])


def chain_weights(w1: float = 1.0, w2: float = 1.0) -> dict[str, np.ndarray]:
    return {"fc1/W": np.full((4, 3), w1, np.float32), "fc1/b": np.zeros(3, np.float32),
            "fc2/W": np.full((3, 1), w2, np.float32), "fc2/b": np.zeros(1, np.float32)}


def ones_data(n: int = 8, x: float = 1.0) -> dict:
    return {"x": np.full((n, 4), x, np.float32), "y": np.zeros((n, 1), np.float32)}


def assert_nonfinite(done: DoneEvent, node_id: str, phase: str, step: int) -> NonFiniteError:
    assert done.reason == "error" and done.steps == step
    err = done.error
    assert isinstance(err, NonFiniteError), err
    assert (err.node, err.phase) == (node_id, phase)
    assert f"node '{node_id}'" in str(err) and phase in str(err)
    return err


def test_inf_in_a_forward_activation_names_the_node_and_keeps_the_weights(tmp_path):
    # fc1 = 4, hid = 4, fc2 = 3 * 4 * 1e38: overflows in fc2's output first
    a = npz_analysis(tmp_path, chain_dict(), ones_data(), batch_size=4,
                     optimizer={"type": "sgd", "lr": 0.1})
    init = chain_weights(1.0, 1e38)
    trainer, events, done = train(a, base_dir=tmp_path, init_weights=init)
    assert steps_of(events) == []
    assert_nonfinite(done, "fc2", "forward", 0)
    assert trainer.last_error is done.error
    assert_same_state(trainer.net.state_dict(), init)


def test_inf_in_a_gradient_names_the_first_node_of_the_backward_pass(tmp_path):
    # forward: fc1 = 3e38 * 1e-37 * 4 = 120 per unit, fc2 = 360, loss finite; backward:
    # fc2's gradients are finite, fc1's weight gradient sums x * dy = 3e38 * ... and overflows
    a = npz_analysis(tmp_path, chain_dict("Identity"), ones_data(x=3e38), batch_size=4,
                     optimizer={"type": "sgd", "lr": 0.1})
    init = chain_weights(1e-37, 1.0)
    trainer, events, done = train(a, base_dir=tmp_path, init_weights=init)
    assert_nonfinite(done, "fc1", "backward", 0)
    assert "gradient" in str(done.error)
    assert_same_state(trainer.net.state_dict(), init)


def test_inf_weights_from_a_file_are_named(tmp_path):
    a = npz_analysis(tmp_path, chain_dict(), ones_data(), batch_size=4)
    init = chain_weights()
    init["fc2/b"] = np.array([np.inf], np.float32)
    trainer, _, done = train(a, base_dir=tmp_path, init_weights=init)
    assert_nonfinite(done, "fc2", "forward", 0)
    assert_same_state(trainer.net.state_dict(), init)


def test_nonfinite_at_a_later_step_keeps_the_weights_of_the_step_before(tmp_path):
    data = ones_data(12, x=0.1)
    data["x"][4:8] = 1e38  # the second batch overflows fc1 (4 * 1e38)
    a = npz_analysis(tmp_path, chain_dict(), data, batch_size=4, shuffle=False,
                     optimizer={"type": "sgd", "lr": 0.1})
    init = chain_weights()
    after: list = []
    trainer, events, done = train(a, base_dir=tmp_path, init_weights=init,
                                  on_step=lambda t, ev: after.append(snapshot(t)))
    assert [s.step for s in steps_of(events)] == [0]
    assert_nonfinite(done, "fc1", "forward", 1)
    assert "step 1" in str(done.error)
    assert differs(after[0], init)  # step 0 did change the weights...
    assert_same_state(trainer.net.state_dict(), after[0])  # ...and those are what is kept


def test_batchnorm_statistics_are_kept_from_before_a_failing_step(tmp_path):
    data = ones_data(12, x=0.1)
    data["x"] += np.random.default_rng(0).standard_normal(data["x"].shape).astype(np.float32)
    data["x"][4:8] = 1e38  # fc1 overflows, and BatchNorm would take NaN statistics from it
    a = npz_analysis(tmp_path, chain_dict("BatchNorm"), data, batch_size=4, shuffle=False,
                     optimizer={"type": "sgd", "lr": 0.1})
    after: list = []
    trainer, events, done = train(a, base_dir=tmp_path, init_weights=None,
                                  on_step=lambda t, ev: after.append(snapshot(t)))
    # fc1 (4 * 1e38 * w may still be finite) or the BatchNorm (whose squares overflow)
    assert done.reason == "error" and done.steps == 1
    assert (done.error.node, done.error.phase) in {("fc1", "forward"), ("hid", "forward")}
    state = trainer.net.state_dict()
    assert {"hid/running_mean", "hid/running_var"} <= set(state)
    assert np.all(np.isfinite(state["hid/running_mean"]))
    assert_same_state(state, after[0])


def test_a_huge_learning_rate_stops_with_the_last_good_weights():
    a = example("mlp_digits")
    after: list = []
    trainer, events, done = train(a, optimizer={"type": "sgd", "lr": 1e30}, steps=50,
                                  on_step=lambda t, ev: after.append(snapshot(t)))
    assert done.reason == "error" and isinstance(done.error, NonFiniteError)
    assert 1 <= done.steps < 50 and done.steps == len(steps_of(events)) == len(after)
    assert done.error.node in {"fc1", "act1", "fc2", "loss"}
    assert done.error.phase in {"forward", "backward"}
    state = trainer.net.state_dict()
    assert all(np.all(np.isfinite(v)) for v in state.values())
    assert_same_state(state, after[-1])
    assert epochs_of(events) == []


def test_a_nonfinite_stop_from_a_started_thread_reaches_the_queue(tmp_path):
    a = npz_analysis(tmp_path, chain_dict(), ones_data(), batch_size=4)
    trainer = Trainer(a, parse_training(a.graph.training), base_dir=tmp_path,
                      init_weights=chain_weights(1.0, 1e38))
    trainer.start()
    (done,) = drain(trainer)
    trainer.join(60)
    assert_nonfinite(done, "fc2", "forward", 0)


# ---- regularization and clipping ---------------------------------------------------------------
def first_step(a: Analysis, **overrides) -> tuple[StepEvent, dict, dict]:
    """(the first StepEvent, weights before it, weights after it) on unshuffled data."""
    before = Network(a, seed=0).state_dict()
    trainer, events, _ = train(a, steps=1, shuffle=False, **overrides)
    return steps_of(events)[0], before, trainer.net.state_dict()


def test_reported_loss_includes_the_l1_and_l2_penalties():
    a = example("mlp_digits")
    plain, w0, after_plain = first_step(a)
    sq = sum(float(np.sum(w0[k].astype(np.float64) ** 2)) for k in ("fc1/W", "fc2/W"))
    ab = sum(float(np.sum(np.abs(w0[k].astype(np.float64)))) for k in ("fc1/W", "fc2/W"))
    l2, _, after_l2 = first_step(a, regularization={"l2": 0.01})
    assert l2.loss - plain.loss == pytest.approx(0.01 * sq, rel=1e-4)  # weights only, no biases
    l1, _, _ = first_step(a, regularization={"l1": 0.001})
    assert l1.loss - plain.loss == pytest.approx(0.001 * ab, rel=1e-4)
    assert differs(after_plain, after_l2)  # and the penalty's gradient takes part in the update
    assert l2.grad_norm["fc1/b"] == pytest.approx(plain.grad_norm["fc1/b"], rel=1e-6)


def delta(before: dict, after: dict) -> dict[str, np.ndarray]:
    return {k: before[k].astype(np.float64) - after[k] for k in before}


def global_norm(d: dict) -> float:
    return math.sqrt(sum(float(np.sum(v * v)) for v in d.values()))


def test_clip_norm_limits_the_update():
    a = example("mlp_digits")
    sgd = {"type": "sgd", "lr": 1.0}
    free, w0, w1 = first_step(a, optimizer=sgd)
    assert global_norm(delta(w0, w1)) == pytest.approx(free.global_grad_norm, rel=1e-3)
    assert free.global_grad_norm > 0.1
    ev, w0c, w1c = first_step(a, optimizer=sgd, clip={"norm": 0.05})
    assert ev.global_grad_norm == pytest.approx(free.global_grad_norm)  # reported unclipped
    d = delta(w0c, w1c)
    assert global_norm(d) == pytest.approx(0.05, rel=1e-3)
    # the direction is unchanged: each parameter's step shrinks by the same factor
    scale = 0.05 / free.global_grad_norm
    for k, v in delta(w0, w1).items():
        np.testing.assert_allclose(d[k], v * scale, rtol=1e-3, atol=1e-7, err_msg=k)


def test_clip_value_limits_each_element_of_the_update():
    a = example("mlp_digits")
    sgd = {"type": "sgd", "lr": 1.0}
    _, w0, w1 = first_step(a, optimizer=sgd)
    assert max(float(np.max(np.abs(v))) for v in delta(w0, w1).values()) > 0.02
    _, w0c, w1c = first_step(a, optimizer=sgd, clip={"value": 0.01})
    d = delta(w0c, w1c)
    assert max(float(np.max(np.abs(v))) for v in d.values()) <= 0.01 + 1e-6
    assert max(float(np.max(np.abs(v))) for v in d.values()) >= 0.01 - 1e-6


# ---- weights -----------------------------------------------------------------------------------
def test_init_weights_are_loaded_before_training(tmp_path):
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(16), batch_size=8, epochs=1)
    donor, _, _ = train(a, base_dir=tmp_path, seed=5)
    weights = donor.net.state_dict()
    cfg = parse_training(a.graph.training)
    fresh = Trainer(a, cfg, base_dir=tmp_path)
    assert differs(fresh.net.state_dict(), weights)
    loaded = Trainer(a, cfg, base_dir=tmp_path, init_weights=weights)
    assert_same_state(loaded.net.state_dict(), weights)


@pytest.mark.parametrize("change, key", [
    (lambda w: w.update({"fc1/W": np.zeros((4, 6), np.float32)}), "fc1/W"),
    (lambda w: w.pop("fc2/b"), "fc2/b"),
])
def test_bad_init_weights_name_the_key(tmp_path, change, key):
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(16), batch_size=8, epochs=1)
    weights = Network(a).state_dict()
    change(weights)
    with pytest.raises(WeightsError) as e:
        Trainer(a, parse_training(a.graph.training), base_dir=tmp_path, init_weights=weights,
                init_weights_file="w.npz")
    assert key in str(e.value) and "w.npz" in str(e.value)


def test_trainer_puts_events_on_its_queue_by_default(tmp_path):
    a = npz_analysis(tmp_path, mlp_dict(), mlp_data(16), batch_size=8, epochs=1)
    trainer = Trainer(a, parse_training(a.graph.training), base_dir=tmp_path)
    done = trainer.run()
    got = []
    with pytest.raises(queue.Empty):
        while True:
            got.append(trainer.events.get_nowait())
    assert [type(e) for e in got] == [StepEvent, StepEvent, EpochEvent, DoneEvent]
    assert got[-1] is done


def test_an_unexpected_exception_still_ends_with_a_done_event(monkeypatch):
    """A bug in a step must not leave a consumer of the queue waiting forever."""
    import queue as queue_mod

    from core.training import DoneEvent, Trainer, parse_training
    from core.validate import analyze
    from tests.graphs import build, mlp_dict

    d = mlp_dict(features=2, outputs=1)
    d["training"] = {"dataset": {"source": "builtin", "name": "xor", "n": 40}, "epochs": 1}
    a = analyze(build(d))
    assert a.ok, a.problems
    trainer = Trainer(a, parse_training(d["training"]))

    def boom(batch):
        raise RuntimeError("a bug")

    monkeypatch.setattr(trainer, "train_step", boom)
    trainer.start()
    ev = trainer.events.get(timeout=30)
    while not isinstance(ev, DoneEvent):
        ev = trainer.events.get(timeout=30)
    assert ev.reason == "error" and isinstance(ev.error, RuntimeError)
    with pytest.raises(queue_mod.Empty):
        trainer.events.get_nowait()
