"""The hooks the live-training view uses to look inside a running Trainer (core.training):
calls served between two steps, snapshots of a node, and the classification report."""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from core.fileformat import load_graph
from core.training import StepEvent, Trainer, parse_training
from core.validate import analyze

ROOT = Path(__file__).resolve().parent.parent
MLP = ROOT / "resources" / "examples" / "mlp_digits.ncg.json"


def make_trainer(**overrides) -> Trainer:
    a = analyze(load_graph(MLP))
    overrides.setdefault("device", "cpu")
    return Trainer(a, parse_training(a.graph.training, **overrides), base_dir=MLP.parent,
                   queue_events=False)


def test_call_between_steps_runs_on_the_training_thread_between_steps():
    seen: list = []
    trainer: Trainer | None = None

    def on_event(ev):
        if isinstance(ev, StepEvent) and ev.step == 3:
            # asked from another thread while a step is in flight: served before the next
            fut = trainer.call_between_steps(
                lambda: (threading.current_thread().name, trainer.step))
            seen.append(fut)

    trainer = make_trainer(steps=8)
    trainer.on_event = on_event
    trainer.start()
    trainer.join(30)
    name, step = seen[0].result(timeout=5)
    assert name == "neurocanvas-training"
    assert step == 4  # after the 4th step, before the 5th


def test_calls_are_served_while_paused_and_run_inline_when_idle():
    trainer = make_trainer(steps=200)
    trainer.pause()
    trainer.start()
    fut = trainer.call_between_steps(lambda: threading.current_thread().name)
    assert fut.result(timeout=5) == "neurocanvas-training"
    trainer.stop()
    trainer.join(5)
    assert not trainer._thread.is_alive()
    # training over: the caller runs it at once
    fut = trainer.call_between_steps(lambda: threading.current_thread().name)
    assert fut.done() and fut.result() == threading.current_thread().name


def test_a_failing_call_hands_its_exception_to_the_future():
    trainer = make_trainer(steps=5)

    def boom():
        raise ValueError("no")

    fut = trainer.call_between_steps(boom)
    with pytest.raises(ValueError):
        fut.result(timeout=1)


def test_snapshot_copies_weights_gradients_and_activations_of_the_last_batch():
    trainer = make_trainer(steps=3, batch_size=16)
    trainer.run()
    snap = trainer.call_between_steps(lambda: trainer.snapshot(["fc1", "act1", "loss"])).result()
    assert snap.step == 3
    assert set(snap.params) == {"fc1/W", "fc1/b"} == set(snap.grads)
    assert snap.params["fc1/W"].shape == (64, 128)
    np.testing.assert_array_equal(snap.params["fc1/W"], trainer.net.params["fc1/W"])
    assert snap.params["fc1/W"] is not trainer.net.params["fc1/W"]  # a copy
    assert snap.activations["act1"].shape == (16, 128)
    assert np.all(snap.activations["act1"] >= 0)  # after a ReLU
    assert "loss" not in snap.activations
    # activations are those of the trained weights on the last batch (evaluation mode)
    x = trainer._last_batch["x"]
    want = np.maximum(x @ trainer.net.params["fc1/W"] + trainer.net.params["fc1/b"], 0)
    np.testing.assert_allclose(snap.activations["act1"], want, rtol=1e-4, atol=1e-5)


def test_snapshot_does_not_change_training():
    plain = make_trainer(steps=6)
    plain.run()
    looked = make_trainer(steps=6)
    looked.on_event = lambda ev: looked.snapshot(["fc1", "fc2"]) if isinstance(ev, StepEvent) \
        else None
    looked.run()
    for k, v in plain.net.state_dict().items():
        np.testing.assert_array_equal(v, looked.net.state_dict()[k])


def test_classification_report_counts_the_validation_split():
    trainer = make_trainer(steps=40)
    trainer.run()
    rep = trainer.classification_report()
    assert rep.confusion.shape == (10, 10)
    assert rep.confusion.sum() == len(trainer.val_set)
    assert rep.accuracy == pytest.approx(np.trace(rep.confusion) / rep.confusion.sum())
    loss, acc = trainer.evaluate(trainer.val_set)
    assert rep.accuracy == pytest.approx(acc)
    assert rep.loss == pytest.approx(loss, rel=1e-5)
